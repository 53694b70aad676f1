/*
 * vfiovm-busybox: Debian's static busybox under a name of our own, for the node image's
 * /usr/local/bin/vfiovm-busybox. Node pods copy this one file into an emptyDir and run it inside a tenant's
 * boot-file image (which has no shell): `vfiovm-busybox cp -L /boot/vmlinuz /vfiovm-boot/...`.
 *
 * Why not a plain copy of busybox: busybox picks the applet from argv[0], and from argv[1] only when argv[0]'s
 * name starts with "busybox"; a copy named vfiovm-busybox answers "vfiovm-busybox: applet not found".
 * So this static program carries the busybox binary inside it (.incbin of BUSYBOX, a path given at build
 * time), writes it to a memfd and execs that as "busybox ARG...": one self-contained file, any name.
 *
 * Build: gcc -static -Os -DBUSYBOX='"/bin/busybox"' -o vfiovm-busybox vfiovm-busybox.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef BUSYBOX
#error "build with -DBUSYBOX='\"/path/to/static/busybox\"'"
#endif
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U /* Linux 6.3+: executable even when vm.memfd_noexec says otherwise */
#endif

__asm__(".section .rodata\n"
        ".balign 16\n"
        ".global vfiovm_busybox_start\n"
        "vfiovm_busybox_start:\n"
        ".incbin \"" BUSYBOX "\"\n"
        ".global vfiovm_busybox_end\n"
        "vfiovm_busybox_end:\n"
        ".previous\n");
extern const char vfiovm_busybox_start[], vfiovm_busybox_end[];

int main(int argc, char **argv, char **envp) {
  (void)argc;
  int fd = memfd_create("busybox", MFD_CLOEXEC | MFD_EXEC);
  if (fd < 0 && errno == EINVAL) fd = memfd_create("busybox", MFD_CLOEXEC); /* kernels before 6.3 */
  if (fd < 0) { perror("vfiovm-busybox: memfd_create"); return 127; }
  const char *p = vfiovm_busybox_start;
  size_t left = (size_t)(vfiovm_busybox_end - vfiovm_busybox_start);
  while (left > 0) {
    ssize_t n = write(fd, p, left);
    if (n < 0) { if (errno == EINTR) continue; perror("vfiovm-busybox: write"); return 127; }
    p += n; left -= (size_t)n;
  }
  argv[0] = "busybox";
  syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
  perror("vfiovm-busybox: execveat");
  return 127;
}
