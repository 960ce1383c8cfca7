//! Leader election against the real apiserver: one leader at a time, hand-over on release,
//! take-over after the lease expires, and the Lease fields upstream tools read.

#[path = "../../apiserver/tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{ApiServer, User};
use component_base::leaderelection::{Ended, LeaderElector, LeaseLock, Timings};
use component_base::Shutdown;
use k8s_openapi::api::coordination::v1::Lease;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

async fn client(server: &ApiServer) -> Client {
    let kubeconfig = Kubeconfig::read_from(server.kubeconfig(User::Admin)).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    Client::try_from(config).expect("kube client")
}

fn fast() -> Timings {
    Timings {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(300),
    }
}

fn lock(identity: &str) -> LeaseLock {
    LeaseLock {
        namespace: "kube-system".into(),
        name: "test-lock".into(),
        identity: identity.into(),
    }
}

async fn lease(client: &Client) -> Lease {
    let api: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    api.get("test-lock").await.expect("lease")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_and_hand_over_on_release() {
    let server = ApiServer::start();
    let client = client(&server).await;
    let leading = Arc::new(AtomicUsize::new(0));
    let max_leading = Arc::new(AtomicUsize::new(0));

    let mut stops = Vec::new();
    let mut tasks = Vec::new();
    for id in ["a", "b"] {
        let stop = Shutdown::new();
        stops.push(stop.clone());
        let elector = LeaderElector::new(client.clone(), lock(id), fast());
        let (leading, max_leading) = (leading.clone(), max_leading.clone());
        tasks.push(tokio::spawn(async move {
            elector
                .run(stop, move |lost| async move {
                    let now = leading.fetch_add(1, Ordering::SeqCst) + 1;
                    max_leading.fetch_max(now, Ordering::SeqCst);
                    lost.wait().await;
                    leading.fetch_sub(1, Ordering::SeqCst);
                })
                .await
        }));
        // Let "a" win first.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let first = lease(&client).await;
    let spec = first.spec.clone().expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("a"));
    assert_eq!(spec.lease_duration_seconds, Some(3));
    assert_eq!(spec.lease_transitions, Some(0));
    assert!(spec.acquire_time.is_some() && spec.renew_time.is_some());

    // "a" keeps renewing while "b" waits.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let renewed = lease(&client).await.spec.expect("spec");
    assert_eq!(renewed.holder_identity.as_deref(), Some("a"));
    assert!(renewed.renew_time > spec.renew_time);

    // Stopping "a" releases the lease; "b" takes over well before it would have expired.
    stops[0].trigger();
    let ended = tasks.remove(0).await.expect("task a");
    assert_eq!(ended, Ended::Shutdown);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let spec = lease(&client).await.spec.expect("spec");
        if spec.holder_identity.as_deref() == Some("b") {
            assert_eq!(spec.lease_transitions, Some(1));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "b never took over: {spec:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(max_leading.load(Ordering::SeqCst), 1, "two leaders at once");
    stops[1].trigger();
    assert_eq!(tasks.remove(0).await.expect("task b"), Ended::Shutdown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_leader_is_replaced_after_the_lease_expires() {
    let server = ApiServer::start();
    let client = client(&server).await;
    let crashed = LeaderElector::new(client.clone(), lock("crashed"), fast());
    // Simulate a kill -9: abort the task, so nothing releases the lease.
    let task = tokio::spawn(crashed.run(Shutdown::new(), |lost| async move { lost.wait().await }));
    tokio::time::sleep(Duration::from_secs(1)).await;
    task.abort();
    assert_eq!(
        lease(&client)
            .await
            .spec
            .expect("spec")
            .holder_identity
            .as_deref(),
        Some("crashed")
    );

    let started = tokio::time::Instant::now();
    let stop = Shutdown::new();
    let successor = LeaderElector::new(client.clone(), lock("successor"), fast());
    let stop2 = stop.clone();
    let ended = successor
        .run(stop.clone(), move |_lost| async move {
            stop2.trigger();
        })
        .await;
    assert!(matches!(ended, Ended::Finished | Ended::Shutdown));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2),
        "took over too early: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(10),
        "took over too late: {waited:?}"
    );
}
