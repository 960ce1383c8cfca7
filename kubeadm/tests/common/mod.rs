//! Helpers for kubeadm's integration tests: run the built kubeadm in a temporary root, read
//! certificates with openssl, start the control plane's binaries, poll with deadlines.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod netns;

use base64::Engine as _;

/// The init phases that need a container runtime and a kubelet, for tests of the file phases.
pub const CLUSTER_PHASES: &str = "images,kubelet-start,wait-control-plane,upload-config,upload-certs,mark-control-plane,bootstrap-token,kubelet-finalize,addon,show-join-command";

pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

fn finish(out: Output) -> Run {
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs kubeadm with `--rootfs root`.
pub fn kubeadm(root: &Path, args: &[&str]) -> Run {
    kubeadm_in(None, root, args)
}

/// A command run inside the network namespace `/run/netns/<ns>` when given (the host's
/// mount namespace is kept, so files and unix sockets are shared).
pub fn in_netns(ns: Option<&str>, program: &str) -> Command {
    match ns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{ns}")).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Runs kubeadm with `--rootfs root` in a node's network namespace.
pub fn kubeadm_in(ns: Option<&str>, root: &Path, args: &[&str]) -> Run {
    let out = in_netns(ns, env!("CARGO_BIN_EXE_kubeadm"))
        .arg("--rootfs")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run kubeadm");
    finish(out)
}

/// Runs kubeadm and insists it succeeds; returns stdout.
pub fn kubeadm_ok(root: &Path, args: &[&str]) -> String {
    let r = kubeadm(root, args);
    assert!(
        r.ok,
        "kubeadm {args:?} failed:\nstdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
    r.stdout
}

pub fn openssl(args: &[&str]) -> Run {
    finish(
        Command::new("openssl")
            .args(args)
            .output()
            .expect("run openssl"),
    )
}

pub fn openssl_ok(args: &[&str]) -> String {
    let r = openssl(args);
    assert!(r.ok, "openssl {args:?} failed: {}{}", r.stdout, r.stderr);
    r.stdout
}

pub fn pki(root: &Path, f: &str) -> String {
    root.join("etc/kubernetes/pki")
        .join(f)
        .display()
        .to_string()
}

/// Writes the client certificate embedded in a kubeconfig to a file and returns its path.
pub fn kubeconfig_client_cert(root: &Path, file: &str) -> String {
    let text = std::fs::read_to_string(root.join("etc/kubernetes").join(file)).expect("kubeconfig");
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("kubeconfig yaml");
    let data = v["users"][0]["user"]["client-certificate-data"]
        .as_str()
        .expect("client-certificate-data");
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data)
        .expect("base64");
    let out = root.join(format!("{file}.client.crt"));
    std::fs::write(&out, pem).expect("write cert");
    out.display().to_string()
}

pub fn kubeconfig_server(root: &Path, file: &str) -> String {
    let text = std::fs::read_to_string(root.join("etc/kubernetes").join(file)).expect("kubeconfig");
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("kubeconfig yaml");
    v["clusters"][0]["cluster"]["server"]
        .as_str()
        .expect("server")
        .to_string()
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("ephemeral port")
}

/// The binary for a component: `$<VAR>` if set, else the one next to the kubeadm binary.
pub fn component_binary(name: &str, var: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    let sibling = Path::new(env!("CARGO_BIN_EXE_kubeadm"))
        .parent()
        .expect("target dir")
        .join(name);
    assert!(
        sibling.is_file(),
        "{} is missing: build it (cargo build --workspace --bins) or set {var}",
        sibling.display()
    );
    sibling
}

/// A directory with the binaries kubeadm builds images from and runs the kubelet from (each
/// a symlink to `$KUBE_*_BIN` / `$KUBELET_BIN` where set, else to the one next to kubeadm), for
/// `--binaries-dir`.
pub fn binaries_dir(into: &Path) -> PathBuf {
    let dir = into.join("bin");
    std::fs::create_dir_all(&dir).expect("bin dir");
    for (name, var) in [
        ("kube-store", "KUBE_STORE_BIN"),
        ("kube-apiserver", "KUBE_APISERVER_BIN"),
        ("kube-controller-manager", "KUBE_CONTROLLER_MANAGER_BIN"),
        ("kube-scheduler", "KUBE_SCHEDULER_BIN"),
        ("kubelet", "KUBELET_BIN"),
        ("kube-proxy", "KUBE_PROXY_BIN"),
        ("kube-dns", "KUBE_DNS_BIN"),
    ] {
        std::os::unix::fs::symlink(component_binary(name, var), dir.join(name)).expect("symlink");
    }
    dir
}

/// PIDs of processes whose command line contains every needle.
pub fn pids_with(needles: &[&str]) -> Vec<u32> {
    let mut pids = vec![];
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if needles.iter().all(|n| cmd.contains(n)) {
            pids.push(pid);
        }
    }
    pids
}

pub fn kubectl() -> String {
    std::env::var("KUBECTL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "kubectl".to_string())
}

pub fn kubectl_run(kubeconfig: &Path, args: &[&str]) -> Run {
    finish(
        Command::new(kubectl())
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .output()
            .expect("run kubectl"),
    )
}

/// Polls `f` until it returns Some or the deadline passes.
pub fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Child processes killed when the test ends, whatever happens.
#[derive(Default)]
pub struct Procs {
    pub children: Vec<(String, Child, PathBuf)>,
}

impl Procs {
    pub fn spawn(&mut self, name: &str, cmd: &[String], log_dir: &Path) {
        let log = log_dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let err = file.try_clone().expect("log file");
        let child = Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdout(file)
            .stderr(err)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({}): {e}", cmd[0]));
        self.children.push((name.to_string(), child, log));
    }

    /// The last lines of every log, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for (name, _, log) in &self.children {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            s.push_str(&format!("==== {name}\n{tail}\n"));
        }
        s
    }

    /// Fails if a component exited (it would never come up).
    pub fn assert_running(&mut self) {
        let mut dead = vec![];
        for (name, child, _) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                dead.push(format!("{name} exited with {status}"));
            }
        }
        if !dead.is_empty() {
            panic!("{}\n{}", dead.join("\n"), self.logs());
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
