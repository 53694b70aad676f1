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
  void aWaitingVmKeepsItsUidAndIsPlacedOnceBudgetIsReleased() {
    Ledger ledger = new Ledger(RANGE);
    assertThat(ledger.admit("ns/a", request(3), NODES, Set.of()).placed()).isTrue();
    Ledger.Admission waits = ledger.admit("ns/b", request(2), NODES, Set.of());
    assertThat(waits.placed()).isFalse();
    assertThat(waits.placement().reason()).isEqualTo(Placement.Reason.InsufficientBudget);
    long uid = waits.entry().hostUid();
    ledger.release("ns/a");
    Ledger.Admission placed = ledger.admit("ns/b", request(2), NODES, Set.of());
    assertThat(placed.placed()).isTrue();
    assertThat(placed.entry().hostUid()).isEqualTo(uid);
    assertThat(ledger.loads().get("a").usedBytes()).isEqualTo(2 * GI);
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
    assertThat(c.entry().hostUid()).isEqualTo(1002);
    assertThat(c.placed()).isFalse(); // 1Gi left
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
      assertThat(uids.add(a.entry().hostUid())).isTrue();
      if (a.placed()) {
        placed++;
        used.merge(a.entry().node(), a.entry().memlockLimitBytes(), Long::sum);
      }
    }
    pool.shutdown();
    assertThat(placed).isEqualTo(40);
    assertThat(used.values()).allMatch(b -> b == 20 * GI);
  }
}
