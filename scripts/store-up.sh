#!/usr/bin/env bash
# Starts one kube-store member in the background (data in $OUT/store, log in $OUT/store.log,
# pid in $OUT/store.pid) and waits until `etcdctl endpoint health` passes.
# STORE_BIN=/usr/bin/etcd runs real etcd with the same flags instead.
set -euo pipefail

STORE_BIN=${STORE_BIN:-target/debug/kube-store}
OUT=${OUT:-_out}
CLIENT_PORT=${STORE_CLIENT_PORT:-2379}
PEER_PORT=${STORE_PEER_PORT:-2380}
METRICS_PORT=${STORE_METRICS_PORT:-2381}
TIMEOUT=${STORE_UP_TIMEOUT:-30}
export ETCDCTL_API=3

pidfile=$OUT/store.pid
logfile=$OUT/store.log
endpoint=127.0.0.1:$CLIENT_PORT
mkdir -p "$OUT"

if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
	echo "up: kube-store already running (pid $(cat "$pidfile")) on $endpoint; \`make down\` stops it"
	exit 0
fi

args=(
	--name=default
	"--data-dir=$OUT/store"
	"--listen-client-urls=http://$endpoint"
	"--advertise-client-urls=http://$endpoint"
	"--listen-peer-urls=http://127.0.0.1:$PEER_PORT"
	"--initial-advertise-peer-urls=http://127.0.0.1:$PEER_PORT"
	"--initial-cluster=default=http://127.0.0.1:$PEER_PORT"
	--initial-cluster-state=new
	"--listen-metrics-urls=http://127.0.0.1:$METRICS_PORT"
)
echo "up: $STORE_BIN ${args[*]}" >>"$logfile"
nohup "$STORE_BIN" "${args[@]}" >>"$logfile" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$pidfile"

# kill -0 succeeds on a zombie, so also look at the process state.
alive() { kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" != Z ]; }

deadline=$((SECONDS + TIMEOUT))
until etcdctl --endpoints="$endpoint" --dial-timeout=1s --command-timeout=2s endpoint health >/dev/null 2>&1; do
	if ! alive "$pid"; then
		rm -f "$pidfile"
		echo "up: kube-store exited during start-up; last log lines ($logfile):" >&2
		tail -n 30 "$logfile" >&2
		exit 1
	fi
	if [ "$SECONDS" -ge "$deadline" ]; then
		echo "up: kube-store (pid $pid) not healthy after ${TIMEOUT}s; last log lines ($logfile):" >&2
		tail -n 30 "$logfile" >&2
		exit 1
	fi
	sleep 0.2
done

cat <<MSG
up: kube-store is running (pid $pid): a single-member store only. The rest of the cluster
    (kube-apiserver, scheduler, controller-manager, kubelet, kube-proxy) comes with later issues.
  client:  http://$endpoint      metrics: http://127.0.0.1:$METRICS_PORT/metrics
  data:    $OUT/store            log:     $logfile
  try:     ETCDCTL_API=3 etcdctl --endpoints=$endpoint put hello world
           ETCDCTL_API=3 etcdctl --endpoints=$endpoint get hello
           ETCDCTL_API=3 etcdctl --endpoints=$endpoint endpoint status -w table
  stop:    make down
MSG
