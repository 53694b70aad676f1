package dev.vfiovm.bench;

import com.sun.jna.Native;
import com.sun.jna.Pointer;
import dev.vfiovm.bench.Benchmark.Figure;
import dev.vfiovm.bench.Benchmark.Machine;
import dev.vfiovm.node.VmProcessMain;
import dev.vfiovm.node.kernel.Kernel;
import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/** p6 (pinning) and p7 (launch) on this host, each against its C / by-hand floor in the same run. */
final class NativeFigures {
  private final Path out;
  private final boolean shortRun;

  NativeFigures(Path out, boolean shortRun) {
    this.out = out;
    this.shortRun = shortRun;
  }

  static Path repoRoot() {
    String root = System.getenv("VFIOVM_REPO_ROOT");
    if (root != null && !root.isBlank()) {
      return Path.of(root);
    }
    Path cwd = Path.of("").toAbsolutePath();
    return Files.exists(cwd.resolve("bench/native/pin.c")) ? cwd : cwd.getParent();
  }

  /** Compiles bench/native/pin.c with cc (in this run: the floor is built by the same toolchain each time). */
  Path buildPin() throws IOException, InterruptedException {
    Path source = repoRoot().resolve("bench/native/pin.c");
    Path binary = out.resolve("pin");
    Files.createDirectories(out);
    Process cc = new ProcessBuilder("cc", "-O2", "-Wall", "-o", binary.toString(), source.toString())
        .redirectErrorStream(true).start();
    String log = new String(cc.getInputStream().readAllBytes());
    if (!cc.waitFor(120, TimeUnit.SECONDS) || cc.exitValue() != 0) {
      throw new IllegalStateException("cc " + source + " failed: " + log);
    }
    return binary;
  }

  /**
   * p6: the VM-side launcher's pin sequence (memfd_create, ftruncate, mmap, io_uring_setup,
   * IORING_REGISTER_BUFFERS through the JNA facade {@code dev.vfiovm.node.kernel.Kernel}, i.e. exactly the calls
   * {@link VmProcessMain} makes) vs pin.c making the same syscalls on the same size. The memlock limit of this
   * process bounds the size (8 MiB on the shared host). Also, as detail: the whole VM-side launcher process
   * (JVM start included) spawned as the agent spawns it, until it reports MAPPED, vs pin.c in the same protocol.
   */
  List<Figure> pin() throws Exception {
    Path pin = buildPin();
    long limit = Kernel.memlockLimit(Kernel.getpid())[0];
    // what the limit allows, less 1 MiB for the rings and the JVM's own locked pages; at most 1 GiB
    long size = Math.min(1L << 30, (limit - (1L << 20)) / 4096 * 4096);
    int iters = shortRun ? 10 : 50;
    // warm the JNA path first (the launcher JVM runs it once, cold: see processDetail)
    javaPinMedian(size, 3);
    // interleaved rounds, so a load change on this shared machine hits both sides alike
    int rounds = 5;
    double[] javaRounds = new double[rounds];
    double[] cRounds = new double[rounds];
    for (int r = 0; r < rounds; r++) {
      javaRounds[r] = javaPinMedian(size, iters / rounds);
      cRounds[r] = cPinMedian(pin, size, iters / rounds);
    }
    Arrays.sort(javaRounds);
    Arrays.sort(cRounds);
    double javaNs = javaRounds[rounds / 2];
    double cNs = cRounds[rounds / 2];
    Map<String, Object> detail = new LinkedHashMap<>();
    detail.put("bytes", size);
    detail.put("memlockLimit", limit);
    detail.put("iterations", iters);
    detail.put("java_ms", javaNs / 1e6);
    detail.put("c_ms", cNs / 1e6);
    detail.put("s_per_gib_java", javaNs / 1e9 * (1L << 30) / size);
    detail.put("s_per_gib_c", cNs / 1e9 * (1L << 30) / size);
    int runs = shortRun ? 3 : 10;
    long[] launcherRuns = new long[runs];
    long[] cRuns = new long[runs];
    for (int r = 0; r < runs; r++) {
      launcherRuns[r] = spawnUntilMapped(launcherCommand(size));
      cRuns[r] = spawnUntilMapped(List.of(pin.toString(), Long.toString(size)));
    }
    Arrays.sort(launcherRuns);
    Arrays.sort(cRuns);
    double launcher = launcherRuns[runs / 2];
    double cProcess = cRuns[runs / 2];
    detail.put("launcher_process_ms", launcher / 1e6);
    detail.put("c_process_ms", cProcess / 1e6);
    detail.put("process_ratio", launcher / cProcess);
    return List.of(new Figure("p6_pin_ratio", javaNs / 1e6, "ms", cNs / 1e6,
        "pin.c: the same syscalls on the same " + (size >> 20) + " MiB", javaNs / cNs, "<= 1.2",
        "host (memlock hard limit " + (limit >> 20) + " MiB bounds the size; the 1 GiB memfd + IOAS_MAP run "
            + "needs the iommufd guest tier: not run, docs/performance.md)", detail, Machine.now()));
  }

  private static double javaPinMedian(long size, int iters) {
    long[] ns = new long[iters];
    for (int i = 0; i < iters; i++) {
      long t0 = System.nanoTime();
      int memfd = Kernel.memfdCreate("vfiovm-guest", size);
      Pointer guest = Kernel.mmap(size, memfd);
      int ring = Kernel.ioUringSetup(1);
      Kernel.ioUringRegisterBuffer(ring, guest, size);
      ns[i] = System.nanoTime() - t0;
      Kernel.close(ring);
      Kernel.munmap(guest, size);
      Kernel.close(memfd);
    }
    Arrays.sort(ns);
    return ns[iters / 2];
  }

  private static double cPinMedian(Path pin, long size, int iters) throws Exception {
    Process p = new ProcessBuilder(pin.toString(), Long.toString(size), Integer.toString(iters))
        .redirectErrorStream(true).start();
    String output = new String(p.getInputStream().readAllBytes()).trim();
    if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0 || !output.startsWith("NS ")) {
      throw new IllegalStateException("pin.c failed: " + output);
    }
    return Double.parseDouble(output.substring(3).trim());
  }

  /** The VM-side launcher's command line as the agent builds it (VmProcess.javaCommand) with no VMM to exec. */
  static List<String> launcherCommand(long size) {
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    String cp = String.join(File.pathSeparator, location(VmProcessMain.class), location(Native.class));
    // the launcher runs as pid 2 of the sandbox's PID namespace (its parent, bwrap's init, is pid 1: it refuses
    // to run otherwise), so it starts under bwrap's PID namespace here too; the rest of the sandbox (mount, net,
    // user namespaces, seccomp) costs the agent's start-up, not the pin, which is what p6 compares
    return List.of("/usr/bin/bwrap", "--unshare-pid", "--dev-bind", "/", "/", "--die-with-parent", "--",
        java, "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData", "-Xshare:auto",
        "-Xmx32m", "-Djna.tmpdir=/tmp", "-cp", cp, VmProcessMain.class.getName(), "agent-pid=" + Kernel.getpid(),
        "memory=" + size, "--");
  }

  static String location(Class<?> c) {
    try {
      return Path.of(c.getProtectionDomain().getCodeSource().getLocation().toURI()).toString();
    } catch (java.net.URISyntaxException e) {
      throw new IllegalStateException(e);
    }
  }

  /** posix_spawn (as the agent does) with the control socket at fd 3; ns until "MAPPED" arrives on it. */
  static long spawnUntilMapped(List<String> argv) {
    int[] pair = Kernel.socketPair();
    long t0 = System.nanoTime();
    int pid;
    try {
      pid = Kernel.spawn(argv.get(0), argv, List.of("PATH=/usr/bin:/bin", "HOME=/"), List.of(pair[1]));
    } finally {
      Kernel.closeQuietly(pair[1]);
    }
    try {
      String line = Kernel.readLine(pair[0]);
      long ns = System.nanoTime() - t0;
      if (line == null || !line.startsWith("MAPPED")) {
        throw new IllegalStateException(argv.get(0) + " did not map: " + line);
      }
      return ns;
    } finally {
      Kernel.closeQuietly(pair[0]);
      Kernel.waitpid(pid, false);
    }
  }

  interface NanoRun {
    long run() throws Exception;
  }

  static double median(int runs, NanoRun r) throws Exception {
    long[] ns = new long[runs];
    for (int i = 0; i < runs; i++) {
      ns[i] = r.run();
    }
    Arrays.sort(ns);
    return ns[runs / 2];
  }

  /** p7: see {@link LaunchFigure}. */
  List<Figure> launch() throws Exception {
    return new ArrayList<>(LaunchFigure.measure(out, shortRun));
  }
}
