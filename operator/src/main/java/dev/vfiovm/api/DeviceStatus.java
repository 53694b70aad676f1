package dev.vfiovm.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;

@JsonInclude(JsonInclude.Include.NON_NULL)
public class DeviceStatus {
  @JsonPropertyDescription("PCI address of the device, as in spec.devices.")
  private String pciAddress;

  @JsonPropertyDescription("VFIO device cdev the node agent opened for it, e.g. /dev/vfio/devices/vfio0.")
  private String cdev;

  @JsonPropertyDescription("True once the device is bound to the VM's iommufd and attached to its IOAS.")
  private boolean attached;

  public DeviceStatus() {}

  public DeviceStatus(String pciAddress, String cdev, boolean attached) {
    this.pciAddress = pciAddress;
    this.cdev = cdev;
    this.attached = attached;
  }

  public String getPciAddress() {
    return pciAddress;
  }

  public void setPciAddress(String pciAddress) {
    this.pciAddress = pciAddress;
  }

  public String getCdev() {
    return cdev;
  }

  public void setCdev(String cdev) {
    this.cdev = cdev;
  }

  public boolean isAttached() {
    return attached;
  }

  public void setAttached(boolean attached) {
    this.attached = attached;
  }
}
