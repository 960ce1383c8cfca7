# kube-store / kube-rs-fleet developer entry points. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
# etcdctl 3.4 defaults to the v2 API; everything here speaks v3.
export ETCDCTL_API := 3
# Where `make up` keeps the PKI, kubeconfigs, data, logs and pid files.
export OUT ?= _out
# Where cargo puts the debug binaries `make up` starts (CARGO_TARGET_DIR is honoured).
export BIN_DIR ?= $(or $(CARGO_TARGET_DIR),target)/debug
# Where `make up` takes the release binaries kubeadm builds the images from.
export RELEASE_DIR ?= $(or $(CARGO_TARGET_DIR),target)/release
# `make up-store` runs this binary; STORE_BIN=/usr/bin/etcd brings up real etcd with the same flags.
STORE_BIN ?= $(BIN_DIR)/kube-store
export STORE_BIN

.PHONY: help deps build test verify fix bench bench-store bench-apiserver bench-scheduler bench-kubelet bench-proxy bench-cluster prometheus up up-store down e2e e2e-kubelet

help: ## List the targets
	@echo "Targets:"
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-16s %s\n", $$1, $$2}'

deps: ## Install missing tools (apt: etcd-server etcd-client prometheus containerd runc CNI plugins busybox-static bind9-dnsutils); idempotent, needs root
	@scripts/deps.sh
	@scripts/pyenv.sh

build: ## Build every crate (debug)
	$(CARGO) build --workspace --all-targets

test: deps ## deps, then fmt check, clippy -D warnings and every test (what CI runs)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --workspace

verify: ## fmt check, clippy -D warnings and every test (no installs)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --workspace

fix: ## Rewrite: cargo fmt and clippy --fix
	$(CARGO) fmt --all
	$(CARGO) clippy --workspace --all-targets --fix --allow-dirty --allow-staged

bench: bench-store bench-apiserver bench-scheduler bench-kubelet bench-proxy bench-cluster ## Every benchmark (release builds; not part of `make test`)

bench-store: deps ## kube-store vs real etcd 3.4, same client and workload, ratios (docs/benchmarks.md)
	$(CARGO) bench -p store --bench store

bench-apiserver: ## kube-apiserver under kube-rs load: 20/200 req/s latency, LIST 10k pods, 1,000 watchers, RSS vs SLOs
	$(CARGO) bench -p apiserver --bench apiserver

bench-scheduler: ## kube-scheduler pods/s end to end (scheduler_perf SchedulingBasic shape, 1,000 and 5,000 nodes) vs goal and upstream
	$(CARGO) build --release -p apiserver --bin kube-apiserver -p controller-manager --bin kube-controller-manager
	$(CARGO) bench -p scheduler --bench scheduler

bench-kubelet: deps ## kubelet pod startup on containerd vs raw CRI, RSS with 20 pods; 1,000 hollow nodes + 10,000 pods
	$(CARGO) build --release -p apiserver --bin kube-apiserver -p scheduler --bin kube-scheduler -p controller-manager --bin kube-controller-manager
	$(CARGO) bench -p kubelet --bench kubelet

bench-proxy: deps ## kube-proxy: one Service change with 1,000/10,000 Services present and a full 10,000-Service sync, iptables and nftables (root; throwaway netns)
	$(CARGO) bench -p kube-proxy --bench proxy

bench-cluster: deps ## Idle control plane after `kubeadm init` (release, private containerd, throwaway netns): RSS and CPU per component over 10 min vs upstream (BENCH_IDLE_SECS)
	$(CARGO) build --release -p store --bin kube-store -p apiserver --bin kube-apiserver -p scheduler --bin kube-scheduler -p controller-manager --bin kube-controller-manager -p kubelet --bin kubelet -p dns --bin kube-dns -p kube-proxy --bin kube-proxy
	$(CARGO) bench -p kubeadm --bench cluster

up: deps ## Build (release) and run `kubeadm init` on a private containerd under _out/: the control plane as static pods of a supervised kubelet; kubeconfig _out/root/etc/kubernetes/admin.conf
	$(CARGO) build --release -p store --bin kube-store -p apiserver --bin kube-apiserver -p scheduler --bin kube-scheduler -p controller-manager --bin kube-controller-manager -p kubelet --bin kubelet -p kubeadm --bin kubeadm -p dns --bin kube-dns -p kube-proxy --bin kube-proxy
	@BIN_DIR=$(RELEASE_DIR) scripts/up.sh

prometheus: ## Debian's prometheus on 127.0.0.1:9090 scraping every component of the `make up` cluster (prometheus/prometheus.yml)
	@scripts/prometheus.sh

up-store: deps ## Start only a standalone kube-store member (etcd ports 2379/2380/2381, data in _out/store)
	@if [ "$(STORE_BIN)" = "$(BIN_DIR)/kube-store" ]; then $(CARGO) build -p store --bin kube-store; fi
	@scripts/store-up.sh

down: ## `kubeadm reset -f` on the `make up` cluster and stop its containerd (and what `make up-store` started)
	@BIN_DIR=$(RELEASE_DIR) scripts/down.sh

e2e: ## Only the cluster suites (apiserver + scheduler + controller-manager with fake kubelets; also part of `make test`)
	$(CARGO) build --workspace --bins
	$(CARGO) test -p e2e

e2e-kubelet: deps ## Only the kubelet suite: the kubelet binary on a private containerd with the real apiserver (root; also part of `make test`)
	$(CARGO) build --workspace --bins
	$(CARGO) test -p kubelet
