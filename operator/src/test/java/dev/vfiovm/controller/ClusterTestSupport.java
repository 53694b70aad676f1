package dev.vfiovm.controller;

import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vfiovm.api.DeviceSpec;
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
  static final String GROUP_LABEL = "vfiovm-test/group";
  static final Duration TIMEOUT = Duration.ofSeconds(90);
  private static final ObjectMapper JSON = new ObjectMapper();

  private final KubernetesClient client;
  private final String nodePodNamespace;

  ClusterTestSupport(KubernetesClient client, String nodePodNamespace) {
    this.client = client;
    this.nodePodNamespace = nodePodNamespace;
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
