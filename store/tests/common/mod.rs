//! Process harness for integration tests: runs kube-store (or real etcd) members as child processes.
//!
//! The binary under test is chosen by `STORE_UNDER_TEST`: unset or `kube-store` runs this crate's
//! `kube-store` binary, `etcd` runs real etcd 3.4 (`ETCD_BIN`, default `/usr/bin/etcd`) with the
//! same flags, so every test can be validated against the reference first. `ETCDCTL` overrides
//! the etcdctl path; `KEEP_TEST_DIRS=1` keeps data dirs and member logs after the test.
//!
//! ```ignore
//! let mut cluster = Cluster::start(3);
//! cluster.etcdctl(&["put", "k", "v"]).ok();
//! let leader = cluster.leader();
//! cluster.kill(leader);
//! cluster.restart(leader);
//! ```
#![allow(dead_code)]

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long a member may take to become healthy after start or restart.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// `--command-timeout` passed to every etcdctl call.
pub const COMMAND_TIMEOUT: &str = "10s";

/// Which server binary the harness runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    KubeStore,
    Etcd,
}

impl Impl {
    /// Reads `STORE_UNDER_TEST` (`etcd` or `kube-store`, default kube-store).
    pub fn from_env() -> Self {
        match std::env::var("STORE_UNDER_TEST").as_deref() {
            Ok("etcd") => Impl::Etcd,
            Ok("") | Ok("kube-store") | Ok("store") | Err(_) => Impl::KubeStore,
            Ok(other) => panic!("STORE_UNDER_TEST={other}: expected `etcd` or `kube-store`"),
        }
    }

    pub fn binary(self) -> PathBuf {
        match self {
            Impl::KubeStore => PathBuf::from(env!("CARGO_BIN_EXE_kube-store")),
            Impl::Etcd => std::env::var_os("ETCD_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd")),
        }
    }
}

/// The etcdctl binary; a missing etcdctl is a test failure (`make deps` installs it).
pub fn etcdctl_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = std::env::var_os("ETCDCTL")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("etcdctl"));
        let probe = Command::new(&path)
            .arg("version")
            .env("ETCDCTL_API", "3")
            .output();
        match probe {
            Ok(out) if out.status.success() => path,
            other => panic!(
                "etcdctl is required (apt package etcd-client, installed by `make deps`): \
                 running {} failed: {other:?}",
                path.display()
            ),
        }
    })
    .clone()
}

/// A free loopback port, never handed out twice within this test process.
pub fn free_port() -> u16 {
    static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let handed_out = HANDED_OUT.get_or_init(|| Mutex::new(HashSet::new()));
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
        let port = listener.local_addr().expect("local addr").port();
        if handed_out.lock().expect("port set lock").insert(port) {
            return port;
        }
    }
}

/// Ports, URLs and data dir of one member; enough to (re)start it.
#[derive(Debug, Clone)]
pub struct MemberSpec {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub metrics_port: u16,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
}

impl MemberSpec {
    fn new(name: &str, base: &Path) -> Self {
        MemberSpec {
            name: name.to_string(),
            client_port: free_port(),
            peer_port: free_port(),
            metrics_port: free_port(),
            data_dir: base.join(format!("{name}.data")),
            log_path: base.join(format!("{name}.log")),
        }
    }

    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.metrics_port)
    }

    /// The endpoint as etcdctl's `--endpoints` takes it (`127.0.0.1:port`).
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// This member's entry in `--initial-cluster`.
    pub fn initial_cluster_entry(&self) -> String {
        format!("{}={}", self.name, self.peer_url())
    }
}

/// One member process (running or stopped) and how it was started.
pub struct Member {
    pub spec: MemberSpec,
    initial_cluster: String,
    initial_cluster_state: &'static str,
    child: Option<Child>,
}

impl Member {
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// OS pid of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// Options for starting a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub members: usize,
    /// Extra `--flag=value` arguments for every member (e.g. `--snapshot-count=100`).
    pub extra_args: Vec<String>,
    /// Wait until every member reports healthy before returning.
    pub wait_healthy: bool,
    /// Which server to run; `None` reads `STORE_UNDER_TEST` (benchmarks run both).
    pub kind: Option<Impl>,
}

impl ClusterOptions {
    pub fn new(members: usize) -> Self {
        ClusterOptions {
            members,
            extra_args: Vec::new(),
            wait_healthy: true,
            kind: None,
        }
    }

    pub fn kind(mut self, kind: Impl) -> Self {
        self.kind = Some(kind);
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }
}

/// A set of members on loopback with fresh data dirs; dropping it kills every member.
pub struct Cluster {
    pub kind: Impl,
    pub members: Vec<Member>,
    token: String,
    extra_args: Vec<String>,
    dir: Option<tempfile::TempDir>,
}

impl Cluster {
    /// Starts `n` members (`a`, `b`, `c`, ...) and waits until all are healthy.
    pub fn start(n: usize) -> Self {
        Self::start_with(ClusterOptions::new(n))
    }

    pub fn start_with(opts: ClusterOptions) -> Self {
        assert!(opts.members > 0, "a cluster needs at least one member");
        let kind = opts.kind.unwrap_or_else(Impl::from_env);
        let dir = tempfile::Builder::new()
            .prefix("kube-store-test-")
            .tempdir()
            .expect("create temp dir");
        let specs: Vec<MemberSpec> = (0..opts.members)
            .map(|i| MemberSpec::new(&member_name(i), dir.path()))
            .collect();
        let initial_cluster = specs
            .iter()
            .map(MemberSpec::initial_cluster_entry)
            .collect::<Vec<_>>()
            .join(",");
        let token = format!(
            "kube-store-test-{}-{}",
            std::process::id(),
            specs[0].client_port
        );
        let mut cluster = Cluster {
            kind,
            members: Vec::new(),
            token,
            extra_args: opts.extra_args,
            dir: Some(dir),
        };
        for spec in specs {
            cluster.members.push(Member {
                spec,
                initial_cluster: initial_cluster.clone(),
                initial_cluster_state: "new",
                child: None,
            });
        }
        for i in 0..cluster.members.len() {
            cluster.spawn(i);
        }
        if opts.wait_healthy {
            cluster.wait_all_healthy();
        }
        cluster
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("temp dir present").path()
    }

    pub fn spec(&self, i: usize) -> &MemberSpec {
        &self.members[i].spec
    }

    /// Endpoint (`127.0.0.1:port`) of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        self.members[i].spec.endpoint()
    }

    /// Comma-separated endpoints of every running member.
    pub fn endpoints(&self) -> String {
        self.running()
            .map(|i| self.endpoint(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Client URLs (`http://127.0.0.1:port`) of every running member.
    pub fn client_urls(&self) -> Vec<String> {
        self.running().map(|i| self.spec(i).client_url()).collect()
    }

    /// Indexes of running members.
    pub fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.members.len()).filter(|&i| self.members[i].is_running())
    }

    fn args(&self, i: usize) -> Vec<String> {
        let m = &self.members[i];
        let s = &m.spec;
        let mut args = vec![
            format!("--name={}", s.name),
            format!("--data-dir={}", s.data_dir.display()),
            format!("--listen-client-urls={}", s.client_url()),
            format!("--advertise-client-urls={}", s.client_url()),
            format!("--listen-peer-urls={}", s.peer_url()),
            format!("--initial-advertise-peer-urls={}", s.peer_url()),
            format!("--initial-cluster={}", m.initial_cluster),
            format!("--initial-cluster-state={}", m.initial_cluster_state),
            format!("--initial-cluster-token={}", self.token),
            format!("--listen-metrics-urls={}", s.metrics_url()),
        ];
        args.extend(self.extra_args.iter().cloned());
        args
    }

    fn spawn(&mut self, i: usize) {
        assert!(
            !self.members[i].is_running(),
            "member {i} is already running"
        );
        let args = self.args(i);
        let spec = &self.members[i].spec;
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log_path)
            .expect("open member log");
        writeln!(
            log,
            "==== harness: starting {} {}",
            spec.name,
            args.join(" ")
        )
        .expect("write member log");
        let log_err = log.try_clone().expect("clone log handle");
        let mut cmd = Command::new(self.kind.binary());
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .env("RUST_BACKTRACE", "1");
        if self.kind == Impl::Etcd && std::env::consts::ARCH != "x86_64" {
            // etcd 3.4 refuses to start on non-amd64 unless told the arch is accepted.
            let goarch = match std::env::consts::ARCH {
                "aarch64" => "arm64",
                other => other,
            };
            cmd.env("ETCD_UNSUPPORTED_ARCH", goarch);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.kind.binary().display()));
        self.members[i].child = Some(child);
    }

    /// SIGKILLs member `i` (`Child::kill` is SIGKILL on unix) and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts a killed member from its data dir and waits until it is healthy.
    pub fn restart(&mut self, i: usize) {
        self.restart_no_wait(i);
        self.wait_healthy(i, START_TIMEOUT);
    }

    /// Restarts a killed member from its data dir without waiting.
    pub fn restart_no_wait(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
    }

    /// Allocates ports and a data dir for a member that is not part of the cluster yet
    /// (for `member add`).
    pub fn new_member_spec(&self, name: &str) -> MemberSpec {
        MemberSpec::new(name, self.dir())
    }

    /// Starts a member already added with `member add`, with `--initial-cluster-state=existing`,
    /// and waits until it is healthy. Returns its index.
    pub fn join(&mut self, spec: MemberSpec, initial_cluster: &str) -> usize {
        self.members.push(Member {
            spec,
            initial_cluster: initial_cluster.to_string(),
            initial_cluster_state: "existing",
            child: None,
        });
        let i = self.members.len() - 1;
        self.spawn(i);
        self.wait_healthy(i, START_TIMEOUT);
        i
    }

    /// Kills member `i` and forgets it (after `member remove`). Indexes above `i` shift down.
    pub fn forget(&mut self, i: usize) {
        self.kill(i);
        self.members.remove(i);
    }

    /// Polls `etcdctl endpoint health` on member `i` until it passes; panics with the member's
    /// log tail at the deadline or if the process exits.
    pub fn wait_healthy(&mut self, i: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.members[i].child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.members[i].child = None;
                    panic!(
                        "member {} exited with {status} while waiting for health\n{}",
                        self.members[i].spec.name,
                        log_tail(&self.members[i].spec.log_path, 60)
                    );
                }
            } else {
                panic!("member {i} is not running");
            }
            let out = etcdctl_raw(
                &self.endpoint(i),
                &[
                    "endpoint",
                    "health",
                    "--dial-timeout=1s",
                    "--command-timeout=2s",
                ],
                None,
            );
            if out.status.success() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "member {} not healthy after {timeout:?}; last check:\n{out}\nlog:\n{}",
                    self.members[i].spec.name,
                    log_tail(&self.members[i].spec.log_path, 60)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn wait_all_healthy(&mut self) {
        let running: Vec<usize> = self.running().collect();
        for i in running {
            self.wait_healthy(i, START_TIMEOUT);
        }
    }

    /// Index of the member that `endpoint status` reports as leader, polling until one is known.
    pub fn leader(&self) -> usize {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            for i in self.running() {
                let out = self.etcdctl_at(i, &["endpoint", "status", "-w", "json"]);
                if !out.status.success() {
                    continue;
                }
                let v = out.json();
                let leader = v[0]["Status"]["leader"].as_u64().unwrap_or(0);
                let me = v[0]["Status"]["header"]["member_id"].as_u64().unwrap_or(0);
                if leader != 0 && leader == me {
                    return i;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader after {START_TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs etcdctl against every running member.
    pub fn etcdctl(&self, args: &[&str]) -> CtlOutput {
        etcdctl_raw(&self.endpoints(), args, None)
    }

    /// Runs etcdctl against member `i` only.
    pub fn etcdctl_at(&self, i: usize, args: &[&str]) -> CtlOutput {
        etcdctl_raw(&self.endpoint(i), args, None)
    }

    /// Runs etcdctl against every running member with `stdin` fed to it.
    pub fn etcdctl_stdin(&self, args: &[&str], stdin: &[u8]) -> CtlOutput {
        etcdctl_raw(&self.endpoints(), args, Some(stdin))
    }

    /// Starts a long-running etcdctl (e.g. `watch`) against every running member.
    pub fn spawn_etcdctl(&self, args: &[&str]) -> CtlProcess {
        CtlProcess::spawn(&self.endpoints(), args)
    }

    /// Starts a long-running etcdctl against member `i` only.
    pub fn spawn_etcdctl_at(&self, i: usize, args: &[&str]) -> CtlProcess {
        CtlProcess::spawn(&self.endpoint(i), args)
    }

    /// The current store revision (from `get` on an unused key).
    pub fn revision(&self) -> i64 {
        let v = self
            .etcdctl(&["get", "/harness/revision-probe", "-w", "json"])
            .ok()
            .json();
        v["header"]["revision"]
            .as_i64()
            .expect("header.revision in get -w json")
    }

    /// Last `lines` lines of every member's log, for failure messages.
    pub fn logs(&self, lines: usize) -> String {
        let mut s = String::new();
        for m in &self.members {
            s.push_str(&format!(
                "---- {} ({})\n",
                m.spec.name,
                m.spec.log_path.display()
            ));
            s.push_str(&log_tail(&m.spec.log_path, lines));
        }
        s
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        if thread::panicking() {
            eprintln!(
                "{} under test; member logs:\n{}",
                self.kind.label(),
                self.logs(40)
            );
        }
        let keep = std::env::var_os("KEEP_TEST_DIRS").is_some_and(|v| v != "0");
        if let Some(dir) = self.dir.take() {
            if keep {
                eprintln!("keeping test dir {}", dir.keep().display());
            }
        }
    }
}

impl Impl {
    pub fn label(self) -> &'static str {
        match self {
            Impl::KubeStore => "kube-store",
            Impl::Etcd => "etcd",
        }
    }
}

fn member_name(i: usize) -> String {
    let letters = b"abcdefghijklmnopqrstuvwxyz";
    if i < letters.len() {
        (letters[i] as char).to_string()
    } else {
        format!("m{i}")
    }
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| format!("(no log: {e})\n"));
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    let mut s = all[start..].join("\n");
    s.push('\n');
    s
}

/// Output of one etcdctl run.
pub struct CtlOutput {
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for CtlOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "etcdctl {}\nstatus: {}\nstdout:\n{}\nstderr:\n{}",
            self.args.join(" "),
            self.status,
            self.stdout,
            self.stderr
        )
    }
}

impl CtlOutput {
    /// Panics with the full output unless etcdctl exited 0.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert!(self.status.success(), "etcdctl failed\n{self}");
        self
    }

    /// Panics unless etcdctl failed and its stderr contains `needle`.
    #[track_caller]
    pub fn fails_with(self, needle: &str) -> Self {
        assert!(
            !self.status.success(),
            "etcdctl succeeded, expected an error containing {needle:?}\n{self}"
        );
        assert!(
            self.stderr.contains(needle),
            "etcdctl error does not contain {needle:?}\n{self}"
        );
        self
    }

    /// Stdout parsed as JSON (for `-w json`).
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("etcdctl output is not JSON: {e}\n{self}"))
    }

    /// Stdout lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

fn etcdctl_command(endpoints: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(etcdctl_path());
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg(format!("--command-timeout={COMMAND_TIMEOUT}"))
        .args(args);
    cmd
}

/// Runs etcdctl once against `endpoints` (comma-separated), optionally feeding `stdin`.
pub fn etcdctl_raw(endpoints: &str, args: &[&str], stdin: Option<&[u8]>) -> CtlOutput {
    let mut cmd = etcdctl_command(endpoints, args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn etcdctl");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("etcdctl stdin");
        let input = input.to_vec();
        // A writer thread so a large stdin cannot deadlock against a full stdout pipe.
        thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let out = child.wait_with_output().expect("wait for etcdctl");
    CtlOutput {
        args: args.iter().map(|s| s.to_string()).collect(),
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A long-running etcdctl (e.g. `watch`) whose stdout lines are read with deadlines.
/// Killed on drop.
pub struct CtlProcess {
    args: Vec<String>,
    child: Child,
    lines: Receiver<String>,
    stderr_path: PathBuf,
    _stderr_dir: tempfile::TempDir,
    seen: Vec<String>,
}

impl CtlProcess {
    fn spawn(endpoints: &str, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for etcdctl stderr");
        let stderr_path = dir.path().join("stderr");
        let stderr = File::create(&stderr_path).expect("create etcdctl stderr file");
        let mut child = etcdctl_command(endpoints, args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn etcdctl");
        let stdout = child.stdout.take().expect("etcdctl stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        CtlProcess {
            args: args.iter().map(|s| s.to_string()).collect(),
            child,
            lines: rx,
            stderr_path,
            _stderr_dir: dir,
            seen: Vec::new(),
        }
    }

    /// The next `n` stdout lines, waiting at most `timeout` in total.
    #[track_caller]
    pub fn next_lines(&mut self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    got.push(line);
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "etcdctl {}: got {} of {n} lines within {timeout:?}: {got:?}\nall stdout so far: {:?}\nstderr:\n{}",
                    self.args.join(" "),
                    got.len(),
                    self.seen,
                    self.stderr()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "etcdctl {} exited after {} of {n} lines: {got:?}\nstderr:\n{}",
                    self.args.join(" "),
                    got.len(),
                    self.stderr()
                ),
            }
        }
        got
    }

    /// Waits for the process to exit on its own; `None` if it is still running at the deadline.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything on stdout not yet consumed by `next_lines`, without waiting.
    pub fn drain(&mut self) -> Vec<String> {
        let rest: Vec<String> = self.lines.try_iter().collect();
        self.seen.extend(rest.iter().cloned());
        rest
    }

    pub fn stderr(&self) -> String {
        fs::read(&self.stderr_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for CtlProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Decodes standard base64 (how `-w json` prints keys and values).
pub fn b64decode(s: &str) -> Vec<u8> {
    fn val(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a') as u32 + 26,
            b'0'..=b'9' => (c - b'0') as u32 + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("invalid base64 byte {c:#x}"),
        }
    }
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (k, &c) in chunk.iter().enumerate() {
            acc |= val(c) << (18 - 6 * k);
        }
        let n = chunk.len() * 6 / 8;
        for k in 0..n {
            out.push((acc >> (16 - 8 * k)) as u8);
        }
    }
    out
}

/// A base64 JSON field decoded to a UTF-8 string (missing field = empty, as etcd omits empties).
pub fn b64str(v: &serde_json::Value) -> String {
    String::from_utf8(b64decode(v.as_str().unwrap_or(""))).expect("utf-8 key or value")
}

/// A simplified view of one kv from `-w json` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonKv {
    pub key: String,
    pub value: String,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
}

/// The `kvs` of a `get -w json` response (etcd omits zero fields; they read as 0 / empty).
pub fn json_kvs(v: &serde_json::Value) -> Vec<JsonKv> {
    let field = |kv: &serde_json::Value, name: &str| kv[name].as_i64().unwrap_or(0);
    v["kvs"]
        .as_array()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| JsonKv {
                    key: b64str(&kv["key"]),
                    value: b64str(&kv["value"]),
                    create_revision: field(kv, "create_revision"),
                    mod_revision: field(kv, "mod_revision"),
                    version: field(kv, "version"),
                    lease: field(kv, "lease"),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `header.revision` of a `-w json` response.
pub fn json_revision(v: &serde_json::Value) -> i64 {
    v["header"]["revision"]
        .as_i64()
        .unwrap_or_else(|| panic!("no header.revision in {v}"))
}
