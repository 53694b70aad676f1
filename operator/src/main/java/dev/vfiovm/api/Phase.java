package dev.vfiovm.api;

/** Lifecycle phase of a VfioVm. */
public enum Phase {
  Pending,
  Placed,
  Starting,
  Running,
  Failed,
  Terminating
}
