package dev.vfiovm.node;

import com.sun.jna.Native;
import dev.vfiovm.api.Accounting;
import dev.vfiovm.api.DmaBackend;
import dev.vfiovm.node.kernel.Kernel;
import dev.vfiovm.node.kernel.Uapi;
import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.attribute.PosixFilePermission;
import java.util.Set;
import java.net.URISyntaxException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Collectors;

/**
 * Starts and controls one VM process.
 *
 * <p>How it is started, and why: the JVM cannot fork, and a multi-threaded process cannot unshare a user
 * namespace, so the agent posix_spawns (see {@link Kernel#spawn}) a chain of small exec steps that each do
 * one thing before the VM-side JVM ({@link VmProcessMain}) starts in the same pid:
 *
 * <ol>
 *   <li>{@code /bin/sh} still as root waits for "go" on the control socket. Meanwhile the agent sets
 *       RLIMIT_MEMLOCK (soft = hard) on that pid from outside with prlimit64; doing it while the target is
 *       still root:root makes it work even without CAP_SYS_RESOURCE (same-credentials rule), and nothing can
 *       pin before the limit is in place.
 *   <li>util-linux {@code setpriv} drops to the VM's host UID/GID, clears groups, bounding and inheritable
 *       capabilities, sets no_new_privs: no capability is left in the initial user namespace.
 *   <li>util-linux {@code unshare --user --map-root-user} creates the VM's user namespace, with ns-root mapped
 *       to that host UID (uid_map "0 UID 1"), so pins are charged to the UID's user_struct.
 *   <li>QEMU (or a --vm-command), which binds, attaches and maps guest RAM itself (iommufd); on io-uring
 *       first {@code java ... VmProcessMain}, which creates the guest RAM memfd, registers it as an io_uring
 *       buffer (charged to the UID) and execs QEMU on that same memfd.
 * </ol>
 */
final class VmProcess {
  /** Root gate; the QEMU variant closes the control socket before the drop, so QEMU never holds it. */
  static final String SHELL_GATE = "read -r go <&3 && [ \"$go\" = go ] && exec \"$@\"";
  static final String SHELL_GATE_CLOSING = "read -r go <&3 && [ \"$go\" = go ] && exec \"$@\" 3<&-";

  private final int pid;
  private final int control;

  private VmProcess(int pid, int control) {
    this.pid = pid;
    this.control = control;
  }

  int pid() {
    return pid;
  }

  /** The agent's ends of the VM process's sockets; -1 where the VM has none. */
  record Channels(int qmp, int console, int stderr) {}

  /**
   * Spawns the chain; the VM process then waits for {@link #limitAndGo}. {@code vmm} is the program the VM
   * process finally is (QEMU's command line, or a --vm-command); on io-uring the VM-side launcher
   * ({@link VmProcessMain}) pins guest RAM first and execs it.
   *
   * @param iommufd the fresh iommufd (iommufd backend), else null
   * @param qmp the VM's end of the QMP socket (QEMU), else -1
   * @param console the VM's end of the console socket (QEMU with a serial console), else -1
   * @param stderr where the VM process's stderr goes, else -1 (inherited)
   */
  static VmProcess spawn(
      NodeAgentPlan plan,
      DmaBackend backend,
      Accounting accounting,
      Integer iommufd,
      List<Integer> deviceFds,
      List<String> deviceAddresses,
      List<String> vmm,
      boolean isQemu,
      int qmp,
      int console,
      int stderr) {
    String uid = Long.toString(plan.hostUid());
    boolean launcher = backend == DmaBackend.IoUring;
    List<String> argv = new ArrayList<>();
    // QEMU on iommufd gets nothing it does not use; a --vm-command keeps the control socket to say READY
    argv.addAll(List.of("/bin/sh", "-c", isQemu && !launcher ? SHELL_GATE_CLOSING : SHELL_GATE, "vfiovm-vm"));
    argv.addAll(
        List.of(
            "setpriv", "--reuid=" + uid, "--regid=" + uid, "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--no-new-privs", "--"));
    argv.addAll(List.of("unshare", "--user", "--map-root-user", "--"));
    if (launcher) {
      checkReachableByVmUid();
      argv.addAll(javaCommand());
      argv.add("agent-pid=" + Kernel.getpid());
      argv.add("memory=" + plan.memoryBytes());
      argv.add("--");
    }
    argv.addAll(vmm);
    List<String> env = new ArrayList<>();
    env.add("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    env.add("HOME=/");
    env.add(VmFds.ENV_VM + "=" + plan.vm());
    env.add(VmFds.ENV_MEMORY_BYTES + "=" + plan.memoryBytes());
    env.add(VmFds.ENV_MEMLOCK_BYTES + "=" + plan.memlockBytes());
    env.add(VmFds.ENV_DMA_BACKEND + "=" + backend.name());
    env.add(VmFds.ENV_ACCOUNTING + "=" + accounting.name());
    env.add(VmFds.ENV_CONTROL_FD + "=" + VmFds.CONTROL);
    if (backend == DmaBackend.Iommufd) {
      env.add(VmFds.ENV_IOMMUFD + "=" + VmFds.IOMMUFD);
      List<String> fdNumbers = new ArrayList<>();
      for (int i = 0; i < deviceFds.size(); i++) {
        fdNumbers.add(Integer.toString(VmFds.FIRST_DEVICE + i));
      }
      env.add(VmFds.ENV_DEVICE_FDS + "=" + String.join(",", fdNumbers));
      env.add(VmFds.ENV_DEVICES + "=" + String.join(",", deviceAddresses));
    }
    int[] pair = Kernel.socketPair();
    // /dev/null holds every slot the VM does not use, so the numbers stay fixed and a VM-side JVM cannot take
    // them for its own files (the launcher later dup2s its io_uring and memfd there)
    int placeholder = Kernel.open("/dev/null", Uapi.O_RDONLY);
    List<Integer> fds = new ArrayList<>();
    fds.add(pair[1]); // 3: control
    fds.add(iommufd != null ? iommufd : placeholder); // 4
    fds.add(qmp >= 0 ? qmp : placeholder); // 5
    fds.add(console >= 0 ? console : placeholder); // 6
    fds.add(placeholder); // 7: the launcher's memfd
    fds.addAll(deviceFds); // 8...
    int pid;
    try {
      pid = Kernel.spawn("/bin/sh", argv, env, fds, stderr);
    } catch (RuntimeException e) {
      Kernel.closeQuietly(pair[0]);
      throw e;
    } finally {
      Kernel.closeQuietly(pair[1]);
      Kernel.closeQuietly(placeholder);
    }
    return new VmProcess(pid, pair[0]);
  }

  /** The VM-side JVM: light flags (it only maps memory and execs), the same java and classes as the agent. */
  static List<String> javaCommand() {
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    return List.of(
        java,
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-XX:-UsePerfData",
        "-Xshare:auto",
        "-Xmx32m",
        "-Djna.tmpdir=/tmp",
        "-cp",
        classPath(),
        VmProcessMain.class.getName());
  }

  /**
   * The VM-side JVM runs as the VM's UID with no groups: the java binary and every class path entry must be
   * reachable by "others". Checked up front so a node with a private jar fails with a message, not a silent
   * exit of the VM process.
   */
  static void checkReachableByVmUid() {
    List<Path> needed = new ArrayList<>();
    needed.add(Path.of(System.getProperty("java.home"), "bin", "java"));
    for (String entry : classPath().split(File.pathSeparator)) {
      needed.add(Path.of(entry));
    }
    for (Path p : needed) {
      String problem = unreachableByOthers(p.toAbsolutePath());
      if (problem != null) {
        throw new AgentFailure(
            "VmCannotReadAgent",
            "the VM process (its own host UID, no groups) cannot use " + p + ": " + problem
                + "; install the jar and java world-readable (e.g. chmod o+rx on the directories, o+r on the jar)");
      }
    }
  }

  static String unreachableByOthers(Path p) {
    try {
      for (Path dir = p.getParent(); dir != null; dir = dir.getParent()) {
        if (!Files.getPosixFilePermissions(dir).contains(PosixFilePermission.OTHERS_EXECUTE)) {
          return "directory " + dir + " is not searchable by others";
        }
      }
      Set<PosixFilePermission> perms = Files.getPosixFilePermissions(p);
      if (!perms.contains(PosixFilePermission.OTHERS_READ)) {
        return "it is not readable by others";
      }
      if (Files.isDirectory(p) && !perms.contains(PosixFilePermission.OTHERS_EXECUTE)) {
        return "it is not searchable by others";
      }
      return null;
    } catch (IOException | UnsupportedOperationException e) {
      return e.toString();
    }
  }

  static String classPath() {
    return List.of(VmProcessMain.class, Native.class).stream()
        .map(VmProcess::location)
        .distinct()
        .collect(Collectors.joining(File.pathSeparator));
  }

  private static String location(Class<?> c) {
    try {
      return Path.of(c.getProtectionDomain().getCodeSource().getLocation().toURI()).toString();
    } catch (URISyntaxException e) {
      throw new IllegalStateException(e);
    }
  }

  /** Sets RLIMIT_MEMLOCK soft = hard from outside, checks it took, then lets the VM process go on. */
  void limitAndGo(long memlockBytes) {
    Kernel.setMemlockLimit(pid, memlockBytes);
    long[] now = Kernel.memlockLimit(pid);
    if (now[0] != memlockBytes || now[1] != memlockBytes) {
      throw new IllegalStateException(
          "RLIMIT_MEMLOCK of VM process " + pid + " is " + now[0] + "/" + now[1] + ", not " + memlockBytes);
    }
    Kernel.writeFully(control, VmFds.GO + "\n");
  }

  /** Next control line from the VM process, or null when it closed the socket (exec'd or exited). */
  String readLine() {
    return Kernel.readLine(control);
  }

  void closeControl() {
    Kernel.closeQuietly(control);
  }

  /** Signals the VM's process group (the VM and what it started). */
  boolean signal(int signal) {
    return Kernel.kill(-pid, signal) || Kernel.kill(pid, signal);
  }
}
