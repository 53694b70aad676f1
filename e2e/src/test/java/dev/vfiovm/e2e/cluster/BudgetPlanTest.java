package dev.vfiovm.e2e.cluster;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;

class BudgetPlanTest {
  static final long MI = 1 << 20;

  @Test
  void reserveLeavesRoomForExactlyTwoVms() {
    long allocatable = 16L * 1024 * MI;
    long limit = 2 * MI;

    long reserve = BudgetPlan.hostReserveFittingExactly(allocatable, limit, 2);

    long budget = allocatable - reserve;
    assertThat(budget).isGreaterThanOrEqualTo(2 * limit).isLessThan(3 * limit);
  }

  @Test
  void tooSmallANodeSaysWhatToChange() {
    assertThatThrownBy(() -> BudgetPlan.hostReserveFittingExactly(4 * MI, 2 * MI, 2))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("cannot hold 2 VMs")
        .hasMessageContaining("e2e.vm.memory");
  }
}
