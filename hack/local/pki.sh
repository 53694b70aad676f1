# Certificates and kubeconfigs for the local cluster (sourced by up.sh). One CA signs everything;
# generated once per $LOCAL_DATA and reused by later `up`s.
# shellcheck shell=bash

# cert NAME CN ORG [SANS]: a client (or, with SANS, serving) certificate signed by the cluster CA.
cert() {
  local name=$1 cn=$2 org=$3 sans=${4:-}
  [[ -f $PKI/$name.crt ]] && return 0
  local ext; ext=$(mktemp)
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [[ -n $sans ]]; then echo "extendedKeyUsage=serverAuth,clientAuth"; echo "subjectAltName=$sans";
    else echo "extendedKeyUsage=clientAuth"; fi
  } > "$ext"
  local subj="/CN=$cn"; [[ -n $org ]] && subj="/O=$org$subj"
  openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$ext" "$PKI/$name.csr"
}

# kubeconfig NAME CERT: a kubeconfig for the API server authenticating with certificate CERT.
kubeconfig() {
  local name=$1 crt=$2
  cat > "$LOCAL_DATA/$name.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: vfiovm-local
  cluster:
    server: $APISERVER_URL
    certificate-authority: $PKI/ca.crt
users:
- name: $name
  user:
    client-certificate: $PKI/$crt.crt
    client-key: $PKI/$crt.key
contexts:
- name: vfiovm-local
  context: {cluster: vfiovm-local, user: $name}
current-context: vfiovm-local
KC
}

make_pki() {
  mkdir -p "$PKI" && chmod 700 "$PKI"
  if [[ ! -f $PKI/ca.crt ]]; then
    openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -subj "/CN=vfiovm-local-ca" \
      -days 3650 -out "$PKI/ca.crt" 2>/dev/null
  fi
  [[ -f $PKI/sa.key ]] || { openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null && openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null; }
  cert apiserver kube-apiserver "" \
    "IP:$NODE_IP,IP:127.0.0.1,IP:$KUBERNETES_SVC_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
  cert admin admin system:masters
  cert controller-manager system:kube-controller-manager ""
  cert scheduler system:kube-scheduler ""
  cert kubelet "system:node:$NODE_NAME" system:nodes
  cert kube-proxy system:kube-proxy ""
  kubeconfig admin admin
  kubeconfig controller-manager controller-manager
  kubeconfig scheduler scheduler
  kubeconfig kubelet kubelet
  kubeconfig kube-proxy kube-proxy
}
