package dev.vfiovm.e2e.chart;

import static dev.vfiovm.e2e.chart.ChartRendering.render;
import static dev.vfiovm.e2e.chart.ChartRendering.values;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.marcnuri.helm.Helm;
import com.marcnuri.helm.LintResult;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.EnvVar;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.api.model.Namespace;
import io.fabric8.kubernetes.api.model.Service;
import io.fabric8.kubernetes.api.model.ServiceAccount;
import io.fabric8.kubernetes.api.model.apiextensions.v1.CustomResourceDefinition;
import io.fabric8.kubernetes.api.model.apps.DaemonSet;
import io.fabric8.kubernetes.api.model.apps.Deployment;
import io.fabric8.kubernetes.api.model.rbac.ClusterRole;
import io.fabric8.kubernetes.api.model.rbac.ClusterRoleBinding;
import io.fabric8.kubernetes.api.model.rbac.PolicyRule;
import io.fabric8.kubernetes.api.model.rbac.Role;
import io.fabric8.kubernetes.api.model.rbac.RoleBinding;
import io.fabric8.kubernetes.client.utils.Serialization;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class ChartTest {
  static final String NS = "vfiovm-system";
  static final String FULLNAME = "vfiovm-operator";
  static final String GENERATED_CRD = "META-INF/fabric8/vfiovms.vfiovm.dev-v1.yml";

  @Test
  void lintsCleanInStrictMode() {
    LintResult lint = new Helm(ChartRendering.chartDir()).lint().strict().call();

    assertThat(lint.isFailed()).as("helm lint --strict: %s", lint.getMessages()).isFalse();
    assertThat(lint.getMessages()).noneMatch(m -> m.contains("[WARNING]") || m.contains("[ERROR]"));
  }

  @Test
  void defaultsRunOperatorAndNodePodsInOnePrivilegedNamespace() {
    var chart = render(Map.of());

    Namespace ns = chart.get(Namespace.class, NS);
    assertThat(ns.getMetadata().getLabels())
        .containsEntry("pod-security.kubernetes.io/enforce", "privileged");
    chart.objects().stream()
        .filter(o -> !(o instanceof Namespace || o instanceof ClusterRole || o instanceof ClusterRoleBinding))
        .filter(o -> !(o instanceof CustomResourceDefinition))
        .forEach(o -> assertThat(o.getMetadata().getNamespace()).as(o.getKind()).isEqualTo(NS));

    Deployment deployment = chart.get(Deployment.class, FULLNAME);
    var pod = deployment.getSpec().getTemplate().getSpec();
    assertThat(pod.getServiceAccountName()).isEqualTo(FULLNAME);
    assertThat(pod.getSecurityContext().getRunAsNonRoot()).isTrue();
    Container operator = pod.getContainers().get(0);
    assertThat(operator.getImage()).isEqualTo("vfiovm/operator:0.1.0-SNAPSHOT");
    assertThat(operator.getArgs()).containsExactly("operator");
    assertThat(env(operator))
        .containsEntry("VFIOVM_UID_RANGE_START", "1879048192")
        .containsEntry("VFIOVM_UID_RANGE_SIZE", "65536")
        .containsEntry("VFIOVM_MEMLOCK_OVERHEAD", "1Gi")
        .containsEntry("VFIOVM_HOST_RESERVE", "2Gi")
        .containsEntry("VFIOVM_VMM_OVERHEAD", "256Mi")
        .containsEntry("VFIOVM_AGENT_MEMORY", "320Mi")
        .containsEntry("VFIOVM_RECONCILE_RETRIES", "10")
        .containsEntry("VFIOVM_RECONCILE_RETRY_INTERVAL_MS", "2000")
        .containsEntry("VFIOVM_MAX_RECONCILE_INTERVAL_S", "300")
        .containsEntry("VFIOVM_NODE_POD_NAMESPACE", NS)
        .containsEntry("VFIOVM_NODE_POD_IMAGE", "vfiovm/operator:0.1.0-SNAPSHOT")
        .containsEntry("VFIOVM_NODE_POD_SERVICE_ACCOUNT", "vfiovm-node")
        .containsEntry("VFIOVM_HTTP_PORT", "8080")
        .containsEntry("VFIOVM_LEADER_ELECTION", "true")
        .containsEntry("VFIOVM_LOG_LEVEL", "info");
    assertThat(operator.getEnv())
        .filteredOn(e -> e.getName().equals("POD_NAMESPACE"))
        .singleElement()
        .satisfies(e -> assertThat(e.getValueFrom().getFieldRef().getFieldPath()).isEqualTo("metadata.namespace"));
    assertThat(operator.getLivenessProbe().getHttpGet().getPath()).isEqualTo("/healthz");
    assertThat(operator.getReadinessProbe().getHttpGet().getPath()).isEqualTo("/readyz");
    assertThat(operator.getPorts()).singleElement().satisfies(p -> assertThat(p.getContainerPort()).isEqualTo(8080));
    assertThat(operator.getSecurityContext().getReadOnlyRootFilesystem()).isTrue();
    assertThat(operator.getSecurityContext().getAllowPrivilegeEscalation()).isFalse();
    assertThat(operator.getSecurityContext().getCapabilities().getDrop()).containsExactly("ALL");
    assertThat(operator.getResources().getLimits()).containsKey("memory");
    assertThat(operator.getResources().getRequests()).containsKeys("cpu", "memory");
    assertThat(deployment.getSpec().getStrategy()).isNull();

    assertThat(chart.find(ServiceAccount.class, "vfiovm-node")).as("no shared node-pod ServiceAccount").isEmpty();
    var quarantine = chart.get(io.fabric8.kubernetes.api.model.ConfigMap.class, "vfiovm-uid-quarantine");
    assertThat(quarantine.getMetadata().getNamespace()).isEqualTo(NS);
    assertThat(quarantine.getData()).as("the operator alone writes the data; an upgrade keeps it").isNullOrEmpty();
    assertThat(quarantine.getMetadata().getAnnotations()).containsEntry("helm.sh/resource-policy", "keep");
    Service metrics = chart.get(Service.class, FULLNAME + "-metrics");
    assertThat(metrics.getSpec().getSelector())
        .isEqualTo(deployment.getSpec().getSelector().getMatchLabels());
    assertThat(metrics.getSpec().getPorts()).singleElement().satisfies(p -> assertThat(p.getPort()).isEqualTo(8080));
    assertThat(chart.all(GenericKubernetesResource.class)).as("no ServiceMonitor by default").isEmpty();
  }

  @Test
  void rbacIsLeastPrivilege() {
    var chart = render(Map.of());

    assertThat(rules(chart.get(ClusterRole.class, FULLNAME).getRules()))
        .containsExactlyInAnyOrder(
            "vfiovm.dev/vfiovms: get,list,watch,patch,update",
            "vfiovm.dev/vfiovms/status: patch,update",
            "vfiovm.dev/vfiovms/finalizers: update",
            "/events: create,patch",
            "events.k8s.io/events: create,patch",
            "/nodes: get,list,watch",
            "/pods: list,watch");
    assertThat(rules(chart.get(Role.class, FULLNAME).getRules()))
        .containsExactlyInAnyOrder(
            "/pods: get,list,watch,create,delete,patch", "coordination.k8s.io/leases: get,list,watch,create,update,patch,delete",
            "/serviceaccounts: get,list,create,patch,delete",
            "rbac.authorization.k8s.io/roles: get,list,create,patch,delete",
            "rbac.authorization.k8s.io/rolebindings: get,list,create,patch,delete",
            "/configmaps[vfiovm-uid-quarantine]: get,patch");
    assertThat(chart.find(Role.class, "vfiovm-node")).as("no shared node-pod Role: one per VM").isEmpty();
    assertThat(chart.find(RoleBinding.class, "vfiovm-node")).isEmpty();

    ClusterRoleBinding clusterBinding = chart.get(ClusterRoleBinding.class, FULLNAME);
    assertThat(clusterBinding.getSubjects())
        .singleElement()
        .satisfies(s -> assertThat(s.getName() + "@" + s.getNamespace()).isEqualTo(FULLNAME + "@" + NS));
    assertThat(chart.get(RoleBinding.class, FULLNAME).getRoleRef().getName()).isEqualTo(FULLNAME);
  }

  @Test
  void theNodeDaemonIsADaemonSetWithOnlyWhatItUses() {
    var chart = render(Map.of());

    DaemonSet ds = chart.get(DaemonSet.class, "vfiovm-node");
    assertThat(ds.getMetadata().getNamespace()).isEqualTo(NS);
    var pod = ds.getSpec().getTemplate().getSpec();
    assertThat(pod.getServiceAccountName()).isEqualTo("vfiovm-node-daemon");
    assertThat(pod.getHostPID()).as("the UID audit reads the host's /proc").isTrue();
    assertThat(pod.getHostNetwork()).isNull();
    assertThat(pod.getTolerations()).singleElement().satisfies(t -> assertThat(t.getOperator()).isEqualTo("Exists"));
    Container daemon = pod.getContainers().get(0);
    assertThat(daemon.getName()).isEqualTo("node-daemon");
    assertThat(daemon.getArgs()).containsExactly("node-daemon");
    assertThat(daemon.getImage()).isEqualTo("vfiovm/operator:0.1.0-SNAPSHOT");
    var sc = daemon.getSecurityContext();
    assertThat(sc.getPrivileged()).isFalse();
    assertThat(sc.getAllowPrivilegeEscalation()).isFalse();
    assertThat(sc.getReadOnlyRootFilesystem()).isTrue();
    assertThat(sc.getCapabilities().getDrop()).containsExactly("ALL");
    assertThat(sc.getCapabilities().getAdd()).isNullOrEmpty();
    assertThat(sc.getSeccompProfile().getType()).isEqualTo("RuntimeDefault");
    assertThat(env(daemon))
        .containsEntry("VFIOVM_UID_RANGE_START", "1879048192")
        .containsEntry("VFIOVM_UID_RANGE_SIZE", "65536")
        .containsEntry("VFIOVM_AUDIT_INTERVAL", "15s")
        .containsEntry("VFIOVM_IOMMU_SLOTS", "64")
        .containsEntry("VFIOVM_PLUGIN_DIR", "/var/lib/kubelet/device-plugins")
        .containsEntry("VFIOVM_HOST_ROOT", "/host");
    assertThat(daemon.getEnv()).filteredOn(e -> e.getName().equals("NODE_NAME")).singleElement()
        .satisfies(e -> assertThat(e.getValueFrom().getFieldRef().getFieldPath()).isEqualTo("spec.nodeName"));
    // rw only where it writes (its sockets), read-only where it only looks
    assertThat(daemon.getVolumeMounts()).extracting(m -> m.getName() + ":" + m.getMountPath() + ":"
            + Boolean.TRUE.equals(m.getReadOnly()))
        .containsExactlyInAnyOrder("device-plugins:/var/lib/kubelet/device-plugins:false",
            "host-dev:/host/dev:true", "host-sys:/host/sys:true", "tmp:/tmp:false");
    assertThat(pod.getVolumes()).filteredOn(v -> v.getHostPath() != null)
        .extracting(v -> v.getName() + "=" + v.getHostPath().getPath())
        .containsExactlyInAnyOrder("device-plugins=/var/lib/kubelet/device-plugins", "host-dev=/dev", "host-sys=/sys");

    assertThat(rules(chart.get(ClusterRole.class, FULLNAME + "-node-daemon").getRules()))
        .containsExactly("/nodes: get,patch");
    assertThat(chart.get(ClusterRoleBinding.class, FULLNAME + "-node-daemon").getSubjects()).singleElement()
        .satisfies(s -> assertThat(s.getName() + "@" + s.getNamespace()).isEqualTo("vfiovm-node-daemon@" + NS));
    assertThat(chart.get(ServiceAccount.class, "vfiovm-node-daemon").getMetadata().getNamespace()).isEqualTo(NS);

    assertThat(env(chart.get(Deployment.class, FULLNAME).getSpec().getTemplate().getSpec().getContainers().get(0)))
        .containsEntry("VFIOVM_NODE_POD_CAPABILITIES", "SETUID,SETGID,SETPCAP,KILL,SYS_PTRACE,SYS_RESOURCE");
  }

  @Test
  void nodeDaemonValues() {
    var chart = render(values(
        "nodeDaemon.kubeletDir", "/var/lib/vfiovm-local/kubelet/",
        "nodeDaemon.auditInterval", "3s",
        "nodeDaemon.iommuSlots", 8,
        "nodeDaemon.image", "registry.example/daemon:2",
        "operator.uidRange.start", 200000,
        "nodePods.capabilities[0]", "SETUID", "nodePods.capabilities[1]", "SETGID",
        "nodePods.capabilities[2]", "SETPCAP", "nodePods.capabilities[3]", "KILL"));
    DaemonSet ds = chart.get(DaemonSet.class, "vfiovm-node");
    Container daemon = ds.getSpec().getTemplate().getSpec().getContainers().get(0);
    assertThat(daemon.getImage()).isEqualTo("registry.example/daemon:2");
    assertThat(env(daemon)).containsEntry("VFIOVM_AUDIT_INTERVAL", "3s").containsEntry("VFIOVM_IOMMU_SLOTS", "8")
        .containsEntry("VFIOVM_UID_RANGE_START", "200000");
    assertThat(ds.getSpec().getTemplate().getSpec().getVolumes()).filteredOn(v -> v.getName().equals("device-plugins"))
        .singleElement().satisfies(v ->
            assertThat(v.getHostPath().getPath()).isEqualTo("/var/lib/vfiovm-local/kubelet/device-plugins"));
    assertThat(env(chart.get(Deployment.class, FULLNAME).getSpec().getTemplate().getSpec().getContainers().get(0)))
        .containsEntry("VFIOVM_NODE_POD_CAPABILITIES", "SETUID,SETGID,SETPCAP,KILL");

    assertThat(render(values("nodeDaemon.enabled", false)).all(DaemonSet.class)).isEmpty();
  }

  @Test
  void nonDefaultValuesReachTheOperator() {
    var chart =
        render(
            values(
                "namespace.name", "",
                "namespace.create", false,
                "image.repository", "registry.example/vfiovm",
                "image.tag", "1.2.3",
                "operator.uidRange.start", 200000,
                "operator.uidRange.size", 100,
                "operator.memlockOverhead", "64Ki",
                "operator.hostReserve", "512Mi",
                "operator.vmmOverhead", "1Gi",
                "operator.agentMemory", "400Mi",
                "operator.reconcileRetries", 3,
                "operator.reconcileRetryIntervalMs", 500,
                "operator.maxReconcileIntervalSeconds", 60,
                "operator.leaderElection", false,
                "operator.logLevel", "debug",
                "operator.httpPort", 9090,
                "nodePods.serviceAccountName", "agents",
                "nodePods.image", "registry.example/agent:9",
                "serviceAccount.name", "boss",
                "fullnameOverride", "vvm",
                "metrics.serviceMonitor.enabled", true,
                "metrics.serviceMonitor.interval", "15s"));

    assertThat(chart.all(Namespace.class)).as("namespace.create=false").isEmpty();
    Deployment deployment = chart.get(Deployment.class, "vvm");
    assertThat(deployment.getMetadata().getNamespace()).isEqualTo(ChartRendering.RELEASE_NAMESPACE);
    assertThat(deployment.getSpec().getStrategy().getType())
        .as("one operator at a time without leader election")
        .isEqualTo("Recreate");
    Container operator = deployment.getSpec().getTemplate().getSpec().getContainers().get(0);
    assertThat(operator.getImage()).isEqualTo("registry.example/vfiovm:1.2.3");
    assertThat(env(operator))
        .containsEntry("VFIOVM_UID_RANGE_START", "200000")
        .containsEntry("VFIOVM_UID_RANGE_SIZE", "100")
        .containsEntry("VFIOVM_MEMLOCK_OVERHEAD", "64Ki")
        .containsEntry("VFIOVM_HOST_RESERVE", "512Mi")
        .containsEntry("VFIOVM_VMM_OVERHEAD", "1Gi")
        .containsEntry("VFIOVM_AGENT_MEMORY", "400Mi")
        .containsEntry("VFIOVM_RECONCILE_RETRIES", "3")
        .containsEntry("VFIOVM_RECONCILE_RETRY_INTERVAL_MS", "500")
        .containsEntry("VFIOVM_MAX_RECONCILE_INTERVAL_S", "60")
        .containsEntry("VFIOVM_NODE_POD_NAMESPACE", ChartRendering.RELEASE_NAMESPACE)
        .containsEntry("VFIOVM_NODE_POD_IMAGE", "registry.example/agent:9")
        .containsEntry("VFIOVM_NODE_POD_SERVICE_ACCOUNT", "agents")
        .containsEntry("VFIOVM_HTTP_PORT", "9090")
        .containsEntry("VFIOVM_LEADER_ELECTION", "false")
        .containsEntry("VFIOVM_LOG_LEVEL", "debug");
    assertThat(operator.getPorts().get(0).getContainerPort()).isEqualTo(9090);
    assertThat(deployment.getSpec().getTemplate().getSpec().getServiceAccountName()).isEqualTo("boss");
    assertThat(chart.get(ClusterRoleBinding.class, "vvm").getSubjects().get(0).getName()).isEqualTo("boss");

    GenericKubernetesResource monitor = chart.get(GenericKubernetesResource.class, "vvm");
    assertThat(monitor.getKind()).isEqualTo("ServiceMonitor");
    assertThat(monitor.<String>get("spec", "endpoints", 0, "path")).isEqualTo("/metrics");
    assertThat(monitor.<String>get("spec", "endpoints", 0, "interval")).isEqualTo("15s");
  }

  @ParameterizedTest(name = "{0}={1}")
  @CsvSource(
      delimiter = '|',
      value = {
        "operator.uidRange.start | 0     | operator/uidRange/start",
        "operator.uidRange.size  | 0     | operator/uidRange/size",
        "operator.memlockOverhead| lots  | operator/memlockOverhead",
        "operator.hostReserve    | -1Gi  | operator/hostReserve",
        "operator.vmmOverhead    | big   | operator/vmmOverhead",
        "operator.reconcileRetryIntervalMs | 0 | operator/reconcileRetryIntervalMs",
        "operator.maxReconcileIntervalSeconds | 0 | operator/maxReconcileIntervalSeconds",
        "operator.logLevel       | verbose | operator/logLevel",
        "operator.httpPort       | 70000 | operator/httpPort",
        "operator.leaderElection | maybe | operator/leaderElection",
        "operator.uidRangeStart  | 5     | uidRangeStart",
        "image.pullPolicy        | Sometimes | image/pullPolicy",
        "namespace.name          | Not_A_Name | namespace/name",
        "nodePods.serviceAccountName | UPPER | nodePods/serviceAccountName",
        "nodeDaemon.auditInterval | soon | nodeDaemon/auditInterval",
        "nodeDaemon.kubeletDir | var/lib/kubelet | nodeDaemon/kubeletDir",
        "nodeDaemon.iommuSlots | 0 | nodeDaemon/iommuSlots",
      })
  void schemaRejectsBadValuesNamingTheField(String key, String value, String field) {
    assertThatThrownBy(() -> ChartRendering.template(values(key, value)))
        .hasMessageContaining("values don't meet the specifications of the schema")
        .hasMessageContaining(field);
  }

  @Test
  void rejectsWhatTheSchemaCannotExpressWithWhatToChange() {
    assertThatThrownBy(
            () ->
                ChartRendering.template(
                    values("operator.uidRange.start", 4294967000L, "operator.uidRange.size", 65536)))
        .hasMessageContaining("operator.uidRange: start (4294967000) + size (65536) exceeds 4294967295");
    assertThatThrownBy(
            () -> ChartRendering.template(values("operator.replicas", 2, "operator.leaderElection", false)))
        .hasMessageContaining("more than one replica needs leader election");
    assertThatThrownBy(
            () ->
                ChartRendering.template(
                    values("metrics.serviceMonitor.enabled", true, "metrics.service.enabled", false)))
        .hasMessageContaining("metrics.serviceMonitor.enabled needs metrics.service.enabled");
  }

  @Test
  void crdInTheChartIsTheGeneratedOne() throws IOException {
    String generated;
    try (InputStream in = getClass().getClassLoader().getResourceAsStream(GENERATED_CRD)) {
      assertThat(in).as("generated CRD on the classpath (api module)").isNotNull();
      generated = new String(in.readAllBytes(), StandardCharsets.UTF_8);
    }
    String inChart =
        Files.readString(ChartRendering.chartDir().resolve("crds/vfiovms.vfiovm.dev-v1.yml"));

    assertThat(inChart)
        .as("helm/vfiovm-operator/crds/ is stale; the api module's build refreshes it: "
            + "mvn -pl api process-classes, then commit it")
        .isEqualTo(generated);
    CustomResourceDefinition crd = Serialization.unmarshal(inChart, CustomResourceDefinition.class);
    assertThat(crd.getSpec().getNames().getShortNames()).containsExactly("vvm");
  }

  @Test
  void defaultImageTagIsTheOneJibBuilds() throws IOException {
    // Jib tags the image vfiovm/operator:<project version>; the chart's default tag is its appVersion
    String chartYaml = Files.readString(ChartRendering.chartDir().resolve("Chart.yaml"));
    String projectVersion = System.getProperty("vfiovm.project.version");
    assertThat(projectVersion).as("system property vfiovm.project.version (set by the e2e pom)").isNotBlank();

    assertThat(chartYaml).contains("appVersion: \"" + projectVersion + "\"");
  }

  static Map<String, String> env(Container container) {
    return container.getEnv().stream()
        .filter(e -> e.getValue() != null)
        .collect(Collectors.toMap(EnvVar::getName, EnvVar::getValue));
  }

  /** Rules as "group/resource: verb,verb" lines, one per (group, resource). */
  static List<String> rules(List<PolicyRule> rules) {
    return rules.stream()
        .flatMap(
            r ->
                r.getApiGroups().stream()
                    .flatMap(
                        g ->
                            r.getResources().stream()
                                .map(res -> g + "/" + res
                                    + (r.getResourceNames() == null || r.getResourceNames().isEmpty() ? ""
                                        : "[" + String.join(",", r.getResourceNames()) + "]")
                                    + ": " + String.join(",", r.getVerbs()))))
        .toList();
  }
}
