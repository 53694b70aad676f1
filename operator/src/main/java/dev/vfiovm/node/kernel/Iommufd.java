package dev.vfiovm.node.kernel;

import com.sun.jna.Memory;
import com.sun.jna.Pointer;
import java.util.ArrayList;
import java.util.List;

/** An iommufd (/dev/iommu) file descriptor and the uAPI calls on it. Does not own the fd's lifetime. */
public final class Iommufd {
  public static final String DEVICE = "/dev/iommu";

  private final int fd;

  public Iommufd(int fd) {
    this.fd = fd;
  }

  /** Opens /dev/iommu: a fresh iommufd context. */
  public static Iommufd open() {
    return new Iommufd(Kernel.open(DEVICE, Uapi.O_RDWR));
  }

  public int fd() {
    return fd;
  }

  /**
   * IOMMU_OPTION RLIMIT_MODE (set): 1 = charge pins to the mapping process's mm, 0 = to its user. Needs
   * CAP_SYS_RESOURCE (else EPERM) and an fd without objects yet (else EBUSY).
   */
  public void setRlimitMode(long mode) {
    Uapi.IommuOption opt = new Uapi.IommuOption();
    opt.option_id = Uapi.IOMMU_OPTION_RLIMIT_MODE;
    opt.op = Uapi.IOMMU_OPTION_OP_SET;
    opt.val64 = mode;
    Kernel.ioctl(fd, Uapi.IOMMU_OPTION, opt, "IOMMU_OPTION(RLIMIT_MODE)");
  }

  public long rlimitMode() {
    Uapi.IommuOption opt = new Uapi.IommuOption();
    opt.option_id = Uapi.IOMMU_OPTION_RLIMIT_MODE;
    opt.op = Uapi.IOMMU_OPTION_OP_GET;
    Kernel.ioctl(fd, Uapi.IOMMU_OPTION, opt, "IOMMU_OPTION(RLIMIT_MODE get)");
    return opt.val64;
  }

  /** IOMMU_IOAS_ALLOC: a new I/O address space; returns its id. */
  public int allocIoas() {
    Uapi.IommuIoasAlloc a = new Uapi.IommuIoasAlloc();
    Kernel.ioctl(fd, Uapi.IOMMU_IOAS_ALLOC, a, "IOMMU_IOAS_ALLOC");
    return a.out_ioas_id;
  }

  /** A usable IOVA range of an IOAS. */
  public record IovaRange(long start, long last) {}

  /** IOMMU_IOAS_IOVA_RANGES: the IOVA ranges the attached devices allow. */
  public List<IovaRange> iovaRanges(int ioasId) {
    Uapi.IommuIoasIovaRanges q = new Uapi.IommuIoasIovaRanges();
    q.ioas_id = ioasId;
    q.num_iovas = 0;
    try {
      Kernel.ioctl(fd, Uapi.IOMMU_IOAS_IOVA_RANGES, q, "IOMMU_IOAS_IOVA_RANGES");
    } catch (KernelException e) {
      if (!e.errnoName().equals("EMSGSIZE")) {
        throw e;
      }
      q.read(); // the kernel filled in num_iovas
    }
    int n = q.num_iovas;
    List<IovaRange> out = new ArrayList<>();
    if (n == 0) {
      return out;
    }
    int each = new Uapi.IommuIovaRange().size();
    Memory buf = new Memory((long) n * each);
    buf.clear();
    Uapi.IommuIoasIovaRanges q2 = new Uapi.IommuIoasIovaRanges();
    q2.ioas_id = ioasId;
    q2.num_iovas = n;
    q2.allowed_iovas = Pointer.nativeValue(buf);
    Kernel.ioctl(fd, Uapi.IOMMU_IOAS_IOVA_RANGES, q2, "IOMMU_IOAS_IOVA_RANGES");
    for (int i = 0; i < q2.num_iovas && i < n; i++) {
      Uapi.IommuIovaRange r = new Uapi.IommuIovaRange(buf.share((long) i * each));
      out.add(new IovaRange(r.start, r.last));
    }
    return out;
  }

  /**
   * IOMMU_IOAS_MAP of [userVa, userVa+length) readable and writeable at a kernel-chosen IOVA; returns the
   * IOVA. Pins (once a device is attached) are charged to the calling process: its user, or its mm in
   * per-process mode.
   */
  public long map(int ioasId, Pointer userVa, long length) {
    Uapi.IommuIoasMap m = new Uapi.IommuIoasMap();
    m.flags = Uapi.IOMMU_IOAS_MAP_READABLE | Uapi.IOMMU_IOAS_MAP_WRITEABLE;
    m.ioas_id = ioasId;
    m.user_va = Pointer.nativeValue(userVa);
    m.length = length;
    Kernel.ioctl(fd, Uapi.IOMMU_IOAS_MAP, m, "IOMMU_IOAS_MAP");
    return m.iova;
  }

  /** IOMMU_IOAS_UNMAP of [iova, iova+length). Returns the bytes unmapped. */
  public long unmap(int ioasId, long iova, long length) {
    Uapi.IommuIoasUnmap u = new Uapi.IommuIoasUnmap();
    u.ioas_id = ioasId;
    u.iova = iova;
    u.length = length;
    Kernel.ioctl(fd, Uapi.IOMMU_IOAS_UNMAP, u, "IOMMU_IOAS_UNMAP");
    return u.length;
  }

  /** IOMMU_IOAS_UNMAP of everything in the IOAS (iova 0, length U64_MAX). Returns the bytes unmapped. */
  public long unmapAll(int ioasId) {
    return unmap(ioasId, 0, -1L);
  }

  /** IOMMU_DESTROY of an object (IOAS, ...). */
  public void destroy(int id) {
    Uapi.IommuDestroy d = new Uapi.IommuDestroy();
    d.id = id;
    Kernel.ioctl(fd, Uapi.IOMMU_DESTROY, d, "IOMMU_DESTROY");
  }
}
