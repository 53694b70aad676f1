package dev.vfiovm.controller;

import dev.vfiovm.api.VfioVm;
import io.javaoperatorsdk.operator.processing.event.Event;
import io.javaoperatorsdk.operator.processing.event.ResourceID;
import io.javaoperatorsdk.operator.processing.event.source.AbstractEventSource;
import java.util.Collection;
import java.util.Set;

/** Lets the reconciler wake VMs that wait for budget or UIDs when something is released. */
final class Retrigger extends AbstractEventSource<Void, VfioVm> {
  Retrigger() {
    super(Void.class, "retrigger");
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
