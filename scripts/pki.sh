#!/usr/bin/env bash
# Writes a kubeadm-shaped PKI and the components' kubeconfigs for `make up`, once (existing
# files are kept): $OUT/pki/{ca,apiserver,sa,admin,kube-scheduler,kube-controller-manager}.* and
# $OUT/{admin,scheduler,controller-manager}.conf. Needs openssl.
set -euo pipefail

OUT=${OUT:-_out}
PORT=${APISERVER_PORT:-6443}
pki=$OUT/pki
mkdir -p "$pki"
umask 077

if [ ! -s "$pki/ca.key" ]; then
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
		-keyout "$pki/ca.key" -out "$pki/ca.crt" -subj "/CN=kubernetes" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign" 2>/dev/null
fi

# sign NAME SUBJECT EXTENSIONS: a P-256 key and a one-year certificate signed by the CA.
sign() {
	local name=$1 subject=$2 ext=$3
	[ -s "$pki/$name.crt" ] && return 0
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$pki/$name.key" -out "$pki/$name.csr" -subj "$subject" 2>/dev/null
	openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
		-CAcreateserial -days 365 -out "$pki/$name.crt" -extfile <(printf '%s\n' "$ext") 2>/dev/null
	rm -f "$pki/$name.csr"
}

client_ext="keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
sign apiserver "/CN=kube-apiserver" "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.96.0.1"
# kubeadm's admin.conf identity: group kubeadm:cluster-admins, bound to cluster-admin.
sign admin "/O=kubeadm:cluster-admins/CN=kubernetes-admin" "$client_ext"
sign kube-scheduler "/CN=system:kube-scheduler" "$client_ext"
sign kube-controller-manager "/CN=system:kube-controller-manager" "$client_ext"

if [ ! -s "$pki/sa.key" ]; then
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/sa.key" 2>/dev/null
	openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
fi

# kubeconfig FILE USER CERT: a kubeconfig with the CA and the client pair embedded.
kubeconfig() {
	local file=$1 user=$2 cert=$3
	cat >"$file" <<CONF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$PORT
    certificate-authority-data: $(base64 -w0 <"$pki/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 <"$pki/$cert.crt")
    client-key-data: $(base64 -w0 <"$pki/$cert.key")
contexts:
- name: $user@local
  context:
    cluster: local
    user: $user
current-context: $user@local
CONF
}
kubeconfig "$OUT/admin.conf" kubernetes-admin admin
kubeconfig "$OUT/scheduler.conf" system:kube-scheduler kube-scheduler
kubeconfig "$OUT/controller-manager.conf" system:kube-controller-manager kube-controller-manager
