//! Pod events as upstream's kubelet records them (core/v1 Events from source `kubelet`): sent
//! in the background so a slow or absent apiserver never holds up a pod, with repeats of the
//! same event folded into its `count`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::chrono::Utc;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::mpsc;

/// Repeats of one event within this window update its count instead of creating another.
const FOLD_WINDOW: Duration = Duration::from_secs(600);
/// A folded event is patched at most this often.
const PATCH_EVERY: Duration = Duration::from_secs(10);
/// Events waiting to be sent; more are dropped (upstream drops too when its queue is full).
const QUEUE: usize = 1000;

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Normal,
    Warning,
}

impl Type {
    fn as_str(self) -> &'static str {
        match self {
            Type::Normal => "Normal",
            Type::Warning => "Warning",
        }
    }
}

#[derive(Debug, Clone)]
struct Record {
    object: ObjectReference,
    type_: Type,
    reason: String,
    message: String,
}

/// Cheap to clone; recording never blocks.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: Option<mpsc::Sender<Record>>,
}

impl Recorder {
    /// A recorder that drops everything (tests, or no client).
    pub fn disabled() -> Self {
        Recorder { tx: None }
    }

    /// Starts the sender task for node `node`.
    pub fn start(client: kube::Client, node: String) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(send_loop(client, node, rx));
        Recorder { tx: Some(tx) }
    }

    /// Records an event about `pod`, or one of its containers when `container` is given (the
    /// reference's fieldPath is then `spec.containers{name}` as upstream sets it).
    pub fn pod(
        &self,
        pod: &Pod,
        container: Option<&str>,
        type_: Type,
        reason: &str,
        message: impl Into<String>,
    ) {
        let Some(tx) = &self.tx else { return };
        let m = &pod.metadata;
        let field_path = container.map(|name| {
            let init = pod
                .spec
                .as_ref()
                .and_then(|s| s.init_containers.as_ref())
                .is_some_and(|list| list.iter().any(|c| c.name == name));
            if init {
                format!("spec.initContainers{{{name}}}")
            } else {
                format!("spec.containers{{{name}}}")
            }
        });
        let record = Record {
            object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: m.name.clone(),
                namespace: m.namespace.clone(),
                uid: m.uid.clone(),
                field_path,
                ..Default::default()
            },
            type_,
            reason: reason.to_string(),
            message: message.into(),
        };
        if tx.try_send(record).is_err() {
            tracing::debug!("event queue full; dropping an event");
        }
    }
}

struct Sent {
    name: String,
    namespace: String,
    count: i32,
    first: Instant,
    last_patch: Instant,
    dirty: bool,
}

async fn send_loop(client: kube::Client, node: String, mut rx: mpsc::Receiver<Record>) {
    let mut sent: HashMap<(String, String, String, String), Sent> = HashMap::new();
    let mut flush = tokio::time::interval(PATCH_EVERY);
    loop {
        tokio::select! {
            record = rx.recv() => {
                let Some(record) = record else { return };
                let key = (
                    record.object.uid.clone().unwrap_or_default(),
                    record.object.field_path.clone().unwrap_or_default(),
                    record.reason.clone(),
                    record.message.clone(),
                );
                match sent.get_mut(&key) {
                    Some(s) if s.first.elapsed() < FOLD_WINDOW => {
                        s.count += 1;
                        s.dirty = true;
                        if s.last_patch.elapsed() >= PATCH_EVERY {
                            patch_count(&client, s).await;
                        }
                    }
                    _ => {
                        if let Some(s) = create(&client, &node, &record).await {
                            sent.insert(key, s);
                        }
                    }
                }
            }
            _ = flush.tick() => {
                sent.retain(|_, s| s.first.elapsed() < FOLD_WINDOW || s.dirty);
                for s in sent.values_mut().filter(|s| s.dirty) {
                    patch_count(&client, s).await;
                }
            }
        }
    }
}

async fn create(client: &kube::Client, node: &str, r: &Record) -> Option<Sent> {
    let namespace = r
        .object
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let now = Utc::now();
    // Upstream names events `<object>.<unix nanos in hex>`.
    let name = format!(
        "{}.{:x}",
        r.object.name.as_deref().unwrap_or_default(),
        now.timestamp_nanos_opt().unwrap_or_default()
    );
    let event = Event {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        involved_object: r.object.clone(),
        reason: Some(r.reason.clone()),
        message: Some(r.message.clone()),
        type_: Some(r.type_.as_str().into()),
        source: Some(EventSource {
            component: Some("kubelet".into()),
            host: Some(node.to_string()),
        }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: None::<MicroTime>,
        count: Some(1),
        reporting_component: Some("kubelet".into()),
        reporting_instance: Some(node.to_string()),
        ..Default::default()
    };
    let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
    match api.create(&PostParams::default(), &event).await {
        Ok(_) => Some(Sent {
            name,
            namespace,
            count: 1,
            first: Instant::now(),
            last_patch: Instant::now(),
            dirty: false,
        }),
        Err(e) => {
            tracing::debug!(error = %e, reason = %r.reason, "record event");
            None
        }
    }
}

async fn patch_count(client: &kube::Client, s: &mut Sent) {
    let api: Api<Event> = Api::namespaced(client.clone(), &s.namespace);
    let patch = serde_json::json!({
        "count": s.count,
        "lastTimestamp": Time(Utc::now()),
    });
    s.last_patch = Instant::now();
    s.dirty = false;
    if let Err(e) = api
        .patch(&s.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::debug!(error = %e, event = %s.name, "update event count");
    }
}
