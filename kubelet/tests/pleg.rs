//! The PLEG against the in-memory CRI runtime: one relist per period, only the pods that
//! changed are inspected again, and only their workers are woken.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use component_base::Shutdown;
use kubelet::cri::api;
use kubelet::cri::fake::FakeRuntime;
use kubelet::cri::Runtime;
use kubelet::pleg::{Pleg, Subscription};
use kubelet::pod::spec::POD_UID_LABEL;

const WAIT: Duration = Duration::from_secs(10);

fn labels(uid: &str) -> HashMap<String, String> {
    [(POD_UID_LABEL.to_string(), uid.to_string())].into()
}

async fn woken(sub: &Subscription, what: &str) {
    tokio::time::timeout(WAIT, sub.changed())
        .await
        .unwrap_or_else(|_| panic!("no wake-up within {WAIT:?}: {what}"));
}

async fn relists_after(pleg: &Pleg, n: u64) {
    let target = pleg.relists() + n;
    let deadline = Instant::now() + WAIT;
    while pleg.relists() < target {
        assert!(Instant::now() < deadline, "{n} relists within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relist_inspects_only_changed_pods_and_wakes_only_their_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("cri.sock");
    let fake = FakeRuntime::new(Ipv4Addr::new(10, 200, 0, 0));
    let status_calls = fake.status_calls();
    let shutdown = Shutdown::new();
    let stop = shutdown.clone();
    fake.serve(&socket, async move { stop.wait().await })
        .await
        .expect("serve the fake runtime");
    let runtime = Runtime::new(&format!("unix://{}", socket.display())).expect("runtime");
    let pleg = Arc::new(Pleg::new(runtime.clone()));
    let a = pleg.subscribe("uid-a");
    let b = pleg.subscribe("uid-b");
    assert!(
        pleg.observe("uid-a").is_none(),
        "nothing before the first relist"
    );
    tokio::spawn(pleg.clone().run(shutdown.clone()));
    relists_after(&pleg, 1).await;
    let empty = pleg.observe("uid-a").expect("relisted");
    assert!(empty.record.sandboxes.is_empty() && empty.record.containers.is_empty());

    let sandbox_config = api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: "a".into(),
            uid: "uid-a".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        labels: labels("uid-a"),
        ..Default::default()
    };
    let sandbox = runtime
        .run_pod_sandbox(sandbox_config.clone())
        .await
        .expect("sandbox");
    let container = runtime
        .create_container(
            &sandbox,
            api::ContainerConfig {
                metadata: Some(api::ContainerMetadata {
                    name: "main".into(),
                    attempt: 0,
                }),
                image: Some(api::ImageSpec {
                    image: "registry.k8s.io/pause:3.10".into(),
                    ..Default::default()
                }),
                labels: labels("uid-a"),
                ..Default::default()
            },
            sandbox_config,
        )
        .await
        .expect("container");
    runtime.start_container(&container).await.expect("start");
    let before = status_calls.load(Ordering::Relaxed);

    woken(&a, "pod a started").await;
    let seen = pleg.observe("uid-a").expect("relisted");
    assert_eq!(seen.record.sandboxes.len(), 1);
    assert_eq!(seen.record.containers.len(), 1);
    let status = &seen.record.containers[0];
    assert_eq!(status.id, container);
    assert_eq!(status.state, api::ContainerState::ContainerRunning as i32);
    assert!(status.started_at > 0, "the full status, not the listing");
    assert!(
        seen.record.ips[&sandbox].starts_with("10.200.0."),
        "{:?}",
        seen.record.ips
    );
    assert_eq!(
        status_calls.load(Ordering::Relaxed) - before,
        2,
        "one ContainerStatus and one PodSandboxStatus for the new pod"
    );

    // Nothing changes: relists go on, nobody is woken, nothing is inspected again, and the
    // cached state is as new as the last relist.
    let calls = status_calls.load(Ordering::Relaxed);
    relists_after(&pleg, 3).await;
    assert_eq!(
        status_calls.load(Ordering::Relaxed),
        calls,
        "unchanged pods are not inspected"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(10), b.changed())
            .await
            .is_err(),
        "pod b's worker was woken though pod b has nothing in the runtime"
    );
    tokio::time::timeout(Duration::from_millis(10), a.changed())
        .await
        .expect_err("pod a's worker was woken again without a change");
    assert!(pleg.observe("uid-a").expect("relisted").at > seen.at);

    runtime
        .stop_container(&container, Duration::ZERO)
        .await
        .expect("stop");
    woken(&a, "pod a's container died").await;
    let seen = pleg.observe("uid-a").expect("relisted");
    assert_eq!(
        seen.record.containers[0].state,
        api::ContainerState::ContainerExited as i32
    );
    assert_eq!(
        status_calls.load(Ordering::Relaxed) - calls,
        1,
        "only the changed container is inspected; the sandbox IP is kept"
    );

    runtime.remove_container(&container).await.expect("remove");
    runtime
        .stop_pod_sandbox(&sandbox)
        .await
        .expect("stop sandbox");
    runtime
        .remove_pod_sandbox(&sandbox)
        .await
        .expect("remove sandbox");
    woken(&a, "pod a removed").await;
    let seen = pleg.observe("uid-a").expect("relisted");
    assert!(seen.record.sandboxes.is_empty() && seen.record.containers.is_empty());
    assert_eq!(pleg.pods_with_sandboxes(), Some(Default::default()));
    shutdown.trigger();
}
