package dev.vfiovm.e2e.iommufd;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * One boot of the iommufd tier's QEMU guest ({@code e2e/iommufd/boot-guest.sh}): what it printed on its
 * serial console, how it ended, and the directory the guest wrote its results into.
 */
final class GuestRun {
  private static final Pattern UPTIME = Pattern.compile("VFIOVM-GUEST ([a-z]+(?: start)?).* uptime=([0-9.]+)");

  final Path out;
  final String console;
  final int exitCode;
  final boolean killedByHost;
  final Duration wallTime;

  private GuestRun(Path out, String console, int exitCode, boolean killedByHost, Duration wallTime) {
    this.out = out;
    this.console = console;
    this.exitCode = exitCode;
    this.killedByHost = killedByHost;
    this.wallTime = wallTime;
  }

  /**
   * Boots the guest, runs {@code job} (a host path, executed inside the guest chrooted into the host's root)
   * with {@code env}, and waits at most {@code timeout} (the script kills QEMU a little earlier itself).
   */
  static GuestRun boot(Path repoRoot, Path out, Path job, Path kernel, Map<String, String> env, Duration timeout)
      throws IOException, InterruptedException {
    deleteRecursively(out);
    Files.createDirectories(out);
    List<String> command = new ArrayList<>();
    command.add(repoRoot.resolve("e2e/iommufd/boot-guest.sh").toString());
    command.add(out.toString());
    command.add(job.toString());
    env.forEach((k, v) -> command.add(k + "=" + v));
    ProcessBuilder pb = new ProcessBuilder(command).redirectErrorStream(true);
    pb.environment().put("VFIOVM_KERNEL", kernel.toString());
    pb.environment().put("GUEST_TIMEOUT", Long.toString(timeout.minusSeconds(20).toSeconds()));
    pb.redirectOutput(out.resolve("boot-guest.log").toFile());
    long start = System.nanoTime();
    Process qemu = pb.start();
    boolean ended = qemu.waitFor(timeout.toSeconds(), TimeUnit.SECONDS);
    if (!ended) {
      qemu.descendants().forEach(ProcessHandle::destroyForcibly);
      qemu.destroyForcibly().waitFor();
    }
    Duration wall = Duration.ofNanos(System.nanoTime() - start);
    Path consoleLog = out.resolve("console.log");
    String console = Files.exists(consoleLog) ? Files.readString(consoleLog) : "";
    int rc = ended ? qemu.exitValue() : -1;
    return new GuestRun(out, console, rc, !ended || rc == 124 || rc == 137, wall);
  }

  /** Guest uptime (s) at each VFIOVM-GUEST marker: booted, job start, job (its exit), poweroff. */
  Map<String, Double> uptimes() {
    Map<String, Double> uptimes = new LinkedHashMap<>();
    Matcher m = UPTIME.matcher(console);
    while (m.find()) {
      uptimes.put(m.group(1), Double.parseDouble(m.group(2)));
    }
    return uptimes;
  }

  /** The guest's own timings file: name -> seconds. */
  Map<String, Double> timings() {
    Map<String, Double> timings = new LinkedHashMap<>();
    for (String line : linesOf(out.resolve("timings"))) {
      String[] parts = line.trim().split("\\s+");
      if (parts.length == 2) {
        timings.put(parts[0], Double.parseDouble(parts[1]));
      }
    }
    return timings;
  }

  GuestVm vm(String name) {
    return new GuestVm(name, out.resolve("vms").resolve(name));
  }

  String tail() {
    return console.length() <= 6000 ? console : console.substring(console.length() - 6000);
  }

  static List<String> linesOf(Path file) {
    try {
      return Files.exists(file) ? Files.readAllLines(file) : List.of();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  private static void deleteRecursively(Path dir) throws IOException {
    if (!Files.exists(dir)) {
      return;
    }
    try (var paths = Files.walk(dir)) {
      for (Path p : paths.sorted((a, b) -> b.compareTo(a)).toList()) {
        Files.delete(p);
      }
    }
  }
}
