package dev.vfiovm.e2e.cluster;

/**
 * The host reserve that makes a node's pinned-memory budget (allocatable - reserve) hold exactly N VMs of one
 * memlock limit: budget = N x limit + limit / 2, so VM N+1 does not fit.
 */
public final class BudgetPlan {
  private BudgetPlan() {}

  public static long hostReserveFittingExactly(long allocatableBytes, long limitBytes, int vms) {
    if (limitBytes <= 0 || vms < 1) {
      throw new IllegalArgumentException("limit must be positive and vms >= 1, was " + limitBytes + ", " + vms);
    }
    long budget = Math.addExact(Math.multiplyExact(limitBytes, vms), limitBytes / 2);
    if (budget > allocatableBytes) {
      throw new IllegalArgumentException(
          "node allocatable memory " + allocatableBytes + " bytes cannot hold " + vms + " VMs of limit "
              + limitBytes + " bytes; use a smaller e2e.vm.memory or e2e.memlock.overhead");
    }
    return allocatableBytes - budget;
  }
}
