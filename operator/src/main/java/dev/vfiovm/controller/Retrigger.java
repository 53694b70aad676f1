package dev.vfiovm.controller;

import dev.vfiovm.api.VfioVm;
import io.javaoperatorsdk.operator.processing.event.Event;
import io.javaoperatorsdk.operator.processing.event.ResourceID;
import io.javaoperatorsdk.operator.processing.event.source.AbstractEventSource;
import io.javaoperatorsdk.operator.processing.event.source.ResourceEventAware;
import java.util.Collection;
import java.util.Set;

/**
 * Lets the reconciler wake VMs that wait for budget or UIDs when something is released, and hears of VMs gone:
 * JOSDK reconciles nothing for a VfioVm deleted without its finalizer (removed by hand), so the node pod it
 * leaves behind is found only when someone looks ({@code onVmDeleted}).
 */
final class Retrigger extends AbstractEventSource<Void, VfioVm> implements ResourceEventAware<VfioVm> {
  private final java.util.function.Consumer<VfioVm> onVmDeleted;

  Retrigger(java.util.function.Consumer<VfioVm> onVmDeleted) {
    super(Void.class, "retrigger");
    this.onVmDeleted = onVmDeleted;
  }

  @Override
  public void onResourceDeleted(VfioVm vm) {
    onVmDeleted.accept(vm);
  }

  void fire(Collection<ResourceID> vms) {
    if (isRunning()) {
      vms.forEach(id -> getEventHandler().handleEvent(new Event(id)));
    }
  }

  @Override
  public Set<Void> getSecondaryResources(VfioVm primary) {
    return Set.of();
  }
}
