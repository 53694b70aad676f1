package dev.vfiovm.bench;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vfiovm.api.NodeAgentReport;
import dev.vfiovm.api.NodeAgentReport.AgentPhase;
import dev.vfiovm.controller.NodePodShape;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.Watch;
import io.fabric8.kubernetes.client.Watcher;
import io.fabric8.kubernetes.client.WatcherException;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

/**
 * What a kubelet and the node agent do for a node pod, against the API server only: the pod's
 * {@code status.phase=Running} through the status subresource, then the agent's reports (Starting, then
 * Running) as merge patches of the pod annotation {@link NodeAgentReport#POD_ANNOTATION}, exactly as
 * {@code ReportPublisher} writes them. It watches node pods (no cache: its own heap stays out of the heap figure).
 */
final class StandInKubelet implements AutoCloseable {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final long PINNED = 16L << 20;

  private final KubernetesClient client;
  private final String namespace;
  private final Set<String> started = ConcurrentHashMap.newKeySet();
  private final ExecutorService workers;
  private Watch watch;

  StandInKubelet(KubernetesClient client, String namespace, int threads) {
    this.client = client;
    this.namespace = namespace;
    this.workers = Executors.newFixedThreadPool(threads, r -> {
      Thread t = new Thread(r, "stand-in-kubelet");
      t.setDaemon(true);
      return t;
    });
  }

  /** Starts watching node pods of the operator's namespace; every new one is started once. */
  StandInKubelet start() {
    watch = client.pods().inNamespace(namespace).withLabelSelector(NodePodShape.SELECTOR).watch(new Watcher<>() {
      @Override
      public void eventReceived(Action action, Pod pod) {
        if (action == Action.DELETED || pod.getMetadata().getDeletionTimestamp() != null) {
          // the kubelet's part in deletion: gone at once (grace 0)
          if (action != Action.DELETED && started.remove(pod.getMetadata().getName())) {
            workers.submit(() -> client.pods().inNamespace(namespace).withName(pod.getMetadata().getName())
                .withGracePeriod(0).delete());
          }
          return;
        }
        if (started.add(pod.getMetadata().getName())) {
          workers.submit(() -> run(namespace, pod.getMetadata().getName(), hostUid(pod)));
        }
      }

      @Override
      public void onClose(WatcherException cause) {
        if (cause != null) {
          System.err.println("stand-in kubelet: pod watch closed: " + cause.getMessage());
        }
      }
    });
    return this;
  }

  static Long hostUid(Pod pod) {
    String uid = pod.getMetadata().getLabels() == null ? null : pod.getMetadata().getLabels().get(NodePodShape.LABEL_HOST_UID);
    return uid == null ? null : Long.parseLong(uid);
  }

  /** The kubelet's and the agent's writes for one pod (also called inline by the bare-client baseline). */
  void run(String podNamespace, String podName, Long hostUid) {
    try {
      var pod = client.pods().inNamespace(podNamespace).withName(podName);
      pod.subresource("status").patch(PatchContext.of(PatchType.JSON_MERGE), "{\"status\":{\"phase\":\"Running\"}}");
      pod.patch(PatchContext.of(PatchType.JSON_MERGE), reportPatch(AgentPhase.Starting, hostUid));
      pod.patch(PatchContext.of(PatchType.JSON_MERGE), reportPatch(AgentPhase.Running, hostUid));
    } catch (Exception e) {
      System.err.println("stand-in kubelet: " + podNamespace + "/" + podName + ": " + e.getMessage());
      started.remove(podName);
    }
  }

  static String reportPatch(AgentPhase phase, Long hostUid) throws Exception {
    NodeAgentReport r = new NodeAgentReport();
    r.setPhase(phase);
    r.setHostUid(hostUid);
    r.setDmaBackend("IoUring");
    r.setAccounting("PerUser");
    if (phase == AgentPhase.Running) {
      r.setPinnedBytes(PINNED);
      r.setVmPid(4242L);
    }
    String json = JSON.writeValueAsString(r);
    return JSON.writeValueAsString(Map.of("metadata", Map.of("annotations", Map.of(NodeAgentReport.POD_ANNOTATION, json))));
  }

  @Override
  public void close() {
    if (watch != null) {
      watch.close();
    }
    workers.shutdown();
    try {
      workers.awaitTermination(30, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
