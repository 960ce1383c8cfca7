#!/usr/bin/env bash
# Starts a private containerd for `make up`: its own root, state, socket and CNI conf dir under
# $OUT, with the three settings shared/ENVIRONMENT.md found necessary on these VMs
# (restrict_oom_score_adj, cgroupfs, CNI plugins in /usr/lib/cni). Idempotent.
set -euo pipefail

OUT=$(realpath -m "${OUT:-_out}")
ROOTFS=${ROOTFS:-$OUT/root}
dir=$OUT/containerd
sock=$dir/containerd.sock
mkdir -p "$dir" "$ROOTFS/etc/cni/net.d"

alive() { kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" != Z ]; }
if [ -f "$dir/containerd.pid" ] && alive "$(cat "$dir/containerd.pid")"; then
	echo "up: containerd already running (pid $(cat "$dir/containerd.pid")), socket $sock"
	exit 0
fi

cat >"$dir/config.toml" <<TOML
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$sock"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE:-localhost/kube-rs-fleet/pause:3.10}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$ROOTFS/etc/cni/net.d"
TOML

nohup setsid containerd --config "$dir/config.toml" >>"$dir/containerd.log" 2>&1 </dev/null &
echo $! >"$dir/containerd.pid"
for _ in $(seq 1 300); do
	if [ -S "$sock" ] && ctr --address "$sock" version >/dev/null 2>&1; then
		echo "up: containerd running (pid $(cat "$dir/containerd.pid")), socket $sock"
		exit 0
	fi
	if ! alive "$(cat "$dir/containerd.pid")"; then
		echo "up: containerd exited; last log lines ($dir/containerd.log):" >&2
		tail -n 30 "$dir/containerd.log" >&2
		exit 1
	fi
	sleep 0.1
done
echo "up: containerd did not answer on $sock within 30s" >&2
exit 1
