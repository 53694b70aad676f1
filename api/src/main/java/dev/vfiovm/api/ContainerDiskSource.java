package dev.vfiovm.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.generator.annotation.Required;
import io.fabric8.generator.annotation.Size;

/**
 * An OCI image that only holds the boot files (like KubeVirt's containerDisk). It never runs with privileges or
 * credentials: an unprivileged init container of the node pod copies the named files out of it.
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
public class ContainerDiskSource {
  @Required
  @JsonPropertyDescription(
      "OCI image reference holding the boot files, e.g. registry.example/guests/demo:1.0 or ...@sha256:<digest>. "
          + "It is pulled like any image of the node pod; it needs no shell: the node pod copies the files out "
          + "with its own static copy tool, as a non-root user with no capabilities and no API credentials.")
  @Size(max = 1024)
  private String image;

  public ContainerDiskSource() {}

  public ContainerDiskSource(String image) {
    this.image = image;
  }

  public String getImage() {
    return image;
  }

  public void setImage(String image) {
    this.image = image;
  }
}
