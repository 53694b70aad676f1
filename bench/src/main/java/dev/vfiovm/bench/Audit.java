package dev.vfiovm.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.BufferedReader;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/** The operator's writes as the kube-apiserver's audit log (level Metadata, JSON lines) recorded them. */
final class Audit {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final Set<String> WRITES = Set.of("create", "update", "patch", "delete", "deletecollection");

  private Audit() {}

  /**
   * Writes (ResponseComplete) by kind, same kinds as {@link WriteCounter}, of clients whose user agent starts
   * with {@code userAgentPrefix}, received within [from, to]. The operator server-side applies a pod only to
   * create it, so a pod patch counts as a pod create.
   */
  static Map<String, Long> count(Path log, String userAgentPrefix, Instant from, Instant to) throws IOException {
    Map<String, Long> out = new TreeMap<>();
    if (!Files.exists(log)) {
      return out;
    }
    try (BufferedReader in = Files.newBufferedReader(log)) {
      String line;
      while ((line = in.readLine()) != null) {
        JsonNode e = JSON.readTree(line);
        if (!"ResponseComplete".equals(e.path("stage").asText()) || !WRITES.contains(e.path("verb").asText())
            || !e.path("userAgent").asText().startsWith(userAgentPrefix)) {
          continue;
        }
        Instant at = Instant.parse(e.path("requestReceivedTimestamp").asText());
        if (at.isBefore(from) || at.isAfter(to)) {
          continue;
        }
        String verb = e.path("verb").asText();
        String resource = e.path("objectRef").path("resource").asText();
        String sub = e.path("objectRef").path("subresource").asText("");
        String kind;
        if (verb.startsWith("delete")) {
          kind = WriteCounter.DELETE;
        } else if (resource.equals("events")) {
          kind = WriteCounter.EVENT;
        } else if (sub.equals("status")) {
          kind = WriteCounter.STATUS;
        } else if (resource.equals("pods")) {
          kind = WriteCounter.POD_CREATE;
        } else if (verb.equals("patch") || verb.equals("update")) {
          kind = WriteCounter.PATCH;
        } else {
          kind = WriteCounter.OTHER;
        }
        out.merge(kind, 1L, Long::sum);
      }
    }
    return out;
  }
}
