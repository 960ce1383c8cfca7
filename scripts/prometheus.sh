#!/usr/bin/env bash
# `make prometheus`: Debian's prometheus scraping every component of the `make up` cluster with
# prometheus/prometheus.yml. Issues the scraper's client certificate (CN prometheus,
# O system:monitoring, signed by the cluster CA) into $PROM_DIR/local/ (default prometheus/local/), grants it what
# the kubelet and service discovery check (nodes/metrics; list/watch nodes, endpoints,
# services, pods), and starts prometheus on 127.0.0.1:9090 with its data in $OUT/prometheus.
# `scripts/prometheus.sh stop` stops it.
set -euo pipefail

OUT=$(realpath -m "${OUT:-_out}")
ROOTFS=${ROOTFS:-$OUT/root}
PKI=$ROOTFS/etc/kubernetes/pki
KUBECONFIG=${KUBECONFIG:-$ROOTFS/etc/kubernetes/admin.conf}
# The directory holding prometheus.yml; the credentials and file targets go to its local/.
PROM_DIR=${PROM_DIR:-prometheus}
CREDS=$PROM_DIR/local
PIDFILE=$OUT/prometheus.pid
LISTEN=${PROMETHEUS_LISTEN:-127.0.0.1:9090}
KUBECTL=${KUBECTL:-kubectl}
export KUBECONFIG

stop() {
	if [ -f "$PIDFILE" ] && kill "$(cat "$PIDFILE")" 2>/dev/null; then
		echo "prometheus: stopped"
	fi
	rm -f "$PIDFILE"
}

if [ "${1:-start}" = stop ]; then
	stop
	exit 0
fi

[ -f "$PKI/ca.key" ] || { echo "prometheus: no cluster CA in $PKI (make up first)" >&2; exit 1; }
mkdir -p "$CREDS" "$OUT/prometheus"
cp "$PKI/ca.crt" "$CREDS/ca.crt"
if ! openssl x509 -in "$CREDS/prometheus.crt" -noout -checkend 86400 >/dev/null 2>&1 ||
	! openssl verify -CAfile "$CREDS/ca.crt" "$CREDS/prometheus.crt" >/dev/null 2>&1; then
	openssl ecparam -name prime256v1 -genkey -noout -out "$CREDS/prometheus.key.tmp"
	openssl pkcs8 -topk8 -nocrypt -in "$CREDS/prometheus.key.tmp" -out "$CREDS/prometheus.key"
	rm -f "$CREDS/prometheus.key.tmp"
	openssl req -new -key "$CREDS/prometheus.key" -subj "/O=system:monitoring/CN=prometheus" \
		-out "$CREDS/prometheus.csr"
	printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n' >"$CREDS/ext.cnf"
	openssl x509 -req -in "$CREDS/prometheus.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
		-CAcreateserial -CAserial "$CREDS/ca.srl" -days 365 -extfile "$CREDS/ext.cnf" \
		-out "$CREDS/prometheus.crt" 2>/dev/null
	rm -f "$CREDS/prometheus.csr" "$CREDS/ext.cnf"
	chmod 0600 "$CREDS/prometheus.key"
fi

"$KUBECTL" apply -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: prometheus
rules:
- apiGroups: [""]
  resources: [nodes, endpoints, services, pods]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [nodes/metrics]
  verbs: [get]
- nonResourceURLs: [/metrics]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: prometheus
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: prometheus
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: prometheus
YAML

# The kubelets' and DNS pods' addresses (Debian's prometheus has no kubernetes_sd_configs).
targets() {
	local nodes dns
	nodes=$("$KUBECTL" get nodes -o jsonpath='{range .items[*]}{.status.addresses[?(@.type=="InternalIP")].address}{":"}{.status.daemonEndpoints.kubeletEndpoint.Port}{" "}{.metadata.name}{"\n"}{end}')
	dns=$("$KUBECTL" get endpointslices -n kube-system -l kubernetes.io/service-name=kube-dns -o jsonpath='{range .items[*].endpoints[*]}{.addresses[0]}{" "}{.targetRef.name}{"\n"}{end}')
	to_json() {
		awk -v port="$1" 'BEGIN { printf "[" } NF >= 2 { t = $1; if (port != "") t = t ":" port;
			printf "%s{\"targets\":[\"%s\"],\"labels\":{\"%s\":\"%s\"}}", (n++ ? "," : ""), t, "'"$2"'", $2 }
			END { print "]" }'
	}
	printf '%s\n' "$nodes" | to_json "" node >"$CREDS/kubelet-targets.json.tmp"
	printf '%s\n' "$dns" | to_json 9153 pod >"$CREDS/dns-targets.json.tmp"
	mv "$CREDS/kubelet-targets.json.tmp" "$CREDS/kubelet-targets.json"
	mv "$CREDS/dns-targets.json.tmp" "$CREDS/dns-targets.json"
}

stop
targets
promtool check config "$PROM_DIR/prometheus.yml" >/dev/null
nohup prometheus --config.file="$PROM_DIR/prometheus.yml" \
	--storage.tsdb.path="$OUT/prometheus" --web.listen-address="$LISTEN" \
	>"$OUT/prometheus.log" 2>&1 &
echo $! >"$PIDFILE"
# Keep the file targets current while prometheus runs.
(while kill -0 "$(cat "$PIDFILE" 2>/dev/null)" 2>/dev/null; do sleep 30; targets 2>/dev/null || true; done) \
	>/dev/null 2>&1 &
echo "prometheus: http://$LISTEN/targets (log $OUT/prometheus.log); stop with scripts/prometheus.sh stop"
