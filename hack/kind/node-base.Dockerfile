# Base of the vfiovm image on kind (Jib's `from`, see run.sh): the operator and the node pods run the same image,
# and a node pod's VM process is QEMU, so it carries
#   - QEMU 10.0.2 (qemu-system-x86 from bookworm-backports: the iommufd backend and fd passing need QEMU >= 9.0;
#     it installs on bookworm with no libc change; QEMU 10 needs seabios > 1.16.3, from backports too),
#   - openjdk-17-jre-headless (the jar),
#   - /usr/local/bin/vfiovm-busybox: Debian's static busybox inside a launcher that works under that name
#     (e2e/node-image/vfiovm-busybox.c); node pods copy it into an emptyDir so a tenant's boot-file image
#     needs no shell.
# Build context: the e2e/ directory.
#   docker build -t vfiovm/node-base:<version> -f hack/kind/node-base.Dockerfile e2e
FROM debian:bookworm-slim AS busybox
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev busybox-static \
 && rm -rf /var/lib/apt/lists/*
COPY node-image/vfiovm-busybox.c /src/vfiovm-busybox.c
RUN gcc -static -Os -Wall -Werror -DBUSYBOX='"/bin/busybox"' -o /vfiovm-busybox /src/vfiovm-busybox.c \
 && /vfiovm-busybox true

FROM debian:bookworm-slim
ARG QEMU_VERSION=1:10.0.2+ds-2+deb13u1~bpo12+1
# bookworm-backports from the image's own mirror: its deb822 source gets the suite added
RUN sed -i -E 's/^(Suites: bookworm bookworm-updates)$/\1 bookworm-backports/' /etc/apt/sources.list.d/debian.sources \
 && grep -q bookworm-backports /etc/apt/sources.list.d/debian.sources \
 && mkdir -p /usr/share/man/man1 \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      openjdk-17-jre-headless ca-certificates \
      "qemu-system-x86=$QEMU_VERSION" "qemu-system-common=$QEMU_VERSION" "qemu-system-data=$QEMU_VERSION" \
      seabios/bookworm-backports \
 && qemu-system-x86_64 --version | grep -q '^QEMU emulator version 10\.0\.2 ' \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*
COPY --from=busybox /vfiovm-busybox /usr/local/bin/vfiovm-busybox
LABEL dev.vfiovm.qemu=$QEMU_VERSION
