//! kube-dns against the real apiserver: objects made with stock kubectl, answers read with
//! real `dig` over UDP and TCP, names outside the cluster forwarded to a small upstream the
//! test runs, and the health, ready and metrics endpoints.
//!
//! Environment: `KUBE_DNS_BIN` runs that kube-dns instead of the crate's; the apiserver
//! harness's variables (`KUBE_APISERVER_BIN`, `KUBECTL`, ...) apply too. Needs `dig`
//! (Debian bind9-dnsutils, installed by `make deps`).

#[path = "../../apiserver/tests/common/mod.rs"]
mod common;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{eventually, free_port, ApiServer};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// How long kube-dns gets to serve /health and /ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The deadline for a change in the apiserver to show in answers (watch-driven, so this is
/// slack for a loaded machine; the goal is well under a second).
const UPDATE_TIMEOUT: Duration = Duration::from_secs(5);

/// The user kube-dns runs as: bound to nothing but kubeadm's `system:coredns` ClusterRole.
const DNS_USER: &str = "kube-dns-e2e";

const CORE_DNS_RBAC: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:coredns
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:coredns
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:coredns
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: kube-dns-e2e
"#;

// ---------------------------------------------------------------------------------------------
// kube-dns process

fn kube_dns_binary() -> PathBuf {
    std::env::var_os("KUBE_DNS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kube-dns")))
}

struct KubeDns {
    child: Child,
    dns: u16,
    health: u16,
    ready: u16,
    metrics: u16,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl KubeDns {
    fn spawn(kubeconfig: &Path, extra: &[String]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("kube-dns-e2e-")
            .tempdir()
            .expect("temp dir");
        let dns = free_udp_and_tcp_port();
        let (health, ready, metrics) = (free_port(), free_port(), free_port());
        let stderr = dir.path().join("kube-dns.stderr");
        let mut args = vec![
            format!("--kubeconfig={}", kubeconfig.display()),
            "--cluster-domain=cluster.local".to_owned(),
            "--dns-bind-address=127.0.0.1".to_owned(),
            format!("--dns-port={dns}"),
            format!("--health-port={health}"),
            format!("--ready-port={ready}"),
            format!("--metrics-bind-address=127.0.0.1:{metrics}"),
            // Nothing from the machine's resolv.conf: only the test's upstream, if any.
            format!("--resolv-conf={}", dir.path().join("resolv.conf").display()),
        ];
        args.extend(extra.iter().cloned());
        let child = Command::new(kube_dns_binary())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).expect("stderr file"))
            .env("RUST_LOG", "info,kube_dns=debug")
            .spawn()
            .expect("spawn kube-dns");
        let server = Self {
            child,
            dns,
            health,
            ready,
            metrics,
            stderr,
            _dir: dir,
        };
        eventually("kube-dns /health", START_TIMEOUT, || {
            server.assert_running();
            match http_get(server.health, "/health") {
                Ok((200, body)) if body == "OK" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        });
        // The DNS sockets are bound after the health server (UDP first, then TCP): a TCP
        // connection that succeeds means both answer.
        eventually("kube-dns DNS port", START_TIMEOUT, || {
            server.assert_running();
            std::net::TcpStream::connect(("127.0.0.1", server.dns))
                .map(drop)
                .map_err(|e| e.to_string())
        });
        server
    }

    fn wait_ready(&self) {
        eventually("kube-dns /ready", START_TIMEOUT, || {
            self.assert_running();
            match http_get(self.ready, "/ready") {
                Ok((200, _)) => Ok(()),
                other => Err(format!("{other:?}\n{}", self.logs())),
            }
        });
    }

    fn logs(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    #[track_caller]
    fn assert_running(&self) {
        // try_wait needs &mut; a clone of the pid check through /proc is enough here.
        let alive = Path::new(&format!("/proc/{}", self.child.id())).exists()
            && !fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
                .unwrap_or_default()
                .contains(") Z ");
        assert!(alive, "kube-dns exited:\n{}", self.logs());
    }

    fn dig(&self, args: &[&str]) -> Dig {
        dig(self.dns, args)
    }

    fn metrics(&self) -> String {
        match http_get(self.metrics, "/metrics") {
            Ok((200, body)) => body,
            other => panic!("GET /metrics: {other:?}"),
        }
    }
}

impl Drop for KubeDns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- kube-dns stderr ---\n{}", self.logs());
        }
    }
}

/// A port free for both UDP and TCP on loopback.
fn free_udp_and_tcp_port() -> u16 {
    loop {
        let port = free_port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).map_err(|e| e.to_string())?;
    let (head, body) = raw.split_once("\r\n\r\n").ok_or("no header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    Ok((status, body.to_owned()))
}

// ---------------------------------------------------------------------------------------------
// dig

/// One dig answer: status, header flags and the records of each section.
#[derive(Debug)]
struct Dig {
    status: String,
    flags: Vec<String>,
    answer: Vec<Rr>,
    authority: Vec<Rr>,
    additional: Vec<Rr>,
    raw: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rr {
    name: String,
    ttl: u32,
    kind: String,
    data: String,
}

impl Dig {
    fn data(&self) -> Vec<String> {
        self.answer.iter().map(|r| r.data.clone()).collect()
    }

    fn sorted_data(&self) -> Vec<String> {
        let mut d = self.data();
        d.sort();
        d
    }

    #[track_caller]
    fn expect(&self, status: &str, data: &[&str]) {
        assert_eq!(self.status, status, "{}", self.raw);
        let mut want: Vec<String> = data.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(self.sorted_data(), want, "{}", self.raw);
    }
}

fn dig(port: u16, args: &[&str]) -> Dig {
    let port = port.to_string();
    let mut all = vec!["@127.0.0.1", "-p", &port, "+tries=1", "+time=5"];
    all.extend_from_slice(args);
    let out: Output = Command::new("dig")
        .args(&all)
        .output()
        .expect("run dig (apt: bind9-dnsutils)");
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = raw
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("")
        .to_owned();
    let flags = raw
        .split(";; flags: ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    Dig {
        status,
        flags,
        answer: section(&raw, "ANSWER"),
        authority: section(&raw, "AUTHORITY"),
        additional: section(&raw, "ADDITIONAL"),
        raw,
    }
}

fn section(raw: &str, name: &str) -> Vec<Rr> {
    let header = format!(";; {name} SECTION:");
    let mut lines = raw.lines().skip_while(|l| *l != header);
    lines.next();
    lines
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next()?.to_owned();
            let ttl = words.next()?.parse().ok()?;
            let _class = words.next()?;
            let kind = words.next()?.to_owned();
            let data = words.collect::<Vec<_>>().join(" ");
            Some(Rr {
                name,
                ttl,
                kind,
                data,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// A tiny upstream nameserver

/// Answers `upstream.example.` A, `big.example.` TXT (too big for one UDP answer), one PTR,
/// and NXDOMAIN for anything else, over UDP and TCP; counts queries.
struct Upstream {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
}

const UPSTREAM_IP: &str = "192.0.2.1";
const BIG_TXT_RECORDS: usize = 40;

fn upstream_answer(query: &[u8]) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    let q = request.queries().first()?.clone();
    let mut response = Message::new();
    response
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true)
        .add_query(q.clone());
    let name = q.name().to_lowercase().to_ascii();
    let records: Vec<Record> = match (name.as_str(), q.query_type()) {
        ("upstream.example.", RecordType::A) => vec![Record::from_rdata(
            q.name().clone(),
            60,
            RData::A(A(UPSTREAM_IP.parse().expect("ip"))),
        )],
        ("upstream.example.", _) => vec![],
        ("big.example.", RecordType::TXT) => (0..BIG_TXT_RECORDS)
            .map(|i| {
                Record::from_rdata(
                    q.name().clone(),
                    60,
                    RData::TXT(TXT::new(vec![format!("{i:02}-{}", "x".repeat(60))])),
                )
            })
            .collect(),
        ("1.2.0.192.in-addr.arpa.", RecordType::PTR) => vec![Record::from_rdata(
            q.name().clone(),
            60,
            RData::PTR(PTR(Name::from_ascii("upstream.example.").expect("name"))),
        )],
        _ => {
            response.set_response_code(ResponseCode::NXDomain);
            vec![]
        }
    };
    response.insert_answers(records);
    // Deliberately never truncates: kube-dns must fit answers to its own client's buffer.
    response.to_vec().ok()
}

impl Upstream {
    fn start() -> Self {
        // Bound here and kept (a port found free and bound later can be taken meanwhile by
        // another test running in parallel).
        let (udp, tcp, port) = loop {
            let udp = UdpSocket::bind(("127.0.0.1", 0)).expect("bind upstream udp");
            let port = udp.local_addr().expect("udp addr").port();
            if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)) {
                break (udp, tcp, port);
            }
        };
        let queries = Arc::new(AtomicUsize::new(0));
        let counted = queries.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 65535];
            while let Ok((n, peer)) = udp.recv_from(&mut buf) {
                counted.fetch_add(1, Ordering::SeqCst);
                if let Some(response) = upstream_answer(&buf[..n]) {
                    let _ = udp.send_to(&response, peer);
                }
            }
        });
        let counted = queries.clone();
        thread::spawn(move || {
            for stream in tcp.incoming() {
                let Ok(mut stream) = stream else { continue };
                let counted = counted.clone();
                thread::spawn(move || {
                    let mut len = [0u8; 2];
                    while stream.read_exact(&mut len).is_ok() {
                        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        if stream.read_exact(&mut query).is_err() {
                            return;
                        }
                        counted.fetch_add(1, Ordering::SeqCst);
                        let Some(response) = upstream_answer(&query) else {
                            return;
                        };
                        let len = u16::try_from(response.len()).expect("fits").to_be_bytes();
                        if stream.write_all(&len).is_err() || stream.write_all(&response).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            queries,
        }
    }

    fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

// ---------------------------------------------------------------------------------------------
// Cluster setup

/// Starts an apiserver, grants `system:coredns` to the kube-dns user and returns the server
/// with a kubeconfig for that user.
fn cluster() -> (ApiServer, PathBuf) {
    let k = ApiServer::start();
    let applied = k.kubectl_stdin(&["apply", "-f", "-"], CORE_DNS_RBAC);
    if !applied.success() {
        // Our apiserver still validates RBAC names as DNS subdomains (upstream: path segments,
        // so `system:` names are fine); grant the same rules under a name it accepts.
        assert!(
            applied.stderr.contains("\"system:coredns\" is invalid"),
            "{applied}"
        );
        eprintln!("apiserver refused the name system:coredns; using kube-dns-e2e-coredns");
        k.ok_stdin(
            &["apply", "-f", "-"],
            &CORE_DNS_RBAC.replace("system:coredns", "kube-dns-e2e-coredns"),
        );
    }
    let kubeconfig = k.kubeconfig_for_cert(DNS_USER, &[]);
    // The role is all it has: it cannot read Secrets or get single objects.
    for (verb, resource) in [
        ("list", "secrets"),
        ("get", "services"),
        ("list", "services"),
    ] {
        let out = Command::new(common::kubectl_binary())
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!(
                "--cache-dir={}",
                k.dir().join("kubectl-cache/dns").display()
            ))
            .args(["auth", "can-i", verb, resource])
            .env("HOME", k.dir().join("home"))
            .output()
            .expect("run kubectl");
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let want = if (verb, resource) == ("list", "services") {
            "yes"
        } else {
            "no"
        };
        assert_eq!(answer, want, "can-i {verb} {resource}");
    }
    (k, kubeconfig)
}

const APP: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: 10.96.0.50
  ports:
  - {name: http, port: 80, protocol: TCP}
  - {name: dns, port: 53, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata:
  name: db
spec:
  clusterIP: None
  ports:
  - {name: pg, port: 5432, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-1
  labels:
    kubernetes.io/service-name: db
addressType: IPv4
ports:
- {name: pg, port: 5432, protocol: TCP}
endpoints:
- addresses: [10.1.0.1]
  hostname: db-0
  conditions: {ready: true}
- addresses: [10.1.0.2]
  conditions: {ready: true}
- addresses: [10.1.0.3]
  conditions: {ready: false}
---
apiVersion: v1
kind: Service
metadata:
  name: ext
spec:
  type: ExternalName
  externalName: upstream.example
---
apiVersion: v1
kind: Service
metadata:
  name: web6
spec:
  clusterIP: None
  ports:
  - {name: http, port: 80, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web6-1
  labels:
    kubernetes.io/service-name: web6
addressType: IPv6
ports:
- {name: http, port: 80, protocol: TCP}
endpoints:
- addresses: ["fd00::7"]
  conditions: {ready: true}
"#;

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn cluster_names_answer_per_the_dns_spec_and_follow_changes() {
    let (k, kubeconfig) = cluster();
    let ns = k.namespace("dns-e2e");
    k.namespace("empty-ns");
    k.ok_stdin(&["apply", "-n", &ns, "-f", "-"], APP);
    let upstream = Upstream::start();
    let dns = KubeDns::spawn(
        &kubeconfig,
        &[format!("--upstream-nameserver={}", upstream.addr)],
    );
    dns.wait_ready();
    let svc = |name: &str| format!("{name}.{ns}.svc.cluster.local");

    // A ClusterIP Service, over UDP and TCP, authoritative, with the TTL.
    let web = dns.dig(&[&svc("web"), "A"]);
    web.expect("NOERROR", &["10.96.0.50"]);
    assert!(web.flags.contains(&"aa".to_owned()), "{}", web.raw);
    assert_eq!(web.answer[0].ttl, 30, "{}", web.raw);
    dns.dig(&["+tcp", &svc("web"), "A"])
        .expect("NOERROR", &["10.96.0.50"]);
    // NODATA: the name exists, the type does not; SOA in authority for negative caching.
    let nodata = dns.dig(&[&svc("web"), "AAAA"]);
    nodata.expect("NOERROR", &[]);
    assert_eq!(nodata.authority[0].kind, "SOA", "{}", nodata.raw);

    // Headless: the ready endpoints, by hostname and by dashed IP; not-ready ones are absent.
    dns.dig(&[&svc("db"), "A"])
        .expect("NOERROR", &["10.1.0.1", "10.1.0.2"]);
    dns.dig(&[&format!("db-0.{}", svc("db")), "A"])
        .expect("NOERROR", &["10.1.0.1"]);
    dns.dig(&[&format!("10-1-0-2.{}", svc("db")), "A"])
        .expect("NOERROR", &["10.1.0.2"]);
    dns.dig(&[&format!("10-1-0-3.{}", svc("db")), "A"])
        .expect("NXDOMAIN", &[]);
    dns.dig(&[&svc("web6"), "AAAA"])
        .expect("NOERROR", &["fd00::7"]);
    dns.dig(&[&format!("fd00--7.{}", svc("web6")), "AAAA"])
        .expect("NOERROR", &["fd00::7"]);

    // SRV for named ports: the Service form and the headless form with target addresses.
    dns.dig(&[&format!("_http._tcp.{}", svc("web")), "SRV"])
        .expect("NOERROR", &[&format!("0 100 80 {}.", svc("web"))]);
    let srv = dns.dig(&[&format!("_pg._tcp.{}", svc("db")), "SRV"]);
    srv.expect(
        "NOERROR",
        &[
            &format!("0 50 5432 db-0.{}.", svc("db")),
            &format!("0 50 5432 10-1-0-2.{}.", svc("db")),
        ],
    );
    let extra: Vec<String> = srv.additional.iter().map(|r| r.data.clone()).collect();
    assert!(
        extra.contains(&"10.1.0.1".to_owned()),
        "SRV targets' addresses in additional:\n{}",
        srv.raw
    );
    dns.dig(&[&format!("_pg._udp.{}", svc("db")), "SRV"])
        .expect("NXDOMAIN", &[]);

    // ExternalName: a CNAME, and for A its target resolved upstream.
    dns.dig(&[&svc("ext"), "CNAME"])
        .expect("NOERROR", &["upstream.example."]);
    dns.dig(&[&svc("ext"), "A"])
        .expect("NOERROR", &["upstream.example.", UPSTREAM_IP]);

    // Pods ("pods insecure": the IP the name spells, in an existing namespace).
    dns.dig(&[&format!("10-244-1-9.{ns}.pod.cluster.local"), "A"])
        .expect("NOERROR", &["10.244.1.9"]);
    dns.dig(&["10-244-1-9.missing-ns.pod.cluster.local", "A"])
        .expect("NXDOMAIN", &[]);
    dns.dig(&[&format!("not-an-ip.{ns}.pod.cluster.local"), "A"])
        .expect("NXDOMAIN", &[]);

    // PTR for cluster IPs and endpoints, in-addr.arpa and ip6.arpa.
    dns.dig(&["-x", "10.96.0.50"])
        .expect("NOERROR", &[&format!("{}.", svc("web"))]);
    dns.dig(&["-x", "10.1.0.1"])
        .expect("NOERROR", &[&format!("db-0.{}.", svc("db"))]);
    dns.dig(&["-x", "fd00::7"])
        .expect("NOERROR", &[&format!("fd00--7.{}.", svc("web6"))]);
    // Unknown IPs fall through to the upstream.
    dns.dig(&["-x", UPSTREAM_IP])
        .expect("NOERROR", &["upstream.example."]);

    // Zone apex, namespaces, version, and names that do not exist.
    let soa = dns.dig(&["cluster.local", "SOA"]);
    assert_eq!(soa.status, "NOERROR", "{}", soa.raw);
    assert!(
        soa.data()[0].starts_with("ns.dns.cluster.local. hostmaster.cluster.local. "),
        "{}",
        soa.raw
    );
    dns.dig(&["cluster.local", "NS"])
        .expect("NOERROR", &["ns.dns.cluster.local."]);
    dns.dig(&["dns-version.cluster.local", "TXT"])
        .expect("NOERROR", &["\"1.1.0\""]);
    dns.dig(&[&format!("{ns}.svc.cluster.local"), "A"])
        .expect("NOERROR", &[]);
    dns.dig(&["empty-ns.svc.cluster.local", "A"])
        .expect("NOERROR", &[]);
    dns.dig(&["missing-ns.svc.cluster.local", "A"])
        .expect("NXDOMAIN", &[]);
    dns.dig(&[&svc("missing"), "A"]).expect("NXDOMAIN", &[]);
    dns.dig(&["+tcp", &svc("missing"), "A"])
        .expect("NXDOMAIN", &[]);
    dns.dig(&["svc.cluster.local", "A"]).expect("NOERROR", &[]);
    dns.dig(&["foo.cluster.local", "A"]).expect("NXDOMAIN", &[]);

    // Changes show up from the watch: a new Service, a new ready endpoint, a deletion.
    let started = Instant::now();
    k.ok(&[
        "create",
        "service",
        "clusterip",
        "late",
        "-n",
        &ns,
        "--tcp=8080:8080",
    ]);
    let late_ip = k.ok(&[
        "get",
        "service",
        "late",
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    eventually("the new Service in DNS", UPDATE_TIMEOUT, || {
        let d = dns.dig(&[&svc("late"), "A"]);
        (d.status == "NOERROR" && d.data() == [late_ip.clone()])
            .then_some(())
            .ok_or(d.raw)
    });
    eprintln!("new Service answered {:?} after create", started.elapsed());

    k.ok(&[
        "patch",
        "endpointslice",
        "db-1",
        "-n",
        &ns,
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/endpoints/2/conditions/ready","value":true}]"#,
    ]);
    eventually("the endpoint that became ready", UPDATE_TIMEOUT, || {
        let d = dns.dig(&[&svc("db"), "A"]);
        (d.sorted_data() == ["10.1.0.1", "10.1.0.2", "10.1.0.3"])
            .then_some(())
            .ok_or(d.raw)
    });

    k.ok(&["delete", "service", "web", "-n", &ns]);
    eventually("the deleted Service gone", UPDATE_TIMEOUT, || {
        let d = dns.dig(&[&svc("web"), "A"]);
        (d.status == "NXDOMAIN").then_some(()).ok_or(d.raw)
    });
    let ptr = dns.dig(&["-x", "10.96.0.50"]);
    assert!(ptr.data().is_empty(), "{}", ptr.raw);
    dns.assert_running();
}

#[test]
fn other_names_are_forwarded_with_truncation_and_failures_become_servfail() {
    let (_k, kubeconfig) = cluster();
    let upstream = Upstream::start();
    let dns = KubeDns::spawn(
        &kubeconfig,
        &[format!("--upstream-nameserver={}", upstream.addr)],
    );
    dns.wait_ready();

    let before = upstream.queries();
    dns.dig(&["upstream.example", "A"])
        .expect("NOERROR", &[UPSTREAM_IP]);
    dns.dig(&["+tcp", "upstream.example", "A"])
        .expect("NOERROR", &[UPSTREAM_IP]);
    dns.dig(&["nothing.example", "A"]).expect("NXDOMAIN", &[]);
    assert!(
        upstream.queries() >= before + 3,
        "the upstream saw the queries"
    );

    // Too big for UDP: TC set (dig +ignore keeps the truncated answer), then the whole answer
    // over TCP, which dig does by itself on TC.
    let truncated = dns.dig(&["+ignore", "+bufsize=1232", "big.example", "TXT"]);
    assert!(
        truncated.flags.contains(&"tc".to_owned()),
        "{}",
        truncated.raw
    );
    assert!(truncated.answer.is_empty(), "{}", truncated.raw);
    let plain = dns.dig(&["+ignore", "+noedns", "big.example", "TXT"]);
    assert!(plain.flags.contains(&"tc".to_owned()), "{}", plain.raw);
    let full = dns.dig(&["big.example", "TXT"]);
    assert_eq!(full.status, "NOERROR", "{}", full.raw);
    assert_eq!(full.answer.len(), BIG_TXT_RECORDS, "{}", full.raw);

    // An upstream that never answers: SERVFAIL after the timeout, not a hang.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind a silent upstream");
    let silent_addr = silent.local_addr().expect("addr");
    let dead = KubeDns::spawn(
        &kubeconfig,
        &[
            format!("--upstream-nameserver={silent_addr}"),
            "--upstream-timeout=1s".to_owned(),
        ],
    );
    dead.wait_ready();
    let started = Instant::now();
    dead.dig(&["upstream.example", "A"]).expect("SERVFAIL", &[]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered in time"
    );
    // Nobody listening on TCP either.
    dead.dig(&["+tcp", "upstream.example", "A"])
        .expect("SERVFAIL", &[]);

    // Health, ready and metrics, and the counters move with queries.
    assert_eq!(http_get(dns.health, "/health"), Ok((200, "OK".to_owned())));
    assert_eq!(http_get(dns.ready, "/ready"), Ok((200, "OK".to_owned())));
    let requests_a = |text: &str| {
        metric_sum(
            text,
            "coredns_dns_requests_total",
            &[("type", "A"), ("proto", "udp")],
        )
    };
    let before = requests_a(&dns.metrics());
    for _ in 0..3 {
        dns.dig(&["upstream.example", "A"])
            .expect("NOERROR", &[UPSTREAM_IP]);
    }
    let metrics = dns.metrics();
    assert!(requests_a(&metrics) >= before + 3.0, "{metrics}");
    for (name, labels) in [
        (
            "coredns_dns_responses_total",
            vec![("rcode", "NOERROR"), ("plugin", "forward")],
        ),
        (
            "coredns_dns_responses_total",
            vec![("rcode", "NXDOMAIN"), ("plugin", "forward")],
        ),
        (
            "coredns_dns_request_duration_seconds_count",
            vec![("type", "A")],
        ),
        (
            "coredns_forward_requests_total",
            vec![("to", &upstream.addr.to_string())],
        ),
        ("coredns_build_info", vec![]),
        ("process_resident_memory_bytes", vec![]),
    ] {
        let labels: Vec<(&str, &str)> = labels.to_vec();
        assert!(
            metric_sum(&metrics, name, &labels) > 0.0,
            "{name} {labels:?}:\n{metrics}"
        );
    }
    assert!(
        metrics.contains(&format!("server=\"dns://127.0.0.1:{}\"", dns.dns)),
        "{metrics}"
    );
    assert!(metrics.contains("zone=\".\""), "{metrics}");

    // Garbage does not kill it: short packets are dropped, a bad body gets FORMERR, a response
    // is ignored.
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let server = ("127.0.0.1", dns.dns);
    client.send_to(b"\x01\x02\x03", server).expect("send");
    let mut header_then_junk = vec![0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    header_then_junk.extend_from_slice(&[0xff; 7]);
    client.send_to(&header_then_junk, server).expect("send");
    let mut buf = [0u8; 512];
    let (n, _) = client.recv_from(&mut buf).expect("a FORMERR answer");
    let response = Message::from_vec(&buf[..n]).expect("a DNS message");
    assert_eq!(response.id(), 0xabcd);
    assert_eq!(response.response_code(), ResponseCode::FormErr);
    let mut a_response = header_then_junk.clone();
    a_response[2] |= 0x80;
    client.send_to(&a_response, server).expect("send");
    client.send_to(&[0u8; 0], server).expect("send");
    assert!(
        client.recv_from(&mut buf).is_err(),
        "short packets and responses get no answer"
    );
    dns.dig(&["upstream.example", "A"])
        .expect("NOERROR", &[UPSTREAM_IP]);
    dns.assert_running();
}

#[test]
fn ready_waits_for_the_first_sync_and_cluster_names_fail_until_then() {
    // An apiserver that is not there: kube-dns is alive (health) but not ready, answers
    // cluster names with SERVFAIL, and still forwards other names.
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    let port = free_port();
    fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: \
             https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  \
             user:\n    token: nope\ncontexts:\n- name: c\n  context:\n    cluster: c\n    \
             user: u\ncurrent-context: c\n"
        ),
    )
    .expect("write kubeconfig");
    let upstream = Upstream::start();
    let dns = KubeDns::spawn(
        &kubeconfig,
        &[format!("--upstream-nameserver={}", upstream.addr)],
    );
    let ready = http_get(dns.ready, "/ready").expect("GET /ready");
    assert_eq!(ready.0, 503, "{ready:?}");
    dns.dig(&["kubernetes.default.svc.cluster.local", "A"])
        .expect("SERVFAIL", &[]);
    dns.dig(&["upstream.example", "A"])
        .expect("NOERROR", &[UPSTREAM_IP]);
    assert_eq!(http_get(dns.health, "/health"), Ok((200, "OK".to_owned())));
}

/// The sum of the samples of `name` whose labels include all of `labels`.
fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            let metric = l.split(['{', ' ']).next().unwrap_or("");
            metric == name
        })
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
