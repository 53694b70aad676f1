// A compromised VMM for the iommufd tier's scenario 5, run by the node agent as `--vm-command` in place of
// QEMU: the same chain (RLIMIT_MEMLOCK set from outside, the VM's host UID, no capabilities, no_new_privs, its
// own user namespace) and the same fds QEMU gets (env VFIOVM_IOMMUFD: a fresh iommufd; VFIOVM_DEVICE_FDS: the
// devices' VFIO cdevs, opened but not bound; VFIOVM_CONTROL_FD; VFIOVM_MEMORY_BYTES).
// It does what QEMU does (bind each device, allocate an IOAS, attach, map its guest memory: pinned, charged to
// its UID under per-user accounting), writes READY to the agent, then tries to pin more than its limit allows
// from every process it can make: a forked child (a copy of its mm) and an exec'd image (a fresh mm). With
// per-user accounting each attempt is checked against the UID's counter, which still holds the guest memory
// pinned first, so each gets ENOMEM; a smaller map that fits under the limit then succeeds in the exec'd image
// (the refusal is the limit, not a broken fd). One line per attempt ("compromised-vmm: ..."); then it holds
// its pins until SIGTERM. It attacks only once told (SIGUSR1, from the test, after the agent reported Running
// with the pins it read at READY), so what the agent reads is the state at READY, not a race with the exec.
// Usage: compromised-vmm [MORE_BYTES [FITS_BYTES]]   (defaults: VFIOVM_MEMORY_BYTES, 4 MiB)
// Self-contained: uAPI values from Linux 6.12 include/uapi/linux/iommufd.h and vfio.h; each ioctl is small and
// checked, as in tools/testing/selftests/iommu.
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

int main(int argc, char **argv) {
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
