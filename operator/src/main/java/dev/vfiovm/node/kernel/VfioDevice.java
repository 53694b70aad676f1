package dev.vfiovm.node.kernel;

/** A VFIO device cdev (/dev/vfio/devices/vfioN) fd and its iommufd uAPI. Does not own the fd's lifetime. */
public final class VfioDevice {
  private final int fd;

  public VfioDevice(int fd) {
    this.fd = fd;
  }

  public static VfioDevice open(String cdev) {
    return new VfioDevice(Kernel.open(cdev, Uapi.O_RDWR));
  }

  public int fd() {
    return fd;
  }

  /** VFIO_DEVICE_BIND_IOMMUFD: returns the device's object id in that iommufd. */
  public int bind(Iommufd iommufd) {
    Uapi.VfioDeviceBindIommufd b = new Uapi.VfioDeviceBindIommufd();
    b.iommufd = iommufd.fd();
    Kernel.ioctl(fd, Uapi.VFIO_DEVICE_BIND_IOMMUFD, b, "VFIO_DEVICE_BIND_IOMMUFD");
    return b.out_devid;
  }

  /** VFIO_DEVICE_ATTACH_IOMMUFD_PT to an IOAS: from now on the IOAS's mappings are pinned. */
  public void attach(int ioasId) {
    Uapi.VfioDeviceAttachIommufdPt a = new Uapi.VfioDeviceAttachIommufdPt();
    a.pt_id = ioasId;
    Kernel.ioctl(fd, Uapi.VFIO_DEVICE_ATTACH_IOMMUFD_PT, a, "VFIO_DEVICE_ATTACH_IOMMUFD_PT");
  }

  /** VFIO_DEVICE_DETACH_IOMMUFD_PT. */
  public void detach() {
    Uapi.VfioDeviceDetachIommufdPt d = new Uapi.VfioDeviceDetachIommufdPt();
    Kernel.ioctl(fd, Uapi.VFIO_DEVICE_DETACH_IOMMUFD_PT, d, "VFIO_DEVICE_DETACH_IOMMUFD_PT");
  }
}
