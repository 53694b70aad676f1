package dev.vfiovm.controller;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;

class MemlockPolicyTest {
  static final long GI = 1L << 30;

  @Test
  void withoutViommuTheGuestMemoryIsPinnedOnce() {
    assertThat(MemlockPolicy.limitBytes(4 * GI, 3, false, GI)).isEqualTo(5 * GI);
  }

  @Test
  void withViommuEachDevicePinsSeparately() {
    assertThat(MemlockPolicy.limitBytes(4 * GI, 3, true, GI)).isEqualTo(13 * GI);
    assertThat(MemlockPolicy.limitBytes(4 * GI, 0, true, GI)).isEqualTo(5 * GI);
  }

  @Test
  void theOverheadIsASetting() {
    assertThat(MemlockPolicy.limitBytes(GI, 1, false, 0)).isEqualTo(GI);
    assertThat(MemlockPolicy.limitBytes(GI, 1, false, 512L << 20)).isEqualTo(GI + (512L << 20));
  }

  @Test
  void neverUnlimited() {
    assertThatThrownBy(() -> MemlockPolicy.limitBytes(Long.MAX_VALUE / 2, 3, true, GI))
        .isInstanceOf(ArithmeticException.class);
    assertThatThrownBy(() -> MemlockPolicy.limitBytes(0, 1, false, GI)).isInstanceOf(IllegalArgumentException.class);
  }
}
