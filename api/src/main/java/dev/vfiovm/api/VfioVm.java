package dev.vfiovm.api;

import com.fasterxml.jackson.annotation.JsonClassDescription;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.crd.generator.annotation.AdditionalPrinterColumn;
import io.fabric8.crd.generator.annotation.AdditionalPrinterColumn.Type;
import io.fabric8.generator.annotation.ValidationRule;
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
@ValidationRule(value = "self.metadata.name.size() <= 63",
    message = "metadata.name must be at most 63 characters: it becomes a label value of the VM's node pod")
@ValidationRule(value = VfioVm.NOT_PLACED + "self.spec.memory == oldSelf.spec.memory", fieldPath = ".spec.memory",
    message = "spec.memory" + VfioVm.IMMUTABLE)
@ValidationRule(value = VfioVm.NOT_PLACED + "(has(self.spec.nodeName) ? self.spec.nodeName : '') == (has(oldSelf.spec.nodeName) ? oldSelf.spec.nodeName : '')", fieldPath = ".spec.nodeName",
    message = "spec.nodeName" + VfioVm.IMMUTABLE)
@ValidationRule(value = VfioVm.NOT_PLACED + "(has(self.spec.nodeSelector) ? self.spec.nodeSelector : {}) == (has(oldSelf.spec.nodeSelector) ? oldSelf.spec.nodeSelector : {})", fieldPath = ".spec.nodeSelector",
    message = "spec.nodeSelector" + VfioVm.IMMUTABLE)
@ValidationRule(value = VfioVm.NOT_PLACED + "self.spec.viommu == oldSelf.spec.viommu", fieldPath = ".spec.viommu",
    message = "spec.viommu" + VfioVm.IMMUTABLE)
@ValidationRule(value = VfioVm.NOT_PLACED + "self.spec.accounting == oldSelf.spec.accounting", fieldPath = ".spec.accounting",
    message = "spec.accounting" + VfioVm.IMMUTABLE)
@ValidationRule(value = VfioVm.NOT_PLACED + "self.spec.dmaBackend == oldSelf.spec.dmaBackend", fieldPath = ".spec.dmaBackend",
    message = "spec.dmaBackend" + VfioVm.IMMUTABLE)
@ValidationRule(value = VfioVm.NOT_PLACED + "self.spec.cpus == oldSelf.spec.cpus", fieldPath = ".spec.cpus",
    message = "spec.cpus" + VfioVm.IMMUTABLE)
@ValidationRule(value = VfioVm.NOT_PLACED + "has(self.spec.boot) == has(oldSelf.spec.boot) && (!has(self.spec.boot) || self.spec.boot == oldSelf.spec.boot)", fieldPath = ".spec.boot",
    message = "spec.boot" + VfioVm.IMMUTABLE)
@ValidationRule(value = VfioVm.NOT_PLACED + "self.spec.console == oldSelf.spec.console", fieldPath = ".spec.console",
    message = "spec.console" + VfioVm.IMMUTABLE)
@JsonClassDescription("A virtual machine with VFIO devices (PCI passthrough). The operator gives it its own host UID, "
    + "places it on a node whose pinned-memory budget fits its memlock limit, and runs it in a node pod; all guest "
    + "memory it pins for DMA is charged to that UID, so one VM cannot pin more than its limit. Once placed "
    + "(status.nodeName set), only spec.devices may change (hot-plug: an added address is plugged into the running "
    + "VM, a removed one unplugged); any other change needs the VfioVm deleted and re-created.")
public class VfioVm extends io.fabric8.kubernetes.client.CustomResource<VfioVmSpec, VfioVmStatus>
    implements Namespaced {
  public static final String GROUP = "vfiovm.dev";
  public static final String VERSION = "v1alpha1";
  /**
   * Start of every transition rule: a VM not yet placed (no status.nodeName) may still be edited, e.g. to fit a
   * node's budget; once placed, what the node pod was built from is fixed - except spec.devices, which has no
   * rule: a devices edit of a placed VM is hot-plug (the operator re-plans it, issue 14).
   */
  static final String NOT_PLACED =
      "!has(oldSelf.status) || !has(oldSelf.status.nodeName) || oldSelf.status.nodeName == '' || ";
  /** The rest of each transition rule's message, after the field's path. */
  static final String IMMUTABLE = " cannot change after the VM is placed on a node: delete and re-create the VfioVm";

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
