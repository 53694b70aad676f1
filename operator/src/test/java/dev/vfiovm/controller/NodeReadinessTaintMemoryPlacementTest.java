package dev.vfiovm.controller;

import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.ContainerBuilder;
import io.fabric8.kubernetes.api.model.Node;
import io.fabric8.kubernetes.api.model.NodeBuilder;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodBuilder;
import io.fabric8.kubernetes.api.model.Quantity;
import io.fabric8.kubernetes.api.model.Taint;
import io.fabric8.kubernetes.api.model.TaintBuilder;
import io.fabric8.kubernetes.api.model.Toleration;
import io.fabric8.kubernetes.api.model.TolerationBuilder;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * Issue 12: placement must not pick a node the kubelet will refuse (NotReady, an untolerated NoSchedule/NoExecute
 * taint, memory other pods already request), or the node pod is rejected and the VM Failed for good, or evicted in a
 * loop. Pure: NodeBudget.of on Node objects as the API server returns them, Placement.place on the budgets.
 */
class NodeReadinessTaintMemoryPlacementTest {
  static final long GI = 1L << 30;
  static final long MI = 1L << 20;

  static NodeBuilder node(String name, String memory) {
    return new NodeBuilder().withNewMetadata().withName(name).endMetadata()
        .withNewSpec().endSpec()
        .withNewStatus().withAllocatable(Map.of("memory", new Quantity(memory))).endStatus();
  }

  static Node ready(String name, String memory) {
    return node(name, memory).editStatus().addNewCondition().withType("Ready").withStatus("True").endCondition()
        .endStatus().build();
  }

  static Node tainted(String name, String memory, Taint taint) {
    Node n = ready(name, memory);
    n.getSpec().setTaints(List.of(taint));
    return n;
  }

  static Taint taint(String key, String value, String effect) {
    return new TaintBuilder().withKey(key).withValue(value).withEffect(effect).build();
  }

  static NodeBudget budget(Node node) {
    return NodeBudget.of(node, 2 * GI);
  }

  static Placement.Request request(long memlock, long podMemory, List<Toleration> tolerations) {
    return new Placement.Request(memlock, List.of(), null, Map.of(), List.of(), podMemory, tolerations);
  }

  static Placement.Request pinned(String node) {
    return new Placement.Request(GI, List.of(), node, Map.of(), List.of(), 0, null);
  }

  // --- Ready ---

  @Test
  void aNodeWhoseReadyConditionIsNotTrueIsNoCandidate() {
    Node notReady = node("a", "10Gi").editStatus().addNewCondition().withType("Ready").withStatus("False")
        .withReason("KubeletNotReady").withMessage("container runtime is down").endCondition().endStatus().build();
    Node unknown = node("b", "10Gi").editStatus().addNewCondition().withType("Ready").withStatus("Unknown")
        .withReason("NodeStatusUnknown").endCondition().endStatus().build();
    Node none = node("c", "10Gi").build();
    assertThat(budget(notReady).ready()).isFalse();
    assertThat(budget(unknown).ready()).isFalse();
    assertThat(budget(none).ready()).isFalse();
    assertThat(budget(ready("d", "10Gi")).ready()).isTrue();

    Placement.Decision d = Placement.place(new Placement.Request(GI, List.of(), null, Map.of()),
        List.of(budget(notReady), budget(unknown), budget(none)), Map.of());
    assertThat(d.isPlaced()).isFalse();
    assertThat(d.reason()).isEqualTo(Placement.Reason.NodeNotReady);
    assertThat(d.reason().terminal).isFalse();
    assertThat(d.message()).contains("node a is not Ready: condition Ready=False (KubeletNotReady: container runtime is down)")
        .contains("node b is not Ready: condition Ready=Unknown (NodeStatusUnknown)")
        .contains("node c is not Ready").contains("fix the node");

    assertThat(Placement.place(new Placement.Request(GI, List.of(), null, Map.of()),
        List.of(budget(notReady), budget(ready("d", "10Gi"))), Map.of()).node()).isEqualTo("d");
  }

  @Test
  void aVmPinnedToANotReadyNodeWaitsSayingSo() {
    Node notReady = node("a", "10Gi").editStatus().addNewCondition().withType("Ready").withStatus("False")
        .endCondition().endStatus().build();
    Placement.Decision d = Placement.place(pinned("a"), List.of(budget(notReady)), Map.of());
    assertThat(d.reason()).isEqualTo(Placement.Reason.NodeNotReady);
    assertThat(d.message()).contains("spec.nodeName a is not Ready", "Ready=False", "fix the node", "another node");
  }

  // --- taints ---

  @Test
  void aNodeWithANoScheduleOrNoExecuteTaintTheNodePodDoesNotTolerateIsNoCandidate() {
    List<NodeBudget> nodes = List.of(
        budget(tainted("a", "10Gi", taint("dedicated", "gpu", "NoSchedule"))),
        budget(tainted("b", "10Gi", taint("maintenance", null, "NoExecute"))));
    Placement.Decision d = Placement.place(new Placement.Request(GI, List.of(), null, Map.of()), nodes, Map.of());
    assertThat(d.reason()).isEqualTo(Placement.Reason.UntoleratedTaint);
    assertThat(d.reason().terminal).isFalse();
    assertThat(d.message()).contains("node a has taint dedicated=gpu:NoSchedule")
        .contains("node b has taint maintenance:NoExecute")
        .contains("untaint").contains("kubectl taint nodes");

    // PreferNoSchedule is a preference only
    assertThat(Placement.place(new Placement.Request(GI, List.of(), null, Map.of()),
        List.of(budget(tainted("c", "10Gi", taint("soft", "x", "PreferNoSchedule")))), Map.of()).node()).isEqualTo("c");
    // an untainted node among tainted ones is taken
    assertThat(Placement.place(new Placement.Request(GI, List.of(), null, Map.of()),
        List.of(nodes.get(0), nodes.get(1), budget(ready("z", "10Gi"))), Map.of()).node()).isEqualTo("z");
  }

  @Test
  void aPinnedVmWaitsForItsTaintedNodeNamingTheTaintAndTheCommandToRemoveIt() {
    Placement.Decision d = Placement.place(pinned("a"),
        List.of(budget(tainted("a", "10Gi", taint("maintenance", "true", "NoExecute")))), Map.of());
    assertThat(d.reason()).isEqualTo(Placement.Reason.UntoleratedTaint);
    assertThat(d.message()).contains("maintenance=true:NoExecute", "kubectl taint nodes a maintenance:NoExecute-");
  }

  @Test
  void aReadyNodesNoScheduleReadinessTaintIsTheConditionsBusinessALingeringNoExecuteOneMakesTheVmWait() {
    // a new Node carries not-ready:NoSchedule (TaintNodesByCondition) until the node controller sees it Ready
    Node fresh = tainted("a", "10Gi", taint("node.kubernetes.io/not-ready", null, "NoSchedule"));
    assertThat(Placement.place(new Placement.Request(GI, List.of(), null, Map.of()), List.of(budget(fresh)), Map.of())
        .node()).isEqualTo("a");
    // a NoExecute one lingering on a node whose condition is True again would evict the pod: the VM waits for it
    Node lagging = tainted("b", "10Gi", taint("node.kubernetes.io/unreachable", null, "NoExecute"));
    Placement.Decision pinnedWait = Placement.place(pinned("b"), List.of(budget(lagging)), Map.of());
    assertThat(pinnedWait.isPlaced()).isFalse();
    assertThat(pinnedWait.reason()).isEqualTo(Placement.Reason.NodeNotReady);
    assertThat(pinnedWait.message()).contains("node.kubernetes.io/unreachable:NoExecute", "the VM waits");
    assertThat(budget(lagging).unusableForPlaced(List.of())).as("the same rule as for a placed pod").isNotNull();
    Placement.Decision anyWait = Placement.place(new Placement.Request(GI, List.of(), null, Map.of()),
        List.of(budget(lagging)), Map.of());
    assertThat(anyWait.reason()).isEqualTo(Placement.Reason.NodeNotReady);
    assertThat(anyWait.message()).contains("node b has taint node.kubernetes.io/unreachable:NoExecute");
    assertThat(Placement.place(new Placement.Request(GI, List.of(), null, Map.of()),
        List.of(budget(lagging), budget(ready("z", "10Gi"))), Map.of()).node()).as("another Ready node").isEqualTo("z");
    assertThat(Placement.place(pinned("b"), List.of(budget(tainted("b", "10Gi",
        taint("node.kubernetes.io/not-ready", null, "NoSchedule")))), Map.of()).node()).isEqualTo("b");
    // other condition taints exclude the node
    Node pressure = tainted("c", "10Gi", taint("node.kubernetes.io/memory-pressure", null, "NoSchedule"));
    assertThat(Placement.place(pinned("c"), List.of(budget(pressure)), Map.of()).reason())
        .isEqualTo(Placement.Reason.UntoleratedTaint);
  }

  @Test
  void aCordonedNodeStillTakesAVmPinnedToItDespiteTheCordonsTaint() {
    Node cordoned = tainted("a", "10Gi", taint("node.kubernetes.io/unschedulable", null, "NoSchedule"));
    cordoned.getSpec().setUnschedulable(true);
    assertThat(Placement.place(pinned("a"), List.of(budget(cordoned)), Map.of()).node()).isEqualTo("a");
    // not for VMs that are not pinned
    assertThat(Placement.place(new Placement.Request(GI, List.of(), null, Map.of()), List.of(budget(cordoned)),
        Map.of()).reason()).isEqualTo(Placement.Reason.NoMatchingNode);
  }

  @Test
  void aNodeWithUnreadableMemorySaysSoInTheMemoryMessage() {
    Node n = new NodeBuilder().withNewMetadata().withName("a").endMetadata().withNewStatus().addNewCondition()
        .withType("Ready").withStatus("True").endCondition().endStatus().build();
    Placement.Decision d = Placement.place(request(GI, GI, null), List.of(budget(n)), Map.of());
    assertThat(d.reason()).isEqualTo(Placement.Reason.InsufficientNodeMemory);
    assertThat(d.message()).contains("a has no budget (status.allocatable.memory is not reported yet)");
  }

  @Test
  void nodePodsTolerateNothingByDefaultButGivenTolerationsAreHonoured() {
    assertThat(NodePodShape.DEFAULT_TOLERATIONS).isEmpty();
    NodeBudget a = budget(tainted("a", "10Gi", taint("dedicated", "vm", "NoSchedule")));
    Toleration exact = new TolerationBuilder().withKey("dedicated").withOperator("Equal").withValue("vm")
        .withEffect("NoSchedule").build();
    Toleration otherValue = new TolerationBuilder().withKey("dedicated").withValue("gpu").build();
    Toleration exists = new TolerationBuilder().withKey("dedicated").withOperator("Exists").build();
    Toleration everything = new TolerationBuilder().withOperator("Exists").build();
    Toleration wrongEffect = new TolerationBuilder().withKey("dedicated").withOperator("Exists")
        .withEffect("NoExecute").build();
    assertThat(Placement.place(request(GI, 0, List.of(exact)), List.of(a), Map.of()).node()).isEqualTo("a");
    assertThat(Placement.place(request(GI, 0, List.of(exists)), List.of(a), Map.of()).node()).isEqualTo("a");
    assertThat(Placement.place(request(GI, 0, List.of(everything)), List.of(a), Map.of()).node()).isEqualTo("a");
    assertThat(Placement.place(request(GI, 0, List.of(otherValue)), List.of(a), Map.of()).reason())
        .isEqualTo(Placement.Reason.UntoleratedTaint);
    assertThat(Placement.place(request(GI, 0, List.of(wrongEffect)), List.of(a), Map.of()).reason())
        .isEqualTo(Placement.Reason.UntoleratedTaint);
    assertThat(Placement.place(request(GI, 0, null), List.of(a), Map.of()).reason())
        .isEqualTo(Placement.Reason.UntoleratedTaint);
  }

  // --- memory other pods request ---

  static Container container(String request, String limit) {
    ContainerBuilder b = new ContainerBuilder().withName("c" + System.identityHashCode(request));
    b.withNewResources().endResources();
    Container c = b.build();
    if (request != null) {
      c.getResources().setRequests(Map.of("memory", new Quantity(request)));
    }
    if (limit != null) {
      c.getResources().setLimits(Map.of("memory", new Quantity(limit)));
    }
    return c;
  }

  static Pod pod(String node, String phase, List<Container> init, List<Container> containers) {
    return new PodBuilder().withNewMetadata().withName("p").endMetadata()
        .withNewSpec().withNodeName(node).withInitContainers(init).withContainers(containers).endSpec()
        .withNewStatus().withPhase(phase).endStatus().build();
  }

  @Test
  void memoryRequestedByNodeIsTheKubeletsArithmetic() {
    Pod sum = pod("a", "Running", List.of(), List.of(container("1Gi", null), container("512Mi", "1Gi")));
    Pod initWins = pod("a", "Pending", List.of(container("3Gi", null), container("1Gi", null)),
        List.of(container("1Gi", null)));
    Pod limitOnly = pod("b", "Running", List.of(), List.of(container(null, "256Mi")));
    Pod withOverhead = pod("b", "Running", List.of(), List.of(container("100Mi", null)));
    withOverhead.getSpec().setOverhead(Map.of("memory", new Quantity("20Mi")));
    Container sidecar = container("200Mi", null);
    sidecar.setRestartPolicy("Always");
    Pod withSidecar = pod("c", "Running", List.of(sidecar, container("300Mi", null)), List.of(container("50Mi", null)));
    Pod done = pod("a", "Succeeded", List.of(), List.of(container("8Gi", null)));
    Pod failed = pod("a", "Failed", List.of(), List.of(container("8Gi", null)));
    Pod unbound = pod(null, "Pending", List.of(), List.of(container("8Gi", null)));

    assertThat(NodeBudget.effectiveMemoryRequest(sum)).isEqualTo(GI + 512 * MI);
    assertThat(NodeBudget.effectiveMemoryRequest(initWins)).isEqualTo(3 * GI);
    assertThat(NodeBudget.effectiveMemoryRequest(limitOnly)).isEqualTo(256 * MI);
    assertThat(NodeBudget.effectiveMemoryRequest(withOverhead)).isEqualTo(120 * MI);
    // sidecar 200 + init 300 while initialising; sidecar 200 + container 50 after
    assertThat(NodeBudget.effectiveMemoryRequest(withSidecar)).isEqualTo(500 * MI);
    assertThat(NodeBudget.memoryRequestedByNode(
        List.of(sum, initWins, limitOnly, withOverhead, withSidecar, done, failed, unbound)))
        .containsExactlyInAnyOrderEntriesOf(Map.of(
            "a", GI + 512 * MI + 3 * GI,
            "b", 256 * MI + 120 * MI,
            "c", 500 * MI));
  }

  @Test
  void theNodePodMustFitBesideWhatOtherPodsRequestWithTheArithmeticInTheMessage() {
    NodeBudget a = budget(ready("a", "10Gi")).withRequestedByOtherPods(7 * GI);
    assertThat(a.requestedByOtherPods()).isEqualTo(7 * GI);
    assertThat(a.budgetBytes()).isEqualTo(8 * GI); // the memlock budget is unchanged
    // exactly fits: 3Gi free for pods
    assertThat(Placement.place(request(GI, 3 * GI, null), List.of(a), Map.of()).node()).isEqualTo("a");
    Placement.Decision d = Placement.place(request(GI, 3 * GI + 1, null), List.of(a), Map.of());
    assertThat(d.reason()).isEqualTo(Placement.Reason.InsufficientNodeMemory);
    assertThat(d.reason().terminal).isFalse();
    assertThat(d.message()).contains("a free 3Gi (allocatable 10Gi - requested by other pods 7Gi)")
        .contains("lower spec.memory");
    // another node with room is taken instead
    NodeBudget b = budget(ready("b", "10Gi"));
    assertThat(Placement.place(request(GI, 4 * GI, null), List.of(a, b), Map.of()).node()).isEqualTo("b");
    // the old constructors (podMemoryBytes 0) do not check it, as the kubelet does not for a pod requesting none
    assertThat(Placement.place(new Placement.Request(GI, List.of(), null, Map.of()),
        List.of(budget(ready("c", "10Gi")).withRequestedByOtherPods(10 * GI)), Map.of()).node()).isEqualTo("c");
  }

  @Test
  void whereMemoryFitsSomewhereButTheBudgetNowhereTheBudgetMessageNamesBoth() {
    NodeBudget a = budget(ready("a", "10Gi")).withRequestedByOtherPods(9 * GI); // no memory for the pod
    NodeBudget b = budget(ready("b", "4Gi")); // memory, but budget 2Gi
    Placement.Decision d = Placement.place(request(3 * GI, 3 * GI, null), List.of(a, b), Map.of());
    assertThat(d.reason()).isEqualTo(Placement.Reason.InsufficientBudget);
    assertThat(d.message()).contains("b free 2Gi").contains("node pod memory does not fit on a free 1Gi");
  }

  // --- a node that cannot run a pod already placed on it (NodeBudget.unusableForPlaced) ---

  @Test
  void aPlacedPodCannotRunOnANotReadyNodeNorBesideAnUntoleratedNoExecuteTaintButANoScheduleOneKeepsIt() {
    Node notReady = node("a", "10Gi").editStatus().addNewCondition().withType("Ready").withStatus("False")
        .withReason("KubeletNotReady").withMessage("container runtime is down").endCondition().endStatus().build();
    assertThat(budget(notReady).unusableForPlaced(List.of())).satisfies(u -> {
      assertThat(u.reason()).isEqualTo(Placement.Reason.NodeNotReady);
      assertThat(u.message()).contains("node a is not Ready", "KubeletNotReady", "container runtime is down");
    });
    // the lifecycle controller's taint on a node whose condition is already True again: still NotReady's business
    assertThat(budget(tainted("b", "10Gi", taint("node.kubernetes.io/unreachable", null, "NoExecute")))
        .unusableForPlaced(List.of()).reason()).isEqualTo(Placement.Reason.NodeNotReady);
    Node drained = tainted("c", "10Gi", taint("maintenance", "now", "NoExecute"));
    assertThat(budget(drained).unusableForPlaced(List.of())).satisfies(u -> {
      assertThat(u.reason()).isEqualTo(Placement.Reason.UntoleratedTaint);
      assertThat(u.message()).contains("maintenance=now:NoExecute");
    });
    assertThat(budget(drained).unusableForPlaced(List.of(new TolerationBuilder().withKey("maintenance")
        .withOperator("Exists").build()))).isNull();
    assertThat(budget(tainted("d", "10Gi", taint("maintenance", "now", "NoSchedule"))).unusableForPlaced(List.of()))
        .as("NoSchedule keeps new pods away, not bound ones").isNull();
    assertThat(budget(ready("e", "10Gi")).unusableForPlaced(List.of())).isNull();
  }
}
