package dev.vfiovm.controller;

import dev.vfiovm.api.Quantities;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vfiovm.api.DeviceState;
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
        c(VfioVmStatus.UID_ASSIGNED, FALSE, Reason.InvalidSpec.name(), validation.message()),
        c(VfioVmStatus.PLACED, FALSE, Reason.InvalidSpec.name(), "not placed: the spec is invalid"),
        c(VfioVmStatus.MEMLOCK_LIMITED, UNKNOWN, Reason.InvalidSpec.name(), "no memlock limit: the spec is invalid"),
        c(VfioVmStatus.DMA_MAPPED, UNKNOWN, Reason.InvalidSpec.name(), "nothing mapped: the spec is invalid"),
        c(VfioVmStatus.READY, FALSE, Reason.InvalidSpec.name(), validation.message())));
    return s;
  }

  /** No host UID left. */
  public static VfioVmStatus uidExhausted(VfioVm vm, String problem, Instant now) {
    VfioVmStatus s = base(vm, null, null, null);
    s.setPhase(Phase.Pending);
    s.setMessage(problem);
    s.setConditions(conditions(vm, now,
        c(VfioVmStatus.UID_ASSIGNED, FALSE, Reason.UidRangeExhausted.name(), problem),
        c(VfioVmStatus.PLACED, FALSE, Reason.WaitingForUid.name(), "placement waits for a host UID"),
        c(VfioVmStatus.MEMLOCK_LIMITED, UNKNOWN, Reason.NotStarted.name(), "the node agent has not started"),
        c(VfioVmStatus.DMA_MAPPED, UNKNOWN, Reason.NotStarted.name(), "the node agent has not started"),
        c(VfioVmStatus.READY, FALSE, Reason.UidRangeExhausted.name(), problem)));
    return s;
  }

  /**
   * No node: Pending (waits) or Failed (the user must change something). A waiting VM holds no UID (entry
   * null): the UID comes with the node.
   */
  public static VfioVmStatus unplaced(VfioVm vm, Ledger.Entry entry, Placement.Decision decision, Instant now) {
    VfioVmStatus s = base(vm, entry, null, null);
    s.setPhase(decision.reason().terminal ? Phase.Failed : Phase.Pending);
    s.setMessage(decision.message());
    s.setConditions(conditions(vm, now,
        entry != null ? uidAssigned(entry) : c(VfioVmStatus.UID_ASSIGNED, FALSE, Reason.WaitingForPlacement.name(),
            "a host UID is handed out together with a node; none is held while the VM waits"),
        c(VfioVmStatus.PLACED, FALSE, Reason.of(decision.reason()).name(), decision.message()),
        c(VfioVmStatus.MEMLOCK_LIMITED, UNKNOWN, Reason.NotStarted.name(), "the node agent has not started"),
        c(VfioVmStatus.DMA_MAPPED, UNKNOWN, Reason.NotStarted.name(), "the node agent has not started"),
        c(VfioVmStatus.READY, FALSE, Reason.of(decision.reason()).name(), decision.message())));
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
        c(VfioVmStatus.MEMLOCK_LIMITED, UNKNOWN, Reason.AgentNotReported.name(), waiting),
        c(VfioVmStatus.DMA_MAPPED, UNKNOWN, Reason.AgentNotReported.name(), waiting),
        c(VfioVmStatus.READY, FALSE, Reason.AgentNotReported.name(), waiting)));
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
        c(VfioVmStatus.PLACED, FALSE, Reason.NodeGone.name(), message),
        c(VfioVmStatus.MEMLOCK_LIMITED, UNKNOWN, Reason.NodeGone.name(), message),
        c(VfioVmStatus.DMA_MAPPED, FALSE, Reason.NodeGone.name(), message),
        c(VfioVmStatus.READY, FALSE, Reason.NodeGone.name(), message)));
    return s;
  }

  /**
   * The VM's node cannot run its node pod now (NotReady, an untolerated NoExecute taint) and the pod is being
   * evicted or gone: Failed with the node's reason; it is started there again once the node can run it.
   */
  public static VfioVmStatus nodeUnusable(VfioVm vm, Ledger.Entry entry, String podKey, Pod evicted,
      NodeBudget.Unusable why, Instant now) {
    VfioVmStatus s = base(vm, entry, evicted == null ? null : podKey, vm.getStatus());
    String reason = Reason.of(why.reason()).name();
    String message = why.message() + "; its node pod " + podKey + (evicted == null ? " is gone"
        : " is being evicted (the VM's processes there end when the node's kubelet ends the pod)")
        + "; the VM is started on node " + entry.node() + " again once the node can run it (host UID "
        + entry.hostUid() + " and its budget stay held), or delete and re-create the VfioVm to place it elsewhere";
    return failedWhilePlaced(s, vm, entry, reason, message, UNKNOWN, now);
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
    desired.add(c(VfioVmStatus.READY, FALSE, Reason.Terminating.name(), message));
    s.setConditions(merge(previous == null ? List.of() : previous.getConditions(), ordered(desired), vm, now));
    return s;
  }

  /** The condition type that says whether every device of spec.devices is attached (VMs with devices). */
  public static final String DEVICES_READY = "DevicesReady";

  /** What an attachment or detach pod shows of itself: its phase and, ended, its container's last words. */
  record DevicePod(String name, String phase, String message, boolean deleting) {}

  /**
   * The per-device status of a placed VM with a node pod (hot-plug, issue 14): the agent's report of each device
   * (state, reason, message) merged with the operator's view - Waiting devices of the plan, devices admitted whose
   * attachment pod has not reached the agent yet (Plugging), devices removed from the spec (Unplugging; a boot-time
   * one stays counted as the VM's until its node pod ends, and says so) - in spec order, then the leaving ones.
   *
   * @param reported the agent's devices (from its report)
   * @param running whether the agent reports the VM Running
   * @param devicePods device -> its attachment or detach pod
   */
  static List<DeviceStatus> devices(List<DeviceStatus> reported, Hotplug.Plan plan, List<String> desired,
      List<String> boot, boolean running, Map<String, DevicePod> devicePods, String podKey) {
    Map<String, DeviceStatus> byAddress = new java.util.LinkedHashMap<>();
    reported.forEach(d -> byAddress.put(d.getPciAddress(), DeviceStatus.copyOf(d)));
    // an agent that lists no device reports Running only with every boot device present
    boolean bootImplied = running && reported.isEmpty();
    Map<String, Hotplug.Waiting> waiting = new java.util.HashMap<>();
    plan.waiting().forEach(w -> waiting.put(w.device(), w));
    List<DeviceStatus> out = new ArrayList<>();
    java.util.Set<String> listed = new java.util.HashSet<>();
    for (String d : desired) {
      DeviceStatus s = byAddress.get(d);
      DevicePod pod = devicePods.get(d);
      boolean hot = plan.hotplugged().contains(d);
      if (s == null) {
        s = new DeviceStatus(d, null, false);
        if (waiting.containsKey(d)) {
          s.setState(DeviceState.Waiting);
          s.setReason(waiting.get(d).reason().name());
          s.setMessage(waiting.get(d).message());
        } else if (hot && pod != null && "Failed".equals(pod.phase())) {
          s.setState(DeviceState.Failed);
          s.setReason(Reason.DevicePlugFailed.name());
          s.setMessage("attachment pod " + pod.name() + " failed" + (pod.message() == null ? "" : ": " + pod.message().strip())
              + "; remove the device from spec.devices (and add it again to retry)");
        } else if (hot) {
          s.setState(DeviceState.Plugging);
          s.setReason(Reason.DevicePlugging.name());
          s.setMessage(pod == null ? "creating its attachment pod" : "attachment pod " + pod.name() + " is "
              + (pod.phase() == null ? "not yet started by the kubelet" : pod.phase()) + "; waiting for the node agent");
        } else if (bootImplied) {
          s.setAttached(true);
          s.setState(DeviceState.Attached);
        } else if (!running) {
          s.setState(DeviceState.Plugging);
          s.setMessage("assigned at boot: attached as the VM starts");
        } else {
          s.setState(DeviceState.Plugging);
          s.setMessage("not reported by the node agent yet");
        }
      } else if (s.getState() == null) {
        s.setState(s.isAttached() ? DeviceState.Attached : DeviceState.Plugging);
      }
      if (hot) {
        s.setHotplugged(true);
      }
      out.add(s);
      listed.add(d);
    }
    java.util.Set<String> leaving = new java.util.LinkedHashSet<>();
    boot.stream().filter(d -> !listed.contains(d)).forEach(leaving::add);
    plan.hotplugged().stream().filter(d -> !listed.contains(d)).forEach(leaving::add);
    plan.released().forEach(leaving::remove);
    for (String d : leaving) {
      DeviceStatus s = byAddress.containsKey(d) ? byAddress.get(d) : new DeviceStatus(d, null, false);
      DevicePod pod = devicePods.get(d);
      boolean present = byAddress.containsKey(d) || (bootImplied && boot.contains(d));
      if (boot.contains(d)) {
        String held = "; the kubelet keeps a device assigned at boot allocated to node pod " + podKey
            + " until it ends, so it stays counted as this VM's until then";
        if (present && s.getState() != DeviceState.Failed) {
          s.setState(DeviceState.Unplugging);
          s.setReason(Reason.DeviceUnplugging.name());
          s.setMessage("removed from spec.devices: " + (pod == null ? "creating its detach pod"
              : "detach pod " + pod.name() + " is " + (pod.phase() == null ? "Pending" : pod.phase())) + held);
        } else if (!present) {
          s.setState(null);
          s.setAttached(false);
          s.setReason(Reason.DeviceHeldByNodePod.name());
          s.setMessage("unplugged from the guest" + held);
        }
      } else {
        s.setHotplugged(true);
        if (s.getState() != DeviceState.Failed) {
          s.setState(DeviceState.Unplugging);
          s.setReason(Reason.DeviceUnplugging.name());
          s.setMessage("removed from spec.devices: " + (pod == null ? "its attachment pod is gone"
              : "attachment pod " + pod.name() + " is being deleted") + "; device, budget and limit are released once"
              + " the node agent reports it gone and the pod is gone");
        }
      }
      out.add(s);
    }
    return out;
  }

  /**
   * {@value #DEVICES_READY}: True once every device of spec.devices is Attached and none is leaving; else False with
   * the first reason that holds one back (a failure, then a wait, then a plug or unplug under way).
   */
  static Condition devicesReady(List<DeviceStatus> devices, List<String> desired) {
    List<DeviceStatus> notReady = devices.stream()
        .filter(d -> !(desired.contains(d.getPciAddress()) && d.getState() == DeviceState.Attached))
        .filter(d -> !(d.getState() == null && Reason.DeviceHeldByNodePod.name().equals(d.getReason())))
        .toList();
    if (notReady.isEmpty()) {
      return c(DEVICES_READY, TRUE, Reason.DevicesAttached.name(), desired.isEmpty() ? "no devices"
          : "all " + desired.size() + " devices attached: " + String.join(", ", desired));
    }
    DeviceStatus first = notReady.stream().filter(d -> d.getState() == DeviceState.Failed).findFirst()
        .or(() -> notReady.stream().filter(d -> d.getState() == DeviceState.Waiting).findFirst())
        .orElse(notReady.get(0));
    String reason = first.getReason() != null && first.getReason().matches("[A-Za-z][A-Za-z0-9_]*") ? first.getReason()
        : first.getState() == DeviceState.Unplugging ? Reason.DeviceUnplugging.name()
        : first.getState() == DeviceState.Failed ? Reason.DevicePlugFailed.name() : Reason.DevicePlugging.name();
    String message = notReady.stream().map(d -> d.getPciAddress() + " " + (d.getState() == null ? "detached" : d.getState())
        + (d.getMessage() == null ? "" : ": " + d.getMessage())).collect(java.util.stream.Collectors.joining("; "));
    return c(DEVICES_READY, FALSE, reason, message);
  }

  /** The status with the device view and {@value #DEVICES_READY} (after the five, before SpecApplied). */
  static VfioVmStatus withDevices(VfioVm vm, VfioVmStatus status, List<DeviceStatus> devices, List<String> desired,
      Instant now) {
    status.setDevices(new ArrayList<>(devices));
    List<Condition> conditions = new ArrayList<>(status.getConditions());
    List<Condition> previous = vm.getStatus() == null ? List.of() : vm.getStatus().getConditions();
    conditions.addAll(merge(previous, List.of(devicesReady(devices, desired)), vm, now));
    status.setConditions(conditions);
    return status;
  }

  /** The condition type that says a spec edited after placement is not applied (present only then). */
  public static final String SPEC_APPLIED = "SpecApplied";

  /**
   * The status with the spec drift reported (null: none): the message leads with it and a condition
   * {@value #SPEC_APPLIED}=False (reason SpecChangedAfterPlacement) follows the five.
   */
  public static VfioVmStatus withDrift(VfioVm vm, VfioVmStatus status, String drift, Instant now) {
    if (drift == null) {
      return status;
    }
    status.setMessage(drift + "; " + status.getMessage());
    List<Condition> conditions = new ArrayList<>(status.getConditions());
    List<Condition> previous = vm.getStatus() == null ? List.of() : vm.getStatus().getConditions();
    conditions.addAll(merge(previous,
        List.of(c(SPEC_APPLIED, FALSE, Reason.SpecChangedAfterPlacement.name(), drift)), vm, now));
    status.setConditions(conditions);
    return status;
  }

  /**
   * A reconcile failed (the operator retries): the last status with the error as message and as the Ready
   * condition (False, ReconcileError); the other conditions stay as they were.
   */
  public static VfioVmStatus reconcileError(VfioVm vm, String cause, Instant now) {
    VfioVmStatus previous = vm.getStatus();
    VfioVmStatus s = base(vm, null, previous == null ? null : previous.getPodName(), previous);
    if (previous != null) {
      s.setPhase(previous.getPhase());
      s.setHostUid(previous.getHostUid());
      s.setNodeName(previous.getNodeName());
      s.setMemlockLimitBytes(previous.getMemlockLimitBytes());
    }
    if (s.getPhase() == null) {
      s.setPhase(Phase.Pending);
    }
    String message = "reconcile failed, retrying: " + cause;
    s.setMessage(message);
    List<Condition> desired = new ArrayList<>(previous == null ? List.of() : previous.getConditions());
    desired.removeIf(cond -> VfioVmStatus.READY.equals(cond.getType()));
    desired.add(c(VfioVmStatus.READY, FALSE, Reason.ReconcileError.name(), message));
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
            c(VfioVmStatus.MEMLOCK_LIMITED, UNKNOWN, Reason.Starting.name(), "the node agent is starting the VM process"),
            c(VfioVmStatus.DMA_MAPPED, UNKNOWN, Reason.Starting.name(), "the node agent is starting the VM process"),
            c(VfioVmStatus.READY, FALSE, Reason.Starting.name(), "the node agent is starting the VM process")));
      }
      case Running -> {
        s.setPhase(Phase.Running);
        s.setMessage("running on " + entry.node() + " as host UID " + entry.hostUid() + ", "
            + bytes(report.getPinnedBytes()) + " pinned of a " + limit + " memlock limit");
        s.setConditions(conditions(vm, now, uidAssigned(entry), placedCondition(entry),
            c(VfioVmStatus.MEMLOCK_LIMITED, TRUE, Reason.LimitApplied.name(), "RLIMIT_MEMLOCK "
                + bytes(report.getMemlockLimitBytes() != null ? report.getMemlockLimitBytes() : entry.memlockLimitBytes())
                + " applied to VM process" + (report.getVmPid() == null ? "" : " " + report.getVmPid())
                + " running as host UID " + entry.hostUid()),
            c(VfioVmStatus.DMA_MAPPED, TRUE, Reason.Mapped.name(), bytes(report.getPinnedBytes()) + " of guest memory pinned via "
                + report.getDmaBackend() + ", accounted " + report.getAccounting()),
            c(VfioVmStatus.READY, TRUE, Reason.Running.name(), "the VM is running")));
      }
      case Failed -> {
        String reason = reason(report.getError(), Reason.AgentFailed.name());
        String message = report.getMessage() != null ? report.getMessage() : "the node agent failed";
        s.setPhase(Phase.Failed);
        s.setMessage(reason + ": " + message);
        s.setConditions(conditions(vm, now, uidAssigned(entry), placedCondition(entry),
            report.getMemlockLimitBytes() != null
                ? c(VfioVmStatus.MEMLOCK_LIMITED, TRUE, Reason.LimitApplied.name(),
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
            c(VfioVmStatus.MEMLOCK_LIMITED, FALSE, Reason.AgentStopped.name(), message),
            c(VfioVmStatus.DMA_MAPPED, FALSE, Reason.AgentStopped.name(), message),
            c(VfioVmStatus.READY, FALSE, Reason.AgentStopped.name(), message)));
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
    return failedWhilePlaced(s, vm, entry, Reason.AgentExited.name(), message, FALSE, now);
  }

  /** The kubelet refused the pod before the agent ran (e.g. OutOfmemory, NodeAffinity). */
  private static VfioVmStatus podRejected(VfioVm vm, Ledger.Entry entry, String podKey, Pod pod, Instant now) {
    VfioVmStatus s = base(vm, entry, podKey, null);
    Optional<String> init = failedInit(pod);
    String reason = reason(pod.getStatus().getReason(), init.isPresent() ? Reason.InitContainerFailed.name() : Reason.PodFailed.name());
    String message = "node pod " + podKey + " failed before the node agent ran: "
        + (pod.getStatus().getMessage() != null ? pod.getStatus().getMessage()
            : init.isPresent() ? init.get() : reason)
        + "; fix the node, then delete the pod to retry or re-create the VfioVm";
    return failedWhilePlaced(s, vm, entry, reason, message, FALSE, now);
  }

  /**
   * Failed while placed, with no word from the agent on its limit: one reason and message on every condition
   * after Placed; {@code dmaMapped} says whether anything may have been mapped (UNKNOWN) or nothing is (FALSE).
   */
  private static VfioVmStatus failedWhilePlaced(VfioVmStatus s, VfioVm vm, Ledger.Entry entry, String reason,
      String message, String dmaMapped, Instant now) {
    s.setPhase(Phase.Failed);
    s.setMessage(message);
    s.setConditions(conditions(vm, now, uidAssigned(entry), placedCondition(entry),
        c(VfioVmStatus.MEMLOCK_LIMITED, UNKNOWN, reason, message),
        c(VfioVmStatus.DMA_MAPPED, dmaMapped, reason, message),
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
    s.copyMeasuredFrom(report);
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
      s.copyMeasuredFrom(previous);
    }
    return s;
  }

  private static Condition uidAssigned(Ledger.Entry entry) {
    return c(VfioVmStatus.UID_ASSIGNED, TRUE, Reason.Assigned.name(), "host UID " + entry.hostUid() + " is this VM's alone");
  }

  private static Condition placedCondition(Ledger.Entry entry) {
    return c(VfioVmStatus.PLACED, TRUE, Reason.Placed.name(), "placed on node " + entry.node() + " with a memlock limit of "
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
        VfioVmStatus.DMA_MAPPED, VfioVmStatus.READY, DEVICES_READY, SPEC_APPLIED);
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

  /**
   * How long a status write may wait (ms), 0 to write now. A VM on its way to Running passes through states a
   * user sees only for an instant: its node pod taken by the kubelet before the agent's first report (Placed,
   * only the pod's phase reworded), and the agent's Starting. Their writes wait up to {@code settleMillis} from
   * {@code staleSince} (since when the desired status has had its phase): a state that is replaced
   * within that time by one written at once (Running, Failed, ...) costs no write of its own, a state that lasts
   * is written once the time is up. Everything else - a new phase other than Starting, a refusal, a failure,
   * spec drift, a changed UID or node - is written at once.
   */
  public static long settleDelayMillis(VfioVmStatus written, VfioVmStatus desired, Instant staleSince, Instant now,
      long settleMillis) {
    if (written == null || desired == null || !passing(written, desired)) {
      return 0;
    }
    long waited = staleSince == null ? 0 : Math.max(0, now.toEpochMilli() - staleSince.toEpochMilli());
    return Math.max(0, settleMillis - waited);
  }

  /** Whether {@code desired} is a passing state after {@code written} (see {@link #settleDelayMillis}). */
  static boolean passing(VfioVmStatus written, VfioVmStatus desired) {
    if (condition(desired, SPEC_APPLIED) != null || desired.getHostUid() == null
        || !Objects.equals(written.getHostUid(), desired.getHostUid())
        || !Objects.equals(written.getNodeName(), desired.getNodeName())) {
      return false;
    }
    Phase from = written.getPhase();
    Phase to = desired.getPhase();
    return from == Phase.Placed && (to == Phase.Starting || to == Phase.Placed);
  }

  /** The condition of that type, or null. */
  public static Condition condition(VfioVmStatus status, String type) {
    return status == null ? null
        : status.getConditions().stream().filter(c -> type.equals(c.getType())).findFirst().orElse(null);
  }
}
