package dev.vfiovm.controller;

import static dev.vfiovm.controller.ClusterTestSupport.TIMEOUT;
import static dev.vfiovm.controller.ClusterTestSupport.vm;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.vfiovm.api.Phase;
import dev.vfiovm.api.VfioVm;
import dev.vfiovm.api.VfioVmStatus;
import dev.vfiovm.testing.KubeApiServerFixture;
import io.fabric8.kubernetes.api.model.Condition;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.client.KubernetesClient;
import java.time.Instant;
import java.util.Map;
import java.util.UUID;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The book's source of truth is the UID claims (one Lease per host UID, {@link UidClaims}), not the VM statuses
 * nor the operator's flags: what a VM was placed with survives an operator restart unchanged.
 */
class PlacedClaimIT {
  static final long GI = 1L << 30;

  KubernetesClient client;
  String nodePodNamespace;
  String ns;
  Map<String, String> selector;
  String node;
  OperatorSettings settings;
  ClusterTestSupport cluster;
  VfioVmOperator operator;

  @BeforeEach
  void setUp() throws Exception {
    client = KubeApiServerFixture.newClient();
    KubeApiServerFixture.installCrds(client);
    nodePodNamespace = KubeApiServerFixture.createNamespace(client, "vfiovm-system");
    ns = KubeApiServerFixture.createNamespace(client, "vms");
    String group = "c" + UUID.randomUUID().toString().substring(0, 8);
    selector = Map.of(ClusterTestSupport.GROUP_LABEL, group);
    node = group + "-n";
    cluster = new ClusterTestSupport(client, nodePodNamespace);
    cluster.node(node, "9Gi", selector, Map.of());
    settings = OperatorSettings.defaults(nodePodNamespace, "vfiovm:test").withHostReserve(GI).withMemlockOverhead(GI)
        .withUidRange(OperatorSettings.DEFAULT_UID_RANGE_START + 70_000, 100);
    operator = VfioVmOperator.start(client, settings, 0, null);
  }

  @AfterEach
  void tearDown() {
    try {
      cluster.deleteAllVms(ns);
    } finally {
      operator.close();
      client.nodes().withName(node).delete();
      client.close();
    }
  }

  VfioVm awaitPhase(String name, Phase phase) {
    return await().atMost(TIMEOUT).until(() -> cluster.get(ns, name),
        v -> v != null && v.getStatus() != null && v.getStatus().getPhase() == phase);
  }

  void restart(OperatorSettings with) throws Exception {
    operator.close();
    operator = VfioVmOperator.start(client, with, 0, null);
  }

  static String arg(Pod pod, String flag) {
    var args = pod.getSpec().getContainers().get(0).getArgs();
    return args.get(args.indexOf(flag) + 1);
  }

  @Test
  void aPodRecreatedAfterARestartWithAnotherOverheadKeepsItsMemoryAndLimit() throws Exception {
    cluster.create(vm(ns, "steady", "1Gi", selector));
    awaitPhase("steady", Phase.Placed);
    Pod first = await().atMost(TIMEOUT).until(() -> cluster.podOf(ns, "steady"), p -> p != null);
    assertThat(arg(first, "--memory")).isEqualTo(Long.toString(GI));
    assertThat(arg(first, "--memlock")).isEqualTo(Long.toString(2 * GI));
    Lease claim = client.leases().inNamespace(nodePodNamespace)
        .withName(UidClaims.name(cluster.get(ns, "steady").getStatus().getHostUid())).get();
    assertThat(claim.getMetadata().getAnnotations()).containsEntry(UidClaims.ANNOTATION_VM, ns + "/steady");

    restart(settings.withMemlockOverhead(2 * GI));
    client.pods().inNamespace(nodePodNamespace).withName(first.getMetadata().getName()).withGracePeriod(0).delete();
    Pod second = await().atMost(TIMEOUT).until(() -> cluster.podOf(ns, "steady"),
        p -> p != null && !p.getMetadata().getUid().equals(first.getMetadata().getUid()));
    assertThat(arg(second, "--memory")).isEqualTo(Long.toString(GI));
    assertThat(arg(second, "--memlock")).isEqualTo(Long.toString(2 * GI));
    assertThat(second.getSpec().getContainers().get(0).getResources().getRequests().get("memory"))
        .isEqualTo(first.getSpec().getContainers().get(0).getResources().getRequests().get("memory"));
    assertThat(cluster.get(ns, "steady").getStatus().getMemlockLimitBytes()).isEqualTo(2 * GI);
  }

  @Test
  void aStatusWriteClaimingAnotherVmsUidTakesNothingAfterARestart() throws Exception {
    // the writer's VM is the older one: a book rebuilt from statuses, oldest first, would give it the UID
    cluster.create(vm(ns, "writer", "1Gi", selector));
    long writerUid = awaitPhase("writer", Phase.Placed).getStatus().getHostUid();
    Instant writerCreated = Instant.parse(cluster.get(ns, "writer").getMetadata().getCreationTimestamp());
    await().atMost(TIMEOUT).until(() -> Instant.now().getEpochSecond() > writerCreated.getEpochSecond());
    cluster.create(vm(ns, "victim", "1Gi", selector));
    long victimUid = awaitPhase("victim", Phase.Placed).getStatus().getHostUid();
    await().atMost(TIMEOUT).until(() -> cluster.podOf(ns, "victim") != null && cluster.podOf(ns, "writer") != null);

    operator.close();
    // whoever may write vfiovms/status writes the victim's UID into the writer's status
    client.resources(VfioVm.class).inNamespace(ns).withName("writer").editStatus(v -> {
      v.getStatus().setHostUid(victimUid);
      return v;
    });
    operator = VfioVmOperator.start(client, settings, 0, null);

    await().atMost(TIMEOUT).until(() -> cluster.get(ns, "writer").getStatus().getHostUid() == writerUid);
    assertThat(cluster.get(ns, "victim").getStatus().getHostUid()).isEqualTo(victimUid);
    assertThat(operator.reconciler().ledger().get(ns + "/victim").hostUid()).isEqualTo(victimUid);
    assertThat(operator.reconciler().ledger().get(ns + "/writer").hostUid()).isEqualTo(writerUid);
    cluster.create(vm(ns, "third", "1Gi", selector));
    assertThat(awaitPhase("third", Phase.Placed).getStatus().getHostUid()).isNotIn(writerUid, victimUid);
  }

  @Test
  void anEditedInvalidSpecKeepsThePlacedDevicesInConflictChecksAfterARestart() throws Exception {
    VfioVm holder = vm(ns, "holder", "1Gi", selector, "0000:3b:00.0");
    holder.getSpec().setNodeName(node);
    cluster.create(holder);
    awaitPhase("holder", Phase.Placed);
    client.resources(VfioVm.class).inNamespace(ns).withName("holder").edit(v -> {
      v.getSpec().setMemory("1000001"); // not whole pages: refused by the operator, not by this server
      v.getSpec().getDevices().clear();
      return v;
    });
    await().atMost(TIMEOUT).until(() -> cluster.get(ns, "holder").getStatus().getMessage().contains("not applied"));

    restart(settings);
    VfioVm other = vm(ns, "other", "1Gi", selector, "0000:3b:00.0");
    other.getSpec().setNodeName(node);
    cluster.create(other);
    Condition placed = VmStatuses.condition(awaitPhase("other", Phase.Failed).getStatus(), VfioVmStatus.PLACED);
    assertThat(placed.getReason()).isEqualTo("DeviceConflict");
    assertThat(placed.getMessage()).contains("0000:3b:00.0").contains(ns + "/holder");
    assertThat(cluster.get(ns, "holder").getStatus().getMessage()).contains("invalid and not applied");
  }
}
