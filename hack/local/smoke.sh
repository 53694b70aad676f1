#!/usr/bin/env bash
# Proves the local node really runs pods: a privileged pod (as node pods are) that reaches the API
# server through the `kubernetes` Service (kube-proxy) with its service-account token.
source "$(dirname "$0")/lib.sh"
step "smoke pod"
kubectl_ -n default delete pod vfiovm-local-smoke --ignore-not-found --wait=true >/dev/null
kubectl_ -n default apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: vfiovm-local-smoke}
spec:
  restartPolicy: Never
  containers:
    - name: smoke
      image: docker.io/vfiovm-local/busybox:1
      imagePullPolicy: Never
      securityContext: {privileged: true}
      command: ["/bin/sh", "-c"]
      args:
        - |
          set -e
          grep CapEff /proc/self/status
          test -s /var/run/secrets/kubernetes.io/serviceaccount/token
          token=\$(cat /var/run/secrets/kubernetes.io/serviceaccount/token)
          wget -q -O- --no-check-certificate --header "Authorization: Bearer \$token" \\
            "https://\$KUBERNETES_SERVICE_HOST:\$KUBERNETES_SERVICE_PORT/version" | grep gitVersion
          echo "reached the API server at \$KUBERNETES_SERVICE_HOST:\$KUBERNETES_SERVICE_PORT"
YAML
wait_for 120 "smoke pod finished" sh -c "$BIN/kubectl --kubeconfig $KUBECONFIG_ADMIN -n default get pod vfiovm-local-smoke -o jsonpath='{.status.phase}' | grep -qx -e Succeeded -e Failed"
kubectl_ -n default logs vfiovm-local-smoke | sed 's/^/    /' >&2
phase=$(kubectl_ -n default get pod vfiovm-local-smoke -o jsonpath='{.status.phase}')
kubectl_ -n default delete pod vfiovm-local-smoke --wait=true >/dev/null
[[ $phase == Succeeded ]] || die "smoke pod $phase"
info "smoke pod Succeeded"
