# docker.io/vfiovm/guest-tiny:<version>: the bare-metal multiboot demo guest (e2e/guest/tiny), boot files only.
# Build context: $VFIOVM_CACHE/guest/tiny (e2e/guest/build.sh tiny)
FROM scratch
COPY kernel.elf /boot/kernel.elf
