package dev.vfiovm.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.vfiovm.api.VfioVm;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/**
 * Fault suite 1: create/delete churn from concurrent appliers on small node budgets while the operator (its own
 * JVM) is killed with SIGKILL at random points and restarted. At every sampled moment: 0 host UIDs on two node
 * pods, 0 nodes whose pods' memlock limits exceed the budget; at the end: every VM Running or gone, 0 orphan
 * node pods, 0 VfioVms stuck deleting (leaked finalizers). One delete in ten first removes the VM's finalizer by
 * hand (as impatient users do): the node pod left behind must be cleaned up and counted in its node's budget. CI: 150 operations, 10 appliers, 2 restarts; the
 * issue's size with {@code -Pfaults-long}: 1,000 operations, 50 appliers, 5 restarts.
 */
class ChurnFaultIT {
  static final int OPS = Integer.getInteger("faults.ops", 150);
  static final int APPLIERS = Integer.getInteger("faults.appliers", 10);
  static final int RESTARTS = Integer.getInteger("faults.restarts", 2);
  static final int NODES = 4;
  /** 8 MiB per node; VMs of 1 or 2 MiB + 1 MiB overhead: 2 to 4 per node. */
  static final String NODE_MEMORY = "8Mi";
  /** Any 2 VMs fit on a node (2 x 3 MiB <= 8 MiB): the most the end state keeps, so all of it must run. */
  static final int FINAL_MAX = 2 * NODES;
  static final int NAMES_PER_APPLIER = 3;
  /** Pacing of one applier between its operations, so the run spans the restarts (load shape, not a wait). */
  static final int PACE_MS = Integer.getInteger("faults.paceMs", 1200);
  /** Deletes that first remove the finalizer by hand (orphan-making, as users do): 1 in 10. */
  static final int FORCED_PERCENT = Integer.getInteger("faults.forcedPercent", 10);

  @Test
  void churnWithKill9RestartsKeepsEveryInvariant() throws Exception {
    long t0 = System.nanoTime();
    try (FaultCluster cluster = new FaultCluster("churn", NODES, NODE_MEMORY)) {
      OperatorProcess operator = cluster.operator("churn", cluster.operatorArgs(1_879_048_192L, 256, false));
      AtomicInteger issued = new AtomicInteger();
      AtomicInteger creates = new AtomicInteger();
      AtomicInteger deletes = new AtomicInteger();
      AtomicInteger forced = new AtomicInteger();
      AtomicInteger conflicts = new AtomicInteger();
      AtomicInteger errors = new AtomicInteger();
      Random random = new Random();
      java.util.concurrent.atomic.AtomicBoolean killsDone = new java.util.concurrent.atomic.AtomicBoolean(RESTARTS == 0);
      // the churn starts once the operator is up; each kill comes a random number of operations after the
      // restarted operator is ready again (a kill during start-up alone would test nothing of the reconciler)
      await("the operator ready").atMost(Duration.ofMinutes(3)).pollInterval(Duration.ofMillis(200)).until(operator::ready);
      int slice = Math.max(2, OPS / (RESTARTS + 1));
      List<String> killLog = Collections.synchronizedList(new ArrayList<>());
      try (FaultCluster.Sampler sampler = cluster.new Sampler()) {
        ExecutorService pool = Executors.newFixedThreadPool(APPLIERS + 1);
        List<Future<?>> appliers = new ArrayList<>();
        for (int a = 0; a < APPLIERS; a++) {
          int applier = a;
          appliers.add(pool.submit(() -> {
            try (KubernetesClient c = FaultCluster.client("faults-applier-" + applier)) {
              var vms = c.resources(VfioVm.class).inNamespace(cluster.vmNs);
              ThreadLocalRandom r = ThreadLocalRandom.current();
              while (issued.getAndIncrement() < OPS || !killsDone.get()) {
                String name = "a" + applier + "-" + r.nextInt(NAMES_PER_APPLIER);
                try {
                  VfioVm live = vms.withName(name).get();
                  if (live == null) {
                    vms.resource(cluster.vm(name, r.nextBoolean() ? "1Mi" : "2Mi")).create();
                    creates.incrementAndGet();
                  } else if (r.nextInt(100) < FORCED_PERCENT) {
                    // what an impatient user does: the finalizer removed by hand, then the delete
                    vms.withName(name).edit(v -> {
                      v.getMetadata().setFinalizers(new ArrayList<>());
                      return v;
                    });
                    vms.withName(name).delete();
                    forced.incrementAndGet();
                  } else {
                    vms.withName(name).delete();
                    deletes.incrementAndGet();
                  }
                } catch (KubernetesClientException e) {
                  if (e.getCode() == 409 || e.getCode() == 404) {
                    conflicts.incrementAndGet(); // still terminating, or gone meanwhile
                  } else {
                    errors.incrementAndGet();
                  }
                }
                Thread.sleep(r.nextInt(2 * PACE_MS)); // pacing: load shape, not synchronisation
              }
            }
            return null;
          }));
        }
        Future<?> killer = pool.submit(() -> {
          try {
            for (int i = 0; i < RESTARTS; i++) {
              await("operator ready").atMost(Duration.ofMinutes(5)).pollInterval(Duration.ofMillis(100)).until(operator::ready);
              int at = issued.get() + 1 + random.nextInt(slice);
              await().atMost(Duration.ofMinutes(10)).pollInterval(Duration.ofMillis(20)).until(() -> issued.get() >= at);
              operator.kill9();
              killLog.add("op " + issued.get());
              operator.start();
            }
          } finally {
            killsDone.set(true);
          }
          return null;
        });
        for (Future<?> f : appliers) {
          f.get();
        }
        killer.get();
        pool.shutdown();
        // the end state keeps at most FINAL_MAX VMs (any such set fits): the rest is deleted
        List<VfioVm> live = new ArrayList<>(cluster.vms().stream()
            .filter(v -> v.getMetadata().getDeletionTimestamp() == null).toList());
        Collections.shuffle(live);
        int trimmed = 0;
        for (VfioVm v : live.subList(Math.min(FINAL_MAX, live.size()), live.size())) {
          cluster.client.resource(v).delete();
          trimmed++;
        }
        // and one last forced delete of a VM that runs, so the end state always has a node pod whose VfioVm
        // vanished without the operator: it must be cleaned up (and counted in its node's budget until then)
        String forcedLast = null;
        for (VfioVm v : live.subList(0, Math.min(FINAL_MAX, live.size()))) {
          VfioVm now = cluster.client.resource(v).get();
          if (now != null && now.getStatus() != null && now.getStatus().getPhase() == dev.vfiovm.api.Phase.Running) {
            cluster.client.resource(now).edit(x -> {
              x.getMetadata().setFinalizers(new ArrayList<>());
              return x;
            });
            cluster.client.resource(now).delete();
            forcedLast = now.getMetadata().getName();
            forced.incrementAndGet();
            break;
          }
        }
        List<VfioVm> end;
        Throwable notConverged = null;
        try {
          end = cluster.awaitConverged(FaultCluster.CONVERGE);
        } catch (Throwable t) {
          notConverged = t;
          end = cluster.vms();
        }
        sampler.close();
        List<String> reconcileFailed = operator.logLines("reconcile failed");
        String summary = String.format("churn: %d ops (%d creates, %d deletes, %d of them forced (finalizer removed by hand first), %d conflicts/404, %d other errors) from %d "
                + "appliers, %d kill -9 restarts at %s, %d trimmed at the end, %s force-deleted last; %d node pods created (%d deleted); "
                + "%d invariant samples (max %d node pods at once), %d violations; end: %d VMs Running, %d node pods; "
                + "operator log: %d 'reconcile failed' lines; %.0f s",
            creates.get() + deletes.get() + forced.get() + conflicts.get() + errors.get(), creates.get(), deletes.get() + forced.get(), forced.get(), conflicts.get(), errors.get(), APPLIERS,
            operator.kills, killLog, trimmed, forcedLast, cluster.pods.created.size(), cluster.pods.deleted.size(),
            sampler.samples.get(), sampler.maxPods.get(), sampler.violations.size(), end.size(),
            cluster.nodePods().size(), reconcileFailed.size(), (System.nanoTime() - t0) / 1e9);
        System.out.println(summary);
        sampler.violations.forEach(v -> System.out.println("churn: violation: " + v));
        if (notConverged != null) {
          throw new AssertionError(summary + "\nviolations at sampled moments: " + sampler.violations + "\n"
              + notConverged.getMessage(), notConverged);
        }
        assertThat(operator.kills).as("kill -9 restarts").isEqualTo(RESTARTS);
        assertThat(sampler.samples.get()).as("invariant samples").isPositive();
        assertThat(sampler.violations).as("UID collisions / nodes over budget at sampled moments").isEmpty();
        assertThat(cluster.nodePods()).hasSize(end.size());
      }
    }
  }
}
