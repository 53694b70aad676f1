package dev.vfiovm.api;

/** Which kernel counter bounds the VM's pinned memory. */
public enum Accounting {
  /** iommufd RLIMIT_MODE=1: pins charged to the VM process's mm (plus the per-VM UID). */
  PerProcess,
  /** pins charged to the per-VM host UID's user_struct only. */
  PerUser
}
