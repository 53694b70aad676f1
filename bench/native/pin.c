/* The floor for p6 (docs/performance.md): the syscalls vfiovm's VM-side launcher (dev.vfiovm.node.VmProcessMain)
 * makes to pin guest RAM on the io_uring backend - memfd_create, ftruncate, mmap(MAP_SHARED), io_uring_setup,
 * IORING_REGISTER_BUFFERS - in C, on the same size; and, on the iommufd backend (the p6 guest step,
 * dev.vfiovm.bench.GuestPin), the sequence a VMM makes - memfd_create, ftruncate, mmap, open /dev/iommu,
 * IOMMU_IOAS_ALLOC, open the VFIO cdev, VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_ATTACH_IOMMUFD_PT, IOMMU_IOAS_MAP.
 *   pin SIZE ITERS   runs the sequence ITERS times (unpinning in between), prints "NS <median ns>" per line
 *   pin SIZE         the launcher's protocol: pins once, writes "MAPPED SIZE 0" on fd 3, holds until EOF on fd 3
 *   pin iommufd SIZE ITERS CDEV   the iommufd sequence ITERS times; per iteration one line
 *                    "NS <ns> BEFORE <VmPin kB> MAPPED <VmPin kB> AFTER <VmPin kB>" (this process's
 *                    /proc/self/status before, once mapped, after unmap + close)
 * Built by the benchmark with cc -O2 in the same run (the guest step: by e2e/iommufd/build-payloads.sh). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/io_uring.h>
#if __has_include(<linux/iommufd.h>)
/* the iommufd uAPI (Linux >= 6.2 headers; here: -I the 6.12 headers of hack/setup.d/40-uapi-headers.sh) */
#define PIN_IOMMUFD 1
#include <linux/iommufd.h>
#include <linux/vfio.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static int pin(long size, int *memfd, int *ring, void **mem) {
  struct io_uring_params p;
  struct iovec iov;
  *memfd = memfd_create("vfiovm-guest", MFD_CLOEXEC);
  if (*memfd < 0 || ftruncate(*memfd, size) < 0) { perror("memfd"); return -1; }
  *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, *memfd, 0);
  if (*mem == MAP_FAILED) { perror("mmap"); return -1; }
  memset(&p, 0, sizeof p);
  *ring = (int) syscall(__NR_io_uring_setup, 1, &p);
  if (*ring < 0) { perror("io_uring_setup"); return -1; }
  iov.iov_base = *mem;
  iov.iov_len = size;
  if (syscall(__NR_io_uring_register, *ring, IORING_REGISTER_BUFFERS, &iov, 1) < 0) {
    perror("IORING_REGISTER_BUFFERS");
    return -1;
  }
  return 0;
}

static long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000L + t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
  long x = *(const long *) a, y = *(const long *) b;
  return x < y ? -1 : x > y;
}

/* VmPin of this process in kB (the kernel's pinned_vm, which iommufd raises for every page it pins) */
static long vm_pin_kb(void) {
  char line[256];
  long kb = -1;
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmPin: %ld kB", &kb) == 1) break;
  fclose(f);
  return kb;
}

static int iommufd_rounds(long size, int iters, const char *cdev) {
#ifndef PIN_IOMMUFD
  (void) size; (void) iters; (void) cdev; (void) vm_pin_kb;
  fprintf(stderr, "pin: built without linux/iommufd.h (cc -I DIR of the 6.12 uAPI headers)\n");
  return 2;
#else
  for (int i = 0; i < iters; i++) {
    long before = vm_pin_kb();
    long t0 = now_ns();
    int memfd = memfd_create("vfiovm-guest", MFD_CLOEXEC);
    if (memfd < 0 || ftruncate(memfd, size) < 0) { perror("memfd"); return 1; }
    void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (mem == MAP_FAILED) { perror("mmap"); return 1; }
    int iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
    if (iommufd < 0) { perror("/dev/iommu"); return 1; }
    struct iommu_ioas_alloc alloc = { .size = sizeof alloc };
    if (ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc)) { perror("IOMMU_IOAS_ALLOC"); return 1; }
    int dev = open(cdev, O_RDWR | O_CLOEXEC);
    if (dev < 0) { perror(cdev); return 1; }
    struct vfio_device_bind_iommufd bind = { .argsz = sizeof bind, .iommufd = iommufd };
    if (ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &bind)) { perror("VFIO_DEVICE_BIND_IOMMUFD"); return 1; }
    struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof attach, .pt_id = alloc.out_ioas_id };
    if (ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach)) { perror("VFIO_DEVICE_ATTACH_IOMMUFD_PT"); return 1; }
    struct iommu_ioas_map map = { .size = sizeof map, .ioas_id = alloc.out_ioas_id,
        .flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE, .user_va = (unsigned long) mem, .length = size };
    if (ioctl(iommufd, IOMMU_IOAS_MAP, &map)) { perror("IOMMU_IOAS_MAP"); return 1; }
    long ns = now_ns() - t0;
    long mapped = vm_pin_kb();
    struct iommu_ioas_unmap unmap = { .size = sizeof unmap, .ioas_id = alloc.out_ioas_id, .iova = map.iova,
        .length = size };
    if (ioctl(iommufd, IOMMU_IOAS_UNMAP, &unmap)) { perror("IOMMU_IOAS_UNMAP"); return 1; }
    close(dev);
    close(iommufd);
    munmap(mem, size);
    close(memfd);
    printf("NS %ld BEFORE %ld MAPPED %ld AFTER %ld\n", ns, before, mapped, vm_pin_kb());
    fflush(stdout);
  }
  return 0;
#endif
}

int main(int argc, char **argv) {
  int memfd, ring;
  void *mem;
  if (argc == 5 && strcmp(argv[1], "iommufd") == 0) return iommufd_rounds(atol(argv[2]), atoi(argv[3]), argv[4]);
  if (argc < 2) { fprintf(stderr, "usage: pin SIZE [ITERS]\n"); return 2; }
  long size = atol(argv[1]);
  if (argc == 2) {
    char line[64], buf[64];
    if (pin(size, &memfd, &ring, &mem) < 0) { dprintf(3, "ERROR pin\n"); return 1; }
    dprintf(3, "MAPPED %ld 0\n", size);
    while (read(3, buf, sizeof buf) > 0) {}
    (void) line;
    return 0;
  }
  int iters = atoi(argv[2]);
  long *ns = calloc(iters, sizeof *ns);
  for (int i = 0; i < iters; i++) {
    long t0 = now_ns();
    if (pin(size, &memfd, &ring, &mem) < 0) return 1;
    ns[i] = now_ns() - t0;
    close(ring);
    munmap(mem, size);
    close(memfd);
  }
  qsort(ns, iters, sizeof *ns, cmp);
  printf("NS %ld\n", ns[iters / 2]);
  return 0;
}
