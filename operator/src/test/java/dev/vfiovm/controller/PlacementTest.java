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

  static NodeBudget equipped(String name, long budgetGi, Map<String, Long> devices) {
    return new NodeBudget(name, Map.of(), (budgetGi + 2) * GI, 2 * GI, true, null, devices);
  }

  static Placement.Request needing(long limitGi, List<String> resources, String nodeName) {
    return new Placement.Request(limitGi * GI, List.of("0000:00:03.0"), nodeName, Map.of(), resources);
  }

  @Test
  void aNodeMustAdvertiseEveryRequestedDeviceResource() {
    List<String> wanted = List.of("vfiovm.dev/iommu", "vfiovm.dev/pci-0000-00-03.0");
    NodeBudget both = equipped("b", 8, Map.of("vfiovm.dev/iommu", 64L, "vfiovm.dev/pci-0000-00-03.0", 1L));
    NodeBudget iommuOnly = equipped("a", 4, Map.of("vfiovm.dev/iommu", 64L));
    // the tighter fit (a) lacks the device: b, though best fit alone would pick a
    assertThat(Placement.place(needing(1, wanted, null), List.of(iommuOnly, both), Map.of()).node()).isEqualTo("b");

    Placement.Decision d = Placement.place(needing(1, wanted, null), List.of(iommuOnly,
        equipped("c", 8, Map.of("vfiovm.dev/iommu", 0L, "vfiovm.dev/pci-0000-00-03.0", 1L))), Map.of());
    assertThat(d.isPlaced()).isFalse();
    assertThat(d.reason()).isEqualTo(Placement.Reason.MissingDeviceResource);
    assertThat(d.reason().terminal).as("the device may be bound to vfio-pci later").isFalse();
    assertThat(d.message())
        .contains("node a has no vfiovm.dev/pci-0000-00-03.0 in status.allocatable")
        .contains("node c has no vfiovm.dev/iommu in status.allocatable")
        .contains("vfio-pci");

    // pinned by spec.nodeName to a node without it: the same, naming the resource
    Placement.Decision pinned = Placement.place(needing(1, wanted, "a"), List.of(iommuOnly, both), Map.of());
    assertThat(pinned.reason()).isEqualTo(Placement.Reason.MissingDeviceResource);
    assertThat(pinned.message()).startsWith("node a has no vfiovm.dev/pci-0000-00-03.0");
    // nothing requested: any node
    assertThat(Placement.place(request(1), List.of(iommuOnly), Map.of()).node()).isEqualTo("a");
  }

  @Test
  void nodeBudgetReadsTheDeviceResourcesFromAllocatable() {
    Node node = new NodeBuilder().withNewMetadata().withName("n").endMetadata().withNewStatus()
        .withAllocatable(Map.of("memory", new Quantity("10Gi"), "cpu", new Quantity("4"),
            "vfiovm.dev/iommu", new Quantity("64"), "vfiovm.dev/pci-0000-00-03.0", new Quantity("1"),
            "example.com/gpu", new Quantity("2")))
        .endStatus().build();
    NodeBudget b = NodeBudget.of(node, 0);
    assertThat(b.deviceResources()).containsOnly(
        Map.entry("vfiovm.dev/iommu", 64L), Map.entry("vfiovm.dev/pci-0000-00-03.0", 1L));
    assertThat(b.allocatable("vfiovm.dev/pci-0000-00-04.0")).isZero();
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
        .withNewStatus().withAllocatable(Map.of("memory", new Quantity(allocatable)))
        .addNewCondition().withType("Ready").withStatus("True").endCondition().endStatus().build();
  }
}
