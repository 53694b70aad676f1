package dev.vfiovm.e2e.iommufd;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vfiovm.api.NodeAgentReport;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.OptionalLong;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * What the guest recorded about one node-agent run (see e2e/iommufd/scenarios.sh): the agent's own
 * report and exit, and the kernel's view of its VM process (/proc/PID/status and limits) while it ran.
 */
final class GuestVm {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final Pattern MEMLOCK_LIMIT =
      Pattern.compile("^Max locked memory\\s+(\\S+)\\s+(\\S+)\\s+bytes", Pattern.MULTILINE);

  final String name;
  final Path dir;

  GuestVm(String name, Path dir) {
    this.name = name;
    this.dir = dir;
  }

  boolean ran() {
    return Files.exists(dir.resolve("args"));
  }

  /** The agent's last report. */
  NodeAgentReport report() {
    return readReport("report.json");
  }

  /** The report as it was when the kernel's view (status, limits) was recorded. */
  NodeAgentReport runningReport() {
    return readReport("running.json");
  }

  private NodeAgentReport readReport(String fileName) {
    Path file = dir.resolve(fileName);
    if (!Files.exists(file)) {
      throw new AssertionError(name + ": no " + fileName + "; stderr: " + stderr());
    }
    try {
      return JSON.readValue(file.toFile(), NodeAgentReport.class);
    } catch (IOException e) {
      throw new UncheckedIOException(name + ": unreadable report", e);
    }
  }

  /** The agent's exit code, or empty if it never ended (the guest script records it after wait). */
  OptionalLong exitCode() {
    List<String> lines = GuestRun.linesOf(dir.resolve("exit"));
    return lines.isEmpty() ? OptionalLong.empty() : OptionalLong.of(Long.parseLong(lines.get(0).trim()));
  }

  /** The agent's stderr, without the JVM's own notices. */
  List<String> stderr() {
    return GuestRun.linesOf(dir.resolve("stderr")).stream()
        .filter(l -> !l.startsWith("Picked up ") && !l.startsWith("NOTE: Picked up ") && !l.isBlank())
        .toList();
  }

  /** Everything the agent (and its VM process, whose output it passes on) printed. */
  String output() {
    return read("stdout") + read("stderr");
  }

  /** A /proc/PID/status field of the VM process while it ran (VmPin, VmLck), in bytes. */
  OptionalLong statusBytes(String field) {
    Pattern p = Pattern.compile("^" + field + ":\\s+(\\d+) kB", Pattern.MULTILINE);
    Matcher m = p.matcher(read("status"));
    return m.find() ? OptionalLong.of(Long.parseLong(m.group(1)) * 1024) : OptionalLong.empty();
  }

  /** The real UID of the VM process as the guest's initial namespace sees it. */
  OptionalLong realUid() {
    Matcher m = Pattern.compile("^Uid:\\s+(\\d+)", Pattern.MULTILINE).matcher(read("status"));
    return m.find() ? OptionalLong.of(Long.parseLong(m.group(1))) : OptionalLong.empty();
  }

  /** RLIMIT_MEMLOCK of the VM process while it ran: {soft, hard} in bytes. */
  long[] memlockLimit() {
    Matcher m = MEMLOCK_LIMIT.matcher(read("limits"));
    if (!m.find()) {
      throw new AssertionError(name + ": no memlock limit recorded for the VM process");
    }
    return new long[] {Long.parseLong(m.group(1)), Long.parseLong(m.group(2))};
  }

  boolean snapshotTaken() {
    return Files.exists(dir.resolve("status"));
  }

  /** True when the VM process no longer existed once its agent had exited. */
  boolean vmProcessGoneAfterExit() {
    return GuestRun.linesOf(dir.resolve("gone")).contains("yes");
  }

  String describe() {
    return name + " args=[" + read("args").trim() + "] exit=" + read("exit").trim() + " stderr=" + stderr()
        + " report=" + read("report.json").trim();
  }

  private String read(String file) {
    try {
      Path p = dir.resolve(file);
      return Files.exists(p) ? Files.readString(p) : "";
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }
}
