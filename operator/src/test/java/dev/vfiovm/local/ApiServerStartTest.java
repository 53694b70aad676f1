package dev.vfiovm.local;

import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import java.time.Instant;
import java.time.LocalTime;
import java.time.ZoneId;
import java.time.ZoneOffset;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.constraints.LongRange;
import org.junit.jupiter.api.Test;

class ApiServerStartTest {
  private static final Duration TIMEOUT = Duration.ofSeconds(180);

  @Test
  void theFailedCiStartThreeMinutesBeforeMidnightIsInsideTheWindowAndOneAnHourEarlierIsNot() {
    assertThat(ApiServerStart.wrapsMidnight(Instant.parse("2026-12-01T23:57:05Z"), ZoneOffset.UTC, TIMEOUT)).isTrue();
    assertThat(ApiServerStart.wrapsMidnight(Instant.parse("2026-12-01T22:57:05Z"), ZoneOffset.UTC, TIMEOUT)).isFalse();
    assertThat(ApiServerStart.wrapsMidnight(Instant.parse("2026-12-01T22:57:05Z"), ZoneId.of("Europe/Berlin"), TIMEOUT))
        .isTrue();
  }

  @Property
  void underTheMiddayZoneNoWaitOfUpToElevenHoursCrossesMidnight(
      @ForAll @LongRange(min = 0, max = 4_102_444_800L) long epochSecond,
      @ForAll @LongRange(min = 1, max = 11 * 3600) long timeoutSeconds) {
    Instant now = Instant.ofEpochSecond(epochSecond);
    ZoneOffset zone = ApiServerStart.middayZone(now);
    LocalTime local = LocalTime.ofInstant(now, zone);
    assertThat(Math.abs(local.toSecondOfDay() - 12 * 3600)).isLessThan(60);
    assertThat(ApiServerStart.wrapsMidnight(now, zone, Duration.ofSeconds(timeoutSeconds))).isFalse();
  }
}
