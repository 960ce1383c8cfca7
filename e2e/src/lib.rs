//! Cluster-level end-to-end suites live in `tests/`: kube-apiserver, kube-scheduler and
//! kube-controller-manager run as real processes (the binaries `cargo test --workspace` builds
//! next to the test executables, or `KUBE_*_BIN`), with stand-in kubelets for nodes.
