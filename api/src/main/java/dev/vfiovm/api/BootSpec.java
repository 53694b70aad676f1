package dev.vfiovm.api;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonPropertyDescription;
import io.fabric8.generator.annotation.Size;

/**
 * What the VM boots: one source holding the files, and either a kernel (direct kernel boot) or a disk image
 * (booted by the firmware). Paths are absolute paths inside the source, without "..".
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
public class BootSpec {
  @JsonPropertyDescription(
      "The boot files come from this OCI image (like KubeVirt's containerDisk): the node pod copies kernel, "
          + "initrd or disk out of it into its own read-only /vm/boot before the VM starts.")
  private ContainerDiskSource containerDisk;

  @JsonPropertyDescription(
      "Not supported; a spec that sets it is refused. Node pods run in the operator's namespace, and a pod "
          + "can mount only a PersistentVolumeClaim of its own namespace: a PVC of the VM's namespace cannot "
          + "be mounted, and one in the operator's namespace would be shared by every tenant. Put the files "
          + "into an image and use containerDisk.")
  private PersistentVolumeClaimSource persistentVolumeClaim;

  @JsonPropertyDescription(
      "Direct kernel boot: absolute path of the kernel (bzImage) in the source, e.g. /boot/vmlinuz. "
          + "Exclusive with disk.")
  @Size(max = 4095)
  private String kernel;

  @JsonPropertyDescription("Initial ramdisk for the kernel: absolute path in the source, e.g. /boot/initrd.img. "
      + "Only with kernel.")
  @Size(max = 4095)
  private String initrd;

  @JsonPropertyDescription("Kernel command line, e.g. \"console=ttyS0\" (at most 2048 characters). Only with "
      + "kernel; with console Serial the guest's serial port is ttyS0.")
  @Size(max = 2048)
  private String cmdline;

  @JsonPropertyDescription(
      "Disk image (raw or qcow2) booted by the firmware: absolute path in the source, e.g. /disk/guest.qcow2. "
          + "Exclusive with kernel.")
  @Size(max = 4095)
  private String disk;

  public ContainerDiskSource getContainerDisk() {
    return containerDisk;
  }

  public void setContainerDisk(ContainerDiskSource containerDisk) {
    this.containerDisk = containerDisk;
  }

  public PersistentVolumeClaimSource getPersistentVolumeClaim() {
    return persistentVolumeClaim;
  }

  public void setPersistentVolumeClaim(PersistentVolumeClaimSource persistentVolumeClaim) {
    this.persistentVolumeClaim = persistentVolumeClaim;
  }

  public String getKernel() {
    return kernel;
  }

  public void setKernel(String kernel) {
    this.kernel = kernel;
  }

  public String getInitrd() {
    return initrd;
  }

  public void setInitrd(String initrd) {
    this.initrd = initrd;
  }

  public String getCmdline() {
    return cmdline;
  }

  public void setCmdline(String cmdline) {
    this.cmdline = cmdline;
  }

  public String getDisk() {
    return disk;
  }

  public void setDisk(String disk) {
    this.disk = disk;
  }
}
