package dev.vfiovm.controller;

import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.Node;
import io.fabric8.kubernetes.client.informers.cache.BasicItemStore;
import io.fabric8.kubernetes.client.informers.cache.Cache;
import java.util.Map;

/**
 * An informer store that drops, before caching, what the operator never reads: {@code metadata.managedFields}
 * (server-side apply records every field of every manager: the largest part of a node pod), the
 * {@code kubectl.kubernetes.io/last-applied-configuration} annotation (a second copy of the object), and a
 * Node's {@code status.images}. Every decision reads labels, annotations, spec and status of the objects, never
 * these (docs/performance.md, p4). The event source compares the objects it is given, so what is dropped can
 * trigger nothing either.
 */
public final class TrimmedItemStore<T extends HasMetadata> extends BasicItemStore<T> {
  static final String LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration";

  public TrimmedItemStore() {
    super(Cache::metaNamespaceKeyFunc);
  }

  @Override
  public T put(String key, T obj) {
    return super.put(key, trim(obj));
  }

  static <T extends HasMetadata> T trim(T obj) {
    if (obj == null || obj.getMetadata() == null) {
      return obj;
    }
    obj.getMetadata().setManagedFields(null);
    Map<String, String> annotations = obj.getMetadata().getAnnotations();
    if (annotations != null && annotations.containsKey(LAST_APPLIED)) {
      annotations.remove(LAST_APPLIED);
    }
    if (obj instanceof Node node && node.getStatus() != null) {
      node.getStatus().setImages(null);
    }
    return obj;
  }
}
