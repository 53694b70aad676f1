package dev.vfiovm.controller;

import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.api.model.ConfigMapBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.fabric8.kubernetes.client.utils.Serialization;
import java.util.Map;

/**
 * Persists the {@link UidQuarantine.State} (quarantined UIDs and the hand-out cursor) in the ConfigMap
 * {@value #NAME} of the operator's namespace, key {@value #KEY}. Only the operator writes it (its Role allows
 * get/update/patch on this one name; the chart creates it empty and keeps it on uninstall). It is not derived
 * from any VfioVm: deleting a VfioVm, or writing its status, cannot end a quarantine.
 */
public final class QuarantineStore {
  public static final String NAME = "vfiovm-uid-quarantine";
  public static final String KEY = "state.json";

  private final KubernetesClient client;
  private final String namespace;

  public QuarantineStore(KubernetesClient client, String namespace) {
    this.client = client;
    this.namespace = namespace;
  }

  /** The persisted state, or null when there is none yet. */
  public UidQuarantine.State load() {
    ConfigMap cm = client.configMaps().inNamespace(namespace).withName(NAME).get();
    String json = cm == null || cm.getData() == null ? null : cm.getData().get(KEY);
    return json == null || json.isBlank() ? null : UidQuarantine.State.fromJson(json);
  }

  /** Writes the state (a merge patch of its one key); creates the ConfigMap if it is missing. */
  public void save(UidQuarantine.State state) {
    String json = state.toJson();
    var resource = client.configMaps().inNamespace(namespace).withName(NAME);
    try {
      resource.patch(PatchContext.of(PatchType.JSON_MERGE), Serialization.asJson(Map.of("data", Map.of(KEY, json))));
    } catch (KubernetesClientException e) {
      if (e.getCode() != 404) {
        throw e;
      }
      try {
        client.configMaps().inNamespace(namespace).resource(new ConfigMapBuilder().withNewMetadata()
            .withName(NAME).withNamespace(namespace)
            .addToLabels(NodePodShape.LABEL_MANAGED_BY, NodePodShape.MANAGED_BY).endMetadata()
            .addToData(KEY, json).build()).create();
      } catch (KubernetesClientException c) {
        if (c.getCode() == 409) { // made in between (another save, the chart): this state goes on top of it
          resource.patch(PatchContext.of(PatchType.JSON_MERGE), Serialization.asJson(Map.of("data", Map.of(KEY, json))));
          return;
        }
        throw new KubernetesClientException("cannot create ConfigMap " + namespace + "/" + NAME
            + " holding the UID quarantine (the Helm chart creates it; create it empty or allow the operator to): "
            + c.getMessage(), c);
      }
    }
  }
}
