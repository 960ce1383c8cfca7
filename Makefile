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
# `make up` runs this binary; STORE_BIN=/usr/bin/etcd brings up real etcd with the same flags.
STORE_BIN ?= $(BIN_DIR)/kube-store
export STORE_BIN

.PHONY: help deps build test verify fix bench bench-store bench-apiserver bench-scheduler bench-proxy up up-store down e2e e2e-kubelet

help: ## List the targets
	@echo "Targets:"
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-16s %s\n", $$1, $$2}'

deps: ## Install missing tools (apt: etcd-server etcd-client prometheus containerd runc CNI plugins busybox-static); idempotent, needs root
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

bench: bench-store bench-apiserver bench-scheduler bench-proxy ## Every benchmark (release builds; not part of `make test`)

bench-store: deps ## kube-store vs real etcd 3.4, same client and workload, ratios (docs/benchmarks.md)
	$(CARGO) bench -p store --bench store

bench-apiserver: ## kube-apiserver under kube-rs load: 20/200 req/s latency, LIST 10k pods, 1,000 watchers, RSS vs SLOs
	$(CARGO) bench -p apiserver --bench apiserver

bench-scheduler: ## kube-scheduler pods/s end to end (scheduler_perf SchedulingBasic shape, 1,000 and 5,000 nodes) vs goal and upstream
	$(CARGO) build --release -p apiserver --bin kube-apiserver -p controller-manager --bin kube-controller-manager
	$(CARGO) bench -p scheduler --bench scheduler

bench-proxy: deps ## kube-proxy: one Service change with 1,000/10,000 Services present and a full 10,000-Service sync, iptables and nftables (root; throwaway netns)
	$(CARGO) bench -p kube-proxy --bench proxy

up: deps ## Build and start the control plane (apiserver with embedded store on :6443, scheduler, controller-manager); kubeconfig in _out/admin.conf
	$(CARGO) build -p apiserver --bin kube-apiserver -p scheduler --bin kube-scheduler -p controller-manager --bin kube-controller-manager
	@scripts/up.sh

up-store: deps ## Start only a standalone kube-store member (etcd ports 2379/2380/2381, data in _out/store)
	@if [ "$(STORE_BIN)" = "$(BIN_DIR)/kube-store" ]; then $(CARGO) build -p store --bin kube-store; fi
	@scripts/store-up.sh

down: ## Stop what `make up` / `make up-store` started (data is kept)
	@scripts/down.sh

e2e: ## Only the cluster suites (apiserver + scheduler + controller-manager with fake kubelets; also part of `make test`)
	$(CARGO) build --workspace --bins
	$(CARGO) test -p e2e

e2e-kubelet: deps ## Only the kubelet suite: the kubelet binary on a private containerd with the real apiserver (root; also part of `make test`)
	$(CARGO) build --workspace --bins
	$(CARGO) test -p kubelet
