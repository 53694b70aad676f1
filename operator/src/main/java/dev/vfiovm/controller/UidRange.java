package dev.vfiovm.controller;

import java.util.OptionalLong;
import java.util.Set;

/** The host UIDs the operator may hand to VMs: [start, start + size). */
public record UidRange(long start, long size) {
  public boolean contains(long uid) {
    return uid >= start && uid < start + size;
  }

  /** The lowest UID of the range not in {@code taken}; empty when the range is exhausted. */
  public OptionalLong firstFree(Set<Long> taken) {
    for (long uid = start; uid < start + size; uid++) {
      if (!taken.contains(uid)) {
        return OptionalLong.of(uid);
      }
    }
    return OptionalLong.empty();
  }

  @Override
  public String toString() {
    return start + ".." + (start + size - 1);
  }
}
