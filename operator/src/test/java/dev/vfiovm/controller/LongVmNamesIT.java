package dev.vfiovm.controller;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.vfiovm.api.VfioVm;
import dev.vfiovm.testing.KubeApiServerFixture;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.NamespaceBuilder;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.javaoperatorsdk.operator.processing.event.ResourceID;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import org.junit.jupiter.api.Test;

/**
 * Issue 12 on the real 1.20 kube-apiserver: a VfioVm with the longest valid name (253 characters) in the longest
 * valid namespace (63) gets a node pod and node-pod identity (ServiceAccount, Role, RoleBinding) that the API
 * server accepts, that a label selector built from them finds, and that lead back to the VM (and its uid). The
 * shape before the fix (the full name as a label value) is refused by the same server.
 */
class LongVmNamesIT {
  static final long GI = 1L << 30;

  @Test
  void theNodePodAndIdentityOfA253CharacterVmNameAreAcceptedAndLeadBackToTheVm() {
    try (KubernetesClient client = KubeApiServerFixture.newClient()) {
      KubeApiServerFixture.installCrds(client);
      String nodePodNamespace = KubeApiServerFixture.createNamespace(client, "vfiovm-system");
      String suffix = UUID.randomUUID().toString().substring(0, 8);
      String vmNamespace = ("long-" + suffix + "-" + "n".repeat(63)).substring(0, 62) + "x";
      client.namespaces().resource(new NamespaceBuilder().withNewMetadata().withName(vmNamespace).endMetadata()
          .build()).create();
      String name = (suffix + "." + "a".repeat(62) + "." + "b".repeat(62) + "." + "c".repeat(62) + "."
          + "d".repeat(62)).substring(0, 252) + "z";
      assertThat(vmNamespace).hasSize(63);
      assertThat(name).hasSize(253);

      // the VM itself is accepted with that name: the server gives it its uid
      VfioVm vm = client.resource(ClusterTestSupport.vm(vmNamespace, name, "1Gi", Map.of())).create();
      try {
        assertThat(vm.getMetadata().getUid()).isNotBlank();
        shapesOf(client, vm, vmNamespace, name, nodePodNamespace, suffix);
      } finally {
        // no operator runs here, so no finalizer: gone at once, and no later IT's operator sees it
        client.resource(vm).delete();
        client.pods().inNamespace(nodePodNamespace).withGracePeriod(0).delete();
      }
    }
  }

  static void shapesOf(KubernetesClient client, VfioVm vm, String vmNamespace, String name, String nodePodNamespace,
      String suffix) {
    {

      OperatorSettings settings = OperatorSettings.defaults(nodePodNamespace, "vfiovm:test");
      NodePodIdentity.Objects identity = NodePodIdentity.desired(vm, settings);
      for (HasMetadata o : identity.all()) {
        HasMetadata created = client.resource(o).create();
        assertThat(NodePodShape.vmOf(created)).contains(new ResourceID(name, vmNamespace));
      }
      Pod built = NodePodShape.build(vm, 1879048200L, "worker-1",
          SpecValidation.validate(vm.getSpec(), GI).plan(), settings);
      Pod pod = client.resource(built).create();

      // what the server stored: valid, findable by the labels the operator selects with, and naming the VM
      assertThat(pod.getMetadata().getName()).isEqualTo(NodePodShape.podName(vmNamespace, name));
      assertThat(pod.getMetadata().getAnnotations())
          .containsEntry(NodePodShape.ANNOTATION_VM_NAME, name)
          .containsEntry(NodePodShape.ANNOTATION_VM_NAMESPACE, vmNamespace)
          .containsEntry(NodePodShape.ANNOTATION_VM_UID, vm.getMetadata().getUid());
      assertThat(NodePodShape.vmOf(pod)).contains(new ResourceID(name, vmNamespace));
      List<Pod> selected = client.pods().inNamespace(nodePodNamespace).withLabelSelector(NodePodShape.SELECTOR)
          .withLabel(NodePodShape.LABEL_VM_NAME, NodePodShape.labelValue(name))
          .withLabel(NodePodShape.LABEL_VM_NAMESPACE, NodePodShape.labelValue(vmNamespace))
          .list().getItems();
      assertThat(selected).extracting(p -> p.getMetadata().getName()).containsExactly(pod.getMetadata().getName());
      assertThat(client.serviceAccounts().inNamespace(nodePodNamespace).withName(pod.getSpec().getServiceAccountName())
          .get()).isNotNull();
      assertThat(client.rbac().roles().inNamespace(nodePodNamespace).withName(identity.role().getMetadata().getName())
          .get().getRules().get(0).getResourceNames()).containsExactly(pod.getMetadata().getName());

      // before the fix: the full name was the label value, and the server refuses that pod (forever)
      Pod old = new PodBuilder(built).editMetadata().withName("old-" + suffix)
          .addToLabels(NodePodShape.LABEL_VM_NAME, name).endMetadata().build();
      assertThatThrownBy(() -> client.resource(old).create())
          .isInstanceOf(KubernetesClientException.class)
          .hasMessageContaining("must be no more than 63 characters");
    }
  }
}
