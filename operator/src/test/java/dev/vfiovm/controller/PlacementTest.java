package dev.vfiovm.controller;

import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.api.model.Node;
import io.fabric8.kubernetes.api.model.NodeBuilder;
import io.fabric8.kubernetes.api.model.Quantity;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class PlacementTest {
  static final long GI = 1L << 30;

  static NodeBudget node(String name, long budgetGi, Map<String, String> labels) {
    return new NodeBudget(name, labels, (budgetGi + 2) * GI, 2 * GI, true, null);
  }

  static NodeBudget node(String name, long budgetGi) {
    return node(name, budgetGi, Map.of());
  }

  static Placement.Request request(long limitGi, String... devices) {
    return new Placement.Request(limitGi * GI, List.of(devices), null, Map.of());
  }

  @Test
  void anExactFitIsPlaced() {
    Placement.Decision d = Placement.place(request(4), List.of(node("a", 8)),
        Map.of("a", new Placement.Load(4 * GI, Map.of())));
    assertThat(d.node()).isEqualTo("a");
  }

  @Test
  void oneByteOverIsInsufficientBudgetWithTheArithmetic() {
    Placement.Request request = new Placement.Request(4 * GI + 1, List.of(), null, Map.of());
    Placement.Decision d = Placement.place(request, List.of(node("a", 8)), Map.of("a", new Placement.Load(4 * GI, Map.of())));
    assertThat(d.isPlaced()).isFalse();
    assertThat(d.reason()).isEqualTo(Placement.Reason.InsufficientBudget);
    assertThat(d.reason().terminal).isFalse();
    assertThat(d.message()).contains("a free 4Gi (allocatable 10Gi - reserve 2Gi - placed 4Gi)");
  }

  @Test
  void bestFitKeepsTheLargeHoleForALargeVm() {
    // a has 6Gi free, b has 4Gi free: a 3Gi VM goes to b, so a 5Gi VM still fits on a afterwards
    List<NodeBudget> nodes = List.of(node("a", 6), node("b", 4));
    assertThat(Placement.place(request(3), nodes, Map.of()).node()).isEqualTo("b");
    assertThat(Placement.place(request(5), nodes, Map.of("b", new Placement.Load(3 * GI, Map.of()))).node())
        .isEqualTo("a");
  }

  @Test
  void fragmentedFreeBudgetDoesNotAddUp() {
    // 3Gi free on each of two nodes is not 6Gi anywhere
    List<NodeBudget> nodes = List.of(node("a", 3), node("b", 3));
    Placement.Decision d = Placement.place(request(4), nodes, Map.of());
    assertThat(d.reason()).isEqualTo(Placement.Reason.InsufficientBudget);
    assertThat(d.message()).contains("a free 3Gi").contains("b free 3Gi");
  }

  @Test
  void tiesGoToTheNodeName() {
    assertThat(Placement.place(request(1), List.of(node("b", 4), node("a", 4)), Map.of()).node()).isEqualTo("a");
  }

  @Test
  void nodeNamePinsEvenToACordonedNodeButWaitsForAMissingOne() {
    NodeBudget cordoned = new NodeBudget("a", Map.of(), 10 * GI, 2 * GI, false, null);
    Placement.Request pinned = new Placement.Request(GI, List.of(), "a", Map.of());
    assertThat(Placement.place(pinned, List.of(cordoned), Map.of()).node()).isEqualTo("a");
    assertThat(Placement.place(request(1), List.of(cordoned), Map.of()).reason())
        .isEqualTo(Placement.Reason.NoMatchingNode);
    Placement.Decision missing = Placement.place(new Placement.Request(GI, List.of(), "z", Map.of()), List.of(cordoned), Map.of());
    assertThat(missing.reason()).isEqualTo(Placement.Reason.NodeNotFound);
    assertThat(missing.reason().terminal).isFalse();
  }

  @Test
  void nodeSelectorFiltersAndConflictsWithAPinnedNodeLackingTheLabels() {
    List<NodeBudget> nodes = List.of(node("a", 8, Map.of("gpu", "true")), node("b", 2));
    assertThat(Placement.place(new Placement.Request(GI, List.of(), null, Map.of("gpu", "true")), nodes, Map.of()).node())
        .isEqualTo("a");
    Placement.Decision conflict = Placement.place(
        new Placement.Request(GI, List.of(), "b", Map.of("gpu", "true")), nodes, Map.of());
    assertThat(conflict.reason()).isEqualTo(Placement.Reason.NodeSelectorMismatch);
    assertThat(conflict.reason().terminal).isTrue();
    assertThat(conflict.message()).contains("spec.nodeName b").contains("spec.nodeSelector");
    assertThat(Placement.place(new Placement.Request(GI, List.of(), null, Map.of("gpu", "false")), nodes, Map.of()).reason())
        .isEqualTo(Placement.Reason.NoMatchingNode);
  }

  @Test
  void aDeviceHeldOnANodeSendsTheVmElsewhereOrNamesTheHolder() {
    Map<String, Placement.Load> loads = Map.of("a", new Placement.Load(GI, Map.of("0000:3b:00.0", "ns/x")));
    assertThat(Placement.place(request(1, "0000:3b:00.0"), List.of(node("a", 8), node("b", 8)), loads).node())
        .isEqualTo("b");
    Placement.Decision d = Placement.place(request(1, "0000:3b:00.0"), List.of(node("a", 8)), loads);
    assertThat(d.reason()).isEqualTo(Placement.Reason.DeviceConflict);
    assertThat(d.reason().terminal).isTrue();
    assertThat(d.message()).contains("device 0000:3b:00.0 on node a is assigned to VfioVm ns/x");
    // another address on the same node is no conflict
    assertThat(Placement.place(request(1, "0000:3b:00.1"), List.of(node("a", 8)), loads).node()).isEqualTo("a");
  }

  @Test
  void nodeBudgetIsAllocatableMinusReserveAndTheAnnotationOverrides() {
    Node plain = nodeObject("a", "10Gi", Map.of());
    assertThat(NodeBudget.of(plain, 2 * GI).budgetBytes()).isEqualTo(8 * GI);
    Node annotated = nodeObject("b", "10Gi", Map.of(NodeBudget.HOST_RESERVE_ANNOTATION, "512Mi"));
    assertThat(NodeBudget.of(annotated, 2 * GI).budgetBytes()).isEqualTo(10 * GI - (512L << 20));
    Node tiny = nodeObject("c", "1Gi", Map.of());
    assertThat(NodeBudget.of(tiny, 2 * GI).budgetBytes()).isZero();
  }

  @Test
  void anUnreadableNodeHasNoBudgetAndSaysWhy() {
    NodeBudget bad = NodeBudget.of(nodeObject("a", "10Gi", Map.of(NodeBudget.HOST_RESERVE_ANNOTATION, "lots")), 2 * GI);
    assertThat(bad.budgetBytes()).isZero();
    assertThat(bad.problem()).contains("vfiovm.dev/host-reserve").contains("lots");
    Node noStatus = new NodeBuilder().withNewMetadata().withName("n").endMetadata().build();
    assertThat(NodeBudget.of(noStatus, 0).problem()).contains("allocatable");
    Placement.Decision d = Placement.place(request(1), List.of(bad), Map.of());
    assertThat(d.message()).contains("a has no budget");
  }

  static Node nodeObject(String name, String allocatable, Map<String, String> annotations) {
    return new NodeBuilder().withNewMetadata().withName(name).withAnnotations(annotations).endMetadata()
        .withNewStatus().withAllocatable(Map.of("memory", new Quantity(allocatable))).endStatus().build();
  }
}
