package dev.vfiovm.local;

import io.fabric8.kubeapitest.KubeAPIServer;
import java.time.Duration;
import java.time.Instant;
import java.time.LocalTime;
import java.time.ZoneId;
import java.time.ZoneOffset;
import java.util.TimeZone;

/**
 * Starts a kube-api-test server so that its readiness wait works at any hour.
 *
 * <p>kube-api-test 7.5.2 ({@code ProcessReadinessChecker.pollWithTimeout}) gives up when
 * {@code LocalTime.now().isAfter(start.plus(timeout))}. A {@link LocalTime} wraps at midnight, so a start within
 * {@code timeout} of local midnight reads as already expired and fails at once with "Kube API Server did not
 * start properly" (CI failed that way at 23:57 UTC). Only inside that window, the JVM's default zone is moved for
 * the start so that local time is midday, then restored: nothing else changes on any other start.
 */
public final class ApiServerStart {
  private ApiServerStart() {}

  /** Starts {@code server}, whose configured startup timeout is {@code timeout}. */
  public static void start(KubeAPIServer server, Duration timeout) {
    TimeZone original = TimeZone.getDefault();
    Instant now = Instant.now();
    boolean shift = wrapsMidnight(now, original.toZoneId(), timeout);
    if (shift) {
      TimeZone.setDefault(TimeZone.getTimeZone(middayZone(now)));
    }
    try {
      server.start();
    } finally {
      if (shift) {
        TimeZone.setDefault(original);
      }
    }
  }

  /** Whether a wait of {@code timeout} (under 24 h) begun at {@code now} in {@code zone} crosses local midnight. */
  static boolean wrapsMidnight(Instant now, ZoneId zone, Duration timeout) {
    LocalTime start = LocalTime.ofInstant(now, zone);
    return start.plus(timeout).isBefore(start);
  }

  /** A whole-minute offset under which {@code now} is within a minute of 12:00 local time. */
  static ZoneOffset middayZone(Instant now) {
    int utcSecondOfDay = LocalTime.ofInstant(now, ZoneOffset.UTC).toSecondOfDay();
    int offset = 12 * 3600 - utcSecondOfDay; // in (-12 h, +12 h]
    return ZoneOffset.ofTotalSeconds(offset / 60 * 60);
  }
}
