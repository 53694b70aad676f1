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
 *   <li>{@code java ... VmProcessMain} maps the guest memory (charged to itself), then holds or execs
 *       --vm-command.
 * </ol>
 */
final class VmProcess {
  static final String SHELL_GATE = "read -r go <&3 && [ \"$go\" = go ] && exec \"$@\"";

  private final int pid;
  private final int control;

  private VmProcess(int pid, int control) {
    this.pid = pid;
    this.control = control;
  }

  int pid() {
    return pid;
  }

  /** Spawns the chain; the VM process then waits for {@link #go}. passFds land at 4, 5, ... */
  static VmProcess spawn(
      NodeAgentPlan plan,
      DmaBackend backend,
      Accounting accounting,
      Integer iommufd,
      int ioasId,
      List<Integer> deviceFds,
      List<String> deviceAddresses) {
    checkReachableByVmUid();
    String uid = Long.toString(plan.hostUid());
    List<String> argv = new ArrayList<>();
    argv.addAll(List.of("/bin/sh", "-c", SHELL_GATE, "vfiovm-vm"));
    argv.addAll(
        List.of(
            "setpriv", "--reuid=" + uid, "--regid=" + uid, "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--no-new-privs", "--"));
    argv.addAll(List.of("unshare", "--user", "--map-root-user", "--"));
    argv.addAll(javaCommand());
    argv.add("agent-pid=" + Kernel.getpid());
    argv.add("backend=" + backend.name());
    argv.add("memory=" + plan.memoryBytes());
    argv.add("ioas=" + ioasId);
    argv.add("devices=" + deviceFds.size());
    if (!plan.vmCommand().isEmpty()) {
      argv.add("--");
      argv.addAll(plan.vmCommand());
    }
    List<String> env = new ArrayList<>();
    env.add("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    env.add("HOME=/");
    env.add(VmFds.ENV_VM + "=" + plan.vm());
    env.add(VmFds.ENV_MEMORY_BYTES + "=" + plan.memoryBytes());
    env.add(VmFds.ENV_MEMLOCK_BYTES + "=" + plan.memlockBytes());
    env.add(VmFds.ENV_DMA_BACKEND + "=" + backend.name());
    env.add(VmFds.ENV_ACCOUNTING + "=" + accounting.name());
    if (backend == DmaBackend.Iommufd) {
      env.add(VmFds.ENV_IOAS_ID + "=" + ioasId);
      List<String> fdNumbers = new ArrayList<>();
      for (int i = 0; i < deviceFds.size(); i++) {
        fdNumbers.add(Integer.toString(VmFds.FIRST_DEVICE + i));
      }
      env.add(VmFds.ENV_DEVICE_FDS + "=" + String.join(",", fdNumbers));
      env.add(VmFds.ENV_DEVICES + "=" + String.join(",", deviceAddresses));
    }
    int[] pair = Kernel.socketPair();
    // without an iommufd, /dev/null holds fd 4 so the VM-side JVM cannot take it for its own files
    // (the VM process later puts its io_uring there with dup2, which would close such a file under the JVM)
    int placeholder = iommufd == null ? Kernel.open("/dev/null", Uapi.O_RDONLY) : -1;
    List<Integer> fds = new ArrayList<>();
    fds.add(pair[1]); // 3: control
    fds.add(iommufd != null ? iommufd : placeholder); // 4
    fds.addAll(deviceFds); // 5...
    int pid;
    try {
      pid = Kernel.spawn("/bin/sh", argv, env, fds);
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
