package dev.vfiovm.controller;

/**
 * The one vocabulary of reasons, used by the VfioVm's conditions and by its events. Every
 * {@link Placement.Reason} has a value of the same name ({@link #of(Placement.Reason)}), so a placement reason
 * added there only needs its name added here (ReasonTest fails until it is).
 *
 * <p>{@link #refusal}: whether a Ready condition with this reason means the VM is held back by something to
 * change or wait for (an event of type Warning), as opposed to a step of the normal flow (Normal). Reasons the
 * node agent or the kubelet report (an errno name such as ENOMEM, a kubelet reason such as OutOfmemory) are no
 * values here: {@link #isRefusal(String)} counts every unknown reason as a refusal.
 */
public enum Reason {
  // the normal flow
  Assigned(false),
  Placed(false),
  NotStarted(false),
  WaitingForUid(false),
  WaitingForPlacement(false),
  AgentNotReported(false),
  Starting(false),
  Running(false),
  LimitApplied(false),
  Mapped(false),
  AgentStopped(false),
  Terminating(false),
  NodePodCreated(false),
  DeletingNodePod(false),
  Released(false),
  // hot-plug (issue 14): device states and their events
  DevicesAttached(false),
  DevicePlugging(false),
  DeviceAttached(false),
  DeviceUnplugging(false),
  DeviceUnplugged(false),
  DeviceHeldByNodePod(false),
  DevicePlugFailed(true),
  DevicesWaiting(true),
  VmNotRunning(false),
  HotplugNeedsIommufd(true),
  // held back: the user changes something, or it waits
  InvalidSpec(true),
  UidRangeExhausted(true),
  NodeGone(true),
  AgentFailed(true),
  AgentExited(true),
  PodFailed(true),
  InitContainerFailed(true),
  ReconcileError(true),
  SpecChangedAfterPlacement(true),
  UidQuarantined(true),
  // placement (Placement.Reason, same names; the last three are the ones Placement may add)
  InsufficientBudget(true),
  NodeNotFound(true),
  NoMatchingNode(true),
  NodeSelectorMismatch(true),
  DeviceConflict(true),
  MissingDeviceResource(true),
  NodeNotReady(true),
  UntoleratedTaint(true),
  InsufficientNodeMemory(true);

  public final boolean refusal;

  Reason(boolean refusal) {
    this.refusal = refusal;
  }

  /** The reason of that placement outcome (same name). */
  public static Reason of(Placement.Reason reason) {
    return valueOf(reason.name());
  }

  /** Whether a condition reason (one of these, or an agent's or kubelet's own) means held back. */
  public static boolean isRefusal(String reason) {
    if (reason == null) {
      return false;
    }
    try {
      return valueOf(reason).refusal;
    } catch (IllegalArgumentException e) {
      return true;
    }
  }
}
