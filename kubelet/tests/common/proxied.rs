//! A stack whose apiserver reaches the kubelet (client certificate the kubelet trusts), for
//! the suites that go through pods/log, exec, attach, port-forward and nodes/proxy.

#![allow(dead_code)]

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use crate::common::{self, eventually, ApiServer, User};
use crate::containerd::{Containerd, BUSYBOX_IMAGE};
use crate::kubelet_process::Kubelet;
use crate::pki::TestCa;

pub const WAIT: Duration = Duration::from_secs(60);

/// A CA for the kubelet's --client-ca-file and the apiserver's kubelet client pair it signed
/// (system:masters, so the kubelet's SubjectAccessReview allows nodes/proxy).
fn kubelet_client_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    fs::create_dir_all(dir).expect("pki dir");
    let ca = TestCa::new("kubelet-client-ca");
    let ca_path = ca.write_ca(&dir.join("kubelet-client-ca.crt"));
    let (cert_path, key_path) = ca.write(
        dir,
        "apiserver-kubelet-client",
        "kube-apiserver-kubelet-client",
        &["system:masters"],
        &[],
    );
    (ca_path, cert_path, key_path)
}

pub struct Stack {
    pub kubelet: Kubelet,
    _containerd: Containerd,
    pub server: ApiServer,
    pub ns: String,
    _dir: tempfile::TempDir,
}

impl Stack {
    pub fn start(name: &str, net: u32) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("kubelet-websocket-e2e-")
            .tempdir()
            .expect("tempdir");
        let (ca, cert, key) = kubelet_client_pki(dir.path());
        let server = ApiServer::start_with(&[
            &format!("--kubelet-client-certificate={}", cert.display()),
            &format!("--kubelet-client-key={}", key.display()),
        ]);
        let containerd = Containerd::start();
        let kubelet = Kubelet::start(
            &containerd,
            name,
            (net, "kbw"),
            |node| server.kubeconfig_for_cert(&format!("system:node:{node}"), &["system:nodes"]),
            &[format!("--client-ca-file={}", ca.display())],
        );
        let ns = server.namespace(name);
        let _ = server.kubectl(&["create", "serviceaccount", "default", "-n", &ns]);
        server.wait_node_ready(&kubelet.node, WAIT);
        Stack {
            kubelet,
            _containerd: containerd,
            server,
            ns,
            _dir: dir,
        }
    }

    pub fn run_pod(&self, name: &str, script: &str) {
        let yaml = format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  automountServiceAccountToken: false
  containers:
  - name: main
    image: {BUSYBOX_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", {script:?}]
"#,
            node = self.kubelet.node,
        );
        self.server
            .ok_stdin(&["apply", "-n", &self.ns, "-f", "-"], &yaml);
        eventually(&format!("pod {name} running"), WAIT, || {
            let pod = self.server.json(&["get", "pod", name, "-n", &self.ns]);
            if pod["status"]["containerStatuses"][0]["state"]["running"].is_object() {
                Ok(())
            } else {
                Err(pod["status"].to_string())
            }
        });
    }

    /// The value of the apiserver's counter `name{code="<code>"}` (0 when absent).
    pub fn counter(&self, name: &str, code: &str) -> u64 {
        let metrics = self.server.ok(&["get", "--raw", "/metrics"]);
        let series = format!("{name}{{code=\"{code}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn translated(&self) -> u64 {
        self.counter("apiserver_stream_translator_requests_total", "101")
    }

    /// kubectl as the admin with stdout lines in a channel and stderr (its -v log) in a file.
    pub fn kubectl_child(
        &self,
        args: &[&str],
        stderr: &Path,
    ) -> (Child, std::sync::mpsc::Receiver<String>) {
        let mut child = Command::new(common::kubectl_binary())
            .arg(format!(
                "--kubeconfig={}",
                self.server.kubeconfig(User::Admin).display()
            ))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(File::create(stderr).expect("stderr file")))
            .spawn()
            .expect("spawn kubectl");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        (child, rx)
    }
}
