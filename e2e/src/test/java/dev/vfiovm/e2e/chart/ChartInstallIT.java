package dev.vfiovm.e2e.chart;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import com.marcnuri.helm.Helm;
import com.marcnuri.helm.Release;
import dev.vfiovm.testing.KubeApiServerFixture;
import io.fabric8.kubernetes.api.model.Namespace;
import io.fabric8.kubernetes.api.model.apps.Deployment;
import io.fabric8.kubernetes.client.KubernetesClient;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.UUID;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * `helm install` / `helm uninstall` of the chart through helm-java (what the cluster suite does) against a real
 * kube-apiserver: the server accepts every object, the namespace carries its Pod Security label, uninstall
 * removes the operator. No kubelet runs here, so nothing becomes Ready; the cluster suite checks that.
 */
class ChartInstallIT {
  static KubernetesClient admin;
  @TempDir static Path dir;
  static Path kubeconfig;

  @BeforeAll
  static void server() throws Exception {
    admin = KubeApiServerFixture.newClient();
    kubeconfig = Files.writeString(dir.resolve("kubeconfig"), KubeApiServerFixture.kubeConfigYaml());
  }

  @AfterAll
  static void close() {
    if (admin != null) {
      admin.close();
    }
  }

  @Test
  void installsEverythingAndUninstallRemovesIt() {
    String suffix = UUID.randomUUID().toString().substring(0, 6);
    String release = "it-" + suffix;
    String namespace = "vfiovm-install-" + suffix;

    Release installed =
        new Helm(ChartRendering.chartDir())
            .install()
            .withName(release)
            .withNamespace("default")
            .withKubeConfig(kubeconfig)
            .set("namespace.name", namespace)
            .set("operator.memlockOverhead", "1Mi")
            .call();

    assertThat(installed.getStatus()).isEqualTo("deployed");
    assertThat(admin.apiextensions().v1().customResourceDefinitions().withName("vfiovms.vfiovm.dev").get())
        .as("CRD from crds/").isNotNull();
    Namespace ns = admin.namespaces().withName(namespace).get();
    assertThat(ns.getMetadata().getLabels()).containsEntry("pod-security.kubernetes.io/enforce", "privileged");
    String fullname = release + "-vfiovm-operator";
    Deployment deployment = admin.apps().deployments().inNamespace(namespace).withName(fullname).get();
    assertThat(deployment.getSpec().getTemplate().getSpec().getContainers().get(0).getArgs())
        .containsExactly("operator");
    assertThat(admin.configMaps().inNamespace(namespace).withName("vfiovm-uid-quarantine").get()).isNotNull();
    assertThat(admin.rbac().clusterRoles().withName(fullname).get()).isNotNull();
    assertThat(Helm.list().withNamespace("default").withKubeConfig(kubeconfig).all().call())
        .anySatisfy(r -> assertThat(r.getName()).isEqualTo(release));

    Helm.uninstall(release).withNamespace("default").withKubeConfig(kubeconfig).call();

    assertThat(admin.rbac().clusterRoles().withName(fullname).get()).isNull();
    assertThat(admin.rbac().clusterRoleBindings().withName(fullname).get()).isNull();
    // no namespace controller runs here: the namespace only reaches Terminating
    await().atMost(Duration.ofSeconds(30)).until(() -> {
      Namespace gone = admin.namespaces().withName(namespace).get();
      return gone == null || gone.getMetadata().getDeletionTimestamp() != null;
    });
  }
}
