package dev.vfiovm.bench;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vfiovm.api.NodeAgentReport;
import dev.vfiovm.api.NodeAgentReport.AgentPhase;
import dev.vfiovm.api.DeviceState;
import dev.vfiovm.api.DeviceStatus;
import dev.vfiovm.controller.AttachmentPodShape;
import dev.vfiovm.controller.NodePodShape;
import dev.vfiovm.testing.KubeApiServerFixture;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.Watch;
import io.fabric8.kubernetes.client.Watcher;
import io.fabric8.kubernetes.client.WatcherException;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import java.util.List;
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
 *
 * <p>For the node-level faults ({@code NodeFaultIT}): a node can be {@link #down} (its kubelet runs nothing
 * there and ends no deletion: pods on it stay as they are, a deleted one Terminating, until {@link #up}), and the
 * agent of chosen pods can die mid-map ({@link #dieWhileStarting}: the report says Starting, then the container
 * is reported terminated with exit code 137 and the pod Failed, as a kubelet reports a SIGKILLed container of a
 * pod with restartPolicy Never, its termination message the report file's last content).
 */
final class StandInKubelet implements AutoCloseable {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final long PINNED = 16L << 20;

  private final KubernetesClient client;
  private final String namespace;
  /** Pod uids started (a pod of the same name made again is another pod). */
  private final Set<String> started = ConcurrentHashMap.newKeySet();
  private final Map<String, String> uidByName = new ConcurrentHashMap<>();
  private final Set<String> down = ConcurrentHashMap.newKeySet();
  private volatile java.util.function.Predicate<Pod> diesWhileStarting = p -> false;
  final java.util.concurrent.atomic.AtomicInteger diedWhileStarting = new java.util.concurrent.atomic.AtomicInteger();
  private final ExecutorService workers;
  private volatile Watch watch;
  private volatile Watch deviceWatch;
  /** Attachment/detach pod uids started, and those ended. */
  private final Set<String> devicePodsStarted = ConcurrentHashMap.newKeySet();
  private volatile boolean closed;

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
        handle(action == Action.DELETED, pod);
      }

      @Override
      public void onClose(WatcherException cause) {
        if (cause != null) {
          System.err.println("stand-in kubelet: pod watch closed: " + cause.getMessage());
          if (!closed) {
            start(); // a kubelet re-lists and watches again (e.g. after an API server restart)
          }
        }
      }
    });
    if (deviceWatch == null) {
      watchDevicePods();
    }
    return this;
  }

  /**
   * Hot-plug (issue 14): what the kubelet and the node agent do for a VM's attachment and detach pods. A new
   * attachment pod is started (phase Running) and, as the agent would once the guest enabled the device, its VM's
   * report gains the device Attached (hotplugged, the pod's --memlock in force if higher); a deleted one ends like a
   * SIGTERMed attach-device (the agent unplugs: the device leaves the report, the limit drops to --unplug-memlock)
   * and is removed; a detach pod unplugs its boot-time device (it leaves the report) and ends Succeeded.
   */
  private void watchDevicePods() {
    deviceWatch = client.pods().inNamespace(namespace).withLabelSelector(AttachmentPodShape.SELECTOR)
        .watch(new Watcher<>() {
          @Override
          public void eventReceived(Action action, Pod pod) {
            if (action != Action.DELETED && !down.contains(String.valueOf(pod.getSpec().getNodeName()))) {
              workers.submit(() -> handleDevicePod(pod));
            } else if (action == Action.DELETED) {
              devicePodsStarted.remove(pod.getMetadata().getUid());
            }
          }

          @Override
          public void onClose(WatcherException cause) {
            if (cause != null && !closed) {
              watchDevicePods();
            }
          }
        });
  }

  private void handleDevicePod(Pod pod) {
    try {
      String uid = pod.getMetadata().getUid();
      List<String> args = pod.getSpec().getContainers().get(0).getArgs();
      String device = args.get(args.indexOf("--device") + 1);
      long memlock = Long.parseLong(args.get(args.indexOf("--memlock") + 1));
      long unplugMemlock = Long.parseLong(args.get(args.indexOf("--unplug-memlock") + 1));
      var vm = NodePodShape.vmOf(pod).orElse(null);
      if (vm == null) {
        return;
      }
      String nodePod = NodePodShape.podName(vm.getNamespace().orElse(""), vm.getName());
      var resource = client.pods().inNamespace(namespace).withName(pod.getMetadata().getName());
      boolean detach = AttachmentPodShape.isDetach(pod);
      if (pod.getMetadata().getDeletionTimestamp() != null || detach) {
        if (detach && !devicePodsStarted.add(uid)) {
          return;
        }
        editReport(nodePod, r -> {
          if (r.getDevices().removeIf(d -> device.equals(d.getPciAddress()))
              && (r.getMemlockLimitBytes() == null || unplugMemlock < r.getMemlockLimitBytes())) {
            r.setMemlockLimitBytes(unplugMemlock);
          }
        });
        if (detach) {
          resource.subresource("status").patch(PatchContext.of(PatchType.JSON_MERGE), "{\"status\":{\"phase\":\"Succeeded\"}}");
        } else {
          devicePodsStarted.remove(uid);
          terminate(pod);
        }
      } else if (devicePodsStarted.add(uid)) {
        resource.subresource("status").patch(PatchContext.of(PatchType.JSON_MERGE), "{\"status\":{\"phase\":\"Running\"}}");
        editReport(nodePod, r -> {
          r.getDevices().removeIf(d -> device.equals(d.getPciAddress()));
          DeviceStatus d = new DeviceStatus(device, "/dev/vfio/devices/vfio9", true);
          d.setState(DeviceState.Attached);
          d.setHotplugged(true);
          r.getDevices().add(d);
          if (r.getMemlockLimitBytes() == null || memlock > r.getMemlockLimitBytes()) {
            r.setMemlockLimitBytes(memlock);
          }
        });
      }
    } catch (Exception e) {
      System.err.println("stand-in kubelet: device pod " + pod.getMetadata().getName() + ": " + e.getMessage());
      devicePodsStarted.remove(pod.getMetadata().getUid());
    }
  }

  /**
   * Read-modify-write of a node pod's report, as the agent (the only writer of its report) does it: one at a time,
   * so two attachment pods handled at once never lose each other's device (a merge patch replaces the whole
   * annotation).
   */
  private synchronized void editReport(String nodePod, java.util.function.Consumer<NodeAgentReport> change)
      throws Exception {
    Pod pod = client.pods().inNamespace(namespace).withName(nodePod).get();
    String json = pod == null || pod.getMetadata().getAnnotations() == null ? null
        : pod.getMetadata().getAnnotations().get(NodeAgentReport.POD_ANNOTATION);
    if (json == null) {
      return;
    }
    NodeAgentReport report = JSON.readValue(json, NodeAgentReport.class);
    change.accept(report);
    String patch = JSON.writeValueAsString(Map.of("metadata", Map.of("annotations",
        Map.of(NodeAgentReport.POD_ANNOTATION, JSON.writeValueAsString(report)))));
    client.pods().inNamespace(namespace).withName(nodePod).patch(PatchContext.of(PatchType.JSON_MERGE), patch);
  }

  private void handle(boolean gone, Pod pod) {
    String uid = pod.getMetadata().getUid();
    if (gone) {
      started.remove(uid);
      return;
    }
    if (down.contains(String.valueOf(pod.getSpec().getNodeName()))) {
      return; // that node's kubelet is not running: nothing happens to its pods
    }
    if (pod.getMetadata().getDeletionTimestamp() != null) {
      // the kubelet's part in deletion: gone at once (grace 0)
      if (started.remove(uid)) {
        workers.submit(() -> terminate(pod));
      }
      return;
    }
    if (started.add(uid)) {
      uidByName.put(pod.getMetadata().getName(), uid);
      if (diesWhileStarting.test(pod)) {
        workers.submit(() -> runAndDie(pod));
      } else {
        workers.submit(() -> run(namespace, pod.getMetadata().getName(), hostUid(pod)));
      }
    }
  }

  /** The node's kubelet stops: pods there are neither started nor ended until {@link #up}. */
  void down(String node) {
    down.add(node);
  }

  /** The node's kubelet is back: it ends the pods deleted meanwhile and starts the new ones (a re-list). */
  void up(String node) {
    down.remove(node);
    for (Pod pod : client.pods().inNamespace(namespace).withLabelSelector(NodePodShape.SELECTOR).list().getItems()) {
      if (node.equals(pod.getSpec().getNodeName())) {
        if (pod.getMetadata().getDeletionTimestamp() != null) {
          started.remove(pod.getMetadata().getUid());
          workers.submit(() -> terminate(pod));
        } else {
          handle(false, pod);
        }
      }
    }
  }

  /** The agents of the pods matching {@code which} die mid-map (after reporting Starting). */
  void dieWhileStarting(java.util.function.Predicate<Pod> which) {
    diesWhileStarting = which;
  }

  /**
   * The agent reports Starting and is then SIGKILLed: the kubelet reports its container terminated (exit code
   * 137, reason Error, the termination message the report file's last content: the Starting report) and the pod
   * Failed (restartPolicy Never: no restart).
   */
  private void runAndDie(Pod pod) {
    String name = pod.getMetadata().getName();
    try {
      var resource = client.pods().inNamespace(namespace).withName(name);
      resource.subresource("status").patch(PatchContext.of(PatchType.JSON_MERGE), "{\"status\":{\"phase\":\"Running\"}}");
      String starting = reportPatch(AgentPhase.Starting, hostUid(pod));
      resource.patch(PatchContext.of(PatchType.JSON_MERGE), starting);
      String lastReport = JSON.readTree(starting).path("metadata").path("annotations").path(NodeAgentReport.POD_ANNOTATION).asText();
      resource.editStatus(p -> {
        var status = new io.fabric8.kubernetes.api.model.PodStatusBuilder().withPhase("Failed");
        for (var c : p.getSpec().getInitContainers()) {
          status.addNewInitContainerStatus().withName(c.getName()).withImage(c.getImage()).withImageID("")
              .withReady(false).withRestartCount(0).withNewState().withNewTerminated().withExitCode(0)
              .withReason("Completed").endTerminated().endState().endInitContainerStatus();
        }
        for (var c : p.getSpec().getContainers()) {
          status.addNewContainerStatus().withName(c.getName()).withImage(c.getImage()).withImageID("")
              .withReady(false).withRestartCount(0).withNewState().withNewTerminated().withExitCode(137)
              .withReason("Error").withMessage(lastReport).endTerminated().endState().endContainerStatus();
        }
        p.setStatus(status.build());
        return p;
      });
      diedWhileStarting.incrementAndGet();
    } catch (Exception e) {
      System.err.println("stand-in kubelet: " + namespace + "/" + name + " (dies while starting): " + e.getMessage());
      started.remove(pod.getMetadata().getUid());
    }
  }

  /** As the kubelet ends a deleted pod: every container reported terminated, then the pod removed (grace 0). */
  private void terminate(Pod pod) {
    var resource = client.pods().inNamespace(namespace).withName(pod.getMetadata().getName());
    try {
      resource.editStatus(p -> {
        p.setStatus(KubeApiServerFixture.terminated(p));
        return p;
      });
    } catch (RuntimeException e) {
      // gone or changed meanwhile: the delete below still ends it
    }
    resource.withGracePeriod(0).delete();
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
      String uid = uidByName.get(podName);
      if (uid != null) {
        started.remove(uid); // started again on its next event
      }
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
    closed = true;
    if (watch != null) {
      watch.close();
    }
    if (deviceWatch != null) {
      deviceWatch.close();
    }
    workers.shutdown();
    try {
      workers.awaitTermination(30, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
