//! A throwaway network lab for kube-proxy tests: a "node" namespace (where kube-proxy runs)
//! linked to the host by a veth, and "pod" namespaces routed through it, all deleted on drop.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Whether the tests can create namespaces and rules.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Runs a command; returns its output (never panics on a non-zero exit).
pub fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd}: {e}"))
}

/// Runs a command and panics unless it succeeds; returns stdout.
#[track_caller]
pub fn must(cmd: &str, args: &[&str]) -> String {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `cond` every 100 ms until it holds or `timeout` passes.
#[track_caller]
pub fn wait_for(desc: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {desc}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// One pod: a namespace with `ip` behind its own veth into the node namespace.
pub struct Pod {
    pub ns: String,
    pub ip: Ipv4Addr,
}

/// The namespaces, links and processes of one test; everything is removed on drop.
pub struct Lab {
    pub tag: String,
    pub node: String,
    /// The host side of the host<->node veth (the apiserver forwarder listens here).
    pub host_ip: Ipv4Addr,
    /// The node's address on that veth (its "node address").
    pub node_ip: Ipv4Addr,
    pub pods: Vec<Pod>,
    namespaces: Vec<String>,
    host_link: String,
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Lab {
    /// A node namespace with `pods` pod namespaces (10.244.<i+1>.2) and a veth to the host.
    pub fn new(pods: usize) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("{:x}{n}", pid % 0xfff);
        // A /30 per lab on the host side, distinct across concurrent labs of this process.
        let idx = (pid.wrapping_mul(7).wrapping_add(n * 13)) % 250 + 1;
        let host_ip = Ipv4Addr::new(10, 213, idx as u8, 1);
        let node_ip = Ipv4Addr::new(10, 213, idx as u8, 2);
        let node = format!("kp{tag}-node");
        let host_link = format!("kph{tag}");
        let mut lab = Lab {
            tag: tag.clone(),
            node: node.clone(),
            host_ip,
            node_ip,
            pods: Vec::new(),
            namespaces: Vec::new(),
            host_link: host_link.clone(),
            children: Vec::new(),
            dir: tempfile::tempdir().expect("tempdir"),
        };
        must("ip", &["netns", "add", &node]);
        lab.namespaces.push(node.clone());
        lab.sh(
            &node,
            "ip link set lo up && sysctl -qw net.ipv4.ip_forward=1",
        );
        must(
            "ip",
            &[
                "link", "add", &host_link, "type", "veth", "peer", "name", "eth0", "netns", &node,
            ],
        );
        must(
            "ip",
            &["addr", "add", &format!("{host_ip}/30"), "dev", &host_link],
        );
        must("ip", &["link", "set", &host_link, "up"]);
        lab.sh(
            &node,
            &format!(
                "ip addr add {node_ip}/30 dev eth0 && ip link set eth0 up && ip route add default via {host_ip}"
            ),
        );
        for i in 0..pods {
            let ns = format!("kp{tag}-p{i}");
            let ip = Ipv4Addr::new(10, 244, i as u8 + 1, 2);
            let gw = Ipv4Addr::new(10, 244, i as u8 + 1, 1);
            must("ip", &["netns", "add", &ns]);
            lab.namespaces.push(ns.clone());
            must(
                "ip",
                &[
                    "-n",
                    &node,
                    "link",
                    "add",
                    &format!("veth{i}"),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    &ns,
                ],
            );
            lab.sh(
                &node,
                &format!("ip addr add {gw}/24 dev veth{i} && ip link set veth{i} up"),
            );
            lab.sh(
                &ns,
                &format!(
                    "ip link set lo up && ip addr add {ip}/24 dev eth0 && ip link set eth0 up && ip route add default via {gw}"
                ),
            );
            lab.pods.push(Pod { ns, ip });
        }
        lab
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `script` with sh inside namespace `ns`; panics on failure; returns stdout.
    #[track_caller]
    pub fn sh(&self, ns: &str, script: &str) -> String {
        must("ip", &["netns", "exec", ns, "sh", "-c", script])
    }

    /// Runs `script` inside `ns`, whatever its exit status.
    pub fn try_sh(&self, ns: &str, script: &str) -> Output {
        run("ip", &["netns", "exec", ns, "sh", "-c", script])
    }

    /// Starts a long-running process inside `ns`; killed on drop.
    pub fn spawn(&mut self, ns: &str, args: &[&str], log: &str) -> usize {
        let log = std::fs::File::create(self.dir.path().join(log)).expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn in namespace");
        self.children.push(child);
        self.children.len() - 1
    }

    /// Stops a process started with [`Lab::spawn`].
    pub fn kill(&mut self, id: usize) {
        let c = &mut self.children[id];
        let _ = c.kill();
        let _ = c.wait();
    }

    pub fn child(&mut self, id: usize) -> &mut Child {
        &mut self.children[id]
    }

    /// A log written by a spawned process.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// Runs `busybox httpd` in pod `i` on `port`, answering `/` with `body`.
    pub fn http_server(&mut self, i: usize, port: u16, body: &str) {
        let root = self.dir.path().join(format!("www{i}-{port}"));
        std::fs::create_dir_all(&root).expect("www dir");
        std::fs::write(root.join("index.html"), body).expect("index");
        let ns = self.pods[i].ns.clone();
        let root_s = root.to_string_lossy().into_owned();
        self.spawn(
            &ns,
            &[
                "busybox",
                "httpd",
                "-f",
                "-p",
                &port.to_string(),
                "-h",
                &root_s,
            ],
            &format!("httpd{i}-{port}.log"),
        );
        let ip = self.pods[i].ip;
        let node = self.node.clone();
        wait_for("httpd answers", Duration::from_secs(10), || {
            self.try_sh(&node, &format!("curl -sf -m 1 http://{ip}:{port}/"))
                .status
                .success()
        });
    }

    /// `curl` from `ns`: Ok(body) or Err(curl exit code).
    pub fn curl(&self, ns: &str, url: &str) -> Result<String, i32> {
        let out = self.try_sh(ns, &format!("curl -s -m 3 {url}"));
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(out.status.code().unwrap_or(-1))
        }
    }

    /// `curl` from the host namespace (an off-cluster client); panics unless it answers.
    #[track_caller]
    pub fn curl_host(&self, url: &str) -> String {
        must("curl", &["-s", "-m", "3", url]).trim().to_owned()
    }

    /// Forwards `host_ip:<port>` to `target` (the apiserver on host loopback), so processes in
    /// the node namespace reach it; returns the port.
    pub fn forward_to(&self, target: SocketAddr) -> u16 {
        let listener = TcpListener::bind((self.host_ip, 0)).expect("bind forwarder");
        let port = listener.local_addr().expect("addr").port();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(inbound) = conn else { return };
                let Ok(outbound) = TcpStream::connect(target) else {
                    continue;
                };
                pipe(inbound, outbound);
            }
        });
        port
    }

    /// A copy of `kubeconfig` that reaches the apiserver through [`Lab::forward_to`].
    pub fn node_kubeconfig(&self, kubeconfig: &Path, apiserver: SocketAddr) -> PathBuf {
        let port = self.forward_to(apiserver);
        let text = std::fs::read_to_string(kubeconfig).expect("read kubeconfig");
        let text = text.replace(
            &format!("server: https://127.0.0.1:{}", apiserver.port()),
            &format!(
                "server: https://{}:{port}\n    tls-server-name: localhost",
                self.host_ip
            ),
        );
        let path = self.dir.path().join("node-kubeconfig.yaml");
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }
}

fn pipe(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    thread::spawn(move || copy(a, b2));
    thread::spawn(move || copy(b, a2));
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16384];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Deleting a namespace deletes its veths, and with them their peers (the host link).
        for ns in self.namespaces.iter().rev() {
            let _ = run("ip", &["netns", "del", ns]);
        }
        let _ = run("ip", &["link", "del", &self.host_link]);
    }
}
