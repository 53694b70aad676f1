package dev.vfiovm.node.kernel;

import com.sun.jna.LastErrorException;
import com.sun.jna.Memory;
import com.sun.jna.NativeLong;
import com.sun.jna.Pointer;
import com.sun.jna.Structure;
import com.sun.jna.ptr.IntByReference;
import java.nio.charset.StandardCharsets;
import java.util.List;

/**
 * The node agent's one door to the kernel: typed calls over glibc (through JNA) that turn -1/errno into
 * {@link KernelException} carrying the errno name. Everything here is a thin, checked syscall; decisions
 * live in the callers.
 */
public final class Kernel {
  private Kernel() {}

  private static LibC libc() {
    return LibC.INSTANCE;
  }

  /** ENOMEM, EPERM, ... (glibc's strerrorname_np), or E&lt;n&gt; for a number glibc does not name. */
  public static String errnoName(int errno) {
    try {
      String name = libc().strerrorname_np(errno);
      return name != null ? name : "E" + errno;
    } catch (UnsatisfiedLinkError e) {
      return "E" + errno;
    }
  }

  public static String strerror(int errno) {
    return libc().strerror(errno);
  }

  static KernelException fail(String call, LastErrorException e) {
    return new KernelException(call, e.getErrorCode());
  }

  // --- resource limits

  /** prlimit64(pid, RLIMIT_MEMLOCK, soft = hard = bytes): the agent sets a VM process's limit from outside. */
  public static void setMemlockLimit(int pid, long bytes) {
    try {
      libc().prlimit(pid, Uapi.RLIMIT_MEMLOCK, new Uapi.Rlimit(bytes, bytes), null);
    } catch (LastErrorException e) {
      throw fail("prlimit64(RLIMIT_MEMLOCK)", e);
    }
  }

  /** Raises (or lowers) the calling process's own limit; the VM process is expected to get EPERM raising it. */
  public static void setOwnMemlockLimit(long soft, long hard) {
    try {
      libc().prlimit(0, Uapi.RLIMIT_MEMLOCK, new Uapi.Rlimit(soft, hard), null);
    } catch (LastErrorException e) {
      throw fail("prlimit64(RLIMIT_MEMLOCK)", e);
    }
  }

  /** {soft, hard} RLIMIT_MEMLOCK of a process (0 = self). */
  public static long[] memlockLimit(int pid) {
    Uapi.Rlimit old = new Uapi.Rlimit();
    try {
      libc().prlimit(pid, Uapi.RLIMIT_MEMLOCK, null, old);
    } catch (LastErrorException e) {
      throw fail("prlimit64(RLIMIT_MEMLOCK)", e);
    }
    old.read();
    return new long[] {old.rlim_cur, old.rlim_max};
  }

  // --- files

  public static int open(String path, int flags) {
    try {
      return libc().open(path, flags | Uapi.O_CLOEXEC);
    } catch (LastErrorException e) {
      throw new KernelException("open(" + path + ")", e.getErrorCode());
    }
  }

  public static void close(int fd) {
    try {
      libc().close(fd);
    } catch (LastErrorException e) {
      throw fail("close", e);
    }
  }

  /** Closes, ignoring errors: for release paths that must go on. */
  public static void closeQuietly(int fd) {
    if (fd < 0) {
      return;
    }
    try {
      libc().close(fd);
    } catch (LastErrorException ignored) {
      // already closed or never valid: nothing left to release
    }
  }

  /** Reads up to max bytes (blocking); empty array at end of file. */
  public static byte[] read(int fd, int max) {
    byte[] buf = new byte[max];
    long n;
    try {
      n = libc().read(fd, buf, max);
    } catch (LastErrorException e) {
      throw fail("read", e);
    }
    byte[] out = new byte[(int) n];
    System.arraycopy(buf, 0, out, 0, (int) n);
    return out;
  }

  /** Reads one '\n'-terminated line byte by byte (control channels only); null at end of file. */
  public static String readLine(int fd) {
    StringBuilder sb = new StringBuilder();
    while (true) {
      byte[] b = read(fd, 1);
      if (b.length == 0) {
        return sb.length() == 0 ? null : sb.toString();
      }
      if (b[0] == '\n') {
        return sb.toString();
      }
      sb.append((char) (b[0] & 0xff));
    }
  }

  public static void writeFully(int fd, String text) {
    byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
    int off = 0;
    while (off < bytes.length) {
      byte[] rest = new byte[bytes.length - off];
      System.arraycopy(bytes, off, rest, 0, rest.length);
      try {
        off += (int) libc().write(fd, rest, rest.length);
      } catch (LastErrorException e) {
        throw fail("write", e);
      }
    }
  }

  /** A duplicate of fd at or above min, close-on-exec. */
  public static int dupAbove(int fd, int min) {
    try {
      return libc().fcntl(fd, Uapi.F_DUPFD_CLOEXEC, min);
    } catch (LastErrorException e) {
      throw fail("fcntl(F_DUPFD_CLOEXEC)", e);
    }
  }

  /** dup2: target is left open across exec. */
  public static void dup2(int fd, int target) {
    try {
      libc().dup2(fd, target);
    } catch (LastErrorException e) {
      throw fail("dup2", e);
    }
  }

  /** Marks every fd from first on close-on-exec (close_range(CLOSE_RANGE_CLOEXEC)); safe inside a JVM. */
  public static void cloexecFrom(int first) {
    try {
      libc().close_range(first, -1, Uapi.CLOSE_RANGE_CLOEXEC);
    } catch (LastErrorException e) {
      throw fail("close_range", e);
    }
  }

  /** Marks fds first..last close-on-exec. */
  public static void cloexecRange(int first, int last) {
    try {
      libc().close_range(first, last, Uapi.CLOSE_RANGE_CLOEXEC);
    } catch (LastErrorException e) {
      throw fail("close_range", e);
    }
  }

  /** Two connected AF_UNIX stream sockets, close-on-exec. */
  public static int[] socketPair() {
    int[] fds = new int[2];
    try {
      libc().socketpair(Uapi.AF_UNIX, Uapi.SOCK_STREAM | Uapi.SOCK_CLOEXEC, 0, fds);
    } catch (LastErrorException e) {
      throw fail("socketpair", e);
    }
    return fds;
  }

  public static boolean isOpen(int fd) {
    try {
      libc().fcntl(fd, Uapi.F_GETFD, 0);
      return true;
    } catch (LastErrorException e) {
      return false;
    }
  }

  /** lseek(fd, 0, SEEK_SET). */
  public static void seekStart(int fd) {
    try {
      libc().lseek(fd, 0, 0);
    } catch (LastErrorException e) {
      throw fail("lseek", e);
    }
  }

  /** pidfd_open(pid, 0), close-on-exec; -1 when the process is already gone (ESRCH). */
  public static int pidfdOpen(int pid) {
    try {
      return (int) libc().syscall(Uapi.NR_PIDFD_OPEN, (long) pid, 0L);
    } catch (LastErrorException e) {
      if (e.getErrorCode() == Uapi.ESRCH) {
        return -1;
      }
      throw fail("pidfd_open", e);
    }
  }

  /** pidfd_send_signal(pidfd, sig): false when the process is already gone (ESRCH). */
  public static boolean pidfdSignal(int pidfd, int signal) {
    try {
      libc().syscall(Uapi.NR_PIDFD_SEND_SIGNAL, (long) pidfd, (long) signal, 0L, 0L);
      return true;
    } catch (LastErrorException e) {
      if (e.getErrorCode() == Uapi.ESRCH) {
        return false;
      }
      throw fail("pidfd_send_signal", e);
    }
  }

  /**
   * Waits up to timeoutMillis for a pidfd to become readable (the process exited; for a PID namespace's
   * init, once the kernel killed and reaped every other process of that namespace). True if it did.
   */
  public static boolean awaitPidfd(int pidfd, long timeoutMillis) {
    Memory pfd = new Memory(8);
    long deadline = System.nanoTime() + timeoutMillis * 1_000_000L;
    while (true) {
      pfd.setInt(0, pidfd);
      pfd.setShort(4, Uapi.POLLIN);
      pfd.setShort(6, (short) 0);
      long left = Math.max(0, (deadline - System.nanoTime()) / 1_000_000L);
      try {
        int n = libc().poll(pfd, 1, (int) Math.min(left, Integer.MAX_VALUE));
        if (n > 0) {
          return true;
        }
        if (left == 0) {
          return false;
        }
      } catch (LastErrorException e) {
        if (!errnoName(e.getErrorCode()).equals("EINTR")) {
          throw fail("poll(pidfd)", e);
        }
      }
    }
  }

  // --- memory

  /** memfd_create + ftruncate: the guest memory, close-on-exec (the VM process places it for exec itself). */
  public static int memfdCreate(String name, long size) {
    int fd;
    try {
      fd = libc().memfd_create(name, Uapi.MFD_CLOEXEC);
    } catch (LastErrorException e) {
      throw fail("memfd_create", e);
    }
    try {
      libc().ftruncate(fd, size);
    } catch (LastErrorException e) {
      closeQuietly(fd);
      throw fail("ftruncate(memfd)", e);
    }
    return fd;
  }

  /** mmap(MAP_SHARED) of a whole file (fd) or anonymous memory (fd = -1). */
  public static Pointer mmap(long length, int fd) {
    int flags = fd < 0 ? Uapi.MAP_PRIVATE | Uapi.MAP_ANONYMOUS : Uapi.MAP_SHARED;
    try {
      return libc().mmap(null, length, Uapi.PROT_READ | Uapi.PROT_WRITE, flags, fd, 0);
    } catch (LastErrorException e) {
      throw fail("mmap", e);
    }
  }

  public static void munmap(Pointer addr, long length) {
    try {
      libc().munmap(addr, length);
    } catch (LastErrorException e) {
      throw fail("munmap", e);
    }
  }

  // --- ioctl

  /** ioctl(fd, request, &struct): writes the struct, calls, reads it back. */
  public static void ioctl(int fd, int request, Structure arg, String name) {
    arg.write();
    try {
      libc().ioctl(fd, new NativeLong(request), arg.getPointer());
    } catch (LastErrorException e) {
      throw fail(name, e);
    }
    arg.read();
  }

  // --- io_uring

  /** io_uring_setup(entries): a ring fd (its own memory costs two pages of the caller's memlock budget). */
  public static int ioUringSetup(int entries) {
    Uapi.IoUringParams p = new Uapi.IoUringParams();
    p.write();
    try {
      return (int) libc().syscall(Uapi.NR_IO_URING_SETUP, (long) entries, p.getPointer());
    } catch (LastErrorException e) {
      throw fail("io_uring_setup", e);
    }
  }

  /** IORING_REGISTER_BUFFERS of one buffer: pins it, charged to the caller's user (RLIMIT_MEMLOCK). */
  public static void ioUringRegisterBuffer(int ringFd, Pointer buffer, long length) {
    Uapi.Iovec iov = new Uapi.Iovec();
    iov.iov_base = buffer;
    iov.iov_len = length;
    iov.write();
    try {
      libc()
          .syscall(
              Uapi.NR_IO_URING_REGISTER, (long) ringFd, (long) Uapi.IORING_REGISTER_BUFFERS, iov.getPointer(), 1L);
    } catch (LastErrorException e) {
      throw fail("IORING_REGISTER_BUFFERS", e);
    }
  }

  // --- processes

  public static int getpid() {
    return libc().getpid();
  }

  public static int getppid() {
    return libc().getppid();
  }

  /** kill(2); false when the process is already gone (ESRCH). */
  public static boolean kill(int pid, int signal) {
    try {
      libc().kill(pid, signal);
      return true;
    } catch (LastErrorException e) {
      if (errnoName(e.getErrorCode()).equals("ESRCH")) {
        return false;
      }
      throw fail("kill", e);
    }
  }

  /** Wait status of a child: exited with a code, or killed by a signal. */
  public record WaitStatus(int raw) {
    public boolean exited() {
      return (raw & 0x7f) == 0;
    }

    public int exitCode() {
      return (raw >> 8) & 0xff;
    }

    public int signal() {
      return raw & 0x7f;
    }

    @Override
    public String toString() {
      return exited() ? "exited with status " + exitCode() : "killed by signal " + signal();
    }
  }

  /** waitpid; blocks unless noHang; null if noHang and the child still runs. */
  public static WaitStatus waitpid(int pid, boolean noHang) {
    IntByReference status = new IntByReference();
    while (true) {
      try {
        int r = libc().waitpid(pid, status, noHang ? Uapi.WNOHANG : 0);
        return r == 0 ? null : new WaitStatus(status.getValue());
      } catch (LastErrorException e) {
        if (!errnoName(e.getErrorCode()).equals("EINTR")) {
          throw fail("waitpid", e);
        }
      }
    }
  }

  /**
   * Makes the caller a child subreaper: an orphaned descendant (a VM sandbox's PID-namespace init, once the
   * agent's own child exited) is reparented to it, so the agent reaps it instead of leaving a zombie to a
   * container's pid 1 that may never reap.
   */
  public static void becomeChildSubreaper() {
    try {
      libc().prctl(Uapi.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    } catch (LastErrorException e) {
      throw fail("prctl(PR_SET_CHILD_SUBREAPER)", e);
    }
  }

  /** The calling process gets signal when its parent (thread) dies: a VM must not outlive its agent. */
  public static void dieWithParent(int signal) {
    try {
      libc().prctl(Uapi.PR_SET_PDEATHSIG, signal, 0, 0, 0);
    } catch (LastErrorException e) {
      throw fail("prctl(PR_SET_PDEATHSIG)", e);
    }
  }

  /**
   * posix_spawn(path, argv, envp) with stdin from /dev/null, stdout/stderr inherited, {@code fds[i]} placed at
   * fd {@code 3 + i}, every other fd closed, signal mask and dispositions reset, in a new session.
   *
   * <p>Why posix_spawn: a JVM cannot fork safely, and ProcessBuilder closes every fd above 2, while the VM
   * process must inherit the control socket, the iommufd and the device fds. glibc's posix_spawn (clone
   * CLONE_VM|CLONE_VFORK + exec) runs no Java code in the child; its file actions place the fds and
   * closefrom_np keeps the agent's own fds (API connections, jars) out of the VM.
   */
  public static int spawn(String path, List<String> argv, List<String> envp, List<Integer> fds) {
    return spawn(path, argv, envp, fds, -1);
  }

  /** As {@link #spawn(String, List, List, List)}, with stderr going to {@code stderrFd} when it is >= 0. */
  public static int spawn(String path, List<String> argv, List<String> envp, List<Integer> fds, int stderrFd) {
    int base = 3;
    // copies above every target first, so placing one fd never clobbers another's source
    int[] high = new int[fds.size()];
    for (int i = 0; i < fds.size(); i++) {
      high[i] = dupAbove(fds.get(i), 1024);
    }
    int highErr = stderrFd >= 0 ? dupAbove(stderrFd, 1024) : -1;
    Memory actions = new Memory(512);
    Memory attr = new Memory(1024);
    Memory empty = new Memory(128);
    Memory all = new Memory(128);
    actions.clear();
    attr.clear();
    try {
      check(libc().posix_spawn_file_actions_init(actions), "posix_spawn_file_actions_init");
      check(libc().posix_spawnattr_init(attr), "posix_spawnattr_init");
      check(
          libc().posix_spawn_file_actions_addopen(actions, 0, "/dev/null", Uapi.O_RDONLY, 0),
          "posix_spawn_file_actions_addopen");
      for (int i = 0; i < high.length; i++) {
        check(libc().posix_spawn_file_actions_adddup2(actions, high[i], base + i), "adddup2");
      }
      if (highErr >= 0) {
        check(libc().posix_spawn_file_actions_adddup2(actions, highErr, 2), "adddup2(stderr)");
      }
      check(libc().posix_spawn_file_actions_addclosefrom_np(actions, base + high.length), "addclosefrom_np");
      libc().sigemptyset(empty);
      libc().sigfillset(all);
      check(libc().posix_spawnattr_setsigmask(attr, empty), "posix_spawnattr_setsigmask");
      check(libc().posix_spawnattr_setsigdefault(attr, all), "posix_spawnattr_setsigdefault");
      check(
          libc()
              .posix_spawnattr_setflags(
                  attr,
                  (short)
                      (Uapi.POSIX_SPAWN_SETSIGMASK | Uapi.POSIX_SPAWN_SETSIGDEF | Uapi.POSIX_SPAWN_SETSID)),
          "posix_spawnattr_setflags");
      IntByReference pid = new IntByReference();
      String[] args = argv.toArray(new String[0]);
      String[] env = envp.toArray(new String[0]);
      check(libc().posix_spawn(pid, path, actions, attr, args, env), "posix_spawn(" + path + ")");
      return pid.getValue();
    } finally {
      libc().posix_spawn_file_actions_destroy(actions);
      libc().posix_spawnattr_destroy(attr);
      for (int fd : high) {
        closeQuietly(fd);
      }
      if (highErr >= 0) {
        closeQuietly(highErr);
      }
    }
  }

  private static void check(int rc, String call) {
    if (rc != 0) {
      throw new KernelException(call, rc);
    }
  }

  /**
   * Replaces the calling (VM-side) process with a command: resets the signal mask the JVM thread carries,
   * then execvpe. Only fds without close-on-exec survive. Returns only by throwing.
   */
  public static void exec(List<String> argv, List<String> envp) {
    Memory empty = new Memory(128);
    libc().sigemptyset(empty);
    libc().pthread_sigmask(Uapi.SIG_SETMASK, empty, null);
    try {
      libc().execvpe(argv.get(0), argv.toArray(new String[0]), envp.toArray(new String[0]));
    } catch (LastErrorException e) {
      throw new KernelException("execvpe(" + argv.get(0) + ")", e.getErrorCode());
    }
    throw new IllegalStateException("execvpe returned");
  }
}
