package dev.vfiovm.api;

import com.fasterxml.jackson.annotation.JsonPropertyOrder;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.util.List;

/**
 * The node daemon's UID audit of one node (contract C2), carried as JSON in the Node's annotation
 * {@value #ANNOTATION}: {@code {"scannedAt":"2026-12-01T14:00:00Z","uidRangeStart":1879048192,
 * "uidRangeSize":65536,"liveUids":[1879048193]}}.
 *
 * @param scannedAt when /proc was scanned, RFC 3339 UTC; moves on every scan (a heartbeat)
 * @param uidRangeStart first UID of the audited range (the operator's VM UID range)
 * @param uidRangeSize number of UIDs in it
 * @param liveUids sorted: every UID in the range that is the real, effective, saved or fs UID of at least one
 *     process on the host
 */
@JsonPropertyOrder({"scannedAt", "uidRangeStart", "uidRangeSize", "liveUids"})
public record UidAudit(String scannedAt, long uidRangeStart, long uidRangeSize, List<Long> liveUids) {
  public static final String ANNOTATION = "vfiovm.dev/uid-audit";

  private static final ObjectMapper JSON =
      new ObjectMapper().configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false);

  public UidAudit {
    liveUids = liveUids == null ? List.of() : List.copyOf(liveUids);
  }

  public static UidAudit fromJson(String json) {
    try {
      return JSON.readValue(json, UidAudit.class);
    } catch (JsonProcessingException e) {
      throw new IllegalArgumentException("annotation " + ANNOTATION + " is not a UID audit: " + e.getOriginalMessage(), e);
    }
  }

  public String toJson() {
    try {
      return JSON.writeValueAsString(this);
    } catch (JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
  }
}
