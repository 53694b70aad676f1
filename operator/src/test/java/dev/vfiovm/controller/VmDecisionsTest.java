package dev.vfiovm.controller;

import static org.assertj.core.api.Assertions.assertThat;

import dev.vfiovm.api.Accounting;
import dev.vfiovm.api.DmaBackend;
import dev.vfiovm.api.VfioVm;
import dev.vfiovm.api.VfioVmSpec;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodBuilder;
import io.fabric8.kubernetes.client.utils.Serialization;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** {@link VmDecisions#decide}, branch by branch. */
class VmDecisionsTest {
  static final long GI = 1L << 30;
  static final Ledger.Entry PLACED = new Ledger.Entry(1879048192L, "worker-1", 2 * GI, List.of("0000:3b:00.0"));
  static final Pod POD = new PodBuilder().withNewMetadata().withName("p").endMetadata().build();

  static VfioVm vm(String memory) {
    return ClusterTestSupport.vm("team-a", "db", memory, Map.of(), "0000:3b:00.0");
  }

  static VfioVmSpec copy(VfioVmSpec spec) {
    return Serialization.unmarshal(Serialization.asJson(spec), VfioVmSpec.class);
  }

  static VmDecisions.Decision decide(VfioVm vm, Ledger.Entry entry, VfioVmSpec placed, Pod pod, boolean nodeExists) {
    return VmDecisions.decide(new VmDecisions.Observation(vm, SpecValidation.validate(vm.getSpec(), GI), entry, placed,
        pod, false, false, nodeExists), GI);
  }

  @Test
  void anUnplacedVmWithAnInvalidSpecIsInvalid() {
    VfioVm vm = vm("1000001");
    assertThat(decide(vm, null, null, null, true)).isInstanceOfSatisfying(VmDecisions.Invalid.class,
        i -> assertThat(i.validation().message()).contains("spec.memory"));
    // a waiting entry (UID, no node) is no placement either
    assertThat(decide(vm, new Ledger.Entry(1, null, GI, List.of()), null, null, true))
        .isInstanceOf(VmDecisions.Invalid.class);
  }

  @Test
  void anUnplacedValidVmAsksTheLedgerForItsRequest() {
    VfioVm vm = vm("1Gi");
    vm.getSpec().setNodeName("worker-2");
    assertThat(decide(vm, null, null, null, true)).isInstanceOfSatisfying(VmDecisions.Admit.class, a -> {
      assertThat(a.request().memlockLimitBytes()).isEqualTo(2 * GI);
      assertThat(a.request().devices()).containsExactly("0000:3b:00.0");
      assertThat(a.request().nodeName()).isEqualTo("worker-2");
      assertThat(a.request().resources()).containsExactly("vfiovm.dev/iommu", "vfiovm.dev/pci-0000-3b-00.0");
    });
  }

  @Test
  void withTheSettingsTheRequestCarriesTheNodePodMemoryBuiltOnce() {
    VfioVm vm = vm("1Gi");
    OperatorSettings settings = new OperatorSettings(1000, 10, GI, 0, "vfiovm-system", "img", "sa")
        .withPodMemory(256L << 20, 256L << 20);
    VmDecisions.Decision d = VmDecisions.decide(new VmDecisions.Observation(vm, SpecValidation.validate(vm.getSpec(), GI),
        null, null, null, false, false, true), settings);
    assertThat(d).isInstanceOfSatisfying(VmDecisions.Admit.class, a -> {
      assertThat(a.request().podMemoryBytes()).isEqualTo(GI + (512L << 20));
      assertThat(a.request().memlockLimitBytes()).isEqualTo(2 * GI);
      assertThat(a.request().resources()).containsExactly("vfiovm.dev/iommu", "vfiovm.dev/pci-0000-3b-00.0");
    });
    // the placement request of a waiting VM is the same one
    assertThat(VmDecisions.request(vm, SpecValidation.validate(vm.getSpec(), GI).plan(), settings))
        .isEqualTo(((VmDecisions.Admit) d).request());
  }

  @Test
  void theLedgersAnswerEndsTheReconcileUnlessPlaced() {
    assertThat(VmDecisions.admitted(new Ledger.Admission(null, null, "all UIDs held")))
        .isInstanceOfSatisfying(VmDecisions.UidExhausted.class, u -> assertThat(u.problem()).isEqualTo("all UIDs held"));
    Placement.Decision none = new Placement.Decision(null, Placement.Reason.InsufficientBudget, "no room");
    Ledger.Entry waiting = new Ledger.Entry(7, null, 2 * GI, List.of());
    assertThat(VmDecisions.admitted(new Ledger.Admission(waiting, none, null)))
        .isEqualTo(new VmDecisions.Unplaced(waiting, none));
    // a VM that waits holds no UID
    assertThat(VmDecisions.admitted(new Ledger.Admission(null, none, null)))
        .isEqualTo(new VmDecisions.Unplaced(null, none));
    assertThat(VmDecisions.admitted(new Ledger.Admission(PLACED, Placement.Decision.placed("worker-1"), null))).isNull();
  }

  @Test
  void aPlacedVmWithoutAClaimIsClaimedFirstWhateverItsSpec() {
    assertThat(decide(vm("1Gi"), PLACED, null, null, true)).isEqualTo(new VmDecisions.Claim(PLACED));
    assertThat(decide(vm("1000001"), PLACED, null, POD, true)).isEqualTo(new VmDecisions.Claim(PLACED));
  }

  @Test
  void aLeftoverPodOfAnEarlierVmOfTheNameIsDeletedFirstNeverAdopted() {
    VfioVm vm = vm("1Gi");
    assertThat(VmDecisions.decide(new VmDecisions.Observation(vm, SpecValidation.validate(vm.getSpec(), GI), PLACED,
        copy(vm.getSpec()), null, true, false, true), GI)).isEqualTo(new VmDecisions.LeftoverPod(PLACED));
  }

  @Test
  void noPodOnAGoneNodeIsNodeGone() {
    VfioVm vm = vm("1Gi");
    assertThat(decide(vm, PLACED, copy(vm.getSpec()), null, false)).isEqualTo(new VmDecisions.NodeGone(PLACED));
  }

  @Test
  void noPodIsCreatedWithThePlanAsPlacedNotTheLiveSpecNorTheCurrentOverhead() {
    VfioVm vm = vm("1Gi");
    VfioVmSpec placed = copy(vm.getSpec());
    vm.getSpec().setMemory("2Gi");
    vm.getSpec().setCpus(4);
    vm.getSpec().setViommu(true);
    VmDecisions.Decision decision = VmDecisions.decide(new VmDecisions.Observation(vm,
        SpecValidation.validate(vm.getSpec(), 3 * GI), PLACED, placed, null, false, false, true), 3 * GI);
    assertThat(decision).isInstanceOfSatisfying(VmDecisions.CreatePod.class, c -> {
      assertThat(c.plan().memoryBytes()).isEqualTo(GI);
      assertThat(c.plan().memlockLimitBytes()).isEqualTo(2 * GI);
      assertThat(c.plan().devices()).containsExactly("0000:3b:00.0");
      assertThat(c.plan().cpus()).isEqualTo(1);
    });
    // even with an edited spec now invalid
    VfioVm invalid = vm("1000001");
    assertThat(decide(invalid, PLACED, placed, null, true)).isInstanceOfSatisfying(VmDecisions.CreatePod.class,
        c -> assertThat(c.plan().memoryBytes()).isEqualTo(GI));
  }

  @Test
  void aPodIsObservedAndAnyEditAfterPlacementReportedByField() {
    VfioVm vm = vm("1Gi");
    VfioVmSpec placed = copy(vm.getSpec());
    assertThat(decide(vm, PLACED, placed, POD, true)).isEqualTo(new VmDecisions.ObservePod(PLACED, POD, null));

    // devices are hot-plugged, no drift
    vm.getSpec().setDevices(List.of(new dev.vfiovm.api.DeviceSpec("0000:3b:00.0")));
    assertThat(decide(vm, PLACED, placed, POD, true)).isEqualTo(new VmDecisions.ObservePod(PLACED, POD, null));

    vm.getSpec().setAccounting(Accounting.PerProcess);
    vm.getSpec().setDmaBackend(DmaBackend.IoUring);
    vm.getSpec().setNodeSelector(Map.of("zone", "b"));
    assertThat(decide(vm, PLACED, placed, POD, true)).isInstanceOfSatisfying(VmDecisions.ObservePod.class,
        o -> assertThat(o.drift()).startsWith("spec.accounting, spec.dmaBackend, spec.nodeSelector were changed "
            + "after placement and are not applied").contains("re-create"));

    VfioVm invalid = vm("1000001");
    assertThat(decide(invalid, PLACED, placed, POD, true)).isInstanceOfSatisfying(VmDecisions.ObservePod.class,
        o -> assertThat(o.drift()).startsWith("the edited spec is invalid and not applied").contains("spec.memory"));
  }

  @Test
  void aNodeThatCannotRunItsPodGetsNoNewPodAndAnEvictedPodsStaleReportIsNotTheStatus() {
    VfioVm vm = vm("1Gi");
    VfioVmSpec placed = copy(vm.getSpec());
    NodeBudget.Unusable notReady = new NodeBudget.Unusable(Placement.Reason.NodeNotReady, "node worker-1 is not Ready");
    // the pod gone (evicted, force-deleted) from a NotReady node: none is made there (the kubelet would not run it)
    assertThat(VmDecisions.decide(new VmDecisions.Observation(vm, SpecValidation.validate(vm.getSpec(), GI), PLACED,
        placed, null, false, true, true, notReady), GI)).isEqualTo(new VmDecisions.NodeUnusable(PLACED, null, notReady));
    // the pod being evicted (deletion timestamp) from it: its last report is not the VM's state
    Pod evicted = new PodBuilder().withNewMetadata().withName("p").withDeletionTimestamp("2026-12-01T21:00:00Z")
        .endMetadata().build();
    assertThat(VmDecisions.decide(new VmDecisions.Observation(vm, SpecValidation.validate(vm.getSpec(), GI), PLACED,
        placed, evicted, false, false, true, notReady), GI)).isEqualTo(new VmDecisions.NodeUnusable(PLACED, evicted, notReady));
    // a pod still running there is observed (the node may come back before any eviction)
    assertThat(VmDecisions.decide(new VmDecisions.Observation(vm, SpecValidation.validate(vm.getSpec(), GI), PLACED,
        placed, POD, false, false, true, notReady), GI)).isEqualTo(new VmDecisions.ObservePod(PLACED, POD, null));
    // a pod being deleted on a usable node is observed until gone, then made again
    assertThat(decide(vm, PLACED, placed, evicted, true)).isEqualTo(new VmDecisions.ObservePod(PLACED, evicted, null));
  }
}
