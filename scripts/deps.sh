#!/usr/bin/env bash
# Installs what the build and the tests need, idempotently: only missing apt packages, with one
# `apt-get update` before installing and nothing at all when everything is present.
set -euo pipefail

# Debian packages and why the project needs them.
#   etcd-server  real etcd 3.4: the reference the store is tested and benchmarked against
#   etcd-client  etcdctl 3.4: the client the etcdctl suite drives the store with
#   prometheus   promtool (`promtool check metrics`) and a real scrape of /metrics
#   curl         raw HTTPS requests in the apiserver suite (status codes kubectl hides)
#   python3-venv a virtualenv for the official Python `kubernetes` client the suite also drives
#   openssl      `make up` writes its kubeadm-shaped PKI with it
#   containerd, runc, containernetworking-plugins
#                the container runtime (CRI v1) and CNI plugins (/usr/lib/cni) the kubelet suite
#                drives; the tests start their own containerd
#   busybox-static
#                the one static binary the pause and busybox test images are built from
#   bind9-dnsutils
#                dig: the kube-dns suite queries the server with it over UDP and TCP
#   iptables, nftables, conntrack
#                what kube-proxy programs (iptables-restore, nft) and how it deletes stale UDP
#                flows (conntrack -D); its tests drive them inside throwaway network namespaces
#   iproute2     `ip netns` / veth pairs for those namespaces
#   strace       the store's durability test checks which sync calls acknowledge a put
# protoc is not needed: the proto crate builds with the vendored protoc (protoc-bin-vendored).
PACKAGES=(etcd-server etcd-client prometheus curl python3-venv openssl containerd runc containernetworking-plugins busybox-static bind9-dnsutils iptables nftables conntrack iproute2 strace)

if ! command -v cargo >/dev/null 2>&1; then
	echo "deps: cargo not found; install the Rust toolchain pinned in rust-toolchain.toml (rustup)" >&2
	exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$pkg")
	fi
done

if [ "${#missing[@]}" -eq 0 ]; then
	echo "deps: all present (${PACKAGES[*]})"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing ${missing[*]}; run as root (or: sudo apt-get install ${missing[*]})" >&2
	exit 1
fi

# Package maintainer scripts must not start etcd, prometheus or containerd as system services: the tests
# start their own instances on free ports. policy-rc.d exiting 101 forbids service starts.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	created_policy=1
fi
cleanup() { if [ "$created_policy" -eq 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt_opts=(-o DPkg::Lock::Timeout=600 -q)
apt-get "${apt_opts[@]}" update
apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}"

for tool in etcd etcdctl promtool containerd ctr runc /usr/lib/cni/bridge /bin/busybox dig iptables-restore nft conntrack ip; do
	command -v "$tool" >/dev/null 2>&1 || { echo "deps: $tool still missing after install" >&2; exit 1; }
done
echo "deps: done"
