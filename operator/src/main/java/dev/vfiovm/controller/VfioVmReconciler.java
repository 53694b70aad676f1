package dev.vfiovm.controller;

import dev.vfiovm.api.Phase;
import dev.vfiovm.api.VfioVm;
import dev.vfiovm.api.VfioVmStatus;
import io.fabric8.kubernetes.api.model.Condition;
import io.fabric8.kubernetes.api.model.Node;
import io.fabric8.kubernetes.api.model.ObjectMetaBuilder;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.utils.Serialization;
import io.javaoperatorsdk.operator.api.config.informer.InformerEventSourceConfiguration;
import io.javaoperatorsdk.operator.api.reconciler.Cleaner;
import io.javaoperatorsdk.operator.api.reconciler.Context;
import io.javaoperatorsdk.operator.api.reconciler.ControllerConfiguration;
import io.javaoperatorsdk.operator.api.reconciler.DeleteControl;
import io.javaoperatorsdk.operator.api.reconciler.ErrorStatusUpdateControl;
import io.javaoperatorsdk.operator.api.reconciler.EventSourceContext;
import io.javaoperatorsdk.operator.api.reconciler.PrimaryUpdateAndCacheUtils;
import io.javaoperatorsdk.operator.api.reconciler.Reconciler;
import io.javaoperatorsdk.operator.api.reconciler.UpdateControl;
import io.javaoperatorsdk.operator.processing.event.ResourceID;
import io.javaoperatorsdk.operator.processing.event.source.EventSource;
import io.javaoperatorsdk.operator.processing.event.source.IndexerResourceCache;
import io.javaoperatorsdk.operator.processing.event.source.informer.InformerEventSource;
import java.time.Instant;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.stream.Collectors;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Reconciles a VfioVm: validate -> host UID + node from the {@link Ledger} (recorded in status before any
 * pod exists) -> node pod in the operator's namespace -> status from the agent's report. On deletion the
 * node pod is deleted and the UID and budget are released only once it is gone.
 */
@ControllerConfiguration(name = VfioVmReconciler.NAME)
public class VfioVmReconciler implements Reconciler<VfioVm>, Cleaner<VfioVm> {
  public static final String NAME = "vfiovm";
  public static final String FIELD_MANAGER = "vfiovm-operator";
  private static final Logger log = LoggerFactory.getLogger(VfioVmReconciler.class);
  private static final Set<String> NOT_REFUSALS =
      Set.of("Running", "Starting", "AgentNotReported", "Terminating", "Assigned", "Placed", "AgentStopped");

  private final OperatorSettings settings;
  private final Ledger ledger;
  private final EventRecorder events;
  private final Retrigger retrigger = new Retrigger();
  /** VMs waiting for a UID, budget or a node: woken when a node changes or something is released. */
  private final Set<ResourceID> waiting = ConcurrentHashMap.newKeySet();
  private volatile InformerEventSource<Pod, VfioVm> pods;
  private volatile InformerEventSource<Node, VfioVm> nodes;
  private volatile IndexerResourceCache<VfioVm> vms;
  private boolean seeded;

  public VfioVmReconciler(KubernetesClient client, OperatorSettings settings) {
    this.settings = settings;
    this.ledger = new Ledger(settings.uidRange());
    this.events = new EventRecorder(client);
  }

  @Override
  public List<EventSource<?, VfioVm>> prepareEventSources(EventSourceContext<VfioVm> context) {
    vms = context.getPrimaryCache();
    pods = new InformerEventSource<>(
        InformerEventSourceConfiguration.from(Pod.class, VfioVm.class)
            .withName("node-pods")
            .withNamespaces(settings.nodePodNamespace())
            .withLabelSelector(NodePodShape.SELECTOR)
            .withSecondaryToPrimaryMapper(VfioVmReconciler::vmOfPod)
            .withItemStore(new TrimmedItemStore<>())
            .build(),
        context);
    nodes = new InformerEventSource<>(
        InformerEventSourceConfiguration.from(Node.class, VfioVm.class)
            .withName("nodes")
            .withSecondaryToPrimaryMapper(node -> Set.copyOf(waiting))
            .withOnUpdateFilter((changed, old) -> budgetChanged(changed, old))
            .withItemStore(new TrimmedItemStore<>())
            .build(),
        context);
    return List.of(pods, nodes, retrigger);
  }

  static Set<ResourceID> vmOfPod(Pod pod) {
    Map<String, String> labels = pod.getMetadata().getLabels();
    if (labels == null || labels.get(NodePodShape.LABEL_VM_NAME) == null) {
      return Set.of();
    }
    return Set.of(new ResourceID(labels.get(NodePodShape.LABEL_VM_NAME), labels.get(NodePodShape.LABEL_VM_NAMESPACE)));
  }

  private static boolean budgetChanged(Node changed, Node old) {
    return !Objects.equals(changed.getMetadata().getLabels(), old.getMetadata().getLabels())
        || !Objects.equals(annotation(changed), annotation(old))
        || !Objects.equals(allocatable(changed), allocatable(old))
        || !Objects.equals(changed.getSpec() == null ? null : changed.getSpec().getUnschedulable(),
            old.getSpec() == null ? null : old.getSpec().getUnschedulable());
  }

  private static String annotation(Node node) {
    return node.getMetadata().getAnnotations() == null ? null
        : node.getMetadata().getAnnotations().get(NodeBudget.HOST_RESERVE_ANNOTATION);
  }

  private static Object allocatable(Node node) {
    return node.getStatus() == null || node.getStatus().getAllocatable() == null ? null
        : node.getStatus().getAllocatable().get("memory");
  }

  @Override
  public UpdateControl<VfioVm> reconcile(VfioVm vm, Context<VfioVm> context) {
    ensureSeeded();
    Instant now = Instant.now();
    String key = NodePodShape.vmKey(vm);
    ResourceID id = ResourceID.fromResource(vm);
    String podName = NodePodShape.podName(vm.getMetadata().getNamespace(), vm.getMetadata().getName());
    String podKey = settings.nodePodNamespace() + "/" + podName;
    Pod pod = pods.get(new ResourceID(podName, settings.nodePodNamespace())).orElse(null);
    SpecValidation.Result validation = SpecValidation.validate(vm.getSpec(), settings.memlockOverheadBytes());
    Ledger.Entry entry = ledger.get(key);

    if (entry == null || entry.node() == null) {
      if (!validation.valid()) {
        waiting.remove(id);
        if (entry != null && pod == null) {
          ledger.release(key);
          wakeWaiting();
        }
        return writeStatus(vm, VmStatuses.invalid(vm, validation, now), context);
      }
      // listed as waiting before reading nodes and asking the ledger: a node added or a release in between
      // would otherwise wake nobody
      waiting.add(id);
      SpecValidation.Plan plan = validation.plan();
      Placement.Request request = new Placement.Request(
          plan.memlockLimitBytes(), plan.devices(), vm.getSpec().getNodeName(), vm.getSpec().getNodeSelector());
      List<NodeBudget> budgets = nodes.list().map(n -> NodeBudget.of(n, settings.hostReserveBytes())).toList();
      Set<Long> heldByPods = pods.list()
          .filter(p -> !p.getMetadata().getName().equals(podName))
          .map(VfioVmReconciler::hostUidOf)
          .filter(Objects::nonNull)
          .collect(Collectors.toSet());
      Ledger.Admission admission = ledger.admit(key, request, budgets, heldByPods);
      if (!admission.uidAssigned()) {
        return writeStatus(vm, VmStatuses.uidExhausted(vm, admission.uidProblem(), now), context);
      }
      if (!admission.placed()) {
        return writeStatus(vm, VmStatuses.unplaced(vm, admission.entry(), admission.placement(), now), context);
      }
      waiting.remove(id);
      entry = admission.entry();
    }

    if (pod == null) {
      String placedOn = entry.node();
      if (nodes.list().noneMatch(n -> n.getMetadata().getName().equals(placedOn))) {
        // recreating the pod would only feed the pod garbage collector
        return writeStatus(vm, VmStatuses.nodeGone(vm, entry, now), context);
      }
      SpecValidation.Plan plan = planOf(vm, entry, validation);
      // the UID and node reach the VM's status before the pod exists, so a restarted operator finds them
      VfioVm recorded = vm;
      if (!recordedInStatus(vm, entry)) {
        // said as it will be once the pod exists (the API server creates every pod Pending), so the write
        // after the create below finds nothing to change: one status write, not two (docs/performance.md, p1)
        Pod expected = NodePodShape.build(vm, entry.hostUid(), entry.node(), plan, settings);
        expected.setStatus(new io.fabric8.kubernetes.api.model.PodStatusBuilder().withPhase("Pending").build());
        recorded = patchStatus(vm, VmStatuses.placed(vm, entry, podKey, expected, now), context);
      }
      Pod desired = NodePodShape.build(recorded, entry.hostUid(), entry.node(), plan, settings);
      Pod created = context.getClient().pods().inNamespace(settings.nodePodNamespace()).resource(desired)
          .fieldManager(FIELD_MANAGER).forceConflicts().serverSideApply();
      pods.handleRecentResourceCreate(ResourceID.fromResource(created), created);
      events.normal(vm, "NodePodCreated", "node pod " + podKey + " created on node " + entry.node()
          + " for host UID " + entry.hostUid());
      return writeStatus(recorded, VmStatuses.placed(recorded, entry, podKey, created, now), context);
    }
    VfioVmStatus status = VmStatuses.fromPod(vm, entry, podKey, pod, now);
    String drift = drift(vm, entry, validation);
    if (drift == null && validation.valid()
        && !NodePodShape.vmArgs(validation.plan()).equals(NodePodShape.vmArgsOf(pod))) {
      drift = "spec changes after the node pod started (cpus, boot or console) are not applied to the running VM; "
          + "delete and re-create the VfioVm";
    }
    if (drift != null) {
      status.setMessage(drift + "; " + status.getMessage());
    }
    return writeStatus(vm, status, context);
  }

  /** A reconcile that threw (API error, missing namespace, ...) says so in the status while JOSDK retries. */
  @Override
  public ErrorStatusUpdateControl<VfioVm> updateErrorStatus(VfioVm vm, Context<VfioVm> context, Exception e) {
    VfioVmStatus status = vm.getStatus() == null ? new VfioVmStatus() : vm.getStatus();
    String cause = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
    status.setMessage("reconcile failed, retrying: " + (cause.length() > 500 ? cause.substring(0, 500) : cause));
    vm.setStatus(status);
    log.warn("{}: reconcile failed: {}", NodePodShape.vmKey(vm), cause);
    return ErrorStatusUpdateControl.patchStatus(vm);
  }

  /** The plan of a placed VM: from the spec when it still matches the ledger, else what the ledger holds. */
  private SpecValidation.Plan planOf(VfioVm vm, Ledger.Entry entry, SpecValidation.Result validation) {
    if (validation.valid() && drift(vm, entry, validation) == null) {
      return validation.plan();
    }
    // the memory the held limit was computed from (limit = factor x memory + overhead)
    int factor = MemlockPolicy.factor(vm.getSpec() != null && vm.getSpec().isViommu(), entry.devices().size());
    long memory = Math.max(SpecValidation.PAGE_SIZE, (entry.memlockLimitBytes() - settings.memlockOverheadBytes()) / factor);
    // what to boot comes from the spec while it is valid; an invalid edit boots nothing (firmware only)
    SpecValidation.Plan base = validation.valid() ? validation.plan()
        : new SpecValidation.Plan(memory, entry.memlockLimitBytes(), entry.devices());
    return base.withResources(memory, entry.memlockLimitBytes(), entry.devices());
  }

  /**
   * A placed VM keeps its UID, node, limit and devices: a spec edited afterwards is reported, not applied
   * (re-creating the VfioVm applies it).
   */
  static String drift(VfioVm vm, Ledger.Entry entry, SpecValidation.Result validation) {
    if (!validation.valid()) {
      return "the edited spec is invalid and not applied (" + validation.message() + ")";
    }
    SpecValidation.Plan plan = validation.plan();
    String nodeName = vm.getSpec().getNodeName();
    if (plan.memlockLimitBytes() != entry.memlockLimitBytes() || !plan.devices().equals(entry.devices())
        || (nodeName != null && !nodeName.isEmpty() && !nodeName.equals(entry.node()))) {
      return "spec changes after placement are not applied to the running VM; delete and re-create the VfioVm";
    }
    return null;
  }

  @Override
  public DeleteControl cleanup(VfioVm vm, Context<VfioVm> context) {
    ensureSeeded();
    String key = NodePodShape.vmKey(vm);
    String podName = NodePodShape.podName(vm.getMetadata().getNamespace(), vm.getMetadata().getName());
    String podKey = settings.nodePodNamespace() + "/" + podName;
    var podResource = context.getClient().pods().inNamespace(settings.nodePodNamespace()).withName(podName);
    // ask the API server, not the cache: a pod created a moment ago may not be in the cache yet
    Pod live = podResource.get();
    Ledger.Entry entry = ledger.get(key);
    if (live != null) {
      if (live.getMetadata().getDeletionTimestamp() == null) {
        podResource.delete();
        events.normal(vm, "DeletingNodePod", "deleting node pod " + podKey
            + "; the host UID and node budget stay held until it is gone");
      }
      if (vm.getStatus() == null || vm.getStatus().getPhase() != Phase.Terminating) {
        writeStatus(vm, VmStatuses.terminating(vm, entry, podKey, Instant.now()), context);
      }
      // the pod's delete event wakes this VM; the reschedule is a safety net
      return DeleteControl.noFinalizerRemoval().rescheduleAfter(10_000);
    }
    Ledger.Entry released = ledger.release(key);
    waiting.remove(ResourceID.fromResource(vm));
    if (released != null) {
      events.normal(vm, "Released", "node pod gone; released host UID " + released.hostUid()
          + (released.node() == null ? "" : " and " + Quantities.human(released.memlockLimitBytes())
              + " of node " + released.node() + "'s budget"));
      wakeWaiting();
    }
    return DeleteControl.defaultDelete();
  }

  private void wakeWaiting() {
    retrigger.fire(List.copyOf(waiting));
  }

  /** Rebuilds the ledger from the cluster once, before the first decision (JOSDK has synced the caches). */
  private synchronized void ensureSeeded() {
    if (seeded) {
      return;
    }
    List<VfioVm> all = vms.list()
        .sorted(Comparator.comparing((VfioVm v) -> v.getMetadata().getCreationTimestamp(),
            Comparator.nullsLast(Comparator.naturalOrder())))
        .toList();
    int restored = 0;
    for (VfioVm vm : all) {
      VfioVmStatus status = vm.getStatus();
      if (status == null || status.getHostUid() == null) {
        continue;
      }
      SpecValidation.Result validation = SpecValidation.validate(vm.getSpec(), settings.memlockOverheadBytes());
      List<String> devices = validation.valid() ? validation.plan().devices() : List.of();
      long limit = status.getMemlockLimitBytes() != null ? status.getMemlockLimitBytes()
          : validation.valid() ? validation.plan().memlockLimitBytes() : 0;
      String node = status.getNodeName() != null && !status.getNodeName().isEmpty() ? status.getNodeName() : null;
      if (ledger.restore(NodePodShape.vmKey(vm), new Ledger.Entry(status.getHostUid(), node, limit, devices))) {
        restored++;
      } else {
        log.warn("{} claims host UID {} that an older VfioVm holds; it will get a new one",
            NodePodShape.vmKey(vm), status.getHostUid());
      }
    }
    log.info("ledger rebuilt from the cluster: {} VfioVms hold host UIDs of range {}", restored, ledger.range());
    seeded = true;
  }

  static Long hostUidOf(Pod pod) {
    String value = pod.getMetadata().getLabels() == null ? null
        : pod.getMetadata().getLabels().get(NodePodShape.LABEL_HOST_UID);
    try {
      return value == null ? null : Long.parseLong(value);
    } catch (NumberFormatException e) {
      return null;
    }
  }

  private static boolean recordedInStatus(VfioVm vm, Ledger.Entry entry) {
    VfioVmStatus s = vm.getStatus();
    return s != null && Objects.equals(s.getHostUid(), entry.hostUid()) && Objects.equals(s.getNodeName(), entry.node());
  }

  private UpdateControl<VfioVm> writeStatus(VfioVm vm, VfioVmStatus status, Context<VfioVm> context) {
    if (!Serialization.asJson(status).equals(Serialization.asJson(vm.getStatus()))) {
      patchStatus(vm, status, context);
    }
    return UpdateControl.noUpdate();
  }

  /** Server-side applies the whole status (this operator owns all of it) and keeps the cache fresh. */
  private VfioVm patchStatus(VfioVm vm, VfioVmStatus status, Context<VfioVm> context) {
    VfioVm fresh = new VfioVm();
    fresh.setMetadata(new ObjectMetaBuilder()
        .withName(vm.getMetadata().getName()).withNamespace(vm.getMetadata().getNamespace()).build());
    fresh.setStatus(status);
    VfioVm updated = PrimaryUpdateAndCacheUtils.ssaPatchStatusAndCacheResource(vm, fresh, context);
    recordTransition(vm, vm.getStatus(), status);
    return updated;
  }

  /** Events on every phase change and every new refusal. */
  private void recordTransition(VfioVm vm, VfioVmStatus before, VfioVmStatus after) {
    Phase was = before == null ? null : before.getPhase();
    Condition readyBefore = VmStatuses.condition(before, VfioVmStatus.READY);
    Condition readyAfter = VmStatuses.condition(after, VfioVmStatus.READY);
    String reasonBefore = readyBefore == null ? null : readyBefore.getReason();
    String reasonAfter = readyAfter == null ? null : readyAfter.getReason();
    boolean refusal = reasonAfter != null && !NOT_REFUSALS.contains(reasonAfter);
    if (after.getPhase() != was) {
      boolean bad = after.getPhase() == Phase.Failed || (after.getPhase() == Phase.Pending && refusal);
      String reason = refusal ? reasonAfter : after.getPhase().name();
      if (bad) {
        events.warning(vm, reason, after.getPhase() + ": " + after.getMessage());
      } else {
        events.normal(vm, reason, after.getPhase() + ": " + after.getMessage());
      }
    } else if (refusal && !Objects.equals(reasonBefore, reasonAfter)) {
      events.warning(vm, reasonAfter, after.getMessage());
    }
  }

  // read-only views for metrics
  public Ledger ledger() {
    return ledger;
  }

  public List<NodeBudget> nodeBudgets() {
    return nodes == null ? List.of()
        : nodes.list().map(n -> NodeBudget.of(n, settings.hostReserveBytes())).toList();
  }

  /** Host UIDs carried by node pods the operator sees (live VMs' and leftovers'). */
  public Set<Long> uidsHeldByNodePods() {
    return pods == null ? Set.of()
        : pods.list().map(VfioVmReconciler::hostUidOf).filter(Objects::nonNull).collect(Collectors.toSet());
  }

  public List<VfioVm> vms() {
    return vms == null ? List.of() : vms.list().toList();
  }

  public Set<ResourceID> waiting() {
    return new HashSet<>(waiting);
  }
}
