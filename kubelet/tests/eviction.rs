//! The eviction manager and image garbage collection on a real kubelet and containerd:
//! a memory threshold no machine meets (`memory.available<1Pi`) puts the node under
//! MemoryPressure and evicts the BestEffort pod before the one within its requests;
//! `pid.available<100%` puts it under PIDPressure and evicts the pod with more processes first;
//! image GC with thresholds that always collect removes an unused imported image but keeps the images
//! of running containers and the sandbox image.

#[path = "../../apiserver/tests/common/mod.rs"]
mod common;

#[path = "common/containerd.rs"]
mod containerd;

#[path = "common/kubelet.rs"]
mod kubelet_process;

#[path = "common/daemon.rs"]
mod daemon;

use std::fs::File;
use std::time::Duration;

use common::{eventually, ApiServer};
use component_base::oci::{Image, ImageConfig, Layer};
use containerd::{Containerd, BUSYBOX_IMAGE};
use daemon::Daemon;
use kubelet_process::Kubelet;

const WAIT: Duration = Duration::from_secs(90);

struct Stack {
    kubelet: Kubelet,
    containerd: Containerd,
    server: ApiServer,
    ns: String,
}

impl Stack {
    fn start(name: &str, net: u32, flags: &[&str], before: impl FnOnce(&Containerd)) -> Self {
        let server = ApiServer::start();
        let containerd = Containerd::start();
        before(&containerd);
        let kubelet = Kubelet::start(
            &containerd,
            name,
            (net, "kbev"),
            |node| server.kubeconfig_for_cert(&format!("system:node:{node}"), &["system:nodes"]),
            &flags.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        );
        let ns = server.namespace(name);
        let _ = server.kubectl(&["create", "serviceaccount", "default", "-n", &ns]);
        Stack {
            kubelet,
            containerd,
            server,
            ns,
        }
    }

    fn node_condition(&self, type_: &str) -> serde_json::Value {
        let node = self
            .server
            .json(&["get", "node", &self.kubelet.node, "-o", "json"]);
        node["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == type_)
            .cloned()
            .unwrap_or_default()
    }

    fn run(&self, name: &str, resources: &str) {
        self.run_command(
            name,
            &format!(
                "    command: [\"sh\", \"-c\", \"while true; do sleep 1; done\"]\n{resources}"
            ),
        );
    }

    /// A busybox pod whose container is given by `rest` (command, resources).
    fn run_command(&self, name: &str, rest: &str) {
        let yaml = format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  automountServiceAccountToken: false
  containers:
  - name: main
    image: {BUSYBOX_IMAGE}
    imagePullPolicy: IfNotPresent
{rest}"#,
            node = self.kubelet.node,
        );
        self.server
            .ok_stdin(&["apply", "-n", &self.ns, "-f", "-"], &yaml);
    }

    fn pod(&self, name: &str) -> serde_json::Value {
        self.server.json(&["get", "pod", name, "-n", &self.ns])
    }

    /// Waits until the node reports condition `type_` True, and returns it.
    fn wait_condition_true(&self, type_: &str) -> serde_json::Value {
        eventually(&format!("{type_} True"), WAIT, || {
            let c = self.node_condition(type_);
            if c["status"] == "True" {
                Ok(c)
            } else {
                Err(c.to_string())
            }
        })
    }

    /// Waits until pod `name` is Failed (evicted), and returns it.
    fn wait_failed(&self, name: &str) -> serde_json::Value {
        eventually(&format!("{name} evicted"), WAIT, || {
            let p = self.pod(name);
            if p["status"]["phase"] == "Failed" {
                Ok(p)
            } else {
                Err(p["status"].to_string())
            }
        })
    }

    fn images(&self) -> String {
        String::from_utf8_lossy(&self.containerd.ctr(&["images", "ls", "-q"]).stdout).into_owned()
    }
}

#[test]
fn memory_pressure_sets_the_condition_and_evicts_the_best_effort_pod_first() {
    let s = Stack::start(
        "kw-evict",
        30,
        &["--eviction-hard=memory.available<1Pi"],
        |_| {},
    );
    s.run(
        "within",
        "    resources:\n      requests: {memory: 1Gi, cpu: 10m}\n",
    );
    s.run("besteffort", "");
    let condition = s.wait_condition_true("MemoryPressure");
    assert_eq!(condition["reason"], "KubeletHasInsufficientMemory");
    assert_eq!(
        condition["message"],
        "kubelet has insufficient memory available"
    );
    // The node lifecycle controller turns the condition into its taint.
    let ca = format!("--root-ca-file={}", s.server.pki.ca_cert.display());
    let _kcm = Daemon::start(
        &s.server,
        "kube-controller-manager",
        "KUBE_CONTROLLER_MANAGER_BIN",
        "system:kube-controller-manager",
        &[&ca, "--use-service-account-credentials=true"],
    );
    eventually("memory-pressure taint", WAIT, || {
        let node = s
            .server
            .json(&["get", "node", &s.kubelet.node, "-o", "json"]);
        let tainted = node["spec"]["taints"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| {
                t["key"] == "node.kubernetes.io/memory-pressure" && t["effect"] == "NoSchedule"
            });
        if tainted {
            Ok(())
        } else {
            Err(node["spec"].to_string())
        }
    });

    let evicted = s.wait_failed("besteffort");
    // The pod within its requests is still there when the BestEffort one goes.
    assert_ne!(s.pod("within")["status"]["phase"], "Failed");
    let status = &evicted["status"];
    assert_eq!(status["reason"], "Evicted", "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "The node was low on resource: memory. Threshold quantity: 1Pi, available: "
        ),
        "{message}"
    );
    let disruption = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "DisruptionTarget")
        .cloned()
        .unwrap_or_default();
    assert_eq!(disruption["reason"], "TerminationByKubelet", "{status}");
    assert!(
        status["containerStatuses"][0]["state"]["terminated"].is_object(),
        "{status}"
    );
    eventually("Evicted event", WAIT, || {
        let out = s.server.kubectl(&[
            "get",
            "events",
            "-n",
            &s.ns,
            "--field-selector=reason=Evicted,involvedObject.name=besteffort",
            "-o",
            "jsonpath={.items[*].type}",
        ]);
        if out.stdout.contains("Warning") {
            Ok(())
        } else {
            Err(out.to_string())
        }
    });
    // The evicted pod stays Failed: its containers are not restarted.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(s.pod("besteffort")["status"]["phase"], "Failed");
}

#[test]
fn pid_pressure_sets_the_condition_and_evicts_the_pod_with_most_processes_first() {
    // No thresholds (the test config's `evictionHard: {}`) until both pods run, so that neither
    // is ranked before its processes exist.
    let mut s = Stack::start("kw-pids", 50, &[], |_| {});
    let sleepers = |n: usize| {
        format!(
            "    command: [\"sh\", \"-c\", \"for i in $(seq {n}); do sleep 3600 & done; \
             while true; do sleep 1; done\"]\n"
        )
    };
    s.run_command("busy", &sleepers(8));
    s.run_command("quiet", &sleepers(1));
    for name in ["busy", "quiet"] {
        eventually("pod running", WAIT, || {
            let p = s.pod(name);
            if p["status"]["containerStatuses"][0]["state"]["running"].is_object() {
                Ok(())
            } else {
                Err(p["status"].to_string())
            }
        });
    }
    // A threshold every node meets: fewer PIDs available than the node's whole capacity.
    s.kubelet.kill9();
    s.kubelet
        .args
        .push("--eviction-hard=pid.available<100%".into());
    s.kubelet.spawn();
    let condition = s.wait_condition_true("PIDPressure");
    assert_eq!(condition["reason"], "KubeletHasInsufficientPID");
    assert_eq!(
        condition["message"],
        "kubelet has insufficient PID available"
    );
    assert_eq!(s.node_condition("MemoryPressure")["status"], "False");
    let evicted = s.wait_failed("busy");
    // Same priority: the pod with more processes goes first.
    assert_ne!(s.pod("quiet")["status"]["phase"], "Failed");
    let status = &evicted["status"];
    assert_eq!(status["reason"], "Evicted", "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("The node was low on resource: pids. Threshold quantity: "),
        "{message}"
    );
    assert!(!message.contains("Container"), "{message}");
}

/// An image nobody uses, imported under `docker.io/kube-test/unused:1.0`.
fn import_unused_image(containerd: &Containerd) {
    let mut layer = Layer::new();
    layer
        .file("hello.txt", 0o644, b"unused\n".to_vec())
        .expect("layer file");
    let image = Image {
        name: "docker.io/kube-test/unused:1.0".into(),
        config: ImageConfig::default(),
        layers: vec![layer],
    };
    let path = containerd.dir().join("unused.tar");
    image
        .write_archive(std::io::BufWriter::new(
            File::create(&path).expect("archive"),
        ))
        .expect("write archive");
    let out = containerd.ctr(&["images", "import", &path.to_string_lossy()]);
    assert!(
        out.status.success(),
        "ctr images import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn image_gc_removes_an_unused_image_but_keeps_images_in_use() {
    let s = Stack::start(
        "kw-imagegc",
        40,
        &[
            "--eviction-hard=",
            "--image-gc-high-threshold=1",
            "--image-gc-low-threshold=0",
            "--image-minimum-gc-age=20s",
            "--image-gc-period=2s",
        ],
        import_unused_image,
    );
    assert!(
        s.images().contains("kube-test/unused:1.0"),
        "{}",
        s.images()
    );
    s.run("user", "");
    eventually("pod running", WAIT, || {
        let p = s.pod("user");
        if p["status"]["containerStatuses"][0]["state"]["running"].is_object() {
            Ok(())
        } else {
            Err(p["status"].to_string())
        }
    });
    let images = eventually("the unused image is collected", WAIT, || {
        let images = s.images();
        if images.contains("kube-test/unused:1.0") {
            Err(images)
        } else {
            Ok(images)
        }
    });
    assert!(images.contains("kube-test/busybox:1.0"), "in use: {images}");
    assert!(
        images.contains("kube-test/pause:1.0"),
        "sandbox image: {images}"
    );
    // Later collections keep them too.
    std::thread::sleep(Duration::from_secs(5));
    let images = s.images();
    assert!(
        images.contains("kube-test/busybox:1.0") && images.contains("kube-test/pause:1.0"),
        "{images}"
    );
    assert_eq!(s.pod("user")["status"]["phase"], "Running");
}
