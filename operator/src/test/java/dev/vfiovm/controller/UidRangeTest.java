package dev.vfiovm.controller;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.HashSet;
import java.util.OptionalLong;
import java.util.Set;
import org.junit.jupiter.api.Test;

class UidRangeTest {
  static final UidRange RANGE = new UidRange(1000, 5);

  @Test
  void theNextFreeUidAfterTheCursorWrapsAround() {
    assertThat(RANGE.nextFree(Set.of(), 1004).getAsLong()).isEqualTo(1000); // initial cursor: the last UID
    assertThat(RANGE.nextFree(Set.of(), 1001).getAsLong()).isEqualTo(1002);
    assertThat(RANGE.nextFree(Set.of(1002L, 1003L), 1001).getAsLong()).isEqualTo(1004);
    assertThat(RANGE.nextFree(Set.of(1004L, 1000L), 1003).getAsLong()).isEqualTo(1001);
    assertThat(RANGE.nextFree(Set.of(1000L, 1001L, 1002L, 1003L, 1004L), 1002)).isEmpty();
    assertThat(RANGE.nextFree(Set.of(), 7)).as("a cursor outside the range starts at its start")
        .hasValue(1000);
  }

  @Test
  void aUidJustFreedIsTheLastToComeBack() {
    // VMs take 1000..1002; 1001 is freed; every other free UID goes out before 1001 again
    Set<Long> taken = new HashSet<>(Set.of(1000L, 1002L));
    long cursor = 1002;
    long next = RANGE.nextFree(taken, cursor).getAsLong();
    assertThat(next).isEqualTo(1003);
    taken.add(next);
    next = RANGE.nextFree(taken, next).getAsLong();
    assertThat(next).isEqualTo(1004);
    taken.add(next);
    assertThat(RANGE.nextFree(taken, next)).hasValue(1001);
  }

  /**
   * The property, over every taken set of small ranges and every cursor: the answer is free, in the range, and
   * no free UID lies strictly between the cursor and it (walking forward, wrapping); empty only when all are
   * taken. Exhaustive rather than sampled: 2^size taken sets x size cursors for sizes 1..8.
   */
  @Test
  void nextFreeIsTheFirstFreeUidWalkingForwardFromTheCursor() {
    for (int size = 1; size <= 8; size++) {
      UidRange range = new UidRange(500, size);
      for (int mask = 0; mask < (1 << size); mask++) {
        Set<Long> taken = new HashSet<>();
        for (int i = 0; i < size; i++) {
          if ((mask & (1 << i)) != 0) {
            taken.add(500L + i);
          }
        }
        for (long cursor = 500; cursor < 500 + size; cursor++) {
          OptionalLong free = range.nextFree(taken, cursor);
          if (taken.size() == size) {
            assertThat(free).isEmpty();
            continue;
          }
          long uid = free.getAsLong();
          assertThat(range.contains(uid)).isTrue();
          assertThat(taken).doesNotContain(uid);
          long steps = Math.floorMod(uid - cursor - 1, (long) size);
          for (long k = 0; k < steps; k++) {
            assertThat(taken).contains(500 + Math.floorMod(cursor - 500 + 1 + k, (long) size));
          }
        }
      }
    }
  }
}
