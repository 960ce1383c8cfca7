#!/usr/bin/env bash
# Starts kube-apiserver with its embedded single-member store in the background (data in
# $OUT/apiserver, log in $OUT/apiserver.log, pid in $OUT/apiserver.pid), writes an admin
# kubeconfig to $OUT/admin.conf and waits until /readyz answers.
set -euo pipefail

BIN=${APISERVER_BIN:-target/debug/kube-apiserver}
OUT=${OUT:-_out}
PORT=${APISERVER_PORT:-6443}
TIMEOUT=${APISERVER_UP_TIMEOUT:-60}

pidfile=$OUT/apiserver.pid
logfile=$OUT/apiserver.log
dir=$OUT/apiserver
mkdir -p "$dir"

if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
	echo "up: kube-apiserver already running (pid $(cat "$pidfile")); \`make down\` stops it"
	exit 0
fi

# A static token for the admin (system:masters), kept across restarts.
tokens=$dir/tokens.csv
if [ ! -s "$tokens" ]; then
	token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
	umask 077
	printf '%s,kubernetes-admin,kubernetes-admin,"system:masters"\n' "$token" >"$tokens"
fi
token=$(cut -d, -f1 "$tokens")

args=(
	"--secure-port=$PORT"
	--bind-address=127.0.0.1
	--advertise-address=127.0.0.1
	"--data-dir=$dir/data"
	"--cert-dir=$dir/certs"
	"--token-auth-file=$tokens"
)
echo "up: $BIN ${args[*]}" >>"$logfile"
nohup "$BIN" "${args[@]}" >>"$logfile" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$pidfile"

alive() { kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" != Z ]; }

deadline=$((SECONDS + TIMEOUT))
until [ -s "$dir/certs/apiserver.crt" ] && curl -fsS --cacert "$dir/certs/apiserver.crt" "https://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; do
	if ! alive "$pid"; then
		rm -f "$pidfile"
		echo "up: kube-apiserver exited during start-up; last log lines ($logfile):" >&2
		tail -n 30 "$logfile" >&2
		exit 1
	fi
	if [ "$SECONDS" -ge "$deadline" ]; then
		echo "up: kube-apiserver (pid $pid) not ready after ${TIMEOUT}s; last log lines ($logfile):" >&2
		tail -n 30 "$logfile" >&2
		exit 1
	fi
	sleep 0.2
done

cat >"$OUT/admin.conf" <<CONF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$PORT
    certificate-authority: $(realpath "$dir/certs/apiserver.crt")
users:
- name: kubernetes-admin
  user:
    token: $token
contexts:
- name: kubernetes-admin@local
  context:
    cluster: local
    user: kubernetes-admin
current-context: kubernetes-admin@local
CONF
chmod 600 "$OUT/admin.conf"

cat <<MSG
up: kube-apiserver is running (pid $pid) on https://127.0.0.1:$PORT with an embedded
    single-member store. Scheduler, controller-manager, kubelet and kube-proxy come with later
    issues, so pods are stored but not run yet.
  kubeconfig: $OUT/admin.conf        log: $logfile      data: $dir/data
  try:        export KUBECONFIG=$PWD/$OUT/admin.conf
              kubectl get ns
              kubectl create configmap demo --from-literal=hello=world && kubectl get cm demo -o yaml
  stop:       make down
MSG
