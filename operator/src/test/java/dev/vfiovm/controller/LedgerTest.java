package dev.vfiovm.controller;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;

class LedgerTest {
  static final long GI = 1L << 30;
  static final UidRange RANGE = new UidRange(1000, 3);
  static final List<NodeBudget> NODES = List.of(new NodeBudget("a", Map.of(), 6 * GI, 2 * GI, true, null));

  static Placement.Request request(long limitGi) {
    return new Placement.Request(limitGi * GI, List.of(), null, Map.of());
  }

  @Test
  void uidsAreDistinctAndHandedOutInOrder() {
    Ledger ledger = new Ledger(RANGE);
    assertThat(ledger.admit("ns/a", request(1), NODES, Set.of()).entry().hostUid()).isEqualTo(1000);
    assertThat(ledger.admit("ns/b", request(1), NODES, Set.of()).entry().hostUid()).isEqualTo(1001);
    // admitting again returns the same entry
    assertThat(ledger.admit("ns/a", request(1), NODES, Set.of()).entry().hostUid()).isEqualTo(1000);
  }

  @Test
  void aUidStillCarriedByAPodIsNotHandedOut() {
    Ledger ledger = new Ledger(RANGE);
    assertThat(ledger.admit("ns/a", request(1), NODES, Set.of(1000L, 1001L)).entry().hostUid()).isEqualTo(1002);
  }

  @Test
  void exhaustionIsAnAnswerNotACrash() {
    Ledger ledger = new Ledger(RANGE);
    for (String vm : List.of("ns/a", "ns/b", "ns/c")) {
      assertThat(ledger.admit(vm, request(0), NODES, Set.of()).uidAssigned()).isTrue();
    }
    Ledger.Admission none = ledger.admit("ns/d", request(0), NODES, Set.of());
    assertThat(none.uidAssigned()).isFalse();
    assertThat(none.uidProblem()).contains("all 3 host UIDs").contains("1000..1002");
    ledger.release("ns/b");
    assertThat(ledger.admit("ns/d", request(0), NODES, Set.of()).entry().hostUid()).isEqualTo(1001);
  }

  @Test
  void theUidJustFreedIsTheLastToComeBack() {
    Ledger ledger = new Ledger(new UidRange(1000, 4));
    ledger.admit("ns/a", request(0), NODES, Set.of()); // 1000
    ledger.admit("ns/b", request(0), NODES, Set.of()); // 1001
    ledger.release("ns/a");
    assertThat(ledger.admit("ns/c", request(0), NODES, Set.of()).entry().hostUid()).isEqualTo(1002);
    assertThat(ledger.admit("ns/d", request(0), NODES, Set.of()).entry().hostUid()).isEqualTo(1003);
    assertThat(ledger.admit("ns/e", request(0), NODES, Set.of()).entry().hostUid()).isEqualTo(1000);
  }

  @Test
  void aQuarantinedUidGoesToNoVmUntilItsNodesAuditProvesItFree() {
    Ledger ledger = new Ledger(new UidRange(1000, 2));
    ledger.admit("ns/a", request(0), NODES, Set.of()); // 1000
    ledger.release("ns/a");
    ledger.quarantine(new UidQuarantine.Held(1000, "a", "2026-12-01T14:00:00Z", "ns/a", "force-deleted"));
    assertThat(ledger.admit("ns/b", request(0), NODES, Set.of()).entry().hostUid()).isEqualTo(1001);
    Ledger.Admission none = ledger.admit("ns/c", request(0), NODES, Set.of());
    assertThat(none.uidAssigned()).isFalse();
    assertThat(none.uidProblem()).contains("quarantined (1 freed without proof");
    var stale = new dev.vfiovm.api.UidAudit("2026-12-01T13:59:59Z", 1000, 2, List.of());
    var live = new dev.vfiovm.api.UidAudit("2026-12-01T14:00:15Z", 1000, 2, List.of(1000L));
    var clear = new dev.vfiovm.api.UidAudit("2026-12-01T14:00:30Z", 1000, 2, List.of());
    assertThat(ledger.releaseQuarantined("a", stale)).isEmpty();
    assertThat(ledger.releaseQuarantined("a", live)).isEmpty();
    assertThat(ledger.admit("ns/c", request(0), NODES, Set.of()).uidAssigned()).isFalse();
    assertThat(ledger.releaseQuarantined("a", clear)).hasSize(1);
    assertThat(ledger.admit("ns/c", request(0), NODES, Set.of()).entry().hostUid()).isEqualTo(1000);
  }

  @Test
  void cursorAndQuarantineSurviveARestartThroughTheirState() {
    Ledger before = new Ledger(new UidRange(1000, 5));
    before.admit("ns/a", request(0), NODES, Set.of()); // 1000
    before.admit("ns/b", request(0), NODES, Set.of()); // 1001
    before.admit("ns/c", request(0), NODES, Set.of()); // 1002
    before.release("ns/c");
    before.quarantine(new UidQuarantine.Held(1001, "a", "2026-12-01T14:00:00Z", "ns/b", "node gone"));
    before.release("ns/b");
    UidQuarantine.State state = UidQuarantine.State.fromJson(before.state().toJson());
    Ledger after = new Ledger(new UidRange(1000, 5));
    after.restore("ns/a", before.get("ns/a"));
    after.restoreState(state);
    assertThat(after.quarantined()).extracting(UidQuarantine.Held::uid).containsExactly(1001L);
    assertThat(after.admit("ns/d", request(0), NODES, Set.of()).entry().hostUid()).as("after the cursor").isEqualTo(1003);
    // without a persisted cursor: after the highest UID held
    Ledger fresh = new Ledger(new UidRange(1000, 5));
    fresh.restore("ns/a", new Ledger.Entry(1002, "a", 0, List.of()));
    fresh.restoreState(null);
    assertThat(fresh.admit("ns/d", request(0), NODES, Set.of()).entry().hostUid()).isEqualTo(1003);
  }

  @Test
  void aWaitingVmHoldsNoUidAndGetsOneWithItsNodeOnceBudgetIsReleased() {
    Ledger ledger = new Ledger(RANGE);
    assertThat(ledger.admit("ns/a", request(3), NODES, Set.of()).placed()).isTrue();
    Ledger.Admission waits = ledger.admit("ns/b", request(2), NODES, Set.of());
    assertThat(waits.placed()).isFalse();
    assertThat(waits.unplaced()).isTrue();
    assertThat(waits.placement().reason()).isEqualTo(Placement.Reason.InsufficientBudget);
    assertThat(waits.entry()).isNull();
    assertThat(ledger.get("ns/b")).isNull();
    // cheap VMs that fit nowhere exhaust nothing: the range of 3 still has 2 for VMs that fit
    for (String vm : List.of("ns/w1", "ns/w2", "ns/w3", "ns/w4")) {
      assertThat(ledger.admit(vm, request(9), NODES, Set.of()).entry()).isNull();
    }
    assertThat(ledger.admit("ns/c", request(0), NODES, Set.of()).entry().hostUid()).isEqualTo(1001);
    ledger.release("ns/a");
    Ledger.Admission placed = ledger.admit("ns/b", request(2), NODES, Set.of());
    assertThat(placed.placed()).isTrue();
    assertThat(placed.entry().hostUid()).isEqualTo(1002);
    assertThat(ledger.loads().get("a").usedBytes()).isEqualTo(2 * GI);
  }

  @Test
  void anOlderWaitingVmsRequestIsReservedFirstSoSmallVmsCannotStarveABigOne() {
    Ledger ledger = new Ledger(new UidRange(1000, 10)); // node a: budget 4Gi
    ledger.admit("ns/small1", request(2), NODES, Set.of());
    ledger.admit("ns/small2", request(1), NODES, Set.of());
    // big (3Gi) waits: 1Gi free
    assertThat(ledger.admit("ns/big", request(3), NODES, Set.of()).unplaced()).isTrue();
    // without reservations a younger 1Gi VM would take the free 1Gi; the node drains for big instead
    Ledger.Admission younger = ledger.admit("ns/small3", request(1), NODES, Set.of(), List.of(request(3)));
    assertThat(younger.placed()).isFalse();
    assertThat(younger.placement().reason()).isEqualTo(Placement.Reason.InsufficientBudget);
    ledger.release("ns/small1");
    // big fits now; a younger VM may still take what big leaves over (4 - 1 - 3 = 0: nothing)
    assertThat(ledger.admit("ns/small3", request(1), NODES, Set.of(), List.of(request(3))).placed()).isFalse();
    assertThat(ledger.admit("ns/big", request(3), NODES, Set.of()).placed()).isTrue();
    // an older request that fits no node even empty reserves nothing
    ledger.release("ns/small2");
    assertThat(ledger.admit("ns/small3", request(1), NODES, Set.of(), List.of(request(9))).placed()).isTrue();
  }

  @Test
  void aReleaseWakesOnlyTheWaitersThatFitOldestFirst() {
    Ledger ledger = new Ledger(new UidRange(1000, 10));
    ledger.admit("ns/x", request(4), NODES, Set.of());
    List<Map.Entry<String, Placement.Request>> waiters = List.of(Map.entry("ns/old", request(3)),
        Map.entry("ns/mid", request(2)), Map.entry("ns/young", request(1)), Map.entry("ns/huge", request(8)));
    assertThat(ledger.mayFitNow(waiters, NODES)).isEmpty();
    ledger.release("ns/x");
    // 4Gi free: old (3) then young (1); mid (2) no longer fits once old took its share; huge never
    assertThat(ledger.mayFitNow(waiters, NODES)).containsExactly("ns/old", "ns/young");
  }

  @Test
  void aPlacedVmKeepsItsNodeEvenIfAskedAgainWithAnotherRequest() {
    Ledger ledger = new Ledger(RANGE);
    ledger.admit("ns/a", request(1), NODES, Set.of());
    Ledger.Admission again = ledger.admit("ns/a", request(4), NODES, Set.of());
    assertThat(again.entry().memlockLimitBytes()).isEqualTo(GI);
    assertThat(again.entry().node()).isEqualTo("a");
  }

  @Test
  void aRebuiltLedgerKnowsEveryUidAndByteItHeldBefore() {
    Ledger before = new Ledger(RANGE);
    before.admit("ns/a", request(2), NODES, Set.of());
    before.admit("ns/b", request(1), NODES, Set.of());
    // what the VM statuses say after a restart
    Ledger after = new Ledger(RANGE);
    before.snapshot().forEach((vm, entry) -> assertThat(after.restore(vm, entry)).isTrue());
    assertThat(after.snapshot()).isEqualTo(before.snapshot());
    assertThat(after.loads().get("a").usedBytes()).isEqualTo(3 * GI);
    Ledger.Admission c = after.admit("ns/c", request(2), NODES, Set.of());
    assertThat(c.placed()).isFalse(); // 1Gi left
    assertThat(c.entry()).isNull(); // waiting holds no UID
    assertThat(after.admit("ns/d", request(1), NODES, Set.of()).entry().hostUid()).isEqualTo(1002);
  }

  @Test
  void restoreRefusesASecondClaimOnOneUid() {
    Ledger ledger = new Ledger(RANGE);
    assertThat(ledger.restore("ns/a", new Ledger.Entry(1000, "a", GI, List.of()))).isTrue();
    assertThat(ledger.restore("ns/b", new Ledger.Entry(1000, "a", GI, List.of()))).isFalse();
    assertThat(ledger.get("ns/b")).isNull();
  }

  @Test
  void devicesHeldOnANodeAreTheLedgersConflicts() {
    Ledger ledger = new Ledger(RANGE);
    ledger.admit("ns/a", new Placement.Request(GI, List.of("0000:3b:00.0"), null, Map.of()), NODES, Set.of());
    Ledger.Admission b =
        ledger.admit("ns/b", new Placement.Request(GI, List.of("0000:3b:00.0"), null, Map.of()), NODES, Set.of());
    assertThat(b.placement().reason()).isEqualTo(Placement.Reason.DeviceConflict);
    assertThat(b.placement().message()).contains("ns/a");
  }

  @Test
  void parallelAdmissionsNeverShareAUidOrOvercommitANode() throws Exception {
    UidRange range = new UidRange(5000, 1000);
    List<NodeBudget> nodes = new ArrayList<>();
    for (int i = 0; i < 4; i++) {
      nodes.add(new NodeBudget("n" + i, Map.of(), 22 * GI, 2 * GI, true, null)); // 20Gi each
    }
    Ledger ledger = new Ledger(range);
    ExecutorService pool = Executors.newFixedThreadPool(32);
    CountDownLatch go = new CountDownLatch(1);
    List<Future<Ledger.Admission>> results = new ArrayList<>();
    for (int i = 0; i < 200; i++) {
      String vm = "ns/vm" + i;
      results.add(pool.submit(() -> {
        go.await();
        return ledger.admit(vm, request(2), nodes, Set.of());
      }));
    }
    go.countDown();
    Set<Long> uids = new HashSet<>();
    Map<String, Long> used = new HashMap<>();
    int placed = 0;
    for (Future<Ledger.Admission> f : results) {
      Ledger.Admission a = f.get();
      assertThat(a.entry() == null || uids.add(a.entry().hostUid())).isTrue();
      if (a.placed()) {
        placed++;
        used.merge(a.entry().node(), a.entry().memlockLimitBytes(), Long::sum);
      }
    }
    pool.shutdown();
    assertThat(placed).isEqualTo(40);
    assertThat(used.values()).allMatch(b -> b == 20 * GI);
  }

  static Placement.Request withPod(long limitGi, long podGi) {
    return new Placement.Request(limitGi * GI, List.of(), null, Map.of(), List.of(), podGi * GI, null);
  }

  @Test
  void twoVmsPlacedInTheSameInstantDoNotBothTakeTheNodeMemoryForOnePod() {
    // node a: memlock budget for two 1Gi limits, but allocatable memory for one 3Gi node pod only; no pod of
    // either VM exists yet (the bound-pods cache counts none), so the first placement's pod must be counted
    List<NodeBudget> nodes = List.of(new NodeBudget("a", Map.of(), 4 * GI, 0, true, null),
        new NodeBudget("b", Map.of(), 4 * GI, 0, true, null));
    Ledger ledger = new Ledger(RANGE);
    Ledger.Admission first = ledger.admit("ns/a", withPod(1, 3), nodes, Set.of(), List.of(), k -> false);
    Ledger.Admission second = ledger.admit("ns/b", withPod(1, 3), nodes, Set.of(), List.of(), k -> false);
    assertThat(first.entry().node()).isNotEqualTo(second.entry().node());
    Ledger.Admission third = ledger.admit("ns/c", withPod(1, 3), nodes, Set.of(), List.of(), k -> false);
    assertThat(third.placed()).isFalse();
    assertThat(third.placement().reason()).isEqualTo(Placement.Reason.InsufficientNodeMemory);
    // the same through the overload without a pod predicate (no placed VM's pod counted)
    Ledger plain = new Ledger(RANGE);
    String node = plain.admit("ns/a", withPod(1, 3), nodes, Set.of()).entry().node();
    assertThat(plain.admit("ns/b", withPod(1, 3), nodes, Set.of()).entry().node()).isNotEqualTo(node);
    // and what a wake-up would place: none of the waiting
    assertThat(plain.mayFitNow(List.of(Map.entry("ns/c", withPod(1, 3))), nodes)).isEmpty();
  }

  @Test
  void aPlacedVmWhosePodIsCountedAlreadyIsNotCountedTwiceAndAReleaseFreesItsPodMemory() {
    List<NodeBudget> nodes = List.of(new NodeBudget("a", Map.of(), 4 * GI, 0, true, null));
    Ledger ledger = new Ledger(RANGE);
    assertThat(ledger.admit("ns/a", withPod(1, 2), nodes, Set.of(), List.of(), k -> false).placed()).isTrue();
    // ns/a's pod is now in the bound pods (2Gi requested on a): counted there, not again by the ledger
    List<NodeBudget> withPod = List.of(nodes.get(0).withRequestedByOtherPods(2 * GI));
    assertThat(ledger.admit("ns/b", withPod(1, 2), withPod, Set.of(), List.of(), "ns/a"::equals).placed()).isTrue();
    ledger.release("ns/b");
    ledger.release("ns/a");
    // both gone: the whole node's memory is free again for a pod of 4Gi
    assertThat(ledger.admit("ns/c", withPod(1, 4), nodes, Set.of(), List.of(), k -> false).placed()).isTrue();
  }
}
