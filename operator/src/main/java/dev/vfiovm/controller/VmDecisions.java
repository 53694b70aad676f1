package dev.vfiovm.controller;

import dev.vfiovm.api.VfioVm;
import dev.vfiovm.api.VfioVmSpec;
import io.fabric8.kubernetes.api.model.Pod;
import java.util.List;

/**
 * The reconcile's decision, pure: from what one reconcile observed ({@link Observation}) to what to do next
 * ({@link Decision}). {@link VfioVmReconciler} observes, calls {@link #decide}, acts on the result (ledger,
 * claim, pod) and observes again until the decision is one that ends the reconcile; then it writes the status
 * once.
 */
final class VmDecisions {
  private VmDecisions() {}

  /**
   * What a reconcile sees of one VM.
   *
   * @param entry the VM's ledger entry, or null
   * @param placedSpec the spec as placed (from its claim), or null when it has no claim yet
   * @param pod the VM's own node pod, or null
   * @param leftoverPod a pod of the VM's pod name that is not its own (an earlier VM of the same name: its
   *     {@code vfiovm.dev/vm-uid} is another metadata.uid) still exists
   * @param podVanished no pod, but one was seen or the VM's phase says it ran (gone behind the operator's back)
   * @param nodeExists whether the entry's node is in the cluster
   * @param nodeUnusable why the entry's node cannot run its node pod now (NotReady, an untolerated NoExecute
   *     taint: {@link NodeBudget#unusableForPlaced}), or null
   */
  record Observation(VfioVm vm, SpecValidation.Result validation, Ledger.Entry entry, VfioVmSpec placedSpec, Pod pod,
      boolean leftoverPod, boolean podVanished, boolean nodeExists, NodeBudget.Unusable nodeUnusable) {
    Observation(VfioVm vm, SpecValidation.Result validation, Ledger.Entry entry, VfioVmSpec placedSpec, Pod pod,
        boolean leftoverPod, boolean podVanished, boolean nodeExists) {
      this(vm, validation, entry, placedSpec, pod, leftoverPod, podVanished, nodeExists, null);
    }

    boolean placed() {
      return entry != null && entry.node() != null;
    }
  }

  /** What to do. The ones marked "ends" end the reconcile with a status; the others are acted on, then re-decided. */
  sealed interface Decision {}

  /** Ends: the spec is invalid and nothing is placed (an unplaced entry without a pod is released). */
  record Invalid(SpecValidation.Result validation) implements Decision {}

  /** UID and node from the ledger for this request. */
  record Admit(Placement.Request request) implements Decision {}

  /** Ends: no host UID left. */
  record UidExhausted(String problem) implements Decision {}

  /** Ends: no node fits (Pending, it waits holding no UID) or none ever will as the spec stands (Failed). */
  record Unplaced(Ledger.Entry entry, Placement.Decision placement) implements Decision {}

  /** Placed but not claimed yet: claim the UID (Lease) before anything shows it. */
  record Claim(Ledger.Entry entry) implements Decision {}

  /** Ends: the VM's node left the cluster and its pod is gone; it does not move by itself. */
  record NodeGone(Ledger.Entry entry) implements Decision {}

  /**
   * Ends: the VM's node cannot run its node pod now (NotReady, or tainted NoExecute) and the pod is gone or
   * being evicted: no pod is made there (the kubelet would not start it, or the taint manager would evict it
   * again), the VM is Failed with the node's reason while its UID and budget stay held; once the node is usable
   * and the pod gone, the pod is made again on it. {@code pod}: the evicted pod still terminating, or null.
   */
  record NodeUnusable(Ledger.Entry entry, Pod pod, NodeBudget.Unusable why) implements Decision {}

  /** Ends: a leftover pod of an earlier VM of this name holds the pod name: delete it, wait until it is gone. */
  record LeftoverPod(Ledger.Entry entry) implements Decision {}

  /** Ends: create the node pod (identity first) with the plan as placed. */
  record CreatePod(Ledger.Entry entry, SpecValidation.Plan plan) implements Decision {}

  /** Ends: the pod exists; its agent's report is the status, with any spec drift reported. */
  record ObservePod(Ledger.Entry entry, Pod pod, String drift) implements Decision {}

  static Decision decide(Observation o, long memlockOverheadBytes) {
    return decide(o, memlockOverheadBytes, plan -> request(o.vm(), plan));
  }

  private static Decision decide(Observation o, long memlockOverheadBytes,
      java.util.function.Function<SpecValidation.Plan, Placement.Request> requestOf) {
    if (!o.placed()) {
      if (!o.validation().valid()) {
        return new Invalid(o.validation());
      }
      return new Admit(requestOf.apply(o.validation().plan()));
    }
    if (o.placedSpec() == null) {
      return new Claim(o.entry());
    }
    if (o.pod() == null) {
      if (o.leftoverPod()) {
        return new LeftoverPod(o.entry());
      }
      if (!o.nodeExists()) {
        // recreating the pod would only feed the pod garbage collector
        return new NodeGone(o.entry());
      }
      if (o.nodeUnusable() != null) {
        return new NodeUnusable(o.entry(), null, o.nodeUnusable());
      }
      return new CreatePod(o.entry(), planOf(o.placedSpec(), o.entry(), memlockOverheadBytes));
    }
    if (o.pod().getMetadata() != null && o.pod().getMetadata().getDeletionTimestamp() != null
        && o.nodeUnusable() != null) {
      // evicted (by the taint manager, or anyone) from a node that cannot run it: its report is stale
      return new NodeUnusable(o.entry(), o.pod(), o.nodeUnusable());
    }
    return new ObservePod(o.entry(), o.pod(), drift(o.placedSpec(), o.vm(), o.validation()));
  }

  /** The ledger's answer to {@link Admit}: ends, or (placed) null to decide again with the new entry. */
  static Decision admitted(Ledger.Admission admission) {
    if (admission.unplaced()) {
      return new Unplaced(admission.entry(), admission.placement());
    }
    if (!admission.uidAssigned()) {
      return new UidExhausted(admission.uidProblem());
    }
    if (!admission.placed()) {
      return new Unplaced(admission.entry(), admission.placement());
    }
    return null;
  }

  static Placement.Request request(VfioVm vm, SpecValidation.Plan plan) {
    return new Placement.Request(plan.memlockLimitBytes(), plan.devices(), vm.getSpec().getNodeName(),
        vm.getSpec().getNodeSelector(), NodePodShape.deviceResources(vm.getSpec().getDmaBackend(), plan.devices()));
  }

  /**
   * The placement request with everything the settings add to it, built once: the node pod's memory request
   * ({@link NodePodShape#podMemoryBytes}: guest memory + VMM overhead + agent), which the kubelet must admit.
   */
  static Placement.Request request(VfioVm vm, SpecValidation.Plan plan, OperatorSettings settings) {
    return new Placement.Request(plan.memlockLimitBytes(), plan.devices(), vm.getSpec().getNodeName(),
        vm.getSpec().getNodeSelector(), NodePodShape.deviceResources(vm.getSpec().getDmaBackend(), plan.devices()),
        NodePodShape.podMemoryBytes(plan.memoryBytes(), settings), NodePodShape.DEFAULT_TOLERATIONS);
  }

  /** {@link #decide(Observation, long)} with the settings' request ({@link #request(VfioVm, SpecValidation.Plan, OperatorSettings)}). */
  static Decision decide(Observation o, OperatorSettings settings) {
    return decide(o, settings.memlockOverheadBytes(), plan -> request(o.vm(), plan, settings));
  }

  /**
   * The plan of a placed VM: the spec as placed with the limit and devices its entry holds, so a changed
   * {@code --memlock-overhead}, vIOMMU flag or spec edit changes no pod made for it later.
   */
  static SpecValidation.Plan planOf(VfioVmSpec placed, Ledger.Entry entry, long memlockOverheadBytes) {
    SpecValidation.Result validation = SpecValidation.validate(placed, memlockOverheadBytes);
    if (validation.valid()) {
      return validation.plan().withResources(validation.plan().memoryBytes(), entry.memlockLimitBytes(), entry.devices());
    }
    // a spec as placed that today's rules refuse: the memory the held limit was computed from, nothing booted
    int factor = MemlockPolicy.factor(placed != null && placed.isViommu(), entry.devices().size());
    long memory = Math.max(SpecValidation.PAGE_SIZE, (entry.memlockLimitBytes() - memlockOverheadBytes) / factor);
    return new SpecValidation.Plan(memory, entry.memlockLimitBytes(), entry.devices());
  }

  /**
   * A placed VM keeps its UID, node and the rest of its spec as placed: a spec edited afterwards is reported, not
   * applied (re-creating the VfioVm applies it). Every field counts but spec.devices, which is hot-plugged
   * ({@link Hotplug}). Null: no drift.
   */
  static String drift(VfioVmSpec placed, VfioVm vm, SpecValidation.Result validation) {
    if (!validation.valid()) {
      return "the edited spec is invalid and not applied (" + validation.message() + ")";
    }
    // spec.devices is the one field applied to a running VM (hot-plug: Hotplug re-plans it)
    List<String> changed = UidClaims.changedFields(placed, vm.getSpec()).stream()
        .filter(f -> !"spec.devices".equals(f)).toList();
    if (changed.isEmpty()) {
      return null;
    }
    boolean one = changed.size() == 1;
    return String.join(", ", changed) + (one ? " was" : " were") + " changed after placement and "
        + (one ? "is" : "are") + " not applied to the running VM; delete and re-create the VfioVm to apply "
        + (one ? "it" : "them");
  }
}
