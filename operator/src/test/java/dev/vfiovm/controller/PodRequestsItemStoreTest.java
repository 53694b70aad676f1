package dev.vfiovm.controller;

import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.api.model.ContainerBuilder;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodBuilder;
import io.fabric8.kubernetes.api.model.Quantity;
import io.fabric8.kubernetes.client.utils.Serialization;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class PodRequestsItemStoreTest {
  private static Pod pod() {
    return new PodBuilder()
        .withNewMetadata().withName("web").withNamespace("shop").withUid("u-1").withResourceVersion("7")
            .withLabels(Map.of("app", "web")).withAnnotations(Map.of("big", "x".repeat(10_000))).endMetadata()
        .withNewSpec().withNodeName("node-a")
            .withOverhead(Map.of("memory", new Quantity("64Mi")))
            .withInitContainers(new ContainerBuilder().withName("init").withImage("i").withRestartPolicy("Always")
                .withNewResources().withRequests(Map.of("memory", new Quantity("1Gi"))).endResources().build())
            .withContainers(new ContainerBuilder().withName("app").withImage("a").withCommand("run", "--all")
                .withNewResources().withRequests(Map.of("memory", new Quantity("2Gi"))).endResources().build())
        .endSpec()
        .withNewStatus().withPhase("Running").withMessage("fine").endStatus()
        .build();
  }

  @Test
  void theKeptPodRequestsExactlyWhatTheFullPodRequests() {
    Pod full = pod();
    Pod kept = PodRequestsItemStore.minimal(pod());
    assertThat(NodeBudget.memoryRequestedByNode(List.of(kept)))
        .isEqualTo(NodeBudget.memoryRequestedByNode(List.of(full)))
        .containsEntry("node-a", (64L << 20) + (3L << 30));
  }

  @Test
  void whatTheArithmeticNeverReadsIsDropped() {
    Pod kept = PodRequestsItemStore.minimal(pod());
    assertThat(kept.getMetadata().getAnnotations()).isNullOrEmpty();
    assertThat(kept.getSpec().getContainers().get(0).getImage()).isNull();
    assertThat(kept.getStatus().getMessage()).isNull();
    assertThat(kept.getMetadata().getResourceVersion()).isEqualTo("7");
    assertThat(Serialization.asJson(kept).length()).isLessThan(Serialization.asJson(pod()).length() / 10);
  }
}
