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

  @Test
  void sumsTheBuffersAnIoUringHoldsRegistered() {
    java.util.List<String> fdinfo = java.util.List.of(
        "SqThread:\t-1", "UserFiles:\t0", "UserBufs:\t2", "    0: 0x7f5f39876000/1048576", "    1: 0x7f5f30000000/4096",
        "PollList:", "CqOverflowList:");
    org.assertj.core.api.Assertions.assertThat(ProcStatus.registeredBytes(fdinfo)).isEqualTo(1048576 + 4096);
    org.assertj.core.api.Assertions.assertThat(ProcStatus.registeredBytes(java.util.List.of("UserBufs:\t0", "PollList:")))
        .isZero();
  }
}
