# docker.io/vfiovm/guest-demo:<version>: the Linux demo guest (6.12 kernel + static busybox initramfs,
# e2e/guest/linux), boot files only. Build context: $VFIOVM_CACHE/guest/linux (e2e/guest/build.sh linux)
FROM scratch
COPY vmlinuz initrd.img /boot/
