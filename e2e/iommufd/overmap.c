// A stand-in VMM for the iommufd tier, run by the node agent as --vm-command: it starts with the agent's
// fds in place (VFIOVM_MEMFD = guest memory, already mapped and pinned; VFIOVM_IOMMUFD; VFIOVM_IOAS_ID) and
// asks the kernel to pin the guest memory again, N times (argv[1], default 2): each time a fresh mmap of the
// memfd and a new IOMMU_IOAS_MAP, which iommufd charges anew. It prints one line per attempt, stops at the
// first refusal, then holds its pins until SIGTERM.
// With per-process accounting the charge goes to this process's own mm (a fresh one: exec'ing this command
// left the VM process's earlier pins on its old mm), so the attempt that takes it past its RLIMIT_MEMLOCK
// fails with ENOMEM. Self-contained (uAPI values from linux/iommufd.h, Linux 6.12).
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

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  int memfd = env("VFIOVM_MEMFD"), iommufd = env("VFIOVM_IOMMUFD");
  uint32_t ioas = env("VFIOVM_IOAS_ID");
  size_t len = env("VFIOVM_MEMORY_BYTES");
  int attempts = argc > 1 ? atoi(argv[1]) : 2;
  for (int i = 1; i <= attempts; i++) {
    void *again = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (again == MAP_FAILED) {
      printf("overmap: mmap: %s\n", strerror(errno));
      return 1;
    }
    struct iommu_ioas_map m = {.size = sizeof m, .flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
                               .ioas_id = ioas, .user_va = (uintptr_t)again, .length = len};
    int rc = ioctl(iommufd, IOMMU_IOAS_MAP, &m);
    printf("overmap: map %d +%zu bytes -> %s\n", i, len, rc ? strerrorname_np(errno) : "OK");
    if (rc) {
      break;
    }
  }
  printf("overmap: done\n");
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigprocmask(SIG_BLOCK, &term, NULL);
  int sig;
  sigwait(&term, &sig);
  return 0;
}
