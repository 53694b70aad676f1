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
 * What the L1 guest recorded about one node-agent run (see e2e/iommufd/scenarios.sh): the agent's own report
 * and exit, its VM's serial console, and the kernel's view of its VM process (the VMM: /proc/PID/status,
 * limits, cmdline, user namespace) while it ran. Snapshots may carry a tag ({@code status.lease}).
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

  /** The report as it was when the kernel's view was recorded (tag null: the first snapshot). */
  NodeAgentReport runningReport(String tag) {
    return readReport("running" + suffix(tag) + ".json");
  }

  NodeAgentReport runningReport() {
    return runningReport(null);
  }

  private NodeAgentReport readReport(String fileName) {
    Path file = dir.resolve(fileName);
    if (!Files.exists(file)) {
      throw new AssertionError(name + ": no " + fileName + "; " + describe());
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

  /**
   * The lines of the agent's output that contain {@code prefix}, from there on (the agent may tag its VM
   * process's lines, {@code vm[PID]: }), in order (stdout first).
   */
  List<String> outputLines(String prefix) {
    return output().lines().filter(l -> l.contains(prefix)).map(l -> l.substring(l.indexOf(prefix))).toList();
  }

  /** The lines of one of the VM's recorded files (e.g. uid-left); empty if absent. */
  List<String> fileLines(String file) {
    if (!Files.exists(dir.resolve(file))) {
      throw new AssertionError(name + ": no " + file + "; " + describe());
    }
    return GuestRun.linesOf(dir.resolve(file)).stream().filter(l -> !l.isBlank()).toList();
  }

  /** The VM's serial console as the agent wrote it (--console-log). */
  String console() {
    return read("console.log");
  }

  /** A /proc/PID/status field in kB (VmPin, VmLck), in bytes; tag null: the first snapshot. */
  OptionalLong statusBytes(String field, String tag) {
    Pattern p = Pattern.compile("^" + field + ":\\s+(\\d+) kB", Pattern.MULTILINE);
    Matcher m = p.matcher(read("status" + suffix(tag)));
    return m.find() ? OptionalLong.of(Long.parseLong(m.group(1)) * 1024) : OptionalLong.empty();
  }

  OptionalLong statusBytes(String field) {
    return statusBytes(field, null);
  }

  /** A numeric /proc/PID/status field (NoNewPrivs, Seccomp) of the first snapshot. */
  OptionalLong statusNumber(String field) {
    Matcher m = Pattern.compile("^" + field + ":\\s+(\\d+)\\s*$", Pattern.MULTILINE).matcher(read("status"));
    return m.find() ? OptionalLong.of(Long.parseLong(m.group(1))) : OptionalLong.empty();
  }

  /** The four UIDs (real, effective, saved, fs) of the VM process as the initial namespace sees them. */
  List<Long> uids(String tag) {
    Matcher m = Pattern.compile("^Uid:\\s+(\\d+)\\s+(\\d+)\\s+(\\d+)\\s+(\\d+)", Pattern.MULTILINE)
        .matcher(read("status" + suffix(tag)));
    if (!m.find()) {
      return List.of();
    }
    return List.of(Long.parseLong(m.group(1)), Long.parseLong(m.group(2)), Long.parseLong(m.group(3)),
        Long.parseLong(m.group(4)));
  }

  List<Long> uids() {
    return uids(null);
  }

  /** RLIMIT_MEMLOCK of the VM process while it ran: {soft, hard} in bytes. */
  long[] memlockLimit() {
    return memlockLimit(null);
  }

  /** RLIMIT_MEMLOCK of the VM process at the snapshot tagged tag (null: the first): {soft, hard} in bytes. */
  long[] memlockLimit(String tag) {
    Matcher m = MEMLOCK_LIMIT.matcher(read("limits" + suffix(tag)));
    if (!m.find()) {
      throw new AssertionError(name + ": no memlock limit recorded for the VM process; " + describe());
    }
    return new long[] {Long.parseLong(m.group(1)), Long.parseLong(m.group(2))};
  }

  /** The VM process's argv, one argument a line. */
  List<String> cmdline() {
    return GuestRun.linesOf(dir.resolve("cmdline"));
  }

  /** True if the VM process lived in a user namespace of its own (not the initial one). */
  boolean ownUserNamespace() {
    return GuestRun.linesOf(dir.resolve("userns")).contains("own");
  }

  boolean snapshotTaken(String tag) {
    return Files.exists(dir.resolve("status" + suffix(tag)));
  }

  /** True when the VM process no longer existed once its agent had exited. */
  boolean vmProcessGoneAfterExit() {
    return GuestRun.linesOf(dir.resolve("gone")).contains("yes");
  }

  String describe() {
    String console = console();
    return name + " args=" + read("args").lines().toList() + " exit=" + read("exit").trim()
        + " stderr=" + tail(read("stderr"), 3000) + " report=" + read("report.json").trim()
        + " console=" + tail(console, 1500);
  }

  private static String tail(String s, int max) {
    return s.length() <= max ? s : "..." + s.substring(s.length() - max);
  }

  private static String suffix(String tag) {
    return tag == null ? "" : "." + tag;
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
