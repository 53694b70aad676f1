package dev.vfiovm.controller;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.vfiovm.api.VfioVm;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodBuilder;
import io.fabric8.kubernetes.api.model.Quantity;
import io.javaoperatorsdk.operator.processing.event.ResourceID;
import java.util.Map;
import java.util.Optional;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * Issue 12: a VfioVm name may have 253 characters (a DNS subdomain), a label value at most 63. The node pod and
 * its identity objects must be valid for every valid VM name and namespace, and still lead back to their VM.
 */
class NodePodNamesTest {
  static final long GI = 1L << 30;
  static final OperatorSettings SETTINGS = OperatorSettings.defaults("vfiovm-system", "example/vfiovm:1");
  /** The API server's label-value and DNS-label rules (k8s.io/apimachinery validation). */
  static final Pattern LABEL_VALUE = Pattern.compile("(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?");
  static final Pattern DNS_LABEL = Pattern.compile("[a-z0-9]([-a-z0-9]*[a-z0-9])?");

  /** A 253-character DNS subdomain: 63-character labels joined by dots. */
  static final String LONG_NAME = ("a".repeat(62) + "b." + "c".repeat(62) + "d." + "e".repeat(62) + "f."
      + "g".repeat(61)).substring(0, 253);
  static final String LONG_NAMESPACE = "n".repeat(63);

  static VfioVm vm(String namespace, String name) {
    VfioVm vm = ClusterTestSupport.vm(namespace, name, "1Gi", Map.of());
    vm.getMetadata().setUid("6f0c6c1e-2f0a-4d7c-9d5e-0123456789ab");
    return vm;
  }

  static Pod pod(VfioVm vm) {
    return NodePodShape.build(vm, 1879048193L, "worker-1", SpecValidation.validate(vm.getSpec(), GI).plan(), SETTINGS);
  }

  static void assertValidLabelsAndNames(HasMetadata o) {
    assertThat(o.getMetadata().getName()).hasSizeLessThanOrEqualTo(63).matches(DNS_LABEL);
    o.getMetadata().getLabels().forEach((k, v) ->
        assertThat(v).as("label %s", k).hasSizeLessThanOrEqualTo(63).matches(LABEL_VALUE));
  }

  @Test
  void theLongNameIsAValidVmName() {
    assertThat(LONG_NAME).hasSize(253).matches("[a-z0-9]([-.a-z0-9]*[a-z0-9])?");
    assertThat(SpecValidation.validate(vm(LONG_NAMESPACE, LONG_NAME).getSpec(), GI).plan()).isNotNull();
  }

  @Test
  void aPodOfA253CharacterNameHasValidNamesAndLabelsAndTheFullNamesInAnnotations() {
    VfioVm vm = vm(LONG_NAMESPACE, LONG_NAME);
    Pod pod = pod(vm);
    assertValidLabelsAndNames(pod);
    assertThat(pod.getSpec().getServiceAccountName()).hasSizeLessThanOrEqualTo(63).matches(DNS_LABEL);
    assertThat(pod.getMetadata().getLabels().get(NodePodShape.LABEL_VM_NAME))
        .isEqualTo(NodePodShape.labelValue(LONG_NAME)).startsWith("a".repeat(52)).hasSize(63);
    assertThat(pod.getMetadata().getLabels().get(NodePodShape.LABEL_VM_NAMESPACE)).isEqualTo(LONG_NAMESPACE);
    assertThat(pod.getMetadata().getAnnotations())
        .containsEntry(NodePodShape.ANNOTATION_VM_NAME, LONG_NAME)
        .containsEntry(NodePodShape.ANNOTATION_VM_NAMESPACE, LONG_NAMESPACE)
        .containsEntry(NodePodShape.ANNOTATION_VM, LONG_NAMESPACE + "/" + LONG_NAME)
        .containsEntry(NodePodShape.ANNOTATION_VM_UID, "6f0c6c1e-2f0a-4d7c-9d5e-0123456789ab");
    assertThat(NodePodShape.vmOf(pod)).contains(new ResourceID(LONG_NAME, LONG_NAMESPACE));
    // the agent is told the full NS/NAME
    assertThat(pod.getSpec().getContainers().get(0).getArgs()).containsSequence("--vm", LONG_NAMESPACE + "/" + LONG_NAME);
    for (HasMetadata o : NodePodIdentity.desired(vm, SETTINGS).all()) {
      assertValidLabelsAndNames(o);
      assertThat(NodePodShape.vmOf(o)).contains(new ResourceID(LONG_NAME, LONG_NAMESPACE));
    }
  }

  @Test
  void shortNamesStayAsTheyAreInLabels() {
    Pod pod = pod(vm("team-a", "db"));
    assertThat(pod.getMetadata().getLabels()).containsEntry(NodePodShape.LABEL_VM_NAME, "db")
        .containsEntry(NodePodShape.LABEL_VM_NAMESPACE, "team-a");
    assertThat(NodePodShape.labelValue("x".repeat(63))).isEqualTo("x".repeat(63));
    assertThat(NodePodShape.vmOf(pod)).contains(new ResourceID("db", "team-a"));
  }

  @Test
  void hashedLabelValuesOfDistinctLongNamesDiffer() {
    String a = "a".repeat(100) + "1";
    String b = "a".repeat(100) + "2";
    assertThat(NodePodShape.labelValue(a)).isNotEqualTo(NodePodShape.labelValue(b));
    assertThat(NodePodShape.labelValue(a)).matches(LABEL_VALUE).hasSizeLessThanOrEqualTo(63);
    // a cut that would end on a dot or dash still ends alphanumeric
    assertThat(NodePodShape.labelValue("a".repeat(51) + "." + "b".repeat(100))).matches(LABEL_VALUE);
    assertThat(NodePodShape.podName(LONG_NAMESPACE, a)).isNotEqualTo(NodePodShape.podName(LONG_NAMESPACE, b));
  }

  @Test
  void vmOfFallsBackToTheVmAnnotationThenToLabels() {
    Pod byKey = new PodBuilder().withNewMetadata().addToAnnotations(NodePodShape.ANNOTATION_VM, "ns1/vm1")
        .addToLabels(NodePodShape.LABEL_VM_NAME, "other").addToLabels(NodePodShape.LABEL_VM_NAMESPACE, "x")
        .endMetadata().build();
    assertThat(NodePodShape.vmOf(byKey)).contains(new ResourceID("vm1", "ns1"));
    Pod byLabels = new PodBuilder().withNewMetadata().addToLabels(NodePodShape.LABEL_VM_NAME, "vm2")
        .addToLabels(NodePodShape.LABEL_VM_NAMESPACE, "ns2").endMetadata().build();
    assertThat(NodePodShape.vmOf(byLabels)).contains(new ResourceID("vm2", "ns2"));
    assertThat(NodePodShape.vmOf(new PodBuilder().withNewMetadata().withName("x").endMetadata().build())).isEmpty();
    assertThat(NodePodShape.vmOf((Pod) null)).isEqualTo(Optional.empty());
  }

  @Test
  void theVmUidAnnotationIsWrittenFromTheVmsMetadata() {
    assertThat(NodePodShape.ANNOTATION_VM_UID).isEqualTo("vfiovm.dev/vm-uid");
    VfioVm vm = vm("team-a", "db");
    assertThat(pod(vm).getMetadata().getAnnotations()).containsEntry("vfiovm.dev/vm-uid", vm.getMetadata().getUid());
  }

  // --- item 3: the node pod's memory ---

  @Test
  void podMemoryIsGuestRamPlusVmmOverheadPlusAgentAndBothAreSettings() {
    assertThat(NodePodShape.podMemoryBytes(4 * GI, SETTINGS))
        .isEqualTo(4 * GI + (256L << 20) + (320L << 20));
    OperatorSettings bigger = SETTINGS.withPodMemory(1L << 30, 400L << 20);
    assertThat(NodePodShape.podMemoryBytes(4 * GI, bigger)).isEqualTo(5 * GI + (400L << 20));
    VfioVm vm = vm("team-a", "db");
    Pod pod = NodePodShape.build(vm, 1879048193L, "w", SpecValidation.validate(vm.getSpec(), GI).plan(), bigger);
    Quantity limit = pod.getSpec().getContainers().get(0).getResources().getLimits().get("memory");
    Quantity request = pod.getSpec().getContainers().get(0).getResources().getRequests().get("memory");
    assertThat(Quantity.getAmountInBytes(limit).longValueExact()).isEqualTo(GI + GI + (400L << 20));
    assertThat(request).isEqualTo(limit);
    // the settings survive the other with-ers
    assertThat(bigger.withHostReserve(0).withUidRange(1000, 10).withMemlockOverhead(0)
        .withNodePodCapabilities(java.util.List.of("KILL")).vmmOverheadBytes()).isEqualTo(1L << 30);
    assertThatThrownBy(() -> SETTINGS.withPodMemory(-1, 320L << 20)).hasMessageContaining("--vmm-overhead");
    assertThatThrownBy(() -> SETTINGS.withPodMemory(0, 64L << 20)).hasMessageContaining("--agent-memory")
        .hasMessageContaining("192Mi");
  }

  @Test
  void theAgentJvmIsBounded() {
    assertThat(NodePodShape.AGENT_JAVA_OPTIONS).contains("-Xmx128m", "-XX:MaxMetaspaceSize=128m",
        "-XX:ReservedCodeCacheSize=", "-XX:MaxDirectMemorySize=", "-Xss");
    Pod pod = pod(vm("team-a", "db"));
    assertThat(pod.getSpec().getContainers().get(0).getEnv())
        .anySatisfy(e -> assertThat(e.getName() + "=" + e.getValue())
            .isEqualTo("JAVA_TOOL_OPTIONS=" + NodePodShape.AGENT_JAVA_OPTIONS));
  }
}
