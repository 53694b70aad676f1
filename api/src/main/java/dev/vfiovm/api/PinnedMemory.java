package dev.vfiovm.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import java.util.ArrayList;
import java.util.List;

/**
 * The fields the node agent's {@link NodeAgentReport} and the {@link VfioVmStatus} share, with the same JSON
 * names in both: the host UID the VM's pins are charged to, its RLIMIT_MEMLOCK, what it has pinned, the
 * accounting and DMA backend really in force, and its devices. The descriptions are the CRD's (status).
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
public abstract class PinnedMemory {
  @JsonPropertyDescription(
      "Host UID the VM process runs as (through its user namespace); its pinned memory is charged to this UID.")
  private Long hostUid;

  @JsonPropertyDescription("RLIMIT_MEMLOCK applied to the VM process, in bytes: factor x memory + overhead.")
  private Long memlockLimitBytes;

  @JsonPropertyDescription("Guest memory the VM process has pinned for DMA, in bytes, as the node agent reports it.")
  private Long pinnedBytes;

  @JsonPropertyDescription("Accounting that really applies on the node (PerProcess or PerUser).")
  private String accounting;

  @JsonPropertyDescription("DMA backend that really applies on the node (Iommufd or IoUring).")
  private String dmaBackend;

  @JsonPropertyDescription("Per-device state reported by the node agent.")
  private List<DeviceStatus> devices = new ArrayList<>();

  /**
   * Takes what the node agent measures from {@code other} (a report, or the previous status): pinned bytes,
   * accounting, DMA backend and a copy of the devices. The UID and the limit are the operator's, not copied.
   */
  public void copyMeasuredFrom(PinnedMemory other) {
    pinnedBytes = other.pinnedBytes;
    accounting = other.accounting;
    dmaBackend = other.dmaBackend;
    devices = other.devices.stream().map(DeviceStatus::copyOf)
        .collect(java.util.stream.Collectors.toCollection(ArrayList::new));
  }

  public Long getHostUid() {
    return hostUid;
  }

  public void setHostUid(Long hostUid) {
    this.hostUid = hostUid;
  }

  public Long getMemlockLimitBytes() {
    return memlockLimitBytes;
  }

  public void setMemlockLimitBytes(Long memlockLimitBytes) {
    this.memlockLimitBytes = memlockLimitBytes;
  }

  public Long getPinnedBytes() {
    return pinnedBytes;
  }

  public void setPinnedBytes(Long pinnedBytes) {
    this.pinnedBytes = pinnedBytes;
  }

  public String getAccounting() {
    return accounting;
  }

  public void setAccounting(String accounting) {
    this.accounting = accounting;
  }

  public String getDmaBackend() {
    return dmaBackend;
  }

  public void setDmaBackend(String dmaBackend) {
    this.dmaBackend = dmaBackend;
  }

  public List<DeviceStatus> getDevices() {
    return devices;
  }

  public void setDevices(List<DeviceStatus> devices) {
    this.devices = devices == null ? new ArrayList<>() : devices;
  }
}
