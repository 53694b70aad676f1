package dev.vfiovm.e2e.cluster;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import org.junit.jupiter.api.Test;

class E2ESettingsTest {
  @Test
  void defaultsInstallTheLocallyBuiltImageWithTinyLimits() {
    E2ESettings s = E2ESettings.from(Map.of(), Map.of("HOME", "/home/u"));

    assertThat(s.kubeconfig()).isEqualTo(Path.of("/home/u/.kube/config"));
    assertThat(s.operatorNamespace()).isEqualTo("vfiovm-system");
    assertThat(s.node()).isEmpty();
    assertThat(s.timeout()).isEqualTo(Duration.ofSeconds(240));
    // 1Mi guest + 1Mi overhead: within an 8 MiB memlock hard limit, two VMs side by side and more
    assertThat(s.vmMemoryBytes()).isEqualTo(1 << 20);
    assertThat(s.expectedMemlockBytes()).isEqualTo(2 << 20);
    assertThat(s.helmValues())
        .containsEntry("image.repository", "vfiovm/operator")
        .containsEntry("image.tag", "0.1.0-SNAPSHOT")
        .containsEntry("image.pullPolicy", "IfNotPresent")
        .containsEntry("namespace.name", "vfiovm-system")
        .containsEntry("operator.memlockOverhead", "1Mi");
  }

  @Test
  void propertiesAndKubeconfigOverride() {
    E2ESettings s =
        E2ESettings.from(
            Map.of(
                "e2e.image.repository", "reg/vfiovm",
                "e2e.image.tag", "dev",
                "e2e.node", "kind-control-plane",
                "e2e.vm.memory", "2Mi",
                "e2e.memlock.overhead", "512Ki",
                "e2e.timeout.seconds", "60",
                "e2e.namespace", "vvm-ops"),
            Map.of("KUBECONFIG", "/tmp/a.yaml:/tmp/b.yaml", "HOME", "/home/u"));

    assertThat(s.kubeconfig()).isEqualTo(Path.of("/tmp/a.yaml"));
    assertThat(s.node()).contains("kind-control-plane");
    assertThat(s.timeout()).isEqualTo(Duration.ofSeconds(60));
    assertThat(s.expectedMemlockBytes()).isEqualTo((2 << 20) + (512 << 10));
    assertThat(s.helmValues())
        .containsEntry("image.repository", "reg/vfiovm")
        .containsEntry("image.tag", "dev")
        .containsEntry("namespace.name", "vvm-ops")
        .containsEntry("operator.memlockOverhead", "512Ki");
  }

  @Test
  void extraHelmValuesOfTheLocalCluster() {
    E2ESettings s = E2ESettings.from(Map.of("e2e.helm.set",
        " nodeDaemon.kubeletDir=/var/lib/vfiovm-local/kubelet nodePods.capabilities[0]=SETUID  nodePods.capabilities[1]=KILL ",
        "e2e.node.devicePluginDir", "/var/lib/vfiovm-local/kubelet/device-plugins"), Map.of());
    assertThat(s.helmValues())
        .containsEntry("nodeDaemon.kubeletDir", "/var/lib/vfiovm-local/kubelet")
        .containsEntry("nodePods.capabilities[0]", "SETUID")
        .containsEntry("nodePods.capabilities[1]", "KILL")
        .containsEntry("nodeDaemon.auditInterval", "3s");
    assertThat(s.devicePluginDir()).contains(java.nio.file.Path.of("/var/lib/vfiovm-local/kubelet/device-plugins"));
    String rendered = dev.vfiovm.e2e.chart.ChartRendering.template(s.helmValues());
    assertThat(rendered).contains("value: \"SETUID,KILL\"").contains("path: /var/lib/vfiovm-local/kubelet/device-plugins");
    org.assertj.core.api.Assertions.assertThatThrownBy(() -> E2ESettings.helmSet("novalue"))
        .hasMessageContaining("not KEY=VALUE");
  }

  @Test
  void helmValuesPassTheChartSchema() {
    String rendered =
        dev.vfiovm.e2e.chart.ChartRendering.template(E2ESettings.from(Map.of(), Map.of()).helmValues());

    assertThat(rendered).contains("value: \"1Mi\"").contains("image: \"vfiovm/operator:0.1.0-SNAPSHOT\"");
  }
}
