package dev.vfiovm.controller;

import static dev.vfiovm.controller.ClusterTestSupport.TIMEOUT;
import static dev.vfiovm.controller.ClusterTestSupport.report;
import static dev.vfiovm.controller.ClusterTestSupport.vm;
import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import dev.vfiovm.api.NodeAgentReport.AgentPhase;
import dev.vfiovm.api.Phase;
import dev.vfiovm.api.VfioVm;
import dev.vfiovm.testing.ApiServer;
import dev.vfiovm.testing.KubeApiServerFixture;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.client.Config;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import io.fabric8.kubernetes.client.KubernetesClientException;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * The operator's whole flow (finalizer, UID + placement, node pod, report, events, leader election, deletion)
 * as the service account bound to exactly the rules of operator-rbac.yaml, so that list is proven sufficient.
 */
class OperatorRbacIT {
  @RegisterExtension static final ApiServer api = ApiServer.withCrd();

  static final long GI = 1L << 30;

  @Test
  void theOperatorRunsWithTheDocumentedLeastPrivilege() throws Exception {
    try (KubernetesClient admin = api.newClient()) {
      String nodePodNamespace = api.nodePodNamespace();
      String ns = api.namespace();
      String rbac;
      try (InputStream in = OperatorRbacIT.class.getResourceAsStream("operator-rbac.yaml")) {
        rbac = new String(in.readAllBytes(), StandardCharsets.UTF_8).replace("NODE_POD_NAMESPACE", nodePodNamespace);
      }
      for (HasMetadata item : admin.load(new ByteArrayInputStream(rbac.getBytes(StandardCharsets.UTF_8))).items()) {
        KubeApiServerFixture.apply(admin, item);
      }

      Config config = Config.fromKubeconfig(api.kubeConfigYaml());
      config.setImpersonateUsername("system:serviceaccount:" + nodePodNamespace + ":vfiovm-operator");
      config.setImpersonateGroups("system:serviceaccounts", "system:authenticated");
      try (KubernetesClient restricted = new KubernetesClientBuilder().withConfig(config).build()) {
        // the restriction is real: pods elsewhere may be read (placement weighs what they request), never changed
        assertThat(canListPods(restricted, ns)).isTrue();
        assertThat(canDeletePods(restricted, ns)).isFalse();
        assertThat(canListPods(restricted, nodePodNamespace)).isTrue();

        OperatorSettings settings = ClusterTestSupport.settings(nodePodNamespace);
        ClusterTestSupport cluster = new ClusterTestSupport(admin, nodePodNamespace);
        Map<String, String> selector = api.selector();
        String node = api.group() + "-a";
        cluster.node(node, "5Gi", selector, Map.of());
        try (VfioVmOperator operator = VfioVmOperator.start(restricted, settings, 0, nodePodNamespace)) {
          var lease = admin.leases().inNamespace(nodePodNamespace).withName(VfioVmOperator.LEASE_NAME);
          await().atMost(TIMEOUT).until(() -> lease.get() != null && lease.get().getSpec().getRenewTime() != null);
          var firstRenewal = lease.get().getSpec().getRenewTime();
          // the leader keeps renewing (a forbidden renewal would lose the lease and halt the operator)
          await().atMost(TIMEOUT).until(() -> !lease.get().getSpec().getRenewTime().equals(firstRenewal));
          cluster.create(vm(ns, "vm", "1Gi", selector, "0000:3b:00.0"));
          VfioVm placed = await().atMost(TIMEOUT).until(() -> cluster.get(ns, "vm"),
              v -> v.getStatus() != null && v.getStatus().getPhase() == Phase.Placed);
          await().atMost(TIMEOUT).until(() -> cluster.podOf(ns, "vm") != null);
          // the pod's own identity, made under the restricted operator (RBAC escalation check passed)
          String identity = NodePodIdentity.name("vfiovm-node", ns, "vm");
          assertThat(cluster.podOf(ns, "vm").getSpec().getServiceAccountName()).isEqualTo(identity);
          assertThat(admin.rbac().roles().inNamespace(nodePodNamespace).withName(identity).get().getRules())
              .singleElement().satisfies(r -> assertThat(r.getResourceNames())
                  .containsExactly(NodePodShape.podName(ns, "vm")));
          assertThat(admin.rbac().roleBindings().inNamespace(nodePodNamespace).withName(identity).get()).isNotNull();
          // the hand-out cursor went to the ConfigMap the operator may patch (and only that one)
          await().atMost(TIMEOUT).until(() -> admin.configMaps().inNamespace(nodePodNamespace)
              .withName(QuarantineStore.NAME).get().getData() != null);
          cluster.report(ns, "vm", report(AgentPhase.Running, placed.getStatus().getHostUid(), 2 * GI, GI));
          await().atMost(TIMEOUT).until(() -> cluster.get(ns, "vm").getStatus().getPhase() == Phase.Running);
          await().atMost(TIMEOUT).untilAsserted(() -> assertThat(cluster.eventReasons(ns, "vm"))
              .contains("Placed", "Running"));
          cluster.deleteAllVms(ns);
          assertThat(cluster.eventReasons(ns, "vm")).contains("Released");
          assertThat(admin.serviceAccounts().inNamespace(nodePodNamespace).withName(identity).get()).isNull();
          assertThat(admin.rbac().roles().inNamespace(nodePodNamespace).withName(identity).get()).isNull();
          assertThat(admin.rbac().roleBindings().inNamespace(nodePodNamespace).withName(identity).get()).isNull();
        } finally {
          admin.nodes().withName(node).delete();
        }
      }
    }
  }

  static boolean canDeletePods(KubernetesClient client, String namespace) {
    try {
      client.pods().inNamespace(namespace).withName("any").delete();
      return true;
    } catch (KubernetesClientException e) {
      if (e.getCode() == 403) {
        return false;
      }
      throw e;
    }
  }

  static boolean canListPods(KubernetesClient client, String namespace) {
    try {
      client.pods().inNamespace(namespace).list();
      return true;
    } catch (KubernetesClientException e) {
      if (e.getCode() == 403) {
        return false;
      }
      throw e;
    }
  }
}
