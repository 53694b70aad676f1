package dev.vfiovm.e2e.chart;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import dev.vfiovm.api.DmaBackend;
import dev.vfiovm.api.NodeAgentReport;
import dev.vfiovm.api.NodeAgentReport.AgentPhase;
import dev.vfiovm.api.Phase;
import dev.vfiovm.api.VfioVm;
import dev.vfiovm.api.VfioVmSpec;
import dev.vfiovm.controller.OperatorSettings;
import dev.vfiovm.controller.VfioVmOperator;
import dev.vfiovm.testing.KubeApiServerFixture;
import io.fabric8.kubernetes.api.model.ConfigMapBuilder;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.Namespace;
import io.fabric8.kubernetes.api.model.Node;
import io.fabric8.kubernetes.api.model.NodeBuilder;
import io.fabric8.kubernetes.api.model.ObjectMetaBuilder;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodBuilder;
import io.fabric8.kubernetes.api.model.Quantity;
import io.fabric8.kubernetes.api.model.SecretBuilder;
import io.fabric8.kubernetes.api.model.authorization.v1.SelfSubjectAccessReview;
import io.fabric8.kubernetes.api.model.authorization.v1.SelfSubjectAccessReviewBuilder;
import io.fabric8.kubernetes.client.Config;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.utils.Serialization;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The chart's RBAC on a real kube-apiserver: everything the chart renders is applied as an admin would
 * (`helm install`), then the real operator runs in-process with a client that impersonates the chart's
 * operator ServiceAccount, and the node agent's report is written as the node pods' ServiceAccount. A full
 * create / place / run / delete cycle must work with exactly these permissions, and nothing else may.
 */
class ChartRbacIT {
  static final Duration TIMEOUT = Duration.ofSeconds(60);
  static final long MI = 1L << 20;

  static String suffix;
  static String operatorNamespace;
  static String fullname;
  static String nodeName;
  static KubernetesClient admin;
  static KubernetesClient asOperator;
  static KubernetesClient asNodeAgent;
  static VfioVmOperator operator;

  @BeforeAll
  static void installChartAndStartOperatorAsItsServiceAccount() throws Exception {
    admin = KubeApiServerFixture.newClient();
    KubeApiServerFixture.installCrds(admin);

    suffix = UUID.randomUUID().toString().substring(0, 6);
    operatorNamespace = "vfiovm-system-" + suffix;
    fullname = "vfiovm-rbac-" + suffix;
    var chart =
        ChartRendering.render(
            ChartRendering.values(
                "namespace.name", operatorNamespace,
                "fullnameOverride", fullname,
                "operator.memlockOverhead", "1Mi"));
    // what `helm install` does: the namespace first, then everything else
    chart.objects().stream().filter(o -> o instanceof Namespace).forEach(ChartRbacIT::apply);
    chart.objects().stream().filter(o -> !(o instanceof Namespace)).forEach(ChartRbacIT::apply);

    String serviceAccount = chart.get(io.fabric8.kubernetes.api.model.apps.Deployment.class, fullname)
        .getSpec().getTemplate().getSpec().getServiceAccountName();
    asOperator = impersonating(operatorNamespace, serviceAccount);
    asNodeAgent = impersonating(operatorNamespace, "vfiovm-node");

    nodeName = "rbac-node-" + suffix;
    createNode(nodeName, "64Mi");

    OperatorSettings settings =
        OperatorSettings.defaults(operatorNamespace, "vfiovm/operator:test")
            .withMemlockOverhead(MI)
            .withHostReserve(0);
    // with leader election, as the chart runs it: the lease in the operator namespace needs the Role too
    operator = VfioVmOperator.start(asOperator, settings, 0, operatorNamespace);
  }

  @AfterAll
  static void stop() {
    if (operator != null) {
      operator.close();
    }
    for (KubernetesClient c : new KubernetesClient[] {asOperator, asNodeAgent, admin}) {
      if (c != null) {
        c.close();
      }
    }
  }

  @Test
  void operatorRunsAFullCycleWithTheChartsPermissionsOnly() throws Exception {
    String vmNamespace = KubeApiServerFixture.createNamespace(admin, "rbac-user");
    VfioVm vm = new VfioVm();
    vm.setMetadata(new ObjectMetaBuilder().withNamespace(vmNamespace).withName("vm1").build());
    VfioVmSpec spec = new VfioVmSpec();
    spec.setMemory("2Mi");
    spec.setDmaBackend(DmaBackend.IoUring);
    spec.setNodeName(nodeName); // the API server is shared with other tests and their nodes
    vm.setSpec(spec);
    admin.resources(VfioVm.class).resource(vm).create();

    // placed: UID and node in status (vfiovms/status), finalizer (vfiovms patch), node pod created (pods)
    Pod pod = await("node pod created by the operator").atMost(TIMEOUT).until(() -> nodePod(vmNamespace), p -> p != null);
    assertThat(pod.getMetadata().getNamespace()).isEqualTo(operatorNamespace);
    assertThat(pod.getSpec().getServiceAccountName()).isEqualTo("vfiovm-node");
    VfioVm placed = awaitVm(vmNamespace, v -> v.getStatus() != null && v.getStatus().getHostUid() != null
        && nodeName.equals(v.getStatus().getNodeName()));
    assertThat(placed.getMetadata().getFinalizers()).isNotEmpty();

    // the agent reports through its own pod's annotation, as the node pods' ServiceAccount
    NodeAgentReport report = new NodeAgentReport();
    report.setPhase(AgentPhase.Running);
    report.setVm(vmNamespace + "/vm1");
    report.setHostUid(placed.getStatus().getHostUid());
    report.setMemlockLimitBytes(3 * MI);
    report.setPinnedBytes(2 * MI);
    report.setDmaBackend("IoUring");
    report.setAccounting("PerUser");
    asNodeAgent.pods().inNamespace(operatorNamespace).withName(pod.getMetadata().getName())
        .edit(p -> new PodBuilder(p).editMetadata()
            .addToAnnotations(NodeAgentReport.POD_ANNOTATION, Serialization.asJson(report)).endMetadata().build());

    VfioVm running = awaitVm(vmNamespace, v -> v.getStatus() != null && v.getStatus().getPhase() == Phase.Running);
    assertThat(running.getStatus().getPinnedBytes()).isEqualTo(2 * MI);
    assertThat(running.getStatus().getMemlockLimitBytes()).isEqualTo(3 * MI);
    await("events written in the user's namespace").atMost(TIMEOUT).untilAsserted(() ->
        assertThat(admin.v1().events().inNamespace(vmNamespace).list().getItems())
            .anyMatch(e -> "vm1".equals(e.getInvolvedObject().getName())));
    assertThat(get(operator.httpPort(), "/readyz")).as("informers healthy under the chart's RBAC").isEqualTo(200);

    // delete: the operator deletes the node pod; the kubelet's part (pod gone) is played by the admin
    admin.resources(VfioVm.class).inNamespace(vmNamespace).withName("vm1").delete();
    await("operator deletes the node pod").atMost(TIMEOUT)
        .until(() -> nodePod(vmNamespace), p -> p == null || p.getMetadata().getDeletionTimestamp() != null);
    admin.pods().inNamespace(operatorNamespace).withLabel("vfiovm.dev/vm-namespace", vmNamespace)
        .withGracePeriod(0).delete();
    await("finalizer removed, VM gone").atMost(TIMEOUT)
        .until(() -> admin.resources(VfioVm.class).inNamespace(vmNamespace).withName("vm1").get() == null);
  }

  @Test
  void leaderElectionHoldsAndRenewsTheLeaseWithTheChartsPermissions() {
    // JOSDK's lease lock: get, create, then renew (patch); reconciling starts only once it leads
    var leases = admin.leases().inNamespace(operatorNamespace).withName(VfioVmOperator.LEASE_NAME);
    var first = await("lease acquired").atMost(TIMEOUT).until(leases::get, l -> l != null
        && l.getSpec().getHolderIdentity() != null && l.getSpec().getRenewTime() != null);
    await("lease renewed by its holder").atMost(TIMEOUT).until(leases::get, l -> l != null
        && first.getSpec().getHolderIdentity().equals(l.getSpec().getHolderIdentity())
        && !first.getSpec().getRenewTime().equals(l.getSpec().getRenewTime()));
  }

  @Test
  void operatorCannotReadSecretsCreatePodsElsewhereOrTouchOtherKinds() {
    String elsewhere = KubeApiServerFixture.createNamespace(admin, "rbac-other");
    admin.secrets().inNamespace(operatorNamespace).resource(new SecretBuilder().withNewMetadata()
        .withName("s").endMetadata().addToStringData("k", "v").build()).create();

    assertForbidden(() -> asOperator.secrets().inNamespace(operatorNamespace).withName("s").get());
    assertForbidden(() -> asOperator.secrets().inAnyNamespace().list());
    assertForbidden(() -> asOperator.pods().inNamespace(elsewhere).resource(pod("intruder")).create());
    assertForbidden(() -> asOperator.pods().inNamespace(elsewhere).list());
    assertForbidden(() -> asOperator.configMaps().inNamespace(operatorNamespace).resource(
        new ConfigMapBuilder().withNewMetadata().withName("c").endMetadata().build()).create());
    assertForbidden(() -> asOperator.apps().deployments().inNamespace(operatorNamespace).list());
    assertForbidden(() -> asOperator.nodes().withName(nodeName)
        .edit(n -> new NodeBuilder(n).editMetadata().addToLabels("x", "y").endMetadata().build()));
    assertForbidden(() -> asOperator.namespaces().withName(elsewhere).delete());
  }

  @ParameterizedTest(name = "operator {0} {1}/{2} in {3}: {4}")
  @CsvSource({
    // verb,   group,               resource,           namespace,  allowed
    "get,      vfiovm.dev,          vfiovms,            users,      true",
    "watch,    vfiovm.dev,          vfiovms,            '',         true",
    "patch,    vfiovm.dev,          vfiovms,            users,      true",
    "patch,    vfiovm.dev,          vfiovms/status,     users,      true",
    "update,   vfiovm.dev,          vfiovms/finalizers, users,      true",
    "create,   vfiovm.dev,          vfiovms,            users,      false",
    "delete,   vfiovm.dev,          vfiovms,            users,      false",
    "create,   '',                  events,             users,      true",
    "list,     '',                  nodes,              '',         true",
    "patch,    '',                  nodes,              '',         false",
    "create,   '',                  pods,               operator,   true",
    "delete,   '',                  pods,               operator,   true",
    "watch,    '',                  pods,               operator,   true",
    "create,   '',                  pods,               users,      false",
    "list,     '',                  pods,               '',         false",
    "create,   '',                  pods/exec,          operator,   false",
    "update,   coordination.k8s.io, leases,             operator,   true",
    "create,   coordination.k8s.io, leases,             users,      false",
    "get,      '',                  secrets,            operator,   false",
    "get,      '',                  configmaps,         operator,   false",
    "create,   apps,                deployments,        operator,   false",
    "create,   rbac.authorization.k8s.io, rolebindings, operator,   false",
  })
  void operatorPermissionsAreExactlyTheListedOnes(
      String verb, String group, String resource, String namespace, boolean allowed) {
    assertThat(can(asOperator, verb, group, resource, namespaceFor(namespace))).isEqualTo(allowed);
  }

  @ParameterizedTest(name = "node agent {0} {1} in {2}: {3}")
  @CsvSource({
    "get,    pods,    operator, true",
    "patch,  pods,    operator, true",
    "delete, pods,    operator, false",
    "create, pods,    operator, false",
    "list,   pods,    operator, false",
    "get,    pods,    users,    false",
    "patch,  pods,    users,    false",
    "get,    secrets, operator, false",
    "get,    nodes,   '',       false",
  })
  void nodeAgentMayOnlyReadAndPatchPodsInTheOperatorNamespace(
      String verb, String resource, String namespace, boolean allowed) {
    assertThat(can(asNodeAgent, verb, "", resource, namespaceFor(namespace))).isEqualTo(allowed);
  }

  @Test
  void nodeAgentCannotDeleteItsPodOrReadSecrets() {
    admin.pods().inNamespace(operatorNamespace).resource(pod("agent-target")).create();

    assertForbidden(() -> asNodeAgent.pods().inNamespace(operatorNamespace).withName("agent-target").delete());
    assertForbidden(() -> asNodeAgent.secrets().inNamespace(operatorNamespace).list());
    assertThat(asNodeAgent.pods().inNamespace(operatorNamespace).withName("agent-target").get()).isNotNull();
  }

  // --- helpers

  static void apply(HasMetadata object) {
    KubeApiServerFixture.apply(admin, object);
  }

  /** The node daemon's identity: its UID audit patches the node, and it can do nothing else of note. */
  @Test
  void theNodeDaemonMayPatchNodesAndNothingElse() {
    try (KubernetesClient asDaemon = impersonating(operatorNamespace, "vfiovm-node-daemon")) {
      dev.vfiovm.nodedaemon.UidAuditor auditor = new dev.vfiovm.nodedaemon.UidAuditor(asDaemon, nodeName,
          java.nio.file.Path.of("/proc"), 1879048192L, 65536L, java.time.Clock.systemUTC());
      dev.vfiovm.api.UidAudit written = auditor.auditOnce();
      assertThat(admin.nodes().withName(nodeName).get().getMetadata().getAnnotations())
          .containsEntry(dev.vfiovm.api.UidAudit.ANNOTATION, written.toJson());
      assertThat(can(asDaemon, "get", "", "nodes", null)).isTrue();
      assertThat(can(asDaemon, "patch", "", "nodes", null)).isTrue();
      for (String verb : List.of("list", "watch", "create", "delete", "update")) {
        assertThat(can(asDaemon, verb, "", "nodes", null)).as(verb + " nodes").isFalse();
      }
      assertThat(can(asDaemon, "patch", "", "nodes/status", null)).isFalse();
      for (String resource : List.of("pods", "secrets", "serviceaccounts/token", "configmaps")) {
        assertThat(can(asDaemon, "get", "", resource, operatorNamespace)).as(resource).isFalse();
        assertThat(can(asDaemon, "create", "", resource, operatorNamespace)).as(resource).isFalse();
      }
      assertThat(can(asDaemon, "get", "vfiovm.dev", "vfiovms", null)).isFalse();
      assertForbidden(() -> asDaemon.pods().inNamespace(operatorNamespace).list());
    }
  }

  static String namespaceFor(String alias) {
    return switch (alias) {
      case "operator" -> operatorNamespace;
      case "users" -> "some-users-namespace";
      default -> null;
    };
  }

  static KubernetesClient impersonating(String namespace, String serviceAccount) {
    Config config = Config.fromKubeconfig(KubeApiServerFixture.kubeConfigYaml());
    config.setImpersonateUsername("system:serviceaccount:" + namespace + ":" + serviceAccount);
    config.setImpersonateGroups(
        "system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated");
    config.setRequestTimeout(30_000);
    return new KubernetesClientBuilder().withConfig(config).build();
  }

  static boolean can(KubernetesClient client, String verb, String group, String resource, String namespace) {
    String[] parts = resource.split("/", 2);
    SelfSubjectAccessReview review =
        new SelfSubjectAccessReviewBuilder()
            .withNewSpec()
            .withNewResourceAttributes()
            .withVerb(verb)
            .withGroup(group)
            .withResource(parts[0])
            .withSubresource(parts.length > 1 ? parts[1] : null)
            .withNamespace(namespace)
            .endResourceAttributes()
            .endSpec()
            .build();
    return client.authorization().v1().selfSubjectAccessReview().create(review).getStatus().getAllowed();
  }

  static void assertForbidden(Runnable request) {
    assertThatThrownBy(request::run)
        .isInstanceOfSatisfying(KubernetesClientException.class, e -> assertThat(e.getCode()).isEqualTo(403));
  }

  static Pod pod(String name) {
    return new PodBuilder().withNewMetadata().withName(name).endMetadata()
        .withNewSpec().addNewContainer().withName("c").withImage("busybox").endContainer().endSpec().build();
  }

  static void createNode(String name, String allocatable) {
    Node node = admin.nodes().resource(new NodeBuilder().withNewMetadata().withName(name).endMetadata().build())
        .create();
    node.setStatus(new io.fabric8.kubernetes.api.model.NodeStatusBuilder()
        .addToAllocatable("memory", new Quantity(allocatable))
        .addToCapacity("memory", new Quantity(allocatable))
        .addNewCondition().withType("Ready").withStatus("True").endCondition()
        .build());
    admin.nodes().resource(node).updateStatus();
  }

  static Pod nodePod(String vmNamespace) {
    List<Pod> pods = admin.pods().inNamespace(operatorNamespace)
        .withLabels(Map.of("vfiovm.dev/vm-namespace", vmNamespace, "vfiovm.dev/vm-name", "vm1"))
        .list().getItems();
    return pods.isEmpty() ? null : pods.get(0);
  }

  static VfioVm awaitVm(String vmNamespace, java.util.function.Predicate<VfioVm> condition) {
    return await().atMost(TIMEOUT).until(
        () -> admin.resources(VfioVm.class).inNamespace(vmNamespace).withName("vm1").get(),
        v -> v != null && condition.test(v));
  }

  static int get(int port, String path) throws Exception {
    HttpResponse<String> response = HttpClient.newHttpClient().send(
        HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + path)).build(),
        HttpResponse.BodyHandlers.ofString());
    return response.statusCode();
  }
}
