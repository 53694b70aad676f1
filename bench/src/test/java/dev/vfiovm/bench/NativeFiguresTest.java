package dev.vfiovm.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.vfiovm.bench.Benchmark.Figure;
import dev.vfiovm.bench.Benchmark.Machine;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** p6's headline from a guest run's output (--p6-guest DIR), with the host's io_uring figure as its detail. */
class NativeFiguresTest {
  @TempDir Path dir;

  static final Figure HOST = new Figure("p6_pin_ratio", 13.5, "ms", 9.5, "pin.c", 13.5 / 9.5, "<= 1.2",
      "host, io_uring", Map.of("bytes", 7340032L), Machine.now());

  @AfterEach
  void reset() {
    NativeFigures.p6Guest = null;
  }

  @Test
  void theGuestFigureIsTheHeadlineAndTheHostOneItsDetail() throws Exception {
    Files.createDirectories(dir.resolve("p6"));
    Files.writeString(dir.resolve("p6/p6-pin.json"), "{\"figure\":\"p6_pin_ratio\",\"where\":\"iommufd guest\","
        + "\"bytes\":1073741824,\"rounds\":2,\"java_ms\":10594.6,\"c_ms\":8065.7,\"ratio\":1.3135,"
        + "\"pins_seen\":true,\"cores\":2,\"load1\":0.9}");
    NativeFigures.p6Guest = dir.toString();
    Figure f = new NativeFigures(dir.resolve("out"), true).guestPin(HOST);
    assertThat(f.name()).isEqualTo("p6_pin_ratio");
    assertThat(f.value()).isEqualTo(10594.6);
    assertThat(f.baseline()).isEqualTo(8065.7);
    assertThat(f.ratio()).isCloseTo(10594.6 / 8065.7, org.assertj.core.data.Offset.offset(1e-9));
    assertThat(f.where()).startsWith("iommufd guest").contains("pins_seen=true");
    assertThat(f.baselineWhat()).contains("IOMMU_IOAS_MAP", "1024 MiB");
    assertThat(f.detail()).containsEntry("bytes", 1073741824).containsKey("guest_run");
    @SuppressWarnings("unchecked")
    Map<String, Object> host = (Map<String, Object>) f.detail().get("host_io_uring");
    assertThat(host).containsEntry("java_ms", 13.5).containsEntry("c_ms", 9.5).containsEntry("bytes", 7340032L)
        .containsEntry("where", "host, io_uring");
  }

  @Test
  void aGuestRunWithoutTheFigureIsAnErrorNamingWhereToLook() {
    NativeFigures.p6Guest = dir.toString();
    assertThatThrownBy(() -> new NativeFigures(dir.resolve("out"), true).guestPin(HOST))
        .hasMessageContaining(dir.resolve("p6/p6-pin.json").toString()).hasMessageContaining("console.log");
  }
}
