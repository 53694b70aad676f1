package dev.vfiovm.controller;

import static dev.vfiovm.controller.ClusterTestSupport.TIMEOUT;
import static dev.vfiovm.controller.ClusterTestSupport.report;
import static dev.vfiovm.controller.ClusterTestSupport.vm;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.vfiovm.api.DeviceSpec;
import dev.vfiovm.api.DeviceState;
import dev.vfiovm.api.DeviceStatus;
import dev.vfiovm.api.DmaBackend;
import dev.vfiovm.api.NodeAgentReport.AgentPhase;
import dev.vfiovm.api.Phase;
import dev.vfiovm.api.VfioVm;
import dev.vfiovm.testing.KubeApiServerFixture;
import io.fabric8.kubernetes.api.model.Condition;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.function.Consumer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Hot-plug on the real 1.20 API server (issue 14): a devices edit of a placed VM is re-planned, an admitted plug
 * gets its attachment pod (the tests play kubelet and agent: {@link ClusterTestSupport#playDevicePods}), a plug
 * that waits creates nothing and says why, an unplug deletes the pod and frees device and budget, and a restarted
 * operator rebuilds the hot-plugged device from the UID claim.
 */
class HotplugIT {
  static final long GI = 1L << 30;
  static final String A = "0000:3b:00.0";
  static final String B = "0000:3b:00.1";

  KubernetesClient client;
  String nodePodNamespace;
  String ns;
  Map<String, String> selector;
  List<String> nodes = new ArrayList<>();
  String group;
  OperatorSettings settings;
  ClusterTestSupport cluster;
  VfioVmOperator operator;

  @BeforeEach
  void setUp() throws Exception {
    client = KubeApiServerFixture.newClient();
    KubeApiServerFixture.installCrds(client);
    nodePodNamespace = KubeApiServerFixture.createNamespace(client, "vfiovm-system");
    ns = KubeApiServerFixture.createNamespace(client, "vms");
    group = "h" + UUID.randomUUID().toString().substring(0, 8);
    selector = Map.of(ClusterTestSupport.GROUP_LABEL, group);
    cluster = new ClusterTestSupport(client, nodePodNamespace);
    settings = OperatorSettings.defaults(nodePodNamespace, "vfiovm:test").withHostReserve(GI).withMemlockOverhead(GI)
        .withUidRange(OperatorSettings.DEFAULT_UID_RANGE_START + 80_000, 100);
    operator = VfioVmOperator.start(client, settings, 0, null);
  }

  @AfterEach
  void tearDown() {
    try {
      client.resources(VfioVm.class).inNamespace(ns).delete();
      await().atMost(TIMEOUT).pollInterval(Duration.ofMillis(200)).until(() -> {
        cluster.playDevicePods(ns, "a");
        cluster.finishPodDeletions();
        return client.resources(VfioVm.class).inNamespace(ns).list().getItems().isEmpty();
      });
    } finally {
      operator.close();
      nodes.forEach(n -> client.nodes().withName(n).delete());
      client.close();
    }
  }

  String node(String allocatable) {
    String name = group + "-n" + nodes.size();
    cluster.node(name, allocatable, selector, Map.of());
    nodes.add(name);
    await().atMost(TIMEOUT).until(() -> operator.reconciler().nodeBudgets().stream()
        .anyMatch(n -> n.name().equals(name) && n.problem() == null));
    return name;
  }

  VfioVm awaitPhase(String name, Phase phase) {
    return await().atMost(TIMEOUT).until(() -> cluster.get(ns, name),
        v -> v != null && v.getStatus() != null && v.getStatus().getPhase() == phase);
  }

  void editVm(String name, Consumer<VfioVm> change) {
    cluster.editVm(ns, name, change);
  }

  void addDevice(String name, String device) {
    editVm(name, v -> {
      List<DeviceSpec> devices = new ArrayList<>(v.getSpec().getDevices());
      devices.add(new DeviceSpec(device));
      v.getSpec().setDevices(devices);
    });
  }

  void removeDevice(String name, String device) {
    editVm(name, v -> v.getSpec().setDevices(
        v.getSpec().getDevices().stream().filter(d -> !d.getPciAddress().equals(device)).toList()));
  }

  /** A vIOMMU VM with device A at boot (limit 1 x 1Gi + 1Gi), Running as its agent reports it. */
  VfioVm runningWithA(String name, String node) throws Exception {
    VfioVm vm = vm(ns, name, "1Gi", selector, A);
    vm.getSpec().setViommu(true);
    vm.getSpec().setNodeName(node);
    cluster.create(vm);
    long uid = awaitPhase(name, Phase.Placed).getStatus().getHostUid();
    await().atMost(TIMEOUT).until(() -> cluster.podOf(ns, name) != null);
    cluster.report(ns, name, report(AgentPhase.Running, uid, 2 * GI, GI, A));
    return awaitPhase(name, Phase.Running);
  }

  static DeviceStatus device(VfioVm vm, String address) {
    return vm.getStatus().getDevices().stream().filter(d -> d.getPciAddress().equals(address)).findFirst().orElse(null);
  }

  static Condition devicesReady(VfioVm vm) {
    return VmStatuses.condition(vm.getStatus(), VmStatuses.DEVICES_READY);
  }

  Lease claimOf(VfioVm vm) {
    return client.leases().inNamespace(nodePodNamespace).withName(UidClaims.name(vm.getStatus().getHostUid())).get();
  }

  static String arg(Pod pod, String flag) {
    List<String> args = pod.getSpec().getContainers().get(0).getArgs();
    return args.get(args.indexOf(flag) + 1);
  }

  @Test
  void aDeviceAddedToARunningVmIsPluggedAttachedAndUnpluggedAndAnotherVmThenTakesIt() throws Exception {
    String node = node("9Gi");
    VfioVm running = runningWithA("a", node);
    assertThat(devicesReady(running).getStatus()).isEqualTo("True");
    Pod nodePod = cluster.podOf(ns, "a");
    assertThat(arg(nodePod, "--control-socket")).isEqualTo("/run/vfiovm/control/agent.sock");

    addDevice("a", B);
    Pod attachment = await().atMost(TIMEOUT).until(() -> cluster.devicePods(ns, "a"), l -> l.size() == 1).get(0);
    assertThat(attachment.getMetadata().getName()).isEqualTo(nodePod.getMetadata().getName() + "-dev-0000-3b-00-1");
    assertThat(attachment.getSpec().getNodeName()).isEqualTo(node);
    // vIOMMU: the limit rises by exactly one guest RAM, counted against the budget at once
    assertThat(arg(attachment, "--memlock")).isEqualTo(Long.toString(3 * GI));
    assertThat(arg(attachment, "--unplug-memlock")).isEqualTo(Long.toString(2 * GI));
    VfioVm plugging = await().atMost(TIMEOUT).until(() -> cluster.get(ns, "a"),
        v -> device(v, B) != null && device(v, B).getState() == DeviceState.Plugging);
    assertThat(plugging.getStatus().getMemlockLimitBytes()).isEqualTo(3 * GI);
    assertThat(devicesReady(plugging).getStatus()).isEqualTo("False");
    assertThat(plugging.getStatus().getMessage()).doesNotContain("not applied"); // no spec drift
    Map<String, String> claim = claimOf(plugging).getMetadata().getAnnotations();
    assertThat(claim).containsEntry(UidClaims.ANNOTATION_HOTPLUGGED, "[\"" + B + "\"]")
        .containsEntry(UidClaims.ANNOTATION_LIMIT, Long.toString(3 * GI))
        .containsEntry(UidClaims.ANNOTATION_BOOT_LIMIT, Long.toString(2 * GI));
    // the same node pod: nothing recreated
    assertThat(cluster.podOf(ns, "a").getMetadata().getUid()).isEqualTo(nodePod.getMetadata().getUid());

    VfioVm attached = await().atMost(TIMEOUT).until(() -> {
      cluster.playDevicePods(ns, "a");
      return cluster.get(ns, "a");
    }, v -> "True".equals(devicesReady(v).getStatus()));
    assertThat(device(attached, B).getState()).isEqualTo(DeviceState.Attached);
    assertThat(device(attached, B).isHotplugged()).isTrue();
    assertThat(device(attached, A).isHotplugged()).isFalse();
    assertThat(devicesReady(attached).getReason()).isEqualTo("DevicesAttached");
    await().atMost(TIMEOUT).untilAsserted(() -> assertThat(cluster.eventReasons(ns, "a"))
        .contains("DevicePlugging", "DeviceAttached"));

    // unplug: the attachment pod is deleted; device and budget stay held until it and the report say gone
    removeDevice("a", B);
    await().atMost(TIMEOUT).until(() -> cluster.devicePods(ns, "a").stream()
        .allMatch(p -> p.getMetadata().getDeletionTimestamp() != null));
    assertThat(operator.reconciler().ledger().get(ns + "/a").devices()).contains(B);
    VfioVm unplugged = await().atMost(TIMEOUT).until(() -> {
      cluster.playDevicePods(ns, "a");
      return cluster.get(ns, "a");
    }, v -> device(v, B) == null && v.getStatus().getMemlockLimitBytes() == 2 * GI);
    assertThat(devicesReady(unplugged).getStatus()).isEqualTo("True");
    assertThat(cluster.devicePods(ns, "a")).isEmpty();
    assertThat(operator.reconciler().ledger().get(ns + "/a").devices()).containsExactly(A);
    await().atMost(TIMEOUT).untilAsserted(() -> assertThat(cluster.eventReasons(ns, "a"))
        .contains("DeviceUnplugging", "DeviceUnplugged"));
    await().atMost(TIMEOUT).untilAsserted(() -> assertThat(claimOf(unplugged).getMetadata().getAnnotations())
        .containsEntry(UidClaims.ANNOTATION_HOTPLUGGED, "[]").containsEntry(UidClaims.ANNOTATION_LIMIT, Long.toString(2 * GI)));

    // the device is free on the node: another VM pinned there takes it
    VfioVm other = vm(ns, "b", "1Gi", selector, B);
    other.getSpec().setNodeName(node);
    cluster.create(other);
    assertThat(awaitPhase("b", Phase.Placed).getStatus().getNodeName()).isEqualTo(node);

    // an edit of another field beside devices is still only reported on 1.20
    editVm("a", v -> v.getSpec().setCpus(2));
    VfioVm drift = await().atMost(TIMEOUT).until(() -> cluster.get(ns, "a"),
        v -> VmStatuses.condition(v.getStatus(), VmStatuses.SPEC_APPLIED) != null);
    assertThat(VmStatuses.condition(drift.getStatus(), VmStatuses.SPEC_APPLIED).getMessage())
        .startsWith("spec.cpus was changed").doesNotContain("spec.devices");
  }

  @Test
  void aDeviceAddedWhileTheVmIsNotRunningWaitsAndIsPluggedOnceItRuns() throws Exception {
    String node = node("9Gi");
    VfioVm vm = vm(ns, "a", "1Gi", selector, A);
    vm.getSpec().setNodeName(node);
    cluster.create(vm);
    long uid = awaitPhase("a", Phase.Placed).getStatus().getHostUid();
    await().atMost(TIMEOUT).until(() -> cluster.podOf(ns, "a") != null);
    cluster.report(ns, "a", report(AgentPhase.Starting, uid, 2 * GI, null));
    addDevice("a", B);
    VfioVm waiting = await().atMost(TIMEOUT).until(() -> cluster.get(ns, "a"),
        v -> device(v, B) != null && device(v, B).getState() == DeviceState.Waiting);
    assertThat(device(waiting, B).getReason()).isEqualTo("VmNotRunning");
    assertThat(device(waiting, B).getMessage()).contains("once the VM is Running");
    assertThat(cluster.devicePods(ns, "a")).isEmpty();
    await().atMost(TIMEOUT).untilAsserted(() -> assertThat(cluster.eventReasons(ns, "a")).contains("DevicesWaiting"));

    cluster.report(ns, "a", report(AgentPhase.Running, uid, 2 * GI, GI, A));
    VfioVm attached = await().atMost(TIMEOUT).until(() -> {
      cluster.playDevicePods(ns, "a");
      return cluster.get(ns, "a");
    }, v -> v.getStatus().getPhase() == Phase.Running && "True".equals(devicesReady(v).getStatus()));
    // without vIOMMU the limit stays
    assertThat(attached.getStatus().getMemlockLimitBytes()).isEqualTo(2 * GI);
    assertThat(device(attached, B).getState()).isEqualTo(DeviceState.Attached);
  }

  @Test
  void aPlugBeyondTheNodesBudgetWaitsWithTheArithmeticCreatesNothingAndPlugsOnceFreed() throws Exception {
    String node = node("5Gi"); // budget 4Gi
    runningWithA("a", node); // 2Gi
    VfioVm filler = vm(ns, "filler", "1Gi", selector);
    filler.getSpec().setNodeName(node);
    filler.getSpec().setDmaBackend(DmaBackend.IoUring);
    cluster.create(filler); // 2Gi: the node is full
    awaitPhase("filler", Phase.Placed);

    addDevice("a", B);
    VfioVm waiting = await().atMost(TIMEOUT).until(() -> cluster.get(ns, "a"),
        v -> device(v, B) != null && device(v, B).getState() == DeviceState.Waiting);
    assertThat(device(waiting, B).getReason()).isEqualTo("InsufficientBudget");
    assertThat(device(waiting, B).getMessage()).contains("from 2Gi to 3Gi", "free 0 of budget 4Gi, needs +1Gi");
    assertThat(devicesReady(waiting).getReason()).isEqualTo("InsufficientBudget");
    assertThat(waiting.getStatus().getMemlockLimitBytes()).isEqualTo(2 * GI);
    assertThat(cluster.devicePods(ns, "a")).isEmpty();
    assertThat(operator.reconciler().ledger().get(ns + "/a").memlockLimitBytes()).isEqualTo(2 * GI);
    assertThat(claimOf(waiting).getMetadata().getAnnotations()).doesNotContainKey(UidClaims.ANNOTATION_HOTPLUGGED);

    // the other VM's budget freed: the waiting plug goes ahead by itself
    client.resources(VfioVm.class).inNamespace(ns).withName("filler").delete();
    await().atMost(TIMEOUT).pollInterval(Duration.ofMillis(200)).until(() -> {
      cluster.finishPodDeletions();
      return cluster.devicePods(ns, "a").size() == 1;
    });
    assertThat(arg(cluster.devicePods(ns, "a").get(0), "--memlock")).isEqualTo(Long.toString(3 * GI));
  }

  @Test
  void aRestartedOperatorRebuildsTheHotPluggedDeviceFromTheClaim() throws Exception {
    String node = node("9Gi");
    runningWithA("a", node);
    addDevice("a", B);
    Pod attachment = await().atMost(TIMEOUT).until(() -> cluster.devicePods(ns, "a"), l -> l.size() == 1).get(0);

    operator.close();
    operator = VfioVmOperator.start(client, settings, 0, null);
    await().atMost(TIMEOUT).until(() -> operator.reconciler().ledger().get(ns + "/a") != null);
    Ledger.Entry rebuilt = operator.reconciler().ledger().get(ns + "/a");
    assertThat(rebuilt.devices()).containsExactly(A, B);
    assertThat(rebuilt.memlockLimitBytes()).isEqualTo(3 * GI);
    VfioVm attached = await().atMost(TIMEOUT).until(() -> {
      cluster.playDevicePods(ns, "a");
      return cluster.get(ns, "a");
    }, v -> "True".equals(devicesReady(v).getStatus()));
    assertThat(device(attached, B).isHotplugged()).isTrue();
    // the same attachment pod, not a second one
    assertThat(cluster.devicePods(ns, "a")).singleElement()
        .satisfies(p -> assertThat(p.getMetadata().getUid()).isEqualTo(attachment.getMetadata().getUid()));
  }
}
