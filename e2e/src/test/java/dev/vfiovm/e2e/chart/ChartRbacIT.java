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
import dev.vfiovm.controller.NodePodIdentity;
import dev.vfiovm.controller.NodePodShape;
import dev.vfiovm.controller.OperatorSettings;
import dev.vfiovm.controller.VfioVmOperator;
import dev.vfiovm.testing.KubeApiServerFixture;
import io.fabric8.kubernetes.api.model.ConfigMapBuilder;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
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
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
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
  static String identityNamespace;
  static KubernetesClient asVmA;
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

    nodeName = "rbac-node-" + suffix;
    createNode(nodeName, "64Gi"); // room for node pods' memory requests (guest + VMM + agent), not only budget

    OperatorSettings settings =
        OperatorSettings.defaults(operatorNamespace, "vfiovm/operator:test")
            .withMemlockOverhead(MI)
            .withHostReserve(0);
    // with leader election, as the chart runs it: the lease in the operator namespace needs the Role too
    operator = VfioVmOperator.start(asOperator, settings, 0, operatorNamespace);

    // two VMs whose node pods' identities the forbidden-request tests use: A's token against B's pod
    identityNamespace = KubeApiServerFixture.createNamespace(admin, "rbac-ident");
    for (String name : List.of("ida", "idb")) {
      admin.resources(VfioVm.class).resource(tinyVm(identityNamespace, name)).create();
    }
    for (String name : List.of("ida", "idb")) {
      await("node pod of " + name).atMost(TIMEOUT).until(() -> podOf(identityNamespace, name), p -> p != null);
    }
    asVmA = impersonating(operatorNamespace, NodePodIdentity.name("vfiovm-node", identityNamespace, "ida"));
  }

  static VfioVm tinyVm(String namespace, String name) {
    VfioVm vm = new VfioVm();
    vm.setMetadata(new ObjectMetaBuilder().withNamespace(namespace).withName(name).build());
    VfioVmSpec spec = new VfioVmSpec();
    spec.setMemory("2Mi");
    spec.setDmaBackend(DmaBackend.IoUring);
    spec.setNodeName(nodeName); // the API server is shared with other tests and their nodes
    vm.setSpec(spec);
    return vm;
  }

  static Pod podOf(String vmNamespace, String vmName) {
    return admin.pods().inNamespace(operatorNamespace).withName(NodePodShape.podName(vmNamespace, vmName)).get();
  }

  @AfterAll
  static void stop() {
    if (operator != null) {
      operator.close();
    }
    for (KubernetesClient c : new KubernetesClient[] {asOperator, asVmA, admin}) {
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
    String identity = NodePodIdentity.name("vfiovm-node", vmNamespace, "vm1");
    assertThat(pod.getSpec().getServiceAccountName()).isEqualTo(identity);
    assertThat(admin.serviceAccounts().inNamespace(operatorNamespace).withName(identity).get()).isNotNull();
    assertThat(admin.rbac().roles().inNamespace(operatorNamespace).withName(identity).get()).isNotNull();
    assertThat(admin.rbac().roleBindings().inNamespace(operatorNamespace).withName(identity).get()).isNotNull();
    VfioVm placed = awaitVm(vmNamespace, v -> v.getStatus() != null && v.getStatus().getHostUid() != null
        && nodeName.equals(v.getStatus().getNodeName()));
    assertThat(placed.getMetadata().getFinalizers()).isNotEmpty();

    // the agent reports through its own pod's annotation, as its VM's own ServiceAccount
    NodeAgentReport report = new NodeAgentReport();
    report.setPhase(AgentPhase.Running);
    report.setVm(vmNamespace + "/vm1");
    report.setHostUid(placed.getStatus().getHostUid());
    report.setMemlockLimitBytes(3 * MI);
    report.setPinnedBytes(2 * MI);
    report.setDmaBackend("IoUring");
    report.setAccounting("PerUser");
    try (KubernetesClient asAgent = impersonating(operatorNamespace, identity)) {
      asAgent.pods().inNamespace(operatorNamespace).withName(pod.getMetadata().getName())
          .edit(p -> new PodBuilder(p).editMetadata()
              .addToAnnotations(NodeAgentReport.POD_ANNOTATION, Serialization.asJson(report)).endMetadata().build());
    }

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
    // its identity went with its pod
    assertThat(admin.serviceAccounts().inNamespace(operatorNamespace).withName(identity).get()).isNull();
    assertThat(admin.rbac().roles().inNamespace(operatorNamespace).withName(identity).get()).isNull();
    assertThat(admin.rbac().roleBindings().inNamespace(operatorNamespace).withName(identity).get()).isNull();
  }

  @Test
  void aHotPlugRunsWithTheChartsPermissionsOnly() throws Exception {
    // the node advertises the IOMMU and one device, as its vfiovm-node daemon would
    Node node = admin.nodes().withName(nodeName).get();
    node.getStatus().getAllocatable().put("vfiovm.dev/iommu", new Quantity("64"));
    node.getStatus().getCapacity().put("vfiovm.dev/iommu", new Quantity("64"));
    node.getStatus().getAllocatable().put("vfiovm.dev/pci-0000-3b-00.1", new Quantity("1"));
    node.getStatus().getCapacity().put("vfiovm.dev/pci-0000-3b-00.1", new Quantity("1"));
    admin.nodes().resource(node).updateStatus();
    String vmNamespace = KubeApiServerFixture.createNamespace(admin, "rbac-hotplug");
    VfioVm vm = new VfioVm();
    vm.setMetadata(new ObjectMetaBuilder().withNamespace(vmNamespace).withName("vm1").build());
    VfioVmSpec spec = new VfioVmSpec();
    spec.setMemory("2Mi");
    spec.setDmaBackend(DmaBackend.Iommufd);
    spec.setNodeName(nodeName);
    vm.setSpec(spec);
    admin.resources(VfioVm.class).resource(vm).create();
    Pod pod = await("node pod created by the operator").atMost(TIMEOUT).until(() -> nodePod(vmNamespace), p -> p != null);
    VfioVm placed = awaitVm(vmNamespace, v -> v.getStatus() != null && v.getStatus().getHostUid() != null);
    NodeAgentReport report = new NodeAgentReport();
    report.setPhase(AgentPhase.Running);
    report.setHostUid(placed.getStatus().getHostUid());
    report.setDmaBackend("Iommufd");
    report.setAccounting("PerUser");
    String identity = NodePodIdentity.name("vfiovm-node", vmNamespace, "vm1");
    try (KubernetesClient asAgent = impersonating(operatorNamespace, identity)) {
      asAgent.pods().inNamespace(operatorNamespace).withName(pod.getMetadata().getName())
          .edit(p -> new PodBuilder(p).editMetadata()
              .addToAnnotations(NodeAgentReport.POD_ANNOTATION, Serialization.asJson(report)).endMetadata().build());
    }
    awaitVm(vmNamespace, v -> v.getStatus().getPhase() == Phase.Running);

    // the plug: the operator updates the UID claim (leases update) and creates the attachment pod (pods create)
    admin.resources(VfioVm.class).inNamespace(vmNamespace).withName("vm1").patch(PatchContext.of(PatchType.JSON),
        "[{\"op\":\"add\",\"path\":\"/spec/devices/-\",\"value\":{\"pciAddress\":\"0000:3b:00.1\"}}]");
    await("attachment pod created by the operator").atMost(TIMEOUT).until(() -> admin.pods().inNamespace(operatorNamespace)
        .withLabels(Map.of("vfiovm.dev/vm-namespace", vmNamespace, "vfiovm.dev/role", "device-attachment"))
        .list().getItems().size() == 1);
    assertThat(admin.leases().inNamespace(operatorNamespace).withName("vfiovm-uid-" + placed.getStatus().getHostUid())
        .get().getMetadata().getAnnotations()).containsEntry("vfiovm.dev/hotplugged-devices", "[\"0000:3b:00.1\"]");

    // deletion takes the attachment pod with the node pod (pods delete)
    admin.resources(VfioVm.class).inNamespace(vmNamespace).withName("vm1").delete();
    await("operator deletes the attachment pod").atMost(TIMEOUT).until(() -> admin.pods().inNamespace(operatorNamespace)
        .withLabel("vfiovm.dev/vm-namespace", vmNamespace).list().getItems().stream()
        .allMatch(p -> p.getMetadata().getDeletionTimestamp() != null));
    await("finalizer removed, VM gone").atMost(TIMEOUT).until(() -> {
      admin.pods().inNamespace(operatorNamespace).withLabel("vfiovm.dev/vm-namespace", vmNamespace)
          .withGracePeriod(0).delete();
      return admin.resources(VfioVm.class).inNamespace(vmNamespace).withName("vm1").get() == null;
    });
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
    assertForbidden(() -> asOperator.pods().inNamespace(elsewhere).withName("intruder").delete());
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
    "list,     '',                  pods,               '',         true",
    "get,      '',                  pods,               users,      false",
    "patch,    '',                  pods,               users,      false",
    "delete,   '',                  pods,               users,      false",
    "create,   '',                  pods/exec,          operator,   false",
    "update,   coordination.k8s.io, leases,             operator,   true",
    "create,   coordination.k8s.io, leases,             users,      false",
    "get,      '',                  secrets,            operator,   false",
    "get,      '',                  configmaps,         operator,   false",
    "create,   apps,                deployments,        operator,   false",
    "create,   '',                  serviceaccounts,    operator,   true",
    "delete,   '',                  serviceaccounts,    operator,   true",
    "create,   rbac.authorization.k8s.io, roles,        operator,   true",
    "create,   rbac.authorization.k8s.io, rolebindings, operator,   true",
    "delete,   rbac.authorization.k8s.io, rolebindings, operator,   true",
    "create,   '',                  serviceaccounts,    users,      false",
    "create,   rbac.authorization.k8s.io, rolebindings, users,      false",
    "create,   rbac.authorization.k8s.io, clusterroles, '',         false",
    "create,   rbac.authorization.k8s.io, clusterrolebindings, '',  false",
    "create,   '',                  serviceaccounts/token, operator, false",
    "create,   '',                  configmaps,         operator,   false",
  })
  void operatorPermissionsAreExactlyTheListedOnes(
      String verb, String group, String resource, String namespace, boolean allowed) {
    assertThat(can(asOperator, verb, group, resource, namespaceFor(namespace))).isEqualTo(allowed);
  }

  @Test
  void theOperatorMayTouchOnlyTheQuarantineConfigMapAndCannotGrantWhatItLacks() {
    assertThat(can(asOperator, "get", "", "configmaps", operatorNamespace, "vfiovm-uid-quarantine")).isTrue();
    assertThat(can(asOperator, "patch", "", "configmaps", operatorNamespace, "vfiovm-uid-quarantine")).isTrue();
    assertThat(can(asOperator, "get", "", "configmaps", operatorNamespace, "kube-root-ca.crt")).isFalse();
    assertThat(can(asOperator, "delete", "", "configmaps", operatorNamespace, "vfiovm-uid-quarantine")).isFalse();
    // the RBAC escalation check: a Role granting what the operator does not hold is refused
    assertForbidden(() -> asOperator.rbac().roles().inNamespace(operatorNamespace).resource(
        new io.fabric8.kubernetes.api.model.rbac.RoleBuilder().withNewMetadata().withName("grab").endMetadata()
            .addNewRule().withApiGroups("").withResources("secrets").withVerbs("get").endRule().build()).create());
    assertForbidden(() -> asOperator.rbac().roleBindings().inNamespace(operatorNamespace).resource(
        new io.fabric8.kubernetes.api.model.rbac.RoleBindingBuilder().withNewMetadata().withName("grab").endMetadata()
            // cluster-admin, not the aggregated admin (no aggregation controller runs here: its rules are empty)
            .withNewRoleRef().withApiGroup("rbac.authorization.k8s.io").withKind("ClusterRole")
            .withName("cluster-admin").endRoleRef().addNewSubject().withKind("ServiceAccount").withName("x").withNamespace(operatorNamespace)
            .endSubject().build()).create());
  }

  @Test
  void aNodePodsIdentityMayGetAndPatchItsOwnPodOnly() {
    String own = NodePodShape.podName(identityNamespace, "ida");
    String other = NodePodShape.podName(identityNamespace, "idb");
    admin.pods().inNamespace(operatorNamespace).resource(pod("unrelated")).create();
    var pods = asVmA.pods().inNamespace(operatorNamespace);

    // what the agent does: read its pod, merge-patch its report annotation
    assertThat(pods.withName(own).get().getMetadata().getName()).isEqualTo(own);
    pods.withName(own).patch(PatchContext.of(PatchType.JSON_MERGE),
        "{\"metadata\":{\"annotations\":{\"vfiovm.dev/probe\":\"own\"}}}");
    assertThat(admin.pods().inNamespace(operatorNamespace).withName(own).get().getMetadata().getAnnotations())
        .containsEntry("vfiovm.dev/probe", "own");

    for (String target : List.of(other, "unrelated")) {
      assertForbidden(() -> pods.withName(target).get());
      assertForbidden(() -> pods.withName(target).patch(PatchContext.of(PatchType.JSON_MERGE),
          "{\"metadata\":{\"annotations\":{\"vfiovm.dev/probe\":\"a\"}}}"));
      assertForbidden(() -> pods.withName(target).delete());
    }
    assertForbidden(() -> pods.withName(own).delete());
    assertForbidden(() -> pods.list());
    assertForbidden(() -> asVmA.pods().inAnyNamespace().list());
    assertForbidden(() -> pods.resource(pod("intruder")).create());
    assertForbidden(() -> asVmA.pods().inNamespace(identityNamespace).resource(pod("intruder")).create());
    assertForbidden(() -> asVmA.secrets().inNamespace(operatorNamespace).list());
    assertForbidden(() -> asVmA.secrets().inNamespace(operatorNamespace).withName("s-ident").get());
    assertForbidden(() -> asVmA.configMaps().inNamespace(operatorNamespace).withName("vfiovm-uid-quarantine").get());
    assertForbidden(() -> asVmA.configMaps().inNamespace(operatorNamespace).list());
    assertForbidden(() -> asVmA.configMaps().inNamespace(operatorNamespace).resource(
        new ConfigMapBuilder().withNewMetadata().withName("c").endMetadata().build()).create());
    assertForbidden(() -> asVmA.resources(VfioVm.class).inNamespace(identityNamespace).withName("ida").get());
    assertForbidden(() -> asVmA.resources(VfioVm.class).inAnyNamespace().list());
    assertForbidden(() -> asVmA.resources(VfioVm.class).inNamespace(identityNamespace).resource(
        tinyVm(identityNamespace, "spawned")).create());
    assertForbidden(() -> asVmA.nodes().list());
    assertForbidden(() -> asVmA.nodes().withName(nodeName).get());
    assertForbidden(() -> asVmA.serviceAccounts().inNamespace(operatorNamespace).list());
    assertForbidden(() -> asVmA.rbac().roleBindings().inNamespace(operatorNamespace).list());
    assertForbidden(() -> asVmA.leases().inNamespace(operatorNamespace).withName(VfioVmOperator.LEASE_NAME).get());
    assertThat(admin.pods().inNamespace(operatorNamespace).withName(other).get().getMetadata().getAnnotations())
        .as("B's pod untouched").doesNotContainKey("vfiovm.dev/probe");
  }

  @ParameterizedTest(name = "VM A's node pod {0} {1}/{2} {3}: {4}")
  @CsvSource({
    // verb,  group,      resource,             name,      allowed
    "get,     '',         pods,                 own,       true",
    "patch,   '',         pods,                 own,       true",
    "update,  '',         pods,                 own,       false",
    "delete,  '',         pods,                 own,       false",
    "get,     '',         pods,                 other,     false",
    "patch,   '',         pods,                 other,     false",
    "delete,  '',         pods,                 other,     false",
    "list,    '',         pods,                 '',        false",
    "watch,   '',         pods,                 '',        false",
    "create,  '',         pods,                 '',        false",
    "create,  '',         pods/exec,            own,       false",
    "create,  '',         pods/exec,            other,     false",
    "get,     '',         pods/exec,            other,     false",
    "create,  '',         pods/attach,          other,     false",
    "create,  '',         pods/portforward,     other,     false",
    "create,  '',         pods/eviction,        other,     false",
    "get,     '',         pods/log,             other,     false",
    "patch,   '',         pods/status,          own,       false",
    "patch,   '',         pods/status,          other,     false",
    "get,     '',         secrets,              '',        false",
    "list,    '',         secrets,              '',        false",
    "get,     '',         configmaps,           '',        false",
    "create,  '',         serviceaccounts/token, '',       false",
    "get,     vfiovm.dev, vfiovms,              '',        false",
    "patch,   vfiovm.dev, vfiovms/status,       '',        false",
    "get,     '',         nodes,                '',        false",
    "patch,   '',         nodes,                '',        false",
    "create,  rbac.authorization.k8s.io, rolebindings, '', false",
  })
  void aNodePodsIdentityHasExactlyItsOwnPodsGetAndPatch(
      String verb, String group, String resource, String name, boolean allowed) {
    String target = switch (name) {
      case "own" -> NodePodShape.podName(identityNamespace, "ida");
      case "other" -> NodePodShape.podName(identityNamespace, "idb");
      default -> null;
    };
    String namespace = resource.equals("nodes") ? null : operatorNamespace;
    assertThat(can(asVmA, verb, group, resource, namespace, target)).isEqualTo(allowed);
    if (namespace != null) {
      assertThat(can(asVmA, verb, group, resource, identityNamespace, target)).as("in the VM's namespace").isFalse();
    }
  }

  @Test
  void aDeletedVmsIdentityIsGoneAndItsTokenGrantsNothing() {
    String ns = KubeApiServerFixture.createNamespace(admin, "rbac-gone");
    admin.resources(VfioVm.class).resource(tinyVm(ns, "brief")).create();
    Pod pod = await().atMost(TIMEOUT).until(() -> podOf(ns, "brief"), p -> p != null);
    String identity = NodePodIdentity.name("vfiovm-node", ns, "brief");
    try (KubernetesClient asBrief = impersonating(operatorNamespace, identity)) {
      assertThat(asBrief.pods().inNamespace(operatorNamespace).withName(pod.getMetadata().getName()).get()).isNotNull();
      admin.resources(VfioVm.class).inNamespace(ns).withName("brief").delete();
      await().atMost(TIMEOUT).until(() -> {
        KubeApiServerFixture.finishPodDeletions(admin, operatorNamespace);
        return admin.resources(VfioVm.class).inNamespace(ns).withName("brief").get() == null;
      });
      assertThat(admin.serviceAccounts().inNamespace(operatorNamespace).withName(identity).get()).isNull();
      assertThat(can(asBrief, "get", "", "pods", operatorNamespace, pod.getMetadata().getName())).isFalse();
    }
  }

  @Test
  void anOrphanedIdentityIsDeletedWhenTheOperatorStarts() throws Exception {
    // an identity whose VfioVm is gone (say, its finalizer was removed by hand while the operator was down)
    VfioVm ghost = tinyVm("rbac-ghost-" + suffix, "ghost");
    OperatorSettings settings = OperatorSettings.defaults(operatorNamespace, "vfiovm/operator:test");
    for (HasMetadata o : NodePodIdentity.desired(ghost, settings).all()) {
      apply(o);
    }
    String name = NodePodIdentity.name(ghost, settings);
    assertThat(admin.serviceAccounts().inNamespace(operatorNamespace).withName(name).get()).isNotNull();
    operator.close();
    operator = VfioVmOperator.start(asOperator, settings.withMemlockOverhead(MI).withHostReserve(0), 0,
        operatorNamespace);
    await("orphaned identity deleted").atMost(TIMEOUT).until(() ->
        admin.serviceAccounts().inNamespace(operatorNamespace).withName(name).get() == null
            && admin.rbac().roles().inNamespace(operatorNamespace).withName(name).get() == null
            && admin.rbac().roleBindings().inNamespace(operatorNamespace).withName(name).get() == null);
    // the live VMs' identities stay
    assertThat(admin.serviceAccounts().inNamespace(operatorNamespace)
        .withName(NodePodIdentity.name("vfiovm-node", identityNamespace, "ida")).get()).isNotNull();
  }

  /**
   * A tenant with only VfioVm rights in a restricted namespace: no pod, ServiceAccount or binding anywhere, and
   * a VfioVm naming a program does not keep it: the CRD's structural schema prunes unknown fields, so the node
   * pod the operator makes runs the operator's image with the node-agent arguments only.
   */
  @Test
  void aTenantWithOnlyVfioVmRightsCanMakeNothingRunOutsideTheSandbox() {
    String tenant = "tenant-" + suffix;
    admin.namespaces().resource(new io.fabric8.kubernetes.api.model.NamespaceBuilder().withNewMetadata()
        .withName(tenant).addToLabels("pod-security.kubernetes.io/enforce", "restricted").endMetadata().build())
        .create();
    apply(new io.fabric8.kubernetes.api.model.rbac.RoleBuilder().withNewMetadata().withName("vfiovm-tenant")
        .withNamespace(tenant).endMetadata()
        .addNewRule().withApiGroups("vfiovm.dev").withResources("vfiovms").withVerbs("create", "get", "update")
        .endRule().build());
    apply(new io.fabric8.kubernetes.api.model.rbac.RoleBindingBuilder().withNewMetadata().withName("vfiovm-tenant")
        .withNamespace(tenant).endMetadata()
        .withNewRoleRef().withApiGroup("rbac.authorization.k8s.io").withKind("Role").withName("vfiovm-tenant")
        .endRoleRef().addNewSubject().withKind("User").withApiGroup("rbac.authorization.k8s.io")
        .withName("alice-" + suffix).endSubject().build());
    Config config = Config.fromKubeconfig(KubeApiServerFixture.kubeConfigYaml());
    config.setImpersonateUsername("alice-" + suffix);
    config.setImpersonateGroups("system:authenticated");
    try (KubernetesClient asTenant = new KubernetesClientBuilder().withConfig(config).build()) {
      for (String ns : List.of(operatorNamespace, tenant)) {
        assertForbidden(() -> asTenant.pods().inNamespace(ns).resource(pod("tenant-pod")).create());
        assertForbidden(() -> asTenant.serviceAccounts().inNamespace(ns).resource(
            new io.fabric8.kubernetes.api.model.ServiceAccountBuilder().withNewMetadata().withName("sa").endMetadata()
                .build()).create());
        assertForbidden(() -> asTenant.rbac().roleBindings().inNamespace(ns).resource(
            new io.fabric8.kubernetes.api.model.rbac.RoleBindingBuilder().withNewMetadata().withName("rb")
                .endMetadata().withNewRoleRef().withApiGroup("rbac.authorization.k8s.io").withKind("ClusterRole")
                .withName("cluster-admin").endRoleRef().addNewSubject().withKind("User")
                .withApiGroup("rbac.authorization.k8s.io").withName("alice-" + suffix).endSubject().build()).create());
        assertThat(can(asTenant, "create", "", "pods/exec", ns, null)).isFalse();
        assertThat(can(asTenant, "patch", "vfiovm.dev", "vfiovms/status", ns, null)).isFalse();
      }
      assertThat(can(asTenant, "patch", "", "configmaps", operatorNamespace, "vfiovm-uid-quarantine")).isFalse();

      // a VfioVm that names programs to run: every such field is pruned by the API server
      GenericKubernetesResource raw = Serialization.unmarshal("""
          apiVersion: vfiovm.dev/v1alpha1
          kind: VfioVm
          metadata:
            name: sneaky
          spec:
            memory: 2Mi
            dmaBackend: IoUring
            nodeName: %s
            vmCommand: ["/bin/sh", "-c", "cat /var/run/secrets/kubernetes.io/serviceaccount/token"]
            vmm: /bin/sh
            qemu: /tmp/evil-qemu
            command: ["/bin/sh"]
            image: evil/image
            firmware: /bin/sh
          """.formatted(nodeName), GenericKubernetesResource.class);
      GenericKubernetesResource created = asTenant.genericKubernetesResources("vfiovm.dev/v1alpha1", "VfioVm")
          .inNamespace(tenant).resource(raw).create();
      GenericKubernetesResource read = asTenant.genericKubernetesResources("vfiovm.dev/v1alpha1", "VfioVm")
          .inNamespace(tenant).withName("sneaky").get();
      for (GenericKubernetesResource r : List.of(created, read)) {
        @SuppressWarnings("unchecked")
        Map<String, Object> spec = (Map<String, Object>) r.getAdditionalProperties().get("spec");
        assertThat(spec).doesNotContainKeys("vmCommand", "vmm", "qemu", "command", "image", "firmware");
        assertThat(spec).containsEntry("memory", "2Mi");
      }
      Pod pod = await().atMost(TIMEOUT).until(() -> podOf(tenant, "sneaky"), p -> p != null);
      assertThat(pod.getSpec().getContainers()).allSatisfy(c -> {
        assertThat(c.getImage()).isEqualTo("vfiovm/operator:test");
        assertThat(c.getCommand()).isNullOrEmpty();
        assertThat(String.join(" ", c.getArgs())).doesNotContain("/bin/sh").doesNotContain("evil")
            .doesNotContain("--vm-command").startsWith("node-agent ");
      });
      assertThat(pod.getSpec().getInitContainers()).isEmpty();
      assertThat(admin.pods().inNamespace(tenant).list().getItems()).as("nothing runs in the tenant's namespace")
          .isEmpty();
      admin.resources(VfioVm.class).inNamespace(tenant).withName("sneaky").delete();
      await().atMost(TIMEOUT).until(() -> {
        KubeApiServerFixture.finishPodDeletions(admin, operatorNamespace);
        return admin.resources(VfioVm.class).inNamespace(tenant).withName("sneaky").get() == null;
      });
    }
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
    return can(client, verb, group, resource, namespace, null);
  }

  static boolean can(KubernetesClient client, String verb, String group, String resource, String namespace,
      String name) {
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
            .withName(name)
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
