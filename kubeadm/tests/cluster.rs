//! The whole cluster, as an operator builds it: two nodes, each in its own network namespace
//! with its own containerd and upstream's default ports, on one L2 segment with the host.
//! `kubeadm init` on the first brings the control plane up from static-pod manifests, the
//! kube-proxy DaemonSet and the DNS add-on; the second joins with the printed `kubeadm join`.
//! Stock kubectl, real traffic (ClusterIP, NodePort, DNS names, pod to pod across nodes) and
//! Debian's prometheus with the shipped prometheus.yml check it; `kubeadm reset -f` takes both
//! nodes down and leaves no files, rules, routes or interfaces behind.

mod common;
#[path = "../../kubelet/tests/common/containerd.rs"]
mod containerd;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::netns::{NodeNet, Segment};
use common::*;
use containerd::{Containerd, BUSYBOX_IMAGE};

const SLOW: Duration = Duration::from_secs(300);
const TOKEN: &str = "abcdef.0123456789abcdef";

/// `kubeadm reset -f` in the node's namespace on drop, so a failing test leaves no kubelet or
/// pods behind.
struct Reset {
    ns: String,
    root: PathBuf,
    cri: String,
}

impl Drop for Reset {
    fn drop(&mut self) {
        let r = kubeadm_in(
            Some(&self.ns),
            &self.root,
            &["reset", "-f", &format!("--cri-socket={}", self.cri)],
        );
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.root.join("var/log/kubelet.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- kubelet log of {} (last 60 lines)\n{}\n--- reset\n{}{}",
                self.ns,
                lines[lines.len().saturating_sub(60)..].join("\n"),
                r.stdout,
                r.stderr
            );
        }
    }
}

/// Whether a process runs (exists and is not a zombie waiting for init to reap it).
fn running(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

fn pid_alive(file: &Path) -> bool {
    std::fs::read_to_string(file).is_ok_and(|p| running(&p))
}

fn ok(kc: &Path, args: &[&str]) -> String {
    let r = kubectl_run(kc, args);
    assert!(r.ok, "kubectl {args:?}: {}{}", r.stdout, r.stderr);
    r.stdout
}

fn try_out(kc: &Path, args: &[&str]) -> Option<String> {
    let r = kubectl_run(kc, args);
    r.ok.then_some(r.stdout)
}

/// Runs a program in a node's network namespace; (exit code, stdout, stderr).
fn on_node(node: &NodeNet, program: &str, args: &[&str]) -> (i32, String, String) {
    let out = in_netns(Some(&node.ns), program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `curl` from a node: Ok(body) or Err(curl's exit code: 7 refused, 28 timed out).
fn curl_from(node: Option<&NodeNet>, url: &str) -> Result<String, i32> {
    let out = in_netns(node.map(|n| n.ns.as_str()), "curl")
        .args(["-sS", "--max-time", "5", url])
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(out.status.code().unwrap_or(-1))
    }
}

/// `kubectl exec <pod> -- wget -O - <url>` from inside a pod (bounded by busybox `timeout`:
/// Debian's static busybox wget crashes on its own `-T`).
fn wget_in_pod(kc: &Path, pod: &str, url: &str) -> Option<String> {
    try_out(
        kc,
        &[
            "exec", pod, "--", "timeout", "10", "wget", "-q", "-O", "-", url,
        ],
    )
    .map(|s| s.trim().to_string())
}

fn jsonpath(kc: &Path, args: &[&str], path: &str) -> String {
    let mut a = args.to_vec();
    let p = format!("jsonpath={path}");
    a.extend(["-o", &p]);
    ok(kc, &a)
}

fn node_ready(kc: &Path, node: &str) {
    eventually(&format!("node {node} Ready"), SLOW, || {
        try_out(
            kc,
            &[
                "get",
                "node",
                node,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ],
        )
        .filter(|s| s == "True")
    });
}

/// `name=phase@node` of every pod in a namespace.
fn pods(kc: &Path, ns: &str) -> Vec<(String, String, String)> {
    try_out(
        kc,
        &[
            "get",
            "pods",
            "-n",
            ns,
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.spec.nodeName}{\"\\n\"}{end}",
        ],
    )
    .unwrap_or_default()
    .lines()
    .filter_map(|l| {
        let mut f = l.split_whitespace();
        Some((
            f.next()?.to_string(),
            f.next()?.to_string(),
            f.next().unwrap_or_default().to_string(),
        ))
    })
    .collect()
}

/// The whole first cluster: init, join, add-ons, traffic, Prometheus, restart, reset.
#[test]
fn kubeadm_builds_a_two_node_cluster_that_serves_traffic_and_reset_removes_it() {
    let mut segment = Segment::new();
    let cp = segment.node();
    let wk = segment.node();
    let containerd = Containerd::start_in(Some(&cp.ns));
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).expect("root");
    let bin = binaries_dir(dir.path());
    let _reset = Reset {
        ns: cp.ns.clone(),
        root: root.clone(),
        cri: containerd.endpoint(),
    };
    let pid = std::process::id();
    let node = format!("cp-{pid}");
    let pod_subnet = format!("10.{}.0.0/16", 150 + pid % 50);
    let config = format!(
        r#"apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: {ip}
bootstrapTokens:
- token: {TOKEN}
nodeRegistration:
  name: {node}
  criSocket: {cri}
  kubeletExtraArgs:
  - name: cni-conf-dir
    value: {cni}
  - name: node-ip
    value: {ip}
  - name: node-status-update-frequency
    value: 2s
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
networking:
  podSubnet: {pod_subnet}
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# A test machine's disk may be nearly full: no eviction or image GC of the cluster's pods.
evictionHard: {{}}
imageGCHighThresholdPercent: 100
"#,
        ip = cp.ip,
        cri = containerd.endpoint(),
        cni = containerd.cni_conf_dir.display(),
    );
    let cfg = dir.path().join("kubeadm.yaml");
    std::fs::write(&cfg, config).expect("config");
    let out = kubeadm_in(
        Some(&cp.ns),
        &root,
        &[
            "init",
            "--config",
            &cfg.display().to_string(),
            &format!("--binaries-dir={}", bin.display()),
            "--ignore-preflight-errors=IsPrivilegedUser,Swap",
        ],
    );
    assert!(out.ok, "kubeadm init:\n{}\n{}", out.stdout, out.stderr);
    let out = out.stdout;
    for line in [
        "[images] Imported localhost/kube-rs-fleet/kube-apiserver:v1.33.0",
        "[kubelet-start] Starting the kubelet",
        "[kubelet-check] The kubelet is healthy after",
        "[control-plane-check] kube-apiserver is healthy after",
        "[upload-config] Storing the configuration used in ConfigMap \"kubeadm-config\"",
        "[mark-control-plane] Marking the node",
        &format!("[bootstrap-token] Using token: {TOKEN}"),
        "[addons] Applied essential addon: kube-proxy",
        "Your Kubernetes control-plane has initialized successfully!",
        &format!(
            "kubeadm join {}:6443 --token {TOKEN} \\\n\t--discovery-token-ca-cert-hash sha256:",
            cp.ip
        ),
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    // The images are in the runtime under the names the manifests use.
    let images = containerd.ctr(&["images", "ls", "-q"]);
    let images = String::from_utf8_lossy(&images.stdout);
    for c in [
        "kube-store",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kube-proxy",
        "kube-dns",
    ] {
        assert!(
            images.contains(&format!("localhost/kube-rs-fleet/{c}:v1.33.0")),
            "{images}"
        );
    }
    let kc = root.join("etc/kubernetes/admin.conf");

    // The node registers and turns Ready; the four mirror pods run.
    node_ready(&kc, &node);
    let mirrors: Vec<String> = [
        "kube-store",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ]
    .iter()
    .map(|c| format!("{c}-{node}"))
    .collect();
    eventually("four Running mirror pods", SLOW, || {
        let pods = pods(&kc, "kube-system");
        mirrors
            .iter()
            .all(|m| pods.iter().any(|(n, p, _)| n == m && p == "Running"))
            .then_some(())
    });
    let labels = jsonpath(&kc, &["get", "node", &node], "{.metadata.labels}");
    assert!(
        labels.contains("\"node-role.kubernetes.io/control-plane\":\"\""),
        "{labels}"
    );
    assert!(
        labels.contains("node.kubernetes.io/exclude-from-external-load-balancers"),
        "{labels}"
    );
    let taints = jsonpath(&kc, &["get", "node", &node], "{.spec.taints}");
    assert!(
        taints.contains("node-role.kubernetes.io/control-plane") && taints.contains("NoSchedule"),
        "{taints}"
    );
    let secret_type = jsonpath(
        &kc,
        &[
            "get",
            "secret",
            "-n",
            "kube-system",
            "bootstrap-token-abcdef",
        ],
        "{.type}",
    );
    assert_eq!(secret_type, "bootstrap.kubernetes.io/token");
    eventually("cluster-info signed by the bootstrapsigner", SLOW, || {
        try_out(
            &kc,
            &[
                "get",
                "cm",
                "-n",
                "kube-public",
                "cluster-info",
                "-o",
                "jsonpath={.data}",
            ],
        )
        .filter(|d| d.contains("jws-kubeconfig-abcdef"))
    });
    for (kind, ns, name) in [
        ("cm", "kube-system", "kubeadm-config"),
        ("cm", "kube-system", "kubelet-config"),
        ("cm", "kube-system", "kube-proxy"),
        ("ds", "kube-system", "kube-proxy"),
        ("deploy", "kube-system", "kube-dns"),
        ("clusterrolebinding", "", "kubeadm:kubelet-bootstrap"),
        (
            "clusterrolebinding",
            "",
            "kubeadm:node-autoapprove-bootstrap",
        ),
        (
            "clusterrolebinding",
            "",
            "kubeadm:node-autoapprove-certificate-rotation",
        ),
        ("clusterrolebinding", "", "kubeadm:node-proxier"),
        (
            "clusterrolebinding",
            "",
            "kubeadm:kubelet-pod-network-routes",
        ),
    ] {
        let mut args = vec!["get", kind, name];
        if !ns.is_empty() {
            args.extend(["-n", ns]);
        }
        ok(&kc, &args);
    }
    let dns_ip = jsonpath(
        &kc,
        &["get", "svc", "-n", "kube-system", "kube-dns"],
        "{.spec.clusterIP}",
    );
    assert_eq!(dns_ip, "10.96.0.10");

    // token commands against the cluster.
    let created = kubeadm_ok(&root, &["token", "create", "--print-join-command"]);
    assert!(
        created.starts_with(&format!("kubeadm join {}:6443 --token ", cp.ip)),
        "{created}"
    );
    let list = kubeadm_ok(&root, &["token", "list"]);
    assert!(list.contains(TOKEN), "{list}");
    assert!(list.lines().count() >= 3, "{list}");

    // The second node joins with the printed command, in its own namespace with its own
    // containerd (anonymous cluster-info, CA pinning, TLS bootstrap through an approved CSR).
    let worker_runtime = Containerd::start_in(Some(&wk.ns));
    let root2 = dir.path().join("worker");
    std::fs::create_dir_all(&root2).expect("worker root");
    let reset_worker = Reset {
        ns: wk.ns.clone(),
        root: root2.clone(),
        cri: worker_runtime.endpoint(),
    };
    let worker = format!("worker-{pid}");
    join(
        &out,
        &cp,
        &wk,
        &worker,
        &worker_runtime,
        dir.path(),
        &root2,
        &bin,
        &kc,
    );

    // The add-ons run: a kube-proxy pod on each node, the DNS pods.
    eventually("a Running kube-proxy pod on each node", SLOW, || {
        let pods = pods(&kc, "kube-system");
        let on: BTreeSet<&str> = pods
            .iter()
            .filter(|(n, p, _)| n.starts_with("kube-proxy-") && p == "Running")
            .map(|(_, _, node)| node.as_str())
            .collect();
        (on.contains(node.as_str()) && on.contains(worker.as_str())).then_some(())
    });
    eventually("the DNS pods Running", SLOW, || {
        let ready = try_out(
            &kc,
            &[
                "get",
                "deploy",
                "-n",
                "kube-system",
                "kube-dns",
                "-o",
                "jsonpath={.status.readyReplicas}/{.spec.replicas}",
            ],
        )?;
        let (r, want) = ready.split_once('/')?;
        (!want.is_empty() && r == want).then_some(())
    });

    traffic(&kc, dir.path(), &cp, &wk, &node, &worker);
    prometheus(&kc, dir.path(), &root, &cp);

    // The kubelet restarts a killed kube-apiserver container; the cluster keeps working.
    let restarts = || {
        try_out(
            &kc,
            &[
                "get",
                "pod",
                "-n",
                "kube-system",
                &format!("kube-apiserver-{node}"),
                "-o",
                "jsonpath={.status.containerStatuses[0].restartCount}",
            ],
        )
        .and_then(|n| n.parse::<u32>().ok())
    };
    let before = restarts().expect("the apiserver's restartCount");
    let apiserver = pids_with(&["kube-apiserver", &format!("--advertise-address={}", cp.ip)]);
    assert!(!apiserver.is_empty(), "no kube-apiserver process found");
    for p in &apiserver {
        let _ = Command::new("kill")
            .args(["-KILL", &p.to_string()])
            .status();
    }
    eventually("kube-apiserver restarted by the kubelet", SLOW, || {
        restarts().filter(|n| *n > before)
    });
    ok(&kc, &["get", "nodes"]);
    let cluster_ip = jsonpath(&kc, &["get", "svc", "web"], "{.spec.clusterIP}");
    let node_port = jsonpath(&kc, &["get", "svc", "web-np"], "{.spec.ports[0].nodePort}");
    eventually("the ClusterIP after the apiserver's restart", SLOW, || {
        curl_from(Some(&wk), &format!("http://{cluster_ip}/")).ok()
    });

    // Scaling to 0: connections to the ClusterIP and the NodePort are refused, not left
    // hanging.
    ok(&kc, &["scale", "deploy", "web", "--replicas=0"]);
    eventually("ClusterIP refused with no endpoints", SLOW, || {
        (curl_from(Some(&cp), &format!("http://{cluster_ip}/")) == Err(7)).then_some(())
    });
    eventually("NodePort refused with no endpoints", SLOW, || {
        (curl_from(None, &format!("http://{}:{node_port}/", cp.ip)) == Err(7)).then_some(())
    });

    // reset: the worker, then the control plane. No kubelet, no containers, no files, no
    // rules, no bridge.
    let worker_kubelet =
        std::fs::read_to_string(root2.join("run/kubeadm/kubelet.pid")).expect("worker pid");
    kubeadm_in(Some(&wk.ns), &root2, &["reset", "-f"]);
    assert!(!running(&worker_kubelet), "the worker's kubelet still runs");
    assert!(
        worker_runtime.running_tasks().is_empty(),
        "{:?}",
        worker_runtime.running_tasks()
    );
    drop(reset_worker);
    let supervisor_pid = root.join("run/kubeadm/kubelet-supervisor.pid");
    let kubelet_pid = root.join("run/kubeadm/kubelet.pid");
    assert!(pid_alive(&supervisor_pid) && pid_alive(&kubelet_pid));
    let kubelet_pid_value = std::fs::read_to_string(&kubelet_pid).expect("pid");
    let out = kubeadm_in(Some(&cp.ns), &root, &["reset", "-f"]);
    assert!(out.ok, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("[reset] Stopping the kubelet service"),
        "{}",
        out.stdout
    );
    assert!(
        !running(&kubelet_pid_value),
        "the kubelet still runs after reset"
    );
    assert!(
        containerd.running_tasks().is_empty(),
        "{:?}",
        containerd.running_tasks()
    );
    let left: Vec<_> = std::fs::read_dir(root.join("etc/kubernetes/manifests"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    for f in ["admin.conf", "kubelet.conf", "pki/ca.crt"] {
        assert!(!root.join("etc/kubernetes").join(f).exists(), "{f} left");
    }
    assert!(!root2.join("etc/kubernetes/kubelet.conf").exists());
    for (n, runtime) in [(&cp, &containerd), (&wk, &worker_runtime)] {
        assert!(!runtime
            .cni_conf_dir
            .join("10-kubelet-bridge.conflist")
            .exists());
        let (_, rules, _) = on_node(n, "iptables-save", &[]);
        assert!(
            !rules.contains("KUBE-") && !rules.contains("KUBELET-POD-MASQUERADE"),
            "kube-proxy or kubelet rules left on {}:\n{rules}",
            n.ns
        );
        let (_, routes, _) = on_node(n, "ip", &["route", "show", "proto", "75"]);
        assert!(
            routes.trim().is_empty(),
            "pod routes left on {}: {routes}",
            n.ns
        );
        let (_, links, _) = on_node(n, "ip", &["-br", "link"]);
        assert!(
            !links.lines().any(|l| l.starts_with("cni0")),
            "cni0 left on {}:\n{links}",
            n.ns
        );
    }
}

/// `kubeadm join` of the worker with the command `kubeadm init` printed.
#[allow(clippy::too_many_arguments)]
fn join(
    init_out: &str,
    cp: &NodeNet,
    wk: &NodeNet,
    worker: &str,
    runtime: &Containerd,
    dir: &Path,
    root: &Path,
    bin: &Path,
    kc: &Path,
) {
    let hash = init_out
        .split("--discovery-token-ca-cert-hash ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("hash in the join command")
        .to_string();
    let join_cfg = dir.join("join.yaml");
    std::fs::write(
        &join_cfg,
        format!(
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n  - name: cni-conf-dir\n    value: {}\n  - name: node-ip\n    value: {}\n",
            runtime.cni_conf_dir.display(),
            wk.ip,
        ),
    )
    .expect("join config");
    let endpoint = format!("{}:6443", cp.ip);
    let joined = kubeadm_in(
        Some(&wk.ns),
        root,
        &[
            "join",
            &endpoint,
            "--token",
            TOKEN,
            "--discovery-token-ca-cert-hash",
            &hash,
            "--node-name",
            worker,
            &format!("--cri-socket={}", runtime.endpoint()),
            "--config",
            &join_cfg.display().to_string(),
            &format!("--binaries-dir={}", bin.display()),
        ],
    );
    assert!(
        joined.ok && joined.stdout.contains("This node has joined the cluster"),
        "{}{}",
        joined.stdout,
        joined.stderr
    );
    node_ready(kc, worker);
    let csrs = ok(
        kc,
        &["get", "csr", "-o", "jsonpath={range .items[*]}{.spec.signerName} {.spec.username} {.status.conditions[0].type}{\"\\n\"}{end}"],
    );
    assert!(
        csrs.lines().any(|l| l.starts_with(
            "kubernetes.io/kube-apiserver-client-kubelet system:bootstrap:abcdef Approved"
        )),
        "{csrs}"
    );
    let kubelet_conf =
        std::fs::read_to_string(root.join("etc/kubernetes/kubelet.conf")).expect("kubelet.conf");
    assert!(
        kubelet_conf.contains("kubelet-client-current.pem"),
        "{kubelet_conf}"
    );
    // A wrong CA pin is refused before anything is written.
    let root3 = dir.join("refused");
    std::fs::create_dir_all(&root3).expect("root3");
    let refused = kubeadm_in(
        Some(&wk.ns),
        &root3,
        &[
            "join",
            &endpoint,
            "--token",
            TOKEN,
            "--discovery-token-ca-cert-hash",
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ],
    );
    assert!(
        !refused.ok && refused.stderr.contains("none of the public keys"),
        "{}",
        refused.stderr
    );
}

/// Two web pods (one per node) behind a ClusterIP and a NodePort Service, and a client pod on
/// the worker: pod-to-pod by IP across nodes, the ClusterIP from a node and from a pod, DNS
/// names and search paths, the NodePort on each node's address from the host.
fn traffic(kc: &Path, dir: &Path, cp: &NodeNet, wk: &NodeNet, node: &str, worker: &str) {
    let manifest = dir.join("web.yaml");
    std::fs::write(
        &manifest,
        format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      tolerations:
      - key: node-role.kubernetes.io/control-plane
        effect: NoSchedule
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector:
              matchLabels: {{app: web}}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: httpd
        image: {BUSYBOX_IMAGE}
        imagePullPolicy: IfNotPresent
        # index.html names the pod; /cgi-bin/ip echoes the caller's address as the pod sees it.
        command:
        - sh
        - -c
        - |
          mkdir -p /www/cgi-bin
          hostname > /www/index.html
          printf '#!/bin/sh\necho Content-Type: text/plain\necho\necho $REMOTE_ADDR\n' > /www/cgi-bin/ip
          chmod +x /www/cgi-bin/ip
          exec httpd -f -p 8080 -h /www
        ports:
        - containerPort: 8080
        readinessProbe:
          tcpSocket: {{port: 8080}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
spec:
  selector: {{app: web}}
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web-np
  namespace: default
spec:
  type: NodePort
  selector: {{app: web}}
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Pod
metadata:
  name: client
  namespace: default
spec:
  nodeSelector:
    kubernetes.io/hostname: {worker}
  containers:
  - name: c
    image: {BUSYBOX_IMAGE}
    imagePullPolicy: IfNotPresent
    command: [sleep, '3600']
"#
        ),
    )
    .expect("manifest");
    ok(kc, &["apply", "-f", &manifest.display().to_string()]);
    eventually("both web pods ready", SLOW, || {
        try_out(
            kc,
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.status.readyReplicas}",
            ],
        )
        .filter(|s| s == "2")
    });
    eventually("the client pod Running", SLOW, || {
        try_out(
            kc,
            &["get", "pod", "client", "-o", "jsonpath={.status.phase}"],
        )
        .filter(|s| s == "Running")
    });
    let web: Vec<(String, String, String)> = ok(
        kc,
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.podIP} {.spec.nodeName}{\"\\n\"}{end}",
        ],
    )
    .lines()
    .map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f[0].to_string(), f[1].to_string(), f[2].to_string())
    })
    .collect();
    let on: BTreeSet<&str> = web.iter().map(|(_, _, n)| n.as_str()).collect();
    assert_eq!(on, BTreeSet::from([node, worker]), "{web:?}");

    // Each kubelet routes the other node's podCIDR to it (routing protocol 75 marks its routes).
    for (from, to, to_name) in [(cp, wk, worker), (wk, cp, node)] {
        let cidr = jsonpath(kc, &["get", "node", to_name], "{.spec.podCIDR}");
        let want = format!("{cidr} via {} dev eth0", to.ip);
        eventually(&format!("route on {} to {cidr}", from.ns), SLOW, || {
            let (_, routes, _) = on_node(from, "ip", &["route", "show", "proto", "75"]);
            routes.lines().any(|l| l.trim() == want).then_some(())
        });
    }

    // Pod to pod by IP, on the same node and across nodes; a node to a pod on the other node.
    for (name, ip, _) in &web {
        let url = format!("http://{ip}:8080/");
        eventually(&format!("client -> {name} at {ip}"), SLOW, || {
            wget_in_pod(kc, "client", &url).filter(|b| b == name)
        });
        for n in [cp, wk] {
            eventually(&format!("node {} -> {name}", n.ns), SLOW, || {
                curl_from(Some(n), &url).ok().filter(|b| b == name)
            });
        }
    }

    // No NAT between pods: the pod on the other node sees the client pod's own address (the
    // kubelets masquerade only what leaves the pod network).
    for n in [cp, wk] {
        let (_, nat, _) = on_node(n, "iptables-save", &["-t", "nat"]);
        assert!(
            nat.contains("-j KUBELET-POD-MASQUERADE"),
            "no pod masquerade chain on {}:\n{nat}",
            n.ns
        );
    }
    let client_ip = jsonpath(kc, &["get", "pod", "client"], "{.status.podIP}");
    let (_, remote_ip, _) = web
        .iter()
        .find(|(_, _, n)| n == node)
        .expect("a web pod on the control-plane node");
    // busybox httpd listens on IPv6 and shows IPv4 peers as `[::ffff:a.b.c.d]`.
    let seen_as =
        wget_in_pod(kc, "client", &format!("http://{remote_ip}:8080/cgi-bin/ip")).map(|a| {
            a.trim_start_matches("[::ffff:")
                .trim_end_matches(']')
                .to_string()
        });
    assert_eq!(
        seen_as.as_deref(),
        Some(client_ip.as_str()),
        "the source address a pod on the other node sees"
    );

    // The ClusterIP from a node and from a pod, balanced across both pods.
    let cluster_ip = jsonpath(kc, &["get", "svc", "web"], "{.spec.clusterIP}");
    let names: BTreeSet<String> = web.iter().map(|(n, _, _)| n.clone()).collect();
    let mut seen = BTreeSet::new();
    eventually("ClusterIP from a node reaches both pods", SLOW, || {
        if let Ok(b) = curl_from(Some(cp), &format!("http://{cluster_ip}/")) {
            seen.insert(b);
        }
        (seen == names).then_some(())
    });
    eventually("ClusterIP from a pod", SLOW, || {
        wget_in_pod(kc, "client", &format!("http://{cluster_ip}/")).filter(|b| names.contains(b))
    });

    // DNS: the full name and the pod's search path, through the kube-dns Service.
    for url in [
        "http://web.default.svc.cluster.local/",
        "http://web/",
        "http://web.default/",
    ] {
        eventually(&format!("{url} from a pod"), SLOW, || {
            wget_in_pod(kc, "client", url).filter(|b| names.contains(b))
        });
    }
    let (code, answer, err) = on_node(
        cp,
        "dig",
        &[
            "+short",
            "+time=3",
            "+tries=2",
            "@10.96.0.10",
            "web.default.svc.cluster.local",
        ],
    );
    assert!(
        code == 0 && answer.trim() == cluster_ip,
        "dig: {code} {answer} {err}"
    );

    // The NodePort on both nodes' addresses, from the host (off the cluster).
    let node_port = jsonpath(kc, &["get", "svc", "web-np"], "{.spec.ports[0].nodePort}");
    for n in [cp, wk] {
        eventually(&format!("NodePort on {}", n.ip), SLOW, || {
            curl_from(None, &format!("http://{}:{node_port}/", n.ip))
                .ok()
                .filter(|b| names.contains(b))
        });
    }
}

/// Debian's prometheus with the shipped prometheus.yml (credentials from
/// scripts/prometheus.sh) in the control-plane node's namespace: every target up; and
/// `promtool check metrics` passes on every component's /metrics.
fn prometheus(kc: &Path, dir: &Path, root: &Path, cp: &NodeNet) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let prom_dir = dir.join("prometheus");
    std::fs::create_dir_all(&prom_dir).expect("prometheus dir");
    std::fs::copy(
        repo.join("prometheus/prometheus.yml"),
        prom_dir.join("prometheus.yml"),
    )
    .expect("copy prometheus.yml");
    let out_dir = dir.join("prometheus-out");
    let script = repo.join("scripts/prometheus.sh");
    let env = |c: &mut Command| {
        c.env("OUT", &out_dir)
            .env("ROOTFS", root)
            .env("KUBECONFIG", kc)
            .env("PROM_DIR", &prom_dir)
            .env("KUBECTL", kubectl());
    };
    struct Stop(Box<dyn Fn()>);
    impl Drop for Stop {
        fn drop(&mut self) {
            (self.0)()
        }
    }
    let (stop_script, stop_env) = (script.clone(), (out_dir.clone(), prom_dir.clone()));
    let _stop = Stop(Box::new(move || {
        let _ = Command::new("bash")
            .arg(&stop_script)
            .arg("stop")
            .env("OUT", &stop_env.0)
            .env("PROM_DIR", &stop_env.1)
            .stdout(Stdio::null())
            .status();
    }));
    let mut start = in_netns(Some(&cp.ns), "bash");
    start.arg(&script);
    env(&mut start);
    let started = start.output().expect("run scripts/prometheus.sh");
    assert!(
        started.status.success(),
        "scripts/prometheus.sh: {}{}",
        String::from_utf8_lossy(&started.stdout),
        String::from_utf8_lossy(&started.stderr)
    );

    let want: BTreeSet<&str> = [
        "kube-store",
        "kube-apiserver",
        "kube-scheduler",
        "kube-controller-manager",
        "kubelet",
        "kube-proxy",
        "kube-dns",
    ]
    .into();
    let mut last = String::new();
    eventually("every Prometheus target up", SLOW, || {
        let (_, body, _) = on_node(
            cp,
            "curl",
            &[
                "-sS",
                "--max-time",
                "5",
                "http://127.0.0.1:9090/api/v1/targets",
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let targets = v["data"]["activeTargets"].as_array()?.clone();
        last = targets
            .iter()
            .map(|t| {
                format!(
                    "{} {} {} {}",
                    t["labels"]["job"], t["scrapeUrl"], t["health"], t["lastError"]
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        let jobs: BTreeSet<&str> = targets
            .iter()
            .filter_map(|t| t["labels"]["job"].as_str())
            .collect();
        let down: Vec<String> = targets
            .iter()
            .filter(|t| t["health"] != "up")
            .map(|t| format!("{} {} {}", t["scrapeUrl"], t["health"], t["lastError"]))
            .collect();
        if !down.is_empty() {
            eprintln!("prometheus targets not up yet: {down:?}");
        }
        let kubelets = targets
            .iter()
            .filter(|t| t["labels"]["job"] == "kubelet")
            .count();
        (jobs == want && kubelets == 2 && targets.iter().all(|t| t["health"] == "up")).then_some(())
    });
    eprintln!("prometheus targets:\n{last}");

    // The same endpoints through promtool's linter, with the scraper's credentials.
    let creds = prom_dir.join("local");
    let cert = creds.join("prometheus.crt").display().to_string();
    let key = creds.join("prometheus.key").display().to_string();
    let dns_pod = ok(
        kc,
        &[
            "get",
            "pods",
            "-n",
            "kube-system",
            "-l",
            "k8s-app=kube-dns",
            "-o",
            "jsonpath={.items[0].status.podIP}",
        ],
    );
    for url in [
        "http://127.0.0.1:2381/metrics".to_string(),
        "https://127.0.0.1:6443/metrics".to_string(),
        "https://127.0.0.1:10259/metrics".to_string(),
        "https://127.0.0.1:10257/metrics".to_string(),
        format!("https://{}:10250/metrics", cp.ip),
        "http://127.0.0.1:10249/metrics".to_string(),
        format!("http://{dns_pod}:9153/metrics"),
    ] {
        let (code, body, err) = on_node(
            cp,
            "curl",
            &[
                "-sS",
                "-f",
                "-k",
                "--max-time",
                "10",
                "--cert",
                &cert,
                "--key",
                &key,
                &url,
            ],
        );
        assert!(code == 0 && !body.is_empty(), "GET {url}: {code} {err}");
        let mut check = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool");
        use std::io::Write as _;
        check
            .stdin
            .take()
            .expect("stdin")
            .write_all(body.as_bytes())
            .expect("feed promtool");
        let res = check.wait_with_output().expect("promtool");
        assert!(
            res.status.success(),
            "promtool check metrics on {url}:\n{}{}",
            String::from_utf8_lossy(&res.stdout),
            String::from_utf8_lossy(&res.stderr)
        );
    }
}
