package dev.vfiovm.controller;

import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.ContainerBuilder;
import io.fabric8.kubernetes.api.model.ObjectMetaBuilder;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodSpecBuilder;
import io.fabric8.kubernetes.api.model.PodStatusBuilder;
import io.fabric8.kubernetes.client.informers.cache.BasicItemStore;
import io.fabric8.kubernetes.client.informers.cache.Cache;
import java.util.List;

/**
 * The store of the informer on every pod bound to a node (any namespace): it keeps of each pod only what the
 * kubelet's admission arithmetic reads ({@link NodeBudget#memoryRequestedByNode}: node, phase, each container's
 * resources and restart policy, the pod overhead), so watching the whole cluster's pods costs a few hundred
 * bytes per pod, not a pod's full object (docs/performance.md, p4).
 */
public final class PodRequestsItemStore extends BasicItemStore<Pod> {
  public PodRequestsItemStore() {
    super(Cache::metaNamespaceKeyFunc);
  }

  @Override
  public Pod put(String key, Pod pod) {
    return super.put(key, minimal(pod));
  }

  static Pod minimal(Pod pod) {
    if (pod == null || pod.getMetadata() == null) {
      return pod;
    }
    Pod kept = new Pod();
    kept.setMetadata(new ObjectMetaBuilder()
        .withName(pod.getMetadata().getName())
        .withNamespace(pod.getMetadata().getNamespace())
        .withUid(pod.getMetadata().getUid())
        .withResourceVersion(pod.getMetadata().getResourceVersion())
        .build());
    if (pod.getSpec() != null) {
      kept.setSpec(new PodSpecBuilder()
          .withNodeName(pod.getSpec().getNodeName())
          .withContainers(resourcesOnly(pod.getSpec().getContainers()))
          .withInitContainers(resourcesOnly(pod.getSpec().getInitContainers()))
          .withOverhead(pod.getSpec().getOverhead())
          .build());
    }
    if (pod.getStatus() != null) {
      kept.setStatus(new PodStatusBuilder().withPhase(pod.getStatus().getPhase()).build());
    }
    return kept;
  }

  private static List<Container> resourcesOnly(List<Container> containers) {
    return containers == null ? List.of() : containers.stream()
        .map(c -> new ContainerBuilder().withName(c.getName()).withResources(c.getResources())
            .withRestartPolicy(c.getRestartPolicy()).build())
        .toList();
  }
}
