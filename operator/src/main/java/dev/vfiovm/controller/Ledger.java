package dev.vfiovm.controller;

import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalLong;
import java.util.Set;
import java.util.TreeMap;

/**
 * The operator's book of host UIDs and node budgets, keyed by VM (NS/NAME). Every decision that takes a UID
 * or budget happens inside one lock, so parallel reconciles of different VMs never take the same UID or the
 * same bytes. A VM keeps its entry (UID, node, limit, devices) until {@link #release} — which the reconciler
 * calls only once the VM's node pod is gone. After a restart the book is rebuilt from the cluster
 * ({@link #restore}: VM statuses, which record the UID before any pod exists) and UIDs still carried by node
 * pods are passed to {@link #admit} as taken.
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

  /** The result of {@link #admit}: an entry (placed or not) or, when no UID is left, none. */
  public record Admission(Entry entry, Placement.Decision placement, String uidProblem) {
    public boolean uidAssigned() {
      return entry != null;
    }

    public boolean placed() {
      return entry != null && entry.node() != null;
    }
  }

  private final UidRange range;
  private final Map<String, Entry> entries = new HashMap<>();
  private final UidQuarantine quarantine = new UidQuarantine();
  /** The last UID handed out; the search for the next one starts after it. */
  private long cursor;

  public Ledger(UidRange range) {
    this.range = range;
    this.cursor = range.start() + range.size() - 1; // the first hand-out is the range's start
  }

  public UidRange range() {
    return range;
  }

  /**
   * Gives the VM a UID (its own if it has one) and, unless it is placed already, a node. A placed VM keeps
   * its node; a VM that waits keeps its UID.
   *
   * @param uidsHeldByPods host UIDs of node pods that still exist (other VMs' pods, incl. pods of deleted VMs)
   */
  public synchronized Admission admit(
      String vm, Placement.Request request, List<NodeBudget> nodes, Set<Long> uidsHeldByPods) {
    Entry existing = entries.get(vm);
    if (existing != null && existing.node() != null) {
      return new Admission(existing, Placement.Decision.placed(existing.node()), null);
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
    Placement.Decision decision = Placement.place(request, nodes, loadsExcept(vm));
    Entry entry = new Entry(uid, decision.node(), request.memlockLimitBytes(), request.devices());
    entries.put(vm, entry);
    return new Admission(entry, decision, null);
  }

  /** Returns the VM's UID and budget; call only once its node pod is gone. */
  public synchronized Entry release(String vm) {
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
