package dev.vfiovm.controller;

import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalLong;
import java.util.Set;
import java.util.TreeMap;
import java.util.function.Predicate;

/**
 * The operator's book of host UIDs and node budgets, keyed by VM (NS/NAME). Every decision that takes a UID
 * or budget happens inside one lock, so parallel reconciles of different VMs never take the same UID or the
 * same bytes. A VM keeps its entry (UID, node, limit, devices) until {@link #release} — which the reconciler
 * calls only once the VM's node pod is gone. A VM gets its UID together with its node: one that waits holds
 * nothing. After a restart the book is rebuilt from the UID claims ({@link #restore}; see {@code UidClaims})
 * and UIDs still carried by node pods are passed to {@link #admit} as taken.
 *
 * <p>Hand-out order: from a cursor that moves forward ({@link UidRange#nextFree}: the next free UID after the
 * last one handed out, wrapping), so a UID just freed is the last to come back. UIDs freed without proof that
 * the VM's processes are gone sit in a {@link UidQuarantine} and are handed to no VM until the node's audit
 * proves them free. Cursor and quarantine are what {@link #state} returns (persisted by the operator).
 */
public final class Ledger {
  /** A VM's share: node is null while the VM waits for placement. */
  public record Entry(long hostUid, String node, long memlockLimitBytes, List<String> devices) {
    public Entry {
      devices = List.copyOf(devices);
    }
  }

  /**
   * The result of {@link #admit}: a placed entry; or no entry with the placement that failed (the VM waits
   * holding nothing); or no entry with the UID problem (a node fits, no UID is left).
   */
  public record Admission(Entry entry, Placement.Decision placement, String uidProblem) {
    public boolean uidAssigned() {
      return entry != null;
    }

    /** No node fits (placement says why); no UID was looked for. */
    public boolean unplaced() {
      return placement != null && !placement.isPlaced();
    }

    public boolean placed() {
      return entry != null && entry.node() != null;
    }
  }

  private final UidRange range;
  private final Map<String, Entry> entries = new HashMap<>();
  private final UidQuarantine quarantine = new UidQuarantine();
  /**
   * The node-pod memory request of each VM placed here ({@link Placement.Request#podMemoryBytes}) until the
   * caller's bound-pods cache shows its pod; a VM restored from its claim has none (its pod exists, or is made
   * before the next one's placement counts it).
   */
  private final Map<String, Long> podMemory = new HashMap<>();
  /** The last UID handed out; the search for the next one starts after it. */
  private long cursor;

  public Ledger(UidRange range) {
    this.range = range;
    this.cursor = range.start() + range.size() - 1; // the first hand-out is the range's start
  }

  public UidRange range() {
    return range;
  }

  /** {@link #admit(String, Placement.Request, List, Set, List)} with no older VM waiting. */
  public synchronized Admission admit(
      String vm, Placement.Request request, List<NodeBudget> nodes, Set<Long> uidsHeldByPods) {
    return admit(vm, request, nodes, uidsHeldByPods, List.of());
  }

  /**
   * Gives the VM a node and, with it, a UID; a placed VM keeps both. A VM that fits no node gets nothing (it
   * waits holding no UID, so cheap unplaceable VMs cannot exhaust the range).
   *
   * <p>No starvation: the requests of older VMs that wait too are reserved first ({@link #reserved}), so this
   * VM is placed only where it takes no budget an older waiting VM fits in.
   *
   * @param uidsHeldByPods host UIDs of node pods that still exist (other VMs' pods, incl. pods of deleted VMs)
   *     and of other VMs' claims
   * @param olderWaiting the requests of the VMs created before this one that wait for placement, oldest first
   */
  public synchronized Admission admit(String vm, Placement.Request request, List<NodeBudget> nodes,
      Set<Long> uidsHeldByPods, List<Placement.Request> olderWaiting) {
    return admit(vm, request, nodes, uidsHeldByPods, olderWaiting, k -> false);
  }

  /**
   * {@link #admit(String, Placement.Request, List, Set, List)}, where {@code podCounted} says of a placed VM
   * (key NS/NAME) whether its node pod is already in its node's {@link NodeBudget#requestedByOtherPods}: the
   * node-pod memory of every other placed VM whose pod is not counted there (not created yet, or not in the
   * caller's cache yet) is added to its node here, under the book's lock, so two VMs placed in the same instant
   * never both take the same free node memory.
   */
  public synchronized Admission admit(String vm, Placement.Request request, List<NodeBudget> nodes,
      Set<Long> uidsHeldByPods, List<Placement.Request> olderWaiting, Predicate<String> podCounted) {
    nodes = withUncountedPods(nodes, vm, podCounted);
    Entry existing = entries.get(vm);
    if (existing != null && existing.node() != null) {
      return new Admission(existing, Placement.Decision.placed(existing.node()), null);
    }
    Placement.Decision decision = Placement.place(request, nodes, reserved(loadsExcept(vm), nodes, olderWaiting));
    if (!decision.isPlaced()) {
      entries.remove(vm);
      podMemory.remove(vm);
      return new Admission(null, decision, null);
    }
    long uid;
    if (existing != null) {
      uid = existing.hostUid();
    } else {
      Set<Long> taken = new HashSet<>(uidsHeldByPods);
      entries.values().forEach(e -> taken.add(e.hostUid()));
      Set<Long> quarantined = quarantine.uids();
      taken.addAll(quarantined);
      OptionalLong free = range.nextFree(taken, cursor);
      if (free.isEmpty()) {
        return new Admission(null, null, "all " + range.size() + " host UIDs of the range " + range
            + " are held by live VMs or their node pods"
            + (quarantined.isEmpty() ? "" : " or quarantined (" + quarantined.size() + " freed without proof that "
                + "their processes are gone, waiting for their node's UID audit)")
            + "; delete a VfioVm or widen the operator's UID range");
      }
      uid = free.getAsLong();
      cursor = uid;
    }
    Entry entry = new Entry(uid, decision.node(), request.memlockLimitBytes(), request.devices());
    entries.put(vm, entry);
    podMemory.put(vm, request.podMemoryBytes());
    return new Admission(entry, decision, null);
  }

  /**
   * The nodes with the node-pod memory of the placed VMs (other than {@code except}) whose pods
   * {@code podCounted} does not count added to what other pods request there.
   */
  private List<NodeBudget> withUncountedPods(List<NodeBudget> nodes, String except, Predicate<String> podCounted) {
    Map<String, Long> uncounted = new HashMap<>();
    // only VMs whose pod the caller's cache has not shown yet are kept: the scan (under the lock) stays as short
    // as the placements in flight, whatever the number of VMs
    for (var it = podMemory.entrySet().iterator(); it.hasNext(); ) {
      Map.Entry<String, Long> m = it.next();
      Entry e = entries.get(m.getKey());
      if (e == null || e.node() == null || m.getValue() <= 0) {
        it.remove();
      } else if (!m.getKey().equals(except)) {
        if (podCounted.test(m.getKey())) {
          it.remove(); // its pod is in the cache: counted there from now on
        } else {
          uncounted.merge(e.node(), m.getValue(), Long::sum);
        }
      }
    }
    if (uncounted.isEmpty()) {
      return nodes;
    }
    return nodes.stream().map(n -> uncounted.containsKey(n.name())
        ? n.withRequestedByOtherPods(n.requestedByOtherPods() + uncounted.get(n.name())) : n).toList();
  }

  /**
   * The loads with the older waiting requests reserved, oldest first (virtually, through
   * {@link Placement#place}): one that fits now takes its bytes where it would go; one that fits no node's
   * free budget but would fit a node as if nothing else were placed there has that whole node's budget
   * reserved, so the node drains for it instead of filling with younger VMs. Devices are not reserved (a
   * device conflict is final, a reservation must never be one).
   */
  static Map<String, Placement.Load> reserved(Map<String, Placement.Load> loads, List<NodeBudget> nodes,
      List<Placement.Request> olderWaiting) {
    Map<String, Placement.Load> reserved = new HashMap<>(loads);
    for (Placement.Request older : olderWaiting) {
      Placement.Decision now = Placement.place(older, nodes, reserved);
      if (now.isPlaced()) {
        reserved.merge(now.node(), new Placement.Load(older.memlockLimitBytes(), Map.of()),
            (a, b) -> new Placement.Load(Math.addExact(a.usedBytes(), b.usedBytes()), a.devices()));
      } else if (now.reason() == Placement.Reason.InsufficientBudget) {
        Map<String, Placement.Load> devicesOnly = new HashMap<>();
        reserved.forEach((node, load) -> devicesOnly.put(node, new Placement.Load(0, load.devices())));
        Placement.Decision alone = Placement.place(older, nodes, devicesOnly);
        if (alone.isPlaced()) {
          long budget = nodes.stream().filter(n -> n.name().equals(alone.node())).findFirst()
              .map(NodeBudget::budgetBytes).orElse(0L);
          Placement.Load load = reserved.getOrDefault(alone.node(), Placement.Load.EMPTY);
          reserved.put(alone.node(), new Placement.Load(Math.max(budget, load.usedBytes()), load.devices()));
        }
      }
    }
    return reserved;
  }

  /**
   * Which of the waiting VMs (oldest first) may be placed now, each taking its share virtually before the
   * next is tried: the ones a release or a node change should wake, no more (no thundering herd).
   */
  public synchronized List<String> mayFitNow(List<Map.Entry<String, Placement.Request>> waitingOldestFirst,
      List<NodeBudget> nodes) {
    return mayFitNow(waitingOldestFirst, nodes, k -> false);
  }

  /** {@link #mayFitNow(List, List)} with the placed VMs' uncounted node pods (see {@link #admit}). */
  public synchronized List<String> mayFitNow(List<Map.Entry<String, Placement.Request>> waitingOldestFirst,
      List<NodeBudget> nodes, Predicate<String> podCounted) {
    nodes = withUncountedPods(nodes, null, podCounted);
    Map<String, Placement.Load> loads = new HashMap<>(loadsExcept(null));
    List<String> fit = new java.util.ArrayList<>();
    for (Map.Entry<String, Placement.Request> waiter : waitingOldestFirst) {
      Placement.Request request = waiter.getValue();
      Placement.Decision d = Placement.place(request, nodes, loads);
      if (d.isPlaced()) {
        fit.add(waiter.getKey());
        loads.merge(d.node(), new Placement.Load(request.memlockLimitBytes(), Map.of()),
            (a, b) -> new Placement.Load(Math.addExact(a.usedBytes(), b.usedBytes()), a.devices()));
      }
    }
    return fit;
  }

  /** Returns the VM's UID and budget; call only once its node pod is gone. */
  public synchronized Entry release(String vm) {
    podMemory.remove(vm);
    return entries.remove(vm);
  }

  /**
   * Records an entry found in the cluster (restart). The first VM to claim a UID keeps it; a later claimant is
   * refused (returns false) and gets a new UID when admitted.
   */
  public synchronized boolean restore(String vm, Entry entry) {
    boolean clash = entries.entrySet().stream()
        .anyMatch(e -> !e.getKey().equals(vm) && e.getValue().hostUid() == entry.hostUid());
    if (clash) {
      return false;
    }
    entries.put(vm, entry);
    return true;
  }

  /**
   * Re-plans a placed VM's devices under the book's lock (hot-plug): {@code planner} gets the other VMs' load on
   * the VM's node (limits and devices held), and an entry it returns replaces the VM's at once, so two VMs
   * re-planned or placed in the same instant never both take the same bytes or device. Null when the VM holds
   * no placed entry.
   */
  public synchronized <T> T replan(String vm, java.util.function.Function<Placement.Load, T> planner,
      java.util.function.Function<T, Entry> entryOf) {
    Entry e = entries.get(vm);
    if (e == null || e.node() == null) {
      return null;
    }
    T plan = planner.apply(loadsExcept(vm).getOrDefault(e.node(), Placement.Load.EMPTY));
    Entry next = entryOf.apply(plan);
    if (next != null) {
      entries.put(vm, next);
    }
    return plan;
  }

  /** Puts back an entry replaced by {@link #replan} whose claim could not be written (only if still that one). */
  public synchronized void revert(String vm, Entry replaced, Entry previous) {
    if (replaced.equals(entries.get(vm))) {
      entries.put(vm, previous);
    }
  }

  /** Quarantines a UID freed without proof (see {@link UidQuarantine}). */
  public synchronized void quarantine(UidQuarantine.Held held) {
    quarantine.add(held);
  }

  /** Ends the quarantines the node's audit proves over; returns them. */
  public synchronized List<UidQuarantine.Held> releaseQuarantined(String node, dev.vfiovm.api.UidAudit audit) {
    return quarantine.release(node, audit);
  }

  public synchronized List<UidQuarantine.Held> quarantined() {
    return quarantine.entries();
  }

  /** Cursor and quarantine, to persist. */
  public synchronized UidQuarantine.State state() {
    return new UidQuarantine.State(cursor, quarantine.entries());
  }

  /**
   * Takes back a persisted state (restart): its quarantine, and its cursor; without one, the cursor
   * continues after the highest UID a restored VM holds.
   */
  public synchronized void restoreState(UidQuarantine.State state) {
    if (state != null) {
      state.quarantined().forEach(quarantine::add);
    }
    if (state != null && state.cursor() != null && range.contains(state.cursor())) {
      cursor = state.cursor();
    } else {
      entries.values().stream().mapToLong(Entry::hostUid).filter(range::contains).max().ifPresent(u -> cursor = u);
    }
  }

  public synchronized Entry get(String vm) {
    return entries.get(vm);
  }

  public synchronized Map<String, Entry> snapshot() {
    return new TreeMap<>(entries);
  }

  /** Per node: sum of placed memlock limits and the devices held. */
  public synchronized Map<String, Placement.Load> loads() {
    return loadsExcept(null);
  }

  private Map<String, Placement.Load> loadsExcept(String vm) {
    Map<String, Long> used = new HashMap<>();
    Map<String, Map<String, String>> devices = new HashMap<>();
    entries.forEach((key, e) -> {
      if (e.node() == null || key.equals(vm)) {
        return;
      }
      used.merge(e.node(), e.memlockLimitBytes(), Math::addExact);
      Map<String, String> held = devices.computeIfAbsent(e.node(), n -> new LinkedHashMap<>());
      e.devices().forEach(d -> held.put(d, key));
    });
    Map<String, Placement.Load> loads = new HashMap<>();
    used.forEach((node, bytes) -> loads.put(node, new Placement.Load(bytes, devices.getOrDefault(node, Map.of()))));
    return loads;
  }
}
