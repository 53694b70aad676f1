package dev.vfiovm.node;

import dev.vfiovm.node.kernel.Iommufd;
import dev.vfiovm.node.kernel.Kernel;
import dev.vfiovm.node.kernel.KernelException;
import dev.vfiovm.node.kernel.Uapi;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Hostile code run as a VM's --vm-command: with the fds and environment the VM process hands on, it tries
 * to escape its budget and prints one "attempt=outcome" line per try (outcome "ok" or the errno name), then
 * holds until SIGTERM. Used by NodeAgentKernelIT here and by the iommufd tier in its guest
 * ({@code --vm-command java -Djna.tmpdir=/tmp -cp vfiovm.jar:test-classes dev.vfiovm.node.CompromisedVm}).
 * Expected: raise-memlock=EPERM; rlimit-mode=EPERM (iommufd); pin-beyond-limit=ENOMEM with per-user accounting,
 * but "ok" with iommufd per-process accounting, which charges each mm and exec gave this process a fresh one.
 */
public final class CompromisedVm {
  private CompromisedVm() {}

  interface Attempt {
    void run();
  }

  static String attempt(Attempt a) {
    try {
      a.run();
      return "ok";
    } catch (KernelException e) {
      return e.errnoName();
    }
  }

  public static void main(String[] args) throws Exception {
    long limit = Long.parseLong(System.getenv(VmFds.ENV_MEMLOCK_BYTES));
    for (int fd : new int[] {VmFds.IOURING, VmFds.MEMFD}) {
      System.out.println("fd" + fd + "=" + Files.readSymbolicLink(Path.of("/proc/self/fd/" + fd)));
    }
    System.out.println("raise-memlock=" + attempt(() -> Kernel.setOwnMemlockLimit(2 * limit, 2 * limit)));
    String iommufd = System.getenv(VmFds.ENV_IOMMUFD);
    if (iommufd != null) {
      Iommufd fd = new Iommufd(Integer.parseInt(iommufd));
      // the VMM's own IOAS (the agent hands over a context with no object); pins start at attach
      int ioas = fd.allocIoas();
      System.out.println(
          "pin-beyond-limit=" + attempt(() -> fd.map(ioas, Kernel.mmap(limit, -1), limit)));
      System.out.println(
          "rlimit-mode=" + attempt(() -> fd.setRlimitMode(Uapi.RLIMIT_MODE_PER_USER)));
    } else {
      System.out.println(
          "pin-beyond-limit="
              + attempt(() -> Kernel.ioUringRegisterBuffer(Kernel.ioUringSetup(1), Kernel.mmap(limit, -1), limit)));
      System.out.println("rlimit-mode=no-iommufd");
    }
    System.out.println("compromised-vm=holding");
    System.out.flush();
    Thread.sleep(Long.MAX_VALUE);
  }
}
