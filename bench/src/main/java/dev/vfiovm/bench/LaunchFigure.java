package dev.vfiovm.bench;

import dev.vfiovm.bench.Benchmark.Figure;
import dev.vfiovm.bench.Benchmark.Machine;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * p7: vfiovm's launch chain (the node agent: limit, setpriv, user namespace, the VM-side launcher pinning
 * guest RAM, QEMU) until the guest runs - the agent's own definition: QMP {@code query-status} says running and
 * the report says Running - vs the same QEMU command (as the agent logged it, fd-passed pieces replaced by
 * their plain equivalents: memfd backend, QMP on a unix socket) started by hand until QMP says running. Same
 * tiny guest (e2e/guest, 4 MiB), TCG, on this host.
 */
final class LaunchFigure {
  static final long UID = 1879113000L;

  private LaunchFigure() {}

  static List<Figure> measure(Path out, boolean shortRun) throws Exception {
    Path jar = Path.of(env("VFIOVM_JAR", NativeFigures.repoRoot().resolve("operator/target/vfiovm.jar").toString()));
    Path guest = Path.of(System.getProperty("user.home"), ".cache/vfiovm/guest/tiny/kernel.elf");
    String qemu = env("VFIOVM_QEMU", "/opt/vfiovm/qemu10/usr/bin/qemu-system-x86_64");
    for (Path need : List.of(jar, guest, Path.of(qemu))) {
      if (!Files.exists(need)) {
        throw new IllegalStateException("p7 needs " + need + " (mvn -pl operator -am package; bash hack/setup.sh "
            + "for QEMU 10 and the tiny guest)");
      }
    }
    // the VM's UID must read the guest: a world-readable copy outside $HOME
    Path dir = out.resolve("p7");
    Files.createDirectories(dir);
    Path kernel = dir.resolve("kernel.elf");
    Files.copy(guest, kernel, StandardCopyOption.REPLACE_EXISTING);
    int runs = shortRun ? 1 : 5;
    long[] agent = new long[runs];
    long[] bare = new long[runs];
    List<String> vmm = null;
    for (int i = 0; i < runs; i++) {
      Result a = agentRun(jar, kernel, dir, i);
      agent[i] = a.ns();
      vmm = a.vmm();
      bare[i] = byHand(byHandCommand(vmm, dir), dir);
    }
    Arrays.sort(agent);
    Arrays.sort(bare);
    double agentMs = agent[runs / 2] / 1e6;
    double bareMs = bare[runs / 2] / 1e6;
    Map<String, Object> detail = new LinkedHashMap<>();
    detail.put("runs", runs);
    detail.put("vfiovm_chain_ms", agentMs);
    detail.put("by_hand_ms", bareMs);
    detail.put("ratio_chain_vs_by_hand", agentMs / bareMs);
    detail.put("targetRatio", (agentMs - bareMs) / 300.0);
    detail.put("qemu", String.join(" ", byHandCommand(vmm, dir)));
    return List.of(new Figure("p7_launch_overhead_ms", agentMs - bareMs, "ms", bareMs,
        "the same QEMU command by hand until QMP query-status running", agentMs / bareMs, "<= 300 ms over bare",
        "host, TCG, tiny guest (4 MiB), io-uring backend: the iommufd guest tier is ~35 min of TCG per run",
        detail, Machine.now()));
  }

  record Result(long ns, List<String> vmm) {}

  static String env(String name, String fallback) {
    String v = System.getenv(name);
    return v == null || v.isBlank() ? fallback : v;
  }

  /** The node agent as a node pod runs it (io-uring backend), until its report says Running. */
  static Result agentRun(Path jar, Path kernel, Path dir, int i) throws Exception {
    Path report = dir.resolve("agent-" + i + ".json");
    Path err = dir.resolve("agent-" + i + ".err");
    Path log = dir.resolve("agent-" + i + ".out");
    Files.deleteIfExists(report);
    List<String> cmd = List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-jar",
        jar.toString(), "node-agent", "--vm", "bench/p7-" + i, "--host-uid", Long.toString(UID + i),
        "--memory", "4Mi", "--memlock", "8Mi", "--dma-backend", "io-uring", "--accounting", "per-user",
        "--kernel", kernel.toString(), "--report", report.toString(), "--powerdown-timeout", "1");
    long t0 = System.nanoTime();
    Process p = new ProcessBuilder(cmd).redirectOutput(log.toFile()).redirectError(err.toFile()).start();
    try {
      long deadline = t0 + TimeUnit.SECONDS.toNanos(120);
      while (true) {
        String json = Files.exists(report) ? Files.readString(report) : "";
        if (json.contains("\"phase\":\"Running\"")) {
          break;
        }
        if (json.contains("\"phase\":\"Failed\"") || !p.isAlive() || System.nanoTime() > deadline) {
          throw new IllegalStateException("p7: the node agent did not reach Running: " + json + " "
              + Files.readString(err));
        }
        Thread.sleep(5);
      }
      long ns = System.nanoTime() - t0;
      List<String> lines = new ArrayList<>(Files.readAllLines(log));
      lines.addAll(Files.readAllLines(err));
      String vmmLine = lines.stream().filter(l -> l.contains("VMM: ")).findFirst()
          .orElseThrow(() -> new IllegalStateException("p7: the agent logged no VMM line"));
      return new Result(ns, List.of(vmmLine.substring(vmmLine.indexOf("VMM: ") + 5).trim().split(" ")));
    } finally {
      p.destroy();
      if (!p.waitFor(30, TimeUnit.SECONDS)) {
        p.destroyForcibly();
      }
    }
  }

  /** The agent's QEMU command with its fd-passed pieces replaced as a user would write them by hand. */
  static List<String> byHandCommand(List<String> vmm, Path dir) {
    List<String> out = new ArrayList<>();
    for (String a : vmm) {
      if (a.startsWith("memory-backend-file,") && a.contains("mem-path=/proc/self/fd/")) {
        out.add(a.replace("memory-backend-file,", "memory-backend-memfd,").replaceAll(",mem-path=[^,]*", ""));
      } else if (a.startsWith("socket,id=qmp,fd=")) {
        out.add("socket,id=qmp,path=" + dir.resolve("qmp.sock") + ",server=on,wait=off");
      } else if (a.startsWith("socket,id=console,fd=")) {
        out.add("null,id=console");
      } else {
        out.add(a);
      }
    }
    return out;
  }

  /** Starts QEMU, polls QMP query-status until running; ns from start. */
  static long byHand(List<String> cmd, Path dir) throws Exception {
    Path sock = dir.resolve("qmp.sock");
    Files.deleteIfExists(sock);
    long t0 = System.nanoTime();
    Process p = new ProcessBuilder(cmd).redirectOutput(ProcessBuilder.Redirect.DISCARD)
        .redirectError(dir.resolve("by-hand.err").toFile()).start();
    try {
      long deadline = t0 + TimeUnit.SECONDS.toNanos(60);
      while (true) {
        if (!p.isAlive() || System.nanoTime() > deadline) {
          throw new IllegalStateException("p7: QEMU by hand did not run: " + Files.readString(dir.resolve("by-hand.err")));
        }
        if (Files.exists(sock) && running(sock)) {
          return System.nanoTime() - t0;
        }
        Thread.sleep(5);
      }
    } finally {
      p.destroyForcibly();
      p.waitFor(30, TimeUnit.SECONDS);
    }
  }

  static boolean running(Path sock) {
    try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
      ch.connect(UnixDomainSocketAddress.of(sock));
      BufferedReader in = new BufferedReader(new InputStreamReader(Channels.newInputStream(ch), StandardCharsets.UTF_8));
      OutputStream os = Channels.newOutputStream(ch);
      in.readLine(); // greeting
      os.write("{\"execute\":\"qmp_capabilities\"}\n".getBytes(StandardCharsets.UTF_8));
      readReturn(in);
      os.write("{\"execute\":\"query-status\"}\n".getBytes(StandardCharsets.UTF_8));
      String status = readReturn(in);
      return status != null && status.contains("\"running\": true") || status != null && status.contains("\"running\":true");
    } catch (IOException e) {
      return false;
    }
  }

  private static String readReturn(BufferedReader in) throws IOException {
    String line;
    while ((line = in.readLine()) != null) {
      if (line.contains("\"return\"") || line.contains("\"error\"")) {
        return line;
      }
    }
    return null;
  }
}
