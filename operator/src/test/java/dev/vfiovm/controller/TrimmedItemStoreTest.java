package dev.vfiovm.controller;

import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.api.model.ContainerImageBuilder;
import io.fabric8.kubernetes.api.model.ManagedFieldsEntryBuilder;
import io.fabric8.kubernetes.api.model.Node;
import io.fabric8.kubernetes.api.model.NodeBuilder;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodBuilder;
import io.fabric8.kubernetes.api.model.Quantity;
import java.util.Map;
import org.junit.jupiter.api.Test;

class TrimmedItemStoreTest {
  @Test
  void dropsManagedFieldsAndTheLastAppliedCopyKeepsWhatTheOperatorReads() {
    Pod pod = new PodBuilder().withNewMetadata().withName("p").withNamespace("ns")
        .withLabels(Map.of(NodePodShape.LABEL_HOST_UID, "7"))
        .withAnnotations(Map.of("vfiovm.dev/report", "{}", TrimmedItemStore.LAST_APPLIED, "{...}"))
        .withManagedFields(new ManagedFieldsEntryBuilder().withManager("vfiovm-operator").build())
        .endMetadata().withNewStatus().withPhase("Running").endStatus().build();
    TrimmedItemStore<Pod> store = new TrimmedItemStore<>();

    store.put(store.getKey(pod), pod);

    Pod cached = store.get("ns/p");
    assertThat(cached.getMetadata().getManagedFields()).isNullOrEmpty();
    assertThat(cached.getMetadata().getAnnotations()).containsOnlyKeys("vfiovm.dev/report");
    assertThat(cached.getMetadata().getLabels()).containsEntry(NodePodShape.LABEL_HOST_UID, "7");
    assertThat(cached.getStatus().getPhase()).isEqualTo("Running");
  }

  @Test
  void dropsANodesImageListKeepsItsAllocatable() {
    Node node = new NodeBuilder().withNewMetadata().withName("n").endMetadata().withNewStatus()
        .withAllocatable(Map.of("memory", new Quantity("4Gi")))
        .withImages(new ContainerImageBuilder().withNames("registry/big:1").withSizeBytes(1L << 30).build())
        .endStatus().build();
    TrimmedItemStore<Node> store = new TrimmedItemStore<>();

    store.put(store.getKey(node), node);

    Node cached = store.get("n");
    assertThat(cached.getStatus().getImages()).isNullOrEmpty();
    assertThat(cached.getStatus().getAllocatable()).containsEntry("memory", new Quantity("4Gi"));
  }
}
