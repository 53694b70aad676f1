// A compromised VM process, run by the node agent as `--vm-command` in place of QEMU: the same chain and
// sandbox (RLIMIT_MEMLOCK set from outside, the VM's host UID, no capabilities, no_new_privs, bubblewrap's
// namespaces and read-only binds, vfiovm's seccomp policy) and the same fds QEMU gets (docs/node-agent.md).
// Two modes:
//
// compromised-vm probe [victim=PID] [agent=PID] [secret=PATH]... [readonly=PATH]... [connect=HOST:PORT]...
//   The containment probe (docs/security.md): tries what a hostile VMM would, one line per attempt,
//   "PROBE <name> <refused|nothing|LEAK> <detail>": refused = the kernel said no (errno in the detail),
//   nothing = there was nothing to find, LEAK = it got through. Reads ServiceAccount tokens and the given
//   secret paths (the agent's report, its files), writes the given read-only paths (the agent's jar), connects
//   to the API server (KUBERNETES_SERVICE_HOST/PORT) and each connect= address, looks for and signals the agent
//   and the victim VM (host pids) and every other process, opens the victim's guest memfd through /proc,
//   raises RLIMIT_MEMLOCK (soft above hard, and the hard limit), sets RLIMIT_MODE on the iommufd (fd 4),
//   mounts, makes user namespaces, loads eBPF, ptraces, pins past its limit, then forks a setsid child that
//   keeps pinning (whether it outlives teardown is for the test to see from the kernel's side). On iommufd it
//   first does what QEMU does (bind, IOAS, attach, map guest memory) and says READY; on io-uring the launcher
//   pinned guest memory before exec'ing it. Then "PROBE-DONE" and it holds until SIGTERM.
//
// compromised-vm [MORE_BYTES [FITS_BYTES]]   (iommufd; the iommufd tier's scenario 5)
//   Does what QEMU does (bind each device, allocate an IOAS, attach, map its guest memory: pinned, charged to
//   its UID under per-user accounting), writes READY to the agent, then tries to pin more than its limit allows
//   from every process it can make: a forked child (a copy of its mm) and an exec'd image (a fresh mm). With
//   per-user accounting each attempt is checked against the UID's counter, which still holds the guest memory
//   pinned first, so each gets ENOMEM; a smaller map that fits under the limit then succeeds in the exec'd image
//   (the refusal is the limit, not a broken fd). One line per attempt ("compromised-vmm: ..."); then it holds
//   its pins until SIGTERM. It attacks only once told (SIGUSR1, from the test, after the agent reported Running
//   with the pins it read at READY), so what the agent reads is the state at READY, not a race with the exec.
//   Defaults: MORE_BYTES = VFIOVM_MEMORY_BYTES, FITS_BYTES = 4 MiB.
//
// Self-contained: uAPI values from Linux 6.12 include/uapi/linux/iommufd.h, vfio.h, io_uring.h; each ioctl is
// small and checked, as in tools/testing/selftests/iommu.
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <dirent.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <linux/bpf.h>

#define IOMMUFD_TYPE ';'
struct iommu_ioas_alloc {
  uint32_t size, flags, out_ioas_id;
};
#define IOMMU_IOAS_ALLOC _IO(IOMMUFD_TYPE, 0x81)
struct iommu_ioas_map {
  uint32_t size, flags, ioas_id, reserved;
  uint64_t user_va, length, iova;
};
#define IOMMU_IOAS_MAP _IO(IOMMUFD_TYPE, 0x85)
#define IOMMU_IOAS_MAP_WRITEABLE (1 << 1)
#define IOMMU_IOAS_MAP_READABLE (1 << 2)

#define VFIO_TYPE ';'
#define VFIO_BASE 100
struct vfio_device_bind_iommufd {
  uint32_t argsz, flags;
  int32_t iommufd;
  uint32_t out_devid;
};
#define VFIO_DEVICE_BIND_IOMMUFD _IO(VFIO_TYPE, VFIO_BASE + 18)
struct vfio_device_attach_iommufd_pt {
  uint32_t argsz, flags, pt_id;
};
#define VFIO_DEVICE_ATTACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 19)

struct iommu_option {
  uint32_t size, option_id;
  uint16_t op, reserved;
  uint32_t object_id;
  uint64_t val64;
};
#define IOMMU_OPTION _IO(IOMMUFD_TYPE, 0x87)
_Static_assert(sizeof(struct iommu_option) == 24, "iommu_option");
_Static_assert(sizeof(struct iommu_ioas_alloc) == 12, "iommu_ioas_alloc");
_Static_assert(sizeof(struct iommu_ioas_map) == 40, "iommu_ioas_map");
_Static_assert(sizeof(struct vfio_device_bind_iommufd) == 16, "vfio_device_bind_iommufd");
_Static_assert(sizeof(struct vfio_device_attach_iommufd_pt) == 12, "vfio_device_attach_iommufd_pt");

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  printf("compromised-vmm: %s\n", line);
  fflush(stdout);
}

static const char *err(int rc) { return rc ? strerrorname_np(errno) : "OK"; }

static long env(const char *name) {
  const char *v = getenv(name);
  if (!v || !*v) {
    say("%s not set", name);
    exit(2);
  }
  return strtol(v, NULL, 10);
}

// a fresh anonymous mapping of len bytes in this process's mm, mapped into the IOAS (pinned: a device is
// attached): 0 or -1 with errno
static int pin(int iommufd, uint32_t ioas, size_t len) {
  void *va = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (va == MAP_FAILED) {
    return -1;
  }
  struct iommu_ioas_map map = {.size = sizeof map,
                               .flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
                               .ioas_id = ioas,
                               .user_va = (uintptr_t)va,
                               .length = len};
  return ioctl(iommufd, IOMMU_IOAS_MAP, &map);
}

static void hold(void) {
  say("done");
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigprocmask(SIG_BLOCK, &term, NULL);
  int sig;
  sigwait(&term, &sig);
  exit(0);
}

static int legacy(int argc, char **argv) {
  int iommufd = env("VFIOVM_IOMMUFD");
  size_t memory = env("VFIOVM_MEMORY_BYTES");
  size_t more = argc > 1 ? strtoull(argv[1], NULL, 10) : memory;
  size_t fits = argc > 2 ? strtoull(argv[2], NULL, 10) : 4 << 20;
  int rc;

  // the exec'd image: a fresh mm, same fds, same UID, same limit (argv[3] = "exec", argv[4] = the IOAS)
  if (argc > 4 && !strcmp(argv[3], "exec")) {
    uint32_t ioas = strtoul(argv[4], NULL, 10);
    rc = pin(iommufd, ioas, more);
    say("exec'd image map +%zu bytes -> %s", more, err(rc));
    rc = pin(iommufd, ioas, fits);
    say("exec'd image map +%zu bytes -> %s", fits, err(rc));
    hold();
  }

  const char *fds = getenv("VFIOVM_DEVICE_FDS");
  if (!fds || !*fds) {
    say("VFIOVM_DEVICE_FDS not set");
    return 2;
  }
  int devices[16], n = 0;
  for (char *list = strdup(fds), *tok; (tok = strsep(&list, ",")) && n < 16;) {
    devices[n++] = atoi(tok);
  }
  for (int i = 0; i < n; i++) {
    struct vfio_device_bind_iommufd bind = {.argsz = sizeof bind, .iommufd = iommufd};
    rc = ioctl(devices[i], VFIO_DEVICE_BIND_IOMMUFD, &bind);
    say("bind device fd %d -> %s devid=%u", devices[i], err(rc), bind.out_devid);
    if (rc) {
      return 1;
    }
  }
  struct iommu_ioas_alloc alloc = {.size = sizeof alloc};
  rc = ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc);
  say("ioas alloc -> %s ioas=%u", err(rc), alloc.out_ioas_id);
  if (rc) {
    return 1;
  }
  for (int i = 0; i < n; i++) {
    struct vfio_device_attach_iommufd_pt attach = {.argsz = sizeof attach, .pt_id = alloc.out_ioas_id};
    rc = ioctl(devices[i], VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach);
    say("attach device fd %d -> %s", devices[i], err(rc));
    if (rc) {
      return 1;
    }
  }
  rc = pin(iommufd, alloc.out_ioas_id, memory);
  say("map guest memory +%zu bytes -> %s", memory, err(rc));
  if (rc) {
    return 1;
  }
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigprocmask(SIG_BLOCK, &usr1, NULL);
  int control = env("VFIOVM_CONTROL_FD");
  if (write(control, "READY\n", 6) != 6) {
    say("write READY: %s", strerrorname_np(errno));
    return 1;
  }
  say("READY");
  int sig;
  sigwait(&usr1, &sig);
  say("told to attack (SIGUSR1)");

  pid_t child = fork();
  if (child == 0) {
    rc = pin(iommufd, alloc.out_ioas_id, more);
    say("forked child map +%zu bytes -> %s", more, err(rc));
    _exit(0);
  }
  int status;
  if (child < 0 || waitpid(child, &status, 0) != child) {
    say("fork: %s", strerrorname_np(errno));
    return 1;
  }

  char more_s[32], fits_s[32], ioas_s[16];
  snprintf(more_s, sizeof more_s, "%zu", more);
  snprintf(fits_s, sizeof fits_s, "%zu", fits);
  snprintf(ioas_s, sizeof ioas_s, "%u", alloc.out_ioas_id);
  execl("/proc/self/exe", argv[0], more_s, fits_s, "exec", ioas_s, (char *)NULL);
  say("exec: %s", strerrorname_np(errno));
  return 1;
}

// ---------------------------------------------------------------------------------------------- probe mode

static void probe(const char *name, const char *verdict, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void probe(const char *name, const char *verdict, const char *fmt, ...) {
  char detail[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  for (char *c = detail; *c; c++) {
    if (*c == '\n') *c = ' ';
  }
  printf("PROBE %s %s %s\n", name, verdict, detail);
  fflush(stdout);
}

// the verdict of an attempt that should fail: ok -> LEAK; ENOENT/ESRCH -> nothing (nothing to reach); else refused
static void verdict(const char *name, int ok, const char *what) {
  int e = errno;
  if (ok) {
    probe(name, "LEAK", "%s succeeded", what);
  } else if (e == ENOENT || e == ESRCH || e == ENOTDIR) {
    probe(name, "nothing", "%s: %s", what, strerrorname_np(e));
  } else {
    probe(name, "refused", "%s: %s", what, strerrorname_np(e));
  }
}

static void try_read(const char *name, const char *path) {
  char what[300];
  snprintf(what, sizeof what, "open(%s, O_RDONLY)", path);
  int fd = open(path, O_RDONLY);
  verdict(name, fd >= 0, what);
  if (fd >= 0) close(fd);
}

// every entry below dir (a token is a file somewhere under /var/run/secrets): a directory with files = LEAK
static int count_files(const char *dir, char *first, size_t n, int depth) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int count = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    int sub = depth < 6 ? count_files(p, first, n, depth + 1) : -1;
    if (sub < 0) {
      int fd = open(p, O_RDONLY);
      if (fd >= 0) {
        if (!count) snprintf(first, n, "%s", p);
        count++;
        close(fd);
      }
    } else {
      count += sub;
    }
  }
  closedir(d);
  return count;
}

static void try_secrets_dir(const char *name, const char *dir) {
  char first[512] = "";
  errno = 0;
  int n = count_files(dir, first, sizeof first, 0);
  if (n < 0) {
    char what[300];
    snprintf(what, sizeof what, "opendir(%s)", dir);
    verdict(name, 0, what);
  } else if (n == 0) {
    probe(name, "nothing", "%s exists but holds no readable file", dir);
  } else {
    probe(name, "LEAK", "%d readable files under %s, e.g. %s", n, dir, first);
  }
}

static void try_connect(const char *name, const char *host, int port) {
  char what[200];
  snprintf(what, sizeof what, "connect(%s:%d)", host, port);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
    probe(name, "nothing", "%s: not an IPv4 address", what);
    return;
  }
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) {
    verdict(name, 0, "socket(AF_INET)");
    return;
  }
  struct timeval tv = {.tv_sec = 3};
  setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int rc = connect(s, (struct sockaddr *)&a, sizeof a);
  verdict(name, rc == 0, what);
  close(s);
}

static long io_uring_setup(unsigned entries) {
  char params[120] = {0};
  return syscall(SYS_io_uring_setup, entries, params);
}

static int io_uring_pin(int ring, size_t len) {
  void *va = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (va == MAP_FAILED) return -1;
  struct iovec iov = {.iov_base = va, .iov_len = len};
  return syscall(SYS_io_uring_register, ring, 0 /* IORING_REGISTER_BUFFERS */, &iov, 1);
}

// what QEMU does on iommufd: bind every device, one IOAS, attach, map guest memory; returns the IOAS
static uint32_t iommufd_setup(int iommufd, size_t memory) {
  const char *fds = getenv("VFIOVM_DEVICE_FDS");
  int devices[16], n = 0;
  for (char *list = strdup(fds ? fds : ""), *tok; (tok = strsep(&list, ",")) && *tok && n < 16;) {
    devices[n++] = atoi(tok);
  }
  for (int i = 0; i < n; i++) {
    struct vfio_device_bind_iommufd bind = {.argsz = sizeof bind, .iommufd = iommufd};
    if (ioctl(devices[i], VFIO_DEVICE_BIND_IOMMUFD, &bind)) {
      printf("compromised-vm: bind fd %d: %s\n", devices[i], strerrorname_np(errno));
      exit(1);
    }
  }
  struct iommu_ioas_alloc alloc = {.size = sizeof alloc};
  if (ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc)) {
    printf("compromised-vm: IOMMU_IOAS_ALLOC: %s\n", strerrorname_np(errno));
    exit(1);
  }
  for (int i = 0; i < n; i++) {
    struct vfio_device_attach_iommufd_pt attach = {.argsz = sizeof attach, .pt_id = alloc.out_ioas_id};
    if (ioctl(devices[i], VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach)) {
      printf("compromised-vm: attach fd %d: %s\n", devices[i], strerrorname_np(errno));
      exit(1);
    }
  }
  if (pin(iommufd, alloc.out_ioas_id, memory)) {
    printf("compromised-vm: map guest memory: %s\n", strerrorname_np(errno));
    exit(1);
  }
  return alloc.out_ioas_id;
}

static int probe_main(int argc, char **argv) {
  long victim = 0, agent = 0;
  const char *secrets[16], *readonly[16], *connects[16];
  int ns = 0, nr = 0, nc = 0;
  for (int i = 2; i < argc; i++) {
    if (!strncmp(argv[i], "victim=", 7)) victim = atol(argv[i] + 7);
    else if (!strncmp(argv[i], "agent=", 6)) agent = atol(argv[i] + 6);
    else if (!strncmp(argv[i], "secret=", 7) && ns < 16) secrets[ns++] = argv[i] + 7;
    else if (!strncmp(argv[i], "readonly=", 9) && nr < 16) readonly[nr++] = argv[i] + 9;
    else if (!strncmp(argv[i], "connect=", 8) && nc < 16) connects[nc++] = argv[i] + 8;
  }
  size_t memory = env("VFIOVM_MEMORY_BYTES");
  size_t limit = env("VFIOVM_MEMLOCK_BYTES");
  const char *iommufd_env = getenv("VFIOVM_IOMMUFD");
  int iommufd = iommufd_env ? atoi(iommufd_env) : -1;
  uint32_t ioas = 0;

  // RLIMIT_MODE first, on the fresh context (no object yet: the only refusal left is the capability check)
  if (iommufd >= 0) {
    struct iommu_option opt = {.size = sizeof opt, .option_id = 0 /* RLIMIT_MODE */, .op = 0 /* SET */, .val64 = 1};
    verdict("rlimit-mode", ioctl(iommufd, IOMMU_OPTION, &opt) == 0, "IOMMU_OPTION RLIMIT_MODE=per-process on fd 4");
    ioas = iommufd_setup(iommufd, memory);
    if (write(env("VFIOVM_CONTROL_FD"), "READY\n", 6) != 6) {
      printf("compromised-vm: write READY: %s\n", strerrorname_np(errno));
      return 1;
    }
    close(env("VFIOVM_CONTROL_FD"));
  } else {
    probe("rlimit-mode", "nothing", "no iommufd (io-uring backend): no RLIMIT_MODE to set");
  }

  // credentials and the agent's files
  try_secrets_dir("serviceaccount-token", "/var/run/secrets");
  try_secrets_dir("run-secrets", "/run/secrets");
  try_read("serviceaccount-token-file", "/var/run/secrets/kubernetes.io/serviceaccount/token");
  for (int i = 0; i < ns; i++) {
    char name[64];
    snprintf(name, sizeof name, "agent-file-%d", i);
    try_read(name, secrets[i]);
  }
  for (int i = 0; i < nr; i++) {
    char name[64], what[300];
    snprintf(name, sizeof name, "write-readonly-%d", i);
    snprintf(what, sizeof what, "open(%s, O_WRONLY|O_APPEND)", readonly[i]);
    int fd = open(readonly[i], O_WRONLY | O_APPEND);
    verdict(name, fd >= 0, what);
    if (fd >= 0) close(fd);
  }
  try_read("host-sys", "/sys/kernel/mm/transparent_hugepage/enabled");
  try_read("host-dev-iommu", "/dev/iommu");
  {
    char cmd[256] = "";
    int fd = open("/proc/1/cmdline", O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, cmd, sizeof cmd - 1) : -1;
    if (fd >= 0) close(fd);
    if (n > 0) {
      cmd[n] = 0;
      if (strstr(cmd, "bwrap") && !strstr(cmd, "java")) {
        probe("agent-environ", "nothing", "pid 1 here is %s (the sandbox's init), not the agent", cmd);
      } else {
        probe("agent-environ", "LEAK", "pid 1 here is %s", cmd);
      }
    } else {
      verdict("agent-environ", 0, "read(/proc/1/cmdline)");
    }
  }

  // the API server, and anything else on the host's network
  const char *kh = getenv("KUBERNETES_SERVICE_HOST"), *kp = getenv("KUBERNETES_SERVICE_PORT");
  if (kh && kp) {
    try_connect("apiserver-env", kh, atoi(kp));
  } else {
    probe("apiserver-env", "nothing", "no KUBERNETES_SERVICE_HOST in the environment");
  }
  try_connect("apiserver-loopback", "127.0.0.1", 6443);
  for (int i = 0; i < nc; i++) {
    char name[64], host[64];
    snprintf(name, sizeof name, "connect-%d", i);
    snprintf(host, sizeof host, "%s", connects[i]);
    char *colon = strrchr(host, ':');
    if (!colon) continue;
    *colon = 0;
    try_connect(name, host, atoi(colon + 1));
  }

  // other processes: the agent, the victim VM, anything outside
  {
    DIR *d = opendir("/proc");
    char seen[1024] = "";
    int foreign = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
      if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
      char p[300], comm[64] = "";
      snprintf(p, sizeof p, "/proc/%s/comm", e->d_name);
      int fd = open(p, O_RDONLY);
      ssize_t n = fd >= 0 ? read(fd, comm, sizeof comm - 1) : 0;
      if (fd >= 0) close(fd);
      comm[n > 0 ? n - 1 : 0] = 0;
      if (strcmp(comm, "bwrap") && strcmp(comm, "compromised-vm")) foreign++;
      size_t l = strlen(seen);
      if (l < sizeof seen - 80) snprintf(seen + l, sizeof seen - l, "%s%.12s:%.15s", l ? "," : "", e->d_name, comm);
    }
    if (d) closedir(d);
    probe("proc-list", foreign ? "LEAK" : "nothing", "/proc lists only %s", seen);
  }
  if (agent > 0) {
    char p[64];
    snprintf(p, sizeof p, "/proc/%ld/environ", agent);
    try_read("agent-proc-environ", p);
    errno = 0;
    verdict("signal-agent", kill(agent, 0) == 0, "kill(agent pid, 0)");
  }
  if (victim > 0) {
    char p[64];
    snprintf(p, sizeof p, "/proc/%ld/fd/7", victim);
    try_read("victim-memfd", p);
    snprintf(p, sizeof p, "/proc/%ld/mem", victim);
    try_read("victim-mem", p);
    verdict("signal-victim", kill(victim, SIGKILL) == 0, "kill(victim pid, SIGKILL)");
    verdict("ptrace-victim", ptrace(PTRACE_ATTACH, victim, 0, 0) == 0, "ptrace(PTRACE_ATTACH, victim)");
  }
  verdict("ptrace-init", ptrace(PTRACE_ATTACH, 1, 0, 0) == 0, "ptrace(PTRACE_ATTACH, 1)");
  // everything this process may signal, but itself and its namespace's init: nothing else exists here
  verdict("kill-all", kill(-1, SIGKILL) == 0, "kill(-1, SIGKILL)");

  // its limits
  struct rlimit rl;
  getrlimit(RLIMIT_MEMLOCK, &rl);
  struct rlimit above = {.rlim_cur = rl.rlim_max + 4096, .rlim_max = rl.rlim_max};
  verdict("memlock-soft-above-hard", setrlimit(RLIMIT_MEMLOCK, &above) == 0, "setrlimit(MEMLOCK soft > hard)");
  struct rlimit raise = {.rlim_cur = rl.rlim_max * 2, .rlim_max = rl.rlim_max * 2};
  verdict("memlock-raise-hard", setrlimit(RLIMIT_MEMLOCK, &raise) == 0, "setrlimit(MEMLOCK hard x2)");
  verdict("memlock-raise-syscall", syscall(SYS_setrlimit, RLIMIT_MEMLOCK, &raise) == 0, "setrlimit syscall (hard x2)");
  getrlimit(RLIMIT_MEMLOCK, &rl);
  probe("memlock-now", rl.rlim_cur == limit && rl.rlim_max == limit ? "nothing" : "LEAK",
        "RLIMIT_MEMLOCK is %llu/%llu, set from outside to %zu", (unsigned long long)rl.rlim_cur,
        (unsigned long long)rl.rlim_max, limit);
  if (iommufd >= 0) {
    errno = 0;
    int rc = pin(iommufd, ioas, limit);
    if (rc == 0) probe("pin-beyond-limit", "LEAK", "IOMMU_IOAS_MAP of %zu more bytes succeeded", limit);
    else probe("pin-beyond-limit", "refused", "IOMMU_IOAS_MAP of %zu more bytes: %s", limit, strerrorname_np(errno));
  } else {
    long ring = io_uring_setup(1);
    int rc = ring >= 0 ? io_uring_pin(ring, limit) : -1;
    if (rc == 0) probe("pin-beyond-limit", "LEAK", "IORING_REGISTER_BUFFERS of %zu more bytes succeeded", limit);
    else probe("pin-beyond-limit", "refused", "IORING_REGISTER_BUFFERS of %zu more bytes: %s", limit, strerrorname_np(errno));
    if (ring >= 0) close(ring);
  }

  // more privilege: mounts, namespaces, eBPF
  verdict("mount-tmpfs", mount("none", "/tmp", "tmpfs", 0, NULL) == 0, "mount(tmpfs, /tmp)");
  verdict("unshare-user", unshare(CLONE_NEWUSER) == 0, "unshare(CLONE_NEWUSER)");
  verdict("unshare-mount", unshare(CLONE_NEWNS) == 0, "unshare(CLONE_NEWNS)");
  {
    long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid(pid, NULL, 0);
    verdict("clone-newuser", pid > 0, "clone(CLONE_NEWUSER)");
  }
  {
    int fd = open("/proc/self/ns/user", O_RDONLY);
    verdict("setns-user", fd >= 0 && setns(fd, CLONE_NEWUSER) == 0, "setns(own user ns)");
    if (fd >= 0) close(fd);
  }
  {
    struct bpf_insn insns[] = {{.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .imm = 0},
                               {.code = BPF_JMP | BPF_EXIT}};
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
    attr.insns = (uintptr_t)insns;
    attr.insn_cnt = 2;
    attr.license = (uintptr_t) "GPL";
    long fd = syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof attr);
    verdict("bpf-prog-load", fd >= 0, "bpf(BPF_PROG_LOAD)");
  }

  // a child in its own session that keeps pinning: teardown must still end it (the test checks the kernel)
  int ready[2];
  if (pipe(ready) == 0) {
    pid_t child = fork();
    if (child == 0) {
      setsid();
      if (fork() > 0) _exit(0);  // and a grandchild, reparented to the namespace's init
      long ring = iommufd >= 0 ? -1 : io_uring_setup(1);
      int rc = iommufd >= 0 ? pin(iommufd, ioas, 64 << 10) : ring >= 0 ? io_uring_pin(ring, 64 << 10) : -1;
      char msg[64];
      int len = snprintf(msg, sizeof msg, "%d %s\n", getpid(), rc ? strerrorname_np(errno) : "OK");
      if (write(ready[1], msg, len) != len) _exit(1);
      for (;;) pause();
    }
    waitpid(child, NULL, 0);
    close(ready[1]);
    char msg[64] = "";
    ssize_t n = read(ready[0], msg, sizeof msg - 1);
    msg[n > 0 ? n - 1 : 0] = 0;
    probe("setsid-child", "nothing", "a setsid grandchild (pid here, map of 64 KiB) runs: %s; teardown must end it", msg);
  }
  printf("PROBE-DONE\n");
  fflush(stdout);
  hold();
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "probe")) {
    return probe_main(argc, argv);
  }
  return legacy(argc, argv);
}
