package dev.vfiovm.node;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.vfiovm.api.NodeAgentReport;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Publishes every report: rewrites the --report file atomically (temp file + rename, so the operator or
 * kubelet never reads half a report) and, with --report-pod, merge-patches it into the pod annotation
 * {@link NodeAgentReport#POD_ANNOTATION}. A failed patch is logged, never fatal: the file (the pod's
 * termination message) still carries the report.
 */
final class ReportPublisher implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(ReportPublisher.class);
  static final ObjectMapper JSON = new ObjectMapper().disable(SerializationFeature.FAIL_ON_EMPTY_BEANS);

  private final Path file;
  private final String podNamespace;
  private final String podName;
  private KubernetesClient client;

  ReportPublisher(Path file, String pod) {
    this.file = file;
    if (pod != null) {
      int slash = pod.indexOf('/');
      this.podNamespace = pod.substring(0, slash);
      this.podName = pod.substring(slash + 1);
    } else {
      this.podNamespace = null;
      this.podName = null;
    }
  }

  static String toJson(NodeAgentReport report) {
    try {
      return JSON.writeValueAsString(report);
    } catch (JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
  }

  static NodeAgentReport fromJson(String json) {
    try {
      return JSON.readValue(json, NodeAgentReport.class);
    } catch (JsonProcessingException e) {
      throw new IllegalArgumentException("not a node agent report: " + e.getOriginalMessage());
    }
  }

  /** The merge patch that sets the report annotation on the agent's pod. */
  static String annotationPatch(NodeAgentReport report) {
    try {
      return JSON.writeValueAsString(
          Map.of("metadata", Map.of("annotations", Map.of(NodeAgentReport.POD_ANNOTATION, toJson(report)))));
    } catch (JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
  }

  void publish(NodeAgentReport report) {
    String json = toJson(report);
    if (file != null) {
      writeAtomically(file, json);
    }
    if (podName != null) {
      try {
        if (client == null) {
          client = new KubernetesClientBuilder().build();
        }
        client
            .pods()
            .inNamespace(podNamespace)
            .withName(podName)
            .patch(PatchContext.of(PatchType.JSON_MERGE), annotationPatch(report));
      } catch (RuntimeException e) {
        LOG.warn(
            "could not write report annotation {} on pod {}/{} (the report file still has it): {}",
            NodeAgentReport.POD_ANNOTATION, podNamespace, podName, e.toString());
      }
    }
  }

  static void writeAtomically(Path target, String content) {
    try {
      Path dir = target.toAbsolutePath().getParent();
      Files.createDirectories(dir);
      Path tmp = Files.createTempFile(dir, "." + target.getFileName() + ".", ".tmp");
      try {
        Files.writeString(tmp, content + "\n", StandardCharsets.UTF_8);
        try {
          Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (FileSystemException e) {
          // In a pod the kubelet bind-mounts the container's terminationMessagePath file, which is our
          // report file: a mount point cannot be renamed over (EBUSY). Write it in place instead; the
          // kubelet reads it only after the container has exited.
          if (!"Device or resource busy".equals(e.getReason())) {
            throw e;
          }
          Files.writeString(target, content + "\n", StandardCharsets.UTF_8);
        }
      } finally {
        Files.deleteIfExists(tmp);
      }
    } catch (IOException e) {
      throw new UncheckedIOException("cannot write report " + target + ": " + e.getMessage(), e);
    }
  }

  @Override
  public void close() {
    if (client != null) {
      client.close();
    }
  }
}
