package dev.vfiovm.e2e.cluster;

import static dev.vfiovm.e2e.cluster.VmChecks.condition;
import static dev.vfiovm.e2e.cluster.VmChecks.describe;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.marcnuri.helm.Helm;
import com.marcnuri.helm.Release;
import dev.vfiovm.api.DeviceSpec;
import dev.vfiovm.api.DmaBackend;
import dev.vfiovm.api.NodeAgentReport;
import dev.vfiovm.api.Phase;
import dev.vfiovm.api.UidAudit;
import dev.vfiovm.api.VfioVm;
import dev.vfiovm.api.VfioVmSpec;
import dev.vfiovm.e2e.chart.ChartRendering;
import dev.vfiovm.testing.Prerequisites;
import io.fabric8.kubernetes.api.model.Condition;
import io.fabric8.kubernetes.api.model.NamespaceBuilder;
import io.fabric8.kubernetes.api.model.Node;
import io.fabric8.kubernetes.api.model.ObjectMetaBuilder;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.Quantity;
import io.fabric8.kubernetes.api.model.apps.DaemonSet;
import io.fabric8.kubernetes.api.model.apps.Deployment;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import io.fabric8.kubernetes.client.dsl.MixedOperation;
import io.fabric8.kubernetes.client.dsl.Resource;
import io.fabric8.kubernetes.client.utils.Serialization;
import io.fabric8.kubernetes.api.model.KubernetesResourceList;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;

/**
 * The product on a real cluster (whatever KUBECONFIG names; hack/kind/run.sh makes one): install the chart,
 * run VfioVms with the io-uring backend (accounting without an IOMMU), check UIDs, limits and pins, the seed
 * scenario on one node, release on delete, uninstall. The operator image must already be in the cluster.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class VfioVmClusterE2E {
  static final String NODE_POD_NAME_LABEL = "app.kubernetes.io/name";
  static final String NODE_POD_NAME = "vfiovm-node";
  static final String VM_NAMESPACE_LABEL = "vfiovm.dev/vm-namespace";
  static final String VM_NAME_LABEL = "vfiovm.dev/vm-name";
  static final String HOST_UID_LABEL = "vfiovm.dev/host-uid";
  static final String HOST_RESERVE_ANNOTATION = "vfiovm.dev/host-reserve";
  static final long UID_RANGE_START = 1879048192L;
  static final long UID_RANGE_SIZE = 65536L;

  static E2ESettings settings;
  static KubernetesClient client;
  static String vmNamespace;
  static String reservedNode;
  static boolean installed;

  /**
   * The set-up every node-level E2E class shares: the cluster in KUBECONFIG (prerequisites checked, this host
   * being its node), the chart installed afresh with {@code values}, and a users' namespace (Pod Security
   * `restricted`: node pods never run there) named {@code prefix}-random.
   */
  static void installOnLocalNode(java.util.function.UnaryOperator<com.marcnuri.helm.InstallCommand> values,
      String prefix) {
    settings = E2ESettings.current();
    Prerequisites.require(Files.isRegularFile(settings.kubeconfig()),
        "a cluster in KUBECONFIG (no kubeconfig at " + settings.kubeconfig() + ")");
    client = new KubernetesClientBuilder().build();
    Prerequisites.require(reachable(client), "a reachable cluster at " + client.getMasterUrl());
    Prerequisites.require(Files.isDirectory(Path.of("/proc/1")), "the node's /proc (run on the local node's host)");
    uninstall(true);
    helmInstall(values.apply(new Helm(ChartRendering.chartDir()).install()
            .withName(settings.release())
            .withNamespace(settings.releaseNamespace())
            .withKubeConfig(settings.kubeconfig()))
        .waitReady()
        .withTimeout((int) settings.timeout().toSeconds()));
    installed = true;
    vmNamespace = prefix + "-" + UUID.randomUUID().toString().substring(0, 8);
    client.namespaces().resource(new NamespaceBuilder().withNewMetadata()
        .withName(vmNamespace).addToLabels("pod-security.kubernetes.io/enforce", "restricted")
        .endMetadata().build()).create();
  }

  @BeforeAll
  static void installChart() {
    settings = E2ESettings.current();
    Prerequisites.require(
        Files.isRegularFile(settings.kubeconfig()),
        "a cluster in KUBECONFIG (no kubeconfig at " + settings.kubeconfig() + "); hack/kind/run.sh creates one");
    client = new KubernetesClientBuilder().build(); // KUBECONFIG, as helm reads it
    Prerequisites.require(reachable(client), "a reachable cluster at " + client.getMasterUrl());

    uninstall(true); // a release left over from an interrupted run
    Release release =
        helmInstall(
            new Helm(ChartRendering.chartDir())
                .install()
                .withName(settings.release())
                .withNamespace(settings.releaseNamespace())
                .withKubeConfig(settings.kubeconfig())
                .waitReady()
                .withTimeout((int) settings.timeout().toSeconds()));
    installed = true;
    assertThat(release.getStatus()).isEqualTo("deployed");

    // users' namespaces stay Pod Security `restricted`: node pods never run here
    vmNamespace = "vfiovm-e2e-" + UUID.randomUUID().toString().substring(0, 8);
    client
        .namespaces()
        .resource(
            new NamespaceBuilder()
                .withNewMetadata()
                .withName(vmNamespace)
                .addToLabels("pod-security.kubernetes.io/enforce", "restricted")
                .endMetadata()
                .build())
        .create();
  }

  @AfterAll
  static void cleanUp() {
    if (client == null) {
      return;
    }
    try {
      if (vmNamespace != null && installed) {
        vms().inNamespace(vmNamespace).delete();
        awaitAllReleased();
      }
    } finally {
      if (reservedNode != null) {
        setHostReserve(reservedNode, "null");
      }
      if (vmNamespace != null) {
        client.namespaces().withName(vmNamespace).delete();
      }
      if (installed) {
        uninstall(true);
      }
      client.close();
    }
  }

  @Test
  @Order(1)
  void operatorIsReadyAndServesMetrics() {
    Deployment operator =
        client.apps().deployments().inNamespace(settings.operatorNamespace()).withLabel(
            "app.kubernetes.io/component", "operator").list().getItems().get(0);
    assertThat(operator.getStatus().getAvailableReplicas()).isEqualTo(1);

    Pod pod =
        client.pods().inNamespace(settings.operatorNamespace())
            .withLabel("app.kubernetes.io/component", "operator").list().getItems().get(0);
    String proxy =
        "/api/v1/namespaces/" + settings.operatorNamespace() + "/pods/" + pod.getMetadata().getName() + ":8080/proxy";
    assertThat(client.raw(proxy + "/readyz")).isNotNull();
    String metrics = client.raw(proxy + "/metrics");
    assertThat(metrics).as("Prometheus text from /metrics").contains("# TYPE").contains("vfiovm_host_uids_left");
  }

  @Test
  @Order(2)
  void vmsRunUnderDistinctUidsWithTheirLimitsAndPins() {
    List<VfioVm> created = List.of(create("alpha", null), create("beta", null));

    List<VfioVm> running = awaitPhase(created, Phase.Running);

    assertThat(VmChecks.distinctHostUids(running)).as("distinct host UIDs: %s", running).isTrue();
    for (VfioVm vm : running) {
      var status = vm.getStatus();
      assertThat(status.getHostUid()).isBetween(UID_RANGE_START, UID_RANGE_START + UID_RANGE_SIZE - 1);
      assertThat(status.getMemlockLimitBytes()).as(describe(vm)).isEqualTo(settings.expectedMemlockBytes());
      assertThat(status.getPinnedBytes()).as(describe(vm)).isEqualTo(settings.vmMemoryBytes());
      assertThat(status.getDmaBackend()).isEqualTo("IoUring");
      assertThat(condition(vm, "Ready")).map(Condition::getStatus).as(describe(vm)).contains("True");
      assertThat(condition(vm, "MemlockLimited")).map(Condition::getStatus).contains("True");

      Pod pod = nodePod(vm);
      assertThat(pod.getMetadata().getNamespace()).isEqualTo(settings.operatorNamespace());
      assertThat(status.getPodName()).endsWith(pod.getMetadata().getName());
      assertThat(pod.getMetadata().getLabels())
          .containsEntry("app.kubernetes.io/managed-by", "vfiovm-operator")
          .containsEntry(HOST_UID_LABEL, String.valueOf(status.getHostUid()));
      assertThat(pod.getMetadata().getAnnotations())
          .containsEntry("vfiovm.dev/vm", vmNamespace + "/" + vm.getMetadata().getName())
          .containsKey(NodeAgentReport.POD_ANNOTATION);
      NodeAgentReport report =
          Serialization.unmarshal(
              pod.getMetadata().getAnnotations().get(NodeAgentReport.POD_ANNOTATION), NodeAgentReport.class);
      assertThat(report.getPhase()).isEqualTo(NodeAgentReport.AgentPhase.Running);
      assertThat(report.getHostUid()).isEqualTo(status.getHostUid());
      assertThat(report.getPinnedBytes()).isEqualTo(settings.vmMemoryBytes());
      assertThat(pod.getSpec().getNodeName()).isEqualTo(status.getNodeName());
      assertThat(pod.getSpec().getServiceAccountName()).as("the VM's own node-pod identity")
          .isEqualTo(dev.vfiovm.controller.NodePodIdentity.name("vfiovm-node", vmNamespace, vm.getMetadata().getName()));
      assertNotPrivilegedFromTheApiAndFromInside(pod);
    }

    assertThat(client.pods().inNamespace(vmNamespace).list().getItems())
        .as("no pod in the users' (restricted) namespace").isEmpty();

    deleteAndAwaitReleased(created);
  }

  /**
   * A real guest: QEMU in the node pod boots the tiny bare-metal guest delivered as a containerDisk (this
   * machine's 8 MiB memlock hard limit leaves no room for Linux), and its serial console is in the pod's log.
   */
  @Test
  @Order(2)
  void aGuestBootsFromItsContainerDiskAndItsConsoleIsInTheNodePodsLog() {
    VfioVmSpec spec = new VfioVmSpec();
    spec.setMemory("2Mi");
    spec.setDmaBackend(DmaBackend.IoUring);
    dev.vfiovm.api.BootSpec boot = new dev.vfiovm.api.BootSpec();
    dev.vfiovm.api.ContainerDiskSource disk = new dev.vfiovm.api.ContainerDiskSource();
    disk.setImage(settings.guestImage());
    boot.setContainerDisk(disk);
    boot.setKernel("/boot/kernel.elf");
    spec.setBoot(boot);
    VfioVm vm = new VfioVm();
    vm.setMetadata(new ObjectMetaBuilder().withName("guest").withNamespace(vmNamespace).build());
    vm.setSpec(spec);
    VfioVm created = vms().inNamespace(vmNamespace).resource(vm).create();

    VfioVm running = awaitPhase(List.of(created), Phase.Running).get(0);
    assertThat(running.getStatus().getPinnedBytes()).as(describe(running)).isEqualTo(2L << 20);
    Pod pod = nodePod(running);
    assertThat(running.getStatus().getConsole())
        .isEqualTo("kubectl logs -n " + settings.operatorNamespace() + " " + pod.getMetadata().getName() + " -c node-agent");
    await("the guest's banner in kubectl logs")
        .atMost(settings.timeout())
        .pollInterval(Duration.ofSeconds(1))
        .untilAsserted(() -> assertThat(client.pods().inNamespace(settings.operatorNamespace())
                .withName(pod.getMetadata().getName()).inContainer("node-agent").getLog())
            .contains("vfiovm-guest: booted"));
    NodeAgentReport report = Serialization.unmarshal(
        nodePod(running).getMetadata().getAnnotations().get(NodeAgentReport.POD_ANNOTATION), NodeAgentReport.class);
    assertThat(report.getVmm()).startsWith("QEMU 10.");

    deleteAndAwaitReleased(List.of(created));
  }

  @Test
  @Order(3)
  void seedScenarioTwoVmsSideBySideAndTheThirdWaitsForBudget() {
    Node node = seedNode();
    long allocatable =
        Quantity.getAmountInBytes(node.getStatus().getAllocatable().get("memory")).longValueExact();
    long reserve = BudgetPlan.hostReserveFittingExactly(allocatable, settings.expectedMemlockBytes(), 2);
    reservedNode = node.getMetadata().getName();
    // a merge patch, not an edit: the node daemon patches this node's UID audit every few seconds (and the
    // kubelet its status), so a read-modify-write would conflict
    setHostReserve(reservedNode, "\"" + reserve + "\"");

    VfioVm first = create("first", reservedNode);
    VfioVm second = create("second", reservedNode);
    List<VfioVm> both = awaitPhase(List.of(first, second), Phase.Running);
    assertThat(VmChecks.distinctHostUids(both)).as("side by side under distinct UIDs: %s", both).isTrue();
    assertThat(both).allSatisfy(vm -> assertThat(vm.getStatus().getPinnedBytes()).isEqualTo(settings.vmMemoryBytes()));

    VfioVm third = create("third", reservedNode);
    await("third VM Pending for budget")
        .atMost(settings.timeout())
        .pollInterval(Duration.ofSeconds(1))
        .untilAsserted(() -> {
          VfioVm now = get(third);
          assertThat(now.getStatus()).as(describe(now)).isNotNull();
          assertThat(now.getStatus().getPhase()).as(describe(now)).isEqualTo(Phase.Pending);
          assertThat(condition(now, "Placed")).map(Condition::getReason).as(describe(now))
              .contains("InsufficientBudget");
        });
    assertThat(nodePods(third)).as("no node pod for a VM that does not fit").isEmpty();

    // deleting one running VM releases its UID and budget: the third one starts
    deleteAndAwaitReleased(List.of(first));
    List<VfioVm> after = awaitPhase(List.of(second, third), Phase.Running);
    assertThat(VmChecks.distinctHostUids(after)).as("%s", after).isTrue();

    deleteAndAwaitReleased(List.of(second, third));
  }

  /**
   * The seed itself, on the real node: the same two node agents forced under ONE host UID (what running every
   * VM as qemu:qemu amounts to), per-user accounting, limit L each, each pinning 3/4 L. The first pins; the
   * second fails with ENOMEM although its own limit would allow it, because
   * both are charged to the one UID's counter. Test 3 showed the fix: distinct UIDs run side by side.
   */
  @Test
  @Order(4)
  void theSameTwoForcedUnderOneUidFailAsTheSeedSays() {
    VfioVm template = create("template", null);
    Pod model = nodePod(awaitPhase(List.of(template), Phase.Running).get(0));
    // the last UID of the range: never handed out while fewer than 65536 VMs exist
    long sharedUid = UID_RANGE_START + UID_RANGE_SIZE - 1;
    Pod first = createForcedUidPod(model, "seed-same-uid-1", sharedUid);
    await("first agent under the shared UID Running")
        .atMost(settings.timeout()).pollInterval(Duration.ofSeconds(1))
        .untilAsserted(() -> assertThat(report(first)).as("report of %s", first.getMetadata().getName())
            .isNotNull().extracting(NodeAgentReport::getPhase).isEqualTo(NodeAgentReport.AgentPhase.Running));
    assertThat(report(first).getPinnedBytes()).isEqualTo(seedPinBytes());

    Pod second = createForcedUidPod(model, "seed-same-uid-2", sharedUid);
    await("second agent under the shared UID Failed")
        .atMost(settings.timeout()).pollInterval(Duration.ofSeconds(1))
        .untilAsserted(() -> assertThat(report(second)).as("report of %s", second.getMetadata().getName())
            .isNotNull().extracting(NodeAgentReport::getPhase).isEqualTo(NodeAgentReport.AgentPhase.Failed));
    NodeAgentReport failed = report(second);
    assertThat(failed.getError()).as(failed.getMessage()).isEqualTo("ENOMEM");
    assertThat(failed.getMessage()).contains(String.valueOf(settings.expectedMemlockBytes()));
    // the first one keeps its pins
    assertThat(report(first).getPhase()).isEqualTo(NodeAgentReport.AgentPhase.Running);
    assertThat(report(first).getPinnedBytes()).isEqualTo(seedPinBytes());

    for (Pod pod : List.of(first, second)) {
      client.resource(pod).delete();
    }
    await("forced-UID pods gone").atMost(settings.timeout()).pollInterval(Duration.ofSeconds(1))
        .untilAsserted(() -> assertThat(client.pods().inNamespace(settings.operatorNamespace())
            .withLabel(NODE_POD_NAME_LABEL, "vfiovm-seed-probe").list().getItems()).isEmpty());
    deleteAndAwaitReleased(List.of(template));
  }

  /**
   * The node daemon on the real kubelet: its plugin registered (the kubelet's own view, the Node's capacity,
   * lists vfiovm.dev/iommu: 64 when this node has /dev/iommu, else 0), and its UID audit annotates the node,
   * listing a running VM's host UID and moving on every scan.
   */
  @Test
  @Order(5)
  void theNodeDaemonServesTheKubeletAndAuditsUids() {
    await("DaemonSet vfiovm-node ready on every node").atMost(settings.timeout()).pollInterval(Duration.ofSeconds(1))
        .untilAsserted(() -> {
          DaemonSet ds = client.apps().daemonSets().inNamespace(settings.operatorNamespace()).withName("vfiovm-node").get();
          assertThat(ds.getStatus().getDesiredNumberScheduled()).isPositive();
          assertThat(ds.getStatus().getNumberReady()).isEqualTo(ds.getStatus().getDesiredNumberScheduled());
        });
    Node node = seedNode();
    String nodeName = node.getMetadata().getName();
    Pod daemon = client.pods().inNamespace(settings.operatorNamespace())
        .withLabel("app.kubernetes.io/component", "node-daemon").list().getItems().stream()
        .filter(p -> nodeName.equals(p.getSpec().getNodeName())).findFirst().orElseThrow();
    assertThat(daemon.getSpec().getContainers().get(0).getSecurityContext().getPrivileged()).isFalse();
    assertThat(daemon.getSpec().getHostPID()).isTrue();

    // the kubelet's view: this host has /dev/iommu or not (the suite runs on the node: hack/local, kind)
    boolean iommu = Files.exists(Path.of("/dev/iommu"));
    String expected = iommu ? "64" : "0";
    await("the kubelet lists vfiovm.dev/iommu = " + expected).atMost(settings.timeout())
        .pollInterval(Duration.ofSeconds(1)).untilAsserted(() -> {
          Node now = client.nodes().withName(nodeName).get();
          assertThat(now.getStatus().getCapacity()).containsKey("vfiovm.dev/iommu");
          assertThat(now.getStatus().getCapacity().get("vfiovm.dev/iommu").toString()).isEqualTo(expected);
          assertThat(now.getStatus().getAllocatable().get("vfiovm.dev/iommu").toString()).isEqualTo(expected);
        });
    String log = client.pods().inNamespace(settings.operatorNamespace()).withName(daemon.getMetadata().getName())
        .inContainer("node-daemon").getLog();
    assertThat(log).contains("vfiovm.dev/iommu: registered with the kubelet (" + (iommu ? "64 (64" : "0 (0")
        + " healthy) devices)").contains("vfiovm.dev/iommu: the kubelet watches");
    settings.devicePluginDir().ifPresent(dir -> assertThat(dir.resolve("vfiovm-iommu.sock"))
        .as("the plugin's socket next to the kubelet's").exists());

    // the UID audit: a running VM's UID is listed, gone after delete; scannedAt moves
    VfioVm vm = awaitPhase(List.of(create("audited", null)), Phase.Running).get(0);
    long uid = vm.getStatus().getHostUid();
    UidAudit first = await("the node's " + UidAudit.ANNOTATION + " lists UID " + uid).atMost(settings.timeout())
        .pollInterval(Duration.ofSeconds(1)).until(() -> uidAudit(nodeName), a -> a != null && a.liveUids().contains(uid));
    assertThat(first.uidRangeStart()).isEqualTo(UID_RANGE_START);
    assertThat(first.uidRangeSize()).isEqualTo(UID_RANGE_SIZE);
    await("scannedAt moves").atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofSeconds(1))
        .until(() -> uidAudit(nodeName), a -> Instant.parse(a.scannedAt()).isAfter(Instant.parse(first.scannedAt())));
    deleteAndAwaitReleased(List.of(vm));
    await("UID " + uid + " gone from the audit").atMost(settings.timeout()).pollInterval(Duration.ofSeconds(1))
        .until(() -> uidAudit(nodeName), a -> !a.liveUids().contains(uid));
  }

  /** A VM asking for a device its node does not have ends Pending with a condition naming the resource. */
  @Test
  @Order(6)
  void aVmAskingForADeviceNoNodeHasSaysWhichResourceIsMissing() {
    VfioVmSpec spec = new VfioVmSpec();
    spec.setMemory(settings.vmMemory());
    spec.setDmaBackend(DmaBackend.Iommufd);
    // bus ff, function 7: no such device bound to vfio-pci on a test node
    spec.setDevices(List.of(new DeviceSpec("0000:ff:1f.7")));
    VfioVm vm = new VfioVm();
    vm.setMetadata(new ObjectMetaBuilder().withName("no-such-device").withNamespace(vmNamespace).build());
    vm.setSpec(spec);
    VfioVm created = vms().inNamespace(vmNamespace).resource(vm).create();
    await("Placed=False MissingDeviceResource").atMost(settings.timeout()).pollInterval(Duration.ofSeconds(1))
        .untilAsserted(() -> {
          VfioVm now = get(created);
          assertThat(now.getStatus()).isNotNull();
          Condition placed = condition(now, "Placed").orElseThrow();
          assertThat(placed.getStatus()).isEqualTo("False");
          assertThat(placed.getReason()).isEqualTo("MissingDeviceResource");
          assertThat(placed.getMessage()).contains("vfiovm.dev/pci-0000-ff-1f.7").contains("status.allocatable");
        });
    VfioVm pending = get(created);
    assertThat(pending.getStatus().getPhase()).as("waits: the device may be bound to vfio-pci later")
        .isEqualTo(Phase.Pending);
    assertThat(nodePods(pending)).as("no node pod for an unplaceable VM").isEmpty();
    deleteAndAwaitReleased(List.of(created));
  }

  static void setHostReserve(String node, String jsonValue) {
    client.nodes().withName(node).patch(
        io.fabric8.kubernetes.client.dsl.base.PatchContext.of(io.fabric8.kubernetes.client.dsl.base.PatchType.JSON_MERGE),
        "{\"metadata\":{\"annotations\":{\"" + HOST_RESERVE_ANNOTATION + "\":" + jsonValue + "}}}");
  }

  static UidAudit uidAudit(String node) {
    Map<String, String> annotations = client.nodes().withName(node).get().getMetadata().getAnnotations();
    String json = annotations == null ? null : annotations.get(UidAudit.ANNOTATION);
    return json == null ? null : UidAudit.fromJson(json);
  }

  /** Linux capability numbers (capability.h) of the names a securityContext takes. */
  static final Map<String, Integer> CAPABILITY_BITS = Map.ofEntries(
      Map.entry("CHOWN", 0), Map.entry("DAC_OVERRIDE", 1), Map.entry("DAC_READ_SEARCH", 2), Map.entry("FOWNER", 3),
      Map.entry("FSETID", 4), Map.entry("KILL", 5), Map.entry("SETGID", 6), Map.entry("SETUID", 7),
      Map.entry("SETPCAP", 8), Map.entry("NET_BIND_SERVICE", 10), Map.entry("NET_ADMIN", 12),
      Map.entry("NET_RAW", 13), Map.entry("IPC_LOCK", 14), Map.entry("SYS_CHROOT", 18), Map.entry("SYS_PTRACE", 19),
      Map.entry("SYS_ADMIN", 21), Map.entry("SYS_NICE", 23), Map.entry("SYS_RESOURCE", 24), Map.entry("MKNOD", 27),
      Map.entry("AUDIT_WRITE", 29), Map.entry("SETFCAP", 31));

  /**
   * privileged: false from the API, and from the agent's own view: /proc/1/status (the node-agent container's
   * first process, the agent's JVM) has exactly the pod's added capabilities effective and bounding, and
   * NoNewPrivs set (allowPrivilegeEscalation: false).
   */
  static void assertNotPrivilegedFromTheApiAndFromInside(Pod pod) {
    var sc = pod.getSpec().getContainers().get(0).getSecurityContext();
    assertThat(sc.getPrivileged()).isFalse();
    assertThat(sc.getAllowPrivilegeEscalation()).isFalse();
    assertThat(sc.getCapabilities().getDrop()).containsExactly("ALL");
    assertThat(sc.getProcMount()).as("the ProcMountType gate is on: the API server kept the field").isEqualTo("Unmasked");
    assertThat(pod.getSpec().getVolumes()).as("no host paths").allSatisfy(v -> assertThat(v.getHostPath()).isNull());
    long expected = 0;
    for (String cap : sc.getCapabilities().getAdd()) {
      assertThat(CAPABILITY_BITS).as("known capability").containsKey(cap);
      expected |= 1L << CAPABILITY_BITS.get(cap);
    }
    String status = exec(pod, "cat", "/proc/1/status");
    assertThat(statusField(status, "CapEff")).as("agent CapEff (%s)", sc.getCapabilities().getAdd()).isEqualTo(expected);
    assertThat(statusField(status, "CapBnd")).as("agent CapBnd").isEqualTo(expected);
    assertThat(status).containsPattern("NoNewPrivs:\\s+1");
  }

  static long statusField(String status, String field) {
    return status.lines().filter(l -> l.startsWith(field + ":")).findFirst()
        .map(l -> Long.parseUnsignedLong(l.substring(field.length() + 1).trim(), 16))
        .orElseThrow(() -> new AssertionError("no " + field + " in " + status));
  }

  static String exec(Pod pod, String... command) {
    java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
    java.io.ByteArrayOutputStream err = new java.io.ByteArrayOutputStream();
    try (var watch = client.pods().inNamespace(pod.getMetadata().getNamespace()).withName(pod.getMetadata().getName())
        .inContainer("node-agent").writingOutput(out).writingError(err).exec(command)) {
      Integer code = watch.exitCode().get(60, java.util.concurrent.TimeUnit.SECONDS);
      assertThat(code).as("exit of %s: %s", String.join(" ", command), err).isZero();
    } catch (Exception e) {
      throw new AssertionError("exec " + String.join(" ", command) + " in " + pod.getMetadata().getName() + ": " + e, e);
    }
    return out.toString(java.nio.charset.StandardCharsets.UTF_8);
  }

  /** 3/4 of the memlock limit, in whole pages: one such VM fits its limit, two under one UID do not. */
  static long seedPinBytes() {
    return settings.expectedMemlockBytes() * 3 / 4 / 4096 * 4096;
  }

  /**
   * A copy of an operator-made node pod, outside the operator's view (no managed-by label), whose agent runs
   * as {@code uid} and pins 3/4 of the same memlock limit.
   */
  /**
   * A forced-UID copy of a node pod, created with the right to write its own report: it runs as the model VM's
   * identity, whose Role names only the model's pod (docs/identity.md), so the test (admin) grants that
   * identity get/patch of this one extra pod, exactly as the operator does for a VM's own pod. The grant lives
   * in the operator's namespace and goes with it when the chart is uninstalled.
   */
  static Pod createForcedUidPod(Pod model, String name, long uid) {
    String namespace = model.getMetadata().getNamespace();
    String account = model.getSpec().getServiceAccountName();
    client.resource(new io.fabric8.kubernetes.api.model.rbac.RoleBuilder()
        .withNewMetadata().withName(name).withNamespace(namespace).endMetadata()
        .addNewRule().withApiGroups("").withResources("pods").withResourceNames(name).withVerbs("get", "patch")
        .endRule().build()).inNamespace(namespace).createOr(existing -> existing.update());
    client.resource(new io.fabric8.kubernetes.api.model.rbac.RoleBindingBuilder()
        .withNewMetadata().withName(name).withNamespace(namespace).endMetadata()
        .withNewRoleRef().withApiGroup("rbac.authorization.k8s.io").withKind("Role").withName(name).endRoleRef()
        .addNewSubject().withKind("ServiceAccount").withName(account).withNamespace(namespace).endSubject()
        .build()).inNamespace(namespace).createOr(existing -> existing.update());
    return client.resource(forcedUidPod(model, name, uid)).create();
  }

  static Pod forcedUidPod(Pod model, String name, long uid) {
    Pod pod = Serialization.clone(model);
    pod.setStatus(null);
    pod.setMetadata(new ObjectMetaBuilder().withName(name).withNamespace(model.getMetadata().getNamespace())
        .addToLabels(NODE_POD_NAME_LABEL, "vfiovm-seed-probe").build());
    pod.getSpec().setRestartPolicy("Never");
    List<String> args = new ArrayList<>(pod.getSpec().getContainers().get(0).getArgs());
    args.set(args.indexOf("--host-uid") + 1, String.valueOf(uid));
    args.set(args.indexOf("--vm") + 1, model.getMetadata().getNamespace() + "/" + name);
    args.set(args.indexOf("--memory") + 1, String.valueOf(seedPinBytes()));
    pod.getSpec().getContainers().get(0).setArgs(args);
    return pod;
  }

  /** The agent's report: its pod annotation, else (agent exited) the container's termination message. */
  static NodeAgentReport report(Pod pod) {
    Pod now = client.pods().inNamespace(pod.getMetadata().getNamespace()).withName(pod.getMetadata().getName()).get();
    if (now == null) {
      return null;
    }
    String json = now.getMetadata().getAnnotations() == null ? null
        : now.getMetadata().getAnnotations().get(NodeAgentReport.POD_ANNOTATION);
    if (now.getStatus() != null && now.getStatus().getContainerStatuses() != null) {
      for (var cs : now.getStatus().getContainerStatuses()) {
        if (cs.getState() != null && cs.getState().getTerminated() != null
            && cs.getState().getTerminated().getMessage() != null) {
          json = cs.getState().getTerminated().getMessage();
        }
      }
    }
    return json == null || json.isBlank() ? null : Serialization.unmarshal(json, NodeAgentReport.class);
  }

  @Test
  @Order(10)
  void uninstallRemovesTheOperator() {
    vms().inNamespace(vmNamespace).delete();
    awaitAllReleased();

    uninstall(false);
    installed = false;

    await("operator namespace and cluster roles gone")
        .atMost(settings.timeout())
        .pollInterval(Duration.ofSeconds(2))
        .untilAsserted(() -> {
          assertThat(client.namespaces().withName(settings.operatorNamespace()).get()).isNull();
          assertThat(client.rbac().clusterRoles().withLabel("app.kubernetes.io/instance", settings.release())
              .list().getItems()).isEmpty();
        });
  }

  // --- helpers

  static MixedOperation<VfioVm, KubernetesResourceList<VfioVm>, Resource<VfioVm>> vms() {
    return client.resources(VfioVm.class);
  }

  static VfioVm create(String name, String nodeName) {
    VfioVmSpec spec = new VfioVmSpec();
    spec.setMemory(settings.vmMemory());
    spec.setDmaBackend(DmaBackend.IoUring);
    spec.setNodeName(nodeName);
    VfioVm vm = new VfioVm();
    vm.setMetadata(new ObjectMetaBuilder().withName(name).withNamespace(vmNamespace).build());
    vm.setSpec(spec);
    return vms().inNamespace(vmNamespace).resource(vm).create();
  }

  static VfioVm get(VfioVm vm) {
    return vms().inNamespace(vmNamespace).withName(vm.getMetadata().getName()).get();
  }

  static List<VfioVm> awaitPhase(List<VfioVm> vms, Phase phase) {
    List<VfioVm> current = new ArrayList<>();
    await("VMs " + phase)
        .atMost(settings.timeout())
        .pollInterval(Duration.ofSeconds(1))
        .untilAsserted(() -> {
          current.clear();
          vms.forEach(vm -> current.add(get(vm)));
          assertThat(current)
              .as("%s", current.stream().map(VmChecks::describe).toList())
              .allSatisfy(vm -> assertThat(vm != null && vm.getStatus() != null
                  && vm.getStatus().getPhase() == phase).isTrue());
        });
    return List.copyOf(current);
  }

  static List<Pod> nodePods(VfioVm vm) {
    return client.pods().inNamespace(settings.operatorNamespace())
        .withLabels(Map.of(
            NODE_POD_NAME_LABEL, NODE_POD_NAME,
            VM_NAMESPACE_LABEL, vmNamespace,
            VM_NAME_LABEL, vm.getMetadata().getName()))
        .list().getItems();
  }

  static Pod nodePod(VfioVm vm) {
    List<Pod> pods = nodePods(vm);
    assertThat(pods).as("one node pod for %s", describe(vm)).hasSize(1);
    return pods.get(0);
  }

  /** Deleting a VM stops its node pod and releases its UID and budget: VM and pod both disappear. */
  static void deleteAndAwaitReleased(List<VfioVm> toDelete) {
    toDelete.forEach(vm -> vms().inNamespace(vmNamespace).withName(vm.getMetadata().getName()).delete());
    await("VMs and node pods gone")
        .atMost(settings.timeout())
        .pollInterval(Duration.ofSeconds(1))
        .untilAsserted(() -> {
          for (VfioVm vm : toDelete) {
            assertThat(get(vm)).as("VfioVm %s still there: %s", vm.getMetadata().getName(), describe(get(vm))).isNull();
            assertThat(nodePods(vm)).as("node pods of %s", vm.getMetadata().getName()).isEmpty();
          }
        });
  }

  static void awaitAllReleased() {
    await("every VfioVm of the test namespace and its node pod gone")
        .atMost(settings.timeout())
        .pollInterval(Duration.ofSeconds(1))
        .untilAsserted(() -> {
          assertThat(vms().inNamespace(vmNamespace).list().getItems()).isEmpty();
          assertThat(client.pods().inNamespace(settings.operatorNamespace())
              .withLabels(Map.of(NODE_POD_NAME_LABEL, NODE_POD_NAME, VM_NAMESPACE_LABEL, vmNamespace))
              .list().getItems()).isEmpty();
        });
  }

  static Node seedNode() {
    if (settings.node().isPresent()) {
      return client.nodes().withName(settings.node().get()).require();
    }
    return client.nodes().list().getItems().stream()
        .filter(n -> n.getSpec().getUnschedulable() == null || !n.getSpec().getUnschedulable())
        .filter(n -> n.getStatus().getConditions().stream()
            .anyMatch(c -> "Ready".equals(c.getType()) && "True".equals(c.getStatus())))
        .findFirst()
        .orElseThrow(() -> new AssertionError("no Ready schedulable node in the cluster"));
  }

  static void uninstall(boolean ignoreNotFound) {
    var uninstall =
        Helm.uninstall(settings.release())
            .withNamespace(settings.releaseNamespace())
            .withKubeConfig(settings.kubeconfig());
    helm((ignoreNotFound ? uninstall.ignoreNotFound() : uninstall)::call);
    // the chart's namespace goes with the release: the next install (another E2E class) must not meet it
    // terminating ("unable to create new content in namespace ... because it is being terminated")
    for (String name : java.util.stream.Stream.of(settings.releaseNamespace(), settings.operatorNamespace())
        .distinct().toList()) {
      await("namespace " + name + " deleted or usable after the uninstall")
          .atMost(settings.timeout())
          .until(() -> {
            var ns = client.namespaces().withName(name).get();
            return ns == null || ns.getMetadata().getDeletionTimestamp() == null;
          });
    }
  }

  static boolean reachable(KubernetesClient client) {
    try {
      client.getKubernetesVersion();
      return true;
    } catch (RuntimeException e) {
      return false;
    }
  }

  static Release helmInstall(com.marcnuri.helm.InstallCommand install) {
    settings.helmValues().forEach(install::set);
    return install.call();
  }

  static void helm(java.util.concurrent.Callable<?> command) {
    try {
      command.call();
    } catch (Exception e) {
      throw new IllegalStateException("helm: " + e.getMessage(), e);
    }
  }
}
