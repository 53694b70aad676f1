package dev.vfiovm.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.vfiovm.api.Phase;
import dev.vfiovm.api.VfioVm;
import dev.vfiovm.api.VfioVmStatus;
import dev.vfiovm.controller.NodeBudget;
import dev.vfiovm.testing.KubeApiServerFixture;
import io.fabric8.kubernetes.api.model.Condition;
import io.fabric8.kubernetes.api.model.Node;
import io.fabric8.kubernetes.api.model.NodeCondition;
import io.fabric8.kubernetes.api.model.NodeConditionBuilder;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.Taint;
import io.fabric8.kubernetes.api.model.TaintBuilder;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Fault suite, node level, on fake Nodes with the stand-in kubelet. The 1.20 API server here runs no
 * controller-manager, so the test does what its controllers would: the pod garbage collector (podgc) force-deletes
 * the pods bound to a node that is gone; the node lifecycle controller sets no condition itself (the test posts
 * Ready=False as a kubelet's missed heartbeats make it) and adds the {@code node.kubernetes.io/not-ready}
 * NoSchedule and NoExecute taints; its taint manager deletes the pods that do not tolerate the NoExecute taint
 * (node pods tolerate none), and they stay Terminating while the node's kubelet is down. Each scenario ends
 * with every VM Running or Failed with a reason (never stuck Starting/Placed), no orphan node pod, no UID claim
 * of a VM that is gone, no node over budget at any sampled moment, and prints what it did as counts.
 * <ol>
 *   <li>a node with running VMs deleted, its pods removed (podgc), the node re-added;
 *   <li>a node NotReady and tainted, its pods evicted, Ready again;
 *   <li>the agent killed mid-map (its report says Starting, then the container is terminated with 137).
 * </ol>
 */
class NodeFaultIT {
  static final String NODE_MEMORY = "8Mi";
  /** 1 MiB guests + 1 MiB overhead: 2 MiB limits, 4 per node. */
  static final int PER_NODE = 4;
  static final Duration BOUND = FaultCluster.CONVERGE;
  static FaultCluster cluster;
  static OperatorProcess operator;
  static FaultCluster.Sampler sampler;

  @BeforeAll
  static void start() throws Exception {
    cluster = new FaultCluster("nodes", 4, NODE_MEMORY);
    operator = cluster.operator("nodes", cluster.operatorArgs(1_879_048_192L, 256, false));
    await("the operator ready").atMost(Duration.ofMinutes(3)).pollInterval(Duration.ofMillis(200)).until(operator::ready);
    sampler = cluster.new Sampler();
  }

  @AfterAll
  static void stop() throws Exception {
    if (sampler != null) {
      sampler.close();
      System.out.printf("node faults: %d invariant samples (max %d node pods at once), %d violations %s; "
              + "%d node pods created; operator log: %d 'reconcile failed' lines%n",
          sampler.samples.get(), sampler.maxPods.get(), sampler.violations.size(), sampler.violations,
          cluster.pods.created.size(), operator.logLines("reconcile failed").size());
    }
    try {
      if (sampler != null) {
        assertThat(sampler.violations).as("UID collisions / nodes over budget at sampled moments").isEmpty();
      }
    } finally {
      if (cluster != null) {
        cluster.close();
      }
    }
  }

  /** (a) A node with running VMs deleted, its pods removed as podgc does, the node re-added. */
  @Test
  void aNodeDeletedAndReAdded() {
    long t0 = System.nanoTime();
    String node = cluster.nodes.get(0);
    List<VfioVm> onIt = createAll("gone", node, 2);
    VfioVm bystander = create(pinned("gone-bystander", cluster.nodes.get(3)));
    awaitPhase(onIt, Phase.Running);
    awaitPhase(List.of(bystander), Phase.Running);
    List<String> uidsBefore = onIt.stream().map(v -> String.valueOf(get(v).getStatus().getHostUid())).toList();

    cluster.kubelet.down(node); // a deleted node's kubelet runs nothing any more
    cluster.client.nodes().withName(node).delete();
    await("node " + node + " gone").atMost(BOUND).until(() -> cluster.client.nodes().withName(node).get() == null);
    // podgc: every pod bound to a node that no longer exists is force-deleted (grace period 0)
    int collected = 0;
    for (Pod p : podsOn(node)) {
      cluster.client.pods().inNamespace(p.getMetadata().getNamespace()).withName(p.getMetadata().getName())
          .withGracePeriod(0).delete();
      collected++;
    }
    List<VfioVm> ended = awaitEnded(onIt);
    for (VfioVm v : ended) {
      assertThat(v.getStatus().getPhase()).as(FaultCluster.describe(v) + ": its node is gone").isEqualTo(Phase.Failed);
    }
    assertThat(podsOn(node)).as("no node pod recreated on the deleted node").isEmpty();
    awaitClean();
    // the operator's rule: a UID freed with its node gone has no proof its processes are gone: quarantined (until
    // that node's UID audit shows none; these fake nodes post none, so it stays)
    await("the UIDs of the VMs on the deleted node quarantined").atMost(BOUND).pollInterval(Duration.ofMillis(500))
        .until(() -> uidsBefore.stream().allMatch(u -> quarantine().contains("\"uid\":" + u)));

    // the node re-added (same name, Ready): its add event wakes the VMs placed there and they are started on it
    // again with the UIDs they kept (not waiting for the 300 s safety-net reconcile); new VMs go there within its
    // budget, which the old ones hold while they exist
    cluster.kubelet.up(node);
    createNode(node);
    awaitPhase(onIt, Phase.Running);
    List<VfioVm> back = onIt.stream().map(NodeFaultIT::get).toList();
    List<VfioVm> fresh = createAll("gone-new", node, PER_NODE - onIt.size());
    awaitPhase(fresh, Phase.Running);
    awaitClean();
    List<String> uidsBack = back.stream().map(v -> String.valueOf(v.getStatus().getHostUid())).toList();
    // deleting the old VMs releases their claims and their share of the node's budget: it fills up again
    for (VfioVm v : onIt) {
      cluster.client.resource(get(v)).delete();
    }
    await("the old VMs deleted (no leaked finalizer)").atMost(BOUND).pollInterval(Duration.ofMillis(500))
        .until(() -> onIt.stream().allMatch(v -> get(v) == null));
    List<VfioVm> fill = createAll("gone-new", node, onIt.size(), fresh.size());
    awaitPhase(fill, Phase.Running);
    awaitClean();
    assertThat(get(bystander).getStatus().getPhase()).as("the VM on another node").isEqualTo(Phase.Running);
    System.out.printf("node fault (a) node deleted and re-added: %d VMs Running on it, node deleted, %d node pods "
            + "force-deleted as podgc does, the VMs ended %s (host UIDs %s); node re-added: they ended %s (host UIDs "
            + "%s), %d new VMs Running beside them, the old ones deleted, %d more Running (the node's whole budget); "
            + "0 orphan pods, 0 leaked claims; %.0f s%n",
        onIt.size(), collected, ended.stream().map(v -> v.getStatus().getPhase() + "/" + readyReason(v)).toList(),
        uidsBefore, back.stream().map(v -> v.getStatus().getPhase() + "/" + readyReason(v)).toList(), uidsBack,
        fresh.size(), fill.size(), (System.nanoTime() - t0) / 1e9);
    deleteAll();
  }

  /** (b) A node NotReady, tainted NoExecute by the node lifecycle controller, its pods evicted; then Ready again. */
  @Test
  void aNodeNotReadyAndItsPodsEvicted() {
    long t0 = System.nanoTime();
    String node = cluster.nodes.get(1);
    List<VfioVm> onIt = createAll("nr", node, 2);
    awaitPhase(onIt, Phase.Running);

    cluster.kubelet.down(node); // its kubelet stops posting: NotReady, and it ends no pod any more
    setReady(node, "False", "KubeletNotReady", "container runtime is down");
    List<Taint> taints = List.of(taint("node.kubernetes.io/not-ready", "NoSchedule"),
        taint("node.kubernetes.io/not-ready", "NoExecute"));
    cluster.client.nodes().withName(node).edit(n -> {
      n.getSpec().setTaints(new ArrayList<>(taints));
      return n;
    });
    // the taint manager: the node pods tolerate no NoExecute taint, so each is deleted (it stays Terminating:
    // the node's kubelet is down)
    int evicted = 0;
    for (Pod p : podsOn(node)) {
      cluster.client.resource(p).delete();
      evicted++;
    }
    List<VfioVm> ended = awaitEnded(onIt);
    for (VfioVm v : ended) {
      assertThat(v.getStatus().getNodeName().equals(node) && v.getStatus().getPhase() == Phase.Running)
          .as(FaultCluster.describe(v) + ": not Running on the NotReady node whose pod is evicted").isFalse();
    }
    // a new VM for that node is not placed while it is NotReady, and says why
    VfioVm waiting = create(pinned("nr-new", node));
    VfioVm pending = await("a VM for the NotReady node waits, saying why").atMost(BOUND)
        .pollInterval(Duration.ofMillis(500)).until(() -> get(waiting), v -> v.getStatus() != null
            && v.getStatus().getPhase() == Phase.Pending && List.of("NodeNotReady", "UntoleratedTaint")
                .contains(condition(v, VfioVmStatus.PLACED).getReason()));
    assertThat(podsOn(node).stream().filter(p -> p.getMetadata().getDeletionTimestamp() == null))
        .as("no new node pod on the NotReady node").isEmpty();
    String pendingReason = condition(pending, VfioVmStatus.PLACED).getReason();

    // Ready again: the condition first; the node controller lifts its taints a few seconds later, and until then
    // the NoExecute one would evict a pod made there, so the new VM still waits. Proof the operator has seen the
    // Ready node: the evicted VMs' status names the lingering taint instead of the condition.
    setReady(node, "True", "KubeletReady", "kubelet is posting ready status");
    await("the evicted VMs see the node Ready, its NoExecute taint lingering").atMost(BOUND)
        .pollInterval(Duration.ofMillis(200)).until(() -> onIt.stream().map(NodeFaultIT::get).allMatch(v ->
            String.valueOf(condition(v, VfioVmStatus.READY).getMessage()).contains("node.kubernetes.io/not-ready:NoExecute")));
    assertThat(get(waiting).getStatus().getPhase()).as(FaultCluster.describe(get(waiting))
        + ": not placed while the not-ready:NoExecute taint would evict its pod").isEqualTo(Phase.Pending);
    assertThat(podsOn(node).stream().filter(p -> p.getMetadata().getDeletionTimestamp() == null))
        .as("no node pod made beside the lingering NoExecute taint").isEmpty();
    cluster.client.nodes().withName(node).edit(n -> {
      n.getSpec().setTaints(new ArrayList<>());
      return n;
    });
    cluster.kubelet.up(node);
    awaitPhase(List.of(waiting), Phase.Running);
    List<VfioVm> after = awaitEnded(onIt);
    awaitClean();
    System.out.printf("node fault (b) node NotReady + not-ready NoExecute taint: %d VMs Running on it, %d node pods "
            + "evicted (Terminating, kubelet down), the VMs ended %s while NotReady; a new VM for it Pending (%s) "
            + "with no pod there; Ready again: the new VM Running there, the evicted VMs ended %s; 0 orphan pods, "
            + "0 leaked claims; %.0f s%n",
        onIt.size(), evicted, ended.stream().map(v -> v.getStatus().getPhase() + "/" + readyReason(v)).toList(),
        pendingReason, after.stream().map(v -> v.getStatus().getPhase() + "/" + readyReason(v)).toList(),
        (System.nanoTime() - t0) / 1e9);
    deleteAll();
  }

  /** (c) The agent killed mid-map: its report says Starting, then its container terminated with 137. */
  @Test
  void theAgentKilledMidMap() {
    long t0 = System.nanoTime();
    String node = cluster.nodes.get(2);
    cluster.kubelet.dieWhileStarting(p -> FaultCluster.vmKeyOf(p).endsWith("/mid-map"));
    VfioVm dying = create(pinned("mid-map", node));
    VfioVm failed = awaitEnded(List.of(dying)).get(0);
    assertThat(failed.getStatus().getPhase()).as(FaultCluster.describe(failed)).isEqualTo(Phase.Failed);
    assertThat(cluster.kubelet.diedWhileStarting.get()).as("agents killed after reporting Starting").isEqualTo(1);
    // a Failed VM's pod stays (restartPolicy Never), so its UID and budget stay held until it is deleted
    List<VfioVm> fill = createAll("mm-fill", node, PER_NODE - 1);
    awaitPhase(fill, Phase.Running);
    VfioVm extra = create(pinned("mm-extra", node));
    await("one VM more than the node's budget waits").atMost(BOUND).pollInterval(Duration.ofMillis(500))
        .until(() -> get(extra), v -> v.getStatus() != null && v.getStatus().getPhase() == Phase.Pending
            && "InsufficientBudget".equals(condition(v, VfioVmStatus.PLACED).getReason()));
    long uid = failed.getStatus().getHostUid();
    cluster.client.resource(get(dying)).delete();
    awaitPhase(List.of(extra), Phase.Running);
    await("the failed VM gone").atMost(BOUND).until(() -> get(dying) == null);
    awaitClean();
    // its container was reported terminated: proof its processes are gone, so its UID is released, not quarantined
    assertThat(quarantine()).as("quarantine after the mid-map VM's delete").doesNotContain("\"uid\":" + uid);
    System.out.printf("node fault (c) agent killed mid-map: report Starting, container terminated 137: the VM "
            + "ended %s/%s (%s); its UID %d and budget held while it exists (%d VMs fill the node, 1 more Pending "
            + "InsufficientBudget), released on its delete (that one Running); 0 orphan pods, 0 leaked claims; %.0f s%n",
        failed.getStatus().getPhase(), readyReason(failed), failed.getStatus().getMessage(), uid, fill.size() + 1,
        (System.nanoTime() - t0) / 1e9);
    cluster.kubelet.dieWhileStarting(p -> false);
    deleteAll();
  }

  // --- what the controllers of a real control plane would do, and the checks

  static Taint taint(String key, String effect) {
    return new TaintBuilder().withKey(key).withEffect(effect).withTimeAdded(java.time.Instant.now().toString()).build();
  }

  static void setReady(String node, String status, String reason, String message) {
    Node n = cluster.client.nodes().withName(node).get();
    List<NodeCondition> conditions = new ArrayList<>(n.getStatus().getConditions());
    conditions.removeIf(c -> "Ready".equals(c.getType()));
    conditions.add(new NodeConditionBuilder().withType("Ready").withStatus(status).withReason(reason)
        .withMessage(message).withLastTransitionTime(java.time.Instant.now().toString()).build());
    n.getStatus().setConditions(conditions);
    cluster.client.nodes().resource(n).updateStatus();
  }

  static void createNode(String node) {
    long reserve = FaultCluster.NODE_MEMORY - dev.vfiovm.api.Quantities.bytes(NODE_MEMORY);
    KubeApiServerFixture.createNode(cluster.client, node, Long.toString(FaultCluster.NODE_MEMORY), cluster.selector,
        Map.of(NodeBudget.HOST_RESERVE_ANNOTATION, Long.toString(reserve)));
  }

  static VfioVm pinned(String name, String node) {
    VfioVm vm = cluster.vm(name, "1Mi");
    vm.getSpec().setNodeName(node);
    return vm;
  }

  static VfioVm create(VfioVm vm) {
    return cluster.client.resource(vm).create();
  }

  static List<VfioVm> createAll(String prefix, String node, int count) {
    return createAll(prefix, node, count, 0);
  }

  static List<VfioVm> createAll(String prefix, String node, int count, int from) {
    List<VfioVm> made = new ArrayList<>();
    for (int i = from; i < from + count; i++) {
      made.add(create(pinned(prefix + "-" + i, node)));
    }
    return made;
  }

  static VfioVm get(VfioVm vm) {
    return cluster.client.resources(VfioVm.class).inNamespace(vm.getMetadata().getNamespace())
        .withName(vm.getMetadata().getName()).get();
  }

  static List<Pod> podsOn(String node) {
    return cluster.nodePods().stream().filter(p -> node.equals(p.getSpec().getNodeName())).toList();
  }

  /** The operator's persisted UID quarantine (ConfigMap vfiovm-uid-quarantine, key state.json), or "". */
  static String quarantine() {
    var cm = cluster.client.configMaps().inNamespace(cluster.nodePodNs).withName("vfiovm-uid-quarantine").get();
    return cm == null || cm.getData() == null ? "" : String.valueOf(cm.getData().get("state.json"));
  }

  static Condition condition(VfioVm vm, String type) {
    return vm.getStatus() == null || vm.getStatus().getConditions() == null ? new Condition()
        : vm.getStatus().getConditions().stream().filter(c -> type.equals(c.getType())).findFirst().orElse(new Condition());
  }

  static String readyReason(VfioVm vm) {
    return condition(vm, VfioVmStatus.READY).getReason();
  }

  static void awaitPhase(List<VfioVm> vms, Phase phase) {
    await(vms.size() + " VMs " + phase).atMost(BOUND).pollInterval(Duration.ofMillis(500)).untilAsserted(() ->
        assertThat(vms.stream().map(NodeFaultIT::get).filter(v -> v == null || v.getStatus() == null
            || v.getStatus().getPhase() != phase).map(v -> v == null ? "gone" : FaultCluster.describe(v)).toList())
            .as("VMs not " + phase).isEmpty());
  }

  /** Running, or Failed with a Ready reason: an end (never Starting, Placed or Pending); the VMs as they end. */
  static List<VfioVm> awaitEnded(List<VfioVm> vms) {
    Predicate<VfioVm> ended = v -> v != null && v.getStatus() != null && (v.getStatus().getPhase() == Phase.Running
        || (v.getStatus().getPhase() == Phase.Failed && readyReason(v) != null && !readyReason(v).isBlank()));
    await("each VM Running or Failed with a reason").atMost(BOUND).pollInterval(Duration.ofMillis(500))
        .untilAsserted(() -> assertThat(vms.stream().map(NodeFaultIT::get).filter(ended.negate())
            .map(v -> v == null ? "gone" : FaultCluster.describe(v)).toList()).as("VMs not ended").isEmpty());
    return vms.stream().map(NodeFaultIT::get).toList();
  }

  /** No orphan node pod, no UID claim of a VM that is gone. */
  static void awaitClean() {
    await("no orphan node pod, no leaked UID claim").atMost(BOUND).pollInterval(Duration.ofMillis(500))
        .ignoreExceptions().untilAsserted(() -> {
          List<VfioVm> vms = cluster.vms();
          assertThat(FaultCluster.orphans(vms, cluster.nodePods().stream()
              .filter(p -> p.getMetadata().getDeletionTimestamp() == null).toList())).as("orphan node pods").isEmpty();
          assertThat(FaultCluster.leakedClaims(vms, cluster.uidClaims())).as("UID claims of no live VM").isEmpty();
        });
  }

  /** Deletes every VM of the test; all go (no leaked finalizer), with their node pods and claims. */
  static void deleteAll() {
    for (VfioVm v : cluster.vms()) {
      cluster.client.resource(v).delete();
    }
    await("every VM deleted, no node pod, no claim left").atMost(BOUND).pollInterval(Duration.ofMillis(500))
        .ignoreExceptions().untilAsserted(() -> {
          assertThat(cluster.vms().stream().map(FaultCluster::describe).toList()).as("VMs left").isEmpty();
          assertThat(cluster.nodePods()).as("node pods left").isEmpty();
          assertThat(cluster.uidClaims()).as("UID claims left").isEmpty();
        });
  }
}
