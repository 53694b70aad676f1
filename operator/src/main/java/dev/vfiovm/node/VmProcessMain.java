package dev.vfiovm.node;

import dev.vfiovm.node.kernel.Iommufd;
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
 * The VM side: runs as the VM's host UID, as root of its own user namespace, with the RLIMIT_MEMLOCK the
 * agent set. Creates the guest memory and pins it itself, so the kernel charges the pins to this process
 * and its UID; reports on the control socket; then holds, or execs --vm-command with the fds in place.
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
    int agentPid = Integer.parseInt(opts.get("agent-pid"));
    // die with the agent, so an agent killed outright does not leave pins behind
    Kernel.dieWithParent(Uapi.SIGKILL);
    if (Kernel.getppid() != agentPid) {
      System.exit(3);
    }
    int control = VmFds.CONTROL;
    String backend = opts.get("backend");
    long memory = Long.parseLong(opts.get("memory"));
    int devices = Integer.parseInt(opts.getOrDefault("devices", "0"));
    int memfd;
    int ringFd = -1;
    long iova = 0;
    String step = "memfd_create";
    try {
      memfd = Kernel.memfdCreate("vfiovm-guest", memory);
      step = "mmap";
      Pointer guest = Kernel.mmap(memory, memfd);
      if (backend.equals("Iommufd")) {
        step = "IOMMU_IOAS_MAP";
        iova = new Iommufd(VmFds.IOMMUFD).map(Integer.parseInt(opts.get("ioas")), guest, memory);
      } else {
        step = "io_uring_setup";
        ringFd = Kernel.ioUringSetup(1);
        step = "IORING_REGISTER_BUFFERS";
        Kernel.ioUringRegisterBuffer(ringFd, guest, memory);
      }
    } catch (KernelException e) {
      Kernel.writeFully(control, VmFds.ERROR + " " + e.errnoName() + " " + e.call() + "\n");
      System.exit(1);
      return;
    }
    Kernel.writeFully(control, VmFds.MAPPED + " " + memory + " " + iova + "\n");
    if (command.isEmpty()) {
      // hold the pins until the agent stops us (SIGTERM) or goes away (EOF on the control socket)
      while (Kernel.read(control, 64).length > 0) {
        // nothing else is sent
      }
      System.exit(0);
      return;
    }
    // place the fds as documented in VmFds; the control socket stays open close-on-exec, so the agent
    // reads EOF when exec succeeded and an ERROR line when it did not
    int controlCopy = Kernel.dupAbove(control, 100);
    Kernel.dup2(memfd, VmFds.MEMFD);
    if (ringFd >= 0) {
      Kernel.dup2(ringFd, VmFds.IOURING);
    }
    Kernel.cloexecFrom(VmFds.FIRST_DEVICE + devices);
    Map<String, String> env = new TreeMap<>();
    env.put("PATH", System.getenv().getOrDefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"));
    System.getenv().forEach((k, v) -> {
      if (k.startsWith("VFIOVM_")) {
        env.put(k, v);
      }
    });
    env.put(VmFds.ENV_MEMFD, Integer.toString(VmFds.MEMFD));
    if (backend.equals("Iommufd")) {
      env.put(VmFds.ENV_IOMMUFD, Integer.toString(VmFds.IOMMUFD));
      env.put(VmFds.ENV_IOVA, Long.toString(iova));
    } else {
      env.put(VmFds.ENV_IOURING_FD, Integer.toString(VmFds.IOURING));
    }
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
