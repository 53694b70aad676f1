package dev.vfiovm.controller;

import static dev.vfiovm.controller.ClusterTestSupport.TIMEOUT;
import static dev.vfiovm.controller.ClusterTestSupport.vm;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.vfiovm.api.Phase;
import dev.vfiovm.api.VfioVm;
import dev.vfiovm.testing.ApiServer;
import io.fabric8.kubernetes.client.KubernetesClient;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/** Two replicas: one leads, the standby stays live and ready, and takes over when the leader stops. */
class LeaderElectionIT {
  @RegisterExtension static final ApiServer api = ApiServer.withCrd();

  static final long GI = 1L << 30;

  static HttpResponse<String> get(VfioVmOperator operator, String path) throws Exception {
    return HttpClient.newHttpClient().send(
        HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + operator.httpPort() + path)).build(),
        HttpResponse.BodyHandlers.ofString());
  }

  @Test
  void aStandbyReplicaIsLiveAndReadyAndTakesOverWithTheSameBook() throws Exception {
    try (KubernetesClient client = api.newClient()) {
      String nodePodNamespace = api.nodePodNamespace();
      String ns = api.namespace();
      OperatorSettings settings = ClusterTestSupport.settings(nodePodNamespace);
      ClusterTestSupport cluster = new ClusterTestSupport(client, nodePodNamespace);
      Map<String, String> selector = api.selector();
      String node = api.group() + "-a";
      cluster.node(node, "5Gi", selector, Map.of()); // budget 4Gi: two VMs
      VfioVmOperator first = VfioVmOperator.start(client, settings, 0, nodePodNamespace);
      VfioVmOperator second = null;
      try {
        await().atMost(TIMEOUT).until(first::leading);
        second = VfioVmOperator.start(client, settings, 0, nodePodNamespace);
        VfioVmOperator standby = second;
        await().during(Duration.ofSeconds(3)).atMost(Duration.ofSeconds(10)).until(() -> !standby.leading());
        assertThat(get(standby, "/healthz").statusCode()).isEqualTo(200);
        HttpResponse<String> ready = get(standby, "/readyz");
        assertThat(ready.statusCode()).isEqualTo(200);
        assertThat(ready.body()).contains("standby");

        cluster.create(vm(ns, "one", "1Gi", selector));
        long uid = await().atMost(TIMEOUT).until(() -> cluster.get(ns, "one"),
            v -> v.getStatus() != null && v.getStatus().getPhase() == Phase.Placed).getStatus().getHostUid();

        first.close();
        await().atMost(Duration.ofSeconds(60)).until(standby::leading);
        cluster.create(vm(ns, "two", "1Gi", selector));
        VfioVm two = await().atMost(TIMEOUT).until(() -> cluster.get(ns, "two"),
            v -> v.getStatus() != null && v.getStatus().getPhase() == Phase.Placed);
        cluster.create(vm(ns, "three", "1Gi", selector));
        assertThat(two.getStatus().getHostUid()).isNotEqualTo(uid);
        // the new leader knows the first VM's budget: the third VM does not fit
        VfioVm three = await().atMost(TIMEOUT).until(() -> cluster.get(ns, "three"),
            v -> v.getStatus() != null && v.getStatus().getPhase() == Phase.Pending);
        assertThat(three.getStatus().getHostUid()).isNotIn(uid, two.getStatus().getHostUid());
        cluster.deleteAllVms(ns);
      } finally {
        first.close();
        if (second != null) {
          second.close();
        }
        client.nodes().withName(node).delete();
      }
    }
  }
}
