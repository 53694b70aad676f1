package dev.vfiovm.testing;

import org.junit.jupiter.api.Assertions;
import org.junit.jupiter.api.Assumptions;

/**
 * A test tier's prerequisite (a binary, root, a kernel feature). On a developer machine a missing one skips
 * the tier with a message saying exactly what is missing; in CI (CI=true) it fails, because a tier that
 * skips itself there is a tier that silently stopped testing.
 */
public final class Prerequisites {
  private Prerequisites() {}

  public static boolean inCi() {
    return "true".equalsIgnoreCase(System.getenv("CI"));
  }

  /** Skips (developer) or fails (CI) unless {@code present}; {@code missing} says what to install or run. */
  public static void require(boolean present, String missing) {
    if (present) {
      return;
    }
    if (inCi()) {
      Assertions.fail("CI=true and a test prerequisite is missing: " + missing);
    }
    Assumptions.abort("skipped, prerequisite missing: " + missing);
  }
}
