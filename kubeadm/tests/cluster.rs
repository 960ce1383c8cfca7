//! The one-command cluster: `kubeadm init` on a private containerd builds and imports the
//! images, starts the supervised kubelet, which runs kube-store, kube-apiserver,
//! kube-controller-manager and kube-scheduler as static pods; stock kubectl then uses the
//! cluster, a worker joins with `kubeadm join`, and `kubeadm reset -f` takes it all down.

mod common;
#[path = "../../kubelet/tests/common/containerd.rs"]
mod containerd;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use containerd::{Containerd, BUSYBOX_IMAGE};

const SLOW: Duration = Duration::from_secs(300);

/// A directory with the binaries kubeadm builds images from and runs the kubelet from:
/// `$KUBE_*_BIN` / `$KUBELET_BIN` where set, else the ones next to kubeadm.
fn binaries_dir(into: &Path) -> PathBuf {
    let dir = into.join("bin");
    std::fs::create_dir_all(&dir).expect("bin dir");
    for (name, var) in [
        ("kube-store", "KUBE_STORE_BIN"),
        ("kube-apiserver", "KUBE_APISERVER_BIN"),
        ("kube-controller-manager", "KUBE_CONTROLLER_MANAGER_BIN"),
        ("kube-scheduler", "KUBE_SCHEDULER_BIN"),
        ("kubelet", "KUBELET_BIN"),
    ] {
        std::os::unix::fs::symlink(component_binary(name, var), dir.join(name)).expect("symlink");
    }
    dir
}

/// `kubeadm reset -f` on drop, so a failing test leaves no kubelet or pods behind.
struct Reset {
    root: PathBuf,
    cri: String,
}

impl Drop for Reset {
    fn drop(&mut self) {
        let r = kubeadm(
            &self.root,
            &["reset", "-f", &format!("--cri-socket={}", self.cri)],
        );
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.root.join("var/log/kubelet.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- kubelet log (last 60 lines)\n{}\n--- reset\n{}{}",
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

/// PIDs of processes whose command line contains every needle.
fn pids_with(needles: &[&str]) -> Vec<u32> {
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

fn ok(kc: &Path, args: &[&str]) -> String {
    let r = kubectl_run(kc, args);
    assert!(r.ok, "kubectl {args:?}: {}{}", r.stdout, r.stderr);
    r.stdout
}

fn try_out(kc: &Path, args: &[&str]) -> Option<String> {
    let r = kubectl_run(kc, args);
    r.ok.then_some(r.stdout)
}

#[test]
fn kubeadm_init_runs_the_control_plane_as_static_pods_and_reset_removes_it() {
    let containerd = Containerd::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).expect("root");
    let bin = binaries_dir(dir.path());
    let _reset = Reset {
        root: root.clone(),
        cri: containerd.endpoint(),
    };
    let pid = std::process::id();
    let node = format!("cp-{pid}");
    let [api, client, peer, metrics, kcm, sched, healthz, kport] =
        std::array::from_fn(|_| free_port());
    let pod_subnet = format!("10.{}.0.0/16", 150 + pid % 50);
    let bridge = format!("kadm{}", pid % 100_000);
    containerd
        .bridges
        .lock()
        .expect("bridges")
        .push(bridge.clone());
    let config = format!(
        r#"apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: 127.0.0.1
  bindPort: {api}
bootstrapTokens:
- token: abcdef.0123456789abcdef
nodeRegistration:
  name: {node}
  criSocket: {cri}
  kubeletExtraArgs:
  - name: cni-conf-dir
    value: {cni}
  - name: cni-bridge-name
    value: {bridge}
  - name: node-status-update-frequency
    value: 2s
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
networking:
  podSubnet: {pod_subnet}
apiServer:
  extraArgs:
  - name: etcd-servers
    value: https://127.0.0.1:{client}
controllerManager:
  extraArgs:
  - name: secure-port
    value: "{kcm}"
scheduler:
  extraArgs:
  - name: secure-port
    value: "{sched}"
etcd:
  local:
    extraArgs:
    - name: listen-client-urls
      value: https://127.0.0.1:{client}
    - name: advertise-client-urls
      value: https://127.0.0.1:{client}
    - name: listen-peer-urls
      value: https://127.0.0.1:{peer}
    - name: initial-advertise-peer-urls
      value: https://127.0.0.1:{peer}
    - name: initial-cluster
      value: {node}=https://127.0.0.1:{peer}
    - name: listen-metrics-urls
      value: http://127.0.0.1:{metrics}
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
healthzPort: {healthz}
port: {kport}
address: 127.0.0.1
# A test machine's disk may be nearly full: no eviction or image GC of the cluster's pods.
evictionHard: {{}}
imageGCHighThresholdPercent: 100
"#,
        cri = containerd.endpoint(),
        cni = containerd.cni_conf_dir.display(),
    );
    let cfg = dir.path().join("kubeadm.yaml");
    std::fs::write(&cfg, config).expect("config");
    let out = kubeadm_ok(
        &root,
        &[
            "init",
            "--config",
            &cfg.display().to_string(),
            &format!("--binaries-dir={}", bin.display()),
            "--ignore-preflight-errors=IsPrivilegedUser,Swap",
        ],
    );
    for line in [
        "[images] Imported localhost/kube-rs-fleet/kube-apiserver:v1.33.0",
        "[kubelet-start] Starting the kubelet",
        "[kubelet-check] The kubelet is healthy after",
        "[control-plane-check] kube-apiserver is healthy after",
        "[upload-config] Storing the configuration used in ConfigMap \"kubeadm-config\"",
        "[mark-control-plane] Marking the node",
        "[bootstrap-token] Using token: abcdef.0123456789abcdef",
        "[addons] Applied essential addon: kube-proxy",
        "Your Kubernetes control-plane has initialized successfully!",
        &format!("kubeadm join 127.0.0.1:{api} --token abcdef.0123456789abcdef \\\n\t--discovery-token-ca-cert-hash sha256:"),
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
    ] {
        assert!(
            images.contains(&format!("localhost/kube-rs-fleet/{c}:v1.33.0")),
            "{images}"
        );
    }
    let kc = root.join("etc/kubernetes/admin.conf");

    // The node registers and turns Ready; the four mirror pods run.
    eventually("node Ready", SLOW, || {
        try_out(
            &kc,
            &[
                "get",
                "node",
                &node,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ],
        )
        .filter(|s| s == "True")
    });
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
        let out = try_out(
            &kc,
            &[
                "get",
                "pods",
                "-n",
                "kube-system",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name}={.status.phase}{\"\\n\"}{end}",
            ],
        )?;
        mirrors
            .iter()
            .all(|m| out.lines().any(|l| l == format!("{m}=Running")))
            .then_some(())
    });
    let labels = ok(
        &kc,
        &["get", "node", &node, "-o", "jsonpath={.metadata.labels}"],
    );
    assert!(
        labels.contains("\"node-role.kubernetes.io/control-plane\":\"\""),
        "{labels}"
    );
    assert!(
        labels.contains("node.kubernetes.io/exclude-from-external-load-balancers"),
        "{labels}"
    );
    let taints = ok(
        &kc,
        &["get", "node", &node, "-o", "jsonpath={.spec.taints}"],
    );
    assert!(
        taints.contains("node-role.kubernetes.io/control-plane") && taints.contains("NoSchedule"),
        "{taints}"
    );
    let secret_type = ok(
        &kc,
        &[
            "get",
            "secret",
            "-n",
            "kube-system",
            "bootstrap-token-abcdef",
            "-o",
            "jsonpath={.type}",
        ],
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
        ("svc", "kube-system", "kube-dns"),
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
    let dns_ip = ok(
        &kc,
        &[
            "get",
            "svc",
            "-n",
            "kube-system",
            "kube-dns",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
    );
    assert_eq!(dns_ip, "10.96.0.10");

    // A workload tolerating the control-plane taint runs on the node.
    let deploy = dir.path().join("deploy.yaml");
    std::fs::write(
        &deploy,
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: sleeper\n  namespace: default\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: sleeper}}\n  template:\n    metadata:\n      labels: {{app: sleeper}}\n    spec:\n      tolerations:\n      - key: node-role.kubernetes.io/control-plane\n        effect: NoSchedule\n      containers:\n      - name: c\n        image: {BUSYBOX_IMAGE}\n        imagePullPolicy: IfNotPresent\n        command: [sleep, '3600']\n"
        ),
    )
    .expect("deploy");
    ok(&kc, &["apply", "-f", &deploy.display().to_string()]);
    eventually("the Deployment's pod Running", SLOW, || {
        try_out(
            &kc,
            &[
                "get",
                "deploy",
                "sleeper",
                "-o",
                "jsonpath={.status.readyReplicas}",
            ],
        )
        .filter(|s| s == "1")
    });

    // The kubelet restarts a killed kube-apiserver container.
    let apiserver = pids_with(&["kube-apiserver", &format!("--secure-port={api}")]);
    assert!(!apiserver.is_empty(), "no kube-apiserver process found");
    for p in &apiserver {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &p.to_string()])
            .status();
    }
    eventually("kube-apiserver restarted by the kubelet", SLOW, || {
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
        .filter(|n| *n >= 1)
    });
    ok(&kc, &["get", "nodes"]);

    // token commands against the cluster.
    let created = kubeadm_ok(&root, &["token", "create", "--print-join-command"]);
    assert!(
        created.starts_with(&format!("kubeadm join 127.0.0.1:{api} --token ")),
        "{created}"
    );
    let list = kubeadm_ok(&root, &["token", "list"]);
    assert!(list.contains("abcdef.0123456789abcdef"), "{list}");
    assert!(list.lines().count() >= 3, "{list}");

    // A second node joins with the printed command (anonymous cluster-info, CA pinning, TLS
    // bootstrap through an approved CSR).
    join_a_worker(&out, api, &pid, dir.path(), &bin, &kc);

    // reset: no kubelet, no containers, no files.
    let supervisor_pid = root.join("run/kubeadm/kubelet-supervisor.pid");
    let kubelet_pid = root.join("run/kubeadm/kubelet.pid");
    assert!(pid_alive(&supervisor_pid) && pid_alive(&kubelet_pid));
    let kubelet_pid_value = std::fs::read_to_string(&kubelet_pid).expect("pid");
    let out = kubeadm_ok(&root, &["reset", "-f"]);
    assert!(
        out.contains("[reset] Stopping the kubelet service"),
        "{out}"
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
    assert!(!root.join("etc/kubernetes/admin.conf").exists());
    assert!(!root.join("etc/kubernetes/kubelet.conf").exists());
    assert!(!root.join("etc/kubernetes/pki/ca.crt").exists());
    assert!(!containerd
        .cni_conf_dir
        .join("10-kubelet-bridge.conflist")
        .exists());
}

fn join_a_worker(out: &str, api: u16, pid: &u32, dir: &Path, bin: &Path, kc: &Path) {
    let pid = *pid;
    let kc = kc.to_path_buf();
    // A worker (its own containerd and root) joins with the printed command; its kubelet gets
    // its client certificate through an approved CSR (TLS bootstrap).
    let hash = out
        .split("--discovery-token-ca-cert-hash ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("hash in the join command")
        .to_string();
    let worker_runtime = Containerd::start();
    let root2 = dir.join("worker");
    std::fs::create_dir_all(&root2).expect("worker root");
    let _reset_worker = Reset {
        root: root2.clone(),
        cri: worker_runtime.endpoint(),
    };
    let worker = format!("worker-{pid}");
    let bridge2 = format!("kadw{}", pid % 100_000);
    worker_runtime
        .bridges
        .lock()
        .expect("bridges")
        .push(bridge2.clone());
    let join_cfg = dir.join("join.yaml");
    std::fs::write(
        &join_cfg,
        format!(
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n  - name: cni-conf-dir\n    value: {}\n  - name: cni-bridge-name\n    value: {bridge2}\n  - name: healthz-port\n    value: \"{}\"\n  - name: port\n    value: \"{}\"\n  - name: address\n    value: 127.0.0.1\n  - name: node-ip\n    value: 127.0.0.1\n",
            worker_runtime.cni_conf_dir.display(),
            free_port(),
            free_port(),
        ),
    )
    .expect("join config");
    let joined = kubeadm_ok(
        &root2,
        &[
            "join",
            &format!("127.0.0.1:{api}"),
            "--token",
            "abcdef.0123456789abcdef",
            "--discovery-token-ca-cert-hash",
            &hash,
            "--node-name",
            &worker,
            &format!("--cri-socket={}", worker_runtime.endpoint()),
            "--config",
            &join_cfg.display().to_string(),
            &format!("--binaries-dir={}", bin.display()),
        ],
    );
    assert!(
        joined.contains("This node has joined the cluster"),
        "{joined}"
    );
    eventually("the worker Ready", SLOW, || {
        try_out(
            &kc,
            &[
                "get",
                "node",
                &worker,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ],
        )
        .filter(|s| s == "True")
    });
    let csrs = ok(
        &kc,
        &["get", "csr", "-o", "jsonpath={range .items[*]}{.spec.signerName} {.spec.username} {.status.conditions[0].type}{\"\\n\"}{end}"],
    );
    assert!(
        csrs.lines().any(|l| l.starts_with(
            "kubernetes.io/kube-apiserver-client-kubelet system:bootstrap:abcdef Approved"
        )),
        "{csrs}"
    );
    let kubelet_conf =
        std::fs::read_to_string(root2.join("etc/kubernetes/kubelet.conf")).expect("kubelet.conf");
    assert!(
        kubelet_conf.contains("kubelet-client-current.pem"),
        "{kubelet_conf}"
    );
    // A wrong CA pin is refused before anything is written.
    let root3 = dir.join("refused");
    std::fs::create_dir_all(&root3).expect("root3");
    let refused = kubeadm(
        &root3,
        &[
            "join",
            &format!("127.0.0.1:{api}"),
            "--token",
            "abcdef.0123456789abcdef",
            "--discovery-token-ca-cert-hash",
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ],
    );
    assert!(
        !refused.ok && refused.stderr.contains("none of the public keys"),
        "{}",
        refused.stderr
    );
    kubeadm_ok(&root2, &["reset", "-f"]);
}
