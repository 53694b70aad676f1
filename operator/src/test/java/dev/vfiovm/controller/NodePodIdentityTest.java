package dev.vfiovm.controller;

import static org.assertj.core.api.Assertions.assertThat;

import dev.vfiovm.api.VfioVm;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.Volume;
import io.fabric8.kubernetes.api.model.rbac.PolicyRule;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class NodePodIdentityTest {
  static final OperatorSettings SETTINGS = OperatorSettings.defaults("vfiovm-system", "example/vfiovm:1");

  static VfioVm vm(String ns, String name) {
    return ClusterTestSupport.vm(ns, name, "1Gi", Map.of());
  }

  @Test
  void theRoleAllowsGetAndPatchOfThatVmsPodAlone() {
    VfioVm vm = vm("team-a", "db");
    NodePodIdentity.Objects identity = NodePodIdentity.desired(vm, SETTINGS);
    String podName = NodePodShape.podName("team-a", "db");
    List<PolicyRule> rules = identity.role().getRules();
    assertThat(rules).singleElement().satisfies(r -> {
      assertThat(r.getApiGroups()).containsExactly("");
      assertThat(r.getResources()).containsExactly("pods");
      assertThat(r.getResourceNames()).containsExactly(podName);
      assertThat(r.getVerbs()).containsExactly("get", "patch");
      assertThat(r.getNonResourceURLs()).isNullOrEmpty();
    });
  }

  @Test
  void theThreeObjectsAreOneNamedIdentityInTheNodePodNamespaceLinkedToTheVm() {
    VfioVm vm = vm("team-a", "db");
    NodePodIdentity.Objects identity = NodePodIdentity.desired(vm, SETTINGS);
    String name = NodePodIdentity.name("vfiovm-node", "team-a", "db");
    assertThat(identity.all()).extracting(o -> o.getKind() + " " + o.getMetadata().getNamespace() + "/"
        + o.getMetadata().getName()).containsExactly(
            "ServiceAccount vfiovm-system/" + name, "Role vfiovm-system/" + name, "RoleBinding vfiovm-system/" + name);
    identity.all().forEach(o -> {
      assertThat(o.getMetadata().getLabels())
          .containsEntry(NodePodShape.LABEL_VM_NAMESPACE, "team-a")
          .containsEntry(NodePodShape.LABEL_VM_NAME, "db")
          .containsEntry(NodePodShape.LABEL_MANAGED_BY, NodePodShape.MANAGED_BY)
          .containsEntry(NodePodIdentity.LABEL_COMPONENT, NodePodIdentity.COMPONENT);
      assertThat(o.getMetadata().getAnnotations()).containsEntry(NodePodShape.ANNOTATION_VM, "team-a/db");
    });
    assertThat(identity.serviceAccount().getAutomountServiceAccountToken()).isFalse();
    assertThat(identity.roleBinding().getRoleRef().getKind()).isEqualTo("Role");
    assertThat(identity.roleBinding().getRoleRef().getName()).isEqualTo(name);
    assertThat(identity.roleBinding().getSubjects()).singleElement().satisfies(s -> {
      assertThat(s.getKind()).isEqualTo("ServiceAccount");
      assertThat(s.getName()).isEqualTo(name);
      assertThat(s.getNamespace()).isEqualTo("vfiovm-system");
    });
  }

  @Test
  void namesAreDistinctPerVmValidAndBounded() {
    String longName = "a".repeat(200);
    assertThat(NodePodIdentity.name("vfiovm-node", "ns", longName)).hasSizeLessThanOrEqualTo(63)
        .matches("[a-z0-9]([-a-z0-9]*[a-z0-9])?");
    assertThat(NodePodIdentity.name("vfiovm-node", "a", "x")).isNotEqualTo(NodePodIdentity.name("vfiovm-node", "b", "x"));
    assertThat(NodePodIdentity.name("vfiovm-node", "ns", "My_VM")).matches("vfiovm-node-my-vm-[0-9a-f]{10}");
    assertThat(NodePodIdentity.name("agents", "ns", "vm")).startsWith("agents-vm-");
  }

  @Test
  void thePodUsesItsOwnIdentityAndOnlyTheAgentGetsAShortLivedToken() {
    VfioVm vm = vm("team-a", "db");
    vm.getSpec().setBoot(null);
    Pod pod = NodePodShape.build(vm, 1879048193L, "worker-1",
        SpecValidation.validate(vm.getSpec(), 1L << 30).plan(), SETTINGS);
    assertThat(pod.getSpec().getServiceAccountName()).isEqualTo(NodePodIdentity.name(vm, SETTINGS));
    assertThat(pod.getSpec().getAutomountServiceAccountToken()).isFalse();
    Volume token = pod.getSpec().getVolumes().stream()
        .filter(v -> v.getName().equals(NodePodShape.SERVICE_ACCOUNT_VOLUME)).findFirst().orElseThrow();
    var projection = token.getProjected().getSources().stream().filter(s -> s.getServiceAccountToken() != null)
        .findFirst().orElseThrow().getServiceAccountToken();
    assertThat(projection.getExpirationSeconds()).isEqualTo(600L);
    assertThat(projection.getAudience()).as("default audience: the API server").isNull();
    assertThat(pod.getSpec().getContainers()).allSatisfy(c -> {
      boolean mounts = c.getVolumeMounts().stream().anyMatch(m -> m.getName().equals(NodePodShape.SERVICE_ACCOUNT_VOLUME));
      assertThat(mounts).as(c.getName() + " mounts the token").isEqualTo(c.getName().equals(NodePodShape.CONTAINER));
    });
    assertThat(pod.getSpec().getInitContainers()).allSatisfy(c -> assertThat(c.getVolumeMounts())
        .noneMatch(m -> m.getName().equals(NodePodShape.SERVICE_ACCOUNT_VOLUME)));
  }
}
