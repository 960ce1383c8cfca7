//! kubectl 1.32's WebSocket streams through the apiserver to a real kubelet and containerd:
//! exec/attach over `v5.channel.k8s.io` translated to SPDY towards the kubelet, port-forward
//! over the `SPDY/3.1+portforward.k8s.io` tunnel. kubectl falls back to SPDY silently, so the
//! apiserver's `apiserver_stream_translator_requests_total` / `..._tunnel_...` counters prove
//! which path was taken.

#[path = "../../apiserver/tests/common/mod.rs"]
mod common;

#[path = "common/containerd.rs"]
mod containerd;

#[path = "common/kubelet.rs"]
mod kubelet_process;

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use common::{eventually, ApiServer, User};
use containerd::{Containerd, BUSYBOX_IMAGE};
use kubelet_process::Kubelet;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

const WAIT: Duration = Duration::from_secs(60);

/// A CA for the kubelet's --client-ca-file and the apiserver's kubelet client pair it signed
/// (system:masters, so the kubelet's SubjectAccessReview allows nodes/proxy).
fn kubelet_client_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    fs::create_dir_all(dir).expect("pki dir");
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::new()).expect("params");
    ca.distinguished_name
        .push(DnType::CommonName, "kubelet-client-ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_pem = ca.self_signed(&ca_key).expect("ca").pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::new()).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver-kubelet-client");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).expect("sign");
    let (ca_path, cert_path, key_path) = (
        dir.join("kubelet-client-ca.crt"),
        dir.join("apiserver-kubelet-client.crt"),
        dir.join("apiserver-kubelet-client.key"),
    );
    fs::write(&ca_path, ca_pem).expect("write ca");
    fs::write(&cert_path, cert.pem()).expect("write cert");
    fs::write(&key_path, key.serialize_pem()).expect("write key");
    (ca_path, cert_path, key_path)
}

struct Stack {
    kubelet: Kubelet,
    _containerd: Containerd,
    server: ApiServer,
    ns: String,
    _dir: tempfile::TempDir,
}

impl Stack {
    fn start(name: &str) -> Self {
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
            (120, "kbw"),
            |node| server.kubeconfig_for_cert(&format!("system:node:{node}"), &["system:nodes"]),
            &[format!("--client-ca-file={}", ca.display())],
        );
        let ns = server.namespace(name);
        let _ = server.kubectl(&["create", "serviceaccount", "default", "-n", &ns]);
        eventually("node Ready", WAIT, || {
            let out = server.kubectl(&["get", "node", &kubelet.node, "-o", "json"]);
            if !out.success() {
                return Err(out.to_string());
            }
            let node = out.json();
            let ready = node["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            if ready {
                Ok(())
            } else {
                Err(node["status"].to_string())
            }
        });
        Stack {
            kubelet,
            _containerd: containerd,
            server,
            ns,
            _dir: dir,
        }
    }

    fn run_pod(&self, name: &str, script: &str) {
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
    fn counter(&self, name: &str, code: &str) -> u64 {
        let metrics = self.server.ok(&["get", "--raw", "/metrics"]);
        let series = format!("{name}{{code=\"{code}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    fn translated(&self) -> u64 {
        self.counter("apiserver_stream_translator_requests_total", "101")
    }

    /// kubectl as the admin with stdout lines in a channel and stderr (its -v log) in a file.
    fn kubectl_child(
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

#[test]
fn kubectl_exec_cp_and_attach_use_websocket_v5_and_port_forward_the_tunnel() {
    let s = Stack::start("kw-ws");
    s.run_pod(
        "shell",
        "echo hello-from-pod > /var/www/index.html; httpd -p 8080 -h /var/www; \
         while true; do echo attach-tick; sleep 0.3; done",
    );
    let ns = s.ns.as_str();
    let before = s.translated();

    // exec: output through the v5 WebSocket (-v=8 shows the negotiated subprotocol).
    let out = s
        .server
        .kubectl(&["-v=8", "exec", "-n", ns, "shell", "--", "echo", "hi"]);
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout, "hi\n");
    assert!(
        out.stderr
            .contains("Sec-Websocket-Protocol: v5.channel.k8s.io")
            && !out.stderr.to_lowercase().contains("fallback"),
        "kubectl used WebSocket v5 without falling back:\n{}",
        out.stderr
    );
    assert_eq!(s.translated(), before + 1, "the apiserver translated it");

    // The exit code and upstream's message come through the error channel.
    let out = s.server.kubectl(&[
        "exec",
        "-n",
        ns,
        "shell",
        "--",
        "sh",
        "-c",
        "echo to-err >&2; exit 3",
    ]);
    assert_eq!(out.code(), Some(3), "{out}");
    assert!(out.stderr.contains("to-err"), "{out}");
    assert!(
        out.stderr.contains("command terminated with exit code 3"),
        "{out}"
    );

    // exec -i: stdin arrives and v5's close of stdin ends `cat`.
    let out = s.server.kubectl_stdin(
        &["exec", "-i", "-n", ns, "shell", "--", "cat"],
        "line one\nline two\n",
    );
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout, "line one\nline two\n");

    // A larger stdin (fragmented WebSocket messages, several SPDY frames) arrives whole.
    let big: String = (0..20_000).map(|i| format!("{i}\n")).collect();
    let out = s
        .server
        .kubectl_stdin(&["exec", "-i", "-n", ns, "shell", "--", "wc", "-c"], &big);
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout.trim(), big.len().to_string());

    // cp both ways (tar over exec; the upload needs stdin's close).
    let local = s.kubelet.dir.join("cp-src.txt");
    fs::write(&local, "copied through websocket\n").expect("write local file");
    let out = s.server.kubectl(&[
        "cp",
        local.to_str().expect("path"),
        &format!("{ns}/shell:/tmp/copied.txt"),
    ]);
    assert!(out.success(), "{out}");
    let out = s
        .server
        .kubectl(&["exec", "-n", ns, "shell", "--", "cat", "/tmp/copied.txt"]);
    assert_eq!(out.stdout, "copied through websocket\n", "{out}");
    let back = s.kubelet.dir.join("cp-back.txt");
    let out = s.server.kubectl(&[
        "cp",
        &format!("{ns}/shell:/var/www/index.html"),
        back.to_str().expect("path"),
    ]);
    assert!(out.success(), "{out}");
    assert_eq!(
        fs::read_to_string(&back).expect("copied back"),
        "hello-from-pod\n"
    );
    let execs = s.translated();
    assert!(
        execs >= before + 8,
        "every exec and cp went through the translator"
    );

    // attach: the main process's output arrives while kubectl runs.
    let attach_log = s.kubelet.dir.join("attach.stderr");
    let (mut attach, lines) = s.kubectl_child(&["attach", "-n", ns, "shell"], &attach_log);
    for _ in 0..3 {
        let line = lines.recv_timeout(WAIT).expect("attached output");
        assert_eq!(line, "attach-tick");
    }
    let _ = attach.kill();
    let _ = attach.wait();
    assert_eq!(
        s.translated(),
        execs + 1,
        "attach went through the translator"
    );

    // port-forward over the WebSocket tunnel.
    let tunnels = s.counter("apiserver_stream_tunnel_requests_total", "101");
    let forward_log = s.kubelet.dir.join("port-forward.stderr");
    let (mut forward, lines) = s.kubectl_child(
        &[
            "port-forward",
            "-n",
            ns,
            "pod/shell",
            ":8080",
            "--address=127.0.0.1",
        ],
        &forward_log,
    );
    let first = lines.recv_timeout(WAIT).expect("port-forward banner");
    let port: u16 = first
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected banner {first:?}"));
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .arg(format!("http://127.0.0.1:{port}/index.html"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello-from-pod\n");
    let _ = forward.kill();
    let _ = forward.wait();
    assert_eq!(
        s.counter("apiserver_stream_tunnel_requests_total", "101"),
        tunnels + 1,
        "port-forward went through the tunnel"
    );
}
