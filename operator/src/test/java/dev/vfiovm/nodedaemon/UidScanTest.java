package dev.vfiovm.nodedaemon;

import static org.assertj.core.api.Assertions.assertThat;

import dev.vfiovm.api.UidAudit;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class UidScanTest {
  static String status(long real, long effective, long saved, long fs) {
    return "Name:\tqemu\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t42\nPid:\t42\nPPid:\t1\n"
        + "Uid:\t" + real + "\t" + effective + "\t" + saved + "\t" + fs + "\nGid:\t0\t0\t0\t0\n";
  }

  @Test
  void parsesTheFourUids() {
    assertThat(UidScan.uidsOf(status(1, 2, 3, 4))).containsExactly(1L, 2L, 3L, 4L);
    assertThat(UidScan.uidsOf("Name:\tx\n")).isEmpty();
  }

  @Test
  void everyUidKindCountsAndOnlyInsideTheRange() {
    long start = 1879048192;
    List<Long> live = UidScan.liveUids(List.of(
        status(0, 0, 0, 0),
        status(start + 5, start + 5, start + 5, start + 5),
        status(0, 0, start + 3, 0), // saved UID only: it can switch back
        status(0, 0, 0, start + 9), // fs UID only
        status(start - 1, start + 65536, start + 65536, 0), // just outside on both ends
        status(start + 5, 0, 0, 0)), start, 65536);
    assertThat(live).containsExactly(start + 3, start + 5, start + 9);
  }

  @Test
  void scansAProcTreeSkippingWhatIsNotAProcess(@TempDir Path proc) throws Exception {
    Files.createDirectories(proc.resolve("1"));
    Files.writeString(proc.resolve("1/status"), status(0, 0, 0, 0));
    Files.createDirectories(proc.resolve("77"));
    Files.writeString(proc.resolve("77/status"), status(100, 100, 100, 100));
    Files.createDirectories(proc.resolve("78")); // exited between listing and reading: no status
    Files.createDirectories(proc.resolve("sys"));
    Files.writeString(proc.resolve("self"), "");
    assertThat(UidScan.scan(proc, 100, 10)).containsExactly(100L);
  }

  @Test
  void auditPatchIsAMergePatchOfTheAnnotationOnly() {
    UidAudit audit = new UidAudit("2026-12-01T14:00:00Z", 1879048192, 65536, List.of(1879048193L));
    assertThat(UidAuditor.patch(audit)).isEqualTo("{\"metadata\":{\"annotations\":{\"vfiovm.dev/uid-audit\":"
        + "\"{\\\"scannedAt\\\":\\\"2026-12-01T14:00:00Z\\\",\\\"uidRangeStart\\\":1879048192,"
        + "\\\"uidRangeSize\\\":65536,\\\"liveUids\\\":[1879048193]}\"}}}");
  }

  @Test
  void durations() {
    assertThat(NodeDaemonCommand.parse("15s")).hasSeconds(15);
    assertThat(NodeDaemonCommand.parse("500ms")).hasMillis(500);
    assertThat(NodeDaemonCommand.parse("2m")).hasMinutes(2);
    assertThat(NodeDaemonCommand.parse("0s")).isZero();
  }
}
