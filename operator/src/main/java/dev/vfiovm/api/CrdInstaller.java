package dev.vfiovm.api;

import io.fabric8.kubernetes.api.model.apiextensions.v1.CustomResourceDefinition;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import java.util.concurrent.TimeUnit;

/**
 * Installs the generated CRD on any server. Server-side apply first; a server older than Kubernetes 1.25 knows
 * no {@code x-kubernetes-validations} (CEL) and its server-side apply refuses the CRD ("field not declared in
 * schema"), while its create and update decode leniently and drop the CEL rules: there the CRD goes in by
 * create or update, and the operator's own checks are what enforce the spec.
 */
public final class CrdInstaller {
  private CrdInstaller() {}

  /** Installs (or updates) {@code crd} and waits until it is established. */
  public static CustomResourceDefinition install(KubernetesClient client, CustomResourceDefinition crd,
      String fieldManager) {
    var crds = client.apiextensions().v1().customResourceDefinitions();
    String name = crd.getMetadata().getName();
    try {
      crds.resource(crd).fieldManager(fieldManager).forceConflicts().serverSideApply();
    } catch (KubernetesClientException e) {
      if (e.getMessage() == null || !e.getMessage().contains("field not declared in schema")) {
        throw e;
      }
      CustomResourceDefinition live = crds.withName(name).get();
      if (live == null) {
        crds.resource(crd).create();
      } else {
        crd.getMetadata().setResourceVersion(live.getMetadata().getResourceVersion());
        crds.resource(crd).update();
      }
    }
    return crds.withName(name).waitUntilCondition(c -> c != null && c.getStatus() != null
        && c.getStatus().getConditions() != null && c.getStatus().getConditions().stream()
            .anyMatch(s -> "Established".equals(s.getType()) && "True".equals(s.getStatus())), 60, TimeUnit.SECONDS);
  }
}
