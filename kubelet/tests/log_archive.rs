//! The archive of deleted pods' logs: after a pod is deleted, its containers' last logs are
//! still served by its node's kubelet (nodes/proxy containerLogs) and by the apiserver's
//! pods/log, which finds the node in the pod's events. Stock `kubectl logs <pod>` reads the pod
//! object first and so reports NotFound; `kubectl get --raw .../pods/<pod>/log` is the
//! operator's path.

#[path = "../../apiserver/tests/common/mod.rs"]
mod common;

#[path = "common/containerd.rs"]
mod containerd;

#[path = "common/kubelet.rs"]
mod kubelet_process;

#[path = "common/proxied.rs"]
mod proxied;

#[path = "common/pki.rs"]
mod pki;

use common::eventually;
use proxied::{Stack, WAIT};

#[test]
fn a_deleted_pods_logs_stay_readable_from_its_nodes_archive() {
    let s = Stack::start("kw-archive", 130);
    let ns = s.ns.clone();
    s.run_pod(
        "chatty",
        "echo first-line; echo second-line; exec sleep 3600",
    );
    eventually("logs written", WAIT, || {
        let out = s.server.kubectl(&["logs", "-n", &ns, "chatty"]);
        if out.stdout == "first-line\nsecond-line\n" {
            Ok(())
        } else {
            Err(out.to_string())
        }
    });
    s.server
        .ok(&["delete", "pod", "chatty", "-n", &ns, "--wait=true"]);

    let log_path = format!("/api/v1/namespaces/{ns}/pods/chatty/log");
    let out = s.server.kubectl(&["get", "--raw", &log_path]);
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout, "first-line\nsecond-line\n");
    let out = s.server.kubectl(&[
        "get",
        "--raw",
        &format!("{log_path}?container=main&tailLines=1"),
    ]);
    assert_eq!(out.stdout, "second-line\n", "{out}");
    let out = s.server.kubectl(&[
        "get",
        "--raw",
        &format!(
            "/api/v1/nodes/{}/proxy/containerLogs/{ns}/chatty/main",
            s.kubelet.node
        ),
    ]);
    assert_eq!(out.stdout, "first-line\nsecond-line\n", "{out}");
    assert!(
        s.kubelet.dir.join("root/pod-log-archive").is_dir(),
        "archive under the root dir"
    );

    // Unknown pods and containers stay NotFound.
    let out = s.server.kubectl(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/{ns}/pods/never-existed/log"),
    ]);
    assert!(!out.success());
    assert!(
        out.stderr.contains("pods \"never-existed\" not found"),
        "{out}"
    );
    let out = s
        .server
        .kubectl(&["get", "--raw", &format!("{log_path}?container=nope")]);
    assert!(!out.success());
    assert!(out.stderr.contains("not found"), "{out}");
    // kubectl logs looks the pod up first.
    let out = s.server.kubectl(&["logs", "-n", &ns, "chatty"]);
    assert!(!out.success());
    assert!(out.stderr.contains("pods \"chatty\" not found"), "{out}");
}
