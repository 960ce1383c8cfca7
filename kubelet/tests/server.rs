//! The kubelet API (10250) against the real apiserver and a private containerd: who may call it
//! (client certificates, TokenReview, SubjectAccessReview), /pods and /metrics, and
//! `kubectl logs` / `kubectl get --raw .../nodes/<node>/proxy/...` through the apiserver.

#[path = "../../apiserver/tests/common/mod.rs"]
mod common;

#[path = "common/containerd.rs"]
mod containerd;

#[path = "common/pki.rs"]
mod pki;

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{eventually, free_port, ApiServer, User, ADMIN_TOKEN};
use containerd::{Containerd, BUSYBOX_IMAGE, PAUSE_IMAGE};
use pki::TestCa;

const WAIT: Duration = Duration::from_secs(60);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A CA the kubelet trusts for client certificates, and the apiserver's client pair signed by it
/// (CN kube-apiserver-kubelet-client in system:masters, so RBAC allows nodes/proxy).
struct KubeletPki {
    ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    /// A second client, alice in developers: authenticated, but RBAC gives her no nodes/*.
    alice_cert: PathBuf,
    alice_key: PathBuf,
    /// A kubelet serving pair for 127.0.0.1 signed by the same CA, for
    /// --kubelet-certificate-authority.
    serving_cert: PathBuf,
    serving_key: PathBuf,
}

fn kubelet_pki(dir: &Path) -> KubeletPki {
    fs::create_dir_all(dir).expect("pki dir");
    let ca = TestCa::new("kubelet-client-ca");
    let ca_path = ca.write_ca(&dir.join("kubelet-client-ca.crt"));
    let (client_cert, client_key) = ca.write(
        dir,
        "apiserver",
        "kube-apiserver-kubelet-client",
        &["system:masters"],
        &[],
    );
    let (alice_cert, alice_key) = ca.write(dir, "alice", "alice", &["developers"], &[]);
    let (serving_cert, serving_key_path) = ca.write(
        dir,
        "kubelet-serving",
        "kubelet-serving",
        &[],
        &["127.0.0.1", "localhost"],
    );
    KubeletPki {
        ca: ca_path,
        client_cert,
        client_key,
        alice_cert,
        alice_key,
        serving_cert,
        serving_key: serving_key_path,
    }
}

struct Kubelet {
    child: Option<Child>,
    dir: PathBuf,
    node: String,
    port: u16,
}

impl Kubelet {
    /// A kubelet; with `serving`, it serves the CA-signed pair instead of a self-signed one.
    fn start(
        server: &ApiServer,
        containerd: &Containerd,
        pki: &KubeletPki,
        name: &str,
        serving: bool,
    ) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let node = format!("{name}-{pid}-{n}");
        let pod_cidr = format!("10.{}.{}.0/24", 150 + (pid % 50), n % 250);
        let bridge = format!("kbs{}x{n}", pid % 100_000);
        containerd
            .bridges
            .lock()
            .expect("bridges lock")
            .push(bridge.clone());
        let dir = containerd.dir().join(format!("kubelet-{n}"));
        fs::create_dir_all(dir.join("logs")).expect("kubelet dir");
        let port = free_port();
        let config = dir.join("config.yaml");
        // A config file brings upstream's v1beta1 defaults: webhook authn on, anonymous off,
        // Webhook authorization.
        fs::write(
            &config,
            format!(
                "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
                 podCIDR: {pod_cidr}\npodLogsDir: {logs}\nclusterDomain: cluster.local\n\
                 evictionHard: {{}}\nimageGCHighThresholdPercent: 100\n\
                 address: 127.0.0.1\nport: {port}\n\
                 authentication:\n  x509:\n    clientCAFile: {ca}\n",
                logs = dir.join("logs").display(),
                ca = pki.ca.display(),
            ),
        )
        .expect("kubelet config");
        let kubeconfig =
            server.kubeconfig_for_cert(&format!("system:node:{node}"), &["system:nodes"]);
        let mut args = vec![
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--config={}", config.display()),
            format!("--hostname-override={node}"),
            "--node-ip=127.0.0.1".to_string(),
            format!("--root-dir={}", dir.join("root").display()),
            format!("--cert-dir={}", dir.join("pki").display()),
            format!("--container-runtime-endpoint={}", containerd.endpoint()),
            format!("--healthz-port={}", free_port()),
            format!("--cni-conf-dir={}", containerd.cni_conf_dir.display()),
            format!("--cni-bridge-name={bridge}"),
            format!("--pod-infra-container-image={PAUSE_IMAGE}"),
            "--node-status-update-frequency=2s".to_string(),
        ];
        if serving {
            args.push(format!("--tls-cert-file={}", pki.serving_cert.display()));
            args.push(format!(
                "--tls-private-key-file={}",
                pki.serving_key.display()
            ));
        }
        let log = File::create(dir.join("kubelet.log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_kubelet"))
            .args(&args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn kubelet");
        Kubelet {
            child: Some(child),
            dir,
            node,
            port,
        }
    }

    fn logs(&self) -> String {
        fs::read_to_string(self.dir.join("kubelet.log")).unwrap_or_default()
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            let logs = self.logs();
            let lines: Vec<&str> = logs.lines().collect();
            let start = lines.len().saturating_sub(60);
            eprintln!("--- kubelet log ---\n{}", lines[start..].join("\n"));
        }
    }
}

struct Stack {
    kubelet: Kubelet,
    containerd: Containerd,
    server: ApiServer,
    pki: KubeletPki,
    ns: String,
    _dir: tempfile::TempDir,
}

impl Stack {
    /// With `verify_kubelet`, the apiserver verifies the kubelet's serving certificate
    /// (--kubelet-certificate-authority) and the kubelet serves one the CA signed.
    fn start(name: &str, verify_kubelet: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("kubelet-server-e2e-")
            .tempdir()
            .expect("tempdir");
        let pki = kubelet_pki(dir.path());
        let mut flags = vec![
            format!("--kubelet-client-certificate={}", pki.client_cert.display()),
            format!("--kubelet-client-key={}", pki.client_key.display()),
        ];
        if verify_kubelet {
            flags.push(format!(
                "--kubelet-certificate-authority={}",
                pki.ca.display()
            ));
        }
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let server = ApiServer::start_with(&flags);
        let containerd = Containerd::start();
        let kubelet = Kubelet::start(&server, &containerd, &pki, name, verify_kubelet);
        let ns = server.namespace(name);
        let _ = server.kubectl(&["create", "serviceaccount", "default", "-n", &ns]);
        server.wait_node_ready(&kubelet.node, WAIT);
        Stack {
            kubelet,
            containerd,
            server,
            pki,
            ns,
            _dir: dir,
        }
    }

    fn run_pod(&self, name: &str, restart: &str, script: &str) -> serde_json::Value {
        let yaml = format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: {node}
  restartPolicy: {restart}
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
                Ok(pod)
            } else {
                Err(pod["status"].to_string())
            }
        })
    }

    fn logs(&self, args: &[&str]) -> common::CmdOutput {
        let mut all = vec!["logs", "-n", &self.ns];
        all.extend_from_slice(args);
        self.server.kubectl(&all)
    }

    /// curl to the kubelet API directly; returns (status code, body).
    fn curl_kubelet(&self, path: &str, auth: &[&str]) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-sk", "--max-time", "10", "-w", "\n%{http_code}"])
            .args(auth)
            .arg(format!("https://127.0.0.1:{}{path}", self.kubelet.port))
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}

#[test]
fn kubelet_api_authenticates_authorizes_and_serves_pods_and_metrics() {
    let s = Stack::start("ks-auth", true);
    s.run_pod("sleeper", "Always", "echo up; exec sleep 3600");
    let bob = "Authorization: Bearer e2e-bob-token-0123456789abcdef";
    let admin = format!("Authorization: Bearer {ADMIN_TOKEN}");

    // No credentials: anonymous is off with a config file, so 401.
    let (code, body) = s.curl_kubelet("/pods", &[]);
    assert_eq!(code, 401, "{body}");
    assert_eq!(body.trim(), "Unauthorized");
    // A token the apiserver does not know.
    let (code, _) = s.curl_kubelet("/pods", &["-H", "Authorization: Bearer nobody-issued-this"]);
    assert_eq!(code, 401);
    // Bob is authenticated by TokenReview but RBAC gives him no nodes/proxy.
    let (code, body) = s.curl_kubelet("/pods", &["-H", bob]);
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body.trim(),
        "Forbidden (user=bob, verb=get, resource=nodes, subresource=proxy)"
    );
    let (code, body) = s.curl_kubelet("/metrics", &["-H", bob]);
    assert_eq!(code, 403);
    assert!(body.contains("subresource=metrics"), "{body}");
    // Alice's certificate chains to the kubelet's client CA, but she may not either.
    let alice = [
        "--cert",
        s.pki.alice_cert.to_str().expect("path"),
        "--key",
        s.pki.alice_key.to_str().expect("path"),
    ];
    let (code, body) = s.curl_kubelet("/healthz", &alice);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("user=alice"), "{body}");
    // The apiserver's client certificate (system:masters) may.
    let apiserver_cert = [
        "--cert",
        s.pki.client_cert.to_str().expect("path"),
        "--key",
        s.pki.client_key.to_str().expect("path"),
    ];
    let (code, body) = s.curl_kubelet("/healthz", &apiserver_cert);
    assert_eq!((code, body.trim()), (200, "ok"));

    // /pods: the PodList of the pods bound to this node.
    let (code, body) = s.curl_kubelet("/pods", &["-H", &admin]);
    assert_eq!(code, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).expect("PodList JSON");
    assert_eq!(list["kind"], "PodList");
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, vec!["sleeper"]);

    // /metrics: the node name and the running pod and container.
    let (code, body) = s.curl_kubelet("/metrics", &["-H", &admin]);
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains(&format!(
            "kubelet_node_name{{node=\"{}\"}} 1",
            s.kubelet.node
        )),
        "{body}"
    );
    assert!(body.contains("kubelet_running_pods 1"), "{body}");
    assert!(
        body.contains("kubelet_running_containers{container_state=\"running\"} 1"),
        "{body}"
    );
    // The PLEG's relist metrics, as upstream names them.
    for metric in [
        "kubelet_pleg_relist_duration_seconds_count",
        "kubelet_pleg_relist_interval_seconds_count",
        "kubelet_pleg_last_seen_seconds",
    ] {
        assert!(body.contains(metric), "{metric} missing: {body}");
    }

    // /stats/summary and /metrics/resource (stats and metrics subresources).
    let (code, body) = s.curl_kubelet("/stats/summary", &["-H", bob]);
    assert_eq!(code, 403);
    assert!(body.contains("subresource=stats"), "{body}");
    let summary = eventually("stats of the sleeper", WAIT, || {
        let (code, body) = s.curl_kubelet("/stats/summary", &["-H", &admin]);
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("{code} {e}: {body}"))?;
        if v["pods"][0]["containers"][0]["memory"]["workingSetBytes"].as_u64() > Some(0) {
            Ok(v)
        } else {
            Err(body)
        }
    });
    assert_eq!(summary["node"]["nodeName"], s.kubelet.node.as_str());
    assert!(summary["node"]["memory"]["workingSetBytes"].as_u64() > Some(0));
    assert_eq!(summary["pods"][0]["podRef"]["name"], "sleeper");
    assert_eq!(summary["pods"][0]["podRef"]["namespace"], s.ns.as_str());
    assert_eq!(summary["pods"][0]["containers"][0]["name"], "main");
    let (code, body) = s.curl_kubelet("/metrics/resource", &["-H", &admin]);
    assert_eq!(code, 200, "{body}");
    let series = format!(
        "container_memory_working_set_bytes{{container=\"main\",namespace=\"{}\",pod=\"sleeper\"}} ",
        s.ns
    );
    assert!(body.contains(&series), "{body}");
    assert!(body.contains("node_cpu_usage_seconds_total "), "{body}");

    // Unknown paths are 404 after authorization.
    let (code, _) = s.curl_kubelet("/nothing-here", &["-H", &admin]);
    assert_eq!(code, 404);

    // The Node advertises the kubelet's port.
    let node = s.server.json(&["get", "node", &s.kubelet.node]);
    assert_eq!(
        node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
        s.kubelet.port
    );

    // With --kubelet-certificate-authority the apiserver verifies the kubelet: the CA-signed
    // kubelet is reached, a second kubelet with a self-signed certificate is refused.
    let healthz = |node: &str| {
        s.server.kubectl(&[
            "get",
            "--raw",
            &format!("/api/v1/nodes/{node}/proxy/healthz"),
        ])
    };
    let out = healthz(&s.kubelet.node);
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout.trim(), "ok");
    let stranger = Kubelet::start(&s.server, &s.containerd, &s.pki, "ks-stranger", false);
    let out = eventually("the self-signed kubelet's node is registered", WAIT, || {
        let node = s
            .server
            .kubectl(&["get", "node", &stranger.node, "-o", "json"]);
        if !node.success() || node.json()["status"]["daemonEndpoints"].is_null() {
            return Err(node.to_string());
        }
        Ok(healthz(&stranger.node))
    });
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains("error dialing backend"),
        "a TLS failure, not an answer: {out}"
    );
}

#[test]
fn kubectl_logs_and_node_proxy_reach_the_kubelet_through_the_apiserver() {
    let s = Stack::start("ks-logs", false);
    // Five lines, a line written in two pieces (containerd joins them), then quiet.
    s.run_pod(
        "counter",
        "Always",
        "for i in 1 2 3 4 5; do echo line-$i; done; printf 'part-'; sleep 1; echo whole; exec sleep 3600",
    );
    let all = eventually("the whole log", WAIT, || {
        let out = s.logs(&["counter"]);
        if out.success() && out.stdout.contains("part-whole") {
            Ok(out.stdout.clone())
        } else {
            Err(out.to_string())
        }
    });
    assert_eq!(all, "line-1\nline-2\nline-3\nline-4\nline-5\npart-whole\n");

    // --tail, --limit-bytes, --timestamps, --since.
    assert_eq!(
        s.logs(&["counter", "--tail=2"]).stdout,
        "line-5\npart-whole\n"
    );
    assert_eq!(s.logs(&["counter", "--limit-bytes=9"]).stdout, "line-1\nli");
    let stamped = s.logs(&["counter", "--timestamps", "--tail=1"]).stdout;
    let (ts, rest) = stamped.split_once(' ').expect("timestamp prefix");
    assert_eq!(rest, "part-whole\n", "{stamped}");
    assert!(
        ts.len() >= 20 && ts.as_bytes()[4] == b'-' && ts.contains('T'),
        "RFC 3339 timestamp: {ts}"
    );
    assert_eq!(s.logs(&["counter", "--since=1h"]).stdout, all);
    // sinceTime in the future: nothing yet.
    assert_eq!(
        s.logs(&["counter", "--since-time=2999-01-01T00:00:00Z"])
            .stdout,
        ""
    );

    // Errors, upstream-shaped.
    let out = s.logs(&["counter", "-c", "nope"]);
    assert!(!out.success());
    assert!(
        out.stderr
            .contains("container nope is not valid for pod counter"),
        "{out}"
    );
    let out = s.logs(&["counter", "--previous"]);
    assert!(!out.success());
    assert!(
        out.stderr
            .contains("previous terminated container \"main\" in pod \"counter\" not found"),
        "{out}"
    );
    let out = s.server.kubectl(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/{}/pods/counter/log?tailLines=-1", s.ns),
    ]);
    assert!(!out.success());
    assert!(
        out.stderr.contains(
            "PodLogOptions \"counter\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0"
        ),
        "{out}"
    );
    let out = s.logs(&["no-such-pod"]);
    assert!(
        out.stderr.contains("pods \"no-such-pod\" not found"),
        "{out}"
    );

    // --previous after a crash: each run prints its own uptime, so the instances differ.
    s.run_pod(
        "crasher",
        "Always",
        "echo run-$(cut -d' ' -f1 /proc/uptime); sleep 2; exit 3",
    );
    let previous = eventually("a previous instance", WAIT, || {
        let pod = s.server.json(&["get", "pod", "crasher", "-n", &s.ns]);
        if pod["status"]["containerStatuses"][0]["restartCount"].as_i64() < Some(1) {
            return Err(pod["status"].to_string());
        }
        let out = s.logs(&["crasher", "--previous"]);
        if out.success() && out.stdout.starts_with("run-") {
            Ok(out.stdout.clone())
        } else {
            Err(out.to_string())
        }
    });
    assert_eq!(previous.lines().count(), 1, "{previous}");

    // -f: lines written after kubectl started arrive while it is still running.
    s.run_pod(
        "ticker",
        "Always",
        "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.3; done",
    );
    let mut follow = Command::new(common::kubectl_binary())
        .args([
            format!(
                "--kubeconfig={}",
                s.server.kubeconfig(User::Admin).display()
            ),
            "logs".into(),
            "-f".into(),
            "-n".into(),
            s.ns.clone(),
            "ticker".into(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl logs -f");
    let stdout = follow.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(WAIT).expect("a first followed line");
    let first_n: u64 = first
        .strip_prefix("tick-")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected line {first:?}"));
    let deadline = Instant::now() + WAIT;
    let mut last = first_n;
    while last < first_n + 10 {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("follow stalled after tick-{last}"));
        let n: u64 = line
            .strip_prefix("tick-")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        assert_eq!(n, last + 1, "lines arrive in order, none lost");
        last = n;
    }
    assert!(
        follow.try_wait().expect("try_wait").is_none(),
        "kubectl logs -f keeps running"
    );
    let _ = follow.kill();
    let _ = follow.wait();

    // -f ends when the container does, with everything it wrote.
    s.run_pod(
        "finisher",
        "Never",
        "for i in 1 2 3 4; do echo done-$i; sleep 1; done",
    );
    let started = Instant::now();
    let out = s.logs(&["-f", "finisher"]);
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout, "done-1\ndone-2\ndone-3\ndone-4\n");
    assert!(started.elapsed() < Duration::from_secs(20), "follow ended");

    // nodes/proxy to the kubelet.
    let node = &s.kubelet.node;
    let healthz = s.server.ok(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{node}/proxy/healthz"),
    ]);
    assert_eq!(healthz.trim(), "ok");
    let pods: serde_json::Value = serde_json::from_str(&s.server.ok(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{node}/proxy/pods"),
    ]))
    .expect("PodList JSON");
    let mut names: Vec<&str> = pods["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, vec!["counter", "crasher", "finisher", "ticker"]);
    let metrics = s.server.ok(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{node}/proxy/metrics"),
    ]);
    assert!(metrics.contains("kubelet_running_pods"), "{metrics}");
    let _ = &s.containerd;
}

/// Spawns `kubectl <args>` as the admin with stdout piped into a channel of lines.
fn kubectl_child(s: &Stack, args: &[&str]) -> (Child, std::sync::mpsc::Receiver<String>) {
    kubectl_child_logging(s, args, None)
}

/// Like [`kubectl_child`], with stderr (kubectl's -v log) written to `stderr` when given.
fn kubectl_child_logging(
    s: &Stack,
    args: &[&str],
    stderr: Option<&Path>,
) -> (Child, std::sync::mpsc::Receiver<String>) {
    let stderr = match stderr {
        Some(path) => Stdio::from(File::create(path).expect("stderr file")),
        None => Stdio::inherit(),
    };
    let mut child = Command::new(common::kubectl_binary())
        .arg(format!(
            "--kubeconfig={}",
            s.server.kubeconfig(User::Admin).display()
        ))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
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

#[test]
fn kubectl_exec_cp_attach_and_port_forward_stream_through_the_kubelet() {
    let s = Stack::start("ks-exec", false);
    s.run_pod(
        "shell",
        "Always",
        "echo hello-from-pod > /var/www/index.html; httpd -p 8080 -h /var/www; \
         while true; do echo attach-tick; sleep 0.3; done",
    );
    let ns = s.ns.as_str();

    // exec: output, stderr, exit codes.
    let out = s
        .server
        .kubectl(&["exec", "-n", ns, "shell", "--", "echo", "hi"]);
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout, "hi\n");
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

    // RBAC sees exec as upstream does: "create" on pods/exec (SPDY is a POST). Alice may
    // read pods (kubectl looks the pod up first) but not exec, then also exec.
    s.server.ok(&[
        "create",
        "role",
        "reader",
        "-n",
        ns,
        "--verb=get",
        "--resource=pods",
    ]);
    s.server.ok(&[
        "create",
        "rolebinding",
        "alice-reader",
        "-n",
        ns,
        "--role=reader",
        "--user=alice",
    ]);
    let out = eventually("alice may read but not exec", WAIT, || {
        let out = s
            .server
            .kubectl_as(User::Alice, &["exec", "-n", ns, "shell", "--", "true"]);
        if out.stderr.contains("pods/exec") {
            Ok(out)
        } else {
            Err(out.to_string())
        }
    });
    assert!(!out.success());
    assert!(
        out.stderr
            .contains("User \"alice\" cannot create resource \"pods/exec\" in API group \"\""),
        "{out}"
    );
    s.server.ok(&[
        "create",
        "role",
        "exec",
        "-n",
        ns,
        "--verb=create",
        "--resource=pods/exec",
    ]);
    s.server.ok(&[
        "create",
        "rolebinding",
        "alice-exec",
        "-n",
        ns,
        "--role=exec",
        "--user=alice",
    ]);
    let out = eventually("alice may exec", WAIT, || {
        let out = s.server.kubectl_as(
            User::Alice,
            &["exec", "-n", ns, "shell", "--", "echo", "as-alice"],
        );
        if out.success() {
            Ok(out)
        } else {
            Err(out.to_string())
        }
    });
    assert_eq!(out.stdout, "as-alice\n");

    // exec -i: stdin reaches the command and its end closes it.
    let out = s.server.kubectl_stdin(
        &["exec", "-i", "-n", ns, "shell", "--", "cat"],
        "line one\nline two\n",
    );
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout, "line one\nline two\n");

    // Errors before any streaming.
    let out = s
        .server
        .kubectl(&["exec", "-n", ns, "shell", "-c", "nope", "--", "true"]);
    assert!(!out.success());
    assert!(
        out.stderr
            .contains("container nope is not valid for pod shell"),
        "{out}"
    );

    // cp both ways (tar over exec, stdin closed at the end).
    let local = s.kubelet.dir.join("cp-src.txt");
    fs::write(&local, "copied through exec\n").expect("write local file");
    let out = s.server.kubectl(&[
        "cp",
        local.to_str().expect("path"),
        &format!("{ns}/shell:/tmp/copied.txt"),
    ]);
    assert!(out.success(), "{out}");
    let out = s
        .server
        .kubectl(&["exec", "-n", ns, "shell", "--", "cat", "/tmp/copied.txt"]);
    assert_eq!(out.stdout, "copied through exec\n", "{out}");
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

    // attach: the main process's output arrives while kubectl runs.
    let (mut attach, lines) = kubectl_child(&s, &["attach", "-n", ns, "shell"]);
    for _ in 0..3 {
        let line = lines.recv_timeout(WAIT).expect("attached output");
        assert_eq!(line, "attach-tick");
    }
    let _ = attach.kill();
    let _ = attach.wait();

    // port-forward to the pod's httpd, over WebSocket (SPDY tunnelled through it), which
    // kubectl tries first.
    let forward_log = s.kubelet.dir.join("port-forward.stderr");
    let (mut forward, lines) = kubectl_child_logging(
        &s,
        &[
            "-v=8",
            "port-forward",
            "-n",
            ns,
            "pod/shell",
            ":8080",
            "--address=127.0.0.1",
        ],
        Some(&forward_log),
    );
    let first = lines.recv_timeout(WAIT).expect("port-forward banner");
    // "Forwarding from 127.0.0.1:<port> -> 8080"
    let port: u16 = first
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected banner {first:?}"));
    for _ in 0..2 {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "10"])
            .arg(format!("http://127.0.0.1:{port}/index.html"))
            .output()
            .expect("curl");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello-from-pod\n");
    }
    let _ = forward.kill();
    let _ = forward.wait();
    let log = fs::read_to_string(&forward_log).unwrap_or_default();
    assert!(
        log.contains("Sec-Websocket-Protocol: SPDY/3.1+portforward.k8s.io")
            && log.contains("101 Switching Protocols"),
        "kubectl tunnelled through WebSocket:\n{log}"
    );
    assert!(!log.contains("fallback"), "no SPDY fallback:\n{log}");
}
