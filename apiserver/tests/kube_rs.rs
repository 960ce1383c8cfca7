//! kube-rs against the real server: typed CRUD, server-side apply, and the watcher/reflector
//! machinery every Rust controller is built on (list+watch, resume, bookmarks, streaming
//! lists with sendInitialEvents).

mod common;

use std::time::Duration;

use common::{ApiServer, User};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, Config};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(30);

async fn client(server: &ApiServer) -> Client {
    let kubeconfig = Kubeconfig::read_from(server.kubeconfig(User::Admin)).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube config");
    Client::try_from(config).expect("kube client")
}

fn config_map(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "kube-rs"}},
        "data": {"key": value},
    }))
    .expect("config map")
}

/// Polls `cond` on the reflector's store until it holds or the deadline passes.
async fn wait_store(
    store: &Store<ConfigMap>,
    what: &str,
    cond: impl Fn(&Store<ConfigMap>) -> bool,
) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond(store) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "reflector store never reached: {what}; it holds {:?}",
            store
                .state()
                .iter()
                .map(|c| (c.metadata.name.clone(), c.data.clone()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn value_of(store: &Store<ConfigMap>, name: &str) -> Option<String> {
    store
        .state()
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
        .and_then(|c| c.data.as_ref()?.get("key").cloned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_crud_and_server_side_apply() {
    let server = ApiServer::start();
    let ns = server.namespace("kube-rs-crud");
    let cms: Api<ConfigMap> = Api::namespaced(client(&server).await, &ns);

    let created = cms
        .create(&PostParams::default(), &config_map("one", "1"))
        .await
        .expect("create");
    assert!(created.metadata.uid.is_some(), "server sets the uid");
    let rv = created.metadata.resource_version.clone().expect("rv");

    let got = cms.get("one").await.expect("get");
    assert_eq!(got.metadata.resource_version.as_deref(), Some(rv.as_str()));

    // A create of an existing name is a 409 AlreadyExists the client decodes.
    match cms
        .create(&PostParams::default(), &config_map("one", "x"))
        .await
    {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 409);
            assert_eq!(e.reason, "AlreadyExists");
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }

    // Replace with a stale resourceVersion is a 409 Conflict.
    let mut stale = got.clone();
    let mut fresh = got.clone();
    fresh.data = Some([("key".to_string(), "2".to_string())].into());
    cms.replace("one", &PostParams::default(), &fresh)
        .await
        .expect("replace");
    stale.data = Some([("key".to_string(), "3".to_string())].into());
    match cms.replace("one", &PostParams::default(), &stale).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 409, "{e:?}"),
        other => panic!("expected Conflict, got {other:?}"),
    }

    // Server-side apply: one manager owns data.key; a second manager conflicts unless forced.
    let apply = |v: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"key": v}});
    let pp = PatchParams::apply("kube-rs-a");
    let applied = cms
        .patch("applied", &pp, &Patch::Apply(apply("a")))
        .await
        .expect("apply");
    let managers: Vec<_> = applied
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .map(|m| (m.manager, m.operation))
        .collect();
    assert!(
        managers.contains(&(Some("kube-rs-a".into()), Some("Apply".into()))),
        "{managers:?}"
    );
    match cms
        .patch(
            "applied",
            &PatchParams::apply("kube-rs-b"),
            &Patch::Apply(apply("b")),
        )
        .await
    {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 409, "{e:?}");
            assert!(e.message.contains("kube-rs-a"), "{}", e.message);
        }
        other => panic!("expected an apply conflict, got {other:?}"),
    }
    let forced = cms
        .patch(
            "applied",
            &PatchParams::apply("kube-rs-b").force(),
            &Patch::Apply(apply("b")),
        )
        .await
        .expect("forced apply");
    assert_eq!(
        forced
            .data
            .unwrap_or_default()
            .get("key")
            .map(String::as_str),
        Some("b")
    );

    // Label-selected list, then delete.
    let listed = cms
        .list(&ListParams::default().labels("app=kube-rs"))
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 1, "only `one` carries the label");
    cms.delete("one", &DeleteParams::default())
        .await
        .expect("delete");
    match cms.get("one").await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 404),
        other => panic!("expected NotFound, got {other:?}"),
    }

    // Pods decode with their defaults filled in by the server.
    let pods: Api<Pod> = Api::namespaced(client(&server).await, &ns);
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .expect("pod");
    let pod = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    let spec = pod.spec.expect("spec");
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(
        spec.containers[0].image_pull_policy.as_deref(),
        Some("Always"),
        "untagged image means :latest, pulled Always"
    );
}

async fn reflect(list_watch: bool) {
    let server = ApiServer::start();
    let ns = server.namespace(if list_watch {
        "kube-rs-lw"
    } else {
        "kube-rs-stream"
    });
    let client = client(&server).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, &ns);
    for i in 0..3 {
        cms.create(
            &PostParams::default(),
            &config_map(&format!("pre-{i}"), "0"),
        )
        .await
        .expect("create");
    }

    let config = if list_watch {
        watcher::Config::default()
    } else {
        // WatchList: sendInitialEvents=true with the initial-events-end bookmark.
        watcher::Config::default().streaming_lists()
    }
    .labels("app=kube-rs");
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream = watcher(cms.clone(), config).default_backoff();
    let (init_tx, mut init_rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(
        reflector::reflector(writer, stream)
            .inspect_ok(move |ev| {
                if matches!(ev, Event::InitDone) {
                    let _ = init_tx.send(());
                }
            })
            .try_for_each(|_| async { Ok(()) }),
    );

    tokio::time::timeout(DEADLINE, init_rx.recv())
        .await
        .expect("initial list completes")
        .expect("init event");
    tokio::time::timeout(DEADLINE, reader.wait_until_ready())
        .await
        .expect("store ready")
        .expect("store writer alive");
    assert_eq!(reader.state().len(), 3, "the initial objects");

    cms.create(&PostParams::default(), &config_map("added", "1"))
        .await
        .expect("create");
    wait_store(&reader, "added appears", |s| value_of(s, "added").is_some()).await;

    let patch = json!({"data": {"key": "2"}});
    cms.patch("added", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    wait_store(&reader, "added updated to 2", |s| {
        value_of(s, "added").as_deref() == Some("2")
    })
    .await;

    cms.delete("pre-0", &DeleteParams::default())
        .await
        .expect("delete");
    wait_store(&reader, "pre-0 removed", |s| value_of(s, "pre-0").is_none()).await;

    // An object that leaves the label selector leaves the store, as a watch DELETED would.
    let unlabel = json!({"metadata": {"labels": {"app": null}}});
    cms.patch("pre-1", &PatchParams::default(), &Patch::Merge(&unlabel))
        .await
        .expect("unlabel");
    wait_store(&reader, "pre-1 filtered out", |s| {
        value_of(s, "pre-1").is_none()
    })
    .await;
    assert_eq!(reader.state().len(), 2, "pre-2 and added remain");

    // No relist happened: a second InitDone would mean the watch broke and was restarted.
    assert!(init_rx.try_recv().is_err(), "unexpected relist");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_follows_list_then_watch() {
    reflect(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_follows_streaming_list() {
    reflect(false).await;
}

async fn next<S>(events: &mut S) -> Event<ConfigMap>
where
    S: futures::Stream<Item = Result<Event<ConfigMap>, watcher::Error>> + Unpin,
{
    tokio::time::timeout(DEADLINE, events.try_next())
        .await
        .expect("event before deadline")
        .expect("watch ok")
        .expect("stream open")
}

/// A raw watcher stream sees the typed events in order: Init, InitApply per object, InitDone,
/// then Apply and Delete as they happen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_event_order() {
    let server = ApiServer::start();
    let ns = server.namespace("kube-rs-events");
    let cms: Api<ConfigMap> = Api::namespaced(client(&server).await, &ns);
    cms.create(&PostParams::default(), &config_map("first", "0"))
        .await
        .expect("create");

    let mut events = watcher(
        cms.clone(),
        watcher::Config::default().labels("app=kube-rs"),
    )
    .boxed();
    assert!(matches!(next(&mut events).await, Event::Init));
    match next(&mut events).await {
        Event::InitApply(cm) => assert_eq!(cm.metadata.name.as_deref(), Some("first")),
        other => panic!("expected InitApply(first), got {other:?}"),
    }
    assert!(matches!(next(&mut events).await, Event::InitDone));

    cms.create(&PostParams::default(), &config_map("second", "0"))
        .await
        .expect("create");
    match next(&mut events).await {
        Event::Apply(cm) => assert_eq!(cm.metadata.name.as_deref(), Some("second")),
        other => panic!("expected Apply(second), got {other:?}"),
    }
    cms.delete("first", &DeleteParams::default())
        .await
        .expect("delete");
    match next(&mut events).await {
        Event::Delete(cm) => assert_eq!(cm.metadata.name.as_deref(), Some("first")),
        other => panic!("expected Delete(first), got {other:?}"),
    }
}
