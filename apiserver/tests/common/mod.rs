//! Process harness for the kubectl end-to-end tests: runs `kube-apiserver` on loopback with its
//! own PKI, token file and kubeconfigs, and drives it with stock `kubectl` and `curl`.
//!
//! Every test starts its own server, so tests share no state (nodes, metrics, CRDs, watch
//! windows) and a crash in one cannot fail another. Environment:
//! - `KUBE_APISERVER_BIN`: run this binary instead of the crate's `kube-apiserver`.
//! - `APISERVER_EXTRA_ARGS`: whitespace-separated flags appended to the server's command line.
//! - `KUBECTL`: the kubectl to run (default: the v1.32 `kubectl` on the PATH, see
//!   [`kubectl_binary`]); `CURL` likewise (default `curl`).
//! - `KEEP_TEST_DIRS=1`: keep the temp dir (PKI, kubeconfigs, data, server logs) after the test.
//!
//! ```ignore
//! let k = ApiServer::start();
//! let ns = k.namespace("demo");
//! k.ok(&["apply", "-n", &ns, "-f", &testdata("app.yaml")]);
//! let (status, body) = k.raw_request("GET", "/healthz", None, None, User::Anonymous);
//! ```
#![allow(dead_code)]

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// How long the server may take to answer `/readyz` with 200 after it is spawned.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Wall-clock limit for one kubectl run, so a hung server fails a test instead of hanging it.
pub const KUBECTL_TIMEOUT: Duration = Duration::from_secs(60);
/// `--max-time` for one curl request.
pub const CURL_TIMEOUT: Duration = Duration::from_secs(30);
/// Default deadline for conditions the tests poll (watch lines, discovery of a new CRD, ...).
pub const WAIT: Duration = Duration::from_secs(30);

/// Credentials for [`ApiServer::request_as`] and [`ApiServer::kubectl_cred`].
#[derive(Debug, Clone, Copy)]
pub enum Cred<'a> {
    /// A client certificate and its key.
    Cert(&'a Path, &'a Path),
    /// A bearer token.
    Token(&'a str),
    None,
}

/// A path as a YAML scalar: JSON strings are valid YAML and quote any path safely.
fn quoted(p: &Path) -> String {
    serde_json::to_string(&p.to_string_lossy()).expect("a string serializes to JSON")
}

/// The `user:` entry of a kubeconfig for `cred`.
fn credentials_yaml(cred: Cred<'_>) -> String {
    let q = quoted;
    match cred {
        Cred::Cert(crt, key) => format!(
            "\n    client-certificate: {}\n    client-key: {}",
            q(crt),
            q(key)
        ),
        Cred::Token(t) => format!("\n    token: {t}"),
        Cred::None => " {}".to_string(),
    }
}

/// Who a request or a kubectl run authenticates as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum User {
    /// Client certificate CN=kubernetes-admin, O=system:masters.
    Admin,
    /// Client certificate CN=alice, O=developers: authenticated, granted nothing by RBAC.
    Alice,
    /// Bearer token from the token file for `token-admin`, group system:masters.
    AdminToken,
    /// Bearer token from the token file for `bob`, group developers.
    BobToken,
    /// A bearer token that is in no token file.
    BadToken,
    /// No client certificate and no token.
    Anonymous,
}

impl User {
    pub const ALL: [User; 6] = [
        User::Admin,
        User::Alice,
        User::AdminToken,
        User::BobToken,
        User::BadToken,
        User::Anonymous,
    ];

    fn label(self) -> &'static str {
        match self {
            User::Admin => "admin",
            User::Alice => "alice",
            User::AdminToken => "admin-token",
            User::BobToken => "bob-token",
            User::BadToken => "bad-token",
            User::Anonymous => "anonymous",
        }
    }
}

/// The token-file admin (`system:masters`), for raw HTTP clients such as curl.
pub const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789abcdef";
const BOB_TOKEN: &str = "e2e-bob-token-0123456789abcdef";
const BAD_TOKEN: &str = "e2e-token-nobody-issued";

/// Certificates and keys written by [`write_pki`].
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    pub alice_cert: PathBuf,
    pub alice_key: PathBuf,
    /// CN=system:node:node-1, O=system:nodes: a kubelet's identity.
    pub node_cert: PathBuf,
    pub node_key: PathBuf,
    /// CN=kubernetes-admin, O=system:masters, but signed by a CA the server does not trust.
    pub stranger_cert: PathBuf,
    pub stranger_key: PathBuf,
}

/// A CA, a serving certificate for 127.0.0.1/localhost (and the in-cluster names) signed by it,
/// and two client certificates: kubernetes-admin in system:masters and alice in developers.
pub fn write_pki(dir: &Path) -> anyhow::Result<Pki> {
    fs::create_dir_all(dir)?;
    let write = |name: &str, pem: String| -> anyhow::Result<PathBuf> {
        let path = dir.join(name);
        fs::write(&path, pem).with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    };

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "kubernetes-e2e-ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = write("ca.crt", ca.self_signed(&ca_key)?.pem())?;
    let ca_key_path = write("ca.key", ca_key.serialize_pem())?;
    let issuer = Issuer::new(ca, ca_key);

    let serving_key = KeyPair::generate()?;
    let mut serving = CertificateParams::new(vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        "kubernetes.default.svc.cluster.local".to_string(),
        "10.96.0.1".to_string(),
    ])?;
    serving
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    serving.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_cert = write(
        "apiserver.crt",
        serving.signed_by(&serving_key, &issuer)?.pem(),
    )?;
    let serving_key_path = write("apiserver.key", serving_key.serialize_pem())?;

    let client = |cn: &str, org: &str| -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::new())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        Ok((params.signed_by(&key, &issuer)?.pem(), key.serialize_pem()))
    };
    let (admin_crt, admin_key) = client("kubernetes-admin", "system:masters")?;
    let (alice_crt, alice_key) = client("alice", "developers")?;
    let (node_crt, node_key) = client("system:node:node-1", "system:nodes")?;
    let (stranger_crt, stranger_key) = {
        let other_key = KeyPair::generate()?;
        let mut other = CertificateParams::new(Vec::new())?;
        other
            .distinguished_name
            .push(DnType::CommonName, "some-other-ca");
        other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        other.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let other_issuer = Issuer::new(other, other_key);
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "kubernetes-admin");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        (
            params.signed_by(&key, &other_issuer)?.pem(),
            key.serialize_pem(),
        )
    };
    Ok(Pki {
        ca_cert,
        ca_key: ca_key_path,
        serving_cert,
        serving_key: serving_key_path,
        admin_cert: write("admin.crt", admin_crt)?,
        admin_key: write("admin.key", admin_key)?,
        alice_cert: write("alice.crt", alice_crt)?,
        alice_key: write("alice.key", alice_key)?,
        node_cert: write("node-1.crt", node_crt)?,
        node_key: write("node-1.key", node_key)?,
        stranger_cert: write("stranger.crt", stranger_crt)?,
        stranger_key: write("stranger.key", stranger_key)?,
    })
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

/// Absolute path of a fixture in `tests/testdata`.
pub fn testdata(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("testdata")
        .join(name);
    assert!(path.exists(), "missing fixture {}", path.display());
    path.to_string_lossy().into_owned()
}

/// The kube-apiserver binary under test.
pub fn apiserver_binary() -> PathBuf {
    std::env::var_os("KUBE_APISERVER_BIN")
        .map(PathBuf::from)
        .or_else(|| option_env!("CARGO_BIN_EXE_kube-apiserver").map(PathBuf::from))
        .unwrap_or_else(|| sibling_binary("kube-apiserver"))
}

/// The workspace binary `name` in the target dir of the running test executable
/// (`target/<profile>/deps/`), for other crates' tests that reuse this harness; `cargo test
/// --workspace` builds every daemon there before any test runs.
pub fn sibling_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable under target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

fn tool(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// The kubectl to run: `KUBECTL` if set, else the `kubectl` on the PATH. When that `kubectl` is
/// gcloud's version dispatcher (it has a `kubectl.1.32` beside it), `kubectl.1.32` is run
/// directly: the dispatcher picks the client version from the version the server reports (a
/// server saying v1.33 gets kubectl 1.33), and these tests are written against kubectl 1.32.
pub fn kubectl_binary() -> String {
    static KUBECTL: OnceLock<String> = OnceLock::new();
    KUBECTL
        .get_or_init(|| {
            if let Some(explicit) = std::env::var("KUBECTL").ok().filter(|v| !v.is_empty()) {
                return explicit;
            }
            let path = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path)
                .map(|dir| dir.join("kubectl"))
                .find(|candidate| candidate.is_file())
                .and_then(|found| fs::canonicalize(found).ok())
                .map(|real| real.with_file_name("kubectl.1.32"))
                .filter(|pinned| pinned.is_file())
                .map(|pinned| pinned.to_string_lossy().into_owned())
                .unwrap_or_else(|| "kubectl".to_string())
        })
        .clone()
}

/// Polls `cond` until it holds; panics with `desc` at the deadline.
#[track_caller]
pub fn wait_for(desc: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {desc}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `attempt` until it returns `Ok`; panics with `desc` and the last error at the deadline.
#[track_caller]
pub fn eventually<T>(
    desc: &str,
    timeout: Duration,
    mut attempt: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match attempt() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {desc}; last attempt:\n{last}")
            }
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The result of one kubectl (or curl) run.
#[derive(Debug)]
pub struct CmdOutput {
    pub program: String,
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The wall-clock limit the run had.
    pub limit: Duration,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The exit code; `None` if killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Whether the `timeout` wrapper killed the run (exit 124, or 137 after `--kill-after`).
    pub fn timed_out(&self) -> bool {
        matches!(self.code(), Some(124) | Some(137))
    }

    /// Stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON: {e}\n{self}"))
    }
}

impl fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "$ {} {}\nexit: {}{}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.program,
            self.args.join(" "),
            self.status,
            if self.timed_out() {
                format!(" (killed after {:?})", self.limit)
            } else {
                String::new()
            },
            self.stdout,
            self.stderr
        )
    }
}

/// Runs `program args` under coreutils `timeout`, feeding `stdin` from a writer thread so a large
/// input cannot deadlock against a full stdout pipe.
fn run_with_timeout(
    program: &str,
    args: &[String],
    envs: &[(String, String)],
    env_remove: &[&str],
    stdin: Option<&[u8]>,
    limit: Duration,
) -> CmdOutput {
    let mut cmd = Command::new("timeout");
    cmd.arg("--kill-after=5")
        .arg(format!("{}", limit.as_secs().max(1)))
        .arg(program)
        .args(args);
    for key in env_remove {
        cmd.env_remove(key);
    }
    for (key, value) in envs {
        cmd.env(key, value);
    }
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program} (via coreutils timeout): {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin was piped");
        let input = input.to_vec();
        thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait for {program}: {e}"));
    CmdOutput {
        program: program.to_string(),
        args: args.to_vec(),
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        limit,
    }
}

/// One kube-apiserver process with its temp dir; dropping it kills the process (and prints its
/// logs if the test is failing).
pub struct ApiServer {
    pub port: u16,
    pub pki: Pki,
    dir: Option<tempfile::TempDir>,
    child: Mutex<Option<Child>>,
    args: Vec<String>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    kubectl: String,
    curl: String,
    scratch: AtomicUsize,
}

impl ApiServer {
    /// Starts a server with a fresh data dir and waits until `/readyz` answers 200.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Like [`ApiServer::start`], with extra flags for the server.
    pub fn start_with(extra: &[&str]) -> Self {
        let server = Self::spawn(extra).unwrap_or_else(|e| panic!("start kube-apiserver: {e:#}"));
        server.wait_ready(READY_TIMEOUT);
        server
    }

    fn spawn(extra: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("kube-apiserver-e2e-")
            .tempdir()?;
        let root = dir.path().to_path_buf();
        let pki = write_pki(&root.join("pki"))?;
        let port = free_port();

        // token,user,uid,"group1,group2" as upstream's --token-auth-file.
        let tokens = root.join("tokens.csv");
        fs::write(
            &tokens,
            format!(
                "{ADMIN_TOKEN},token-admin,uid-token-admin,\"system:masters\"\n\
                 {BOB_TOKEN},bob,uid-bob,\"developers\"\n"
            ),
        )?;
        for sub in ["data", "certs", "home", "kubectl-cache", "scratch"] {
            fs::create_dir_all(root.join(sub))?;
        }

        let path = |p: &Path| p.to_string_lossy().into_owned();
        let mut args = vec![
            format!("--secure-port={port}"),
            "--bind-address=127.0.0.1".to_string(),
            "--advertise-address=127.0.0.1".to_string(),
            format!("--tls-cert-file={}", path(&pki.serving_cert)),
            format!("--tls-private-key-file={}", path(&pki.serving_key)),
            format!("--client-ca-file={}", path(&pki.ca_cert)),
            format!("--token-auth-file={}", path(&tokens)),
            format!("--data-dir={}", path(&root.join("data"))),
            format!("--cert-dir={}", path(&root.join("certs"))),
            "--service-cluster-ip-range=10.96.0.0/16".to_string(),
            // Upstream's default is AlwaysAllow; the 403 checks need RBAC as kubeadm sets it up.
            "--authorization-mode=Node,RBAC".to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        if let Ok(extra) = std::env::var("APISERVER_EXTRA_ARGS") {
            args.extend(extra.split_whitespace().map(str::to_string));
        }

        let server = ApiServer {
            port,
            pki,
            dir: Some(dir),
            child: Mutex::new(None),
            args,
            stdout_path: root.join("apiserver.stdout"),
            stderr_path: root.join("apiserver.stderr"),
            kubectl: kubectl_binary(),
            curl: tool("CURL", "curl"),
            scratch: AtomicUsize::new(0),
        };
        for user in User::ALL {
            fs::write(server.kubeconfig(user), server.kubeconfig_yaml(user))?;
        }

        let binary = apiserver_binary();
        let stdout = File::create(&server.stdout_path)?;
        let stderr = File::create(&server.stderr_path)?;
        let child = Command::new(&binary)
            .args(&server.args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .env("RUST_BACKTRACE", "1")
            .spawn()
            .with_context(|| format!("spawn {}", binary.display()))?;
        *server.child.lock().expect("child lock") = Some(child);
        Ok(server)
    }

    /// Polls `/readyz` until it answers 200; panics with the server's logs if the process exits or
    /// the deadline passes.
    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_running("waiting for /readyz");
            let last = match self.try_request(
                "GET",
                "/readyz",
                None,
                None,
                User::Admin,
                Duration::from_secs(2),
            ) {
                Ok((200, _)) => return,
                Ok((status, body)) => format!("HTTP {status}: {body}"),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                // The server's logs follow from Drop.
                panic!("kube-apiserver not ready after {timeout:?}; last /readyz: {last}");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Panics with the server's logs if the process has exited.
    #[track_caller]
    fn assert_running(&self, doing: &str) {
        let mut child = self.child.lock().expect("child lock");
        let Some(proc) = child.as_mut() else {
            panic!("kube-apiserver is not running while {doing}");
        };
        if let Ok(Some(status)) = proc.try_wait() {
            *child = None;
            drop(child);
            panic!("kube-apiserver exited with {status} while {doing} (its logs follow)");
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("temp dir present").path()
    }

    /// The server process's pid (benchmarks read its CPU time and memory from /proc).
    pub fn pid(&self) -> Option<u32> {
        self.child
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|c| c.id()))
    }

    /// Waits until Node `node` reports Ready=True (a kubelet registered and is healthy).
    #[track_caller]
    pub fn wait_node_ready(&self, node: &str, timeout: Duration) {
        eventually(&format!("node {node} Ready=True"), timeout, || {
            let out = self.kubectl(&["get", "node", node, "-o", "json"]);
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
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The kubeconfig written for `user`.
    pub fn kubeconfig(&self, user: User) -> PathBuf {
        self.dir().join(format!("kubeconfig-{}.yaml", user.label()))
    }

    /// Runs kubectl with any credentials (written to a one-off kubeconfig).
    pub fn kubectl_cred(&self, cred: Cred<'_>, args: &[&str]) -> CmdOutput {
        let (n, path) = self.write_kubeconfig(cred);
        let cache = self.dir().join("kubectl-cache").join(format!("custom-{n}"));
        let mut all = vec![
            format!("--kubeconfig={}", path.display()),
            format!("--cache-dir={}", cache.display()),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        run_with_timeout(
            &self.kubectl,
            &all,
            &self.kubectl_envs(&[]),
            Self::KUBECTL_ENV_REMOVE,
            None,
            KUBECTL_TIMEOUT,
        )
    }

    fn kubeconfig_yaml(&self, user: User) -> String {
        self.kubeconfig_text(user.label(), &credentials_yaml(self.cred(user)))
    }

    fn kubeconfig_text(&self, name: &str, credentials: &str) -> String {
        let q = quoted;
        let lines = [
            "apiVersion: v1".to_string(),
            "kind: Config".to_string(),
            "clusters:".to_string(),
            "- name: e2e".to_string(),
            "  cluster:".to_string(),
            format!("    server: {}", self.url()),
            format!("    certificate-authority: {}", q(&self.pki.ca_cert)),
            "users:".to_string(),
            format!("- name: {name}"),
            format!("  user:{credentials}"),
            "contexts:".to_string(),
            "- name: e2e".to_string(),
            "  context:".to_string(),
            "    cluster: e2e".to_string(),
            format!("    user: {name}"),
            "current-context: e2e".to_string(),
        ];
        lines.join("\n") + "\n"
    }

    fn kubectl_args(&self, user: User, args: &[&str]) -> Vec<String> {
        let cache = self.dir().join("kubectl-cache").join(user.label());
        let mut all = vec![
            format!("--kubeconfig={}", self.kubeconfig(user).display()),
            format!("--cache-dir={}", cache.display()),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        all
    }

    fn kubectl_envs(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut envs = vec![(
            "HOME".to_string(),
            self.dir().join("home").to_string_lossy().into_owned(),
        )];
        envs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        envs
    }

    const KUBECTL_ENV_REMOVE: &'static [&'static str] = &[
        "KUBECONFIG",
        "KUBECTL_EXTERNAL_DIFF",
        "KUBE_EDITOR",
        "EDITOR",
    ];

    /// Issues a client certificate for `cn` in `orgs`, signed by the harness CA, and writes a
    /// kubeconfig using it; returns the kubeconfig path. (For components such as
    /// system:kube-controller-manager; test-only.)
    pub fn kubeconfig_for_cert(&self, cn: &str, orgs: &[&str]) -> PathBuf {
        let (crt, key) = issue_client_cert(&self.pki, cn, orgs)
            .unwrap_or_else(|e| panic!("issue a client certificate for {cn}: {e:#}"));
        let n = self.scratch.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir().join("scratch");
        let crt_path = dir.join(format!("client-{n}.crt"));
        let key_path = dir.join(format!("client-{n}.key"));
        fs::write(&crt_path, crt).expect("write client certificate");
        fs::write(&key_path, key).expect("write client key");
        self.write_kubeconfig(Cred::Cert(&crt_path, &key_path)).1
    }

    /// Writes a one-off kubeconfig holding `cred`; returns its number and path.
    fn write_kubeconfig(&self, cred: Cred<'_>) -> (usize, PathBuf) {
        let n = self.scratch.fetch_add(1, Ordering::Relaxed);
        let path = self
            .dir()
            .join("scratch")
            .join(format!("kubeconfig-{n}.yaml"));
        let yaml = self.kubeconfig_text(&format!("custom-{n}"), &credentials_yaml(cred));
        fs::write(&path, yaml).expect("write kubeconfig");
        (n, path)
    }

    /// Runs kubectl as the admin (client certificate in system:masters).
    pub fn kubectl(&self, args: &[&str]) -> CmdOutput {
        self.kubectl_full(User::Admin, args, &[], None)
    }

    /// Runs kubectl as `user`.
    pub fn kubectl_as(&self, user: User, args: &[&str]) -> CmdOutput {
        self.kubectl_full(user, args, &[], None)
    }

    /// Runs kubectl as the admin with extra environment (e.g. `KUBE_EDITOR`).
    pub fn kubectl_env(&self, args: &[&str], envs: &[(&str, &str)]) -> CmdOutput {
        self.kubectl_full(User::Admin, args, envs, None)
    }

    /// Runs kubectl as the admin with `input` on stdin.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> CmdOutput {
        self.kubectl_full(User::Admin, args, &[], Some(input.as_bytes()))
    }

    /// Runs kubectl as `user` with extra environment and optional stdin. Not for
    /// [`User::Anonymous`]: kubectl prompts for a username when a kubeconfig user has no
    /// credentials and fails without a terminal, so anonymous checks go through
    /// [`raw_request`](Self::raw_request).
    #[track_caller]
    pub fn kubectl_full(
        &self,
        user: User,
        args: &[&str],
        envs: &[(&str, &str)],
        stdin: Option<&[u8]>,
    ) -> CmdOutput {
        assert!(
            user != User::Anonymous,
            "kubectl cannot run without credentials non-interactively; use raw_request"
        );
        run_with_timeout(
            &self.kubectl,
            &self.kubectl_args(user, args),
            &self.kubectl_envs(envs),
            Self::KUBECTL_ENV_REMOVE,
            stdin,
            KUBECTL_TIMEOUT,
        )
    }

    /// Runs kubectl as the admin; panics with the whole output unless it exits 0. Returns stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        expect_ok(self.kubectl(args))
    }

    /// Runs kubectl as the admin with `input` on stdin; panics unless it exits 0. Returns stdout.
    #[track_caller]
    pub fn ok_stdin(&self, args: &[&str], input: &str) -> String {
        expect_ok(self.kubectl_stdin(args, input))
    }

    /// Runs kubectl as the admin; panics if it exits 0. Returns stderr.
    #[track_caller]
    pub fn fails(&self, args: &[&str]) -> String {
        expect_failure(self.kubectl(args))
    }

    /// Runs kubectl as the admin with `input` on stdin; panics if it exits 0. Returns stderr.
    #[track_caller]
    pub fn fails_stdin(&self, args: &[&str], input: &str) -> String {
        expect_failure(self.kubectl_stdin(args, input))
    }

    /// `kubectl <args> -o json` as the admin, parsed.
    #[track_caller]
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.kubectl(&all);
        assert!(out.success(), "kubectl failed\n{out}");
        out.json()
    }

    /// Creates namespace `name` with its `default` ServiceAccount and returns the name.
    /// (The ServiceAccount admission plugin refuses pods whose account is missing; in a
    /// cluster the controller-manager creates `default`, here the harness does.)
    #[track_caller]
    pub fn namespace(&self, name: &str) -> String {
        let out = self.ok(&["create", "namespace", name]);
        assert!(
            out.contains(&format!("namespace/{name} created")),
            "unexpected output of create namespace: {out}"
        );
        self.ok(&["create", "serviceaccount", "default", "-n", name]);
        name.to_string()
    }

    /// Starts a long-running kubectl (e.g. `get -w`) as the admin; killed on drop.
    pub fn spawn_kubectl(&self, args: &[&str]) -> Background {
        let all = self.kubectl_args(User::Admin, args);
        let n = self.scratch.fetch_add(1, Ordering::Relaxed);
        let stderr_path = self.dir().join("scratch").join(format!("bg-{n}.stderr"));
        let stderr = File::create(&stderr_path).expect("create background stderr file");
        let mut cmd = Command::new(&self.kubectl);
        cmd.args(&all);
        for key in Self::KUBECTL_ENV_REMOVE {
            cmd.env_remove(key);
        }
        for (key, value) in self.kubectl_envs(&[]) {
            cmd.env(key, value);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.kubectl));
        let stdout = child.stdout.take().expect("stdout was piped");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Background {
            command: format!("{} {}", self.kubectl, all.join(" ")),
            child,
            lines: rx,
            seen: Vec::new(),
            stderr_path,
        }
    }

    /// A streaming GET (e.g. a watch) with curl as `user`, its body on the child's stdout,
    /// which nothing reads until the caller does: a client that stops reading, as far as the
    /// server can tell (a pipe and the socket buffers, not a reader thread, hold what came).
    #[allow(dead_code)]
    pub fn spawn_stream(&self, path: &str, user: User) -> std::process::Child {
        let p = |p: &Path| p.to_string_lossy().into_owned();
        let mut cmd = Command::new(&self.curl);
        cmd.args(["--silent", "--show-error", "--no-buffer", "--cacert"])
            .arg(p(&self.pki.ca_cert));
        match self.cred(user) {
            Cred::Cert(cert, key) => cmd.arg("--cert").arg(cert).arg("--key").arg(key),
            Cred::Token(token) => cmd
                .arg("--header")
                .arg(format!("Authorization: Bearer {token}")),
            Cred::None => &mut cmd,
        };
        cmd.arg(format!("{}{path}", self.url()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.curl))
    }

    /// One HTTP request with curl; returns the status code and the body. `body` is sent as is
    /// (from a file, so it may be large); `content_type` defaults to none. Panics if no HTTP
    /// answer came back at all.
    #[track_caller]
    pub fn raw_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        content_type: Option<&str>,
        user: User,
    ) -> (u16, String) {
        self.try_request(method, path, body, content_type, user, CURL_TIMEOUT)
            .unwrap_or_else(|e| panic!("{method} {path} as {user:?}: {e}"))
    }

    /// The credentials of one of the fixed users.
    fn cred(&self, user: User) -> Cred<'_> {
        match user {
            User::Admin => Cred::Cert(&self.pki.admin_cert, &self.pki.admin_key),
            User::Alice => Cred::Cert(&self.pki.alice_cert, &self.pki.alice_key),
            User::AdminToken => Cred::Token(ADMIN_TOKEN),
            User::BobToken => Cred::Token(BOB_TOKEN),
            User::BadToken => Cred::Token(BAD_TOKEN),
            User::Anonymous => Cred::None,
        }
    }

    /// Like [`raw_request`](Self::raw_request), but a transport failure is an `Err`. A response
    /// cut off by `max_time` (e.g. a watch) still counts as an answer with what arrived.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        content_type: Option<&str>,
        user: User,
        max_time: Duration,
    ) -> Result<(u16, String), String> {
        self.try_request_as(method, path, body, content_type, self.cred(user), max_time)
    }

    /// A request with any credentials (a service-account token, a node certificate, ...).
    pub fn request_as(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        content_type: Option<&str>,
        cred: Cred<'_>,
    ) -> Result<(u16, String), String> {
        self.try_request_as(method, path, body, content_type, cred, CURL_TIMEOUT)
    }

    fn try_request_as(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        content_type: Option<&str>,
        cred: Cred<'_>,
        max_time: Duration,
    ) -> Result<(u16, String), String> {
        let n = self.scratch.fetch_add(1, Ordering::Relaxed);
        let scratch = self.dir().join("scratch");
        let response_path = scratch.join(format!("curl-{n}.response"));
        let p = |p: &Path| p.to_string_lossy().into_owned();
        let mut args = vec![
            "--silent".to_string(),
            "--show-error".to_string(),
            "--request".to_string(),
            method.to_string(),
            "--cacert".to_string(),
            p(&self.pki.ca_cert),
            "--max-time".to_string(),
            format!("{}", max_time.as_secs_f64()),
            "--output".to_string(),
            p(&response_path),
            "--write-out".to_string(),
            "%{http_code}".to_string(),
            "--header".to_string(),
            "Accept: application/json".to_string(),
        ];
        match cred {
            Cred::Cert(cert, key) => {
                args.extend(["--cert".to_string(), p(cert), "--key".to_string(), p(key)])
            }
            Cred::Token(token) => args.extend([
                "--header".to_string(),
                format!("Authorization: Bearer {token}"),
            ]),
            Cred::None => {}
        }
        if let Some(ct) = content_type {
            args.extend(["--header".to_string(), format!("Content-Type: {ct}")]);
        }
        if let Some(body) = body {
            let body_path = scratch.join(format!("curl-{n}.body"));
            fs::write(&body_path, body).map_err(|e| format!("write request body: {e}"))?;
            args.extend(["--data-binary".to_string(), format!("@{}", p(&body_path))]);
        }
        args.push(format!("{}{path}", self.url()));
        let out = run_with_timeout(
            &self.curl,
            &args,
            &[],
            &[],
            None,
            max_time + Duration::from_secs(10),
        );
        let status: u16 = out.stdout.trim().parse().unwrap_or(0);
        let response = fs::read(&response_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let _ = fs::remove_file(&response_path);
        // Any status code is an answer, even if the transfer failed afterwards: 28 is a watch
        // that stayed open until --max-time, 55/56 a server that closed the connection early
        // on a rejected upload.
        if status != 0 {
            Ok((status, response))
        } else {
            Err(format!("no HTTP response\n{out}"))
        }
    }

    /// The last `lines` lines of the server's stdout and stderr.
    pub fn logs(&self, lines: usize) -> String {
        format!(
            "---- kube-apiserver stdout ({})\n{}---- kube-apiserver stderr ({})\n{}",
            self.stdout_path.display(),
            log_tail(&self.stdout_path, lines),
            self.stderr_path.display(),
            log_tail(&self.stderr_path, lines)
        )
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let child = match self.child.get_mut() {
            Ok(child) => child.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "$ {} {}\n{}",
                apiserver_binary().display(),
                self.args.join(" "),
                self.logs(60)
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

#[track_caller]
fn expect_ok(out: CmdOutput) -> String {
    assert!(out.success(), "kubectl failed\n{out}");
    out.stdout
}

#[track_caller]
fn expect_failure(out: CmdOutput) -> String {
    assert!(
        !out.success() && !out.timed_out(),
        "kubectl was expected to fail (and not to hang)\n{out}"
    );
    out.stderr
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

/// A long-running kubectl whose stdout lines are read with deadlines; killed on drop.
pub struct Background {
    command: String,
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr_path: PathBuf,
}

impl Background {
    /// Waits for the next stdout line matching `pred` (lines before it are consumed) and returns it.
    #[track_caller]
    pub fn wait_for_line(
        &mut self,
        desc: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no line with {desc} within {timeout:?}\n$ {}\nstdout so far: {:#?}\nstderr:\n{}",
                    self.command,
                    self.seen,
                    self.stderr()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "kubectl exited before printing a line with {desc}\n$ {}\nstdout: {:#?}\nstderr:\n{}",
                    self.command,
                    self.seen,
                    self.stderr()
                ),
            }
        }
    }

    /// Every stdout line received so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    pub fn stderr(&self) -> String {
        fs::read(&self.stderr_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Splits kubectl's table output into rows of whitespace-separated cells (header first).
/// Only for tables whose cells contain no spaces.
pub fn table(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// The first row of `table` whose cell `col` equals `value`.
#[track_caller]
pub fn row<'a>(table: &'a [Vec<String>], col: usize, value: &str) -> &'a [String] {
    table
        .iter()
        .find(|r| r.get(col).map(String::as_str) == Some(value))
        .unwrap_or_else(|| panic!("no row with column {col} = {value:?} in {table:#?}"))
}

/// Removes ANSI colour escapes (`ESC [ ... m`), which some kubectl commands print even to a pipe.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses a response body as an upstream `Status`; panics with the body otherwise.
#[track_caller]
pub fn status_object(body: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("response body is not a JSON Status ({e}):\n{body}"));
    assert_eq!(
        v["kind"], "Status",
        "expected a Status object, got:\n{body}"
    );
    v
}

/// A client certificate and key (PEM) for `cn` in `orgs`, signed by the CA of `pki`.
pub fn issue_client_cert(pki: &Pki, cn: &str, orgs: &[&str]) -> anyhow::Result<(String, String)> {
    let ca_key = KeyPair::from_pem(&fs::read_to_string(&pki.ca_key)?)?;
    // The same subject as in write_pki, so issuer names and key identifiers match the CA.
    let mut ca = CertificateParams::new(Vec::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "kubernetes-e2e-ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::new())?;
    params.distinguished_name.push(DnType::CommonName, cn);
    for org in orgs {
        params
            .distinguished_name
            .push(DnType::OrganizationName, *org);
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok((params.signed_by(&key, &issuer)?.pem(), key.serialize_pem()))
}
