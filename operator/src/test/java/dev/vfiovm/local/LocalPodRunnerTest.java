package dev.vfiovm.local;

import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.ContainerBuilder;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodBuilder;
import java.util.Map;
import org.junit.jupiter.api.Test;

class LocalPodRunnerTest {
  @Test
  void expandsReferencesLikeTheKubelet() {
    Map<String, String> env = Map.of("POD_NAME", "p1", "POD_NAMESPACE", "ns");
    assertThat(LocalPodRunner.expand("$(POD_NAMESPACE)/$(POD_NAME)", env)).isEqualTo("ns/p1");
    assertThat(LocalPodRunner.expand("$(UNKNOWN)-x", env)).isEqualTo("$(UNKNOWN)-x");
    assertThat(LocalPodRunner.expand("$$(POD_NAME)", env)).isEqualTo("$(POD_NAME)");
    assertThat(LocalPodRunner.expand("no refs", env)).isEqualTo("no refs");
    assertThat(LocalPodRunner.expand("$(open", env)).isEqualTo("$(open");
  }

  @Test
  void containerEnvResolvesValuesAndDownwardApiFields() {
    Container container = new ContainerBuilder().withName("agent")
        .addNewEnv().withName("A").withValue("1").endEnv()
        .addNewEnv().withName("B").withValue("$(A)-2").endEnv()
        .addNewEnv().withName("POD_NAME").withNewValueFrom().withNewFieldRef().withFieldPath("metadata.name")
        .endFieldRef().endValueFrom().endEnv()
        .addNewEnv().withName("POD_NAMESPACE").withNewValueFrom().withNewFieldRef()
        .withFieldPath("metadata.namespace").endFieldRef().endValueFrom().endEnv()
        .addNewEnv().withName("NODE").withNewValueFrom().withNewFieldRef().withFieldPath("spec.nodeName")
        .endFieldRef().endValueFrom().endEnv()
        .build();
    Pod pod = new PodBuilder().withNewMetadata().withName("vm-pod").withNamespace("vfiovm-system").endMetadata()
        .withNewSpec().withNodeName("node-1").withContainers(container).endSpec().build();

    assertThat(LocalPodRunner.containerEnv(pod, container)).containsExactly(
        Map.entry("A", "1"), Map.entry("B", "1-2"), Map.entry("POD_NAME", "vm-pod"),
        Map.entry("POD_NAMESPACE", "vfiovm-system"), Map.entry("NODE", "node-1"));
  }

  @Test
  void memTotalIsReadInBytes() {
    String meminfo = "MemTotal:       24588172 kB\nMemFree:        1000 kB\n";
    assertThat(HostMemory.parseMemTotal(meminfo)).isEqualTo(24588172L * 1024);
  }
}
