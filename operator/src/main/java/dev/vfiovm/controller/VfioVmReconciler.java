package dev.vfiovm.controller;

import dev.vfiovm.api.Quantities;
import dev.vfiovm.api.Phase;
import dev.vfiovm.api.UidAudit;
import dev.vfiovm.api.VfioVm;
import dev.vfiovm.api.VfioVmSpec;
import dev.vfiovm.api.VfioVmStatus;
import io.fabric8.kubernetes.api.model.Condition;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.Node;
import io.fabric8.kubernetes.api.model.ObjectMetaBuilder;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.utils.Serialization;
import io.javaoperatorsdk.operator.api.config.informer.FieldSelector;
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
import io.javaoperatorsdk.operator.api.reconciler.Workflow;
import io.javaoperatorsdk.operator.api.reconciler.dependent.Dependent;
import io.javaoperatorsdk.operator.processing.dependent.workflow.WorkflowCleanupResult;
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
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Reconciles a VfioVm: validate -> host UID + node from the {@link Ledger} (recorded in status before any
 * pod exists) -> node pod in the operator's namespace -> status from the agent's report. On deletion the
 * node pod is deleted and the UID and budget are released only once it is gone.
 */
@ControllerConfiguration(name = VfioVmReconciler.NAME)
@Workflow(explicitInvocation = true, dependents = @Dependent(type = NodePodDependent.class, name = NodePodDependent.NAME,
    reconcilePrecondition = NodePodDependent.Placed.class, deletePostcondition = NodePodDependent.PodGone.class,
    useEventSourceWithName = VfioVmReconciler.NODE_PODS))
public class VfioVmReconciler implements Reconciler<VfioVm>, Cleaner<VfioVm> {
  public static final String NAME = "vfiovm";
  public static final String FIELD_MANAGER = "vfiovm-operator";
  /** The informer of the node pods (also the {@link NodePodDependent}'s event source). */
  public static final String NODE_PODS = "node-pods";
  private static final Logger log = LoggerFactory.getLogger(VfioVmReconciler.class);
  /** Oldest first: creation time (RFC 3339, second resolution), then namespace/name. */
  static final Comparator<VfioVm> AGE = Comparator.comparing((VfioVm v) -> v.getMetadata().getCreationTimestamp(),
          Comparator.nullsLast(Comparator.naturalOrder()))
      .thenComparing(NodePodShape::vmKey);

  private final OperatorSettings settings;
  private final Ledger ledger;
  private final EventRecorder events;
  private final Retrigger retrigger = new Retrigger(vm -> this.audits.execute(() -> forgetDeletedByHand(vm)));
  private volatile InformerEventSource<Pod, VfioVm> pods;
  private volatile InformerEventSource<Node, VfioVm> nodes;
  private volatile InformerEventSource<Pod, VfioVm> boundPods;
  /** The VMs' attachment and detach pods ({@link AttachmentPodShape}, hot-plug). */
  private volatile InformerEventSource<Pod, VfioVm> devicePods;
  public static final String DEVICE_PODS = "device-pods";
  /** The UID claims ({@link UidClaims}): the book's source of truth. */
  private volatile InformerEventSource<Lease, VfioVm> claims;
  /** UIDs whose claim create met one of another VM the cache did not show yet. */
  private final Set<Long> claimedElsewhere = ConcurrentHashMap.newKeySet();
  private volatile IndexerResourceCache<VfioVm> vms;
  private boolean seeded;
  private final QuarantineStore quarantineStore;
  private final KubernetesClient client;
  /** The last state seen of each VM's node pod (key NS/NAME of the VM), the final one from the delete event. */
  private final Map<String, Pod> lastSeenPods = new ConcurrentHashMap<>();
  /**
   * How long a status write of a passing state waits ({@link VmStatuses#settleDelayMillis}): the kubelet's and
   * the agent's first writes usually follow one another within it, so a VM reaches Running with two status
   * writes; a state that lasts longer shows this much late.
   */
  static final long STATUS_SETTLE_MILLIS = 2000;
  /** Runs a node pod's identity applies side by side (daemon threads, as many as reconciles need at once). */
  private final java.util.concurrent.ExecutorService identityApplies = Executors.newCachedThreadPool(r -> {
    Thread t = new Thread(r, "vfiovm-identity-apply");
    t.setDaemon(true);
    return t;
  });
  private final Object stateSaves = new Object();
  private final java.util.concurrent.atomic.AtomicBoolean cursorSavePending =
      new java.util.concurrent.atomic.AtomicBoolean();
  /** Per VM (key NS/NAME) whose status write waits: the desired phase and since when it has been desired. */
  private final Map<String, Stale> staleSince = new ConcurrentHashMap<>();

  /** A desired phase not written yet, and since when it has been desired. */
  private record Stale(Phase phase, Instant since) {}
  /** The phase of each VM when its deletion began (cleanup writes Terminating over it). */
  private final Map<String, Phase> phaseBeforeDeletion = new ConcurrentHashMap<>();
  /** Node audits and orphan sweeps are evaluated here, off the informer's thread. */
  private final ScheduledExecutorService audits = Executors.newSingleThreadScheduledExecutor(r -> {
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
            .withName(NODE_PODS)
            .withNamespaces(settings.nodePodNamespace())
            .withLabelSelector(NodePodShape.SELECTOR)
            .withSecondaryToPrimaryMapper(VfioVmReconciler::vmOfPod)
            .withOnAddFilter(added -> {
              audits.execute(this::sweepOrphanPods);
              return true;
            })
            .withOnUpdateFilter((changed, old) -> {
              seen(changed);
              return true;
            })
            .withOnDeleteFilter((gone, finalStateUnknown) -> {
              // the watch's final state (e.g. containers terminated); a relist's stale copy proves nothing
              if (!Boolean.TRUE.equals(finalStateUnknown)) {
                seen(gone);
              }
              // a pod gone may free a UID (a leftover's, or a claim of a VM deleted by hand) for a VM that waits
              Pod last = Boolean.TRUE.equals(finalStateUnknown) ? null : gone;
              audits.execute(() -> releaseOrphanClaims(gone, last));
              wakeWaiting();
              return true;
            })
            .withItemStore(new TrimmedItemStore<>())
            .build(),
        context);
    nodes = new InformerEventSource<>(
        InformerEventSourceConfiguration.from(Node.class, VfioVm.class)
            .withName("nodes")
            .withSecondaryToPrimaryMapper(node -> toWakeOnNodeChange(node))
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
    claims = new InformerEventSource<>(
        InformerEventSourceConfiguration.from(Lease.class, VfioVm.class)
            .withName("uid-claims")
            .withNamespaces(settings.nodePodNamespace())
            .withLabelSelector(UidClaims.SELECTOR)
            .withSecondaryToPrimaryMapper(lease -> {
              UidClaims.Claim claim = UidClaims.parse(lease);
              return claim == null ? Set.of() : Set.of(new ResourceID(claim.vmName(), claim.vmNamespace()));
            })
            .withItemStore(new TrimmedItemStore<>())
            .build(),
        context);
    // every pod bound to a node, any namespace, trimmed to its memory requests: what the kubelet weighs
    // before admitting a node pod. A pod gone frees memory, so waiters that may fit now are woken.
    boundPods = new InformerEventSource<>(
        InformerEventSourceConfiguration.from(Pod.class, VfioVm.class)
            .withName("bound-pods")
            .withWatchAllNamespaces()
            .withFieldSelector(new FieldSelector(new FieldSelector.Field("spec.nodeName", "", true)))
            .withSecondaryToPrimaryMapper(pod -> Set.of())
            .withOnAddFilter(pod -> false)
            .withOnUpdateFilter((changed, old) -> false)
            .withOnDeleteFilter((gone, unknown) -> {
              wakeWaiting();
              return false;
            })
            .withItemStore(new PodRequestsItemStore())
            .build(),
        context);
    devicePods = new InformerEventSource<>(
        InformerEventSourceConfiguration.from(Pod.class, VfioVm.class)
            .withName(DEVICE_PODS)
            .withNamespaces(settings.nodePodNamespace())
            .withLabelSelector(AttachmentPodShape.SELECTOR)
            .withSecondaryToPrimaryMapper(VfioVmReconciler::vmOfPod)
            .withOnDeleteFilter((gone, unknown) -> {
              wakeWaiting(); // a device's pod gone may free it, its budget, for another VM
              return true;
            })
            .withItemStore(new TrimmedItemStore<>())
            .build(),
        context);
    return List.of(pods, nodes, claims, boundPods, devicePods, retrigger);
  }

  /**
   * Whether the pod is the VM's own: its {@link NodePodShape#ANNOTATION_VM_UID} is the VM's metadata.uid. A pod
   * without that annotation (made before it existed) counts as the VM's of its labels.
   */
  static boolean ownPod(VfioVm vm, Pod pod) {
    Map<String, String> a = pod.getMetadata().getAnnotations();
    String uid = a == null ? null : a.get(NodePodShape.ANNOTATION_VM_UID);
    return vmOfPod(pod).contains(ResourceID.fromResource(vm)) && (uid == null || uid.equals(vm.getMetadata().getUid()));
  }

  /**
   * Seeds the ledger and sweeps orphan node pods as soon as the caches are ready (while leading), even when no
   * VfioVm exists to be reconciled; called by {@link VfioVmOperator} once started.
   */
  void seedWhenReady(java.util.function.BooleanSupplier ready) {
    audits.execute(() -> {
      long deadline = System.nanoTime() + TimeUnit.MINUTES.toNanos(10);
      try {
        while (!ready.getAsBoolean()) {
          if (System.nanoTime() > deadline) {
            return;
          }
          Thread.sleep(200); // waiting for JOSDK's caches, not a test's synchronisation
        }
        ensureSeeded();
        // the level-triggered safety net under the event-driven sweeps (pod added, VM deleted): a delete that
        // failed, or an event lost across a watch gap, is retried at the VMs' own safety-net interval
        long every = settings.maxReconciliationIntervalSeconds();
        audits.scheduleWithFixedDelay(this::sweepOrphanPodsLogged, every, every, TimeUnit.SECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      } catch (RuntimeException e) {
        log.warn("ledger not seeded at start (the first reconcile seeds it): {}", e.getMessage());
      }
    });
  }

  /** The ledger key of a node pod whose VfioVm is gone (no VM key starts so). */
  private static String orphanPodKey(Pod pod) {
    return "pod:" + pod.getMetadata().getNamespace() + "/" + pod.getMetadata().getName();
  }

  /**
   * Node pods of no VfioVm (its finalizer removed by hand, or an earlier VM of the same name): deleted, and
   * their UID and memlock limit held in the ledger (on their node's budget) until they are gone.
   */
  private void sweepOrphanPods() {
    if (!seeded) {
      return;
    }
    for (Pod pod : pods.list().toList()) {
      Set<ResourceID> ids = vmOfPod(pod);
      VfioVm vm = ids.isEmpty() ? null : vms.get(ids.iterator().next()).orElse(null);
      if (vm != null && ownPod(vm, pod)) {
        continue;
      }
      Long uid = hostUidOf(pod);
      String key = orphanPodKey(pod);
      UidClaims.Claim held = uid == null ? null : UidClaims.fromPod(orphanVm(pod), pod);
      if (held != null && ledger.get(key) == null
          && ledger.snapshot().values().stream().noneMatch(e -> e.hostUid() == uid)) {
        ledger.restore(key, held.entry());
      }
      if (pod.getMetadata().getDeletionTimestamp() == null) {
        try {
          client.resource(pod).delete();
          log.warn("deleting node pod {}/{}: no VfioVm {} of its metadata.uid exists; its host UID {} and memlock "
              + "limit stay held until it is gone", pod.getMetadata().getNamespace(), pod.getMetadata().getName(),
              ids, uid);
        } catch (RuntimeException e) {
          log.warn("orphan node pod {} not deleted: {}", pod.getMetadata().getName(), e.getMessage());
        }
      }
    }
  }

  /**
   * A VfioVm is gone. Deleted through the operator (finalizer), its cleanup released everything already; its
   * finalizer removed by hand, its book entry, UID claim and node pod are left: the entry becomes an orphan claim
   * (released when no pod carries its UID, quarantined unless proven free) and the pod is deleted.
   */
  private void forgetDeletedByHand(VfioVm vm) {
    if (!seeded) {
      return;
    }
    String key = NodePodShape.vmKey(vm);
    Ledger.Entry entry = ledger.get(key);
    String claimKey = key + "@" + vm.getMetadata().getUid();
    Pod lastSeen = entry == null ? null : lastSeenPods.remove(key);
    if (entry != null) {
      ledger.release(key);
      ledger.restore(claimKey, entry);
      phaseBeforeDeletion.remove(key);
      staleSince.remove(key);
      log.warn("VfioVm {} is gone without the operator's cleanup (its finalizer was removed by hand): host UID {} "
          + "and its memlock limit stay held until no node pod carries that UID", key, entry.hostUid());
    }
    sweepOrphanPods();
    if (entry != null && !carriedByAPod(entry.hostUid())) {
      releaseOrphanClaimOf(entry.hostUid(), claimKey, lastSeen);
    }
  }

  private boolean carriedByAPod(long uid) {
    return pods.list().anyMatch(p -> Long.valueOf(uid).equals(hostUidOf(p)));
  }

  /** Releases the claim of UID {@code uid} held under the book key {@code key} (or just the key, if no claim). */
  private void releaseOrphanClaimOf(long uid, String key, Pod lastSeen) {
    claims.get(new ResourceID(UidClaims.name(uid), settings.nodePodNamespace())).map(UidClaims::parse)
        .ifPresentOrElse(c -> releaseOrphanClaim(c, key, lastSeen), () -> ledger.release(key));
  }

  private void sweepOrphanPodsLogged() {
    try {
      sweepOrphanPods();
    } catch (RuntimeException e) { // a periodic task that throws is never run again
      log.warn("orphan node-pod sweep failed (retried in {} s): {}", settings.maxReconciliationIntervalSeconds(),
          e.getMessage());
    }
  }

  /** A stand-in VfioVm naming the pod's VM (for {@link UidClaims#fromPod}). */
  private static VfioVm orphanVm(Pod pod) {
    VfioVm vm = new VfioVm();
    ResourceID id = NodePodShape.vmOf(pod)
        .orElse(new ResourceID(pod.getMetadata().getName(), pod.getMetadata().getNamespace()));
    vm.setMetadata(new ObjectMetaBuilder().withNamespace(id.getNamespace().orElse(null)).withName(id.getName()).build());
    return vm;
  }

  /** The VfioVm a node pod names (annotations: full names, whatever their length; labels may be hashed). */
  static Set<ResourceID> vmOfPod(Pod pod) {
    return NodePodShape.vmOf(pod).map(Set::of).orElse(Set.of());
  }

  private static String vmKeyOf(HasMetadata object) {
    return NodePodShape.vmOf(object).map(id -> id.getNamespace().orElse("") + "/" + id.getName()).orElse(null);
  }

  /**
   * Whether a node update changed anything placement reads (labels, the host-reserve annotation, allocatable
   * memory and device resources, cordon, taints, readiness): only then are waiting VMs woken. The node daemons'
   * UID audit annotation (patched every ~15 s), kubelet heartbeats and other status churn wake no one. Cheap:
   * readiness is read from the Ready condition alone, no {@link NodeBudget} is built.
   */
  static boolean budgetChanged(Node changed, Node old) {
    return !Objects.equals(changed.getMetadata().getLabels(), old.getMetadata().getLabels())
        || !Objects.equals(annotation(changed), annotation(old))
        || !Objects.equals(allocatable(changed), allocatable(old))
        || !Objects.equals(changed.getSpec() == null ? null : changed.getSpec().getUnschedulable(),
            old.getSpec() == null ? null : old.getSpec().getUnschedulable())
        || !Objects.equals(changed.getSpec() == null ? null : changed.getSpec().getTaints(),
            old.getSpec() == null ? null : old.getSpec().getTaints())
        || (NodeBudget.notReady(changed) == null) != (NodeBudget.notReady(old) == null);
  }

  private static String auditAnnotation(Node node) {
    return node.getMetadata().getAnnotations() == null ? null
        : node.getMetadata().getAnnotations().get(UidAudit.ANNOTATION);
  }

  private void seen(Pod pod) {
    String vmKey = vmKeyOf(pod);
    if (vmKey != null) {
      lastSeenPods.put(vmKey, pod);
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
      saveState();
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
    saveState();
    log.warn("host UID {} quarantined on node {}: freed by {} without proof that its processes are gone ({}); "
        + "no VM gets it until the node's UID audit ({}) scanned after {} shows no process of it",
        entry.hostUid(), entry.node(), key, reason, UidAudit.ANNOTATION, now);
    events.warning(vm, Reason.UidQuarantined.name(), "host UID " + entry.hostUid() + " quarantined on node " + entry.node()
        + ": " + reason + "; it goes to no VM until the node's UID audit shows no process of it");
    return reason;
  }

  private static String annotation(Node node) {
    return node.getMetadata().getAnnotations() == null ? null
        : node.getMetadata().getAnnotations().get(NodeBudget.HOST_RESERVE_ANNOTATION);
  }

  /** Allocatable memory and the device-plugin resources (vfiovm.dev/*), what placement reads of allocatable. */
  private static Map<String, io.fabric8.kubernetes.api.model.Quantity> allocatable(Node node) {
    if (node.getStatus() == null || node.getStatus().getAllocatable() == null) {
      return Map.of();
    }
    Map<String, io.fabric8.kubernetes.api.model.Quantity> read = new java.util.TreeMap<>();
    node.getStatus().getAllocatable().forEach((resource, quantity) -> {
      if ("memory".equals(resource) || dev.vfiovm.api.DeviceResources.isDeviceResource(resource)) {
        read.put(resource, quantity);
      }
    });
    return read;
  }

  /**
   * Observe -> decide ({@link VmDecisions#decide}, pure) -> act, again until a decision ends the reconcile
   * (at most admit, claim, then one of the ending decisions); then one status write.
   */
  @Override
  public UpdateControl<VfioVm> reconcile(VfioVm vm, Context<VfioVm> context) {
    ensureSeeded();
    context.managedWorkflowAndDependentResourceContext().put(OperatorSettings.class, settings);
    Instant now = Instant.now();
    String key = NodePodShape.vmKey(vm);
    ResourceID id = ResourceID.fromResource(vm);
    String podName = NodePodShape.podName(vm.getMetadata().getNamespace(), vm.getMetadata().getName());
    String podKey = settings.nodePodNamespace() + "/" + podName;
    Pod named = pods.get(new ResourceID(podName, settings.nodePodNamespace())).orElse(null);
    // a pod of this name is the VM's own only by its metadata.uid: a leftover of an earlier VM is never adopted
    Pod pod = named != null && ownPod(vm, named) ? named : null;
    boolean leftover = named != null && pod == null;
    SpecValidation.Result validation = SpecValidation.validate(vm.getSpec(), settings.memlockOverheadBytes());
    if (pod != null) {
      lastSeenPods.put(key, pod);
    }
    List<java.util.concurrent.CompletableFuture<HasMetadata>> identity = null;
    for (int step = 0; ; step++) {
      VmDecisions.Observation observation = observe(vm, validation, pod, leftover);
      VmDecisions.Decision decision = VmDecisions.decide(observation, settings);
      if (step > 3) {
        throw new IllegalStateException(key + ": no decision ends the reconcile (last: " + decision + ")");
      }
      if (decision instanceof VmDecisions.Invalid invalid) {
        if (observation.entry() != null && pod == null) {
          ledger.release(key);
          wakeWaiting();
        }
        return writeStatus(vm, VmStatuses.invalid(vm, invalid.validation(), now), context);
      } else if (decision instanceof VmDecisions.Admit admit) {
        VmDecisions.Decision outcome = VmDecisions.admitted(admit(vm, id, podName, admit.request()));
        if (outcome instanceof VmDecisions.UidExhausted exhausted) {
          return writeStatus(vm, VmStatuses.uidExhausted(vm, exhausted.problem(), now), context);
        }
        if (outcome instanceof VmDecisions.Unplaced unplaced) {
          return writeStatus(vm, VmStatuses.unplaced(vm, unplaced.entry(), unplaced.placement(), now), context);
        }
      } else if (decision instanceof VmDecisions.Claim claim) {
        // the claim first: no UID reaches a status or a pod without it (the API server's name uniqueness decides);
        // the pod's identity is applied meanwhile (it names no UID)
        if (pod == null && identity == null) {
          identity = applyIdentity(vm, context);
        }
        if (claim(vm, claim.entry(), pod == null) == null) {
          // another VM's claim holds that UID: the next admission hands out another one
          return UpdateControl.<VfioVm>noUpdate().rescheduleAfter(100);
        }
      } else if (decision instanceof VmDecisions.LeftoverPod left) {
        if (named.getMetadata().getDeletionTimestamp() == null) {
          client.resource(named).delete();
        }
        VfioVmStatus status = VmStatuses.placed(vm, left.entry(), podKey, null, now);
        status.setMessage("placed on node " + left.entry().node() + "; node pod " + podKey + " of an earlier VfioVm "
            + "of this name is being deleted first (its host UID and budget stay held until it is gone)");
        return writeStatus(vm, status, context);
      } else if (decision instanceof VmDecisions.NodeGone gone) {
        quarantineIfVanished(vm, observation, now);
        return writeStatus(vm, VmStatuses.nodeGone(vm, gone.entry(), now), context);
      } else if (decision instanceof VmDecisions.NodeUnusable unusable) {
        quarantineIfVanished(vm, observation, now);
        return writeStatus(vm, VmStatuses.nodeUnusable(vm, unusable.entry(), podKey, unusable.pod(), unusable.why(), now),
            context);
      } else if (decision instanceof VmDecisions.CreatePod create) {
        quarantineIfVanished(vm, observation, now);
        SpecValidation.Plan plan = create.plan();
        UidClaims.Claim claimed = claimOf(vm, create.entry());
        if (claimed != null && !claimed.hotplugged().isEmpty()) {
          // a new node pod boots with the boot devices; hot-plugged ones are plugged again once it runs
          plan = plan.withResources(plan.memoryBytes(), claimed.bootLimitBytes(), claimed.bootDevices());
          devicePodsOf(vm).forEach(p -> client.resource(p).withGracePeriod(AttachmentPodShape.GRACE_SECONDS).delete());
        }
        Pod created = createPod(vm, create.entry(), plan, podKey, context, identity);
        return writeStatus(vm, VmStatuses.placed(vm, create.entry(), podKey, created, now), context);
      } else if (decision instanceof VmDecisions.ObservePod observe) {
        Hotplugged devices = validation.valid() ? hotplug(vm, observe.entry(), observe.pod(), podKey) : null;
        Ledger.Entry entry = devices == null ? observe.entry() : devices.plan().entry();
        VfioVmStatus status = VmStatuses.fromPod(vm, entry, podKey, observe.pod(), now);
        if (devices != null && devices.shown()) {
          status = VmStatuses.withDevices(vm, status, devices.view(), devices.desired(), now);
        }
        return writeStatus(vm, VmStatuses.withDrift(vm, status, observe.drift(), now), context);
      } else {
        throw new IllegalStateException("decide() never returns " + decision);
      }
    }
  }

  /** What {@link #hotplug} did: the plan, the device view for the status, and whether to show it. */
  record Hotplugged(Hotplug.Plan plan, List<dev.vfiovm.api.DeviceStatus> view, List<String> desired, boolean shown) {}

  /** The VM's attachment and detach pods (its own, by metadata.uid), from the cache. */
  private List<Pod> devicePodsOf(VfioVm vm) {
    if (devicePods == null) {
      return List.of();
    }
    return devicePods.list().filter(p -> ownPod(vm, p)).toList();
  }

  /**
   * Hot-plug (issue 14): re-plans the placed VM's devices against spec.devices ({@link Hotplug#plan}, under the
   * ledger's lock), writes an admitted change to the UID claim (hot-plugged devices, the new limit: a restarted
   * operator rebuilds them; on failure the ledger entry is put back), then creates the attachment pods of the
   * admitted plugs and the detach pods of removed boot-time devices, and deletes the attachment pods of removed
   * hot-plugged devices. Null when the VM has no readable claim.
   */
  private Hotplugged hotplug(VfioVm vm, Ledger.Entry entry, Pod nodePod, String podKey) {
    UidClaims.Claim claim = claimOf(vm, entry);
    if (claim == null) {
      return null;
    }
    String key = NodePodShape.vmKey(vm);
    dev.vfiovm.api.NodeAgentReport report = VmStatuses.report(nodePod);
    boolean deleting = nodePod.getMetadata().getDeletionTimestamp() != null;
    boolean running = !deleting && report != null && report.getPhase() == dev.vfiovm.api.NodeAgentReport.AgentPhase.Running
        && !"Failed".equals(nodePod.getStatus() == null ? null : nodePod.getStatus().getPhase());
    List<dev.vfiovm.api.DeviceStatus> reported = report == null ? List.of() : report.getDevices();
    List<String> boot = claim.bootDevices();
    Set<String> present = new HashSet<>();
    reported.forEach(d -> present.add(d.getPciAddress()));
    if (running && reported.isEmpty()) {
      present.addAll(boot); // an agent that lists no device reports Running only with every boot device present
    }
    List<Pod> ownDevicePods = devicePodsOf(vm);
    Map<String, Pod> attachments = new java.util.HashMap<>();
    Map<String, Pod> detaches = new java.util.HashMap<>();
    for (Pod p : ownDevicePods) {
      AttachmentPodShape.deviceOf(p).ifPresent(d -> (AttachmentPodShape.isDetach(p) ? detaches : attachments).put(d, p));
    }
    List<String> desired = vm.getSpec().getDevices().stream().map(dev.vfiovm.api.DeviceSpec::getPciAddress).toList();
    if (claim.hotplugged().isEmpty() && ownDevicePods.isEmpty() && new HashSet<>(desired).equals(new HashSet<>(boot))) {
      // nothing hot-plugged, nothing to plug or unplug (every VM, almost always): no re-plan, no scan of the
      // book under its lock
      Hotplug.Plan none = new Hotplug.Plan(entry, List.of(), List.of(), List.of(), List.of(), List.of(), List.of());
      List<dev.vfiovm.api.DeviceStatus> view = VmStatuses.devices(reported, none, desired, boot, running, Map.of(), podKey);
      boolean shown = !desired.isEmpty() || VmStatuses.condition(vm.getStatus(), VmStatuses.DEVICES_READY) != null;
      return new Hotplugged(none, view, desired, shown);
    }
    VfioVmSpec placedSpec = claim.spec() != null ? claim.spec() : vm.getSpec();
    SpecValidation.Plan placedPlan = VmDecisions.planOf(placedSpec, entry, settings.memlockOverheadBytes());
    Node node = nodes.list().filter(n -> n.getMetadata().getName().equals(entry.node())).findFirst().orElse(null);
    NodeBudget budget = node == null ? null : NodeBudget.of(node, settings.hostReserveBytes());
    boolean iommufd = NodePodShape.hotpluggable(placedSpec.getDmaBackend(), boot);
    Hotplug.Input[] used = new Hotplug.Input[1];
    Hotplug.Plan plan = ledger.replan(key, others -> {
      Ledger.Entry held = ledger.get(key);
      used[0] = new Hotplug.Input(held, claim.bootLimitBytes(), placedPlan.memoryBytes(), placedSpec.isViommu(), boot,
          claim.hotplugged(), desired, running, iommufd, present, attachments.keySet(),
          report == null ? null : report.getMemlockLimitBytes(), budget, others);
      return Hotplug.plan(used[0]);
    }, p -> p.changes(used[0]) ? p.entry() : null);
    if (plan == null) {
      return null;
    }
    if (plan.changes(used[0])) {
      try {
        Lease updated = client.leases().inNamespace(settings.nodePodNamespace()).withName(UidClaims.name(entry.hostUid()))
            .edit(l -> {
              l.getMetadata().setAnnotations(UidClaims.hotplugAnnotations(l.getMetadata().getAnnotations(),
                  claim.withHotplug(plan.entry(), plan.hotplugged()), settings.nodePodNamespace()));
              return l;
            });
        claims.handleRecentResourceUpdate(ResourceID.fromResource(updated), updated, updated);
      } catch (RuntimeException e) {
        ledger.revert(key, plan.entry(), used[0].held());
        throw e;
      }
      if (!plan.released().isEmpty() || plan.entry().memlockLimitBytes() < used[0].held().memlockLimitBytes()) {
        wakeWaiting();
      }
    }
    String ns = settings.nodePodNamespace();
    for (Hotplug.Plug plug : plan.plug()) {
      if (attachments.containsKey(plug.device())) {
        continue;
      }
      Pod pod = AttachmentPodShape.attachment(vm, entry.hostUid(), entry.node(), plug.device(), plug.memlockBytes(),
          plug.unplugMemlockBytes(), settings);
      Pod created = createIfAbsent(pod);
      if (created != null) {
        attachments.put(plug.device(), created);
        events.normal(vm, Reason.DevicePlugging.name(), "plugging device " + plug.device() + ": attachment pod " + ns
            + "/" + pod.getMetadata().getName() + " created on node " + entry.node() + "; memlock limit "
            + Quantities.human(plug.memlockBytes()) + " counted against the node's budget");
      }
    }
    for (String device : plan.unplug()) {
      Pod pod = attachments.get(device);
      if (pod != null && pod.getMetadata().getDeletionTimestamp() == null) {
        client.resource(pod).delete();
        events.normal(vm, Reason.DeviceUnplugging.name(), "unplugging device " + device + ": attachment pod " + ns + "/"
            + pod.getMetadata().getName() + " deleted; device and budget are released once the node agent reports it"
            + " gone and the pod is gone");
      }
    }
    for (Hotplug.Plug detach : plan.detach()) {
      if (detaches.containsKey(detach.device())) {
        continue;
      }
      Pod pod = AttachmentPodShape.detach(vm, entry.hostUid(), entry.node(), detach.device(), detach.unplugMemlockBytes(),
          settings);
      Pod created = createIfAbsent(pod);
      if (created != null) {
        detaches.put(detach.device(), created);
        events.normal(vm, Reason.DeviceUnplugging.name(), "unplugging boot-time device " + detach.device()
            + ": detach pod " + ns + "/" + pod.getMetadata().getName() + " created; the kubelet keeps the device"
            + " allocated to node pod " + podKey + " until it ends, so it stays counted as this VM's until then");
      }
    }
    for (String device : plan.released()) {
      events.normal(vm, Reason.DeviceUnplugged.name(), "device " + device + " unplugged and released: it, and "
          + "its share of the memlock limit, are free on node " + entry.node());
    }
    Map<String, VmStatuses.DevicePod> podView = new java.util.HashMap<>();
    detaches.forEach((d, p) -> podView.put(d, devicePod(p)));
    attachments.forEach((d, p) -> podView.put(d, devicePod(p)));
    List<dev.vfiovm.api.DeviceStatus> view = VmStatuses.devices(reported, plan, desired, boot, running, podView, podKey);
    boolean shown = !desired.isEmpty() || !boot.isEmpty() || !plan.hotplugged().isEmpty()
        || VmStatuses.condition(vm.getStatus(), VmStatuses.DEVICES_READY) != null;
    return new Hotplugged(plan, view, desired, shown);
  }

  private static VmStatuses.DevicePod devicePod(Pod p) {
    String phase = p.getStatus() == null ? null : p.getStatus().getPhase();
    String message = p.getStatus() == null || p.getStatus().getContainerStatuses() == null ? null
        : p.getStatus().getContainerStatuses().stream()
            .filter(cs -> cs.getState() != null && cs.getState().getTerminated() != null)
            .map(cs -> cs.getState().getTerminated().getMessage()).filter(Objects::nonNull).findFirst().orElse(null);
    return new VmStatuses.DevicePod(p.getMetadata().getNamespace() + "/" + p.getMetadata().getName(), phase, message,
        p.getMetadata().getDeletionTimestamp() != null);
  }

  /** Creates the pod; null when one of its name exists already (the cache lagging). */
  private Pod createIfAbsent(Pod pod) {
    try {
      Pod created = client.resource(pod).create();
      devicePods.handleRecentResourceCreate(ResourceID.fromResource(created), created);
      return created;
    } catch (KubernetesClientException e) {
      if (e.getCode() == 409) {
        return null;
      }
      throw e;
    }
  }

  private VmDecisions.Observation observe(VfioVm vm, SpecValidation.Result validation, Pod pod, boolean leftover) {
    String key = NodePodShape.vmKey(vm);
    Ledger.Entry entry = ledger.get(key);
    boolean placed = entry != null && entry.node() != null;
    UidClaims.Claim claim = placed ? claimOf(vm, entry) : null;
    VfioVmSpec placedSpec = claim == null ? null : claim.spec() != null ? claim.spec() : vm.getSpec();
    Phase phase = vm.getStatus() == null ? null : vm.getStatus().getPhase();
    boolean vanished = placed && pod == null
        && (lastSeenPods.containsKey(key) || phase == Phase.Starting || phase == Phase.Running);
    Node node = placed ? nodes.list().filter(n -> n.getMetadata().getName().equals(entry.node())).findFirst().orElse(null)
        : null;
    NodeBudget.Unusable unusable = node == null ? null
        : NodeBudget.of(node, 0).unusableForPlaced(NodePodShape.DEFAULT_TOLERATIONS);
    return new VmDecisions.Observation(vm, validation, entry, placedSpec, pod, leftover, vanished, node != null, unusable);
  }

  /** Asks the ledger for a UID and a node (persisting a moved hand-out cursor). */
  private Ledger.Admission admit(VfioVm vm, ResourceID id, String podName, Placement.Request request) {
    Budgets budgets = budgets();
    Set<Long> heldElsewhere = uidsHeldElsewhere(vm, podName);
    releaseProvenByAllAudits();
    Long cursorBefore = ledger.state().cursor();
    // the older VMs that wait are served first: their requests are reserved before this one is placed
    List<Placement.Request> older = waitingOldestFirst().stream()
        .filter(w -> vms.get(w.getKey()).map(o -> AGE.compare(o, vm) < 0).orElse(false))
        .map(Map.Entry::getValue)
        .toList();
    Ledger.Admission admission = ledger.admit(NodePodShape.vmKey(vm), request, budgets.nodes(), heldElsewhere, older,
        budgets::podCounted);
    if (!Objects.equals(cursorBefore, ledger.state().cursor())) {
      saveCursorLater(); // the hand-out cursor survives a restart
    }
    return admission;
  }

  /** The pod vanished behind the operator's back (force-deleted, garbage-collected with its node). */
  private void quarantineIfVanished(VfioVm vm, VmDecisions.Observation observation, Instant now) {
    if (observation.podVanished()) {
      quarantineIfUnproven(vm, observation.entry(), vm.getStatus() == null ? null : vm.getStatus().getPhase(), now);
      lastSeenPods.remove(NodePodShape.vmKey(vm));
    }
  }

  /**
   * Starts the server-side applies of the node pod's identity (ServiceAccount, Role, RoleBinding), side by side:
   * they are independent of each other (a RoleBinding may name a Role not made yet) and of the UID claim, so the
   * reconcile started them with the claim's create - one round trip before the pod's, not four. An identity
   * applied for a claim that is then lost is the VM's all the same (deleted with it).
   */
  private List<java.util.concurrent.CompletableFuture<HasMetadata>> applyIdentity(VfioVm vm, Context<VfioVm> context) {
    return NodePodIdentity.desired(vm, settings).all().stream()
        .map(object -> java.util.concurrent.CompletableFuture.supplyAsync(() -> context.getClient().resource(object)
            .inNamespace(settings.nodePodNamespace()).fieldManager(FIELD_MANAGER).forceConflicts().serverSideApply(),
            identityApplies))
        .toList();
  }

  /**
   * The node pod's own identity first (its ServiceAccount may only get/patch this one pod; the applies
   * {@code started} with the claim, else started here), then the pod.
   */
  private Pod createPod(VfioVm vm, Ledger.Entry entry, SpecValidation.Plan plan, String podKey,
      Context<VfioVm> context, List<java.util.concurrent.CompletableFuture<HasMetadata>> started) {
    List<java.util.concurrent.CompletableFuture<HasMetadata>> applies = started != null ? started
        : applyIdentity(vm, context);
    for (var apply : applies) {
      try {
        apply.join();
      } catch (java.util.concurrent.CompletionException e) {
        throw e.getCause() instanceof RuntimeException r ? r : e;
      }
    }
    // the dependent creates the pod (precondition: placed and claimed); its create puts it into the cache
    NodePodDependent.put(context, new NodePodDependent.Input(entry, plan, settings));
    context.managedWorkflowAndDependentResourceContext().reconcileManagedWorkflow()
        .throwAggregateExceptionIfErrorsPresent();
    ResourceID podId = new ResourceID(NodePodShape.podName(vm.getMetadata().getNamespace(), vm.getMetadata().getName()),
        settings.nodePodNamespace());
    Pod created = pods.get(podId).orElseThrow(() -> new IllegalStateException("node pod " + podKey
        + " was not created (the workflow's precondition was not met)"));
    if (vm.getStatus() != null && vm.getStatus().getPhase() == Phase.Placed) {
      // no phase change follows (so no Placed event saying so): the creation gets its own event
      events.normal(vm, Reason.NodePodCreated.name(), "node pod " + podKey + " created on node " + entry.node()
          + " for host UID " + entry.hostUid());
    }
    return created;
  }

  /**
   * A reconcile that threw (API error, missing namespace, ...) says so while JOSDK retries (the retry of
   * {@link OperatorSettings#retryMaxAttempts}): the message, the Ready condition (reason ReconcileError) and a
   * Warning event when the error is new.
   */
  @Override
  public ErrorStatusUpdateControl<VfioVm> updateErrorStatus(VfioVm vm, Context<VfioVm> context, Exception e) {
    String cause = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
    cause = cause.length() > 500 ? cause.substring(0, 500) : cause;
    VfioVmStatus before = vm.getStatus();
    VfioVmStatus status = VmStatuses.reconcileError(vm, cause, Instant.now());
    Condition readyBefore = VmStatuses.condition(before, VfioVmStatus.READY);
    if (readyBefore == null || !Reason.ReconcileError.name().equals(readyBefore.getReason())
        || !Objects.equals(readyBefore.getMessage(), VmStatuses.condition(status, VfioVmStatus.READY).getMessage())) {
      events.warning(vm, Reason.ReconcileError.name(), status.getMessage());
    }
    vm.setStatus(status);
    log.warn("{}: reconcile failed: {}", NodePodShape.vmKey(vm), cause);
    return ErrorStatusUpdateControl.patchStatus(vm);
  }

  /** The VM's claim of its entry's UID from the cache, or null. */
  private UidClaims.Claim claimOf(VfioVm vm, Ledger.Entry entry) {
    UidClaims.Claim claim = claims.get(new ResourceID(UidClaims.name(entry.hostUid()), settings.nodePodNamespace()))
        .map(UidClaims::parse).orElse(null);
    return claim != null && claim.of(vm) ? claim : null;
  }

  /**
   * Claims the entry's UID for the VM with a plain create. Returns the entry the claim holds; null when another
   * VM's claim holds the UID and {@code mayYield} (nothing of it exists yet): the ledger entry is then dropped.
   */
  private Ledger.Entry claim(VfioVm vm, Ledger.Entry entry, boolean mayYield) {
    String ns = settings.nodePodNamespace();
    String key = NodePodShape.vmKey(vm);
    try {
      Lease created = client.leases().inNamespace(ns)
          .resource(UidClaims.toLease(UidClaims.of(vm, entry), ns)).create();
      claims.handleRecentResourceCreate(ResourceID.fromResource(created), created);
      return entry;
    } catch (KubernetesClientException e) {
      if (e.getCode() != 409) {
        throw e;
      }
    }
    Lease existing = client.leases().inNamespace(ns).withName(UidClaims.name(entry.hostUid())).get();
    UidClaims.Claim held = existing == null ? null : UidClaims.parse(existing);
    if (held != null && held.of(vm)) {
      claims.handleRecentResourceUpdate(ResourceID.fromResource(existing), existing, existing);
      ledger.restore(key, held.entry());
      return held.entry();
    }
    claimedElsewhere.add(entry.hostUid());
    if (!mayYield) {
      log.error("{}: host UID {} of its running node pod is claimed by {} (Lease {}/{}); the operator keeps it "
          + "held for this VM", key, entry.hostUid(), held == null ? "an unreadable claim" : held.vmKey(), ns,
          UidClaims.name(entry.hostUid()));
      return entry;
    }
    log.warn("{}: host UID {} is claimed by {} already; handing out another one", key, entry.hostUid(),
        held == null ? "an unreadable claim" : held.vmKey());
    ledger.release(key);
    return null;
  }

  /** Deletes the VM's claim (only its own). */
  private void deleteClaim(VfioVm vm, Ledger.Entry entry) {
    String name = UidClaims.name(entry.hostUid());
    Lease lease = client.leases().inNamespace(settings.nodePodNamespace()).withName(name).get();
    UidClaims.Claim claim = lease == null ? null : UidClaims.parse(lease);
    if (claim != null && claim.of(vm)) {
      client.resource(lease).delete();
    }
  }

  /**
   * UIDs the VM may not get: carried by node pods other than its own (other VMs' and leftovers'), and claimed
   * by another VM.
   */
  private Set<Long> uidsHeldElsewhere(VfioVm vm, String podName) {
    Set<Long> held = pods.list()
        .filter(p -> !(p.getMetadata().getName().equals(podName) && ownPod(vm, p)))
        .map(VfioVmReconciler::hostUidOf)
        .filter(Objects::nonNull)
        .collect(Collectors.toCollection(HashSet::new));
    // per admission over every claim: read the holder from the name and two annotations, no JSON
    claims.list().forEach(l -> {
      Long uid = UidClaims.uidHeldByOther(l, vm);
      if (uid != null) {
        held.add(uid);
      }
    });
    claimedElsewhere.removeIf(uid -> claims.get(new ResourceID(UidClaims.name(uid), settings.nodePodNamespace()))
        .isPresent());
    held.addAll(claimedElsewhere);
    return held;
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
    }
    context.managedWorkflowAndDependentResourceContext().put(OperatorSettings.class, settings);
    // the VM's attachment and detach pods go with it (the kubelet frees their devices when they end); the release
    // below waits for them too
    List<Pod> devicesLeft = devicePodsOf(vm);
    for (Pod p : devicesLeft) {
      if (p.getMetadata().getDeletionTimestamp() == null) {
        client.resource(p).delete();
      }
    }
    // the dependent deletes the pod; its postcondition (no pod on the API server) gates every release below
    WorkflowCleanupResult deletion = context.managedWorkflowAndDependentResourceContext().cleanupManageWorkflow();
    deletion.throwAggregateExceptionIfErrorsPresent();
    if (!deletion.allPostConditionsMet() || !devicesLeft.isEmpty()) {
      if (live != null && live.getMetadata().getDeletionTimestamp() == null
          && !deletion.getDeleteCalledOnDependents().isEmpty()) {
        events.normal(vm, Reason.DeletingNodePod.name(), "deleting node pod " + podKey
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
    if (entry != null && entry.node() != null) {
      deleteClaim(vm, entry);
    }
    Ledger.Entry released = ledger.release(key);
    lastSeenPods.remove(key);
    staleSince.remove(key);
    phaseBeforeDeletion.remove(key);
    if (released != null) {
      events.normal(vm, Reason.Released.name(), "node pod gone; "
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
      String vmKey = vmKeyOf(object);
      if (vmKey != null && !vmKeys.contains(vmKey)) {
        log.info("deleting {} {}/{}: its VfioVm {} no longer exists", object.getKind(), ns,
            object.getMetadata().getName(), vmKey);
        client.resource(object).delete();
      }
    }
  }

  /** Wakes the waiting VMs that may be placed now (oldest first, each taking its share): no thundering herd. */
  private void wakeWaiting() {
    Set<ResourceID> wake = new HashSet<>(toWake());
    wake.addAll(waitingForDevices());
    retrigger.fire(wake);
  }

  /** Placed VMs whose hot-plug waits for budget or a device another VM holds (DevicesReady False so). */
  private Set<ResourceID> waitingForDevices() {
    if (vms == null) {
      return Set.of();
    }
    Set<String> reasons = Set.of(Reason.InsufficientBudget.name(), Reason.DeviceConflict.name());
    return vms.list().filter(v -> {
      Condition c = VmStatuses.condition(v.getStatus(), VmStatuses.DEVICES_READY);
      return c != null && VmStatuses.FALSE.equals(c.getStatus()) && reasons.contains(c.getReason());
    }).map(ResourceID::fromResource).collect(Collectors.toSet());
  }

  private Set<ResourceID> toWake() {
    List<Map.Entry<ResourceID, Placement.Request>> waiters = waitingOldestFirst();
    if (waiters.isEmpty()) {
      return Set.of();
    }
    Map<String, ResourceID> ids = new java.util.HashMap<>();
    List<Map.Entry<String, Placement.Request>> byKey = waiters.stream().map(w -> {
      String key = w.getKey().getNamespace().orElse("") + "/" + w.getKey().getName();
      ids.put(key, w.getKey());
      return Map.entry(key, w.getValue());
    }).toList();
    Budgets budgets = budgets();
    return ledger.mayFitNow(byKey, budgets.nodes(), budgets::podCounted).stream().map(ids::get)
        .collect(Collectors.toSet());
  }

  /**
   * A node changed: the waiters that may fit now, and those whose reason for waiting changed (a status that
   * stays true: e.g. NoMatchingNode becoming InsufficientBudget).
   */
  private Set<ResourceID> toWakeOnNodeChange(Node node) {
    Set<ResourceID> wake = new HashSet<>(toWake());
    // and every VM placed there, whatever its cached phase: one that ended Failed for want of the node (gone,
    // NotReady, tainted) may run again, and one whose reconcile is in flight, deciding on the node as it was,
    // may be about to end so (its status write not in the cache yet): JOSDK reconciles it again afterwards
    String name = node.getMetadata().getName();
    vms.list()
        .filter(v -> {
          Ledger.Entry e = ledger.get(NodePodShape.vmKey(v));
          return e != null && name.equals(e.node());
        })
        .forEach(v -> wake.add(ResourceID.fromResource(v)));
    List<NodeBudget> budgets = nodeBudgets();
    Map<String, Placement.Load> loads = ledger.loads();
    for (Map.Entry<ResourceID, Placement.Request> w : waitingOldestFirst()) {
      Placement.Decision now = Placement.place(w.getValue(), budgets, loads);
      String reason = now.isPlaced() ? null : Reason.of(now.reason()).name();
      Condition placed = vms.get(w.getKey()).map(v -> VmStatuses.condition(v.getStatus(), VfioVmStatus.PLACED))
          .orElse(null);
      if (placed == null || !Objects.equals(placed.getReason(), reason)) {
        wake.add(w.getKey());
      }
    }
    return wake;
  }

  /**
   * The VMs that wait for placement, oldest first (creation, then namespace/name), with their requests: read
   * from the primary cache (their status says Pending and the ledger places them nowhere), not kept by hand.
   */
  List<Map.Entry<ResourceID, Placement.Request>> waitingOldestFirst() {
    if (vms == null) {
      return List.of();
    }
    return vms.list()
        .filter(v -> v.getMetadata().getDeletionTimestamp() == null)
        .filter(v -> v.getStatus() != null && v.getStatus().getPhase() == Phase.Pending)
        .filter(v -> {
          Ledger.Entry e = ledger.get(NodePodShape.vmKey(v));
          return e == null || e.node() == null;
        })
        .sorted(AGE)
        .map(v -> {
          SpecValidation.Result r = SpecValidation.validate(v.getSpec(), settings.memlockOverheadBytes());
          return r.valid() ? Map.entry(ResourceID.fromResource(v), VmDecisions.request(v, r.plan(), settings)) : null;
        })
        .filter(Objects::nonNull)
        .toList();
  }

  /**
   * Rebuilds the ledger once, before the first decision (JOSDK has synced the caches), from the UID claims
   * alone - never from VfioVm statuses, which tenants may write. A claim of a VM that no longer exists (by
   * metadata.uid) stays held while a node pod carries its UID, else it is released (quarantine rules as on
   * deletion). A VM with its own node pod but no claim (an operator from before the claims) is claimed from
   * that pod.
   */
  private synchronized void ensureSeeded() {
    if (seeded) {
      return;
    }
    Map<ResourceID, VfioVm> byId = vms.list().collect(Collectors.toMap(ResourceID::fromResource, v -> v, (a, b) -> a));
    Set<Long> carriedByPods = pods.list().map(VfioVmReconciler::hostUidOf).filter(Objects::nonNull)
        .collect(Collectors.toSet());
    List<UidClaims.Claim> all = claims.list()
        .sorted(Comparator.comparing((Lease l) -> l.getMetadata().getCreationTimestamp(),
            Comparator.nullsLast(Comparator.naturalOrder())))
        .map(l -> {
          UidClaims.Claim c = UidClaims.parse(l);
          if (c == null) {
            log.warn("Lease {}/{} is no readable UID claim; its UID stays out of the hand-out",
                settings.nodePodNamespace(), l.getMetadata().getName());
          }
          return c;
        })
        .filter(Objects::nonNull)
        .toList();
    int restored = 0;
    List<UidClaims.Claim> orphans = new java.util.ArrayList<>();
    for (UidClaims.Claim claim : all) {
      VfioVm vm = byId.get(new ResourceID(claim.vmName(), claim.vmNamespace()));
      if (vm != null && claim.of(vm) && ledger.get(claim.vmKey()) == null && ledger.restore(claim.vmKey(), claim.entry())) {
        restored++;
      } else if (carriedByPods.contains(claim.hostUid())) {
        ledger.restore(orphanKey(claim), claim.entry());
        log.warn("UID claim {} of {} (metadata.uid {}): that VfioVm is gone but a node pod still runs as the UID; "
            + "UID and {} of node {}'s budget stay held until it is gone", UidClaims.name(claim.hostUid()),
            claim.vmKey(), claim.vmUid(), Quantities.human(claim.memlockLimitBytes()), claim.node());
      } else {
        orphans.add(claim);
      }
    }
    for (VfioVm vm : byId.values()) {
      String key = NodePodShape.vmKey(vm);
      if (ledger.get(key) != null) {
        continue;
      }
      Pod own = pods.get(new ResourceID(NodePodShape.podName(vm.getMetadata().getNamespace(), vm.getMetadata().getName()),
          settings.nodePodNamespace())).orElse(null);
      UidClaims.Claim fromPod = own == null || !vmOfPod(own).contains(ResourceID.fromResource(vm)) ? null
          : UidClaims.fromPod(vm, own);
      if (fromPod != null && ledger.restore(key, fromPod.entry()) && claim(vm, fromPod.entry(), false) != null) {
        log.info("{}: claimed host UID {} from its existing node pod (no claim yet)", key, fromPod.hostUid());
        restored++;
      }
    }
    UidQuarantine.State state = quarantineStore.load();
    ledger.restoreState(state);
    for (UidClaims.Claim orphan : orphans) {
      releaseOrphanClaim(orphan, orphanKey(orphan), null);
    }
    log.info("ledger rebuilt from the UID claims: {} VfioVms hold host UIDs of range {}; {} UIDs quarantined {}",
        restored, ledger.range(), ledger.quarantined().size(), ledger.quarantined());
    try {
      deleteOrphanIdentities(client);
    } catch (RuntimeException e) {
      log.warn("orphaned node-pod identities not cleaned up: {}", e.getMessage());
    }
    seeded = true;
    sweepOrphanPods();
  }

  /**
   * Persists the ledger's state (quarantine and cursor), the snapshot taken under the same lock as the write, so
   * of two saves the later one always writes the newer state.
   */
  private void saveState() {
    synchronized (stateSaves) {
      quarantineStore.save(ledger.state());
    }
  }

  /**
   * Persists the hand-out cursor off the reconcile thread, one write for all the hand-outs since the last one:
   * not on the way to the node pod, and a burst of admissions costs a few writes, not one each. A cursor lost
   * in a crash only lets a UID freed just before come back sooner (the UID claims, not the cursor, keep UIDs
   * unique; quarantines are saved at once, by {@link #saveState}).
   */
  private void saveCursorLater() {
    if (cursorSavePending.compareAndSet(false, true)) {
      audits.execute(() -> {
        cursorSavePending.set(false);
        try {
          saveState();
        } catch (RuntimeException e) {
          log.warn("UID hand-out cursor not persisted (the next hand-out retries): {}", e.getMessage());
        }
      });
    }
  }

  /** The ledger key of a claim whose VM is gone (no VM key has an '@'). */
  private static String orphanKey(UidClaims.Claim claim) {
    return claim.vmKey() + "@" + claim.vmUid();
  }

  /** A node pod is gone: releases the claims of deleted VMs that only it still held. */
  private void releaseOrphanClaims(Pod gone, Pod lastSeen) {
    Long uid = hostUidOf(gone);
    if (uid == null || !seeded) {
      return;
    }
    if (carriedByAPod(uid)) {
      return;
    }
    String podKey = orphanPodKey(gone);
    Ledger.Entry orphanPod = ledger.get(podKey);
    if (orphanPod != null) {
      boolean nodeExists = nodes.list().anyMatch(n -> n.getMetadata().getName().equals(orphanPod.node()));
      String reason = UidQuarantine.unprovenFree(lastSeen, Phase.Terminating, nodeExists);
      if (reason != null) {
        ledger.quarantine(new UidQuarantine.Held(orphanPod.hostUid(), orphanPod.node(), Instant.now().toString(),
            podKey, reason));
        try {
          saveState();
        } catch (RuntimeException e) {
          log.warn("UID quarantine not persisted: {}", e.getMessage());
        }
      }
      ledger.release(podKey);
      log.info("orphan node pod {} is gone: host UID {} {}", podKey, orphanPod.hostUid(),
          reason == null ? "released" : "quarantined (" + reason + ")");
    }
    ledger.snapshot().forEach((key, entry) -> {
      if (key.contains("@") && entry.hostUid() == uid) {
        releaseOrphanClaimOf(uid, key, lastSeen);
      }
    });
    wakeWaiting();
  }

  /**
   * Releases a claim whose VM is gone and whose node pod is gone: quarantines its UID unless proven free (its
   * phase is unknown: counted as "may have run"), deletes the claim, returns the budget.
   */
  private void releaseOrphanClaim(UidClaims.Claim claim, String key, Pod lastSeen) {
    try {
      boolean nodeExists = nodes.list().anyMatch(n -> n.getMetadata().getName().equals(claim.node()));
      String reason = UidQuarantine.unprovenFree(lastSeen, Phase.Terminating, nodeExists);
      if (reason != null) {
        ledger.quarantine(new UidQuarantine.Held(claim.hostUid(), claim.node(), Instant.now().toString(),
            claim.vmKey(), reason));
        saveState();
      }
      client.leases().inNamespace(settings.nodePodNamespace()).withName(UidClaims.name(claim.hostUid())).delete();
      ledger.release(key);
      log.info("released the UID claim {} of deleted VfioVm {}{}", UidClaims.name(claim.hostUid()), claim.vmKey(),
          reason == null ? "" : "; UID quarantined (" + reason + ")");
    } catch (RuntimeException e) {
      log.warn("UID claim {} of deleted VfioVm {} not released: {}", UidClaims.name(claim.hostUid()), claim.vmKey(),
          e.getMessage());
    }
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

  /**
   * Writes the status if it changed - at once, or, for a state a VM passes through on its way to Running
   * ({@link VmStatuses#settleDelayMillis}), once it has lasted {@link #STATUS_SETTLE_MILLIS}: the reconcile is
   * rescheduled for then, and a later state written at once (Running, Failed, ...) replaces it unwritten.
   */
  private UpdateControl<VfioVm> writeStatus(VfioVm vm, VfioVmStatus status, Context<VfioVm> context) {
    String key = NodePodShape.vmKey(vm);
    if (Serialization.asJson(status).equals(Serialization.asJson(vm.getStatus()))) {
      staleSince.remove(key);
      return UpdateControl.noUpdate();
    }
    Instant now = Instant.now();
    // the clock runs per desired phase: each passing state gets the settle time of its own
    Stale stale = staleSince.compute(key, (k, old) -> old != null && old.phase() == status.getPhase() ? old
        : new Stale(status.getPhase(), now));
    long wait = VmStatuses.settleDelayMillis(vm.getStatus(), status, stale.since(), now, STATUS_SETTLE_MILLIS);
    if (wait > 0) {
      return UpdateControl.<VfioVm>noUpdate().rescheduleAfter(wait);
    }
    staleSince.remove(key);
    patchStatus(vm, status, context);
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
    boolean refusal = Reason.isRefusal(reasonAfter);
    if (after.getPhase() != was) {
      boolean bad = after.getPhase() == Phase.Failed || (after.getPhase() == Phase.Pending && refusal);
      String reason = refusal ? reasonAfter : after.getPhase().name();
      if (bad) {
        events.warning(vm, reason, after.getPhase() + ": " + after.getMessage());
      } else {
        // Placed is written right after the node pod's create: its event names the UID too (no NodePodCreated)
        String uid = after.getPhase() == Phase.Placed && after.getHostUid() != null
            ? "host UID " + after.getHostUid() + ", " : "";
        events.normal(vm, reason, after.getPhase() + ": " + uid + after.getMessage());
      }
    } else if (refusal && !Objects.equals(reasonBefore, reasonAfter)) {
      events.warning(vm, reasonAfter, after.getMessage());
    }
    recordDeviceTransitions(vm, before, after);
    Condition driftBefore = VmStatuses.condition(before, VmStatuses.SPEC_APPLIED);
    Condition driftAfter = VmStatuses.condition(after, VmStatuses.SPEC_APPLIED);
    if (driftAfter != null && VmStatuses.FALSE.equals(driftAfter.getStatus())
        && (driftBefore == null || !Objects.equals(driftBefore.getMessage(), driftAfter.getMessage()))) {
      events.warning(vm, driftAfter.getReason(), driftAfter.getMessage());
    }
  }

  /**
   * Events of the devices' states as the status shows them: DeviceAttached (a hot-plugged device the agent reports
   * Attached), DevicePlugFailed, DevicesWaiting (a device waits, or waits for another reason).
   */
  private void recordDeviceTransitions(VfioVm vm, VfioVmStatus before, VfioVmStatus after) {
    Map<String, dev.vfiovm.api.DeviceStatus> was = new java.util.HashMap<>();
    if (before != null) {
      before.getDevices().forEach(d -> was.put(d.getPciAddress(), d));
    }
    for (dev.vfiovm.api.DeviceStatus d : after.getDevices()) {
      dev.vfiovm.api.DeviceStatus old = was.get(d.getPciAddress());
      boolean same = old != null && old.getState() == d.getState() && Objects.equals(old.getReason(), d.getReason());
      if (same || d.getState() == null) {
        continue;
      }
      switch (d.getState()) {
        case Attached -> {
          if (d.isHotplugged()) {
            events.normal(vm, Reason.DeviceAttached.name(), "device " + d.getPciAddress() + " attached"
                + (d.getCdev() == null ? "" : " (" + d.getCdev() + ")") + " and enabled by the guest");
          }
        }
        case Failed -> events.warning(vm, Reason.DevicePlugFailed.name(), "device " + d.getPciAddress() + ": "
            + (d.getReason() == null ? "" : d.getReason() + ": ") + (d.getMessage() == null ? "failed" : d.getMessage()));
        case Waiting -> events.warning(vm, Reason.DevicesWaiting.name(), "device " + d.getPciAddress() + " waits ("
            + d.getReason() + "): " + d.getMessage());
        default -> { }
      }
    }
  }

  // read-only views for metrics
  public Ledger ledger() {
    return ledger;
  }

  /**
   * Every node's budget, with what the other pods bound to it request of its memory (the kubelet's admission
   * arithmetic over the bound-pods informer), so a node pod goes only where the kubelet will admit it.
   */
  public List<NodeBudget> nodeBudgets() {
    return budgets().nodes();
  }

  /**
   * The node budgets and, from the same pass over the bound-pods cache, which pods they count ("NS/NAME"): a
   * placed VM whose node pod is not among them has its pod memory added by the ledger ({@link Ledger#admit}).
   */
  private record Budgets(List<NodeBudget> nodes, Set<String> countedPods, String podNamespace) {
    /** Whether the node pod of the VM {@code vmKey} (NS/NAME) is counted in {@link #nodes}. */
    boolean podCounted(String vmKey) {
      int slash = vmKey.indexOf('/');
      return slash > 0 && countedPods.contains(podNamespace + "/"
          + NodePodShape.podName(vmKey.substring(0, slash), vmKey.substring(slash + 1)));
    }
  }

  private Budgets budgets() {
    if (nodes == null) {
      return new Budgets(List.of(), Set.of(), settings.nodePodNamespace());
    }
    List<Pod> bound = boundPods == null ? List.of() : boundPods.list().toList();
    Map<String, Long> requested = NodeBudget.memoryRequestedByNode(bound);
    Set<String> counted = bound.stream()
        .map(p -> p.getMetadata().getNamespace() + "/" + p.getMetadata().getName()).collect(Collectors.toSet());
    return new Budgets(nodes.list().map(n -> NodeBudget.of(n, settings.hostReserveBytes())
        .withRequestedByOtherPods(requested.getOrDefault(n.getMetadata().getName(), 0L))).toList(), counted,
        settings.nodePodNamespace());
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
    return waitingOldestFirst().stream().map(Map.Entry::getKey).collect(Collectors.toSet());
  }
}
