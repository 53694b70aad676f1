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

  // --- unix sockets (the agent's control socket)

  private static Uapi.SockaddrUn unixAddress(String path) {
    byte[] p = path.getBytes(StandardCharsets.UTF_8);
    Uapi.SockaddrUn a = new Uapi.SockaddrUn();
    if (p.length >= a.sun_path.length) {
      throw new IllegalArgumentException("unix socket path longer than " + (a.sun_path.length - 1) + " bytes: " + path);
    }
    a.sun_family = (short) Uapi.AF_UNIX;
    System.arraycopy(p, 0, a.sun_path, 0, p.length);
    a.write();
    return a;
  }

  /** socket + bind + listen: a listening AF_UNIX stream socket at path (which must not exist), close-on-exec. */
  public static int unixListen(String path, int backlog) {
    Uapi.SockaddrUn addr = unixAddress(path);
    int fd = unixStreamSocket();
    try {
      libc().bind(fd, addr, addr.size());
    } catch (LastErrorException e) {
      closeQuietly(fd);
      throw new KernelException("bind(" + path + ")", e.getErrorCode());
    }
    try {
      libc().listen(fd, backlog);
    } catch (LastErrorException e) {
      closeQuietly(fd);
      throw fail("listen", e);
    }
    return fd;
  }

  private static int unixStreamSocket() {
    try {
      return libc().socket(Uapi.AF_UNIX, Uapi.SOCK_STREAM | Uapi.SOCK_CLOEXEC, 0);
    } catch (LastErrorException e) {
      throw fail("socket(AF_UNIX)", e);
    }
  }

  /** accept4(SOCK_CLOEXEC): the next connection on a listening socket. */
  public static int accept(int listenFd) {
    try {
      return libc().accept4(listenFd, null, null, Uapi.SOCK_CLOEXEC);
    } catch (LastErrorException e) {
      throw fail("accept4", e);
    }
  }

  /** socket + connect to an AF_UNIX stream socket at path, close-on-exec. */
  public static int unixConnect(String path) {
    Uapi.SockaddrUn addr = unixAddress(path);
    int fd = unixStreamSocket();
    try {
      libc().connect(fd, addr, addr.size());
    } catch (LastErrorException e) {
      closeQuietly(fd);
      throw new KernelException("connect(" + path + ")", e.getErrorCode());
    }
    return fd;
  }

  /** Who is at the other end of a connected unix socket (SO_PEERCRED: the peer at connect time). */
  public record PeerCred(int pid, int uid, int gid) {}

  public static PeerCred peerCred(int fd) {
    Uapi.Ucred c = new Uapi.Ucred();
    IntByReference len = new IntByReference(c.size());
    try {
      libc().getsockopt(fd, Uapi.SOL_SOCKET, Uapi.SO_PEERCRED, c, len);
    } catch (LastErrorException e) {
      throw fail("getsockopt(SO_PEERCRED)", e);
    }
    c.read();
    return new PeerCred(c.pid, c.uid, c.gid);
  }

  /**
   * sendmsg of data with one fd as SCM_RIGHTS (passFd &lt; 0: none) attached to its first byte; the rest of a
   * short send goes by plain writes. MSG_NOSIGNAL: a closed peer is EPIPE, not SIGPIPE.
   */
  public static void sendWithFd(int fd, byte[] data, int passFd) {
    Memory buf = new Memory(Math.max(1, data.length));
    buf.write(0, data, 0, data.length);
    Uapi.Iovec iov = new Uapi.Iovec();
    iov.iov_base = buf;
    iov.iov_len = data.length;
    iov.write();
    Uapi.Msghdr msg = new Uapi.Msghdr();
    msg.msg_iov = iov.getPointer();
    msg.msg_iovlen = 1;
    Memory control = null;
    if (passFd >= 0) {
      control = new Memory(Uapi.CMSG_SPACE_ONE_FD);
      control.clear();
      control.setLong(0, Uapi.CMSG_LEN_ONE_FD);
      control.setInt(8, Uapi.SOL_SOCKET);
      control.setInt(12, Uapi.SCM_RIGHTS);
      control.setInt(16, passFd);
      msg.msg_control = control;
      msg.msg_controllen = Uapi.CMSG_SPACE_ONE_FD;
    }
    long n;
    try {
      n = libc().sendmsg(fd, msg, Uapi.MSG_NOSIGNAL);
    } catch (LastErrorException e) {
      throw fail("sendmsg", e);
    }
    if (n < data.length) {
      byte[] rest = new byte[data.length - (int) n];
      System.arraycopy(data, (int) n, rest, 0, rest.length);
      writeFully(fd, new String(rest, StandardCharsets.UTF_8));
    }
  }

  /** What one recvmsg got: the bytes (empty at end of stream) and the fds passed with them (close-on-exec). */
  public record Received(byte[] data, List<Integer> fds) {}

  /**
   * recvmsg of up to max bytes with room for up to maxFds SCM_RIGHTS fds (MSG_CMSG_CLOEXEC). Control data the
   * kernel had to cut (more fds than room) is an error, and the fds that did arrive are closed.
   */
  public static Received recvWithFds(int fd, int max, int maxFds) {
    Memory buf = new Memory(max);
    Uapi.Iovec iov = new Uapi.Iovec();
    iov.iov_base = buf;
    iov.iov_len = max;
    iov.write();
    int space = Uapi.CMSG_SPACE_ONE_FD + Math.max(0, maxFds - 1) * 8 + 8;
    Memory control = new Memory(space);
    control.clear();
    Uapi.Msghdr msg = new Uapi.Msghdr();
    msg.msg_iov = iov.getPointer();
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = space;
    long n;
    try {
      n = libc().recvmsg(fd, msg, Uapi.MSG_CMSG_CLOEXEC);
    } catch (LastErrorException e) {
      throw fail("recvmsg", e);
    }
    msg.read();
    List<Integer> fds = new java.util.ArrayList<>();
    long off = 0;
    while (off + 16 <= msg.msg_controllen) {
      long len = control.getLong(off);
      int level = control.getInt(off + 8);
      int type = control.getInt(off + 12);
      if (len < 16) {
        break;
      }
      if (level == Uapi.SOL_SOCKET && type == Uapi.SCM_RIGHTS) {
        for (long p = off + 16; p + 4 <= off + len; p += 4) {
          fds.add(control.getInt(p));
        }
      }
      off += (len + 7) & ~7L;
    }
    if ((msg.msg_flags & Uapi.MSG_CTRUNC) != 0) {
      fds.forEach(Kernel::closeQuietly);
      throw new KernelException("recvmsg (more fds than " + maxFds + ": control data truncated)", 90 /* EMSGSIZE */);
    }
    return new Received(buf.getByteArray(0, (int) n), List.copyOf(fds));
  }

  /** Waits up to timeoutMillis until fd is readable (or at end of file/hung up); true if it is. */
  public static boolean awaitReadable(int fd, long timeoutMillis) {
    return awaitPidfd(fd, timeoutMillis);
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
