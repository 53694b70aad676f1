#!/usr/bin/env bash
# Proves the local node's images boot a guest, without the operator: a pod shaped like a node pod's boot path
# (KubeVirt's containerDisk trick) — an init container from the node image copies /usr/local/bin/vfiovm-busybox
# into an emptyDir; an unprivileged, read-only init container from docker.io/vfiovm/guest-tiny (from scratch,
# no shell) copies /boot/kernel.elf out with it; then the node image's QEMU 10 boots that kernel (TCG, 4 MiB)
# and the guest's serial console is the pod's log. Needs the images imported (load-image.sh).
source "$(dirname "$0")/lib.sh"
GUEST_IMAGE=docker.io/vfiovm/guest-tiny:$PROJECT_VERSION
POD=vfiovm-local-guest-smoke
step "guest smoke pod ($GUEST_IMAGE booted by the QEMU of $OPERATOR_IMAGE)"
kubectl_ -n default delete pod "$POD" --ignore-not-found --wait=true >/dev/null
kubectl_ -n default apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $POD}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  securityContext: {fsGroup: 65532}
  volumes:
    - {name: tools, emptyDir: {}}
    - {name: boot, emptyDir: {}}
  initContainers:
    - name: tools
      image: $OPERATOR_IMAGE
      imagePullPolicy: Never
      command: [/usr/local/bin/vfiovm-busybox, cp, /usr/local/bin/vfiovm-busybox, /vfiovm-tools/vfiovm-busybox]
      volumeMounts: [{name: tools, mountPath: /vfiovm-tools}]
    - name: boot-files
      image: $GUEST_IMAGE
      imagePullPolicy: Never
      command: [/vfiovm-tools/vfiovm-busybox, cp, -L, /boot/kernel.elf, /vm/boot/kernel]
      securityContext: {runAsUser: 65532, runAsGroup: 65532, allowPrivilegeEscalation: false,
                        capabilities: {drop: [ALL]}, readOnlyRootFilesystem: true}
      volumeMounts: [{name: tools, mountPath: /vfiovm-tools, readOnly: true}, {name: boot, mountPath: /vm/boot}]
  containers:
    - name: vm
      image: $OPERATOR_IMAGE
      imagePullPolicy: Never
      command: [qemu-system-x86_64, -accel, tcg, -M, q35, -m, 4M, -nodefaults, -no-user-config, -display, none,
                -serial, stdio, -kernel, /vm/boot/kernel]
      volumeMounts: [{name: boot, mountPath: /vm/boot, readOnly: true}]
YAML
ok=0 t0=$SECONDS
while (( SECONDS - t0 < 120 )); do
  if kubectl_ -n default logs "$POD" -c vm 2>/dev/null | grep -q '^vfiovm-guest: booted'; then ok=1; break; fi
  sleep 1
done
(( ok )) && info "guest booted ($((SECONDS - t0))s; kubectl logs $POD -c vm)"
kubectl_ -n default logs "$POD" -c vm 2>/dev/null | head -2 | sed 's/^/    /' >&2 || true
(( ok )) || kubectl_ -n default describe pod "$POD" | tail -20 >&2
kubectl_ -n default delete pod "$POD" --wait=true >/dev/null
(( ok )) || die "guest smoke pod: no 'vfiovm-guest: booted' in its log"
info "guest smoke pod: the tiny guest booted"
