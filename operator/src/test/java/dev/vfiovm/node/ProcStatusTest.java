package dev.vfiovm.node;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.List;
import org.junit.jupiter.api.Test;

class ProcStatusTest {
  @Test
  void parsesCredentialsAndPinnedMemory() {
    ProcStatus s =
        ProcStatus.parse(
            List.of(
                "Name:\tjava",
                "Uid:\t1879048300\t1879048300\t1879048300\t1879048300",
                "Gid:\t1879048300\t1879048300\t1879048300\t1879048300",
                "VmLck:\t       0 kB",
                "VmPin:\t    3072 kB"),
            "0 1879048300 1");
    assertThat(s.uids()).containsOnly(1879048300L).hasSize(4);
    assertThat(s.gids()).containsOnly(1879048300L);
    assertThat(s.vmPinBytes()).isEqualTo(3L << 20);
    assertThat(s.vmLckBytes()).isZero();
    assertThat(s.uidMap()).isEqualTo("0 1879048300 1");
  }
}
