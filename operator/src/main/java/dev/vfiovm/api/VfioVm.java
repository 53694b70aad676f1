package dev.vfiovm.api;

import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.crd.generator.annotation.AdditionalPrinterColumn;
import io.fabric8.crd.generator.annotation.AdditionalPrinterColumn.Type;
import io.fabric8.kubernetes.api.model.Namespaced;
import io.fabric8.kubernetes.model.annotation.Group;
import io.fabric8.kubernetes.model.annotation.Kind;
import io.fabric8.kubernetes.model.annotation.Plural;
import io.fabric8.kubernetes.model.annotation.ShortNames;
import io.fabric8.kubernetes.model.annotation.Singular;
import io.fabric8.kubernetes.model.annotation.Version;

/** A virtual machine with VFIO devices whose pinned DMA memory is accounted to its own host UID. */
@Group(VfioVm.GROUP)
@Version(VfioVm.VERSION)
@Kind("VfioVm")
@Plural("vfiovms")
@Singular("vfiovm")
@ShortNames("vvm")
@AdditionalPrinterColumn(name = "Phase", jsonPath = ".status.phase", type = Type.STRING)
@AdditionalPrinterColumn(name = "Node", jsonPath = ".status.nodeName", type = Type.STRING)
@AdditionalPrinterColumn(name = "UID", jsonPath = ".status.hostUid", type = Type.INTEGER)
@AdditionalPrinterColumn(name = "Memlock", jsonPath = ".status.memlockLimitBytes", type = Type.INTEGER)
@AdditionalPrinterColumn(name = "Pinned", jsonPath = ".status.pinnedBytes", type = Type.INTEGER)
@AdditionalPrinterColumn(name = "Console", jsonPath = ".status.console", type = Type.STRING, priority = 1)
@AdditionalPrinterColumn(name = "Age", jsonPath = ".metadata.creationTimestamp", type = Type.DATE)
public class VfioVm extends io.fabric8.kubernetes.client.CustomResource<VfioVmSpec, VfioVmStatus>
    implements Namespaced {
  public static final String GROUP = "vfiovm.dev";
  public static final String VERSION = "v1alpha1";

  @Override
  @JsonPropertyDescription(
      "The VM: guest memory, VFIO devices, placement constraints, and how its pinned memory is accounted.")
  public VfioVmSpec getSpec() {
    return super.getSpec();
  }

  @Override
  @JsonPropertyDescription(
      "What the operator decided (host UID, node, memlock limit) and what the node agent reports (phase, pinned bytes).")
  public VfioVmStatus getStatus() {
    return super.getStatus();
  }
}
