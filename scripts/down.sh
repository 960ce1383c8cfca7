#!/usr/bin/env bash
# Stops what `make up` (or `make up-store`) started, in reverse order: SIGTERM, then SIGKILL if
# still up after 10s. Data is kept.
set -euo pipefail

OUT=${OUT:-_out}
for name in controller-manager scheduler apiserver store; do
	pidfile=$OUT/$name.pid
	[ -f "$pidfile" ] || continue
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
		echo "down: stopped $name (pid $pid); data kept in $OUT"
	fi
	rm -f "$pidfile"
done
