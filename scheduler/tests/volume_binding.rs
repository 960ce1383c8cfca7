//! VolumeBinding's Reserve and PreBind with the real kube-scheduler, kube-apiserver and
//! kube-controller-manager's persistentvolume-binder: a pod with a WaitForFirstConsumer claim
//! goes to a node with a matching local volume, the scheduler writes the volume's claimRef, the
//! binder binds the claim, and only then is the pod bound. Two pods never get one volume.

#[path = "../../apiserver/tests/common/mod.rs"]
mod common;

#[path = "../../controller-manager/tests/kcm/mod.rs"]
mod kcm;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;

use kcm::{events, eventually, free_port, ApiServer, FakeNode, FakeNodes, Kcm};
use serde_json::Value;

fn scheduler_binary() -> PathBuf {
    std::env::var_os("KUBE_SCHEDULER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kube-scheduler")))
}

/// kube-scheduler as system:kube-scheduler; killed on drop (its log printed on failure).
struct Scheduler {
    child: Child,
    log: PathBuf,
}

impl Scheduler {
    fn start(server: &ApiServer, config: Option<&str>) -> Self {
        let kubeconfig = server.kubeconfig_for_cert("system:kube-scheduler", &[]);
        let port = free_port();
        let log = server.dir().join(format!("scheduler-{port}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut args = vec![
            format!("--kubeconfig={}", kubeconfig.display()),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--secure-port={port}"),
            "--leader-elect=false".to_owned(),
            format!(
                "--cert-dir={}",
                server.dir().join(format!("sched-certs-{port}")).display()
            ),
        ];
        if let Some(config) = config {
            let path = server.dir().join(format!("scheduler-config-{port}.yaml"));
            std::fs::write(&path, config).expect("scheduler config");
            args.push(format!("--config={}", path.display()));
        }
        let child = Command::new(scheduler_binary())
            .args(&args)
            .env("RUST_LOG", "info,kube=warn,scheduler=debug")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone"))
            .stderr(file)
            .spawn()
            .expect("spawn kube-scheduler");
        Scheduler { child, log }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(60);
            eprintln!("---- kube-scheduler log\n{}", lines[start..].join("\n"));
        }
    }
}

const CLASS: &str = "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: local}\n\
                     provisioner: kubernetes.io/no-provisioner\n\
                     volumeBindingMode: WaitForFirstConsumer\n";

fn local_volume(name: &str, node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: {name}}}\nspec:\n  \
         capacity: {{storage: 1Gi}}\n  accessModes: [ReadWriteOnce]\n  storageClassName: local\n  \
         local: {{path: /mnt/{name}}}\n  nodeAffinity: {{required: {{nodeSelectorTerms: \
         [{{matchExpressions: [{{key: kubernetes.io/hostname, operator: In, values: [{node}]}}]}}]}}}}\n"
    )
}

fn claim_and_pod(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  accessModes: [ReadWriteOnce]\n  storageClassName: local\n  \
         resources: {{requests: {{storage: 1Gi}}}}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  \
         containers: [{{name: c, image: registry.k8s.io/pause:3.10}}]\n  \
         volumes: [{{name: data, persistentVolumeClaim: {{claimName: {name}}}}}]\n"
    )
}

fn get(server: &ApiServer, ns: &str, kind: &str, name: &str) -> Value {
    let out = server.kubectl(&["get", kind, name, "-n", ns, "-o", "json"]);
    if out.success() {
        out.json()
    } else {
        Value::Null
    }
}

fn node_of(server: &ApiServer, ns: &str, pod: &str) -> Option<String> {
    get(server, ns, "pod", pod)["spec"]["nodeName"]
        .as_str()
        .map(str::to_owned)
}

/// Waits until `pod` is bound and its claim is Bound to the volume on the pod's node (whose
/// claimRef points back at the claim); returns (node, volume).
fn wait_bound_on_its_node(server: &ApiServer, ns: &str, pod: &str) -> (String, String) {
    let mut result = None;
    eventually(&format!("{pod} scheduled with its claim bound"), || {
        let Some(node) = node_of(server, ns, pod) else {
            return false;
        };
        let pvc = get(server, ns, "pvc", pod);
        if pvc["status"]["phase"] != "Bound" {
            return false;
        }
        let volume = pvc["spec"]["volumeName"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        result = Some((node, volume, pvc));
        true
    });
    let (node, volume, pvc) = result.expect("set when done");
    assert_eq!(
        volume,
        format!("pv-{node}"),
        "{pod}'s claim got the volume on its node"
    );
    let pv = get(server, ns, "pv", &volume);
    assert_eq!(pv["spec"]["claimRef"]["name"], pod, "{pv}");
    assert_eq!(
        pv["spec"]["claimRef"]["uid"], pvc["metadata"]["uid"],
        "{pv}"
    );
    assert_eq!(
        pvc["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"],
        "yes"
    );
    (node, volume)
}

#[test]
fn wait_for_first_consumer_claims_bind_to_a_volume_on_the_chosen_node() {
    let server = ApiServer::start();
    let ns = server.namespace("vb");
    let _nodes = FakeNodes::start_nodes(
        &server,
        &[FakeNode::new("a"), FakeNode::new("b"), FakeNode::new("c")],
    );
    // node-lifecycle lifts the not-ready taint the apiserver puts on new nodes.
    let _kcm = Kcm::start(
        &server,
        &["--controllers=persistentvolume-binder,nodelifecycle"],
    );
    let _sched = Scheduler::start(&server, None);
    server.ok_stdin(&["apply", "-f", "-"], CLASS);
    server.ok_stdin(&["apply", "-f", "-"], &local_volume("pv-a", "a"));
    server.ok_stdin(&["apply", "-f", "-"], &local_volume("pv-b", "b"));

    // One pod: it goes where a volume is (never c) and is bound only once its claim is.
    server.ok_stdin(&["apply", "-f", "-"], &claim_and_pod(&ns, "first"));
    let (node, volume) = wait_bound_on_its_node(&server, &ns, "first");
    assert!(node == "a" || node == "b", "{node}");
    let pv = get(&server, &ns, "pv", &volume);
    assert_eq!(pv["status"]["phase"], "Bound", "{pv}");
    assert_eq!(
        pv["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"], "yes",
        "the scheduler chose it: {pv}"
    );
    let scheduled = events(&server, &ns, "Pod", "Scheduled", "default-scheduler");
    assert!(
        scheduled
            .iter()
            .any(|e| e["message"] == format!("Successfully assigned {ns}/first to {node}")),
        "{scheduled:?}"
    );

    // Two more at once: the second takes the remaining volume, the third finds none.
    server.ok_stdin(&["apply", "-f", "-"], &claim_and_pod(&ns, "second"));
    server.ok_stdin(&["apply", "-f", "-"], &claim_and_pod(&ns, "third"));
    let mut placed = Vec::new();
    let mut waiting = None;
    eventually("one of second/third bound, the other unschedulable", || {
        placed = ["second", "third"]
            .into_iter()
            .filter(|p| node_of(&server, &ns, p).is_some())
            .collect::<Vec<_>>();
        waiting = ["second", "third"].into_iter().find(|p| {
            get(&server, &ns, "pod", p)["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "PodScheduled" && c["reason"] == "Unschedulable")
        });
        placed.len() == 1 && waiting.is_some()
    });
    let (other_node, other_volume) = wait_bound_on_its_node(&server, &ns, placed[0]);
    assert_ne!(other_node, node, "each volume serves one pod");
    assert_ne!(other_volume, volume);
    let waiting = waiting.expect("set when done");
    let pod = get(&server, &ns, "pod", waiting);
    let message = pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "PodScheduled")
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.starts_with(
            "0/3 nodes are available: 3 node(s) didn't find available persistent volumes to bind."
        ),
        "{message}"
    );
    assert_eq!(
        get(&server, &ns, "pvc", waiting)["status"]["phase"],
        "Pending"
    );

    // A new volume on c lets it in.
    server.ok_stdin(&["apply", "-f", "-"], &local_volume("pv-c", "c"));
    let (last_node, _) = wait_bound_on_its_node(&server, &ns, waiting);
    assert_eq!(last_node, "c");
}

#[test]
fn pods_go_back_to_the_queue_when_their_volumes_are_not_bound_in_time() {
    let server = ApiServer::start();
    let ns = server.namespace("vb-timeout");
    let _nodes = FakeNodes::start_nodes(&server, &[FakeNode::new("a")]);
    // No persistentvolume-binder runs, so nothing finishes the binding the scheduler starts.
    let _kcm = Kcm::start(&server, &["--controllers=nodelifecycle"]);
    let _sched = Scheduler::start(
        &server,
        Some(
            "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n\
             leaderElection: {leaderElect: false}\nprofiles:\n- pluginConfig:\n  \
             - name: VolumeBinding\n    args: {bindTimeoutSeconds: 2}\n",
        ),
    );
    server.ok_stdin(&["apply", "-f", "-"], CLASS);
    server.ok_stdin(&["apply", "-f", "-"], &local_volume("pv-a", "a"));
    // What the binder would have done with a new volume.
    server.ok(&[
        "patch",
        "pv",
        "pv-a",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Available"}}"#,
    ]);
    server.ok_stdin(&["apply", "-f", "-"], &claim_and_pod(&ns, "stuck"));
    eventually("the scheduler pre-binds pv-a", || {
        get(&server, &ns, "pv", "pv-a")["spec"]["claimRef"]["name"] == "stuck"
    });
    eventually("FailedScheduling after the bind timeout", || {
        events(&server, &ns, "Pod", "FailedScheduling", "default-scheduler")
            .iter()
            .any(|e| {
                e["message"]
                    == "running PreBind plugin \"VolumeBinding\": binding volumes: context \
                        deadline exceeded"
            })
    });
    assert_eq!(
        node_of(&server, &ns, "stuck"),
        None,
        "not bound without its volume"
    );

    // The binder (here: by hand, as the controller would) finishes; the retry binds the pod.
    server.ok(&[
        "patch",
        "pvc",
        "stuck",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"metadata":{"annotations":{"pv.kubernetes.io/bind-completed":"yes"}},"spec":{"volumeName":"pv-a"}}"#,
    ]);
    eventually("stuck bound", || {
        node_of(&server, &ns, "stuck").as_deref() == Some("a")
    });
}
