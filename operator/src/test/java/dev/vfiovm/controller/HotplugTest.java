package dev.vfiovm.controller;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import net.jqwik.api.ForAll;
import org.junit.jupiter.api.Test;
import net.jqwik.api.Property;
import net.jqwik.api.constraints.IntRange;

class HotplugTest {
  static final long GI = 1L << 30;
  static final String A = "0000:3b:00.0";
  static final String B = "0000:3b:00.1";
  static final String C = "0000:3b:00.2";

  /** A node of the given budget advertising A, B and C. */
  static NodeBudget node(long budget) {
    return new NodeBudget("n1", Map.of(), budget, 0, true, null, Map.of("vfiovm.dev/iommu", 64L,
        "vfiovm.dev/pci-0000-3b-00.0", 1L, "vfiovm.dev/pci-0000-3b-00.1", 1L, "vfiovm.dev/pci-0000-3b-00.2", 1L));
  }

  /** A Running 1Gi VM placed with boot devices {@code boot} (limit factor x 1Gi + 1Gi overhead). */
  static Hotplug.Input running(boolean viommu, List<String> boot, List<String> desired, NodeBudget node,
      Placement.Load others) {
    long limit = MemlockPolicy.limitBytes(GI, boot.size(), viommu, GI);
    return new Hotplug.Input(new Ledger.Entry(7, "n1", limit, boot), limit, GI, viommu, boot, List.of(), desired,
        true, true, Set.copyOf(boot), Set.of(), limit, node, others);
  }

  @Test
  void aDeviceAddedToARunningVmIsPluggedWithoutVIommuTheLimitStays() {
    Hotplug.Plan p = Hotplug.plan(running(false, List.of(A), List.of(A, B), node(8 * GI), Placement.Load.EMPTY));
    assertThat(p.plug()).containsExactly(new Hotplug.Plug(B, 2 * GI, 2 * GI));
    assertThat(p.waiting()).isEmpty();
    assertThat(p.hotplugged()).containsExactly(B);
    assertThat(p.entry().devices()).containsExactly(A, B);
    assertThat(p.entry().memlockLimitBytes()).isEqualTo(2 * GI);
  }

  @Test
  void withVIommuEachPlugRaisesTheLimitByOneGuestRamAndTheBudgetCountsItAtOnce() {
    Hotplug.Plan p = Hotplug.plan(running(true, List.of(A), List.of(A, B, C), node(8 * GI), Placement.Load.EMPTY));
    // 1 device: 1Gi + 1Gi; +B: 3Gi; +C: 4Gi; each pod raises to its own step, lowers back to the one before
    assertThat(p.plug()).containsExactly(new Hotplug.Plug(B, 3 * GI, 2 * GI), new Hotplug.Plug(C, 4 * GI, 3 * GI));
    assertThat(p.entry().memlockLimitBytes()).isEqualTo(4 * GI);
  }

  @Test
  void aPlugBeyondTheBudgetWaitsWithTheArithmeticAndChangesNothing() {
    // budget 8Gi, another VM holds 5Gi, this one 2Gi: free 1Gi; B would need +1Gi (fits), C another +1Gi (does not)
    Hotplug.Input in = running(true, List.of(A), List.of(A, B, C), node(8 * GI), new Placement.Load(5 * GI, Map.of()));
    Hotplug.Plan p = Hotplug.plan(in);
    assertThat(p.plug()).extracting(Hotplug.Plug::device).containsExactly(B);
    assertThat(p.waiting()).singleElement().satisfies(w -> {
      assertThat(w.device()).isEqualTo(C);
      assertThat(w.reason()).isEqualTo(Hotplug.Wait.InsufficientBudget);
      assertThat(w.message()).contains("from 3Gi to 4Gi", "free 0 of budget 8Gi, needs +1Gi");
    });
    assertThat(p.entry().memlockLimitBytes()).isEqualTo(3 * GI);
    assertThat(p.hotplugged()).containsExactly(B);

    // with no room at all: nothing is planned, the entry stays exactly as it was
    Hotplug.Input full = running(true, List.of(A), List.of(A, B), node(8 * GI), new Placement.Load(6 * GI, Map.of()));
    Hotplug.Plan none = Hotplug.plan(full);
    assertThat(none.plug()).isEmpty();
    assertThat(none.entry()).isEqualTo(full.held());
    assertThat(none.changes(full)).isFalse();
    assertThat(none.waiting()).singleElement().extracting(Hotplug.Waiting::message).asString()
        .contains("free 0 of budget 8Gi, needs +1Gi");
  }

  @Test
  void aVmNotRunningWaitsAndPlugsOnceRunning() {
    Hotplug.Input in = running(false, List.of(A), List.of(A, B), node(8 * GI), Placement.Load.EMPTY);
    Hotplug.Input starting = new Hotplug.Input(in.held(), in.bootLimitBytes(), in.memoryBytes(), false, in.boot(),
        List.of(), in.desired(), false, true, Set.of(), Set.of(), null, in.node(), in.others());
    Hotplug.Plan p = Hotplug.plan(starting);
    assertThat(p.plug()).isEmpty();
    assertThat(p.changes(starting)).isFalse();
    assertThat(p.waiting()).singleElement().satisfies(w -> {
      assertThat(w.reason()).isEqualTo(Hotplug.Wait.VmNotRunning);
      assertThat(w.message()).contains(B, "once the VM is Running");
    });
    assertThat(Hotplug.plan(in).plug()).extracting(Hotplug.Plug::device).containsExactly(B);
  }

  @Test
  void aDeviceHeldByAnotherVmWaitsNamingIt() {
    Hotplug.Plan p = Hotplug.plan(running(false, List.of(A), List.of(A, B), node(8 * GI),
        new Placement.Load(2 * GI, Map.of(B, "team/other"))));
    assertThat(p.plug()).isEmpty();
    assertThat(p.waiting()).singleElement().satisfies(w -> {
      assertThat(w.reason()).isEqualTo(Hotplug.Wait.DeviceConflict);
      assertThat(w.message()).contains("assigned to VfioVm team/other");
    });
  }

  @Test
  void aDeviceTheNodeDoesNotAdvertiseWaitsForItsResource() {
    Hotplug.Plan p = Hotplug.plan(running(false, List.of(A), List.of(A, "0000:af:00.0"), node(8 * GI),
        Placement.Load.EMPTY));
    assertThat(p.waiting()).singleElement().satisfies(w -> {
      assertThat(w.reason()).isEqualTo(Hotplug.Wait.MissingDeviceResource);
      assertThat(w.message()).contains("vfiovm.dev/pci-0000-af-00.0");
    });
  }

  @Test
  void aVmWithoutIommufdCannotPlug() {
    Hotplug.Input in = running(false, List.of(), List.of(A), node(8 * GI), Placement.Load.EMPTY);
    Hotplug.Input uring = new Hotplug.Input(in.held(), in.bootLimitBytes(), in.memoryBytes(), false, List.of(),
        List.of(), in.desired(), true, false, Set.of(), Set.of(), in.limitInForceBytes(), in.node(), in.others());
    assertThat(Hotplug.plan(uring).waiting()).singleElement()
        .extracting(Hotplug.Waiting::reason).isEqualTo(Hotplug.Wait.HotplugNeedsIommufd);
  }

  @Test
  void anUnplugDeletesTheAttachmentPodAndReleasesOnlyOnceTheDeviceAndThePodAreGone() {
    long limit = 3 * GI; // vIOMMU, A at boot, B hot-plugged
    Ledger.Entry held = new Ledger.Entry(7, "n1", limit, List.of(A, B));
    // B removed from the spec: its attachment pod is deleted, B stays held
    Hotplug.Input removed = new Hotplug.Input(held, 2 * GI, GI, true, List.of(A), List.of(B), List.of(A), true, true,
        Set.of(A, B), Set.of(B), limit, node(8 * GI), Placement.Load.EMPTY);
    Hotplug.Plan p = Hotplug.plan(removed);
    assertThat(p.unplug()).containsExactly(B);
    assertThat(p.released()).isEmpty();
    assertThat(p.entry()).isEqualTo(held);
    // the pod gone, the agent still lists it (Unplugging): held
    Hotplug.Plan still = Hotplug.plan(new Hotplug.Input(held, 2 * GI, GI, true, List.of(A), List.of(B), List.of(A),
        true, true, Set.of(A, B), Set.of(), limit, node(8 * GI), Placement.Load.EMPTY));
    assertThat(still.released()).isEmpty();
    assertThat(still.entry().devices()).contains(B);
    // gone from the report, its pod gone, the agent lowered the limit: released, the limit back to the boot one
    Hotplug.Plan gone = Hotplug.plan(new Hotplug.Input(held, 2 * GI, GI, true, List.of(A), List.of(B), List.of(A),
        true, true, Set.of(A), Set.of(), 2 * GI, node(8 * GI), Placement.Load.EMPTY));
    assertThat(gone.released()).containsExactly(B);
    assertThat(gone.hotplugged()).isEmpty();
    assertThat(gone.entry()).isEqualTo(new Ledger.Entry(7, "n1", 2 * GI, List.of(A)));
  }

  @Test
  void aBootDeviceRemovedGetsADetachPodAndStaysHeldUntilTheNodePodEnds() {
    Hotplug.Input in = running(false, List.of(A, B), List.of(A), node(8 * GI), Placement.Load.EMPTY);
    Hotplug.Plan p = Hotplug.plan(in);
    assertThat(p.detach()).extracting(Hotplug.Plug::device).containsExactly(B);
    assertThat(p.entry().devices()).containsExactly(A, B);
    // detached (gone from the report): no more detach, still held
    Hotplug.Plan after = Hotplug.plan(new Hotplug.Input(in.held(), in.bootLimitBytes(), GI, false, in.boot(),
        List.of(), in.desired(), true, true, Set.of(A), Set.of(), in.limitInForceBytes(), in.node(), in.others()));
    assertThat(after.detach()).isEmpty();
    assertThat(after.entry().devices()).containsExactly(A, B);
  }

  @Test
  void anAdmittedDeviceWithoutItsPodGetsItAgainAfterARestart() {
    Ledger.Entry held = new Ledger.Entry(7, "n1", 2 * GI, List.of(A, B));
    Hotplug.Input restarted = new Hotplug.Input(held, 2 * GI, GI, false, List.of(A), List.of(B), List.of(A, B), true,
        true, Set.of(A), Set.of(), 2 * GI, node(8 * GI), Placement.Load.EMPTY);
    Hotplug.Plan p = Hotplug.plan(restarted);
    assertThat(p.plug()).extracting(Hotplug.Plug::device).containsExactly(B);
    assertThat(p.changes(restarted)).isFalse();
  }

  /** Whatever the budget and the others' load, the counted limit never exceeds the free budget by a plug. */
  @Property(tries = 300)
  void aPlanNeverOverfillsTheNode(@ForAll @IntRange(min = 2, max = 12) int budgetGi,
      @ForAll @IntRange(min = 0, max = 10) int othersGi, @ForAll boolean viommu,
      @ForAll @IntRange(min = 0, max = 3) int added) {
    List<String> desired = new ArrayList<>(List.of(A, B, C).subList(0, added));
    desired.add(0, "0000:3b:00.3");
    NodeBudget node = new NodeBudget("n1", Map.of(), budgetGi * GI, 0, true, null, Map.of(
        "vfiovm.dev/pci-0000-3b-00.0", 1L, "vfiovm.dev/pci-0000-3b-00.1", 1L, "vfiovm.dev/pci-0000-3b-00.2", 1L));
    Hotplug.Input in = running(viommu, List.of("0000:3b:00.3"), desired, node, new Placement.Load(othersGi * GI, Map.of()));
    Hotplug.Plan p = Hotplug.plan(in);
    long before = in.held().memlockLimitBytes();
    if (!p.plug().isEmpty()) {
      assertThat(othersGi * GI + p.entry().memlockLimitBytes()).isLessThanOrEqualTo(budgetGi * GI);
    } else {
      assertThat(p.entry().memlockLimitBytes()).isEqualTo(before);
    }
    assertThat(p.plug().size() + p.waiting().size()).isEqualTo(added);
  }
}
