package dev.vfiovm.controller;

import dev.vfiovm.api.VfioVm;
import io.fabric8.kubernetes.api.model.Pod;
import io.javaoperatorsdk.operator.api.reconciler.Context;
import io.javaoperatorsdk.operator.api.reconciler.dependent.DependentResource;
import io.javaoperatorsdk.operator.processing.dependent.Creator;
import io.javaoperatorsdk.operator.processing.dependent.kubernetes.KubernetesDependentResource;
import io.javaoperatorsdk.operator.processing.dependent.workflow.Condition;
import io.javaoperatorsdk.operator.api.reconciler.dependent.Deleter;
import io.javaoperatorsdk.operator.processing.event.ResourceID;

/**
 * The VM's node pod as a JOSDK dependent resource in the node-pod namespace (another namespace than the VfioVm,
 * so no ownerReference: the link is the pod's labels and annotations, mapped back by the reconciler's
 * {@code node-pods} informer, which this dependent uses). Creator + Deleter only: a pod is immutable, a pod that
 * exists is never updated. The reconciler invokes the workflow explicitly: to create once it decided
 * {@link VmDecisions.CreatePod} (the {@link Placed} precondition: UID claimed and node decided, put into the
 * context as {@link Input}), and on deletion, where the {@link PodGone} postcondition holds the VM's UID and
 * budget until the pod is really gone.
 */
public class NodePodDependent extends KubernetesDependentResource<Pod, VfioVm>
    implements Creator<Pod, VfioVm>, Deleter<VfioVm> {
  public static final String NAME = "node-pod";

  /** What desired() builds from: the placed entry, the plan as placed and the settings. */
  record Input(Ledger.Entry entry, SpecValidation.Plan plan, OperatorSettings settings) {}

  public NodePodDependent() {
    super(Pod.class, NAME);
  }

  static void put(Context<VfioVm> context, Input input) {
    context.managedWorkflowAndDependentResourceContext().put(Input.class, input);
  }

  static OperatorSettings settings(Context<VfioVm> context) {
    return context.managedWorkflowAndDependentResourceContext().getMandatory(OperatorSettings.class,
        OperatorSettings.class);
  }

  @Override
  protected Pod desired(VfioVm vm, Context<VfioVm> context) {
    Input input = context.managedWorkflowAndDependentResourceContext().getMandatory(Input.class, Input.class);
    return NodePodShape.build(vm, input.entry().hostUid(), input.entry().node(), input.plan(), input.settings());
  }

  /** The pod's name and namespace, known without a plan (deletion has none). */
  @Override
  protected ResourceID targetSecondaryResourceID(VfioVm vm, Context<VfioVm> context) {
    return new ResourceID(NodePodShape.podName(vm.getMetadata().getNamespace(), vm.getMetadata().getName()),
        settings(context).nodePodNamespace());
  }

  /** A plain create: a pod that exists already (the cache lagging) is a conflict, never overwritten. */
  @Override
  public Pod create(Pod desired, VfioVm vm, Context<VfioVm> context) {
    addMetadata(false, null, desired, vm, context);
    return context.getClient().resource(desired).create();
  }

  /** Reconcile precondition: the VM's UID is claimed and its node decided (the reconciler put the input). */
  public static class Placed implements Condition<Pod, VfioVm> {
    @Override
    public boolean isMet(DependentResource<Pod, VfioVm> dependent, VfioVm vm, Context<VfioVm> context) {
      return context.managedWorkflowAndDependentResourceContext().get(Input.class, Input.class)
          .map(i -> i.entry().node() != null).orElse(false);
    }
  }

  /** Delete postcondition: the API server (not the cache) has no pod of that name any more. */
  public static class PodGone implements Condition<Pod, VfioVm> {
    @Override
    public boolean isMet(DependentResource<Pod, VfioVm> dependent, VfioVm vm, Context<VfioVm> context) {
      return context.getClient().pods().inNamespace(settings(context).nodePodNamespace())
          .withName(NodePodShape.podName(vm.getMetadata().getNamespace(), vm.getMetadata().getName())).get() == null;
    }
  }
}
