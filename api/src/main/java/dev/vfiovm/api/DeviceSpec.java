package dev.vfiovm.api;

import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.generator.annotation.Pattern;
import io.fabric8.generator.annotation.Required;
import io.fabric8.generator.annotation.Size;

/** One VFIO device to assign to the VM. */
public class DeviceSpec {
  /** Lower-case PCI address DDDD:BB:DD.F, as sysfs names it. */
  public static final String PCI_ADDRESS_PATTERN = "^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\\.[0-7]$";

  @Required
  @Pattern(PCI_ADDRESS_PATTERN)
  @Size(max = 12)
  @JsonPropertyDescription(
      "PCI address of the device on the node, lower-case DDDD:BB:DD.F as under /sys/bus/pci/devices "
          + "(e.g. 0000:3b:00.0). The device must be bound to vfio-pci and have a VFIO cdev (/dev/vfio/devices/vfioN).")
  private String pciAddress;

  public DeviceSpec() {}

  public DeviceSpec(String pciAddress) {
    this.pciAddress = pciAddress;
  }

  public String getPciAddress() {
    return pciAddress;
  }

  public void setPciAddress(String pciAddress) {
    this.pciAddress = pciAddress;
  }
}
