package dev.vfiovm.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.vfiovm.bench.GuestPin.Round;
import java.util.List;
import org.junit.jupiter.api.Test;

class GuestPinTest {
  static final long GIB = 1L << 30;

  @Test
  void pinCsLineIsReadInBytes() {
    Round r = GuestPin.parseC("NS 123456 BEFORE 0 MAPPED 1048576 AFTER 0\n");
    assertThat(r).isEqualTo(new Round(123456, 0, GIB, 0));
    assertThat(r.pinned(GIB)).isTrue();
  }

  @Test
  void anythingElseFromPinCIsAnError() {
    assertThatThrownBy(() -> GuestPin.parseC("IOMMU_IOAS_MAP: Cannot allocate memory"))
        .hasMessageContaining("Cannot allocate memory");
  }

  @Test
  void aRoundCountsOnlyIfVmPinGrewByTheSizeAndCameBack() {
    assertThat(new Round(1, 4096, 4096 + GIB, 4096).pinned(GIB)).isTrue();
    assertThat(new Round(1, 0, 0, 0).pinned(GIB)).as("nothing pinned").isFalse();
    assertThat(new Round(1, 0, GIB, GIB).pinned(GIB)).as("never unpinned").isFalse();
    assertThat(new Round(1, 0, GIB / 2, 0).pinned(GIB)).as("half pinned").isFalse();
  }

  @Test
  void vmPinIsReadFromStatusInBytes() {
    String status = "Name:\tjava\nVmLck:\t       0 kB\nVmPin:\t 1048580 kB\nVmHWM:\t  2000 kB\n";
    assertThat(GuestPin.vmPinBytes(status)).isEqualTo(1048580L * 1024);
    assertThatThrownBy(() -> GuestPin.vmPinBytes("Name:\tx\n")).hasMessageContaining("VmPin");
  }

  @Test
  void medianOfRounds() {
    assertThat(GuestPin.median(List.of(new Round(5, 0, 0, 0), new Round(1, 0, 0, 0), new Round(3, 0, 0, 0))))
        .isEqualTo(3);
    assertThat(GuestPin.median(List.of(new Round(4, 0, 0, 0), new Round(2, 0, 0, 0)))).isEqualTo(3);
  }
}
