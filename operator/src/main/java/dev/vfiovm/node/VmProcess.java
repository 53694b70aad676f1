package dev.vfiovm.node;

import com.sun.jna.Native;
import dev.vfiovm.api.Accounting;
import dev.vfiovm.api.DmaBackend;
import dev.vfiovm.node.kernel.Kernel;
import dev.vfiovm.node.kernel.KernelException;
import dev.vfiovm.node.kernel.Uapi;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
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
 * Starts, contains and controls one VM process.
 *
 * <p>How it is started, and why: the JVM cannot fork, and a multi-threaded process cannot unshare a user
 * namespace, so the agent posix_spawns (see {@link Kernel#spawn}) a chain of small exec steps that each do
 * one thing, in the same pid, before the sandboxed VMM starts:
 *
 * <ol>
 *   <li>{@code /bin/sh} still as root waits for "go" on the control socket. Meanwhile the agent places it in
 *       the VM's own cgroup ({@link VmCgroup}, where cgroup2 is writable) and sets RLIMIT_MEMLOCK (soft =
 *       hard) on that pid from outside with prlimit64; doing it while the target is still root:root makes it
 *       work even without CAP_SYS_RESOURCE (same-credentials rule), and nothing can pin before the limit is in
 *       place.
 *   <li>util-linux {@code setpriv} drops to the VM's host UID/GID, clears groups, bounding and inheritable
 *       capabilities, sets no_new_privs and a parent-death SIGKILL: no capability is left in the initial user
 *       namespace, and the sandbox does not outlive the agent.
 *   <li>bubblewrap ({@code bwrap}, unprivileged) builds the sandbox of {@link SandboxPlan}: own user
 *       namespace (ns-root mapped to that host UID, uid_map "0 UID 1", so pins are charged to the UID's
 *       user_struct; no capability; no further user namespace), PID, mount, network, IPC, UTS and cgroup
 *       namespaces, only read-only system and VMM paths, and the {@link SeccompPolicy} filter loaded right
 *       before the exec. Its PID namespace's init is bwrap's own small reaper; the VMM is pid 2 there.
 *   <li>QEMU (or a --vm-command), which binds, attaches and maps guest RAM itself (iommufd); on io-uring
 *       first {@code java ... VmProcessMain}, which creates the guest RAM memfd, registers it as an io_uring
 *       buffer (charged to the UID) and execs QEMU on that same memfd.
 * </ol>
 *
 * <p>Teardown kills the sandbox as a whole (SIGKILL to its PID namespace's init, through a pidfd: the kernel
 * then kills every process of the namespace; and cgroup.kill) and waits until none is left.
 */
final class VmProcess {
  /** Root gate; the QEMU variant closes the control socket before the drop, so QEMU never holds it. */
  static final String SHELL_GATE = "read -r go <&3 && [ \"$go\" = go ] && exec \"$@\"";
  static final String SHELL_GATE_CLOSING = "read -r go <&3 && [ \"$go\" = go ] && exec \"$@\" 3<&-";

  private static final Logger LOG = LoggerFactory.getLogger(VmProcess.class);
  static final String BWRAP = "/usr/bin/bwrap";
  /** The host's system directories, bound read-only (or recreated as the symlinks they are). */
  static final List<String> SYSTEM_DIRS = List.of("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32");

  private final int pid;
  private final int control;
  private VmCgroup cgroup;
  private final String sandbox;
  private int initPid = -1;
  private int initPidfd = -1;
  private int vmmPid = -1;

  private VmProcess(int pid, int control, VmCgroup cgroup, String sandbox) {
    this.pid = pid;
    this.control = control;
    this.cgroup = cgroup;
    this.sandbox = sandbox;
  }

  /** The agent's own child: the chain's pid, bwrap's outer (monitor) process once it runs. */
  int pid() {
    return pid;
  }

  /** The VM's cgroup2 directory, or null where there is none. */
  String cgroup() {
    return cgroup == null ? null : cgroup.dir().toString();
  }

  String sandbox() {
    return sandbox;
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
    if (!Files.isExecutable(Path.of(BWRAP))) {
      throw new AgentFailure(
          "NoBubblewrap",
          BWRAP + " not found: the VM process runs inside a bubblewrap sandbox; install bubblewrap >= 0.8"
              + " (Debian: apt-get install bubblewrap) in the node image");
    }
    if (launcher) {
      checkReachableByVmUid();
    }
    int seccompAt = VmFds.FIRST_DEVICE + deviceFds.size();
    SandboxPlan sandboxPlan =
        SandboxPlan.of(new SandboxPlan.Spec(BWRAP, systemDirs(), sandboxPaths(plan, launcher, vmm, isQemu), seccompAt));
    List<String> argv = new ArrayList<>();
    // QEMU on iommufd gets nothing it does not use; a --vm-command keeps the control socket to say READY
    argv.addAll(List.of("/bin/sh", "-c", isQemu && !launcher ? SHELL_GATE_CLOSING : SHELL_GATE, "vfiovm-vm"));
    argv.addAll(
        List.of(
            "setpriv", "--reuid=" + uid, "--regid=" + uid, "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--no-new-privs", "--pdeathsig=SIGKILL", "--"));
    argv.addAll(sandboxPlan.argv());
    if (launcher) {
      argv.addAll(javaCommand());
      argv.add("memory=" + plan.memoryBytes());
      argv.add("--");
    }
    argv.addAll(vmm);
    LOG.info("sandbox: {}", String.join(" ", sandboxPlan.argv()));
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
    int seccomp = -1;
    VmCgroup cgroup = null;
    int pid;
    try {
      try {
        seccomp = SeccompPolicy.exportBpf();
      } catch (KernelException e) {
        throw new AgentFailure(
            "NoSeccomp", "cannot build the VM process's seccomp filter with libseccomp: " + e.getMessage()
                + " (install libseccomp2)");
      }
      fds.add(seccomp); // read (and closed) by bwrap: the VM process never holds it
      cgroup = VmCgroup.create(plan.vm(), Kernel.getpid());
      Kernel.becomeChildSubreaper();
      pid = Kernel.spawn("/bin/sh", argv, env, fds, stderr);
    } catch (RuntimeException e) {
      Kernel.closeQuietly(pair[0]);
      if (cgroup != null) {
        cgroup.killAndRemove(1000);
      }
      throw e;
    } finally {
      Kernel.closeQuietly(pair[1]);
      Kernel.closeQuietly(placeholder);
      Kernel.closeQuietly(seccomp);
    }
    // still at its root gate: everything the VM ever starts is in this cgroup
    if (cgroup != null && !cgroup.add(pid)) {
      cgroup = null;
    }
    return new VmProcess(pid, pair[0], cgroup, sandboxPlan.summary(true));
  }

  /** The host's /usr, /bin, ... as they are (directories, or merged-/usr symlinks). */
  static List<SandboxPlan.HostEntry> systemDirs() {
    List<SandboxPlan.HostEntry> out = new ArrayList<>();
    for (String d : SYSTEM_DIRS) {
      Path p = Path.of(d);
      try {
        if (Files.isSymbolicLink(p)) {
          out.add(SandboxPlan.HostEntry.symlink(d, Files.readSymbolicLink(p).toString()));
        } else if (Files.isDirectory(p)) {
          out.add(SandboxPlan.HostEntry.dir(d));
        }
      } catch (IOException e) {
        throw new AgentFailure("SandboxSetup", "cannot inspect " + d + ": " + e);
      }
    }
    return out;
  }

  /**
   * The real paths the VM process needs besides the system directories: QEMU's install root (the directory
   * above its usr/bin, or its own directory) and data directories, the boot files, the launcher's java home
   * and class path, a --vm-command's own directory, and the CLI's --vm-ro-bind paths.
   */
  static List<String> sandboxPaths(NodeAgentPlan plan, boolean launcher, List<String> vmm, boolean isQemu) {
    List<String> out = new ArrayList<>();
    if (launcher) {
      Path javaHome = Path.of(System.getProperty("java.home"));
      out.add(real(javaHome));
      out.addAll(javaConfTargets(javaHome));
      for (String entry : classPath().split(File.pathSeparator)) {
        out.add(real(Path.of(entry)));
      }
    }
    if (isQemu) {
      NodeAgentPlan.Vmm v = plan.vmm();
      Path qemu = resolveOnPath(vmm.get(0));
      if (qemu != null) {
        Path bin = qemu.getParent();
        Path usr = bin.getParent();
        if (bin.getFileName().toString().equals("bin") && usr != null && usr.getFileName() != null
            && usr.getFileName().toString().equals("usr") && usr.getParent() != null && usr.getParent().getParent() != null) {
          out.add(usr.getParent().toString());
        } else {
          out.add(bin.toString());
        }
      }
      for (String d : v.qemuData()) {
        if (Files.exists(Path.of(d))) {
          out.add(real(Path.of(d)));
        }
      }
      QemuCommandLine.Boot b = v.boot();
      for (String f : new String[] {b.kernel(), b.initrd(), b.disk()}) {
        if (f != null) {
          out.add(real(Path.of(f)));
        }
      }
    } else {
      Path cmd = resolveOnPath(vmm.get(0));
      if (cmd != null && vmm.get(0).contains("/")) {
        out.add(cmd.getParent().toString());
      }
    }
    for (String extra : plan.vmReadOnly()) {
      out.add(real(Path.of(extra)));
    }
    return out;
  }

  /**
   * Where a distribution's java home links its configuration to (Debian: conf/* -> /etc/java-17-openjdk/):
   * the JVM cannot start without java.security. The /etc directory holding them, not /etc.
   */
  static List<String> javaConfTargets(Path javaHome) {
    List<String> out = new ArrayList<>();
    Path conf = javaHome.resolve("conf");
    if (!Files.isDirectory(conf)) {
      return out;
    }
    try (var walk = Files.walk(conf, 4)) {
      for (Path p : (Iterable<Path>) walk::iterator) {
        if (Files.isSymbolicLink(p) && Files.exists(p)) {
          Path target = p.toRealPath();
          Path holder = target.getParent();
          if (target.startsWith("/etc") && target.getNameCount() > 2) {
            holder = Path.of("/etc", target.getName(1).toString());
          }
          if (!out.contains(holder.toString())) {
            out.add(holder.toString());
          }
        }
      }
    } catch (IOException e) {
      throw new AgentFailure("VmCannotReadAgent", "cannot inspect " + conf + ": " + e);
    }
    return out;
  }

  private static String real(Path p) {
    try {
      return p.toRealPath().toString();
    } catch (IOException e) {
      throw new AgentFailure("VmCannotRead", "the VM process needs " + p + ", which does not exist: " + e.getMessage());
    }
  }

  /** A command's real path (through PATH for a bare name), or null if not found. */
  static Path resolveOnPath(String cmd) {
    try {
      if (cmd.contains("/")) {
        return Path.of(cmd).toRealPath();
      }
      for (String dir : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".split(":")) {
        Path p = Path.of(dir, cmd);
        if (Files.isExecutable(p)) {
          return p.toRealPath();
        }
      }
    } catch (IOException e) {
      return null;
    }
    return null;
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

  /**
   * The VMM's host pid: pid 2 of the sandbox's PID namespace (its init is bwrap's reaper, the child of the
   * agent's child). Found once the VMM runs (it said MAPPED/READY or QMP answered); -1 if it is gone.
   */
  int vmmPid() {
    if (vmmPid > 0) {
      return vmmPid;
    }
    discoverInit();
    if (initPid > 0) {
      for (int c : children(initPid)) {
        if (nsPid(c).endsWith(" 2")) {
          vmmPid = c;
          break;
        }
      }
    }
    return vmmPid;
  }

  private void discoverInit() {
    if (initPid > 0) {
      return;
    }
    for (int c : children(pid)) {
      // the sandbox's init: pid 1 of a PID namespace of its own
      if (nsPid(c).endsWith(" 1")) {
        int fd = Kernel.pidfdOpen(c);
        // still our grandchild after the pidfd was taken: the pidfd is of that very process
        if (fd >= 0 && children(pid).contains(c)) {
          initPid = c;
          initPidfd = fd;
          LOG.info("sandbox of VM process {}: PID namespace init {}", pid, c);
        } else {
          Kernel.closeQuietly(fd);
        }
        return;
      }
    }
  }

  /**
   * The children of a process: /proc/PID/task/PID/children where the kernel has it (CONFIG_PROC_CHILDREN),
   * else every process whose PPid is pid (a /proc scan; the iommufd tier's guest kernel has no children file).
   */
  static List<Integer> children(int pid) {
    Path file = Path.of("/proc/" + pid + "/task/" + pid + "/children");
    List<Integer> out = new ArrayList<>();
    if (Files.exists(file)) {
      try {
        String text = Files.readString(file).trim();
        if (!text.isEmpty()) {
          for (String w : text.split("\\s+")) {
            out.add(Integer.parseInt(w));
          }
        }
      } catch (IOException e) {
        // gone
      }
      return out;
    }
    return scanChildren(pid);
  }

  /** Every process whose PPid is pid, from a /proc scan. */
  static List<Integer> scanChildren(int pid) {
    List<Integer> out = new ArrayList<>();
    String parent = Integer.toString(pid);
    try (var procs = Files.list(Path.of("/proc"))) {
      for (Path p : (Iterable<Path>) procs::iterator) {
        String name = p.getFileName().toString();
        if (!name.chars().allMatch(Character::isDigit)) {
          continue;
        }
        try {
          for (String l : Files.readAllLines(p.resolve("status"))) {
            if (l.startsWith("PPid:")) {
              if (l.substring(5).trim().equals(parent)) {
                out.add(Integer.parseInt(name));
              }
              break;
            }
          }
        } catch (IOException gone) {
          // exited while scanning
        }
      }
    } catch (IOException e) {
      return out;
    }
    return out;
  }

  /** The NSpid line's numbers ("1234 1": host pid 1234, pid 1 in its own namespace), or "". */
  static String nsPid(int pid) {
    try {
      for (String l : Files.readAllLines(Path.of("/proc/" + pid + "/status"))) {
        if (l.startsWith("NSpid:")) {
          return l.substring(6).trim().replaceAll("\\s+", " ");
        }
      }
    } catch (IOException e) {
      return "";
    }
    return "";
  }

  /**
   * The exited init is a zombie until its parent reaps it: the agent itself (child subreaper: the init was
   * reparented to it when bwrap's monitor exited), else whoever it went to (waited for, bounded).
   */
  private boolean reapInit(long timeoutMillis) {
    Path status = Path.of("/proc/" + initPid + "/status");
    long deadline = System.nanoTime() + timeoutMillis * 1_000_000L;
    while (true) {
      String ppid = null;
      try {
        for (String l : Files.readAllLines(status)) {
          if (l.startsWith("PPid:")) {
            ppid = l.substring(5).trim();
          }
        }
      } catch (IOException e) {
        return true; // reaped
      }
      if (Integer.toString(Kernel.getpid()).equals(ppid)) {
        try {
          Kernel.waitpid(initPid, false);
        } catch (KernelException e) {
          // ECHILD: reaped meanwhile
        }
        return true;
      }
      if (System.nanoTime() > deadline) {
        return false;
      }
      try {
        Thread.sleep(5);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return false;
      }
    }
  }

  /** SIGTERM (or another signal) to the VMM itself, the sandbox's pid 2; false if it is gone. */
  boolean signalVmm(int signal) {
    int vmm = vmmPid();
    return vmm > 0 && Kernel.kill(vmm, signal);
  }

  /**
   * SIGKILL to the whole sandbox: its PID namespace's init (through its pidfd: the kernel then kills every
   * process of the namespace, whatever sessions it made), the cgroup (cgroup.kill), and the agent's own
   * child unless already reaped.
   */
  void killSandbox(boolean childReaped) {
    discoverInit();
    if (initPidfd >= 0) {
      Kernel.pidfdSignal(initPidfd, Uapi.SIGKILL);
    }
    if (cgroup != null) {
      cgroup.kill();
    }
    if (!childReaped) {
      Kernel.kill(pid, Uapi.SIGKILL);
    }
  }

  /**
   * Teardown once the agent's child is reaped: kills what may be left (a setsid child of the VMM keeps the
   * namespace's init alive), waits until the init is gone (the kernel reaped every process of its PID
   * namespace) and the cgroup is empty, removes the cgroup. True when no process of the VM remains.
   */
  boolean teardown(long timeoutMillis) {
    killSandbox(true);
    boolean gone = true;
    if (initPidfd >= 0) {
      gone = Kernel.awaitPidfd(initPidfd, timeoutMillis) && reapInit(timeoutMillis);
      Kernel.closeQuietly(initPidfd);
      initPidfd = -1;
    }
    if (cgroup != null) {
      gone &= cgroup.killAndRemove(timeoutMillis);
    }
    if (!gone) {
      LOG.warn("VM process {}: sandbox not empty after {} ms", pid, timeoutMillis);
    }
    return gone;
  }
}
