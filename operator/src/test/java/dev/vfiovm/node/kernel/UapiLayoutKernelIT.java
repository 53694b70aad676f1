package dev.vfiovm.node.kernel;

import static org.assertj.core.api.Assertions.assertThat;

import com.sun.jna.Structure;
import dev.vfiovm.testing.Prerequisites;
import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The JNA facade's view of the kernel uAPI (struct sizes, field offsets, ioctl and syscall numbers, flags)
 * against the kernel's own headers: a C program compiled against linux-source-6.12's iommufd.h, vfio.h and
 * io_uring.h (extracted by hack/setup.d/40-uapi-headers.sh) and glibc prints what the compiler
 * knows; every value must equal the facade's.
 */
class UapiLayoutKernelIT {
  static final Path HEADERS =
      Path.of(
          System.getenv().getOrDefault("VFIOVM_CACHE", System.getProperty("user.home") + "/.cache/vfiovm"),
          "uapi-headers-6.12");

  /** C struct name -> the facade's Structure (field names equal the C ones). */
  static final Map<String, Class<? extends Structure>> STRUCTS = new LinkedHashMap<>();

  static {
    STRUCTS.put("iommu_destroy", Uapi.IommuDestroy.class);
    STRUCTS.put("iommu_ioas_alloc", Uapi.IommuIoasAlloc.class);
    STRUCTS.put("iommu_iova_range", Uapi.IommuIovaRange.class);
    STRUCTS.put("iommu_ioas_iova_ranges", Uapi.IommuIoasIovaRanges.class);
    STRUCTS.put("iommu_ioas_map", Uapi.IommuIoasMap.class);
    STRUCTS.put("iommu_ioas_unmap", Uapi.IommuIoasUnmap.class);
    STRUCTS.put("iommu_option", Uapi.IommuOption.class);
    STRUCTS.put("vfio_device_bind_iommufd", Uapi.VfioDeviceBindIommufd.class);
    STRUCTS.put("vfio_device_attach_iommufd_pt", Uapi.VfioDeviceAttachIommufdPt.class);
    STRUCTS.put("vfio_device_detach_iommufd_pt", Uapi.VfioDeviceDetachIommufdPt.class);
    STRUCTS.put("io_uring_params", Uapi.IoUringParams.class);
    STRUCTS.put("io_sqring_offsets", Uapi.IoRingOffsets.class);
    STRUCTS.put("io_cqring_offsets", Uapi.IoRingOffsets.class);
    STRUCTS.put("iovec", Uapi.Iovec.class);
    STRUCTS.put("rlimit", Uapi.Rlimit.class);
    STRUCTS.put("msghdr", Uapi.Msghdr.class);
    STRUCTS.put("cmsghdr", Uapi.Cmsghdr.class);
    STRUCTS.put("ucred", Uapi.Ucred.class);
    STRUCTS.put("sockaddr_un", Uapi.SockaddrUn.class);
  }

  /** C macro -> the facade's constant of the same meaning. */
  static final Map<String, Long> CONSTANTS = new LinkedHashMap<>();

  static {
    CONSTANTS.put("IOMMU_DESTROY", (long) Uapi.IOMMU_DESTROY);
    CONSTANTS.put("IOMMU_IOAS_ALLOC", (long) Uapi.IOMMU_IOAS_ALLOC);
    CONSTANTS.put("IOMMU_IOAS_IOVA_RANGES", (long) Uapi.IOMMU_IOAS_IOVA_RANGES);
    CONSTANTS.put("IOMMU_IOAS_MAP", (long) Uapi.IOMMU_IOAS_MAP);
    CONSTANTS.put("IOMMU_IOAS_UNMAP", (long) Uapi.IOMMU_IOAS_UNMAP);
    CONSTANTS.put("IOMMU_OPTION", (long) Uapi.IOMMU_OPTION);
    CONSTANTS.put("VFIO_DEVICE_BIND_IOMMUFD", (long) Uapi.VFIO_DEVICE_BIND_IOMMUFD);
    CONSTANTS.put("VFIO_DEVICE_ATTACH_IOMMUFD_PT", (long) Uapi.VFIO_DEVICE_ATTACH_IOMMUFD_PT);
    CONSTANTS.put("VFIO_DEVICE_DETACH_IOMMUFD_PT", (long) Uapi.VFIO_DEVICE_DETACH_IOMMUFD_PT);
    CONSTANTS.put("IOMMU_OPTION_RLIMIT_MODE", (long) Uapi.IOMMU_OPTION_RLIMIT_MODE);
    CONSTANTS.put("IOMMU_OPTION_OP_SET", (long) Uapi.IOMMU_OPTION_OP_SET);
    CONSTANTS.put("IOMMU_OPTION_OP_GET", (long) Uapi.IOMMU_OPTION_OP_GET);
    CONSTANTS.put("IOMMU_IOAS_MAP_FIXED_IOVA", (long) Uapi.IOMMU_IOAS_MAP_FIXED_IOVA);
    CONSTANTS.put("IOMMU_IOAS_MAP_WRITEABLE", (long) Uapi.IOMMU_IOAS_MAP_WRITEABLE);
    CONSTANTS.put("IOMMU_IOAS_MAP_READABLE", (long) Uapi.IOMMU_IOAS_MAP_READABLE);
    CONSTANTS.put("__NR_io_uring_setup", Uapi.NR_IO_URING_SETUP);
    CONSTANTS.put("__NR_io_uring_register", Uapi.NR_IO_URING_REGISTER);
    CONSTANTS.put("IORING_REGISTER_BUFFERS", (long) Uapi.IORING_REGISTER_BUFFERS);
    CONSTANTS.put("RLIMIT_MEMLOCK", (long) Uapi.RLIMIT_MEMLOCK);
    CONSTANTS.put("MFD_CLOEXEC", (long) Uapi.MFD_CLOEXEC);
    CONSTANTS.put("PROT_READ", (long) Uapi.PROT_READ);
    CONSTANTS.put("PROT_WRITE", (long) Uapi.PROT_WRITE);
    CONSTANTS.put("MAP_SHARED", (long) Uapi.MAP_SHARED);
    CONSTANTS.put("MAP_PRIVATE", (long) Uapi.MAP_PRIVATE);
    CONSTANTS.put("MAP_ANONYMOUS", (long) Uapi.MAP_ANONYMOUS);
    CONSTANTS.put("MAP_POPULATE", (long) Uapi.MAP_POPULATE);
    CONSTANTS.put("O_RDONLY", (long) Uapi.O_RDONLY);
    CONSTANTS.put("O_RDWR", (long) Uapi.O_RDWR);
    CONSTANTS.put("O_CLOEXEC", (long) Uapi.O_CLOEXEC);
    CONSTANTS.put("F_DUPFD_CLOEXEC", (long) Uapi.F_DUPFD_CLOEXEC);
    CONSTANTS.put("F_GETFD", (long) Uapi.F_GETFD);
    CONSTANTS.put("F_SETFD", (long) Uapi.F_SETFD);
    CONSTANTS.put("FD_CLOEXEC", (long) Uapi.FD_CLOEXEC);
    CONSTANTS.put("AF_UNIX", (long) Uapi.AF_UNIX);
    CONSTANTS.put("SOL_SOCKET", (long) Uapi.SOL_SOCKET);
    CONSTANTS.put("SCM_RIGHTS", (long) Uapi.SCM_RIGHTS);
    CONSTANTS.put("SO_PEERCRED", (long) Uapi.SO_PEERCRED);
    CONSTANTS.put("MSG_NOSIGNAL", (long) Uapi.MSG_NOSIGNAL);
    CONSTANTS.put("MSG_CTRUNC", (long) Uapi.MSG_CTRUNC);
    CONSTANTS.put("MSG_CMSG_CLOEXEC", (long) Uapi.MSG_CMSG_CLOEXEC);
    CONSTANTS.put("CMSG_LEN(sizeof(int))", (long) Uapi.CMSG_LEN_ONE_FD);
    CONSTANTS.put("CMSG_SPACE(sizeof(int))", (long) Uapi.CMSG_SPACE_ONE_FD);
    CONSTANTS.put("SOCK_STREAM", (long) Uapi.SOCK_STREAM);
    CONSTANTS.put("SOCK_CLOEXEC", (long) Uapi.SOCK_CLOEXEC);
    CONSTANTS.put("SIGKILL", (long) Uapi.SIGKILL);
    CONSTANTS.put("SIGTERM", (long) Uapi.SIGTERM);
    CONSTANTS.put("WNOHANG", (long) Uapi.WNOHANG);
    CONSTANTS.put("PR_SET_PDEATHSIG", (long) Uapi.PR_SET_PDEATHSIG);
    CONSTANTS.put("CLOSE_RANGE_CLOEXEC", (long) Uapi.CLOSE_RANGE_CLOEXEC);
    CONSTANTS.put("SIG_SETMASK", (long) Uapi.SIG_SETMASK);
    CONSTANTS.put("POSIX_SPAWN_SETSIGDEF", (long) Uapi.POSIX_SPAWN_SETSIGDEF);
    CONSTANTS.put("POSIX_SPAWN_SETSIGMASK", (long) Uapi.POSIX_SPAWN_SETSIGMASK);
    CONSTANTS.put("POSIX_SPAWN_SETSID", (long) Uapi.POSIX_SPAWN_SETSID);
  }

  /** The facade's own layout: "struct.field offset" and "struct sizeof". */
  static Map<String, Long> facadeLayout() throws Exception {
    Map<String, Long> out = new TreeMap<>();
    Method offset = Structure.class.getDeclaredMethod("fieldOffset", String.class);
    offset.setAccessible(true);
    for (var e : STRUCTS.entrySet()) {
      Structure s = e.getValue().getDeclaredConstructor().newInstance();
      out.put(e.getKey() + " sizeof", (long) s.size());
      if (e.getValue() == Uapi.IoRingOffsets.class) {
        continue; // field names are placeholders; the size and its offsets in io_uring_params are checked
      }
      for (Field f : e.getValue().getFields()) {
        if (!Modifier.isStatic(f.getModifiers())) {
          out.put(e.getKey() + "." + f.getName(), (long) (int) offset.invoke(s, f.getName()));
        }
      }
    }
    out.putAll(CONSTANTS);
    return out;
  }

  static String cProgram(Map<String, Long> expected) {
    StringBuilder c = new StringBuilder();
    c.append("#define _GNU_SOURCE\n#include <stdio.h>\n#include <stddef.h>\n#include <fcntl.h>\n#include <signal.h>\n")
        .append("#include <spawn.h>\n#include <unistd.h>\n#include <sys/mman.h>\n#include <sys/prctl.h>\n")
        .append("#include <sys/resource.h>\n#include <sys/socket.h>\n#include <sys/syscall.h>\n#include <sys/uio.h>\n#include <sys/un.h>\n")
        .append("#include <sys/wait.h>\n#include <linux/close_range.h>\n")
        .append("#include <linux/iommufd.h>\n#include <linux/vfio.h>\n#include <linux/io_uring.h>\n")
        .append("int main(void) {\n");
    for (String key : expected.keySet()) {
      if (key.endsWith(" sizeof")) {
        String struct = key.substring(0, key.indexOf(' '));
        c.append("  printf(\"%s %llu\\n\", \"").append(key).append("\", (unsigned long long) sizeof(struct ")
            .append(struct).append("));\n");
      } else if (key.contains(".")) {
        String struct = key.substring(0, key.indexOf('.'));
        String field = key.substring(key.indexOf('.') + 1);
        c.append("  printf(\"%s %llu\\n\", \"").append(key).append("\", (unsigned long long) offsetof(struct ")
            .append(struct).append(", ").append(field).append("));\n");
      } else {
        c.append("  printf(\"%s %llu\\n\", \"").append(key).append("\", (unsigned long long) (")
            .append(key).append("));\n");
      }
    }
    return c.append("  return 0;\n}\n").toString();
  }

  @Test
  void facadeMatchesTheKernelHeaders(@TempDir Path dir) throws Exception {
    boolean headers = Files.isRegularFile(HEADERS.resolve("linux/iommufd.h"));
    Prerequisites.require(headers, "Linux 6.12 uAPI headers at " + HEADERS + ": run hack/setup.d/40-uapi-headers.sh");
    boolean gcc = new ProcessBuilder("gcc", "--version").start().waitFor() == 0;
    Prerequisites.require(gcc, "gcc (apt-get install gcc libc6-dev)");

    Map<String, Long> expected = facadeLayout();
    Path src = dir.resolve("uapi.c");
    Files.writeString(src, cProgram(expected));
    Path bin = dir.resolve("uapi");
    Process cc =
        new ProcessBuilder("gcc", "-Wall", "-Werror", "-I", HEADERS.toString(), "-o", bin.toString(), src.toString())
            .redirectErrorStream(true)
            .start();
    String ccOut = new String(cc.getInputStream().readAllBytes());
    assertThat(cc.waitFor(60, TimeUnit.SECONDS)).isTrue();
    assertThat(cc.exitValue()).as("gcc: %s", ccOut).isZero();

    Process run = new ProcessBuilder(bin.toString()).start();
    List<String> lines = new String(run.getInputStream().readAllBytes()).lines().toList();
    assertThat(run.waitFor()).isZero();
    Map<String, Long> kernel = new TreeMap<>();
    for (String l : lines) {
      int sp = l.lastIndexOf(' ');
      kernel.put(l.substring(0, sp), Long.parseLong(l.substring(sp + 1)));
    }
    List<String> mismatches = new ArrayList<>();
    expected.forEach(
        (k, v) -> {
          if (!v.equals(kernel.get(k))) {
            mismatches.add(k + ": facade " + v + ", kernel headers " + kernel.get(k));
          }
        });
    assertThat(kernel).hasSameSizeAs(expected);
    assertThat(mismatches).as("facade vs kernel uAPI").isEmpty();
  }
}
