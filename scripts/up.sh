#!/usr/bin/env bash
# Brings up the control plane in the background, as kubeadm lays it out but as plain processes:
# a kubeadm-shaped PKI and kubeconfigs (scripts/pki.sh), kube-apiserver with its embedded
# single-member store on :6443, then kube-scheduler (:10259) and kube-controller-manager
# (:10257), each under its own identity with leader election. Data, logs and pid files in $OUT.
set -euo pipefail

BIN_DIR=${BIN_DIR:-target/debug}
OUT=${OUT:-_out}
PORT=${APISERVER_PORT:-6443}
TIMEOUT=${UP_TIMEOUT:-60}

mkdir -p "$OUT"
OUT=$OUT APISERVER_PORT=$PORT scripts/pki.sh
pki=$(realpath "$OUT/pki")

alive() { kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" != Z ]; }

# start NAME BIN ARGS...: runs BIN in the background unless NAME is already running.
start() {
	local name=$1 bin=$2
	shift 2
	local pidfile=$OUT/$name.pid logfile=$OUT/$name.log
	if [ -f "$pidfile" ] && alive "$(cat "$pidfile")"; then
		echo "up: $name already running (pid $(cat "$pidfile"))"
		return 0
	fi
	echo "up: $bin $*" >>"$logfile"
	nohup "$bin" "$@" >>"$logfile" 2>&1 </dev/null &
	echo $! >"$pidfile"
}

# ready NAME URL: waits until URL answers 200 over the cluster CA, or the process dies.
ready() {
	local name=$1 url=$2 pid
	pid=$(cat "$OUT/$name.pid")
	local deadline=$((SECONDS + TIMEOUT))
	until curl -fsS --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" "$url" >/dev/null 2>&1 ||
		curl -fsSk "$url" >/dev/null 2>&1; do
		if ! alive "$pid"; then
			rm -f "$OUT/$name.pid"
			echo "up: $name exited during start-up; last log lines ($OUT/$name.log):" >&2
			tail -n 30 "$OUT/$name.log" >&2
			exit 1
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "up: $name (pid $pid) not ready after ${TIMEOUT}s; last log lines ($OUT/$name.log):" >&2
			tail -n 30 "$OUT/$name.log" >&2
			exit 1
		fi
		sleep 0.2
	done
}

start apiserver "$BIN_DIR/kube-apiserver" \
	"--secure-port=$PORT" \
	--bind-address=127.0.0.1 \
	--advertise-address=127.0.0.1 \
	"--data-dir=$OUT/apiserver/data" \
	"--cert-dir=$OUT/apiserver/certs" \
	"--client-ca-file=$pki/ca.crt" \
	"--tls-cert-file=$pki/apiserver.crt" \
	"--tls-private-key-file=$pki/apiserver.key" \
	"--service-account-key-file=$pki/sa.pub" \
	"--service-account-signing-key-file=$pki/sa.key" \
	--service-account-issuer=https://kubernetes.default.svc.cluster.local \
	--service-cluster-ip-range=10.96.0.0/12 \
	--authorization-mode=Node,RBAC \
	--enable-bootstrap-token-auth=true
ready apiserver "https://127.0.0.1:$PORT/readyz"

start scheduler "$BIN_DIR/kube-scheduler" \
	"--kubeconfig=$OUT/scheduler.conf" \
	"--authentication-kubeconfig=$OUT/scheduler.conf" \
	"--authorization-kubeconfig=$OUT/scheduler.conf" \
	--bind-address=127.0.0.1 \
	--leader-elect=true
start controller-manager "$BIN_DIR/kube-controller-manager" \
	"--kubeconfig=$OUT/controller-manager.conf" \
	"--authentication-kubeconfig=$OUT/controller-manager.conf" \
	"--authorization-kubeconfig=$OUT/controller-manager.conf" \
	--bind-address=127.0.0.1 \
	--leader-elect=true \
	--use-service-account-credentials=true \
	"--root-ca-file=$pki/ca.crt" \
	"--service-account-private-key-file=$pki/sa.key" \
	"--cluster-signing-cert-file=$pki/ca.crt" \
	"--cluster-signing-key-file=$pki/ca.key" \
	--allocate-node-cidrs=true \
	--cluster-cidr=10.244.0.0/16 \
	--service-cluster-ip-range=10.96.0.0/12 \
	"--cert-dir=$OUT/controller-manager" \
	'--controllers=*,bootstrapsigner,tokencleaner'
ready scheduler "https://127.0.0.1:10259/healthz"
ready controller-manager "https://127.0.0.1:10257/healthz"

cat <<MSG
up: the control plane is running on https://127.0.0.1:$PORT:
    kube-apiserver (embedded single-member store), kube-scheduler, kube-controller-manager.
    There is no kubelet yet (a later issue), so pods are scheduled to Nodes but not run.
  kubeconfig: $(realpath "$OUT/admin.conf")     logs: $OUT/{apiserver,scheduler,controller-manager}.log
  try:        export KUBECONFIG=$(realpath "$OUT/admin.conf")
              kubectl get ns,sa
              kubectl create deployment web --image=busybox --replicas=3 && kubectl get rs,pods
  stop:       make down
MSG
