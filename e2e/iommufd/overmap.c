// A stand-in VM for the iommufd tier, run by the node agent as --vm-command: it starts with the agent's
// fds in place (VFIOVM_MEMFD = guest memory, already mapped and pinned; VFIOVM_IOMMUFD; VFIOVM_IOAS_ID),
// asks the kernel to pin the guest memory a second time (a new IOMMU_IOAS_MAP of a fresh mapping of the
// memfd, which iommufd charges again), prints the outcome on one line, then holds its pins until SIGTERM.
// With per-process accounting and memlock < 2 x memory, the second map must fail with ENOMEM: the VM is
// bounded by its own RLIMIT_MEMLOCK. Self-contained (uAPI values from linux/iommufd.h, Linux 6.12).
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

struct iommu_ioas_map {
  uint32_t size, flags, ioas_id, reserved;
  uint64_t user_va, length, iova;
};
#define IOMMU_IOAS_MAP _IO(';', 0x85)
#define IOMMU_IOAS_MAP_WRITEABLE (1 << 1)
#define IOMMU_IOAS_MAP_READABLE (1 << 2)

static long env(const char *name) {
  const char *v = getenv(name);
  if (!v) {
    printf("overmap: %s not set\n", name);
    exit(2);
  }
  return atol(v);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  int memfd = env("VFIOVM_MEMFD"), iommufd = env("VFIOVM_IOMMUFD");
  uint32_t ioas = env("VFIOVM_IOAS_ID");
  size_t len = env("VFIOVM_MEMORY_BYTES");
  void *again = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  if (again == MAP_FAILED) {
    printf("overmap: mmap: %s\n", strerror(errno));
    return 1;
  }
  struct iommu_ioas_map m = {.size = sizeof m, .flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
                             .ioas_id = ioas, .user_va = (uintptr_t)again, .length = len};
  int rc = ioctl(iommufd, IOMMU_IOAS_MAP, &m);
  printf("overmap: IOMMU_IOAS_MAP +%zu bytes -> %s\n", len, rc ? strerrorname_np(errno) : "OK");
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigprocmask(SIG_BLOCK, &term, NULL);
  int sig;
  sigwait(&term, &sig);
  return 0;
}
