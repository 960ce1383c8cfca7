#!/usr/bin/env bash
# `make up`: a one-node cluster the kubeadm way. A private containerd under $OUT
# (scripts/containerd-up.sh; CRI_SOCKET=unix:///... uses an existing runtime instead), then
# `kubeadm init --rootfs=$OUT/root`: the images of this project's binaries are built and
# imported, the supervised kubelet runs kube-store, kube-apiserver, kube-controller-manager and
# kube-scheduler as static pods, the node is registered, labelled and tainted, the bootstrap
# token, cluster-info and the addons are created. Everything lives under $OUT.
set -euo pipefail

OUT=$(realpath -m "${OUT:-_out}")
ROOTFS=$OUT/root
BIN_DIR=$(realpath "${BIN_DIR:-target/release}")
mkdir -p "$ROOTFS"

if [ -f "$ROOTFS/etc/kubernetes/admin.conf" ]; then
	echo "up: a cluster already exists in $ROOTFS (make down first)"
	exit 0
fi

if [ -z "${CRI_SOCKET:-}" ]; then
	OUT=$OUT ROOTFS=$ROOTFS scripts/containerd-up.sh
	CRI_SOCKET=unix://$OUT/containerd/containerd.sock
fi

# The default route's address when there is one, else loopback (a VM with loopback only).
ADVERTISE=${ADVERTISE:-$(ip -4 route get 1.1.1.1 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "src") {print $(i + 1); exit}}')}
ADVERTISE=${ADVERTISE:-127.0.0.1}

"$BIN_DIR/kubeadm" --rootfs "$ROOTFS" init \
	"--binaries-dir=$BIN_DIR" \
	"--cri-socket=$CRI_SOCKET" \
	"--apiserver-advertise-address=$ADVERTISE" \
	--pod-network-cidr=10.244.0.0/16 \
	--ignore-preflight-errors=Swap \
	${KUBEADM_FLAGS:-}

cat <<MSG

up: the cluster runs on containerd ($CRI_SOCKET); the kubelet is supervised by kubeadm
    (log: $ROOTFS/var/log/kubelet.log).
  try:   export KUBECONFIG=$ROOTFS/etc/kubernetes/admin.conf
         kubectl get nodes,pods -A
  stop:  make down
MSG
