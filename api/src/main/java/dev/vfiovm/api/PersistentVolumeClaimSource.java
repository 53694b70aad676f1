package dev.vfiovm.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.generator.annotation.Size;

/**
 * Reserved, always refused. Node pods run in the operator's namespace, and a pod can mount only a
 * PersistentVolumeClaim of its own namespace: a PVC of the VM's namespace cannot be mounted, and naming one of
 * the operator's namespace would let any tenant boot (read) a volume that is not theirs. The field exists so
 * such a spec gets a clear refusal instead of being silently pruned by the API server.
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
public class PersistentVolumeClaimSource {
  @JsonPropertyDescription("Name of the PersistentVolumeClaim (not supported, see persistentVolumeClaim).")
  @Size(max = 253)
  private String claimName;

  public PersistentVolumeClaimSource() {}

  public PersistentVolumeClaimSource(String claimName) {
    this.claimName = claimName;
  }

  public String getClaimName() {
    return claimName;
  }

  public void setClaimName(String claimName) {
    this.claimName = claimName;
  }
}
