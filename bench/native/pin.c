/* The floor for p6 (docs/performance.md): the syscalls vfiovm's VM-side launcher (dev.vfiovm.node.VmProcessMain)
 * makes to pin guest RAM on the io_uring backend - memfd_create, ftruncate, mmap(MAP_SHARED), io_uring_setup,
 * IORING_REGISTER_BUFFERS - in C, on the same size.
 *   pin SIZE ITERS   runs the sequence ITERS times (unpinning in between), prints "NS <median ns>" per line
 *   pin SIZE         the launcher's protocol: pins once, writes "MAPPED SIZE 0" on fd 3, holds until EOF on fd 3
 * Built by the benchmark with cc -O2 in the same run. */
#define _GNU_SOURCE
#include <linux/io_uring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int main(int argc, char **argv) {
  int memfd, ring;
  void *mem;
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
