package dev.vfiovm.node;

import dev.vfiovm.node.kernel.Kernel;
import dev.vfiovm.node.kernel.KernelException;
import dev.vfiovm.node.kernel.Uapi;
import com.sun.jna.Pointer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The VM-side launcher of the io-uring backend: runs as the VM's host UID, as root of its own user namespace,
 * with the RLIMIT_MEMLOCK the agent set. Creates the guest RAM memfd and registers it as an io_uring buffer,
 * so the kernel charges the pins to this UID (as iommufd's per-user mode would); reports on the control
 * socket; then execs the VMM (QEMU on that same memfd, see {@link QemuCommandLine}) with the fds in place,
 * or holds the pins when given no command.
 *
 * <p>A separate small entry point (no picocli, logging or Kubernetes classes) to keep JVM start-up short;
 * the agent starts it as {@code java -cp vfiovm.jar dev.vfiovm.node.VmProcessMain KEY=VALUE... -- CMD...}.
 */
public final class VmProcessMain {
  private VmProcessMain() {}

  public static void main(String[] args) {
    Map<String, String> opts = new HashMap<>();
    List<String> command = new ArrayList<>();
    boolean inCommand = false;
    for (String a : args) {
      if (inCommand) {
        command.add(a);
      } else if (a.equals("--")) {
        inCommand = true;
      } else {
        int eq = a.indexOf('=');
        opts.put(a.substring(0, eq), a.substring(eq + 1));
      }
    }
    // die with the sandbox's init (bwrap's reaper, pid 1 of the VM's PID namespace), which dies with the
    // agent's child, which dies with the agent (parent-death signals all the way up): no pins left behind
    Kernel.dieWithParent(Uapi.SIGKILL);
    if (Kernel.getppid() != 1) {
      System.exit(3);
    }
    int control = VmFds.CONTROL;
    long memory = Long.parseLong(opts.get("memory"));
    int memfd;
    int ringFd;
    String step = "memfd_create";
    try {
      memfd = Kernel.memfdCreate("vfiovm-guest", memory);
      step = "mmap";
      Pointer guest = Kernel.mmap(memory, memfd);
      step = "io_uring_setup";
      ringFd = Kernel.ioUringSetup(1);
      step = "IORING_REGISTER_BUFFERS";
      Kernel.ioUringRegisterBuffer(ringFd, guest, memory);
    } catch (KernelException e) {
      Kernel.writeFully(control, VmFds.ERROR + " " + e.errnoName() + " " + e.call() + "\n");
      System.exit(1);
      return;
    }
    Kernel.writeFully(control, VmFds.MAPPED + " " + memory + " 0\n");
    if (command.isEmpty()) {
      // hold the pins until the agent stops us (SIGTERM) or goes away (EOF on the control socket)
      while (Kernel.read(control, 64).length > 0) {
        // nothing else is sent
      }
      System.exit(0);
      return;
    }
    // place the fds as documented in VmFds; the control socket is closed by the exec, so the agent reads EOF
    // when exec succeeded and an ERROR line when it did not
    int controlCopy = Kernel.dupAbove(control, 100);
    Kernel.dup2(ringFd, VmFds.IOURING);
    Kernel.dup2(memfd, VmFds.MEMFD);
    Kernel.cloexecRange(VmFds.CONTROL, VmFds.CONTROL);
    Kernel.cloexecFrom(VmFds.FIRST_DEVICE);
    Map<String, String> env = new TreeMap<>();
    env.put("PATH", System.getenv().getOrDefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"));
    System.getenv().forEach((k, v) -> {
      if (k.startsWith("VFIOVM_")) {
        env.put(k, v);
      }
    });
    env.remove(VmFds.ENV_CONTROL_FD);
    env.put(VmFds.ENV_MEMFD, Integer.toString(VmFds.MEMFD));
    env.put(VmFds.ENV_IOURING_FD, Integer.toString(VmFds.IOURING));
    List<String> envp = new ArrayList<>();
    env.forEach((k, v) -> envp.add(k + "=" + v));
    try {
      Kernel.exec(command, envp);
    } catch (KernelException e) {
      Kernel.writeFully(controlCopy, VmFds.ERROR + " " + e.errnoName() + " " + e.call() + "\n");
      System.exit(127);
    }
  }
}
