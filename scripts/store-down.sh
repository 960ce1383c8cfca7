#!/usr/bin/env bash
# Stops the member started by store-up.sh: SIGTERM, then SIGKILL if it is still up after 10s.
set -euo pipefail

OUT=${OUT:-_out}
pidfile=$OUT/store.pid

if [ ! -f "$pidfile" ]; then
	echo "down: nothing to stop (no $pidfile)"
	exit 0
fi
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
	echo "down: stopped kube-store (pid $pid); data kept in $OUT/store"
else
	echo "down: pid $pid was not running"
fi
rm -f "$pidfile"
