package dev.vfiovm.controller;

import static dev.vfiovm.controller.ClusterTestSupport.TIMEOUT;
import static dev.vfiovm.controller.ClusterTestSupport.report;
import static dev.vfiovm.controller.ClusterTestSupport.vm;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import dev.vfiovm.api.NodeAgentReport.AgentPhase;
import dev.vfiovm.api.Phase;
import dev.vfiovm.api.VfioVm;
import dev.vfiovm.api.VfioVmStatus;
import dev.vfiovm.testing.ApiServer;
import dev.vfiovm.testing.KubeApiServerFixture;
import io.fabric8.kubernetes.api.model.Condition;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.Collectors;
import java.util.stream.IntStream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * The operator (the same code the `operator` subcommand runs) against a real kube-apiserver. Each test has
 * its own VM namespace and its own nodes (labelled with a per-test group that its VMs select), and deletes its
 * VMs afterwards, so every test starts with an empty ledger.
 */
class VfioVmOperatorIT {
  @RegisterExtension static final ApiServer api = ApiServer.withCrd();

  static final long GI = 1L << 30;
  static KubernetesClient client;
  static String nodePodNamespace;
  static OperatorSettings settings;
  static VfioVmOperator operator;
  static ClusterTestSupport cluster;

  String ns;
  String group;
  Map<String, String> selector;
  List<String> nodes = new ArrayList<>();

  @BeforeAll
  static void startOperator() throws Exception {
    client = api.newClient();
    nodePodNamespace = api.namespace("vfiovm-system");
    // 1Gi VMs get 2Gi limits (1Gi overhead); nodes keep 1Gi for the host
    settings = ClusterTestSupport.settings(nodePodNamespace);
    operator = VfioVmOperator.start(client, settings, 0, null);
    cluster = new ClusterTestSupport(client, nodePodNamespace);
  }

  @AfterAll
  static void stopOperator() {
    if (operator != null) {
      operator.close();
    }
    if (client != null) {
      client.close();
    }
  }

  @BeforeEach
  void namespaceAndGroup() {
    ns = api.namespace();
    group = api.group();
    selector = api.selector();
  }

  @AfterEach
  void cleanUp() {
    cluster.deleteAllVms(ns);
    nodes.forEach(n -> client.nodes().withName(n).delete());
  }

  String node(String suffix, String allocatable) {
    return node(suffix, allocatable, Map.of());
  }

  String node(String suffix, String allocatable, Map<String, String> annotations) {
    String name = group + "-" + suffix;
    cluster.node(name, allocatable, selector, annotations);
    nodes.add(name);
    // exact-count assertions need the operator to know the node's budget before the VMs arrive
    await().atMost(TIMEOUT).until(() -> operator.reconciler().nodeBudgets().stream()
        .anyMatch(n -> n.name().equals(name) && n.problem() == null));
    return name;
  }

  VfioVm awaitPhase(String name, Phase phase) {
    return await().atMost(TIMEOUT).until(() -> cluster.get(ns, name),
        v -> v != null && v.getStatus() != null && v.getStatus().getPhase() == phase);
  }

  /** A user's edit: read, change, write; a conflict with the operator's concurrent status write is retried. */
  void editVm(String name, java.util.function.Consumer<VfioVm> change) {
    cluster.editVm(ns, name, change);
  }

  static Condition condition(VfioVm vm, String type) {
    return VmStatuses.condition(vm.getStatus(), type);
  }

  @Test
  void createAssignsUidPlacesStartsPodAndFollowsTheAgentsReport() throws Exception {
    String node = node("a", "5Gi");
    // etcd revisions order all writes: the UID's claim (a Lease) must precede the pod's creation
    List<Long> uidRevisions = new java.util.concurrent.CopyOnWriteArrayList<>();
    List<Long> podRevisions = new java.util.concurrent.CopyOnWriteArrayList<>();
    try (var claimWatch = client.leases().inNamespace(nodePodNamespace).withLabelSelector(UidClaims.SELECTOR)
        .watch(new io.fabric8.kubernetes.client.Watcher<>() {
          @Override
          public void eventReceived(Action action, io.fabric8.kubernetes.api.model.coordination.v1.Lease lease) {
            UidClaims.Claim claim = UidClaims.parse(lease);
            if (action == Action.ADDED && claim != null && claim.vmKey().equals(ns + "/vm1")) {
              uidRevisions.add(Long.parseLong(lease.getMetadata().getResourceVersion()));
            }
          }

          @Override
          public void onClose(io.fabric8.kubernetes.client.WatcherException cause) {}
        });
        var podWatch = client.pods().inNamespace(nodePodNamespace).watch(new io.fabric8.kubernetes.client.Watcher<>() {
          @Override
          public void eventReceived(Action action, Pod pod) {
            if (action == Action.ADDED && ns.equals(pod.getMetadata().getLabels().get(NodePodShape.LABEL_VM_NAMESPACE))) {
              podRevisions.add(Long.parseLong(pod.getMetadata().getResourceVersion()));
            }
          }

          @Override
          public void onClose(io.fabric8.kubernetes.client.WatcherException cause) {}
        })) {
      cluster.create(vm(ns, "vm1", "1Gi", selector, "0000:3b:00.0"));
      await().atMost(TIMEOUT).until(() -> !podRevisions.isEmpty() && !uidRevisions.isEmpty());
      assertThat(uidRevisions.get(0)).isLessThan(podRevisions.get(0));
    }

    VfioVm placed = awaitPhase("vm1", Phase.Placed);
    VfioVmStatus status = placed.getStatus();
    assertThat(status.getHostUid()).isBetween(settings.uidRangeStart(),
        settings.uidRangeStart() + settings.uidRangeSize() - 1);
    assertThat(status.getNodeName()).isEqualTo(node);
    assertThat(status.getMemlockLimitBytes()).isEqualTo(2 * GI);
    assertThat(condition(placed, VfioVmStatus.UID_ASSIGNED).getStatus()).isEqualTo("True");
    assertThat(condition(placed, VfioVmStatus.PLACED).getStatus()).isEqualTo("True");
    assertThat(status.getObservedGeneration()).isEqualTo(placed.getMetadata().getGeneration());
    assertThat(placed.getMetadata().getFinalizers()).isNotEmpty();

    Pod pod = await().atMost(TIMEOUT).until(() -> cluster.podOf(ns, "vm1"), p -> p != null);
    assertThat(pod.getSpec().getNodeName()).isEqualTo(node);
    assertThat(pod.getMetadata().getLabels())
        .containsEntry(NodePodShape.LABEL_VM_NAMESPACE, ns)
        .containsEntry(NodePodShape.LABEL_VM_NAME, "vm1")
        .containsEntry(NodePodShape.LABEL_HOST_UID, Long.toString(status.getHostUid()));
    assertThat(pod.getMetadata().getAnnotations()).containsEntry(NodePodShape.ANNOTATION_VM, ns + "/vm1");
    assertThat(pod.getSpec().getContainers().get(0).getArgs())
        .containsSubsequence("--host-uid", Long.toString(status.getHostUid()))
        .containsSubsequence("--memlock", Long.toString(2 * GI))
        .containsSubsequence("--device", "0000:3b:00.0");
    assertThat(status.getPodName()).isEqualTo(nodePodNamespace + "/" + pod.getMetadata().getName());

    cluster.report(ns, "vm1", report(AgentPhase.Starting, status.getHostUid(), 2 * GI, null));
    awaitPhase("vm1", Phase.Starting);
    cluster.report(ns, "vm1", report(AgentPhase.Running, status.getHostUid(), 2 * GI, GI));
    VfioVm running = awaitPhase("vm1", Phase.Running);
    assertThat(running.getStatus().getPinnedBytes()).isEqualTo(GI);
    assertThat(running.getStatus().getDmaBackend()).isEqualTo("IoUring");
    for (String type : List.of(VfioVmStatus.MEMLOCK_LIMITED, VfioVmStatus.DMA_MAPPED, VfioVmStatus.READY)) {
      assertThat(condition(running, type).getStatus()).as(type).isEqualTo("True");
      assertThat(condition(running, type).getReason()).as(type).isNotBlank();
    }
    // the Placed event is recorded right after the node pod's create and says so (no NodePodCreated of its own);
    // Starting lasted here (the report stays until the test posts Running), so it was written and has its event
    await().atMost(TIMEOUT).untilAsserted(() -> assertThat(cluster.eventReasons(ns, "vm1"))
        .contains("Placed", "Starting", "Running").doesNotContain("NodePodCreated"));

    var failed = report(AgentPhase.Failed, status.getHostUid(), 2 * GI, null);
    failed.setError("ENOMEM");
    failed.setMessage("pinning 1073741824 bytes exceeds RLIMIT_MEMLOCK 8388608");
    cluster.report(ns, "vm1", failed);
    VfioVm broken = awaitPhase("vm1", Phase.Failed);
    assertThat(condition(broken, VfioVmStatus.READY).getReason()).isEqualTo("ENOMEM");
    assertThat(condition(broken, VfioVmStatus.DMA_MAPPED).getMessage()).contains("RLIMIT_MEMLOCK 8388608");
  }

  @Test
  void overBudgetWaitsAsPendingAndIsPlacedOnceAnotherVmAndItsPodAreGone() {
    String node = node("a", "5Gi"); // budget 4Gi: two 2Gi limits
    cluster.create(vm(ns, "a", "1Gi", selector));
    cluster.create(vm(ns, "b", "1Gi", selector));
    awaitPhase("a", Phase.Placed);
    awaitPhase("b", Phase.Placed);
    cluster.create(vm(ns, "c", "1Gi", selector));
    VfioVm pending = awaitPhase("c", Phase.Pending);
    Condition placed = condition(pending, VfioVmStatus.PLACED);
    assertThat(placed.getStatus()).isEqualTo("False");
    assertThat(placed.getReason()).isEqualTo("InsufficientBudget");
    assertThat(placed.getMessage()).contains(node).contains("free 0");
    // a waiting VM holds no UID: it comes with the node
    assertThat(pending.getStatus().getHostUid()).isNull();
    assertThat(condition(pending, VfioVmStatus.UID_ASSIGNED).getReason()).isEqualTo("WaitingForPlacement");
    assertThat(cluster.podOf(ns, "c")).isNull();
    await().atMost(TIMEOUT).untilAsserted(() -> assertThat(cluster.eventReasons(ns, "c")).contains("InsufficientBudget"));

    client.resources(VfioVm.class).inNamespace(ns).withName("a").delete();
    awaitPhase("a", Phase.Terminating);
    await().atMost(TIMEOUT).until(() -> cluster.podOf(ns, "a").getMetadata().getDeletionTimestamp() != null);
    // while a's pod still exists (no kubelet has removed it), its UID and budget stay taken
    await().during(Duration.ofSeconds(3)).atMost(Duration.ofSeconds(10))
        .until(() -> cluster.get(ns, "c").getStatus().getPhase() == Phase.Pending
            && cluster.get(ns, "a") != null);

    cluster.finishPodDeletions();
    await().atMost(TIMEOUT).until(() -> cluster.get(ns, "a") == null);
    VfioVm nowPlaced = awaitPhase("c", Phase.Placed);
    assertThat(nowPlaced.getStatus().getNodeName()).isEqualTo(node);
    await().atMost(TIMEOUT).until(() -> cluster.podOf(ns, "c") != null);
  }

  @Test
  void theNodePodOfAVmWhoseFinalizerWasRemovedByHandIsDeletedWithNothingElseHappening() {
    node("a", "5Gi");
    cluster.create(vm(ns, "forced", "1Gi", selector));
    long uid = awaitPhase("forced", Phase.Placed).getStatus().getHostUid();
    Pod pod = await().atMost(TIMEOUT).until(() -> cluster.podOf(ns, "forced"), p -> p != null);
    VfioVm vm = cluster.get(ns, "forced");
    // what an impatient user does, and the last thing that happens: JOSDK reconciles nothing for a VM gone
    // without its finalizer, so only the VM's delete event can lead the operator to its pod
    client.resource(vm).edit(v -> {
      v.getMetadata().setFinalizers(new java.util.ArrayList<>());
      return v;
    });
    client.resource(vm).delete();
    await().atMost(TIMEOUT).until(() -> client.pods().inNamespace(nodePodNamespace)
        .withName(pod.getMetadata().getName()).get().getMetadata().getDeletionTimestamp() != null);
    // its UID and limit stay in the book (the pod may still run) until the pod is gone, then are free
    assertThat(operator.reconciler().ledger().snapshot().values()).anyMatch(e -> e.hostUid() == uid);
    client.pods().inNamespace(nodePodNamespace).withName(pod.getMetadata().getName()).withGracePeriod(0).delete();
    await().atMost(TIMEOUT).until(() -> operator.reconciler().ledger().snapshot().values().stream()
        .noneMatch(e -> e.hostUid() == uid));
    assertThat(client.leases().inNamespace(nodePodNamespace).withName(UidClaims.name(uid)).get())
        .as("the UID claim of the VM gone").isNull();
  }

  @Test
  void aLeftoverPodOfADeletedVmOfTheSameNameIsNotAdopted() throws Exception {
    String node = node("a", "9Gi");
    // the pod of an earlier "same" (its finalizer removed by hand): another metadata.uid, a report of Running
    VfioVm earlier = vm(ns, "same", "1Gi", selector);
    earlier.getMetadata().setUid("0000-earlier");
    long leftoverUid = settings.uidRangeStart() + 65_000;
    Pod leftover = NodePodShape.build(earlier, leftoverUid, node,
        SpecValidation.validate(earlier.getSpec(), GI).plan(), settings);
    leftover.getMetadata().getAnnotations().put(NodePodShape.ANNOTATION_VM_UID, "0000-earlier");
    leftover.getMetadata().getAnnotations().put(dev.vfiovm.api.NodeAgentReport.POD_ANNOTATION,
        new com.fasterxml.jackson.databind.ObjectMapper().writeValueAsString(
            report(AgentPhase.Running, leftoverUid, 2 * GI, GI)));
    client.pods().inNamespace(nodePodNamespace).resource(leftover).create();

    cluster.create(vm(ns, "same", "1Gi", selector));
    VfioVm placed = awaitPhase("same", Phase.Placed);
    assertThat(placed.getStatus().getHostUid()).isNotEqualTo(leftoverUid);
    assertThat(placed.getStatus().getMessage()).contains("earlier VfioVm");
    // the leftover is deleted, never taken for the new VM's pod (its Running report is not the new VM's)
    await().atMost(TIMEOUT).until(() -> cluster.podOf(ns, "same").getMetadata().getDeletionTimestamp() != null);
    await().during(Duration.ofSeconds(2)).atMost(Duration.ofSeconds(10))
        .until(() -> cluster.get(ns, "same").getStatus().getPhase() == Phase.Placed);
    client.pods().inNamespace(nodePodNamespace).withName(leftover.getMetadata().getName()).withGracePeriod(0).delete();
    Pod own = await().atMost(TIMEOUT).until(() -> cluster.podOf(ns, "same"),
        p -> p != null && p.getMetadata().getDeletionTimestamp() == null);
    assertThat(own.getMetadata().getLabels())
        .containsEntry(NodePodShape.LABEL_HOST_UID, Long.toString(placed.getStatus().getHostUid()));
  }

  @Test
  void aBigWaitingVmIsNotStarvedByYoungerSmallOnes() {
    node("a", "6656Mi"); // budget 5.5Gi
    cluster.create(vm(ns, "s1", "1Gi", selector)); // 2Gi limits
    cluster.create(vm(ns, "s2", "1Gi", selector));
    awaitPhase("s1", Phase.Placed);
    awaitPhase("s2", Phase.Placed);
    cluster.create(vm(ns, "big", "2Gi", selector)); // 3Gi: 1.5Gi free
    awaitPhase("big", Phase.Pending);
    // a younger small VM (1Gi + 64Mi) would fit the free 1.5Gi, but the node drains for the older big one
    cluster.create(vm(ns, "young", "64Mi", selector));
    VfioVm young = awaitPhase("young", Phase.Pending);
    assertThat(condition(young, VfioVmStatus.PLACED).getReason()).isEqualTo("InsufficientBudget");
    assertThat(young.getStatus().getHostUid()).isNull();

    client.resources(VfioVm.class).inNamespace(ns).withName("s1").delete();
    await().atMost(TIMEOUT).until(() -> {
      cluster.finishPodDeletions();
      return cluster.get(ns, "s1") == null;
    });
    awaitPhase("big", Phase.Placed);
    // 0.5Gi left: young still waits, until s2 goes too
    await().during(Duration.ofSeconds(2)).atMost(Duration.ofSeconds(10))
        .until(() -> cluster.get(ns, "young").getStatus().getPhase() == Phase.Pending);
    client.resources(VfioVm.class).inNamespace(ns).withName("s2").delete();
    await().atMost(TIMEOUT).until(() -> {
      cluster.finishPodDeletions();
      return cluster.get(ns, "s2") == null;
    });
    awaitPhase("young", Phase.Placed);
  }

  @Test
  void theSameDeviceOnTheSameNodeIsRefusedNamingTheHolder() {
    String first = node("a", "9Gi");
    String second = node("b", "9Gi");
    VfioVm x = vm(ns, "x", "1Gi", selector, "0000:3b:00.0");
    x.getSpec().setNodeName(first);
    cluster.create(x);
    awaitPhase("x", Phase.Placed);

    VfioVm y = vm(ns, "y", "1Gi", selector, "0000:3b:00.0");
    y.getSpec().setNodeName(first);
    cluster.create(y);
    VfioVm refused = awaitPhase("y", Phase.Failed);
    Condition placed = condition(refused, VfioVmStatus.PLACED);
    assertThat(placed.getReason()).isEqualTo("DeviceConflict");
    assertThat(placed.getMessage()).contains("0000:3b:00.0").contains(ns + "/x").contains(first);
    assertThat(cluster.podOf(ns, "y")).isNull();
    await().atMost(TIMEOUT).untilAsserted(() -> assertThat(cluster.eventReasons(ns, "y")).contains("DeviceConflict"));

    // an unpinned VM with the same address goes to the node where that address is free
    cluster.create(vm(ns, "z", "1Gi", selector, "0000:3b:00.0"));
    assertThat(awaitPhase("z", Phase.Placed).getStatus().getNodeName()).isEqualTo(second);
  }

  @Test
  void anInvalidSpecGetsNothingAndAFixedOneIsPlaced() {
    node("a", "9Gi");
    // a device listed twice is refused by the API server itself, even 1.20 (devices is a list-type map)
    assertThatThrownBy(() -> cluster.create(vm(ns, "dup", "1Gi", selector, "0000:3b:00.0", "0000:3b:00.0")))
        .isInstanceOfSatisfying(KubernetesClientException.class, e -> assertThat(e.getCode()).isEqualTo(422))
        .hasMessageContaining("spec.devices[1]: Duplicate value");
    // what this server's schema cannot say (no CEL here) the operator refuses: memory not in whole pages
    cluster.create(vm(ns, "bad", "1000001", selector, "0000:3b:00.0", "0000:3b:00.1"));
    VfioVm failed = awaitPhase("bad", Phase.Failed);
    assertThat(failed.getStatus().getMessage()).contains("spec.memory").contains("4 KiB pages");
    assertThat(failed.getStatus().getHostUid()).isNull();
    assertThat(condition(failed, VfioVmStatus.UID_ASSIGNED).getReason()).isEqualTo("InvalidSpec");
    assertThat(cluster.podOf(ns, "bad")).isNull();
    await().atMost(TIMEOUT).untilAsserted(() -> assertThat(cluster.eventReasons(ns, "bad")).contains("InvalidSpec"));

    editVm("bad", v -> {
      v.getSpec().setMemory("1Gi");
      v.getSpec().getDevices().remove(1);
    });
    VfioVm fixed = awaitPhase("bad", Phase.Placed);
    assertThat(fixed.getStatus().getHostUid()).isNotNull();
    assertThat(fixed.getStatus().getObservedGeneration()).isEqualTo(fixed.getMetadata().getGeneration());
  }

  @Test
  void fiftyVmsAppliedAtOnceGetDistinctUidsAndNoNodeIsOverBudget() throws Exception {
    // 4 nodes x 20Gi budget = 40 limits of 2Gi; 10 VMs must wait
    List<String> names = IntStream.range(0, 4).mapToObj(i -> node("n" + i, "21Gi")).toList();
    ExecutorService pool = Executors.newFixedThreadPool(16);
    try {
      List<Future<VfioVm>> created = new ArrayList<>();
      for (int i = 0; i < 50; i++) {
        VfioVm vm = vm(ns, "vm" + i, "1Gi", selector);
        created.add(pool.submit(() -> cluster.create(vm)));
      }
      for (Future<VfioVm> f : created) {
        f.get();
      }
    } finally {
      pool.shutdown();
    }
    List<VfioVm> vms = await().atMost(Duration.ofMinutes(3)).pollInterval(Duration.ofSeconds(1))
        .until(() -> client.resources(VfioVm.class).inNamespace(ns).list().getItems(),
            list -> list.size() == 50 && list.stream().allMatch(v -> v.getStatus() != null
                && ((v.getStatus().getPhase() == Phase.Placed && v.getStatus().getHostUid() != null)
                    || v.getStatus().getPhase() == Phase.Pending)));
    // the placed ones hold distinct UIDs; the waiting ones none (a UID comes with a node)
    Set<Long> uids = vms.stream().filter(v -> v.getStatus().getPhase() == Phase.Placed)
        .map(v -> v.getStatus().getHostUid()).collect(Collectors.toSet());
    assertThat(uids).hasSize(40).allMatch(uid -> settings.uidRange().contains(uid));
    assertThat(vms.stream().filter(v -> v.getStatus().getPhase() == Phase.Pending))
        .allMatch(v -> v.getStatus().getHostUid() == null);
    Map<String, Long> used = new HashMap<>();
    vms.stream().filter(v -> v.getStatus().getPhase() == Phase.Placed)
        .forEach(v -> used.merge(v.getStatus().getNodeName(), v.getStatus().getMemlockLimitBytes(), Long::sum));
    assertThat(used.keySet()).containsExactlyInAnyOrderElementsOf(names);
    assertThat(used.values()).allMatch(bytes -> bytes <= 20 * GI);
    assertThat(vms.stream().filter(v -> v.getStatus().getPhase() == Phase.Placed)).hasSize(40);
    assertThat(vms.stream().filter(v -> v.getStatus().getPhase() == Phase.Pending))
        .hasSize(10)
        .allMatch(v -> "InsufficientBudget".equals(condition(v, VfioVmStatus.PLACED).getReason()));
    List<Pod> pods = await().atMost(TIMEOUT).until(
        () -> cluster.nodePods().stream().filter(p -> ns.equals(p.getMetadata().getLabels()
            .get(NodePodShape.LABEL_VM_NAMESPACE))).toList(), p -> p.size() == 40);
    assertThat(pods.stream().map(VfioVmReconciler::hostUidOf).collect(Collectors.toSet())).hasSize(40);
  }

  @Test
  void aRestartedOperatorKeepsUidsAndBudgetsAndDuplicatesNothing() throws Exception {
    String node = node("a", "7Gi"); // budget 6Gi: three VMs
    for (String name : List.of("r1", "r2", "r3")) {
      cluster.create(vm(ns, name, "1Gi", selector));
    }
    Map<String, Long> before = new HashMap<>();
    for (String name : List.of("r1", "r2", "r3")) {
      before.put(name, awaitPhase(name, Phase.Placed).getStatus().getHostUid());
      await().atMost(TIMEOUT).until(() -> cluster.podOf(ns, name) != null);
    }
    List<String> podUidsBefore = cluster.nodePods().stream().map(p -> p.getMetadata().getUid()).sorted().toList();

    operator.close();
    // the new instance also takes the leader-election lease in the operator's namespace
    operator = VfioVmOperator.start(client, settings, 0, nodePodNamespace);
    await().atMost(TIMEOUT).until(() -> client.leases().inNamespace(nodePodNamespace)
        .withName(VfioVmOperator.LEASE_NAME).get() != null);

    cluster.create(vm(ns, "r4", "1Gi", selector));
    VfioVm r4 = awaitPhase("r4", Phase.Pending);
    assertThat(condition(r4, VfioVmStatus.PLACED).getReason()).isEqualTo("InsufficientBudget");
    assertThat(r4.getStatus().getHostUid()).isNotIn(before.values());
    for (String name : List.of("r1", "r2", "r3")) {
      VfioVm vm = cluster.get(ns, name);
      assertThat(vm.getStatus().getHostUid()).isEqualTo(before.get(name));
      assertThat(vm.getStatus().getNodeName()).isEqualTo(node);
    }
    assertThat(cluster.nodePods().stream().map(p -> p.getMetadata().getUid()).sorted().toList())
        .isEqualTo(podUidsBefore);
  }

  @Test
  void deletionRemovesThePodFirstThenTheUidAndExactBudgetAreReusable() {
    String node = node("a", "3Gi"); // budget 2Gi: exactly one 2Gi limit
    cluster.create(vm(ns, "first", "1Gi", selector));
    long uid = awaitPhase("first", Phase.Placed).getStatus().getHostUid();
    await().atMost(TIMEOUT).until(() -> cluster.podOf(ns, "first") != null);

    client.resources(VfioVm.class).inNamespace(ns).withName("first").delete();
    awaitPhase("first", Phase.Terminating);
    assertThat(cluster.podOf(ns, "first").getMetadata().getDeletionTimestamp()).isNotNull();
    cluster.finishPodDeletions();
    await().atMost(TIMEOUT).until(() -> cluster.get(ns, "first") == null);
    assertThat(cluster.podOf(ns, "first")).isNull();
    assertThat(cluster.eventReasons(ns, "first")).contains("DeletingNodePod", "Released");

    cluster.create(vm(ns, "second", "1Gi", selector));
    VfioVm second = awaitPhase("second", Phase.Placed);
    // the budget comes back at once; the UID just freed is the last to come back (hand-out cursor: the next
    // free UID after the last one handed out), so a freed UID returns only once the range has wrapped
    assertThat(second.getStatus().getHostUid()).isEqualTo(uid + 1);
    assertThat(second.getStatus().getNodeName()).isEqualTo(node);
  }

  @Test
  void aPendingVmIsPlacedWhenANodeIsAddedLater() {
    cluster.create(vm(ns, "early", "1Gi", selector));
    VfioVm waiting = awaitPhase("early", Phase.Pending);
    assertThat(condition(waiting, VfioVmStatus.PLACED).getReason()).isEqualTo("NoMatchingNode");

    node("small", "2Gi"); // budget 1Gi < 2Gi limit
    await().atMost(TIMEOUT).untilAsserted(() -> assertThat(
        condition(cluster.get(ns, "early"), VfioVmStatus.PLACED).getReason()).isEqualTo("InsufficientBudget"));
    // an annotation may lower a node's host reserve: 2Gi - 0 fits the 2Gi limit exactly
    String big = node("roomy", "2Gi", Map.of(NodeBudget.HOST_RESERVE_ANNOTATION, "0"));
    assertThat(awaitPhase("early", Phase.Placed).getStatus().getNodeName()).isEqualTo(big);
  }

  @Test
  void anExhaustedUidRangeIsAConditionAndClearsWhenAVmIsDeleted() throws Exception {
    node("a", "20Gi");
    operator.close();
    // a range of its own: other tests' UIDs (some maybe quarantined: their nodes are gone) lie below
    operator = VfioVmOperator.start(client, settings.withUidRange(settings.uidRangeStart() + 60_010, 2), 0, null);
    try {
      cluster.create(vm(ns, "u1", "1Gi", selector));
      cluster.create(vm(ns, "u2", "1Gi", selector));
      awaitPhase("u1", Phase.Placed);
      awaitPhase("u2", Phase.Placed);
      cluster.create(vm(ns, "u3", "1Gi", selector));
      VfioVm starved = awaitPhase("u3", Phase.Pending);
      assertThat(condition(starved, VfioVmStatus.UID_ASSIGNED).getReason()).isEqualTo("UidRangeExhausted");
      assertThat(starved.getStatus().getMessage()).contains("UID range");

      client.resources(VfioVm.class).inNamespace(ns).withName("u1").delete();
      await().atMost(TIMEOUT).until(() -> {
        cluster.finishPodDeletions();
        return cluster.get(ns, "u1") == null;
      });
      assertThat(awaitPhase("u3", Phase.Placed).getStatus().getHostUid()).isNotNull();
    } finally {
      cluster.deleteAllVms(ns);
      operator.close();
      operator = VfioVmOperator.start(client, settings, 0, null);
    }
  }

  @Test
  void healthReadinessAndMetricsAreServed() throws Exception {
    String node = node("a", "5Gi");
    cluster.create(vm(ns, "m", "1Gi", selector));
    awaitPhase("m", Phase.Placed);
    HttpClient http = HttpClient.newHttpClient();
    String base = "http://127.0.0.1:" + operator.httpPort();
    assertThat(http.send(HttpRequest.newBuilder(URI.create(base + "/healthz")).build(),
        HttpResponse.BodyHandlers.ofString()).statusCode()).isEqualTo(200);
    await().atMost(TIMEOUT).until(() -> http.send(HttpRequest.newBuilder(URI.create(base + "/readyz")).build(),
        HttpResponse.BodyHandlers.ofString()).statusCode() == 200);
    String metrics = http.send(HttpRequest.newBuilder(URI.create(base + "/metrics")).build(),
        HttpResponse.BodyHandlers.ofString()).body();
    assertThat(metrics)
        .contains("vfiovm_node_budget_used_bytes{node=\"" + node + "\"} " + (double) (2 * GI))
        .contains("vfiovm_node_budget_free_bytes{node=\"" + node + "\"} " + (double) (2 * GI))
        .contains("vfiovm_vms{phase=\"Placed\"}")
        .contains("vfiovm_host_uids_in_use")
        .contains("vfiovm_host_uids_left")
        .contains("operator_sdk_");
  }

  @Test
  void theCommittedCrdAppliesOnThisServerWithoutCelWithKubectlsValidationOff() {
    String crd = Path.of(System.getenv().getOrDefault("VFIOVM_REPO_ROOT", ".."), "crds", "vfiovms.vfiovm.dev-v1.yml")
        .toString();
    // kubectl 1.20 checks a CRD against this server's schema of CRDs, which has no x-kubernetes-validations
    assertThatThrownBy(() -> KubeApiServerFixture.kubectl("apply", "--dry-run=server", "-f", crd))
        .hasMessageContaining("x-kubernetes-validations");
    // without that client-side check the server takes it and drops the CEL rules it does not know
    assertThat(KubeApiServerFixture.kubectl("apply", "--validate=false", "-f", crd))
        .contains("customresourcedefinition.apiextensions.k8s.io/vfiovms.vfiovm.dev");
    assertThat(client.apiextensions().v1().customResourceDefinitions().withName("vfiovms.vfiovm.dev").get()
        .getSpec().getVersions().get(0).getSchema().getOpenAPIV3Schema().getXKubernetesValidations()).isNullOrEmpty();
  }

  @Test
  void theExamplesApplyWithKubectlAndArePlaced() {
    Path examples = Path.of(System.getenv().getOrDefault("VFIOVM_REPO_ROOT", ".."), "operator", "examples");
    String node = node("a", "9Gi"); // budget 8Gi: the 5Gi example, the 1Gi+64Mi one and the 1Gi+256Mi guest
    String out = KubeApiServerFixture.kubectl("apply", "-n", ns, "-f", examples.toString());
    assertThat(out).contains("vfiovm.vfiovm.dev/example created").contains("vfiovm.vfiovm.dev/example-io-uring created")
        .contains("vfiovm.vfiovm.dev/example-guest-demo created");
    for (String name : List.of("example", "example-io-uring", "example-guest-demo")) {
      // the examples select no labels: they may land on any node with room; ours has it
      VfioVm vm = await().atMost(TIMEOUT).until(() -> cluster.get(ns, name),
          v -> v.getStatus() != null && v.getStatus().getHostUid() != null && v.getStatus().getPhase() == Phase.Placed
              && v.getStatus().getConsole() != null);
      assertThat(vm.getStatus().getNodeName()).isNotBlank();
      assertThat(vm.getStatus().getConsole()).startsWith("kubectl logs -n " + nodePodNamespace + " vfiovm-" + name + "-")
          .endsWith(" -c node-agent");
    }
    assertThat(cluster.get(ns, "example").getStatus().getMemlockLimitBytes()).isEqualTo(5 * GI);
    // the guest's node pod, as the server stored it: boot files copied by unprivileged init containers
    Pod guest = await().atMost(TIMEOUT).until(() -> cluster.podOf(ns, "example-guest-demo"), p -> p != null);
    assertThat(guest.getSpec().getInitContainers()).extracting(c -> c.getName())
        .containsExactly("vfiovm-tools", "boot-kernel", "boot-initrd");
    assertThat(guest.getSpec().getInitContainers().get(1).getImage()).isEqualTo("docker.io/vfiovm/guest-demo:0.1.0-SNAPSHOT");
    assertThat(guest.getSpec().getAutomountServiceAccountToken()).isFalse();
    assertThat(guest.getSpec().getContainers().get(0).getArgs()).containsSequence("--cpus", "1",
        "--kernel", "/vm/boot/kernel", "--initrd", "/vm/boot/initrd", "--cmdline", "console=ttyS0");
    String table = KubeApiServerFixture.kubectl("get", "vvm", "-n", ns);
    assertThat(table).contains("PHASE").contains("NODE").contains("UID").contains("MEMLOCK").contains("PINNED")
        .contains("Placed");
    assertThat(KubeApiServerFixture.kubectl("get", "vvm", "-n", ns, "-o", "wide")).contains("CONSOLE");
    await().atMost(TIMEOUT).ignoreExceptions().untilAsserted(() ->
        assertThat(KubeApiServerFixture.kubectl("explain", "vfiovm.spec.devices"))
            .contains("PCI address of the device on the node"));
    assertThat(KubeApiServerFixture.kubectl("explain", "vfiovm.spec.boot"))
        .contains("containerDisk").contains("firmware only");
    assertThat(KubeApiServerFixture.kubectl("explain", "vfiovm.spec.boot.containerDisk.image"))
        .contains("OCI image reference");
    assertThat(KubeApiServerFixture.kubectl("explain", "vfiovm.spec.cpus")).contains("vCPUs");
    assertThat(KubeApiServerFixture.kubectl("explain", "vfiovm.spec.console")).contains("kubectl logs");
  }

  @Test
  void aBootThatCannotWorkIsRefusedBeforeAnythingIsAllocated() {
    node("a", "5Gi");
    VfioVm bad = vm(ns, "bad-boot", "64Mi", selector);
    dev.vfiovm.api.BootSpec boot = new dev.vfiovm.api.BootSpec();
    boot.setContainerDisk(new dev.vfiovm.api.ContainerDiskSource("Not A Reference"));
    boot.setKernel("vmlinuz");
    boot.setDisk("/disk.img");
    bad.getSpec().setBoot(boot);
    cluster.create(bad);
    VfioVm failed = awaitPhase("bad-boot", Phase.Failed);
    assertThat(failed.getStatus().getMessage()).contains("spec.boot.containerDisk.image").contains("spec.boot.kernel")
        .contains("not both");
    assertThat(failed.getStatus().getHostUid()).isNull();
    assertThat(cluster.podOf(ns, "bad-boot")).isNull();
  }

  @Test
  void aNodePodRemovedBehindTheOperatorsBackIsRecreatedWithTheSameUid() {
    node("a", "5Gi");
    cluster.create(vm(ns, "phoenix", "1Gi", selector));
    long uid = awaitPhase("phoenix", Phase.Placed).getStatus().getHostUid();
    Pod first = await().atMost(TIMEOUT).until(() -> cluster.podOf(ns, "phoenix"), p -> p != null);
    client.pods().inNamespace(nodePodNamespace).withName(first.getMetadata().getName()).withGracePeriod(0).delete();
    Pod second = await().atMost(TIMEOUT).until(() -> cluster.podOf(ns, "phoenix"),
        p -> p != null && !p.getMetadata().getUid().equals(first.getMetadata().getUid()));
    assertThat(second.getMetadata().getLabels()).containsEntry(NodePodShape.LABEL_HOST_UID, Long.toString(uid));
    assertThat(cluster.get(ns, "phoenix").getStatus().getHostUid()).isEqualTo(uid);
  }

  @Test
  void cpusBootOrConsoleEditedAfterThePodStartedAreReportedNotApplied() {
    node("a", "3Gi");
    cluster.create(vm(ns, "edited", "64Mi", selector));
    awaitPhase("edited", Phase.Placed);
    await().atMost(TIMEOUT).until(() -> cluster.podOf(ns, "edited") != null);
    editVm("edited", v -> v.getSpec().setCpus(2));
    VfioVm edited = await().atMost(TIMEOUT).until(() -> cluster.get(ns, "edited"),
        v -> v.getStatus().getObservedGeneration() == 2L);
    assertThat(edited.getStatus().getMessage()).contains("spec.cpus was changed after placement and is not applied")
        .contains("re-create");
    assertThat(cluster.podOf(ns, "edited").getSpec().getContainers().get(0).getArgs()).containsSubsequence("--cpus", "1");
  }

  @Test
  void aSpecEditedAfterPlacementIsReportedNotApplied() {
    node("a", "9Gi");
    cluster.create(vm(ns, "fixed", "1Gi", selector));
    awaitPhase("fixed", Phase.Placed);
    await().atMost(TIMEOUT).until(() -> cluster.podOf(ns, "fixed") != null);
    editVm("fixed", v -> v.getSpec().setMemory("2Gi"));
    VfioVm edited = await().atMost(TIMEOUT).until(() -> cluster.get(ns, "fixed"),
        v -> v.getStatus().getObservedGeneration() == 2L);
    assertThat(edited.getStatus().getMessage()).contains("not applied").contains("re-create");
    assertThat(condition(edited, VmStatuses.SPEC_APPLIED).getReason()).isEqualTo("SpecChangedAfterPlacement");
    assertThat(condition(edited, VmStatuses.SPEC_APPLIED).getMessage()).startsWith("spec.memory was changed");
    await().atMost(TIMEOUT).untilAsserted(
        () -> assertThat(cluster.eventReasons(ns, "fixed")).contains("SpecChangedAfterPlacement"));
    assertThat(edited.getStatus().getMemlockLimitBytes()).isEqualTo(2 * GI);
    Pod original = cluster.podOf(ns, "fixed");
    assertThat(original.getSpec().getContainers().get(0).getArgs()).containsSubsequence("--memory", Long.toString(GI));
    // a pod recreated after the edit still runs the plan the VM was placed with
    client.pods().inNamespace(nodePodNamespace).withName(original.getMetadata().getName()).withGracePeriod(0).delete();
    Pod recreated = await().atMost(TIMEOUT).until(() -> cluster.podOf(ns, "fixed"),
        p -> p != null && !p.getMetadata().getUid().equals(original.getMetadata().getUid()));
    assertThat(recreated.getSpec().getContainers().get(0).getArgs())
        .containsSubsequence("--memory", Long.toString(GI), "--memlock", Long.toString(2 * GI));
  }

  @Test
  void aVmWhoseNodeLeftTheClusterFailsInsteadOfChasingIt() {
    String node = node("a", "5Gi");
    cluster.create(vm(ns, "orphan", "1Gi", selector));
    long uid = awaitPhase("orphan", Phase.Placed).getStatus().getHostUid();
    Pod pod = await().atMost(TIMEOUT).until(() -> cluster.podOf(ns, "orphan"), p -> p != null);
    client.nodes().withName(node).delete();
    await().atMost(TIMEOUT).until(() -> operator.reconciler().nodeBudgets().stream().noneMatch(n -> n.name().equals(node)));
    // the pod garbage collector removes pods bound to a node that no longer exists
    client.pods().inNamespace(nodePodNamespace).withName(pod.getMetadata().getName()).withGracePeriod(0).delete();
    VfioVm failed = awaitPhase("orphan", Phase.Failed);
    assertThat(condition(failed, VfioVmStatus.PLACED).getReason()).isEqualTo("NodeGone");
    assertThat(failed.getStatus().getHostUid()).isEqualTo(uid);
    await().during(Duration.ofSeconds(2)).atMost(Duration.ofSeconds(10)).until(() -> cluster.podOf(ns, "orphan") == null);
  }

  @Test
  void aUidStillCarriedByALeftoverNodePodIsNotHandedOut() throws Exception {
    String node = node("a", "9Gi");
    // a range of two UIDs of its own (other tests' UIDs, maybe quarantined, lie far below)
    long first = settings.uidRangeStart() + 60_000;
    operator.close();
    operator = VfioVmOperator.start(client, settings.withUidRange(first, 2), 0, null);
    try {
      // a node pod whose VM is gone (say, its finalizer was removed by hand) still runs as the first UID
      VfioVm ghost = vm(ns, "ghost", "1Gi", selector);
      Pod leftover = NodePodShape.build(ghost, first, node,
          SpecValidation.validate(ghost.getSpec(), GI).plan(), settings);
      client.pods().inNamespace(nodePodNamespace).resource(leftover).create();
      try {
        await().atMost(TIMEOUT).until(() -> operator.reconciler().uidsHeldByNodePods().contains(first));
        // an orphan node pod is deleted (it stays while no kubelet removes it: its UID stays held)
        await().atMost(TIMEOUT).until(() -> client.pods().inNamespace(nodePodNamespace)
            .withName(leftover.getMetadata().getName()).get().getMetadata().getDeletionTimestamp() != null);
        cluster.create(vm(ns, "newcomer", "1Gi", selector));
        assertThat(awaitPhase("newcomer", Phase.Placed).getStatus().getHostUid()).isEqualTo(first + 1);
        cluster.create(vm(ns, "starved", "1Gi", selector));
        assertThat(condition(awaitPhase("starved", Phase.Pending), VfioVmStatus.UID_ASSIGNED).getReason())
            .isEqualTo("UidRangeExhausted");
      } finally {
        client.pods().inNamespace(nodePodNamespace).withName(leftover.getMetadata().getName()).withGracePeriod(0).delete();
      }
      // the leftover pod gone (it never ran: no status), its UID is free again
      assertThat(awaitPhase("starved", Phase.Placed).getStatus().getHostUid()).isEqualTo(first);
    } finally {
      cluster.deleteAllVms(ns);
      operator.close();
      operator = VfioVmOperator.start(client, settings, 0, null);
    }
  }

  @Test
  void aFailingReconcileSaysWhyInTheStatusWhileRetrying() throws Exception {
    node("a", "5Gi");
    operator.close();
    String missing = "no-such-namespace-" + group;
    operator = VfioVmOperator.start(client, new OperatorSettings(settings.uidRangeStart(), settings.uidRangeSize(),
        settings.memlockOverheadBytes(), settings.hostReserveBytes(), missing, "vfiovm:test", "vfiovm-node"), 0, null);
    try {
      cluster.create(vm(ns, "stuck", "1Gi", selector));
      VfioVm stuck = await().atMost(TIMEOUT).until(() -> cluster.get(ns, "stuck"),
          v -> v.getStatus() != null && v.getStatus().getMessage() != null
              && v.getStatus().getMessage().startsWith("reconcile failed, retrying"));
      assertThat(stuck.getStatus().getMessage()).contains(missing);
      // the Ready condition says it too, and an event
      assertThat(condition(stuck, VfioVmStatus.READY).getReason()).isEqualTo("ReconcileError");
      assertThat(condition(stuck, VfioVmStatus.READY).getMessage()).contains(missing);
      await().atMost(TIMEOUT).untilAsserted(() -> assertThat(cluster.eventReasons(ns, "stuck")).contains("ReconcileError"));
      // nothing is recorded without the UID's claim, which could not be made
      assertThat(stuck.getStatus().getHostUid()).isNull();
    } finally {
      // the pod never existed: deletion completes without a kubelet
      client.resources(VfioVm.class).inNamespace(ns).delete();
      await().atMost(TIMEOUT).until(() -> cluster.get(ns, "stuck") == null);
      operator.close();
      operator = VfioVmOperator.start(client, settings, 0, null);
    }
  }
}
