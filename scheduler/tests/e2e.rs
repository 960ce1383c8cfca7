//! The real kube-scheduler binary against the real kube-apiserver: fake nodes, pods bound
//! honouring requests, nodeSelector and taints; an unfittable pod stays Pending with upstream's
//! message until a node that fits appears.

#[path = "../../apiserver/tests/common/mod.rs"]
mod common;

#[path = "sched/mod.rs"]
mod sched;

use std::fs::File;
use std::process::{Command, Stdio};

use k8s_openapi::api::core::v1::Event;
use kube::api::ListParams;
use sched::*;

/// GET `path` on the scheduler's secure port as the admin (delegated authn/authz).
fn curl(port: u16, path: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "10",
            "-H",
            &format!("Authorization: Bearer {}", common::ADMIN_TOKEN),
            &format!("https://127.0.0.1:{port}{path}"),
        ])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn scheduled_condition(pods: &Api<Pod>, name: &str) -> Option<String> {
    let p = pods.get(name).await.ok()?;
    let c = p
        .status?
        .conditions?
        .into_iter()
        .find(|c| c.type_ == "PodScheduled")?;
    (c.status == "False" && c.reason.as_deref() == Some("Unschedulable")).then_some(c.message?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_fits_nowhere_stays_pending_with_upstreams_message_and_per_node_reasons() {
    let c = cluster("sched-pending").await;
    let nodes: Api<Node> = Api::all(c.admin.clone());
    let pods: Api<Pod> = Api::namespaced(c.admin.clone(), &c.ns);
    fake_node(&nodes, "small", "1", json!({}), json!([])).await;
    fake_node(
        &nodes,
        "tainted",
        "8",
        json!({}),
        json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
    )
    .await;
    pods.create(&PostParams::default(), &pod("too-big", "3", json!({})))
        .await
        .expect("pod");
    pods.create(
        &PostParams::default(),
        &pod("other", "100m", json!({"schedulerName": "someone-else"})),
    )
    .await
    .expect("pod");

    let want = "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint \
                {dedicated: gpu}. preemption: 0/2 nodes are available: 1 No preemption victims \
                found for incoming pod, 1 Preemption is not helpful for scheduling..";
    let message = wait_for("PodScheduled=False", async || {
        scheduled_condition(&pods, "too-big").await
    })
    .await;
    assert_eq!(message, want);

    let events: Api<Event> = Api::namespaced(c.admin.clone(), &c.ns);
    wait_for("FailedScheduling event", async || {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("FailedScheduling")
                    && e.involved_object.name.as_deref() == Some("too-big")
                    && e.message.as_deref() == Some(want)
            })
            .then_some(())
    })
    .await;

    let body: serde_json::Value =
        serde_json::from_str(&curl(c.port, &format!("/debug/pending/{}/too-big", c.ns)))
            .expect("debug json");
    assert_eq!(body["message"], want, "{body}");
    assert_eq!(
        body["nodes"]["small"]["NodeResourcesFit"], "Insufficient cpu",
        "{body}"
    );
    assert_eq!(
        body["nodes"]["tainted"]["TaintToleration"],
        "node(s) had untolerated taint {dedicated: gpu}",
        "{body}"
    );

    // The pending-pods gauge is refreshed every 200 ms, and a node event arriving after the
    // first attempt can put the pod through backoff once more: poll for it.
    let metrics = wait_for("the pod counted as unschedulable", async || {
        let m = curl(c.port, "/metrics");
        m.contains("scheduler_pending_pods{queue=\"unschedulable\"} 1")
            .then_some(m)
    })
    .await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("scheduler_schedule_attempts_total")
                && l.contains("result=\"unschedulable\"")),
        "{metrics}"
    );
    assert!(
        metrics.contains("scheduler_preemption_attempts_total"),
        "{metrics}"
    );
    assert_eq!(curl(c.port, "/healthz"), "ok");
    // Without credentials only the health paths answer; /metrics is upstream's 403 Status.
    let anonymous = Command::new("curl")
        .args(["-sk", "--max-time", "10", "-w", "\n%{http_code}"])
        .arg(format!("https://127.0.0.1:{}/metrics", c.port))
        .output()
        .expect("curl");
    let anonymous = String::from_utf8_lossy(&anonymous.stdout).into_owned();
    assert!(anonymous.ends_with("\n403"), "{anonymous}");
    assert!(
        anonymous.contains(r#"cannot get path \"/metrics\""#),
        "{anonymous}"
    );
    assert_eq!(curl(c.port, "/readyz"), "ok");

    // Another scheduler's pod is never touched.
    let other = pods.get("other").await.expect("other");
    assert!(other
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .iter()
        .all(|c| c.type_ != "PodScheduled"));
    drop(c.server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_bound_honouring_requests_selectors_and_taints_and_pending_pods_explain_why() {
    let server = ApiServer::start();
    let ns = server.namespace("sched-e2e");
    let admin = client(&server.kubeconfig(User::Admin)).await;
    let nodes: Api<Node> = Api::all(admin.clone());
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);

    fake_node(&nodes, "small", "1", json!({"disk": "hdd"}), json!([])).await;
    fake_node(&nodes, "big", "4", json!({"disk": "ssd"}), json!([])).await;
    fake_node(
        &nodes,
        "tainted",
        "8",
        json!({"disk": "ssd"}),
        json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
    )
    .await;

    let kubeconfig = server.kubeconfig_for_cert("system:kube-scheduler", &[]);
    let port = free_port();
    let log = server.dir().join("kube-scheduler.log");
    let child = Command::new(scheduler_binary())
        .args([
            format!("--kubeconfig={}", kubeconfig.display()),
            "--bind-address=127.0.0.1".to_string(),
            format!("--secure-port={port}"),
            "--leader-elect=false".to_string(),
            format!("--cert-dir={}", server.dir().join("sched-certs").display()),
        ])
        .stdin(Stdio::null())
        .stdout(File::create(&log).expect("log"))
        .stderr(File::create(server.dir().join("kube-scheduler.err")).expect("log"))
        .env("RUST_LOG", "info,scheduler=debug")
        .spawn()
        .expect("spawn kube-scheduler");
    let _sched = SchedulerProcess {
        child,
        log: server.dir().join("kube-scheduler.err"),
    };

    // Needs 2 cpu: only "big" fits (small too small, tainted untolerated).
    pods.create(&PostParams::default(), &pod("needs-2cpu", "2", json!({})))
        .await
        .expect("pod");
    // nodeSelector disk=hdd: only "small".
    pods.create(
        &PostParams::default(),
        &pod(
            "wants-hdd",
            "100m",
            json!({"nodeSelector": {"disk": "hdd"}}),
        ),
    )
    .await
    .expect("pod");
    // Tolerates the taint and needs 6 cpu: only "tainted".
    pods.create(&PostParams::default(), &pod("gpu", "6", json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}))).await.expect("pod");
    // Another scheduler's pod is left alone.
    pods.create(
        &PostParams::default(),
        &pod("other", "100m", json!({"schedulerName": "someone-else"})),
    )
    .await
    .expect("pod");

    for (name, want) in [
        ("needs-2cpu", "big"),
        ("wants-hdd", "small"),
        ("gpu", "tainted"),
    ] {
        let got = wait_for(&format!("{name} bound"), async || {
            node_of(&pods, name).await
        })
        .await;
        assert_eq!(got, want, "{name}");
    }

    // 3 cpu: big has 2 left (assumed/bound needs-2cpu counts), small 0.9, tainted untolerated.
    pods.create(&PostParams::default(), &pod("too-big", "3", json!({})))
        .await
        .expect("pod");
    let want = "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, \
                2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not \
                helpful for scheduling, 2 No preemption victims found for incoming pod..";
    let message = wait_for("PodScheduled=False", async || {
        let p = pods.get("too-big").await.ok()?;
        let c = p
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "PodScheduled")?;
        (c.status == "False" && c.reason.as_deref() == Some("Unschedulable")).then_some(c.message?)
    })
    .await;
    assert_eq!(message, want);
    let events: Api<Event> = Api::namespaced(admin.clone(), &ns);
    wait_for("FailedScheduling event", async || {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("FailedScheduling")
                    && e.involved_object.name.as_deref() == Some("too-big")
            })
            .then_some(())
    })
    .await;

    // No --client-ca-file was given: the client CA comes from the apiserver's
    // extension-apiserver-authentication ConfigMap, so the admin's certificate is accepted.
    let out = Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .arg("--cert")
        .arg(&server.pki.admin_cert)
        .arg("--key")
        .arg(&server.pki.admin_key)
        .arg(format!("https://127.0.0.1:{port}/metrics"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");

    // The debug endpoint lists node -> plugin -> reason.
    let out = curl(port, &format!("/debug/pending/{ns}/too-big"));
    let body: serde_json::Value = serde_json::from_str(&out).expect("debug json");
    assert_eq!(
        body["nodes"]["small"]["NodeResourcesFit"], "Insufficient cpu",
        "{body}"
    );
    assert_eq!(
        body["nodes"]["tainted"]["TaintToleration"],
        "node(s) had untolerated taint {dedicated: gpu}",
        "{body}"
    );
    let metrics = curl(port, "/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("scheduler_schedule_attempts_total")
                && l.contains("result=\"scheduled\"")
                && l.ends_with(" 3")),
        "{metrics}"
    );
    assert!(
        metrics.contains("scheduler_pending_pods{queue=\"unschedulable\"}"),
        "{metrics}"
    );

    // A node that fits arrives: the pod is scheduled there.
    fake_node(&nodes, "huge", "16", json!({}), json!([])).await;
    let got = wait_for("too-big bound", async || node_of(&pods, "too-big").await).await;
    assert_eq!(got, "huge");

    assert_eq!(
        node_of(&pods, "other").await,
        None,
        "another scheduler's pod stays unbound"
    );
}
