package dev.vfiovm.node.kernel;

import com.sun.jna.LastErrorException;
import com.sun.jna.Library;
import com.sun.jna.Native;
import com.sun.jna.NativeLong;
import com.sun.jna.Pointer;
import com.sun.jna.ptr.IntByReference;

/** The raw glibc entry points; only {@link Kernel} and its typed wrappers use it. */
interface LibC extends Library {
  LibC INSTANCE = Native.load("c", LibC.class);

  int prlimit(int pid, int resource, Uapi.Rlimit newLimit, Uapi.Rlimit oldLimit) throws LastErrorException;

  int memfd_create(String name, int flags) throws LastErrorException;

  int ftruncate(int fd, long length) throws LastErrorException;

  long lseek(int fd, long offset, int whence) throws LastErrorException;

  int poll(Pointer fds, long nfds, int timeout) throws LastErrorException;

  Pointer mmap(Pointer addr, long length, int prot, int flags, int fd, long offset) throws LastErrorException;

  int munmap(Pointer addr, long length) throws LastErrorException;

  int ioctl(int fd, NativeLong request, Pointer arg) throws LastErrorException;

  long syscall(long number, Object... args) throws LastErrorException;

  int open(String path, int flags) throws LastErrorException;

  int close(int fd) throws LastErrorException;

  long read(int fd, byte[] buf, long count) throws LastErrorException;

  long write(int fd, byte[] buf, long count) throws LastErrorException;

  int fcntl(int fd, int cmd, int arg) throws LastErrorException;

  int dup2(int oldFd, int newFd) throws LastErrorException;

  int socketpair(int domain, int type, int protocol, int[] fds) throws LastErrorException;

  int socket(int domain, int type, int protocol) throws LastErrorException;

  int bind(int fd, Uapi.SockaddrUn addr, int len) throws LastErrorException;

  int listen(int fd, int backlog) throws LastErrorException;

  int accept4(int fd, Pointer addr, Pointer len, int flags) throws LastErrorException;

  int connect(int fd, Uapi.SockaddrUn addr, int len) throws LastErrorException;

  long sendmsg(int fd, Uapi.Msghdr msg, int flags) throws LastErrorException;

  long recvmsg(int fd, Uapi.Msghdr msg, int flags) throws LastErrorException;

  int getsockopt(int fd, int level, int name, Uapi.Ucred value, IntByReference len) throws LastErrorException;

  int kill(int pid, int sig) throws LastErrorException;

  int waitpid(int pid, IntByReference status, int options) throws LastErrorException;

  int getpid();

  int getppid();

  int prctl(int option, long arg2, long arg3, long arg4, long arg5) throws LastErrorException;

  int close_range(int first, int last, int flags) throws LastErrorException;

  int pthread_sigmask(int how, Pointer set, Pointer oldSet);

  int sigemptyset(Pointer set);

  int sigfillset(Pointer set);

  int execvpe(String file, String[] argv, String[] envp) throws LastErrorException;

  // posix_spawn family: returns an error number instead of setting errno
  int posix_spawn(
      IntByReference pid, String path, Pointer fileActions, Pointer attr, String[] argv, String[] envp);

  int posix_spawn_file_actions_init(Pointer fileActions);

  int posix_spawn_file_actions_destroy(Pointer fileActions);

  int posix_spawn_file_actions_adddup2(Pointer fileActions, int fd, int newFd);

  int posix_spawn_file_actions_addopen(Pointer fileActions, int fd, String path, int flags, int mode);

  int posix_spawn_file_actions_addclosefrom_np(Pointer fileActions, int from);

  int posix_spawnattr_init(Pointer attr);

  int posix_spawnattr_destroy(Pointer attr);

  int posix_spawnattr_setflags(Pointer attr, short flags);

  int posix_spawnattr_setsigmask(Pointer attr, Pointer set);

  int posix_spawnattr_setsigdefault(Pointer attr, Pointer set);

  String strerrorname_np(int errnum);

  String strerror(int errnum);
}
