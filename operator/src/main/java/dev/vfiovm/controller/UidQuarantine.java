package dev.vfiovm.controller;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vfiovm.api.NodeAgentReport;
import dev.vfiovm.api.Phase;
import dev.vfiovm.api.UidAudit;
import io.fabric8.kubernetes.api.model.ContainerStatus;
import io.fabric8.kubernetes.api.model.Pod;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Collectors;

/**
 * Host UIDs freed without proof that the VM's processes are gone (node pod force-deleted or vanished while
 * the VM may have run, or its node deleted). A quarantined UID is handed to no VM until the proof exists: the
 * audit of the node the UID was freed on ({@link UidAudit}, Node annotation {@code vfiovm.dev/uid-audit})
 * scanned after the free and did not find the UID ({@link #proven}). A node that is gone keeps its UIDs in
 * quarantine until a node of that name comes back and audits them away. Pure (no I/O); the operator holds
 * one inside its {@link Ledger} lock and persists {@link State} as JSON.
 */
public final class UidQuarantine {
  private static final ObjectMapper JSON = new ObjectMapper();

  /** One quarantined UID: freed at {@code freedAt} on {@code node} by {@code vm}, for {@code reason}. */
  @JsonIgnoreProperties(ignoreUnknown = true)
  public record Held(long uid, String node, String freedAt, String vm, String reason) {
    public Instant freedAtInstant() {
      return Instant.parse(freedAt);
    }
  }

  /** What is persisted: the quarantine and the hand-out cursor (the last UID handed out, or null). */
  @JsonIgnoreProperties(ignoreUnknown = true)
  public record State(Long cursor, List<Held> quarantined) {
    public State {
      quarantined = quarantined == null ? List.of() : List.copyOf(quarantined);
    }

    public String toJson() {
      try {
        return JSON.writeValueAsString(this);
      } catch (JsonProcessingException e) {
        throw new IllegalStateException(e);
      }
    }

    public static State fromJson(String json) {
      try {
        return JSON.readValue(json, State.class);
      } catch (JsonProcessingException e) {
        throw new IllegalArgumentException("not a UID quarantine: " + e.getOriginalMessage());
      }
    }
  }

  /**
   * The release rule: the quarantine of UID u freed at t on node n ends when n's audit was scanned after t,
   * covered u (u in the audited range) and did not list u. No audit, an unreadable one, one of another node
   * or an older one proves nothing.
   */
  public static boolean proven(Held held, String auditNode, UidAudit audit) {
    if (audit == null || !held.node().equals(auditNode) || !audit.covers(held.uid())) {
      return false;
    }
    Instant scanned;
    try {
      scanned = audit.scannedAtInstant();
    } catch (IllegalArgumentException e) {
      return false;
    }
    return scanned.isAfter(held.freedAtInstant()) && !audit.liveUids().contains(held.uid());
  }

  /**
   * Whether a node pod that is gone freed its UID without proof that the VM's processes are gone; the reason
   * if so, null if the proof exists. Proof: the last state seen of the pod shows every container terminated
   * (the kubelet saw them end: what it reports before removing a gracefully deleted pod). Without it, the UID
   * may still run when the node is gone (with a pod seen there), or when the VM may have run: its phase was
   * Starting or Running, or the last pod seen had a container running or an agent report of Starting/Running.
   * A pod that never got that far (no container ever ran as the UID: Pending, Placed) is no risk.
   *
   * @param lastSeen the pod's last state the operator saw (the watch's final state), or null if never seen
   * @param vmPhase the VfioVm's phase before its deletion began; Terminating when that is unknown (an operator
   *     restarted during the deletion), which with no pod seen counts as "may have run"
   * @param nodeExists whether the pod's node still exists
   */
  public static String unprovenFree(Pod lastSeen, Phase vmPhase, boolean nodeExists) {
    if (lastSeen != null && allContainersTerminated(lastSeen)) {
      return null;
    }
    boolean mayHaveRun = vmPhase == Phase.Starting || vmPhase == Phase.Running
        || (lastSeen == null && vmPhase == Phase.Terminating)
        || (lastSeen != null && (anyContainerStarted(lastSeen) || agentLive(lastSeen)));
    if (!nodeExists && (mayHaveRun || lastSeen != null)) {
      return "its node is gone";
    }
    if (mayHaveRun) {
      return "its node pod disappeared (force-deleted?) while the VM "
          + (vmPhase == null ? "may have run" : "was " + vmPhase);
    }
    return null;
  }

  static boolean allContainersTerminated(Pod pod) {
    List<ContainerStatus> all = statuses(pod);
    if (all.isEmpty()) {
      return false;
    }
    return all.stream().allMatch(c -> c.getState() != null && (c.getState().getTerminated() != null
        || (c.getState().getWaiting() != null && !ran(c.getLastState()))));
  }

  private static boolean ran(io.fabric8.kubernetes.api.model.ContainerState state) {
    return state != null && (state.getRunning() != null || state.getTerminated() != null);
  }

  private static boolean anyContainerStarted(Pod pod) {
    return statuses(pod).stream().anyMatch(c -> c.getState() != null
        && (c.getState().getRunning() != null || c.getState().getTerminated() != null));
  }

  private static boolean agentLive(Pod pod) {
    NodeAgentReport report = VmStatuses.report(pod);
    return report != null && (report.getPhase() == NodeAgentReport.AgentPhase.Starting
        || report.getPhase() == NodeAgentReport.AgentPhase.Running);
  }

  private static List<ContainerStatus> statuses(Pod pod) {
    List<ContainerStatus> all = new ArrayList<>();
    if (pod.getStatus() != null) {
      if (pod.getStatus().getInitContainerStatuses() != null) {
        all.addAll(pod.getStatus().getInitContainerStatuses());
      }
      if (pod.getStatus().getContainerStatuses() != null) {
        all.addAll(pod.getStatus().getContainerStatuses());
      }
    }
    return all;
  }

  private final List<Held> held = new ArrayList<>();

  public UidQuarantine() {}

  public UidQuarantine(List<Held> initial) {
    held.addAll(initial);
  }

  /** Quarantines the UID (again: the latest free counts, as a later free needs a later scan). */
  public void add(Held entry) {
    held.removeIf(h -> h.uid() == entry.uid() && h.node().equals(entry.node())
        && !h.freedAtInstant().isAfter(entry.freedAtInstant()));
    if (held.stream().noneMatch(h -> h.uid() == entry.uid() && h.node().equals(entry.node()))) {
      held.add(entry);
    }
  }

  /** Ends every quarantine the node's audit proves over; returns what was released. */
  public List<Held> release(String node, UidAudit audit) {
    List<Held> released = held.stream().filter(h -> proven(h, node, audit)).toList();
    held.removeAll(released);
    return released;
  }

  public Set<Long> uids() {
    return held.stream().map(Held::uid).collect(Collectors.toCollection(TreeSet::new));
  }

  public List<Held> entries() {
    return held.stream().sorted(Comparator.comparing(Held::node).thenComparingLong(Held::uid)).toList();
  }
}
