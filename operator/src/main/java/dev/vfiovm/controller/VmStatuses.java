package dev.vfiovm.controller;

import dev.vfiovm.api.Quantities;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vfiovm.api.DeviceStatus;
import dev.vfiovm.api.NodeAgentReport;
import dev.vfiovm.api.NodeAgentReport.AgentPhase;
import dev.vfiovm.api.Phase;
import dev.vfiovm.api.VfioVm;
import dev.vfiovm.api.VfioVmStatus;
import io.fabric8.kubernetes.api.model.Condition;
import io.fabric8.kubernetes.api.model.ConditionBuilder;
import io.fabric8.kubernetes.api.model.ContainerStateTerminated;
import io.fabric8.kubernetes.api.model.ContainerStatus;
import io.fabric8.kubernetes.api.model.Pod;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;

/**
 * The VfioVm status for each state of the flow, as pure functions. Conditions always come as the five types in
 * flow order, each with reason and message; a condition keeps its lastTransitionTime while its status holds.
 */
public final class VmStatuses {
  static final String TRUE = "True";
  static final String FALSE = "False";
  static final String UNKNOWN = "Unknown";
  private static final ObjectMapper JSON =
      new ObjectMapper().configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false);

  private VmStatuses() {}

  /** Spec invalid: nothing is allocated or created. */
  public static VfioVmStatus invalid(VfioVm vm, SpecValidation.Result validation, Instant now) {
    VfioVmStatus s = base(vm, null, null, null);
    s.setPhase(Phase.Failed);
    s.setMessage("invalid spec: " + validation.message());
    s.setConditions(conditions(vm, now,
        c(VfioVmStatus.UID_ASSIGNED, FALSE, "InvalidSpec", validation.message()),
        c(VfioVmStatus.PLACED, FALSE, "InvalidSpec", "not placed: the spec is invalid"),
        c(VfioVmStatus.MEMLOCK_LIMITED, UNKNOWN, "InvalidSpec", "no memlock limit: the spec is invalid"),
        c(VfioVmStatus.DMA_MAPPED, UNKNOWN, "InvalidSpec", "nothing mapped: the spec is invalid"),
        c(VfioVmStatus.READY, FALSE, "InvalidSpec", validation.message())));
    return s;
  }

  /** No host UID left. */
  public static VfioVmStatus uidExhausted(VfioVm vm, String problem, Instant now) {
    VfioVmStatus s = base(vm, null, null, null);
    s.setPhase(Phase.Pending);
    s.setMessage(problem);
    s.setConditions(conditions(vm, now,
        c(VfioVmStatus.UID_ASSIGNED, FALSE, "UidRangeExhausted", problem),
        c(VfioVmStatus.PLACED, FALSE, "WaitingForUid", "placement waits for a host UID"),
        c(VfioVmStatus.MEMLOCK_LIMITED, UNKNOWN, "NotStarted", "the node agent has not started"),
        c(VfioVmStatus.DMA_MAPPED, UNKNOWN, "NotStarted", "the node agent has not started"),
        c(VfioVmStatus.READY, FALSE, "UidRangeExhausted", problem)));
    return s;
  }

  /** UID held, no node: Pending (waits) or Failed (the user must change something). */
  public static VfioVmStatus unplaced(VfioVm vm, Ledger.Entry entry, Placement.Decision decision, Instant now) {
    VfioVmStatus s = base(vm, entry, null, null);
    s.setPhase(decision.reason().terminal ? Phase.Failed : Phase.Pending);
    s.setMessage(decision.message());
    s.setConditions(conditions(vm, now,
        uidAssigned(entry),
        c(VfioVmStatus.PLACED, FALSE, decision.reason().name(), decision.message()),
        c(VfioVmStatus.MEMLOCK_LIMITED, UNKNOWN, "NotStarted", "the node agent has not started"),
        c(VfioVmStatus.DMA_MAPPED, UNKNOWN, "NotStarted", "the node agent has not started"),
        c(VfioVmStatus.READY, FALSE, decision.reason().name(), decision.message())));
    return s;
  }

  /** UID and node decided; the node pod does not exist yet or the agent has not reported. */
  public static VfioVmStatus placed(VfioVm vm, Ledger.Entry entry, String podKey, Pod pod, Instant now) {
    VfioVmStatus s = base(vm, entry, podKey, null);
    if (pod != null) {
      s.setConsole(NodePodShape.console(podKey, NodePodShape.consoleOf(pod)));
    }
    s.setPhase(Phase.Placed);
    String podPhase = pod == null || pod.getStatus() == null ? null : pod.getStatus().getPhase();
    String waiting = pod == null
        ? "creating node pod " + podKey
        : "node pod " + podKey + " is " + (podPhase == null ? "not yet started by the kubelet" : podPhase)
            + containerWaiting(pod).map(w -> " (" + w + ")").orElse("")
            + "; waiting for the node agent's first report";
    s.setMessage("placed on node " + entry.node() + "; " + waiting);
    s.setConditions(conditions(vm, now,
        uidAssigned(entry),
        placedCondition(entry),
        c(VfioVmStatus.MEMLOCK_LIMITED, UNKNOWN, "AgentNotReported", waiting),
        c(VfioVmStatus.DMA_MAPPED, UNKNOWN, "AgentNotReported", waiting),
        c(VfioVmStatus.READY, FALSE, "AgentNotReported", waiting)));
    return s;
  }

  /** The VM's node left the cluster and took the node pod with it: the VM does not move by itself. */
  public static VfioVmStatus nodeGone(VfioVm vm, Ledger.Entry entry, Instant now) {
    VfioVmStatus s = base(vm, entry, null, vm.getStatus());
    String message = "node " + entry.node() + " is no longer in the cluster and its node pod is gone; delete and "
        + "re-create the VfioVm to place it elsewhere (its host UID is kept until then)";
    s.setPhase(Phase.Failed);
    s.setMessage(message);
    s.setConditions(conditions(vm, now, uidAssigned(entry),
        c(VfioVmStatus.PLACED, FALSE, "NodeGone", message),
        c(VfioVmStatus.MEMLOCK_LIMITED, UNKNOWN, "NodeGone", message),
        c(VfioVmStatus.DMA_MAPPED, FALSE, "NodeGone", message),
        c(VfioVmStatus.READY, FALSE, "NodeGone", message)));
    return s;
  }

  /** Deleting: the node pod is being stopped; UID and budget stay held until it is gone. */
  public static VfioVmStatus terminating(VfioVm vm, Ledger.Entry entry, String podKey, Instant now) {
    VfioVmStatus previous = vm.getStatus();
    VfioVmStatus s = base(vm, entry, podKey, previous);
    s.setPhase(Phase.Terminating);
    String message = "deleting node pod " + podKey + "; host UID and node budget are released once it is gone";
    s.setMessage(message);
    List<Condition> desired = new ArrayList<>(previous == null ? List.of() : previous.getConditions());
    desired.removeIf(cond -> VfioVmStatus.READY.equals(cond.getType()));
    desired.add(c(VfioVmStatus.READY, FALSE, "Terminating", message));
    s.setConditions(merge(previous == null ? List.of() : previous.getConditions(), ordered(desired), vm, now));
    return s;
  }

  /** The node pod exists: its agent's report (annotation, else termination message) drives the status. */
  public static VfioVmStatus fromPod(VfioVm vm, Ledger.Entry entry, String podKey, Pod pod, Instant now) {
    VfioVmStatus s = fromPodReport(vm, entry, podKey, pod, now);
    s.setConsole(NodePodShape.console(podKey, NodePodShape.consoleOf(pod)));
    return s;
  }

  private static VfioVmStatus fromPodReport(VfioVm vm, Ledger.Entry entry, String podKey, Pod pod, Instant now) {
    Optional<ContainerStateTerminated> terminated = terminated(pod);
    NodeAgentReport report = terminated
        .map(t -> parse(t.getMessage()))
        .filter(Objects::nonNull)
        .orElseGet(() -> report(pod));
    if (report == null || report.getPhase() == null) {
      if (terminated.isPresent()) {
        return agentExited(vm, entry, podKey, terminated.get(), null, now);
      }
      if (pod.getStatus() != null && "Failed".equals(pod.getStatus().getPhase())) {
        return podRejected(vm, entry, podKey, pod, now);
      }
      return placed(vm, entry, podKey, pod, now);
    }
    if (terminated.isPresent() && (report.getPhase() == AgentPhase.Starting || report.getPhase() == AgentPhase.Running)) {
      return agentExited(vm, entry, podKey, terminated.get(), report, now);
    }
    VfioVmStatus s = base(vm, entry, podKey, null);
    copyReport(report, s);
    String limit = Quantities.human(entry.memlockLimitBytes());
    switch (report.getPhase()) {
      case Starting -> {
        s.setPhase(Phase.Starting);
        s.setMessage("node agent is starting the VM on " + entry.node());
        s.setConditions(conditions(vm, now, uidAssigned(entry), placedCondition(entry),
            c(VfioVmStatus.MEMLOCK_LIMITED, UNKNOWN, "Starting", "the node agent is starting the VM process"),
            c(VfioVmStatus.DMA_MAPPED, UNKNOWN, "Starting", "the node agent is starting the VM process"),
            c(VfioVmStatus.READY, FALSE, "Starting", "the node agent is starting the VM process")));
      }
      case Running -> {
        s.setPhase(Phase.Running);
        s.setMessage("running on " + entry.node() + " as host UID " + entry.hostUid() + ", "
            + bytes(report.getPinnedBytes()) + " pinned of a " + limit + " memlock limit");
        s.setConditions(conditions(vm, now, uidAssigned(entry), placedCondition(entry),
            c(VfioVmStatus.MEMLOCK_LIMITED, TRUE, "LimitApplied", "RLIMIT_MEMLOCK "
                + bytes(report.getMemlockLimitBytes() != null ? report.getMemlockLimitBytes() : entry.memlockLimitBytes())
                + " applied to VM process" + (report.getVmPid() == null ? "" : " " + report.getVmPid())
                + " running as host UID " + entry.hostUid()),
            c(VfioVmStatus.DMA_MAPPED, TRUE, "Mapped", bytes(report.getPinnedBytes()) + " of guest memory pinned via "
                + report.getDmaBackend() + ", accounted " + report.getAccounting()),
            c(VfioVmStatus.READY, TRUE, "Running", "the VM is running")));
      }
      case Failed -> {
        String reason = reason(report.getError(), "AgentFailed");
        String message = report.getMessage() != null ? report.getMessage() : "the node agent failed";
        s.setPhase(Phase.Failed);
        s.setMessage(reason + ": " + message);
        s.setConditions(conditions(vm, now, uidAssigned(entry), placedCondition(entry),
            report.getMemlockLimitBytes() != null
                ? c(VfioVmStatus.MEMLOCK_LIMITED, TRUE, "LimitApplied",
                    "RLIMIT_MEMLOCK " + bytes(report.getMemlockLimitBytes()) + " applied")
                : c(VfioVmStatus.MEMLOCK_LIMITED, FALSE, reason, message),
            c(VfioVmStatus.DMA_MAPPED, FALSE, reason, message),
            c(VfioVmStatus.READY, FALSE, reason, message)));
      }
      case Stopped -> {
        String message = "the node agent stopped and released every pin"
            + (report.getMessage() == null ? "" : " (" + report.getMessage() + ")")
            + "; delete and re-create the VfioVm to start it again";
        // a clean stop (the guest powered off) is no failure: KubeVirt's Succeeded
        s.setPhase(Phase.Stopped);
        s.setMessage(message);
        s.setConditions(conditions(vm, now, uidAssigned(entry), placedCondition(entry),
            c(VfioVmStatus.MEMLOCK_LIMITED, FALSE, "AgentStopped", message),
            c(VfioVmStatus.DMA_MAPPED, FALSE, "AgentStopped", message),
            c(VfioVmStatus.READY, FALSE, "AgentStopped", message)));
      }
    }
    return s;
  }

  private static VfioVmStatus agentExited(VfioVm vm, Ledger.Entry entry, String podKey,
      ContainerStateTerminated terminated, NodeAgentReport last, Instant now) {
    VfioVmStatus s = base(vm, entry, podKey, null);
    if (last != null) {
      copyReport(last, s);
    }
    String message = "node agent in pod " + podKey + " exited with code " + terminated.getExitCode()
        + (terminated.getReason() == null ? "" : " (" + terminated.getReason() + ")")
        + (last == null ? " without a report" : " after reporting " + last.getPhase())
        + "; see its log, then delete and re-create the VfioVm";
    s.setPhase(Phase.Failed);
    s.setMessage(message);
    s.setConditions(conditions(vm, now, uidAssigned(entry), placedCondition(entry),
        c(VfioVmStatus.MEMLOCK_LIMITED, UNKNOWN, "AgentExited", message),
        c(VfioVmStatus.DMA_MAPPED, FALSE, "AgentExited", message),
        c(VfioVmStatus.READY, FALSE, "AgentExited", message)));
    return s;
  }

  /** The kubelet refused the pod before the agent ran (e.g. OutOfmemory, NodeAffinity). */
  private static VfioVmStatus podRejected(VfioVm vm, Ledger.Entry entry, String podKey, Pod pod, Instant now) {
    VfioVmStatus s = base(vm, entry, podKey, null);
    Optional<String> init = failedInit(pod);
    String reason = reason(pod.getStatus().getReason(), init.isPresent() ? "InitContainerFailed" : "PodFailed");
    String message = "node pod " + podKey + " failed before the node agent ran: "
        + (pod.getStatus().getMessage() != null ? pod.getStatus().getMessage()
            : init.isPresent() ? init.get() : reason)
        + "; fix the node, then delete the pod to retry or re-create the VfioVm";
    s.setPhase(Phase.Failed);
    s.setMessage(message);
    s.setConditions(conditions(vm, now, uidAssigned(entry), placedCondition(entry),
        c(VfioVmStatus.MEMLOCK_LIMITED, UNKNOWN, reason, message),
        c(VfioVmStatus.DMA_MAPPED, FALSE, reason, message),
        c(VfioVmStatus.READY, FALSE, reason, message)));
    return s;
  }

  /** Why a container waits (init containers first: e.g. ErrImagePull of the boot image). */
  private static Optional<String> containerWaiting(Pod pod) {
    if (pod.getStatus() == null) {
      return Optional.empty();
    }
    List<ContainerStatus> statuses = new ArrayList<>();
    if (pod.getStatus().getInitContainerStatuses() != null) {
      statuses.addAll(pod.getStatus().getInitContainerStatuses());
    }
    int inits = statuses.size();
    if (pod.getStatus().getContainerStatuses() != null) {
      statuses.addAll(pod.getStatus().getContainerStatuses());
    }
    List<String> waiting = new ArrayList<>();
    for (int i = 0; i < statuses.size(); i++) {
      ContainerStatus cs = statuses.get(i);
      if (cs.getState() != null && cs.getState().getWaiting() != null && cs.getState().getWaiting().getReason() != null
          && !"PodInitializing".equals(cs.getState().getWaiting().getReason())) {
        waiting.add((i < inits ? "init container " + cs.getName() + ": " : "") + cs.getState().getWaiting().getReason()
            + (cs.getState().getWaiting().getMessage() == null ? "" : ": " + cs.getState().getWaiting().getMessage()));
      }
    }
    return waiting.stream().findFirst();
  }

  /** An init container that failed (e.g. a boot file missing from the boot image), with its last words. */
  private static Optional<String> failedInit(Pod pod) {
    if (pod.getStatus() == null || pod.getStatus().getInitContainerStatuses() == null) {
      return Optional.empty();
    }
    return pod.getStatus().getInitContainerStatuses().stream()
        .filter(cs -> cs.getState() != null && cs.getState().getTerminated() != null
            && !Integer.valueOf(0).equals(cs.getState().getTerminated().getExitCode()))
        .map(cs -> "init container " + cs.getName() + " exited with code " + cs.getState().getTerminated().getExitCode()
            + (cs.getState().getTerminated().getMessage() == null ? ""
                : ": " + cs.getState().getTerminated().getMessage().strip()))
        .findFirst();
  }

  /** The agent's latest report from its pod annotation, or null. */
  public static NodeAgentReport report(Pod pod) {
    Map<String, String> annotations = pod == null ? null : pod.getMetadata().getAnnotations();
    return annotations == null ? null : parse(annotations.get(NodeAgentReport.POD_ANNOTATION));
  }

  static NodeAgentReport parse(String json) {
    if (json == null || json.isBlank()) {
      return null;
    }
    try {
      return JSON.readValue(json, NodeAgentReport.class);
    } catch (JsonProcessingException e) {
      return null;
    }
  }

  private static Optional<ContainerStateTerminated> terminated(Pod pod) {
    if (pod == null || pod.getStatus() == null || pod.getStatus().getContainerStatuses() == null) {
      return Optional.empty();
    }
    return pod.getStatus().getContainerStatuses().stream()
        .filter(cs -> NodePodShape.CONTAINER.equals(cs.getName()))
        .map(ContainerStatus::getState)
        .filter(state -> state != null && state.getTerminated() != null)
        .map(state -> state.getTerminated())
        .findFirst();
  }

  private static void copyReport(NodeAgentReport report, VfioVmStatus s) {
    s.setPinnedBytes(report.getPinnedBytes());
    s.setAccounting(report.getAccounting());
    s.setDmaBackend(report.getDmaBackend());
    s.setDevices(report.getDevices().stream()
        .map(d -> new DeviceStatus(d.getPciAddress(), d.getCdev(), d.isAttached()))
        .toList());
  }

  private static VfioVmStatus base(VfioVm vm, Ledger.Entry entry, String podKey, VfioVmStatus previous) {
    VfioVmStatus s = new VfioVmStatus();
    s.setObservedGeneration(vm.getMetadata().getGeneration());
    if (entry != null) {
      s.setHostUid(entry.hostUid());
      s.setNodeName(entry.node());
      s.setMemlockLimitBytes(entry.memlockLimitBytes());
    }
    s.setPodName(podKey);
    if (previous != null) {
      s.setConsole(previous.getConsole());
      s.setPinnedBytes(previous.getPinnedBytes());
      s.setAccounting(previous.getAccounting());
      s.setDmaBackend(previous.getDmaBackend());
      s.setDevices(previous.getDevices());
    }
    return s;
  }

  private static Condition uidAssigned(Ledger.Entry entry) {
    return c(VfioVmStatus.UID_ASSIGNED, TRUE, "Assigned", "host UID " + entry.hostUid() + " is this VM's alone");
  }

  private static Condition placedCondition(Ledger.Entry entry) {
    return c(VfioVmStatus.PLACED, TRUE, "Placed", "placed on node " + entry.node() + " with a memlock limit of "
        + Quantities.human(entry.memlockLimitBytes()) + " counted against its budget");
  }

  private static String bytes(Long n) {
    return n == null ? "?" : Quantities.human(n);
  }

  private static String reason(String error, String fallback) {
    return error != null && error.matches("[A-Za-z][A-Za-z0-9_]*") ? error : fallback;
  }

  static Condition c(String type, String status, String reason, String message) {
    return new ConditionBuilder().withType(type).withStatus(status).withReason(reason).withMessage(message).build();
  }

  private static List<Condition> conditions(VfioVm vm, Instant now, Condition... desired) {
    List<Condition> previous = vm.getStatus() == null ? List.of() : vm.getStatus().getConditions();
    return merge(previous, List.of(desired), vm, now);
  }

  private static List<Condition> ordered(List<Condition> conditions) {
    List<String> order = List.of(VfioVmStatus.UID_ASSIGNED, VfioVmStatus.PLACED, VfioVmStatus.MEMLOCK_LIMITED,
        VfioVmStatus.DMA_MAPPED, VfioVmStatus.READY);
    return conditions.stream().sorted((a, b) -> order.indexOf(a.getType()) - order.indexOf(b.getType())).toList();
  }

  /** Desired conditions with observedGeneration set and lastTransitionTime kept while the status holds. */
  static List<Condition> merge(List<Condition> previous, List<Condition> desired, VfioVm vm, Instant now) {
    String timestamp = now.truncatedTo(ChronoUnit.SECONDS).toString();
    List<Condition> out = new ArrayList<>();
    for (Condition d : desired) {
      Condition old = previous.stream().filter(p -> d.getType().equals(p.getType())).findFirst().orElse(null);
      String since = old != null && d.getStatus().equals(old.getStatus()) && old.getLastTransitionTime() != null
          ? old.getLastTransitionTime()
          : timestamp;
      out.add(new ConditionBuilder(d)
          .withObservedGeneration(vm.getMetadata().getGeneration())
          .withLastTransitionTime(since)
          .build());
    }
    return out;
  }

  /** The condition of that type, or null. */
  public static Condition condition(VfioVmStatus status, String type) {
    return status == null ? null
        : status.getConditions().stream().filter(c -> type.equals(c.getType())).findFirst().orElse(null);
  }
}
