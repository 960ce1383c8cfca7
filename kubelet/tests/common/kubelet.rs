//! One kubelet process for the kubelet suites, on a private containerd.

#![allow(dead_code)]

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

use crate::common::{eventually, free_port};
use crate::containerd::{Containerd, PAUSE_IMAGE};

/// How long a kubelet may take to answer /healthz.
const WAIT: Duration = Duration::from_secs(60);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// One kubelet process; dropping it kills the process (its pods stay for containerd's drop).
pub struct Kubelet {
    pub child: Option<Child>,
    pub args: Vec<String>,
    pub dir: PathBuf,
    pub node: String,
    pub healthz: u16,
    pub pod_cidr: String,
    pub runs: u32,
}

impl Kubelet {
    /// A kubelet with the kubeconfig `kubeconfig(node name)` returns, and `extra` flags. Its
    /// podCIDR is `10.<net>.<n>.0/24` (net offset by the pid) on a bridge named
    /// `<bridge_prefix><pid>x<n>`, so suites and tests in parallel do not share a network.
    pub fn start(
        containerd: &Containerd,
        name: &str,
        (net, bridge_prefix): (u32, &str),
        kubeconfig: impl FnOnce(&str) -> PathBuf,
        extra: &[String],
    ) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let node = format!("{name}-{pid}-{n}");
        let kubeconfig = kubeconfig(&node);
        // A distinct /24 and bridge per kubelet, so tests in parallel do not share a network.
        let pod_cidr = format!("10.{}.{}.0/24", net + (pid % 50), n % 250);
        let bridge = format!("{bridge_prefix}{}x{n}", pid % 100_000);
        containerd
            .bridges
            .lock()
            .expect("bridges lock")
            .push(bridge.clone());
        let dir = containerd.dir().join(format!("kubelet-{n}"));
        fs::create_dir_all(dir.join("logs")).expect("kubelet dir");
        let config = dir.join("config.yaml");
        // No eviction thresholds and no image GC: a nearly full test disk must not evict test
        // pods or remove their images (tests/eviction.rs turns both on by flag).
        fs::write(
            &config,
            format!(
                "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
                 podCIDR: {pod_cidr}\npodLogsDir: {logs}\nclusterDomain: cluster.local\n\
                 evictionHard: {{}}\nimageGCHighThresholdPercent: 100\n",
                logs = dir.join("logs").display()
            ),
        )
        .expect("kubelet config");
        let healthz = free_port();
        let mut args = vec![
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--config={}", config.display()),
            format!("--hostname-override={node}"),
            "--node-ip=127.0.0.1".to_string(),
            format!("--root-dir={}", dir.join("root").display()),
            format!("--cert-dir={}", dir.join("pki").display()),
            format!("--container-runtime-endpoint={}", containerd.endpoint()),
            format!("--healthz-port={healthz}"),
            // Each kubelet its own API port: parallel tests would all bind 10250.
            format!("--port={}", free_port()),
            "--address=127.0.0.1".to_string(),
            format!("--cni-conf-dir={}", containerd.cni_conf_dir.display()),
            format!("--cni-bridge-name={bridge}"),
            format!("--pod-infra-container-image={PAUSE_IMAGE}"),
            "--node-status-update-frequency=2s".to_string(),
        ];
        args.extend(extra.iter().cloned());
        let mut kubelet = Kubelet {
            child: None,
            args,
            dir,
            node,
            healthz,
            pod_cidr,
            runs: 0,
        };
        kubelet.spawn();
        kubelet
    }

    pub fn spawn(&mut self) {
        self.runs += 1;
        let log = File::create(self.dir.join(format!("kubelet-{}.log", self.runs))).expect("log");
        let child = Command::new(kubelet_binary())
            .args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("KUBELET_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn kubelet");
        self.child = Some(child);
        eventually("kubelet /healthz", WAIT, || {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("kubelet exited with {status}:\n{}", self.logs());
            }
            http_get("127.0.0.1", self.healthz, "/healthz").and_then(|body| {
                if body.contains("ok") {
                    Ok(())
                } else {
                    Err(body)
                }
            })
        });
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn logs(&self) -> String {
        (1..=self.runs)
            .map(|i| {
                fs::read_to_string(self.dir.join(format!("kubelet-{i}.log"))).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n--- restarted ---\n")
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.kill9();
        if thread::panicking() {
            let logs = self.logs();
            let lines: Vec<&str> = logs.lines().collect();
            let start = lines.len().saturating_sub(80);
            eprintln!(
                "--- kubelet log (last 80 lines) ---\n{}",
                lines[start..].join("\n")
            );
        }
    }
}

/// The kubelet under test: $KUBELET_BIN if set (a copy, so that another checkout building into
/// a shared target dir cannot swap the binary mid-run), else the one cargo built.
pub fn kubelet_binary() -> PathBuf {
    std::env::var_os("KUBELET_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kubelet")))
}

/// A plain HTTP/1.0 GET; the body on 200.
pub fn http_get(host: &str, port: u16, path: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(
        &format!("{host}:{port}")
            .parse()
            .map_err(|e| format!("{e}"))?,
        Duration::from_secs(2),
    )
    .map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    if !response.starts_with("HTTP/1.") || !response.contains(" 200 ") {
        return Err(response);
    }
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default())
}
