package dev.vfiovm.controller;

import dev.vfiovm.api.VfioVm;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.ServiceAccount;
import io.fabric8.kubernetes.api.model.ServiceAccountBuilder;
import io.fabric8.kubernetes.api.model.rbac.PolicyRuleBuilder;
import io.fabric8.kubernetes.api.model.rbac.Role;
import io.fabric8.kubernetes.api.model.rbac.RoleBinding;
import io.fabric8.kubernetes.api.model.rbac.RoleBindingBuilder;
import io.fabric8.kubernetes.api.model.rbac.RoleBuilder;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The API identity of one VM's node pod: a ServiceAccount of its own, a Role that allows {@code get} and
 * {@code patch} on exactly that VM's node pod ({@code resourceNames}) and nothing else, and the RoleBinding
 * between them, all in the node-pod namespace. The node agent needs no more: it merge-patches its report into
 * its own pod's annotation. With one identity per VM, VM A's token can read or write nothing of VM B. The
 * operator creates the three before the pod and deletes them once the pod is gone. Pure: builds objects.
 */
public final class NodePodIdentity {
  /** Label on the three objects (besides the pod's VM labels), selecting every node-pod identity. */
  public static final String LABEL_COMPONENT = "app.kubernetes.io/component";
  public static final String COMPONENT = "node-pod-identity";
  /** Selects every identity object the operator manages. */
  public static final String SELECTOR = NodePodShape.LABEL_MANAGED_BY + "=" + NodePodShape.MANAGED_BY + ","
      + LABEL_COMPONENT + "=" + COMPONENT;
  public static final List<String> VERBS = List.of("get", "patch");

  /** The three objects of a VM's node pod, in creation order. */
  public record Objects(ServiceAccount serviceAccount, Role role, RoleBinding roleBinding) {
    public List<HasMetadata> all() {
      return List.of(serviceAccount, role, roleBinding);
    }
  }

  private NodePodIdentity() {}

  /**
   * Name of the three objects: the prefix (operator setting {@code --node-pod-service-account}, Helm value
   * {@code nodePods.serviceAccountName}, default {@code vfiovm-node}), the VM name and a hash of NS/NAME,
   * within 63 characters.
   */
  public static String name(String prefix, String vmNamespace, String vmName) {
    String hash = sha256(vmNamespace + "/" + vmName).substring(0, 10);
    String head = prefix + "-" + vmName.toLowerCase(Locale.ROOT).replaceAll("[^a-z0-9-]", "-");
    int max = 63 - hash.length() - 1;
    if (head.length() > max) {
      head = head.substring(0, max);
    }
    return head.replaceAll("-+$", "") + "-" + hash;
  }

  public static String name(VfioVm vm, OperatorSettings settings) {
    return name(settings.nodePodServiceAccount(), vm.getMetadata().getNamespace(), vm.getMetadata().getName());
  }

  public static Map<String, String> labels(VfioVm vm) {
    Map<String, String> labels = new LinkedHashMap<>();
    labels.put(NodePodShape.LABEL_NAME, NodePodShape.NAME);
    labels.put(NodePodShape.LABEL_MANAGED_BY, NodePodShape.MANAGED_BY);
    labels.put(LABEL_COMPONENT, COMPONENT);
    labels.put(NodePodShape.LABEL_VM_NAMESPACE, NodePodShape.labelValue(vm.getMetadata().getNamespace()));
    labels.put(NodePodShape.LABEL_VM_NAME, NodePodShape.labelValue(vm.getMetadata().getName()));
    return labels;
  }

  /** The desired identity of the VM's node pod. */
  public static Objects desired(VfioVm vm, OperatorSettings settings) {
    String name = name(vm, settings);
    String namespace = settings.nodePodNamespace();
    String podName = NodePodShape.podName(vm.getMetadata().getNamespace(), vm.getMetadata().getName());
    Map<String, String> labels = labels(vm);
    Map<String, String> annotations = NodePodShape.vmAnnotations(vm);
    ServiceAccount sa = new ServiceAccountBuilder()
        .withNewMetadata().withName(name).withNamespace(namespace).withLabels(labels).withAnnotations(annotations)
        .endMetadata()
        // the pod mounts a short-lived projected token in the node-agent container only
        .withAutomountServiceAccountToken(false)
        .build();
    Role role = new RoleBuilder()
        .withNewMetadata().withName(name).withNamespace(namespace).withLabels(labels).withAnnotations(annotations)
        .endMetadata()
        .withRules(new PolicyRuleBuilder().withApiGroups("").withResources("pods").withResourceNames(podName)
            .withVerbs(VERBS).build())
        .build();
    RoleBinding binding = new RoleBindingBuilder()
        .withNewMetadata().withName(name).withNamespace(namespace).withLabels(labels).withAnnotations(annotations)
        .endMetadata()
        .withNewRoleRef().withApiGroup("rbac.authorization.k8s.io").withKind("Role").withName(name).endRoleRef()
        .addNewSubject().withKind("ServiceAccount").withName(name).withNamespace(namespace).endSubject()
        .build();
    return new Objects(sa, role, binding);
  }

  private static String sha256(String s) {
    try {
      return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(s.getBytes(StandardCharsets.UTF_8)));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }
}
