package dev.vfiovm.node;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The VM process's sandbox as bubblewrap arguments: which namespaces, which flags, which host paths are
 * visible (read-only) and nothing else. Pure: the host facts (which of /bin, /lib, ... are symlinks, the real
 * paths the VMM needs) come in as data, the caller ({@link VmProcess}) only runs the result.
 *
 * <p>Inside: own user namespace (root of it mapped to the VM's host UID, no capability at all, and it cannot
 * create further user namespaces: {@code --disable-userns}), own PID namespace (it sees and signals only its
 * own processes; when its init dies the kernel kills every one of them), own network (loopback only), IPC,
 * UTS and cgroup namespaces, its own session (no TIOCSTI into the agent's terminal), a fresh /proc of its PID
 * namespace, a minimal /dev (null, zero, full, random, urandom, tty, pts, shm: no device node of the host), a
 * private tmpfs /tmp, the system directories read-only, and exactly the extra paths it needs read-only.
 * The fds it inherits (docs/node-agent.md's fd contract) pass through bwrap unchanged.
 */
public final class SandboxPlan {
  /** A top-level system directory of the host and, when it is a symlink (merged /usr), its target. */
  public record HostEntry(String path, String symlinkTarget) {
    public static HostEntry dir(String path) {
      return new HostEntry(path, null);
    }

    public static HostEntry symlink(String path, String target) {
      return new HostEntry(path, target);
    }
  }

  /**
   * @param bwrap the bubblewrap binary
   * @param system /usr and the top-level /bin, /sbin, /lib* entries as the host has them (absent: left out)
   * @param readOnly real (symlink-free) absolute paths the VM process needs besides the system directories:
   *     QEMU's install root and data directories, its boot files, the launcher's java home and jar, a
   *     --vm-command's own directory
   * @param seccompFd the fd (as the VM process inherits it) holding the BPF filter, or -1 for none
   */
  public record Spec(String bwrap, List<HostEntry> system, List<String> readOnly, int seccompFd) {
    public Spec {
      system = List.copyOf(system);
      readOnly = List.copyOf(readOnly);
    }
  }

  /** Namespaces and process flags, always all of them. */
  static final List<String> ISOLATION =
      List.of(
          "--unshare-user", "--uid", "0", "--gid", "0", "--disable-userns", "--unshare-pid", "--unshare-net",
          "--unshare-ipc", "--unshare-uts", "--hostname", "vfiovm-vm", "--unshare-cgroup-try",
          "--die-with-parent", "--new-session", "--cap-drop", "ALL");

  /**
   * Host paths that never enter the sandbox, nor anything below or above them: credentials (a pod's
   * ServiceAccount token, the kubelet's pod volumes), the host's own /proc, /sys and device nodes (the VM gets
   * its devices as fds).
   */
  static final List<String> SECRET =
      List.of("/proc", "/sys", "/dev", "/run/secrets", "/var/run/secrets", "/var/lib/kubelet");

  /** Host directories never bound whole (a path below them is fine: e.g. /tmp/x/boot, /etc/java-17). */
  static final List<String> NOT_WHOLE = List.of("/", "/etc", "/root", "/home", "/tmp", "/run", "/var", "/var/run");

  private final List<String> argv;
  private final List<String> visible;

  private SandboxPlan(List<String> argv, List<String> visible) {
    this.argv = List.copyOf(argv);
    this.visible = List.copyOf(visible);
  }

  public static SandboxPlan of(Spec spec) {
    List<String> a = new ArrayList<>();
    List<String> visible = new ArrayList<>();
    a.add(spec.bwrap());
    a.addAll(ISOLATION);
    a.addAll(List.of("--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"));
    List<String> bound = new ArrayList<>();
    for (HostEntry e : spec.system()) {
      String p = normalize(e.path());
      if (e.symlinkTarget() != null) {
        a.addAll(List.of("--symlink", e.symlinkTarget(), p));
      } else {
        a.addAll(List.of("--ro-bind", p, p));
        bound.add(p);
        visible.add(p);
      }
    }
    List<String> extra = new ArrayList<>();
    for (String r : spec.readOnly()) {
      String p = normalize(r);
      if (!Path.of(p).isAbsolute()) {
        throw new IllegalArgumentException("sandbox path " + r + " is not absolute");
      }
      for (String n : SECRET) {
        if (p.equals(n) || isUnder(n, p) || isUnder(p, n)) {
          throw refused(r, n);
        }
      }
      for (String n : NOT_WHOLE) {
        if (p.equals(n) || isUnder(n, p)) {
          throw refused(r, n);
        }
      }
      if (!extra.contains(p)) {
        extra.add(p);
      }
    }
    // parents first, so a path under an already bound one is simply not bound again
    extra.sort(null);
    for (String p : extra) {
      if (bound.stream().noneMatch(b -> p.equals(b) || isUnder(p, b))) {
        a.addAll(List.of("--ro-bind", p, p));
        bound.add(p);
        visible.add(p);
      }
    }
    if (spec.seccompFd() >= 0) {
      a.addAll(List.of("--seccomp", Integer.toString(spec.seccompFd())));
    }
    a.addAll(List.of("--chdir", "/", "--"));
    return new SandboxPlan(a, visible);
  }

  private static IllegalArgumentException refused(String path, String what) {
    return new IllegalArgumentException(
        "sandbox path " + path + " would make " + what + " visible to the VM process; put what the VM needs"
            + " (QEMU, its boot files, a --vm-command) in a directory of its own, e.g. under /opt");
  }

  /** p strictly below dir. */
  static boolean isUnder(String p, String dir) {
    return !p.equals(dir) && p.startsWith(dir.endsWith("/") ? dir : dir + "/");
  }

  static String normalize(String p) {
    String n = Path.of(p).normalize().toString();
    return n.length() > 1 && n.endsWith("/") ? n.substring(0, n.length() - 1) : n;
  }

  /** bwrap and its arguments, ending in "--": the sandboxed command follows. */
  public List<String> argv() {
    return argv;
  }

  /** Every host path visible (read-only) inside, besides the sandbox's own /proc, /dev and /tmp. */
  public List<String> visibleHostPaths() {
    return visible;
  }

  /** A few words for the report. */
  public String summary(boolean seccomp) {
    return "bubblewrap: own user (no capabilities, no further user namespaces), pid, mount, net (loopback only),"
        + " ipc, uts, cgroup namespaces; fresh /proc, minimal /dev, private /tmp; read-only "
        + String.join(", ", visible) + (seccomp ? "; " + SeccompPolicy.summary() : "");
  }
}
