//! What the controller-manager e2e suites share: the kube-controller-manager process, polling and a
//! stand-in for the kubelet that marks pods Running and Ready.

#![allow(dead_code)]

pub mod fake_nodes;

pub use crate::common::*;
#[allow(unused_imports)]
pub use fake_nodes::{FakeNode, FakeNodes};

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn kcm_binary() -> PathBuf {
    std::env::var_os("KUBE_CONTROLLER_MANAGER_BIN")
        .map(PathBuf::from)
        .or_else(|| option_env!("CARGO_BIN_EXE_kube-controller-manager").map(PathBuf::from))
        .unwrap_or_else(|| sibling_binary("kube-controller-manager"))
}

/// The controller-manager process; killed on drop (its log printed if the test fails).
pub struct Kcm {
    pub child: Child,
    pub log: PathBuf,
    pub port: u16,
}

impl Kcm {
    pub fn start(server: &ApiServer, extra: &[&str]) -> Self {
        // As kubeadm runs it: the manager's own identity for its informers and leases, and each
        // controller as its ServiceAccount under upstream's per-controller RBAC roles.
        let kubeconfig = server.kubeconfig_for_cert("system:kube-controller-manager", &[]);
        let port = free_port();
        let log = server.dir().join(format!("kcm-{port}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut args = vec![
            format!("--kubeconfig={}", kubeconfig.display()),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--secure-port={port}"),
            format!("--root-ca-file={}", server.pki.ca_cert.display()),
            format!(
                "--cert-dir={}",
                server.dir().join(format!("kcm-certs-{port}")).display()
            ),
            "--use-service-account-credentials=true".to_owned(),
            // Upstream's lease timings (15s/10s/2s): one manager per test needs no quick
            // failover, and a 3 s renew deadline lost the lease (and exited) on a loaded machine.
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new(kcm_binary())
            .args(&args)
            .env("RUST_LOG", "info,kube=warn,controller_manager=debug")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone"))
            .stderr(file)
            .spawn()
            .expect("spawn kube-controller-manager");
        Kcm { child, log, port }
    }
}

impl Drop for Kcm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(80);
            eprintln!(
                "---- kube-controller-manager log (port {})\n{}",
                self.port,
                lines[start..].join("\n")
            );
        }
    }
}

pub fn eventually(desc: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {desc}");
        thread::sleep(Duration::from_millis(250));
    }
}

pub fn exists(server: &ApiServer, args: &[&str]) -> bool {
    server.kubectl(args).success()
}

/// Marks every pod in `ns` Running and Ready (there is no kubelet) until stopped.
/// The Events in `ns` about objects of `kind` with `reason` from `component`.
pub fn events(
    server: &ApiServer,
    ns: &str,
    kind: &str,
    reason: &str,
    component: &str,
) -> Vec<serde_json::Value> {
    let all = server.json(&["get", "events", "-n", ns]);
    all["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            e["reason"] == reason
                && e["involvedObject"]["kind"] == kind
                && e["source"]["component"] == component
        })
        .cloned()
        .collect()
}

/// Sets its flag when dropped, so a background helper stops even when the test panics (a
/// scoped thread that never stops would otherwise hang the test instead of failing it).
pub struct StopOnDrop(pub Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

pub fn pod_status_helper(server: &ApiServer, ns: &str, stop: Arc<AtomicBool>) {
    let mut seen = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let out = server.kubectl(&["get", "pods", "-n", ns, "-o", "json"]);
        if out.success() {
            let pods = out.json();
            for pod in pods["items"].as_array().cloned().unwrap_or_default() {
                let name = pod["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let ready = pod["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
                if ready || pod["metadata"]["deletionTimestamp"].is_string() {
                    continue;
                }
                seen += 1;
                let now = "2024-01-01T00:00:00Z";
                let patch = serde_json::json!({"status": {
                    "phase": "Running",
                    "podIP": format!("10.244.{}.{}", seen / 250, seen % 250 + 1),
                    "conditions": [
                        {"type": "Ready", "status": "True", "lastTransitionTime": now},
                        {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                    ],
                }});
                let _ = server.kubectl(&[
                    "patch",
                    "pod",
                    &name,
                    "-n",
                    ns,
                    "--subresource=status",
                    "--type=merge",
                    "-p",
                    &patch.to_string(),
                ]);
            }
        }
        thread::sleep(Duration::from_millis(200));
    }
}

pub fn ready_pods(server: &ApiServer, ns: &str) -> Option<(usize, usize)> {
    let out = server.kubectl(&["get", "pods", "-n", ns, "-o", "json"]);
    if !out.success() {
        return None;
    }
    let items = out.json()["items"].as_array().cloned().unwrap_or_default();
    let ready = items
        .iter()
        .filter(|p| !p["metadata"]["deletionTimestamp"].is_string())
        .filter(|p| {
            p["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .count();
    Some((ready, items.len()))
}
