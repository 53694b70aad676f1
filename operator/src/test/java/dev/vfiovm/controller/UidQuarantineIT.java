package dev.vfiovm.controller;

import static dev.vfiovm.controller.ClusterTestSupport.TIMEOUT;
import static dev.vfiovm.controller.ClusterTestSupport.report;
import static dev.vfiovm.controller.ClusterTestSupport.vm;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.vfiovm.api.NodeAgentReport.AgentPhase;
import dev.vfiovm.api.Phase;
import dev.vfiovm.api.UidAudit;
import dev.vfiovm.api.VfioVm;
import dev.vfiovm.api.VfioVmStatus;
import dev.vfiovm.testing.ApiServer;
import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.api.model.NodeBuilder;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.client.KubernetesClient;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * UID quarantine on a real kube-apiserver, with the agent's report and the node daemon's UID audit played by
 * the test: VM A runs, is deleted and its pod force-deleted (grace 0, no kubelet saying its containers ended);
 * with a range of one UID, VM B can only get A's UID, and does not while the node's audit is older than the free
 * or lists the UID - not across an operator restart either - and gets it once an audit after the free lacks it.
 */
class UidQuarantineIT {
  @RegisterExtension static final ApiServer api = ApiServer.withCrd();

  static final long GI = 1L << 30;

  String nodePodNamespace;
  String ns;
  Map<String, String> selector;
  String node;
  ClusterTestSupport cluster;
  OperatorSettings settings;

  @BeforeEach
  void oneNodeAndARangeOfOneUid() {
    nodePodNamespace = api.nodePodNamespace();
    ns = api.namespace();
    selector = api.selector();
    node = api.group() + "-n";
    cluster = new ClusterTestSupport(api.client(), nodePodNamespace);
    cluster.node(node, "5Gi", selector, Map.of());
    // one UID: B can only get A's
    settings = ClusterTestSupport.settings(nodePodNamespace).withUidRange(1879048192L, 1);
  }

  @Test
  void firstSavesOfTheQuarantineAtOnceAllSucceed() throws Exception {
    // no ConfigMap yet (an install without the chart): every saver finds it missing, one creates it, the rest
    // meet AlreadyExists and must still land their state
    String fresh = api.group() + "-qs";
    api.client().namespaces().resource(new io.fabric8.kubernetes.api.model.NamespaceBuilder()
        .withNewMetadata().withName(fresh).endMetadata().build()).create();
    QuarantineStore store = new QuarantineStore(api.client(), fresh);
    int savers = 6;
    var pool = java.util.concurrent.Executors.newFixedThreadPool(savers);
    try {
      var go = new java.util.concurrent.CountDownLatch(1);
      List<java.util.concurrent.Future<?>> saves = new java.util.ArrayList<>();
      for (long cursor = 1; cursor <= savers; cursor++) {
        UidQuarantine.State state = new UidQuarantine.State(cursor, List.of());
        saves.add(pool.submit(() -> {
          go.await();
          store.save(state);
          return null;
        }));
      }
      go.countDown();
      for (var save : saves) {
        save.get(); // rethrows a save that failed
      }
      assertThat(store.load().cursor()).isBetween(1L, (long) savers);
    } finally {
      pool.shutdownNow();
    }
  }

  @Test
  void aUidForceFreedWhileItsVmRanGoesToNoVmUntilTheNodesAuditShowsItGone() throws Exception {
    try (KubernetesClient client = api.newClient()) {
      VfioVmOperator operator = VfioVmOperator.start(client, settings, 0, null);
      try {
        cluster.create(vm(ns, "a", "1Gi", selector));
        // the status follows the pod (the UID's claim, not the status, comes before it)
        await().atMost(TIMEOUT).until(() -> cluster.podOf(ns, "a") != null && cluster.get(ns, "a").getStatus() != null
            && cluster.get(ns, "a").getStatus().getHostUid() != null);
        long uid = cluster.get(ns, "a").getStatus().getHostUid();
        cluster.report(ns, "a", report(AgentPhase.Running, uid, 2 * GI, GI));
        await().atMost(TIMEOUT).until(() -> cluster.get(ns, "a").getStatus().getPhase() == Phase.Running);

        // A deleted; its pod force-deleted before any kubelet said its containers ended
        client.resources(VfioVm.class).inNamespace(ns).withName("a").delete();
        Pod pod = await().atMost(TIMEOUT).until(() -> cluster.podOf(ns, "a"),
            p -> p != null && p.getMetadata().getDeletionTimestamp() != null);
        Instant beforeFree = Instant.now().minusSeconds(1);
        client.pods().inNamespace(nodePodNamespace).withName(pod.getMetadata().getName()).withGracePeriod(0).delete();
        await().atMost(TIMEOUT).until(() -> cluster.get(ns, "a") == null);
        assertThat(cluster.eventReasons(ns, "a")).contains("UidQuarantined");
        UidQuarantine.State persisted = persisted(client, nodePodNamespace);
        assertThat(persisted.quarantined()).singleElement().satisfies(h -> {
          assertThat(h.uid()).isEqualTo(uid);
          assertThat(h.node()).isEqualTo(node);
          assertThat(h.vm()).isEqualTo(ns + "/a");
        });
        // the identity of A's pod went with it
        assertThat(client.serviceAccounts().inNamespace(nodePodNamespace)
            .withName(NodePodIdentity.name("vfiovm-node", ns, "a")).get()).isNull();

        cluster.create(vm(ns, "b", "1Gi", selector));
        VfioVm starved = await().atMost(TIMEOUT).until(() -> cluster.get(ns, "b"),
            v -> v != null && v.getStatus() != null && v.getStatus().getPhase() == Phase.Pending);
        assertThat(VmStatuses.condition(starved.getStatus(), VfioVmStatus.UID_ASSIGNED).getReason())
            .isEqualTo("UidRangeExhausted");
        assertThat(starved.getStatus().getMessage()).contains("quarantined");
        assertThat(metrics(operator)).containsPattern(
            "vfiovm_host_uids_quarantined\\{node=\"" + node + "\",?\\} 1\\.0");

        // an audit older than the free proves nothing, nor one that still lists the UID
        audit(client, node, new UidAudit(beforeFree.toString(), 1879048192L, 65536, List.of()));
        assertStaysWithoutUid(cluster, ns);
        audit(client, node, new UidAudit(Instant.now().plusSeconds(1).toString(), 1879048192L, 65536, List.of(uid)));
        assertStaysWithoutUid(cluster, ns);

        // an operator restart keeps the quarantine (it is in the cluster, not derived from VfioVms)
        operator.close();
        operator = VfioVmOperator.start(client, settings, 0, null);
        VfioVmOperator restarted = operator;
        await().atMost(TIMEOUT).until(() -> restarted.reconciler().ledger().quarantined().size() == 1);
        assertStaysWithoutUid(cluster, ns);

        // the node's audit after the free without the UID: the proof
        audit(client, node, new UidAudit(Instant.now().plusSeconds(2).toString(), 1879048192L, 65536,
            List.of(1879048192L + 7)));
        VfioVm placed = await().atMost(TIMEOUT).until(() -> cluster.get(ns, "b"),
            v -> v.getStatus() != null && v.getStatus().getPhase() == Phase.Placed);
        assertThat(placed.getStatus().getHostUid()).isEqualTo(uid);
        await().atMost(TIMEOUT).until(() -> persisted(client, nodePodNamespace).quarantined().isEmpty());
      } finally {
        cluster.deleteAllVms(ns);
        operator.close();
        client.nodes().withName(node).delete();
      }
    }
  }

  @Test
  void aVmDeletedNormallyFreesItsUidAtOnce() throws Exception {
    try (KubernetesClient client = api.newClient()) {
      try (VfioVmOperator operator = VfioVmOperator.start(client, settings, 0, null)) {
        cluster.create(vm(ns, "a", "1Gi", selector));
        // the status follows the pod (the UID's claim, not the status, comes before it)
        await().atMost(TIMEOUT).until(() -> cluster.podOf(ns, "a") != null && cluster.get(ns, "a").getStatus() != null
            && cluster.get(ns, "a").getStatus().getHostUid() != null);
        long uid = cluster.get(ns, "a").getStatus().getHostUid();
        cluster.report(ns, "a", report(AgentPhase.Running, uid, 2 * GI, GI));
        await().atMost(TIMEOUT).until(() -> cluster.get(ns, "a").getStatus().getPhase() == Phase.Running);
        // the kubelet's way: containers reported terminated, then the pod removed
        cluster.deleteAllVms(ns);
        assertThat(operator.reconciler().ledger().quarantined()).isEmpty();
        cluster.create(vm(ns, "b", "1Gi", selector));
        VfioVm placed = await().atMost(TIMEOUT).until(() -> cluster.get(ns, "b"),
            v -> v != null && v.getStatus() != null && v.getStatus().getPhase() == Phase.Placed);
        assertThat(placed.getStatus().getHostUid()).isEqualTo(uid);
        cluster.deleteAllVms(ns);
      } finally {
        client.nodes().withName(node).delete();
      }
    }
  }

  static void assertStaysWithoutUid(ClusterTestSupport cluster, String ns) {
    await().during(Duration.ofSeconds(3)).atMost(Duration.ofSeconds(10)).until(() -> {
      VfioVm b = cluster.get(ns, "b");
      return b.getStatus() != null && b.getStatus().getHostUid() == null && b.getStatus().getPhase() == Phase.Pending;
    });
  }

  static void audit(KubernetesClient client, String node, UidAudit audit) {
    client.nodes().withName(node).edit(n -> new NodeBuilder(n).editMetadata()
        .addToAnnotations(UidAudit.ANNOTATION, audit.toJson()).endMetadata().build());
  }

  static UidQuarantine.State persisted(KubernetesClient client, String namespace) {
    ConfigMap cm = client.configMaps().inNamespace(namespace).withName(QuarantineStore.NAME).get();
    assertThat(cm).as("ConfigMap " + QuarantineStore.NAME).isNotNull();
    return UidQuarantine.State.fromJson(cm.getData().get(QuarantineStore.KEY));
  }

  static String metrics(VfioVmOperator operator) throws Exception {
    return HttpClient.newHttpClient().send(HttpRequest.newBuilder(
            URI.create("http://127.0.0.1:" + operator.httpPort() + "/metrics")).build(),
        HttpResponse.BodyHandlers.ofString()).body();
  }
}
