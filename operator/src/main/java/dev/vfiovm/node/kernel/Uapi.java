package dev.vfiovm.node.kernel;

import com.sun.jna.Pointer;
import com.sun.jna.Structure;
import com.sun.jna.Structure.FieldOrder;

/**
 * The kernel uAPI the agent speaks: structs and request numbers of linux/iommufd.h, linux/vfio.h and
 * linux/io_uring.h (Linux 6.12), plus the libc constants it needs. UapiLayoutKernelIT compiles a C program
 * against the kernel's own headers and compares every size, offset and number here.
 */
public final class Uapi {
  private Uapi() {}

  // --- ioctl numbers: iommufd and VFIO ioctls are all _IO(';', nr), i.e. (';' << 8) | nr
  static final int IOMMUFD_TYPE = ';';
  static final int IOMMUFD_CMD_BASE = 0x80;
  static final int VFIO_BASE = 100;

  static int io(int type, int nr) {
    return (type << 8) | nr;
  }

  public static final int IOMMU_DESTROY = io(IOMMUFD_TYPE, IOMMUFD_CMD_BASE);
  public static final int IOMMU_IOAS_ALLOC = io(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 1);
  public static final int IOMMU_IOAS_IOVA_RANGES = io(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 4);
  public static final int IOMMU_IOAS_MAP = io(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 5);
  public static final int IOMMU_IOAS_UNMAP = io(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 6);
  public static final int IOMMU_OPTION = io(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 7);
  public static final int VFIO_DEVICE_BIND_IOMMUFD = io(IOMMUFD_TYPE, VFIO_BASE + 18);
  public static final int VFIO_DEVICE_ATTACH_IOMMUFD_PT = io(IOMMUFD_TYPE, VFIO_BASE + 19);
  public static final int VFIO_DEVICE_DETACH_IOMMUFD_PT = io(IOMMUFD_TYPE, VFIO_BASE + 20);

  public static final int IOMMU_OPTION_RLIMIT_MODE = 0;
  public static final int IOMMU_OPTION_OP_SET = 0;
  public static final int IOMMU_OPTION_OP_GET = 1;
  /** RLIMIT_MODE values: 0 = charge the user (default), 1 = charge the mapping process's mm. */
  public static final long RLIMIT_MODE_PER_USER = 0;

  public static final long RLIMIT_MODE_PER_PROCESS = 1;

  public static final int IOMMU_IOAS_MAP_FIXED_IOVA = 1;
  public static final int IOMMU_IOAS_MAP_WRITEABLE = 1 << 1;
  public static final int IOMMU_IOAS_MAP_READABLE = 1 << 2;

  // --- io_uring (x86_64 and the asm-generic table share these numbers)
  public static final long NR_IO_URING_SETUP = 425;
  public static final long NR_IO_URING_REGISTER = 427;
  public static final int IORING_REGISTER_BUFFERS = 0;

  // --- errno values (asm-generic/errno-base.h, errno.h)
  public static final int EPERM = 1;
  public static final int ESRCH = 3;
  public static final int ENOMEM = 12;
  public static final int ENOSYS = 38;

  // --- pidfd_open, poll (x86_64)
  public static final long NR_PIDFD_OPEN = 434;
  public static final long NR_PIDFD_SEND_SIGNAL = 424;
  public static final short POLLIN = 1;

  // --- libc / asm-generic constants (x86_64)
  public static final int RLIMIT_MEMLOCK = 8;
  public static final int MFD_CLOEXEC = 1;
  public static final int PROT_READ = 1;
  public static final int PROT_WRITE = 2;
  public static final int MAP_SHARED = 1;
  public static final int MAP_PRIVATE = 2;
  public static final int MAP_ANONYMOUS = 0x20;
  public static final int MAP_POPULATE = 0x8000;
  public static final int O_RDONLY = 0;
  public static final int O_RDWR = 2;
  public static final int O_CLOEXEC = 02000000;
  public static final int F_DUPFD_CLOEXEC = 1030;
  public static final int F_GETFD = 1;
  public static final int F_SETFD = 2;
  public static final int FD_CLOEXEC = 1;
  public static final int AF_UNIX = 1;
  public static final int SOL_SOCKET = 1;
  public static final int SCM_RIGHTS = 1;
  public static final int SO_PEERCRED = 17;
  public static final int MSG_NOSIGNAL = 0x4000;
  public static final int MSG_CTRUNC = 0x8;
  public static final int MSG_CMSG_CLOEXEC = 0x40000000;
  /** CMSG_LEN(sizeof(int)) and CMSG_SPACE(sizeof(int)) on x86_64: a cmsghdr (16) + one fd, padded to 8. */
  public static final int CMSG_LEN_ONE_FD = 20;
  public static final int CMSG_SPACE_ONE_FD = 24;
  public static final int SOCK_STREAM = 1;
  public static final int SOCK_CLOEXEC = O_CLOEXEC;
  public static final int SIGKILL = 9;
  public static final int SIGTERM = 15;
  public static final int WNOHANG = 1;
  public static final int PR_SET_PDEATHSIG = 1;
  public static final int PR_SET_CHILD_SUBREAPER = 36;
  public static final int CLOSE_RANGE_CLOEXEC = 1 << 2;
  public static final int SIG_SETMASK = 2;
  public static final short POSIX_SPAWN_SETSIGDEF = 0x04;
  public static final short POSIX_SPAWN_SETSIGMASK = 0x08;
  public static final short POSIX_SPAWN_SETSID = 0x80;

  /** struct rlimit / rlimit64 (two u64 on 64-bit Linux). */
  @FieldOrder({"rlim_cur", "rlim_max"})
  public static class Rlimit extends Structure {
    public long rlim_cur;
    public long rlim_max;

    public Rlimit() {}

    public Rlimit(long soft, long hard) {
      this.rlim_cur = soft;
      this.rlim_max = hard;
    }
  }

  /** struct iommu_destroy. */
  @FieldOrder({"size", "id"})
  public static class IommuDestroy extends Structure {
    public int size;
    public int id;

    public IommuDestroy() {
      size = size();
    }
  }

  /** struct iommu_ioas_alloc. */
  @FieldOrder({"size", "flags", "out_ioas_id"})
  public static class IommuIoasAlloc extends Structure {
    public int size;
    public int flags;
    public int out_ioas_id;

    public IommuIoasAlloc() {
      size = size();
    }
  }

  /** struct iommu_iova_range. */
  @FieldOrder({"start", "last"})
  public static class IommuIovaRange extends Structure {
    public long start;
    public long last;

    public IommuIovaRange() {}

    public IommuIovaRange(Pointer p) {
      super(p);
      read();
    }
  }

  /** struct iommu_ioas_iova_ranges. */
  @FieldOrder({"size", "ioas_id", "num_iovas", "__reserved", "allowed_iovas", "out_iova_alignment"})
  public static class IommuIoasIovaRanges extends Structure {
    public int size;
    public int ioas_id;
    public int num_iovas;
    public int __reserved;
    public long allowed_iovas;
    public long out_iova_alignment;

    public IommuIoasIovaRanges() {
      size = size();
    }
  }

  /** struct iommu_ioas_map. */
  @FieldOrder({"size", "flags", "ioas_id", "__reserved", "user_va", "length", "iova"})
  public static class IommuIoasMap extends Structure {
    public int size;
    public int flags;
    public int ioas_id;
    public int __reserved;
    public long user_va;
    public long length;
    public long iova;

    public IommuIoasMap() {
      size = size();
    }
  }

  /** struct iommu_ioas_unmap. */
  @FieldOrder({"size", "ioas_id", "iova", "length"})
  public static class IommuIoasUnmap extends Structure {
    public int size;
    public int ioas_id;
    public long iova;
    public long length;

    public IommuIoasUnmap() {
      size = size();
    }
  }

  /** struct iommu_option. */
  @FieldOrder({"size", "option_id", "op", "__reserved", "object_id", "val64"})
  public static class IommuOption extends Structure {
    public int size;
    public int option_id;
    public short op;
    public short __reserved;
    public int object_id;
    public long val64;

    public IommuOption() {
      size = size();
    }
  }

  /** struct vfio_device_bind_iommufd (the 6.12 layout; argsz tells newer kernels which one we send). */
  @FieldOrder({"argsz", "flags", "iommufd", "out_devid"})
  public static class VfioDeviceBindIommufd extends Structure {
    public int argsz;
    public int flags;
    public int iommufd;
    public int out_devid;

    public VfioDeviceBindIommufd() {
      argsz = size();
    }
  }

  /** struct vfio_device_attach_iommufd_pt. */
  @FieldOrder({"argsz", "flags", "pt_id"})
  public static class VfioDeviceAttachIommufdPt extends Structure {
    public int argsz;
    public int flags;
    public int pt_id;

    public VfioDeviceAttachIommufdPt() {
      argsz = size();
    }
  }

  /** struct vfio_device_detach_iommufd_pt. */
  @FieldOrder({"argsz", "flags"})
  public static class VfioDeviceDetachIommufdPt extends Structure {
    public int argsz;
    public int flags;

    public VfioDeviceDetachIommufdPt() {
      argsz = size();
    }
  }

  /** struct io_sqring_offsets / io_cqring_offsets (same shape: 8 x u32 + u64). */
  @FieldOrder({"a", "b", "c", "d", "e", "f", "g", "resv1", "user_addr"})
  public static class IoRingOffsets extends Structure {
    public int a;
    public int b;
    public int c;
    public int d;
    public int e;
    public int f;
    public int g;
    public int resv1;
    public long user_addr;
  }

  /** struct io_uring_params. */
  @FieldOrder({
    "sq_entries", "cq_entries", "flags", "sq_thread_cpu", "sq_thread_idle", "features", "wq_fd", "resv",
    "sq_off", "cq_off"
  })
  public static class IoUringParams extends Structure {
    public int sq_entries;
    public int cq_entries;
    public int flags;
    public int sq_thread_cpu;
    public int sq_thread_idle;
    public int features;
    public int wq_fd;
    public int[] resv = new int[3];
    public IoRingOffsets sq_off;
    public IoRingOffsets cq_off;
  }

  /** struct iovec. */
  @FieldOrder({"iov_base", "iov_len"})
  public static class Iovec extends Structure {
    public Pointer iov_base;
    public long iov_len;
  }

  /** struct msghdr (sendmsg/recvmsg). */
  @FieldOrder({"msg_name", "msg_namelen", "msg_iov", "msg_iovlen", "msg_control", "msg_controllen", "msg_flags"})
  public static class Msghdr extends Structure {
    public Pointer msg_name;
    public int msg_namelen;
    public Pointer msg_iov;
    public long msg_iovlen;
    public Pointer msg_control;
    public long msg_controllen;
    public int msg_flags;
  }

  /** struct cmsghdr (the header of one control message; its data follows at sizeof). */
  @FieldOrder({"cmsg_len", "cmsg_level", "cmsg_type"})
  public static class Cmsghdr extends Structure {
    public long cmsg_len;
    public int cmsg_level;
    public int cmsg_type;
  }

  /** struct ucred (SO_PEERCRED). */
  @FieldOrder({"pid", "uid", "gid"})
  public static class Ucred extends Structure {
    public int pid;
    public int uid;
    public int gid;
  }

  /** struct sockaddr_un. */
  @FieldOrder({"sun_family", "sun_path"})
  public static class SockaddrUn extends Structure {
    public short sun_family;
    public byte[] sun_path = new byte[108];
  }
}
