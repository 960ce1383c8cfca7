//! Sidecars (init containers with `restartPolicy: Always`) on a real kubelet and containerd:
//! start order gated by the sidecar's startupProbe, initContainerStatuses with started/ready,
//! restarts of an exited sidecar while the main container keeps running, a Job-style pod that
//! completes although its sidecar never exits, and stop order on deletion (main first).

#[path = "../../apiserver/tests/common/mod.rs"]
mod common;

#[path = "common/containerd.rs"]
mod containerd;

#[path = "common/kubelet.rs"]
mod kubelet_process;

use std::fs;
use std::time::Duration;

use common::{eventually, ApiServer};
use containerd::{Containerd, BUSYBOX_IMAGE};
use kubelet_process::Kubelet;

const WAIT: Duration = Duration::from_secs(90);

struct Stack {
    kubelet: Kubelet,
    _containerd: Containerd,
    server: ApiServer,
    ns: String,
}

impl Stack {
    fn start(name: &str) -> Self {
        let server = ApiServer::start();
        let containerd = Containerd::start();
        let kubelet = Kubelet::start(
            &containerd,
            name,
            (90, "kbsc"),
            |node| server.kubeconfig_for_cert(&format!("system:node:{node}"), &["system:nodes"]),
            &[],
        );
        let ns = server.namespace(name);
        let _ = server.kubectl(&["create", "serviceaccount", "default", "-n", &ns]);
        eventually("node Ready", WAIT, || {
            let node = server.kubectl(&["get", "node", &kubelet.node, "-o", "json"]);
            if !node.success() {
                return Err(node.to_string());
            }
            let ready = node.json()["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            if ready {
                Ok(())
            } else {
                Err("not ready".into())
            }
        });
        Stack {
            kubelet,
            _containerd: containerd,
            server,
            ns,
        }
    }

    fn pod(&self, name: &str) -> serde_json::Value {
        self.server.json(&["get", "pod", name, "-n", &self.ns])
    }

    fn wait_pod(
        &self,
        name: &str,
        what: &str,
        ok: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        eventually(&format!("pod {name}: {what}"), WAIT, || {
            let pod = self.pod(name);
            if ok(&pod) {
                Ok(pod)
            } else {
                Err(serde_json::to_string_pretty(&pod["status"]).unwrap_or_default())
            }
        })
    }
}

fn condition(pod: &serde_json::Value, type_: &str) -> String {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

fn init_status<'a>(pod: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    pod["status"]["initContainerStatuses"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .unwrap_or(&serde_json::Value::Null)
}

#[test]
fn sidecars_start_in_order_restart_on_exit_let_jobs_complete_and_stop_last() {
    let s = Stack::start("kw-sidecar");
    let host = s.kubelet.dir.join("sidecar-shared");
    fs::create_dir_all(&host).expect("host dir");
    let host = host.display().to_string();
    // proxy: slow to come up (its startupProbe gates `after`), exits once with 1 some seconds
    // after its first start, and logs its SIGTERM; app logs its own SIGTERM.
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 10
  automountServiceAccountToken: false
  volumes:
  - name: shared
    hostPath: {{path: {host}}}
  initContainers:
  - name: setup
    image: {BUSYBOX_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo setup >> /shared/order"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
  - name: proxy
    image: {BUSYBOX_IMAGE}
    imagePullPolicy: IfNotPresent
    restartPolicy: Always
    command: ["sh", "-c", "trap 'echo proxy-term >> /shared/terms; exit 0' TERM; if [ ! -f /shared/crashed ]; then sleep 4; echo proxy >> /shared/order; touch /shared/up; sleep 6; touch /shared/crashed; exit 1; fi; while true; do sleep 0.2; done"]
    startupProbe:
      exec: {{command: ["test", "-f", "/shared/up"]}}
      periodSeconds: 1
      failureThreshold: 60
    volumeMounts: [{{name: shared, mountPath: /shared}}]
  - name: after
    image: {BUSYBOX_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo after >> /shared/order"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
  containers:
  - name: app
    image: {BUSYBOX_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'echo app-term >> /shared/terms; exit 0' TERM; echo app >> /shared/order; while true; do sleep 0.2; done"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
"#,
        node = s.kubelet.node,
    );
    s.server.ok_stdin(&["apply", "-n", &s.ns, "-f", "-"], &yaml);

    // While the sidecar runs but has not passed its startupProbe, `after` waits.
    let pod = s.wait_pod("web", "proxy running, not started", |p| {
        init_status(p, "proxy")["state"]["running"].is_object()
            && init_status(p, "proxy")["started"] == false
    });
    assert!(
        init_status(&pod, "after")["state"]["waiting"].is_object(),
        "after waits for the sidecar: {}",
        pod["status"]
    );
    assert_eq!(condition(&pod, "Initialized"), "False");

    let pod = s.wait_pod("web", "Running and Ready", |p| {
        p["status"]["phase"] == "Running" && condition(p, "Ready") == "True"
    });
    let proxy = init_status(&pod, "proxy");
    assert_eq!(proxy["started"], true, "{proxy}");
    assert_eq!(proxy["ready"], true, "{proxy}");
    assert!(proxy["state"]["running"].is_object(), "{proxy}");
    assert_eq!(
        init_status(&pod, "after")["state"]["terminated"]["reason"],
        "Completed"
    );
    assert_eq!(condition(&pod, "Initialized"), "True");
    let order = fs::read_to_string(format!("{host}/order")).expect("order file");
    assert_eq!(order, "setup\nproxy\nafter\napp\n");

    // The sidecar exits 1 once: it is restarted, the main container is left alone.
    let pod = s.wait_pod("web", "proxy restarted and running", |p| {
        let proxy = init_status(p, "proxy");
        proxy["restartCount"].as_i64().unwrap_or(0) >= 1 && proxy["state"]["running"].is_object()
    });
    let proxy = init_status(&pod, "proxy");
    assert_eq!(proxy["lastState"]["terminated"]["exitCode"], 1, "{proxy}");
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0);
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(
        fs::read_to_string(format!("{host}/order")).expect("order file"),
        "setup\nproxy\nafter\napp\n",
        "init containers did not run again"
    );

    // A Job-style pod completes although its sidecar would run forever.
    let job = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: job
spec:
  nodeName: {node}
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  automountServiceAccountToken: false
  initContainers:
  - name: logger
    image: {BUSYBOX_IMAGE}
    imagePullPolicy: IfNotPresent
    restartPolicy: Always
    command: ["sh", "-c", "while true; do sleep 0.2; done"]
  containers:
  - name: work
    image: {BUSYBOX_IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "sleep 1; echo done"]
"#,
        node = s.kubelet.node,
    );
    s.server.ok_stdin(&["apply", "-n", &s.ns, "-f", "-"], &job);
    let pod = s.wait_pod("job", "Succeeded", |p| p["status"]["phase"] == "Succeeded");
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        0
    );

    // Deletion stops the main container first, then the sidecar.
    s.server
        .ok(&["delete", "pod", "web", "-n", &s.ns, "--wait=true"]);
    let terms = fs::read_to_string(format!("{host}/terms")).unwrap_or_default();
    assert_eq!(terms, "app-term\nproxy-term\n");
}
