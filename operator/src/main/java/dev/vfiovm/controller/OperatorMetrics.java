package dev.vfiovm.controller;

import dev.vfiovm.api.Phase;
import dev.vfiovm.api.VfioVm;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.MultiGauge;
import io.micrometer.core.instrument.Tags;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/** The operator's own gauges, recomputed from the ledger and the caches at each scrape ({@link #refresh}). */
public final class OperatorMetrics {
  private final VfioVmReconciler reconciler;
  private final MultiGauge budgetUsed;
  private final MultiGauge budgetFree;
  private final MultiGauge vmsByPhase;
  private final MultiGauge pinned;
  private final MultiGauge quarantined;

  public OperatorMetrics(MeterRegistry registry, VfioVmReconciler reconciler) {
    this.reconciler = reconciler;
    budgetUsed = MultiGauge.builder("vfiovm.node.budget.used.bytes")
        .description("Sum of the memlock limits of the VMs placed on the node").baseUnit("bytes").register(registry);
    budgetFree = MultiGauge.builder("vfiovm.node.budget.free.bytes")
        .description("Node budget (allocatable - host reserve) not yet given to VMs").baseUnit("bytes").register(registry);
    vmsByPhase = MultiGauge.builder("vfiovm.vms").description("VfioVms by status phase").register(registry);
    pinned = MultiGauge.builder("vfiovm.pinned.bytes")
        .description("Guest memory pinned for DMA as the node agents report it, per node").baseUnit("bytes")
        .register(registry);
    quarantined = MultiGauge.builder("vfiovm.host.uids.quarantined")
        .description("Host UIDs freed without proof that their processes are gone, per node they were freed on; "
            + "handed to no VM until that node's UID audit shows them free (a deleted node's stay until a node of "
            + "that name comes back)").register(registry);
    Gauge.builder("vfiovm.host.uids.in.use", reconciler, r -> r.ledger().snapshot().size())
        .description("Host UIDs held by VfioVms").register(registry);
    Gauge.builder("vfiovm.host.uids.left", reconciler,
            r -> r.ledger().range().size() - r.ledger().snapshot().size() - r.ledger().quarantined().stream()
                .map(UidQuarantine.Held::uid).filter(u -> r.ledger().snapshot().values().stream()
                    .noneMatch(e -> e.hostUid() == u)).distinct().count())
        .description("Host UIDs of the configured range still free").register(registry);
  }

  public void refresh() {
    Map<String, Placement.Load> loads = reconciler.ledger().loads();
    List<MultiGauge.Row<?>> used = new ArrayList<>();
    List<MultiGauge.Row<?>> free = new ArrayList<>();
    for (NodeBudget node : reconciler.nodeBudgets()) {
      long u = loads.getOrDefault(node.name(), Placement.Load.EMPTY).usedBytes();
      used.add(MultiGauge.Row.of(Tags.of("node", node.name()), u));
      free.add(MultiGauge.Row.of(Tags.of("node", node.name()), Math.max(0, node.budgetBytes() - u)));
    }
    Map<String, Long> byNode = new TreeMap<>();
    reconciler.ledger().quarantined().forEach(h -> byNode.merge(h.node(), 1L, Long::sum));
    quarantined.register(byNode.entrySet().stream()
        .map(e -> MultiGauge.Row.of(Tags.of("node", e.getKey()), e.getValue()))
        .map(r -> (MultiGauge.Row<?>) r).toList(), true);
    budgetUsed.register(used, true);
    budgetFree.register(free, true);

    Map<Phase, Integer> phases = new EnumMap<>(Phase.class);
    for (Phase p : Phase.values()) {
      phases.put(p, 0);
    }
    Map<String, Long> pinnedByNode = new TreeMap<>();
    for (VfioVm vm : reconciler.vms()) {
      if (vm.getStatus() != null && vm.getStatus().getPhase() != null) {
        phases.merge(vm.getStatus().getPhase(), 1, Integer::sum);
      }
      if (vm.getStatus() != null && vm.getStatus().getNodeName() != null && vm.getStatus().getPinnedBytes() != null) {
        pinnedByNode.merge(vm.getStatus().getNodeName(), vm.getStatus().getPinnedBytes(), Long::sum);
      }
    }
    vmsByPhase.register(phases.entrySet().stream()
        .map(e -> MultiGauge.Row.of(Tags.of("phase", e.getKey().name()), e.getValue()))
        .map(r -> (MultiGauge.Row<?>) r).toList(), true);
    pinned.register(pinnedByNode.entrySet().stream()
        .map(e -> MultiGauge.Row.of(Tags.of("node", e.getKey()), e.getValue()))
        .map(r -> (MultiGauge.Row<?>) r).toList(), true);
  }
}
