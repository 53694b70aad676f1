package dev.vfiovm.nodedaemon;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vfiovm.api.UidAudit;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Instant;
import java.time.format.DateTimeFormatter;
import java.time.temporal.ChronoUnit;
import java.util.Map;

/**
 * Contract C2: scans the host's /proc and merge-patches this node's annotation {@value UidAudit#ANNOTATION}
 * with the live UIDs of the VM UID range, on every scan (a heartbeat: scannedAt always moves).
 */
public final class UidAuditor {
  private static final ObjectMapper JSON = new ObjectMapper();

  private final KubernetesClient client;
  private final String nodeName;
  private final Path proc;
  private final long start;
  private final long size;
  private final Clock clock;

  public UidAuditor(KubernetesClient client, String nodeName, Path proc, long start, long size, Clock clock) {
    this.client = client;
    this.nodeName = nodeName;
    this.proc = proc;
    this.start = start;
    this.size = size;
    this.clock = clock;
  }

  /** The audit of {@code proc} now. */
  public UidAudit scan() {
    String at = DateTimeFormatter.ISO_INSTANT.format(Instant.now(clock).truncatedTo(ChronoUnit.SECONDS));
    return new UidAudit(at, start, size, UidScan.scan(proc, start, size));
  }

  /** The merge patch that sets the annotation to {@code audit}. */
  public static String patch(UidAudit audit) {
    try {
      return JSON.writeValueAsString(
          Map.of("metadata", Map.of("annotations", Map.of(UidAudit.ANNOTATION, audit.toJson()))));
    } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
  }

  /** Scans and patches the node; returns what it wrote. */
  public UidAudit auditOnce() {
    UidAudit audit = scan();
    client.nodes().withName(nodeName).patch(PatchContext.of(PatchType.JSON_MERGE), patch(audit));
    return audit;
  }
}
