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
    return nextFree(taken, start + size - 1);
  }

  /**
   * The hand-out order: the first UID after {@code cursor} (the last UID handed out) that is not in
   * {@code taken}, wrapping from the end of the range to its start; empty when every UID is taken. A UID
   * freed a moment ago is therefore the last to come back: every other free UID is handed out before the
   * cursor reaches it again. A cursor outside the range starts the search at the range's start.
   */
  public OptionalLong nextFree(Set<Long> taken, long cursor) {
    long offset = contains(cursor) ? cursor - start + 1 : 0;
    for (long i = 0; i < size; i++) {
      long uid = start + (offset + i) % size;
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
