//! Client-certificate rotation: the kubelet's node client presents a swapped certificate on
//! new connections and drops the old ones (against an in-process TLS server that tells who
//! called), and a kubelet started by TLS bootstrap with `--rotate-certificates` under a
//! controller-manager signing 90-second certificates gets new ones through `selfnodeclient`
//! CSRs and keeps working after its first certificate expired.

#[path = "../../apiserver/tests/common/mod.rs"]
mod common;

#[path = "common/containerd.rs"]
mod containerd;

#[path = "common/daemon.rs"]
mod daemon;

#[path = "common/kubelet.rs"]
mod kubelet_process;

#[path = "common/pki.rs"]
mod pki;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::{eventually, ApiServer};
use containerd::{Containerd, BUSYBOX_IMAGE};
use daemon::Daemon;
use futures::{AsyncBufReadExt as _, StreamExt as _};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use kubelet::certificate::{transport, ClientCertificate, Pair};
use kubelet_process::Kubelet;
use pki::TestCa;
use x509_parser::prelude::FromDer as _;

/// Deadline for nodes, pods and CSRs to reach a state.
const WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The transport on its own.

/// A CA (its certificate in `dir/ca.crt`) and PEM pairs it issued.
struct TestPki {
    dir: PathBuf,
    ca: TestCa,
}

impl TestPki {
    fn new(dir: &Path) -> Self {
        let ca = TestCa::new("rotation-ca");
        ca.write_ca(&dir.join("ca.crt"));
        TestPki {
            dir: dir.to_path_buf(),
            ca,
        }
    }

    /// (certificate PEM, key PEM) for `cn` in system:nodes, a client certificate unless
    /// `sans` are given.
    fn issue(&self, cn: &str, sans: &[&str]) -> (String, String) {
        self.ca.issue(cn, &["system:nodes"], sans)
    }
}

/// One connection the server accepted: the client certificate's CN and whether it is open.
#[derive(Debug, Clone)]
struct Seen {
    cn: String,
    open: bool,
}

/// An HTTPS server requiring client certificates: `/whoami` answers the caller's CN,
/// `/stream` sends a line every 200 ms for as long as the client reads.
async fn whoami_server(pki: &TestPki) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let (cert, key) = pki.issue("whoami", &["127.0.0.1"]);
    let (cert_path, key_path) = (pki.dir.join("server.crt"), pki.dir.join("server.key"));
    fs::write(&cert_path, cert).expect("write server cert");
    fs::write(&key_path, key).expect("write server key");
    let tls = component_base::tls::server_config(
        &cert_path,
        &key_path,
        Some(&pki.dir.join("ca.crt")),
        &[component_base::tls::ALPN_HTTP1_1],
    )
    .expect("server tls");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("https://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, log) = (acceptor.clone(), log.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let cn = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .and_then(|der| {
                        let (_, cert) =
                            x509_parser::certificate::X509Certificate::from_der(der).ok()?;
                        let cn = cert.subject().iter_common_name().next()?;
                        cn.as_str().ok().map(str::to_string)
                    })
                    .unwrap_or_default();
                let index = {
                    let mut log = log.lock().expect("log");
                    log.push(Seen {
                        cn: cn.clone(),
                        open: true,
                    });
                    log.len() - 1
                };
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let cn = cn.clone();
                        async move {
                            let body = if req.uri().path() == "/stream" {
                                let ticks = futures::StreamExt::map(
                                    tokio_stream::wrappers::IntervalStream::new(
                                        tokio::time::interval(Duration::from_millis(200)),
                                    ),
                                    |_| Ok::<_, Infallible>(Frame::data(Bytes::from("tick\n"))),
                                );
                                BodyExt::boxed(StreamBody::new(ticks))
                            } else {
                                BodyExt::boxed(Full::new(Bytes::from(cn)))
                            };
                            Ok::<_, Infallible>(http::Response::new(body))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
                log.lock().expect("log")[index].open = false;
            });
        }
    });
    (url, seen)
}

async fn whoami(client: &kube::Client) -> String {
    client
        .request_text(
            http::Request::get("/whoami")
                .body(Vec::new())
                .expect("request"),
        )
        .await
        .expect("GET /whoami")
}

/// Polls `check` on the server's connection log for up to 10 s.
async fn wait_seen(seen: &Mutex<Vec<Seen>>, desc: &str, check: impl Fn(&[Seen]) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = seen.lock().expect("log").clone();
        if check(&log) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {desc}; connections: {log:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_presented_on_new_connections_and_the_old_ones_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::new(dir.path());
    let (url, seen) = whoami_server(&pki).await;
    let (a_cert, a_key) = pki.issue("system:node:a", &[]);
    let (b_cert, b_key) = pki.issue("system:node:b", &[]);
    let pair = |c: &str, k: &str| Pair::from_pem(c.as_bytes(), k.as_bytes()).expect("pair");

    let cert = ClientCertificate::new(pair(&a_cert, &a_key).key);
    let mut config = kube::Config::new(url.parse().expect("url"));
    config.root_cert = Some(vec![pki.ca.der.clone()]);
    let client = transport::client(config, cert.clone()).expect("client");
    assert_eq!(whoami(&client).await, "system:node:a");

    // One connection busy with a long response, and (since that one is taken) a second one
    // idle in the pool after another request.
    let stream = client
        .request_stream(
            http::Request::get("/stream")
                .body(Vec::new())
                .expect("request"),
        )
        .await
        .expect("GET /stream");
    let mut lines = Box::pin(stream.lines());
    assert_eq!(
        lines.next().await.expect("a line").expect("first line"),
        "tick"
    );
    assert_eq!(whoami(&client).await, "system:node:a");
    wait_seen(&seen, "two open connections as a", |log| {
        log.iter()
            .filter(|s| s.open && s.cn == "system:node:a")
            .count()
            == 2
    })
    .await;

    cert.set(pair(&b_cert, &b_key).key);
    assert_eq!(cert.generation(), 1);
    // The long response breaks off instead of running on under the old certificate.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = lines.next().await {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the streaming response outlived the rotation"
    );
    wait_seen(&seen, "every connection of a closed", |log| {
        log.iter().all(|s| !s.open || s.cn != "system:node:a")
    })
    .await;
    assert_eq!(whoami(&client).await, "system:node:b");
    wait_seen(&seen, "only b connected", |log| {
        log.iter().any(|s| s.open && s.cn == "system:node:b")
            && log
                .iter()
                .filter(|s| s.open)
                .all(|s| s.cn == "system:node:b")
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// A bootstrapped kubelet rotating under a real controller-manager.

const TOKEN_ID: &str = "rotate";
const TOKEN_SECRET: &str = "0123456789abcdef";
/// Validity of the certificates the controller-manager signs. Its signer backdates notBefore by
/// 5 minutes, so a certificate lives 6.5 minutes and is due for rotation 27 s before to 51 s
/// after it was issued: rotations follow each other every few seconds to a minute.
const SIGNING_DURATION: &str = "90s";

/// The bootstrap token Secret and the bindings `kubeadm init` creates for TLS bootstrap and
/// certificate rotation.
fn allow_bootstrap_and_rotation(server: &ApiServer) {
    server.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"apiVersion: v1
kind: Secret
metadata:
  name: bootstrap-token-{TOKEN_ID}
  namespace: kube-system
type: bootstrap.kubernetes.io/token
stringData:
  token-id: {TOKEN_ID}
  token-secret: {TOKEN_SECRET}
  usage-bootstrap-authentication: "true"
  auth-extra-groups: system:bootstrappers:kubeadm:default-node-token
"#
        ),
    );
    for (name, role, group) in [
        (
            "kubeadm:kubelet-bootstrap",
            "system:node-bootstrapper",
            "system:bootstrappers",
        ),
        (
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            "system:bootstrappers",
        ),
        (
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            "system:nodes",
        ),
    ] {
        server.ok(&[
            "create",
            "clusterrolebinding",
            name,
            &format!("--clusterrole={role}"),
            &format!("--group={group}"),
        ]);
    }
}

fn write_bootstrap_kubeconfig(server: &ApiServer) -> PathBuf {
    let path = server.dir().join("bootstrap-kubelet.conf");
    fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: tls-bootstrap-token-user\n  user:\n    token: {TOKEN_ID}.{TOKEN_SECRET}\ncontexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: tls-bootstrap-token-user\ncurrent-context: e2e\n",
            server.url(),
            server.pki.ca_cert.display()
        ),
    )
    .expect("write bootstrap kubeconfig");
    path
}

/// notAfter of the certificate in a kubelet-client PEM file.
fn not_after(path: &Path) -> SystemTime {
    let pem = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    kubelet::certificate::validity(&pem)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .1
}

/// The file `kubelet-client-current.pem` points at.
fn current_target(pki: &Path) -> Result<PathBuf, String> {
    fs::read_link(pki.join("kubelet-client-current.pem")).map_err(|e| e.to_string())
}

/// Inodes of the established TCP connections process `pid` holds to port `port`.
fn connections_to(pid: u32, port: u16) -> BTreeSet<u64> {
    let sockets: BTreeSet<u64> = fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| fs::read_link(fd.path()).ok())
        .filter_map(|link| {
            link.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    let mut found = BTreeSet::new();
    for table in ["tcp", "tcp6"] {
        let text = fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 || fields[3] != "01" {
                continue;
            }
            let remote_port = fields[2]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            let inode = fields[9].parse().unwrap_or(0);
            if remote_port == Some(port) && sockets.contains(&inode) {
                found.insert(inode);
            }
        }
    }
    found
}

fn rfc3339(v: &serde_json::Value) -> Option<SystemTime> {
    let text = v.as_str()?;
    let t = k8s_openapi::chrono::DateTime::parse_from_rfc3339(text).ok()?;
    Some(SystemTime::from(t))
}

#[test]
fn a_bootstrapped_kubelet_rotates_its_client_certificate_and_works_after_the_first_expired() {
    let server = ApiServer::start_with(&["--enable-bootstrap-token-auth=true"]);
    allow_bootstrap_and_rotation(&server);
    let _kcm = Daemon::start(
        &server,
        "kube-controller-manager",
        "KUBE_CONTROLLER_MANAGER_BIN",
        "system:kube-controller-manager",
        &[
            &format!("--root-ca-file={}", server.pki.ca_cert.display()),
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            "--controllers=csrapproving,csrsigning",
            &format!(
                "--cluster-signing-cert-file={}",
                server.pki.ca_cert.display()
            ),
            &format!("--cluster-signing-key-file={}", server.pki.ca_key.display()),
            &format!("--cluster-signing-duration={SIGNING_DURATION}"),
        ],
    );
    let boot = write_bootstrap_kubeconfig(&server);
    let kubeconfig = server.dir().join("kubelet.conf");
    let containerd = Containerd::start();
    let kubelet = Kubelet::start(
        &containerd,
        "kl-rotate",
        (160, "kbrt"),
        |_| kubeconfig.clone(),
        &[
            format!("--bootstrap-kubeconfig={}", boot.display()),
            "--rotate-certificates".to_string(),
        ],
    );
    let node = kubelet.node.clone();
    let pki = kubelet.dir.join("pki");
    let pid = kubelet.child.as_ref().expect("kubelet running").id();
    server.wait_node_ready(&node, WAIT);
    let written = fs::read_to_string(&kubeconfig).expect("the bootstrap wrote --kubeconfig");
    assert!(written.contains("kubelet-client-current.pem"), "{written}");

    // The bootstrap's certificate is the oldest dated file (rotation may already have begun).
    let dated = || -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(&pki)
            .expect("cert dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("kubelet-client-2") && n.ends_with(".pem"))
            })
            .collect();
        files.sort();
        files
    };
    let first = dated().first().cloned().expect("the bootstrap certificate");
    let first_expiry = not_after(&first);

    // The kubelet's apiserver connections while one certificate is current...
    let (before, connections) = eventually("a steady certificate", WAIT, || {
        let before = current_target(&pki)?;
        let connections = connections_to(pid, server.port);
        if current_target(&pki)? != before {
            return Err("rotated while sampling".into());
        }
        if connections.is_empty() {
            return Err("no connection to the apiserver".into());
        }
        Ok((before, connections))
    });
    // ... are all gone once the next one is in place.
    let rotated = eventually("the next rotation", Duration::from_secs(120), || {
        let now = current_target(&pki)?;
        if now == before {
            return Err(format!("still {}", now.display()));
        }
        Ok(now)
    });
    eventually(
        "the connections of the previous certificate closed",
        Duration::from_secs(15),
        || {
            let left: Vec<u64> = connections_to(pid, server.port)
                .intersection(&connections)
                .copied()
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("still open: {left:?}"))
            }
        },
    );
    assert!(
        not_after(&rotated) >= not_after(&before),
        "a rotation never goes back to an older certificate"
    );

    // The rotation went through the selfnodeclient path: a CSR of the node itself, approved.
    eventually("an approved CSR from the node itself", WAIT, || {
        let csrs = server.json(&["get", "csr"]);
        let mine = csrs["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["spec"]["username"] == format!("system:node:{node}"))
            .find(|c| {
                c["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"
                    && c["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|cond| cond["type"] == "Approved" && cond["status"] == "True")
                    && c["status"]["certificate"].is_string()
            });
        mine.map(|_| ()).ok_or_else(|| csrs.to_string())
    });
    let current = current_target(&pki).expect("current symlink");
    assert_ne!(current, first, "kubelet-client-current.pem moved on");
    assert!(
        not_after(&current) > first_expiry,
        "the current certificate outlives the bootstrap one"
    );

    // Waiting for a point in time (not for a state): the bootstrap certificate's end.
    if let Ok(left) = first_expiry.duration_since(SystemTime::now()) {
        std::thread::sleep(left + Duration::from_secs(1));
    }
    assert!(
        not_after(&current_target(&pki).expect("current")) > SystemTime::now(),
        "the certificate in use is valid"
    );
    eventually(
        "the Lease renewed after the first certificate expired",
        WAIT,
        || {
            let lease = server.json(&["get", "lease", &node, "-n", "kube-node-lease"]);
            match rfc3339(&lease["spec"]["renewTime"]) {
                Some(t) if t > first_expiry => Ok(()),
                _ => Err(lease["spec"].to_string()),
            }
        },
    );
    // The Lease is the heartbeat; the node stays Ready (its status is posted on change only).
    server.wait_node_ready(&node, WAIT);
    let ns = server.namespace("kl-rotate");
    server.ok_stdin(
        &["apply", "-n", &ns, "-f", "-"],
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: after-expiry
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  automountServiceAccountToken: false
  containers:
  - name: main
    image: {BUSYBOX_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
"#
        ),
    );
    eventually("the new pod Running", WAIT, || {
        let pod = server.json(&["get", "pod", "after-expiry", "-n", &ns]);
        if pod["status"]["phase"] == "Running" {
            Ok(())
        } else {
            Err(pod["status"].to_string())
        }
    });
    assert!(
        dated().len() >= 2,
        "at least one rotated pair is stored beside the bootstrap one"
    );
}
