//! A control-plane daemon (kube-scheduler or kube-controller-manager) for the kubelet suites.

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;

use crate::common::{self, free_port, ApiServer};

/// A control-plane daemon (scheduler or controller-manager) under its own identity; killed on
/// drop, its log printed if the test fails.
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    pub fn start(server: &ApiServer, binary: &str, env: &str, user: &str, extra: &[&str]) -> Self {
        let binary = std::env::var_os(env)
            .map(PathBuf::from)
            .unwrap_or_else(|| common::sibling_binary(binary));
        let kubeconfig = server.kubeconfig_for_cert(user, &[]);
        let port = free_port();
        let log = server.dir().join(format!("daemon-{port}.log"));
        let file = File::create(&log).expect("log file");
        let mut args = vec![
            format!("--kubeconfig={}", kubeconfig.display()),
            "--bind-address=127.0.0.1".to_string(),
            format!("--secure-port={port}"),
            format!(
                "--cert-dir={}",
                server.dir().join(format!("certs-{port}")).display()
            ),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new(&binary)
            .args(&args)
            .env("RUST_LOG", "info,kube=warn")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log fd"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        Daemon { child, log }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let text = fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(40);
            eprintln!(
                "---- {} (last 40 lines)\n{}",
                self.log.display(),
                lines[start..].join("\n")
            );
        }
    }
}
