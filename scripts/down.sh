#!/usr/bin/env bash
# `make down`: `kubeadm reset -f` on the cluster `make up` made (stops the kubelet, removes the
# pods through the CRI, deletes the files under $OUT/root), then stops the private containerd.
# Also stops a standalone store from `make up-store`.
set -euo pipefail

OUT=$(realpath -m "${OUT:-_out}")
ROOTFS=$OUT/root
BIN_DIR=${BIN_DIR:-target/release}

stop_pid() {
	local name=$1 pidfile=$2 pid
	[ -f "$pidfile" ] || return 0
	pid=$(cat "$pidfile")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		for _ in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "down: pid $pid ignored SIGTERM for 10s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		echo "down: stopped $name (pid $pid)"
	fi
	rm -f "$pidfile"
}

stop_pid prometheus "$OUT/prometheus.pid"

sock=$OUT/containerd/containerd.sock
if [ -d "$ROOTFS/etc/kubernetes" ] || [ -f "$ROOTFS/run/kubeadm/kubelet-supervisor.pid" ]; then
	kubeadm=$BIN_DIR/kubeadm
	[ -x "$kubeadm" ] || kubeadm=$(command -v kubeadm || true)
	if [ -n "$kubeadm" ]; then
		args=()
		[ -S "$sock" ] && args+=("--cri-socket=unix://$sock")
		"$kubeadm" --rootfs "$ROOTFS" reset -f "${args[@]}"
	else
		echo "down: no kubeadm binary found in $BIN_DIR; build it (make up builds it)" >&2
	fi
fi

if [ -f "$OUT/containerd/containerd.pid" ]; then
	# Shims of this containerd outlive it; their command lines name our socket.
	shims=$(pgrep -f "containerd-shim.*-address $sock" || true)
	stop_pid containerd "$OUT/containerd/containerd.pid"
	for pid in $shims; do kill -KILL "$pid" 2>/dev/null || true; done
	# Snapshot and sandbox mounts under our root: unmount deepest first.
	awk -v d="$OUT/containerd/" 'index($5, d) == 1 {print length($5), $5}' /proc/self/mountinfo |
		sort -rn | cut -d' ' -f2- | while read -r m; do umount -l "$m" 2>/dev/null || true; done
fi

for name in controller-manager scheduler apiserver store; do
	stop_pid "$name" "$OUT/$name.pid"
done
