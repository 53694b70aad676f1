package dev.vfiovm.bench;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import dev.vfiovm.testing.Prerequisites;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The benchmark's CI variant: small counts, proves every figure is still produced and summary.json written.
 * It never judges a ratio or a time (docs/performance.md).
 */
class BenchmarkShortIT {
  static final List<String> FIGURES = List.of("p1_writes_per_vm", "p2_burst_ratio", "p3_latency_p99_ms",
      "p4_heap_mib_10k", "p5_restart_s_10k", "p5_restart_writes", "p6_pin_ratio", "p7_launch_overhead_ms");

  @BeforeAll
  static void prerequisites() {
    // p1-p5 need the kube-apiserver binaries: the fixture itself checks them
    Prerequisites.require("root".equals(System.getProperty("user.name")), "root (p7 runs the node agent)");
    Prerequisites.require(Files.isExecutable(Path.of("/usr/bin/cc")), "cc (p6 builds bench/native/pin.c)");
    String qemu = System.getenv("VFIOVM_QEMU");
    Prerequisites.require(qemu != null && Files.isExecutable(Path.of(qemu)),
        "QEMU 10 at VFIOVM_QEMU (" + qemu + "; bash hack/setup.sh)");
    Prerequisites.require(Files.isRegularFile(Path.of(System.getProperty("user.home"),
        ".cache/vfiovm/guest/tiny/kernel.elf")), "the tiny guest (hack/setup.d/36-guest.sh)");
    String jar = System.getenv("VFIOVM_JAR");
    Prerequisites.require(jar != null && Files.isRegularFile(Path.of(jar)), "the shaded jar at VFIOVM_JAR (mvn package)");
  }

  @Test
  void everyFigureIsProducedAndWritten() throws Exception {
    Path out = Path.of(System.getProperty("bench.out", "target/bench"));
    Map<String, Benchmark.Figure> figures = new Benchmark(Benchmark.Settings.ci(out)).run();

    assertThat(figures).containsKeys(FIGURES.toArray(String[]::new));
    for (String name : FIGURES) {
      assertThat(figures.get(name).value()).as(name).isFinite();
    }
    JsonNode summary = new ObjectMapper().readTree(Files.readString(out.resolve("summary.json")));
    for (String name : FIGURES) {
      assertThat(summary.path("figures").path(name).path("value").isNumber()).as(name + " in summary.json").isTrue();
    }
    assertThat(summary.path("machine").path("cores").asInt()).isPositive();
  }
}
