package dev.vfiovm.api;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonPropertyOrder;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.time.Instant;
import java.time.format.DateTimeParseException;
import java.util.List;

/**
 * A node's audit of host UIDs (contract C2): the node daemon scans {@code /proc/*}{@code /status} every audit
 * interval and merge-patches its own Node's annotation {@link #ANNOTATION} with this JSON. {@code liveUids}:
 * sorted, every UID of [uidRangeStart, uidRangeStart + uidRangeSize) that is the real, effective, saved or fs
 * UID of at least one process on the host. Written on every scan, so {@code scannedAt} always moves.
 *
 * @param scannedAt RFC 3339 UTC time of the scan, e.g. {@code 2026-12-01T14:00:00Z}
 */
@JsonIgnoreProperties(ignoreUnknown = true)
@JsonPropertyOrder({"scannedAt", "uidRangeStart", "uidRangeSize", "liveUids"})
public record UidAudit(String scannedAt, long uidRangeStart, long uidRangeSize, List<Long> liveUids) {
  public static final String ANNOTATION = "vfiovm.dev/uid-audit";
  private static final ObjectMapper JSON = new ObjectMapper();

  public UidAudit {
    liveUids = liveUids == null ? List.of() : List.copyOf(liveUids);
  }

  /** Parses the annotation's value; IllegalArgumentException saying what is wrong. */
  public static UidAudit fromJson(String json) {
    try {
      return JSON.readValue(json, UidAudit.class);
    } catch (JsonProcessingException e) {
      throw new IllegalArgumentException("not a UID audit (" + ANNOTATION + "): " + e.getOriginalMessage());
    }
  }

  public String toJson() {
    try {
      return JSON.writeValueAsString(this);
    } catch (JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
  }

  /** {@link #scannedAt} as an instant; IllegalArgumentException when it is not RFC 3339. */
  public Instant scannedAtInstant() {
    try {
      return java.time.OffsetDateTime.parse(scannedAt).toInstant();
    } catch (DateTimeParseException | NullPointerException e) {
      throw new IllegalArgumentException("UID audit scannedAt '" + scannedAt + "' is not an RFC 3339 time");
    }
  }

  /** True when the scan looked at this UID (the UID lies in the audited range). */
  public boolean covers(long uid) {
    return uid >= uidRangeStart && uid < uidRangeStart + uidRangeSize;
  }
}
