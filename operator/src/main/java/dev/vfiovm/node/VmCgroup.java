package dev.vfiovm.node;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The VM's own cgroup2, below the agent's own: created by the agent (root) before the VM process may run,
 * the VM process placed in it while it still waits at its root gate (so everything it ever starts is in it),
 * and at teardown {@code cgroup.kill} (every process in it gets SIGKILL, whatever sessions or process groups
 * it made) and then removed once empty. Where the cgroup2 hierarchy is not writable (a container without
 * cgroup delegation) there is none: {@link #create} returns null, the sandbox's PID namespace carries the
 * guarantee, and the report says {@code "cgroup": null}.
 */
final class VmCgroup {
  private static final Logger LOG = LoggerFactory.getLogger(VmCgroup.class);

  private final Path dir;

  private VmCgroup(Path dir) {
    this.dir = dir;
  }

  Path dir() {
    return dir;
  }

  /**
   * The agent's own cgroup2 directory: its "0::PATH" line of /proc/self/cgroup, under the cgroup2 mount that
   * shows it (mountinfo root a prefix of PATH). Empty when there is no cgroup2 mount or the path is outside it.
   */
  static Optional<Path> ownCgroupDir(String procSelfCgroup, String mountinfo) {
    String path = null;
    for (String l : procSelfCgroup.split("\n")) {
      if (l.startsWith("0::")) {
        path = l.substring(3).trim();
      }
    }
    if (path == null || path.contains(" (deleted)")) {
      return Optional.empty();
    }
    for (String l : mountinfo.split("\n")) {
      int sep = l.indexOf(" - ");
      if (sep < 0) {
        continue;
      }
      String[] left = l.substring(0, sep).split(" ");
      String[] right = l.substring(sep + 3).split(" ");
      if (left.length < 5 || right.length < 1 || !right[0].equals("cgroup2")) {
        continue;
      }
      String root = left[3];
      String mountPoint = left[4].replace("\\040", " ");
      if (path.equals(root) || root.equals("/") || path.startsWith(root + "/")) {
        String rest = root.equals("/") ? path : path.substring(root.length());
        return Optional.of(Path.of(mountPoint + (rest.isEmpty() || rest.equals("/") ? "" : rest)));
      }
    }
    return Optional.empty();
  }

  /**
   * The cgroup's name for a VM: unique per agent process, within the 255 bytes of a file name (a VfioVm name
   * may have 253 characters: the VM part is then cut and a hash of the whole added).
   */
  static String name(String vm, long agentPid) {
    String part = vm.replace('/', '.');
    if (part.length() > 200) {
      part = part.substring(0, 189) + "-" + sha256(vm).substring(0, 10);
    }
    return "vfiovm-" + part + "-" + agentPid;
  }

  private static String sha256(String s) {
    try {
      return java.util.HexFormat.of().formatHex(java.security.MessageDigest.getInstance("SHA-256")
          .digest(s.getBytes(java.nio.charset.StandardCharsets.UTF_8)));
    } catch (java.security.NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  /** Creates the VM's cgroup below the agent's own, or null (logged) where that is not possible here. */
  static VmCgroup create(String vm, long agentPid) {
    Optional<Path> own;
    try {
      own = ownCgroupDir(Files.readString(Path.of("/proc/self/cgroup")), Files.readString(Path.of("/proc/self/mountinfo")));
    } catch (IOException e) {
      own = Optional.empty();
    }
    if (own.isEmpty()) {
      LOG.info("no cgroup2 hierarchy holding the agent: the VM's PID namespace alone bounds its processes");
      return null;
    }
    Path dir = own.get().resolve(name(vm, agentPid));
    try {
      Files.createDirectory(dir);
    } catch (IOException e) {
      LOG.info("cgroup2 {} not writable ({}): the VM's PID namespace alone bounds its processes", own.get(), e.toString());
      return null;
    }
    if (!Files.exists(dir.resolve("cgroup.kill"))) {
      LOG.info("cgroup2 without cgroup.kill (kernel < 5.14): not used");
      remove(dir);
      return null;
    }
    return new VmCgroup(dir);
  }

  /** Moves a process (the VM process at its root gate) into the cgroup; false (and removed) if refused. */
  boolean add(int pid) {
    try {
      Files.writeString(dir.resolve("cgroup.procs"), Integer.toString(pid));
      return true;
    } catch (IOException e) {
      LOG.info("cannot place process {} in {} ({}): the VM's PID namespace alone bounds its processes", pid, dir, e.toString());
      remove(dir);
      return false;
    }
  }

  /** SIGKILL to every process in the cgroup (cgroup.kill). */
  void kill() {
    try {
      Files.writeString(dir.resolve("cgroup.kill"), "1");
    } catch (IOException e) {
      LOG.warn("cgroup.kill of {}: {}", dir, e.toString());
    }
  }

  /** True when no process is left in it (cgroup.events: populated 0). */
  boolean empty() {
    try {
      return Files.readString(dir.resolve("cgroup.events")).lines().anyMatch(l -> l.equals("populated 0"));
    } catch (IOException e) {
      return !Files.exists(dir);
    }
  }

  /** Kills what is left, waits (bounded) until it is empty, removes it; true if it is gone. */
  boolean killAndRemove(long timeoutMillis) {
    long deadline = System.nanoTime() + timeoutMillis * 1_000_000L;
    kill();
    while (!empty() && System.nanoTime() < deadline) {
      try {
        Thread.sleep(10);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        break;
      }
    }
    return empty() && remove(dir);
  }

  private static boolean remove(Path dir) {
    try {
      Files.deleteIfExists(dir);
      return true;
    } catch (IOException e) {
      LOG.warn("cannot remove cgroup {}: {}", dir, e.toString());
      return false;
    }
  }
}
