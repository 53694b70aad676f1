package dev.vfiovm.controller;

import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vfiovm.api.DeviceSpec;
import dev.vfiovm.api.DeviceState;
import dev.vfiovm.api.DeviceStatus;
import dev.vfiovm.api.NodeAgentReport;
import dev.vfiovm.api.VfioVm;
import dev.vfiovm.api.VfioVmSpec;
import dev.vfiovm.testing.KubeApiServerFixture;
import io.fabric8.kubernetes.api.model.Event;
import io.fabric8.kubernetes.api.model.Node;
import io.fabric8.kubernetes.api.model.ObjectMetaBuilder;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import java.time.Duration;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/** What the API-server tests do in place of a kubelet and a node agent. */
final class ClusterTestSupport {
  static final String GROUP_LABEL = dev.vfiovm.testing.ApiServer.GROUP_LABEL;
  static final Duration TIMEOUT = Duration.ofSeconds(90);
  private static final ObjectMapper JSON = new ObjectMapper();

  private final KubernetesClient client;
  private final String nodePodNamespace;

  ClusterTestSupport(KubernetesClient client, String nodePodNamespace) {
    this.client = client;
    this.nodePodNamespace = nodePodNamespace;
  }

  /** The operator's settings in these tests: 1Gi VMs get 2Gi limits (1Gi overhead); nodes keep 1Gi for the host. */
  static OperatorSettings settings(String nodePodNamespace) {
    return OperatorSettings.defaults(nodePodNamespace, "vfiovm:test").withHostReserve(1L << 30).withMemlockOverhead(1L << 30);
  }

  /** The device-plugin resources every test node advertises: the IOMMU and the devices these tests ask for. */
  static final Map<String, String> DEVICE_RESOURCES = Map.of(
      "vfiovm.dev/iommu", "64", "vfiovm.dev/pci-0000-3b-00.0", "1", "vfiovm.dev/pci-0000-3b-00.1", "1");

  /**
   * A Node with allocatable memory, created as the kubelet would register it (status via its subresource), with
   * {@link #DEVICE_RESOURCES} in capacity and allocatable as its vfiovm-node daemon would have them registered.
   */
  Node node(String name, String allocatable, Map<String, String> labels, Map<String, String> annotations) {
    Node node = KubeApiServerFixture.createNode(client, name, allocatable, labels, annotations);
    DEVICE_RESOURCES.forEach((resource, count) -> {
      node.getStatus().getCapacity().put(resource, new io.fabric8.kubernetes.api.model.Quantity(count));
      node.getStatus().getAllocatable().put(resource, new io.fabric8.kubernetes.api.model.Quantity(count));
    });
    return client.nodes().resource(node).updateStatus();
  }

  static VfioVm vm(String namespace, String name, String memory, Map<String, String> selector, String... devices) {
    VfioVm vm = new VfioVm();
    vm.setMetadata(new ObjectMetaBuilder().withName(name).withNamespace(namespace).build());
    VfioVmSpec spec = new VfioVmSpec();
    spec.setMemory(memory);
    spec.setNodeSelector(new HashMap<>(selector));
    spec.setDevices(Arrays.stream(devices).map(DeviceSpec::new).toList());
    vm.setSpec(spec);
    return vm;
  }

  VfioVm create(VfioVm vm) {
    return client.resource(vm).create();
  }

  /** A user's edit: read, change, write; a conflict with the operator's concurrent status write is retried. */
  void editVm(String namespace, String name, java.util.function.Consumer<VfioVm> change) {
    for (int attempt = 1; ; attempt++) {
      try {
        client.resources(VfioVm.class).inNamespace(namespace).withName(name).edit(v -> {
          change.accept(v);
          return v;
        });
        return;
      } catch (io.fabric8.kubernetes.client.KubernetesClientException e) {
        if (e.getCode() != 409 || attempt == 10) {
          throw e;
        }
      }
    }
  }

  VfioVm get(String namespace, String name) {
    return client.resources(VfioVm.class).inNamespace(namespace).withName(name).get();
  }

  Pod podOf(String namespace, String name) {
    return client.pods().inNamespace(nodePodNamespace).withName(NodePodShape.podName(namespace, name)).get();
  }

  List<Pod> nodePods() {
    return client.pods().inNamespace(nodePodNamespace).list().getItems();
  }

  /** Writes the agent's report onto its pod exactly as the agent does: a merge patch of one annotation. */
  void report(String namespace, String name, NodeAgentReport report) throws Exception {
    String json = JSON.writeValueAsString(report);
    String patch = JSON.writeValueAsString(
        Map.of("metadata", Map.of("annotations", Map.of(NodeAgentReport.POD_ANNOTATION, json))));
    client.pods().inNamespace(nodePodNamespace).withName(NodePodShape.podName(namespace, name))
        .patch(PatchContext.of(PatchType.JSON_MERGE), patch);
  }

  static NodeAgentReport report(NodeAgentReport.AgentPhase phase, long uid, long limit, Long pinned) {
    NodeAgentReport r = new NodeAgentReport();
    r.setPhase(phase);
    r.setHostUid(uid);
    r.setMemlockLimitBytes(limit);
    r.setPinnedBytes(pinned);
    r.setDmaBackend("IoUring");
    r.setAccounting("PerUser");
    return r;
  }

  /** The VM's attachment and detach pods (hot-plug). */
  List<Pod> devicePods(String namespace, String name) {
    return client.pods().inNamespace(nodePodNamespace).withLabelSelector(AttachmentPodShape.SELECTOR).list().getItems()
        .stream().filter(p -> NodePodShape.vmOf(p).map(id -> id.getName().equals(name)
            && namespace.equals(id.getNamespace().orElse(null))).orElse(false)).toList();
  }

  /** The VM's node agent's current report, from its pod's annotation. */
  NodeAgentReport reportOf(String namespace, String name) {
    return VmStatuses.report(podOf(namespace, name));
  }

  /**
   * What the kubelet and the node agent do for the VM's attachment and detach pods (call it repeatedly, e.g. in an
   * await): a new attachment pod is started (phase Running) and the agent's report gains its device Attached,
   * hotplugged, with the pod's --memlock in force (raised only); a deleted one is ended (as with SIGTERM:
   * the agent unplugs, lowers the limit to --unplug-memlock, the device leaves the report) and removed; a detach
   * pod unplugs its boot-time device (it leaves the report) and ends Succeeded.
   */
  void playDevicePods(String namespace, String name) throws Exception {
    for (Pod pod : devicePods(namespace, name)) {
      List<String> args = pod.getSpec().getContainers().get(0).getArgs();
      String device = args.get(args.indexOf("--device") + 1);
      long memlock = Long.parseLong(args.get(args.indexOf("--memlock") + 1));
      long unplugMemlock = Long.parseLong(args.get(args.indexOf("--unplug-memlock") + 1));
      String phase = pod.getStatus() == null ? null : pod.getStatus().getPhase();
      var resource = client.pods().inNamespace(nodePodNamespace).withName(pod.getMetadata().getName());
      NodeAgentReport report = reportOf(namespace, name);
      if (pod.getMetadata().getDeletionTimestamp() != null || AttachmentPodShape.isDetach(pod)) {
        if (AttachmentPodShape.isDetach(pod) && "Succeeded".equals(phase)) {
          continue;
        }
        if (report != null && report.getDevices().removeIf(d -> d.getPciAddress().equals(device))) {
          if (report.getMemlockLimitBytes() == null || unplugMemlock < report.getMemlockLimitBytes()) {
            report.setMemlockLimitBytes(unplugMemlock);
          }
          report(namespace, name, report);
        }
        if (AttachmentPodShape.isDetach(pod)) {
          resource.subresource("status").patch(PatchContext.of(PatchType.JSON_MERGE),
              "{\"status\":{\"phase\":\"Succeeded\"}}");
        } else {
          KubeApiServerFixture.finishPodDeletions(client, nodePodNamespace);
        }
      } else if (!"Running".equals(phase) && !"Failed".equals(phase)) {
        resource.subresource("status").patch(PatchContext.of(PatchType.JSON_MERGE), "{\"status\":{\"phase\":\"Running\"}}");
        if (report != null) {
          report.getDevices().removeIf(d -> d.getPciAddress().equals(device));
          DeviceStatus d = new DeviceStatus(device, "/dev/vfio/devices/vfio9", true);
          d.setState(DeviceState.Attached);
          d.setHotplugged(true);
          report.getDevices().add(d);
          if (report.getMemlockLimitBytes() == null || memlock > report.getMemlockLimitBytes()) {
            report.setMemlockLimitBytes(memlock);
          }
          report(namespace, name, report);
        }
      }
    }
  }

  /** A report whose devices are those given, each Attached (as the agent lists its boot devices). */
  static NodeAgentReport report(NodeAgentReport.AgentPhase phase, long uid, long limit, Long pinned,
      String... attached) {
    NodeAgentReport r = report(phase, uid, limit, pinned);
    for (String a : attached) {
      DeviceStatus d = new DeviceStatus(a, "/dev/vfio/devices/vfio0", true);
      d.setState(DeviceState.Attached);
      r.getDevices().add(d);
    }
    return r;
  }

  /** The kubelet's part in deletion: a pod bound to a node is removed only when deleted with grace 0. */
  void finishPodDeletions() {
    KubeApiServerFixture.finishPodDeletions(client, nodePodNamespace);
  }

  /** Deletes every VfioVm of the namespace, plays the kubelet until they are gone. */
  void deleteAllVms(String namespace) {
    client.resources(VfioVm.class).inNamespace(namespace).delete();
    await().atMost(TIMEOUT).pollInterval(Duration.ofMillis(200)).until(() -> {
      finishPodDeletions();
      return client.resources(VfioVm.class).inNamespace(namespace).list().getItems().isEmpty();
    });
  }

  List<Event> events(String namespace, String vmName) {
    return client.v1().events().inNamespace(namespace).list().getItems().stream()
        .filter(e -> vmName.equals(e.getInvolvedObject().getName()))
        .toList();
  }

  List<String> eventReasons(String namespace, String vmName) {
    return events(namespace, vmName).stream().map(Event::getReason).toList();
  }
}
