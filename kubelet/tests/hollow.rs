//! Hollow nodes: `hollow-node` runs several complete kubelets on in-memory runtimes against the
//! real apiserver and scheduler. Each node registers and turns Ready, pods scheduled to them
//! run (with a pod IP from the node's fake range) and deleting them finishes.

#[path = "../../apiserver/tests/common/mod.rs"]
mod common;

#[path = "common/daemon.rs"]
mod daemon;

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{eventually, ApiServer, User};
use daemon::Daemon;

const WAIT: Duration = Duration::from_secs(60);
const NODES: usize = 3;

struct Hollow(Child);

impl Drop for Hollow {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn hollow_nodes_register_and_run_pods() {
    let server = ApiServer::start();
    let _scheduler = Daemon::start(
        &server,
        "kube-scheduler",
        "KUBE_SCHEDULER_BIN",
        "system:kube-scheduler",
        &["--leader-elect=false"],
    );
    // The node lifecycle controller lifts the not-ready taint kubelets register with.
    let ca = format!("--root-ca-file={}", server.pki.ca_cert.display());
    let _kcm = Daemon::start(
        &server,
        "kube-controller-manager",
        "KUBE_CONTROLLER_MANAGER_BIN",
        "system:kube-controller-manager",
        &[
            &ca,
            "--leader-elect=false",
            "--controllers=nodelifecycle",
            "--use-service-account-credentials=true",
        ],
    );
    let prefix = format!("hollow-{}-", std::process::id());
    let dir = server.dir().join("hollow");
    let binary = std::env::var_os("HOLLOW_NODE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_hollow-node")));
    let log = server.dir().join("hollow-node.log");
    let _hollow = Hollow(
        Command::new(binary)
            .args([
                format!("--kubeconfig={}", server.kubeconfig(User::Admin).display()),
                format!("--nodes={NODES}"),
                format!("--name-prefix={prefix}"),
                format!("--root-dir={}", dir.display()),
                "--node-status-update-frequency=2s".to_string(),
            ])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("log"))
            .spawn()
            .expect("spawn hollow-node"),
    );

    eventually("hollow nodes Ready", WAIT, || {
        let nodes = server.json(&["get", "nodes"]);
        let ready: Vec<String> = nodes["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| {
                n["metadata"]["name"]
                    .as_str()
                    .is_some_and(|name| name.starts_with(&prefix))
                    && n["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .filter_map(|n| n["metadata"]["name"].as_str().map(String::from))
            .collect();
        if ready.len() == NODES {
            Ok(())
        } else {
            Err(format!(
                "{} of {NODES} Ready; hollow-node log:\n{}",
                ready.len(),
                std::fs::read_to_string(&log).unwrap_or_default()
            ))
        }
    });
    let node = server.json(&["get", "node", &format!("{prefix}0")]);
    assert_eq!(
        node["status"]["nodeInfo"]["containerRuntimeVersion"]
            .as_str()
            .map(|v| v.starts_with("fake://")),
        Some(true),
        "{node}"
    );

    let ns = server.namespace("hollow");
    let _ = server.kubectl(&["create", "serviceaccount", "default", "-n", &ns]);
    for i in 0..6 {
        server.ok(&[
            "run",
            &format!("p{i}"),
            "-n",
            &ns,
            "--image=registry.k8s.io/pause:3.10",
            "--overrides={\"spec\":{\"automountServiceAccountToken\":false}}",
        ]);
    }
    let pods = eventually("6 pods Running on hollow nodes", WAIT, || {
        let pods = server.json(&["get", "pods", "-n", &ns]);
        let items = pods["items"].as_array().cloned().unwrap_or_default();
        let running = items
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count();
        if items.len() == 6 && running == 6 {
            Ok(items)
        } else {
            let nodes = server.json(&["get", "nodes"]);
            let taints: Vec<_> = nodes["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|n| n["spec"]["taints"].clone())
                .collect();
            Err(format!(
                "{running} of {} Running (node taints {taints:?}): {}\nhollow-node log:\n{}",
                items.len(),
                items
                    .first()
                    .map(|p| (p["spec"]["nodeName"].clone(), p["status"].clone()))
                    .unwrap_or_default()
                    .1,
                std::fs::read_to_string(&log).unwrap_or_default()
            ))
        }
    });
    for p in &pods {
        let node = p["spec"]["nodeName"].as_str().unwrap_or_default();
        assert!(node.starts_with(&prefix), "{p}");
        let ip = p["status"]["podIP"].as_str().unwrap_or_default();
        assert!(
            ip.starts_with("10.128."),
            "pod IP {ip:?} from the node's fake range: {p}"
        );
        assert_eq!(p["status"]["containerStatuses"][0]["ready"], true, "{p}");
    }

    server.ok(&[
        "delete",
        "pods",
        "--all",
        "-n",
        &ns,
        "--wait=true",
        "--timeout=60s",
    ]);
    let left = server.json(&["get", "pods", "-n", &ns]);
    assert_eq!(left["items"].as_array().map(Vec::len), Some(0), "{left}");
}
