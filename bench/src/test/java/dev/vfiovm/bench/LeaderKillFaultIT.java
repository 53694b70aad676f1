package dev.vfiovm.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.vfiovm.api.VfioVm;
import dev.vfiovm.controller.VfioVmOperator;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.javaoperatorsdk.operator.api.config.LeaderElectionConfiguration;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;

/**
 * Fault suite 2: two operator replicas (own JVMs) with leader election on the chart's Lease; the leader is
 * killed with SIGKILL while VMs are being created. The standby takes the lease within the lease duration + retry
 * period (JOSDK's defaults, what the chart runs; + 3 s for the API server) and reconciles a VM created after the
 * kill at most 10 s later; every VM ends Running;
 * the node pods created, recorded by a watch started before the run, are exactly one per VM (0 duplicate
 * creates); 0 host UIDs on two pods.
 */
class LeaderKillFaultIT {
  static final int BEFORE = 12;
  static final int AFTER = 12;
  /** Slack for the API server on a loaded machine: the acquiring write and the lease read. */
  static final Duration SLACK = Duration.ofSeconds(3);
  /** What the new leader needs once it holds the lease: its event processing started, one reconcile written. */
  static final Duration FIRST_RECONCILE = Duration.ofSeconds(10);

  String holder(FaultCluster cluster) {
    Lease lease = cluster.client.leases().inNamespace(cluster.nodePodNs).withName(VfioVmOperator.LEASE_NAME).get();
    return lease == null || lease.getSpec() == null ? null : lease.getSpec().getHolderIdentity();
  }

  @Test
  void theStandbyTakesOverAfterKill9WithoutDuplicatePods() throws Exception {
    Duration lease = LeaderElectionConfiguration.LEASE_DURATION_DEFAULT_VALUE;
    Duration retry = LeaderElectionConfiguration.RETRY_PERIOD_DEFAULT_VALUE;
    try (FaultCluster cluster = new FaultCluster("leader", 3, "64Mi")) {
      List<String> args = cluster.operatorArgs(1_879_048_192L, 4096, true);
      OperatorProcess a = cluster.operator("replica-a", args);
      OperatorProcess b = cluster.operator("replica-b", args);
      String leaderName = await("a replica holds the lease").atMost(Duration.ofMinutes(3))
          .pollInterval(Duration.ofMillis(200)).until(() -> holder(cluster), h -> h != null);
      OperatorProcess leader = leaderName.equals(a.name) ? a : b;
      OperatorProcess standby = leader == a ? b : a;
      try (FaultCluster.Sampler sampler = cluster.new Sampler()) {
        for (int i = 0; i < BEFORE; i++) {
          cluster.client.resource(cluster.vm("before-" + i, "1Mi")).create();
        }
        // some of these are mid-reconcile when the leader dies
        await("the leader placed some VMs").atMost(Duration.ofMinutes(3)).pollInterval(Duration.ofMillis(100))
            .until(() -> cluster.vms().stream().anyMatch(v -> v.getStatus() != null && v.getStatus().getHostUid() != null));
        long killed = System.nanoTime();
        leader.kill9();
        cluster.client.resource(cluster.vm("probe", "1Mi")).create();
        for (int i = 0; i < AFTER; i++) {
          cluster.client.resource(cluster.vm("after-" + i, "1Mi")).create();
        }
        await("the standby holds the lease").atMost(Duration.ofMinutes(2))
            .pollInterval(Duration.ofMillis(100)).until(() -> standby.name.equals(holder(cluster)));
        double tookLease = (System.nanoTime() - killed) / 1e9;
        await("the standby reconciled a VM created after the kill").atMost(Duration.ofMinutes(3))
            .pollInterval(Duration.ofMillis(100)).until(() -> {
              VfioVm probe = cluster.client.resources(VfioVm.class).inNamespace(cluster.vmNs).withName("probe").get();
              return probe.getStatus() != null && probe.getStatus().getPhase() != null;
            });
        double reconciled = (System.nanoTime() - killed) / 1e9;
        List<VfioVm> end = cluster.awaitConverged(FaultCluster.CONVERGE);
        sampler.close();
        Map<String, Set<String>> duplicates = cluster.pods.duplicates();
        System.out.printf("leader: %s killed (kill -9) with %d VMs created, %d more after; standby %s took the lease "
                + "%.1f s and reconciled the first new VM %.1f s after the kill (lease %d s + retry %d s); %d VMs Running, "
                + "%d node pods created (watch), %d duplicate creates %s; %d invariant samples, %d violations%n",
            leader.name, BEFORE, AFTER + 1, standby.name, tookLease, reconciled, lease.toSeconds(), retry.toSeconds(),
            end.size(), cluster.pods.created.size(), duplicates.size(), duplicates, sampler.samples.get(),
            sampler.violations.size());
        assertThat(end).hasSize(BEFORE + AFTER + 1);
        assertThat(duplicates).as("VMs with more than one node pod created").isEmpty();
        assertThat(cluster.pods.created).hasSize(end.size());
        assertThat(sampler.violations).isEmpty();
        assertThat(standby.alive()).as("the standby kept running").isTrue();
        assertThat(tookLease).as("seconds from kill -9 until the standby holds the lease")
            .isLessThanOrEqualTo(lease.plus(retry).plus(SLACK).toSeconds());
        assertThat(reconciled).as("seconds from kill -9 to the standby's first reconcile")
            .isLessThanOrEqualTo(lease.plus(retry).plus(SLACK).plus(FIRST_RECONCILE).toSeconds());
      }
    }
  }
}
