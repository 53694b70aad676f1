package dev.vfiovm.controller;

import dev.vfiovm.api.Quantities;
import dev.vfiovm.api.Phase;
import dev.vfiovm.api.UidAudit;
import dev.vfiovm.api.VfioVm;
import dev.vfiovm.api.VfioVmStatus;
import io.fabric8.kubernetes.api.model.Condition;
import io.fabric8.kubernetes.api.model.HasMetadata;
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
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
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
  private final QuarantineStore quarantineStore;
  private final KubernetesClient client;
  /** The last state seen of each VM's node pod (key NS/NAME of the VM), the final one from the delete event. */
  private final Map<String, Pod> lastSeenPods = new ConcurrentHashMap<>();
  /** The phase of each VM when its deletion began (cleanup writes Terminating over it). */
  private final Map<String, Phase> phaseBeforeDeletion = new ConcurrentHashMap<>();
  /** Node audits are evaluated here, off the informer's thread. */
  private final ExecutorService audits = Executors.newSingleThreadExecutor(r -> {
    Thread t = new Thread(r, "vfiovm-uid-audits");
    t.setDaemon(true);
    return t;
  });

  public VfioVmReconciler(KubernetesClient client, OperatorSettings settings) {
    this.settings = settings;
    this.ledger = new Ledger(settings.uidRange());
    this.events = new EventRecorder(client);
    this.quarantineStore = new QuarantineStore(client, settings.nodePodNamespace());
    this.client = client;
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
            .withOnUpdateFilter((changed, old) -> {
              seen(changed);
              return true;
            })
            .withOnDeleteFilter((gone, finalStateUnknown) -> {
              // the watch's final state (e.g. containers terminated); a relist's stale copy proves nothing
              if (!Boolean.TRUE.equals(finalStateUnknown)) {
                seen(gone);
              }
              // a pod gone may free a UID (a leftover's) for a VM that waits
              wakeWaiting();
              return true;
            })
            .withItemStore(new TrimmedItemStore<>())
            .build(),
        context);
    nodes = new InformerEventSource<>(
        InformerEventSourceConfiguration.from(Node.class, VfioVm.class)
            .withName("nodes")
            .withSecondaryToPrimaryMapper(node -> Set.copyOf(waiting))
            .withOnAddFilter(node -> {
              auditChanged(node);
              return true;
            })
            .withOnUpdateFilter((changed, old) -> {
              if (!Objects.equals(auditAnnotation(changed), auditAnnotation(old))) {
                auditChanged(changed);
              }
              return budgetChanged(changed, old);
            })
            .withOnDeleteFilter((node, unknown) -> {
              List<UidQuarantine.Held> held = ledger.quarantined().stream()
                  .filter(h -> h.node().equals(node.getMetadata().getName())).toList();
              if (!held.isEmpty()) {
                log.warn("node {} is gone with {} quarantined host UIDs {}: they stay out of the range until a node "
                    + "of that name comes back and its UID audit shows them free", node.getMetadata().getName(),
                    held.size(), held.stream().map(UidQuarantine.Held::uid).toList());
              }
              return true;
            })
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

  private static String auditAnnotation(Node node) {
    return node.getMetadata().getAnnotations() == null ? null
        : node.getMetadata().getAnnotations().get(UidAudit.ANNOTATION);
  }

  private void seen(Pod pod) {
    Map<String, String> labels = pod.getMetadata().getLabels();
    if (labels != null && labels.get(NodePodShape.LABEL_VM_NAME) != null) {
      lastSeenPods.put(labels.get(NodePodShape.LABEL_VM_NAMESPACE) + "/" + labels.get(NodePodShape.LABEL_VM_NAME), pod);
    }
  }

  private void auditChanged(Node node) {
    String name = node.getMetadata().getName();
    String json = auditAnnotation(node);
    if (json == null) {
      return;
    }
    audits.execute(() -> {
      try {
        releaseProven(name, UidAudit.fromJson(json));
      } catch (RuntimeException e) {
        log.warn("node {}: UID audit not applied: {}", name, e.getMessage());
      }
    });
  }

  /** Ends the quarantines the node's audit proves over, persists that, and wakes VMs waiting for a UID. */
  private void releaseProven(String node, UidAudit audit) {
    if (ledger.quarantined().stream().noneMatch(h -> h.node().equals(node))) {
      return;
    }
    List<UidQuarantine.Held> released = ledger.releaseQuarantined(node, audit);
    if (released.isEmpty()) {
      return;
    }
    try {
      quarantineStore.save(ledger.state());
    } catch (RuntimeException e) {
      // the UIDs stay released here; the next change is persisted again
      log.warn("UID quarantine not persisted: {}", e.getMessage());
    }
    for (UidQuarantine.Held h : released) {
      log.info("host UID {} released from quarantine: node {}'s UID audit of {} shows no process of it (freed {} by {})",
          h.uid(), node, audit.scannedAt(), h.freedAt(), h.vm());
    }
    wakeWaiting();
  }

  /** Applies every known node's current audit (before a hand-out, so the decision is fresh). */
  private void releaseProvenByAllAudits() {
    if (ledger.quarantined().isEmpty()) {
      return;
    }
    nodes.list().forEach(n -> {
      String json = auditAnnotation(n);
      if (json != null) {
        try {
          releaseProven(n.getMetadata().getName(), UidAudit.fromJson(json));
        } catch (IllegalArgumentException e) {
          log.debug("node {}: {}", n.getMetadata().getName(), e.getMessage());
        }
      }
    });
  }

  /**
   * Quarantines the VM's UID if its node pod is gone without proof that its processes are (and persists the
   * quarantine before anything else happens); the reason, or null.
   */
  private String quarantineIfUnproven(VfioVm vm, Ledger.Entry entry, Phase phase, Instant now) {
    String key = NodePodShape.vmKey(vm);
    boolean nodeExists = nodes.list().anyMatch(n -> n.getMetadata().getName().equals(entry.node()));
    String reason = UidQuarantine.unprovenFree(lastSeenPods.get(key), phase, nodeExists);
    if (reason == null) {
      return null;
    }
    ledger.quarantine(new UidQuarantine.Held(entry.hostUid(), entry.node(), now.toString(), key, reason));
    quarantineStore.save(ledger.state());
    log.warn("host UID {} quarantined on node {}: freed by {} without proof that its processes are gone ({}); "
        + "no VM gets it until the node's UID audit ({}) scanned after {} shows no process of it",
        entry.hostUid(), entry.node(), key, reason, UidAudit.ANNOTATION, now);
    events.warning(vm, "UidQuarantined", "host UID " + entry.hostUid() + " quarantined on node " + entry.node()
        + ": " + reason + "; it goes to no VM until the node's UID audit shows no process of it");
    return reason;
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
          plan.memlockLimitBytes(), plan.devices(), vm.getSpec().getNodeName(), vm.getSpec().getNodeSelector(),
          NodePodShape.deviceResources(vm.getSpec().getDmaBackend(), plan.devices()));
      List<NodeBudget> budgets = nodes.list().map(n -> NodeBudget.of(n, settings.hostReserveBytes())).toList();
      Set<Long> heldByPods = pods.list()
          .filter(p -> !p.getMetadata().getName().equals(podName))
          .map(VfioVmReconciler::hostUidOf)
          .filter(Objects::nonNull)
          .collect(Collectors.toSet());
      releaseProvenByAllAudits();
      Long cursorBefore = ledger.state().cursor();
      Ledger.Admission admission = ledger.admit(key, request, budgets, heldByPods);
      if (!Objects.equals(cursorBefore, ledger.state().cursor())) {
        try {
          quarantineStore.save(ledger.state()); // the hand-out cursor survives a restart
        } catch (RuntimeException e) {
          log.warn("UID hand-out cursor not persisted: {}", e.getMessage());
        }
      }
      if (!admission.uidAssigned()) {
        return writeStatus(vm, VmStatuses.uidExhausted(vm, admission.uidProblem(), now), context);
      }
      if (!admission.placed()) {
        return writeStatus(vm, VmStatuses.unplaced(vm, admission.entry(), admission.placement(), now), context);
      }
      waiting.remove(id);
      entry = admission.entry();
    }

    if (pod != null) {
      lastSeenPods.put(key, pod);
    }
    if (pod == null) {
      String placedOn = entry.node();
      Phase phase = vm.getStatus() == null ? null : vm.getStatus().getPhase();
      if (lastSeenPods.containsKey(key) || phase == Phase.Starting || phase == Phase.Running) {
        // the pod vanished behind the operator's back (force-deleted, garbage-collected with its node)
        quarantineIfUnproven(vm, entry, phase, now);
        lastSeenPods.remove(key);
      }
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
      // the pod's own identity first: its ServiceAccount may only get/patch this one pod
      for (HasMetadata object : NodePodIdentity.desired(recorded, settings).all()) {
        context.getClient().resource(object).inNamespace(settings.nodePodNamespace())
            .fieldManager(FIELD_MANAGER).forceConflicts().serverSideApply();
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
    Phase phase = vm.getStatus() == null ? null : vm.getStatus().getPhase();
    if (phase != null && phase != Phase.Terminating) {
      phaseBeforeDeletion.putIfAbsent(key, phase);
    }
    if (live != null) {
      lastSeenPods.merge(key, live, (cached, fresh) -> newer(cached, fresh));
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
    String quarantined = null;
    if (entry != null && entry.node() != null) {
      quarantined = quarantineIfUnproven(vm, entry, phaseBeforeDeletion.getOrDefault(key, phase), Instant.now());
    }
    deleteIdentity(context.getClient(), vm);
    Ledger.Entry released = ledger.release(key);
    lastSeenPods.remove(key);
    phaseBeforeDeletion.remove(key);
    waiting.remove(ResourceID.fromResource(vm));
    if (released != null) {
      events.normal(vm, "Released", "node pod gone; "
          + (quarantined == null ? "released host UID " + released.hostUid()
              : "host UID " + released.hostUid() + " quarantined (" + quarantined + ")")
          + (released.node() == null ? "" : " and " + Quantities.human(released.memlockLimitBytes())
              + " of node " + released.node() + "'s budget"));
      wakeWaiting();
    }
    return DeleteControl.defaultDelete();
  }

  /** The fresher of two states of one pod (by resourceVersion, numeric on every API server in practice). */
  private static Pod newer(Pod a, Pod b) {
    try {
      return Long.parseLong(a.getMetadata().getResourceVersion()) > Long.parseLong(b.getMetadata().getResourceVersion())
          ? a : b;
    } catch (RuntimeException e) {
      return b;
    }
  }

  private void deleteIdentity(KubernetesClient client, VfioVm vm) {
    String name = NodePodIdentity.name(vm, settings);
    String ns = settings.nodePodNamespace();
    client.rbac().roleBindings().inNamespace(ns).withName(name).delete();
    client.rbac().roles().inNamespace(ns).withName(name).delete();
    client.serviceAccounts().inNamespace(ns).withName(name).delete();
  }

  /** Deletes node-pod identities whose VfioVm no longer exists (a finalizer removed by hand, a crash). */
  private void deleteOrphanIdentities(KubernetesClient client) {
    Set<String> vmKeys = vms.list().map(NodePodShape::vmKey).collect(Collectors.toSet());
    String ns = settings.nodePodNamespace();
    List<HasMetadata> found = new java.util.ArrayList<>();
    found.addAll(client.rbac().roleBindings().inNamespace(ns).withLabelSelector(NodePodIdentity.SELECTOR).list().getItems());
    found.addAll(client.rbac().roles().inNamespace(ns).withLabelSelector(NodePodIdentity.SELECTOR).list().getItems());
    found.addAll(client.serviceAccounts().inNamespace(ns).withLabelSelector(NodePodIdentity.SELECTOR).list().getItems());
    for (HasMetadata object : found) {
      Map<String, String> labels = object.getMetadata().getLabels();
      String vmKey = labels.get(NodePodShape.LABEL_VM_NAMESPACE) + "/" + labels.get(NodePodShape.LABEL_VM_NAME);
      if (!vmKeys.contains(vmKey)) {
        log.info("deleting {} {}/{}: its VfioVm {} no longer exists", object.getKind(), ns,
            object.getMetadata().getName(), vmKey);
        client.resource(object).delete();
      }
    }
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
    UidQuarantine.State state = quarantineStore.load();
    ledger.restoreState(state);
    log.info("ledger rebuilt from the cluster: {} VfioVms hold host UIDs of range {}; {} UIDs quarantined {}",
        restored, ledger.range(), ledger.quarantined().size(), ledger.quarantined());
    try {
      deleteOrphanIdentities(client);
    } catch (RuntimeException e) {
      log.warn("orphaned node-pod identities not cleaned up: {}", e.getMessage());
    }
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
