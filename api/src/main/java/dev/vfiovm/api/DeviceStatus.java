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

  @JsonPropertyDescription("Where the device stands: Waiting (in spec.devices, not handed to the node yet), Plugging, "
      + "Attached, Unplugging or Failed.")
  private DeviceState state;

  @JsonPropertyDescription("Why the device is in its state, when it is not Attached (e.g. VmNotRunning, "
      + "InsufficientBudget, DeviceConflict, or the node agent's error).")
  private String reason;

  @JsonPropertyDescription("What to change, or what is happening, in a sentence.")
  private String message;

  @JsonPropertyDescription("True for a device plugged into the running VM after it started (hot-plug).")
  @JsonInclude(JsonInclude.Include.NON_DEFAULT) // absent unless true: reports and statuses without hot-plug keep their shape
  private boolean hotplugged;

  public DeviceStatus() {}

  public DeviceStatus(String pciAddress, String cdev, boolean attached) {
    this.pciAddress = pciAddress;
    this.cdev = cdev;
    this.attached = attached;
  }

  /** A copy of {@code other}. */
  public static DeviceStatus copyOf(DeviceStatus other) {
    DeviceStatus d = new DeviceStatus(other.pciAddress, other.cdev, other.attached);
    d.state = other.state;
    d.reason = other.reason;
    d.message = other.message;
    d.hotplugged = other.hotplugged;
    return d;
  }

  public DeviceState getState() {
    return state;
  }

  public void setState(DeviceState state) {
    this.state = state;
  }

  public String getReason() {
    return reason;
  }

  public void setReason(String reason) {
    this.reason = reason;
  }

  public String getMessage() {
    return message;
  }

  public void setMessage(String message) {
    this.message = message;
  }

  public boolean isHotplugged() {
    return hotplugged;
  }

  public void setHotplugged(boolean hotplugged) {
    this.hotplugged = hotplugged;
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
