package dev.vfiovm.api;

/** Lifecycle phase of a VfioVm. */
public enum Phase {
  Pending,
  Placed,
  Starting,
  Running,
  Failed,
  /** The guest powered off (or the VM was stopped on the node): every pin released; re-create to start again. */
  Stopped,
  Terminating
}
