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
  /**
   * Where p6's headline comes from: null = this host only (io_uring, what the memlock limit allows); "boot" =
   * boot the iommufd guest (e2e/iommufd/boot-guest.sh) for e2e/iommufd/p6-pin.sh, 1 GiB memfd + IOAS_MAP;
   * a directory = the p6/p6-pin.json a guest run left there (the guest tier's e2e/target/iommufd).
   * Set by Benchmark's --p6-guest [DIR].
   */
  static String p6Guest;

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

  /** The Linux 6.12 uAPI headers of hack/setup.d/40-uapi-headers.sh (pin.c's iommufd mode needs them). */
  static Path uapiHeaders() {
    String cache = System.getenv().getOrDefault("VFIOVM_CACHE", System.getProperty("user.home") + "/.cache/vfiovm");
    return Path.of(cache, "uapi-headers-6.12");
  }

  /** Compiles bench/native/pin.c with cc (in this run: the floor is built by the same toolchain each time). */
  Path buildPin() throws IOException, InterruptedException {
    Path source = repoRoot().resolve("bench/native/pin.c");
    Path binary = out.resolve("pin");
    Files.createDirectories(out);
    List<String> command = new ArrayList<>(List.of("cc", "-O2", "-Wall"));
    if (Files.isRegularFile(uapiHeaders().resolve("linux/iommufd.h"))) {
      command.addAll(List.of("-I", uapiHeaders().toString()));
    }
    command.addAll(List.of("-o", binary.toString(), source.toString()));
    Process cc = new ProcessBuilder(command).redirectErrorStream(true).start();
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
    Figure host = hostPin();
    if (p6Guest == null) {
      return List.of(host);
    }
    return List.of(guestPin(host));
  }

  /**
   * p6 from the iommufd guest (GuestPin, run by e2e/iommufd/p6-pin.sh): the headline is the guest's ratio; this
   * host's io_uring figure stays in the detail ("host_io_uring").
   */
  Figure guestPin(Figure host) throws Exception {
    Path dir;
    String how;
    if (p6Guest.equals("boot")) {
      dir = out.resolve("p6-guest");
      bootGuestForPin(dir);
      how = "booted by this run";
    } else {
      dir = Path.of(p6Guest);
      how = "read from " + dir + " (a guest run of its own, e.g. the guest tier's)";
    }
    Path json = dir.resolve("p6/p6-pin.json");
    if (!Files.isRegularFile(json)) {
      throw new IllegalStateException("no p6 guest figure at " + json + " (see " + dir + "/console.log)");
    }
    @SuppressWarnings("unchecked")
    Map<String, Object> g = new com.fasterxml.jackson.databind.ObjectMapper().readValue(json.toFile(), Map.class);
    double javaMs = ((Number) g.get("java_ms")).doubleValue();
    double cMs = ((Number) g.get("c_ms")).doubleValue();
    long bytes = ((Number) g.get("bytes")).longValue();
    Map<String, Object> detail = new LinkedHashMap<>(g);
    detail.put("guest_run", how + " at " + Files.getLastModifiedTime(json));
    Map<String, Object> hostDetail = new LinkedHashMap<>(host.detail());
    hostDetail.put("java_ms", host.value());
    hostDetail.put("c_ms", host.baseline());
    hostDetail.put("ratio", host.ratio());
    hostDetail.put("where", host.where());
    detail.put("host_io_uring", hostDetail);
    return new Figure("p6_pin_ratio", javaMs, "ms", cMs, "pin.c: the same syscalls (memfd, IOAS_ALLOC, VFIO "
        + "bind + attach, IOMMU_IOAS_MAP) on the same " + (bytes >> 20) + " MiB, interleaved rounds",
        javaMs / cMs, "<= 1.2", "iommufd guest (L1 under TCG, emulated VT-d, an e1000e on vfio-pci, real root: "
            + "the host has no /dev/iommu and an 8 MiB memlock hard limit); " + g.get("cores") + " vCPUs, load "
            + g.get("load1") + "; every round's VmPin checked (pins_seen=" + g.get("pins_seen") + ")",
        detail, Machine.now());
  }

  /** Boots L1 (e2e/iommufd/boot-guest.sh) for e2e/iommufd/p6-pin.sh with this run's classes and pin binary. */
  void bootGuestForPin(Path dir) throws Exception {
    Path repo = repoRoot();
    Path pin = buildPin();
    String cp = String.join(File.pathSeparator, location(GuestPin.class), location(Kernel.class),
        location(Native.class));
    Files.createDirectories(dir);
    Files.deleteIfExists(dir.resolve("p6/p6-pin.json"));
    ProcessBuilder pb = new ProcessBuilder("bash", repo.resolve("e2e/iommufd/boot-guest.sh").toString(),
        dir.toString(), repo.resolve("e2e/iommufd/p6-pin.sh").toString(), "P6_CP=" + cp, "P6_PIN=" + pin,
        "P6_ROUNDS=3")
        .redirectErrorStream(true).redirectOutput(dir.resolve("boot.log").toFile());
    pb.environment().putIfAbsent("GUEST_TIMEOUT", "900");
    System.out.println("p6: booting the iommufd guest for the 1 GiB pin (TCG: minutes); log " + dir.resolve("boot.log"));
    Process p = pb.start();
    if (!p.waitFor(20, TimeUnit.MINUTES) || p.exitValue() != 0) {
      p.destroyForcibly();
      throw new IllegalStateException("the p6 guest run failed: see " + dir.resolve("boot.log"));
    }
  }

  /** p6 on this host: io_uring registration of what the memlock limit allows. */
  Figure hostPin() throws Exception {
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
    return new Figure("p6_pin_ratio", javaNs / 1e6, "ms", cNs / 1e6,
        "pin.c: the same syscalls on the same " + (size >> 20) + " MiB", javaNs / cNs, "<= 1.2",
        "host, io_uring (memlock hard limit " + (limit >> 20) + " MiB bounds the size; the 1 GiB memfd + IOAS_MAP "
            + "figure needs the iommufd guest: bash bench/run.sh --p6-guest, docs/performance.md)", detail,
        Machine.now());
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
