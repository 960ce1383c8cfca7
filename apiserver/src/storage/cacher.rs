//! The watch cache: one store watch per resource keeps every object and a window of recent
//! events in memory, so lists and watches are served at a consistent revision without
//! touching the store.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proto::etcdserverpb::{self as pb, watch_request::RequestUnion};
use proto::mvccpb::event::EventType as StoreEventType;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::StreamExt;

use super::{prefix_end, Storage, StorageError};
use crate::metrics::Metrics;

/// Events kept for watches that resume from a past resourceVersion: everything of the last
/// [`HISTORY_FRESH`], and at least [`HISTORY_MIN`] events, up to [`HISTORY`]. Upstream's
/// cacher sizes its window the same way (a time window between a lower and an upper bound), so
/// a steady trickle of writes (every Lease renewal) does not keep 10,000 old objects alive.
const HISTORY: usize = 10_000;
const HISTORY_MIN: usize = 100;
const HISTORY_FRESH: Duration = Duration::from_secs(150);
/// Slots of a resource's live channel. A watcher that falls further behind resumes from the
/// history (see `handlers::watch`), so this bounds memory, not correctness: tokio's broadcast
/// allocates every slot up front, ~40 bytes each, for each of the ~50 resources.
const LIVE_CAPACITY: usize = 1024;
/// How often the store is asked for progress when nothing else asks, so idle watches get a
/// bookmark about once a minute, as upstream's cacher sends them. Reads that need the cache to
/// catch up ask at once (see [`Cacher::wait_for`]); a shorter period only makes every idle
/// watcher in the cluster wake up more often.
const PROGRESS_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change of one object. For deletions `object` is the last state, stamped with the
/// deletion's revision, as upstream sends it.
#[derive(Debug)]
pub struct Event {
    pub kind: EventType,
    pub key: String,
    pub object: Arc<Value>,
    pub prev: Option<Arc<Value>>,
    pub rv: i64,
    /// When this server received it (for the history's time window).
    at: Instant,
    /// `object` as JSON, serialized once for every watcher that sends it unchanged.
    json: OnceLock<Bytes>,
}

impl Event {
    pub fn new(
        kind: EventType,
        key: String,
        object: Arc<Value>,
        prev: Option<Arc<Value>>,
        rv: i64,
    ) -> Self {
        Self {
            kind,
            key,
            object,
            prev,
            rv,
            at: Instant::now(),
            json: OnceLock::new(),
        }
    }

    /// The object's JSON when it is already in the served shape (its apiVersion and kind
    /// are these), serialized on first use and shared by every watcher after that.
    pub fn json_as(&self, api_version: &str, kind: &str) -> Option<Bytes> {
        let obj = self.object.as_object()?;
        let is = |field: &str, want: &str| obj.get(field).and_then(Value::as_str) == Some(want);
        if !is("apiVersion", api_version) || !is("kind", kind) {
            return None;
        }
        let bytes = self.json.get_or_init(|| {
            Bytes::from(serde_json::to_vec(&*self.object).expect("JSON values always serialize"))
        });
        Some(bytes.clone())
    }
}

/// What live watchers receive.
#[derive(Debug, Clone)]
pub enum Notice {
    Event(Arc<Event>),
    /// Everything up to this revision has been delivered.
    Progress(i64),
}

#[derive(Default)]
struct State {
    rv: i64,
    objects: BTreeMap<String, Arc<Value>>,
    history: VecDeque<Arc<Event>>,
    /// History is complete for revisions greater than this.
    oldest: i64,
    ready: bool,
}

/// A cache of one resource's objects (keys under `prefix`).
pub struct Cacher {
    pub resource: String,
    prefix: String,
    state: RwLock<State>,
    /// Objects this server just wrote, by key, with the revision the store gave them: the
    /// store's event for that revision takes the object from here instead of decoding the
    /// bytes it was encoded to (the same value).
    written: Mutex<HashMap<String, (i64, Arc<Value>)>>,
    notices: RwLock<broadcast::Sender<Notice>>,
    /// The field whose exact value narrows watches to their own channel (pods:
    /// `spec.nodeName`), as upstream's cacher triggers: each kubelet's watch wakes only for
    /// events of its node, not for every pod event of the cluster.
    trigger: Option<Trigger>,
    /// One channel per watched trigger value; events go to their old and new value's channel.
    triggered: RwLock<HashMap<String, broadcast::Sender<Notice>>>,
    rv_tx: watch::Sender<i64>,
    progress_tx: mpsc::Sender<()>,
    metrics: Arc<Metrics>,
}

/// A field watches can be narrowed by: its name in field selectors and how to read it.
#[derive(Clone, Copy)]
pub struct Trigger {
    pub field: &'static str,
    pub value: fn(&Value) -> Option<&str>,
}

fn pod_node_name(obj: &Value) -> Option<&str> {
    Some(
        obj.get("spec")
            .and_then(|s| s.get("nodeName"))
            .and_then(Value::as_str)
            .unwrap_or(""),
    )
}

/// The trigger of the objects under a storage prefix.
pub fn trigger_for(prefix: &str) -> Option<Trigger> {
    (prefix == "/registry/pods/").then_some(Trigger {
        field: "spec.nodeName",
        value: pod_node_name,
    })
}

/// Capacity of a trigger value's channel (one node's pods); as for [`LIVE_CAPACITY`], a
/// watcher that falls behind resumes from the history.
const TRIGGERED_CAPACITY: usize = 256;

/// A consistent view for a watch: what happened after the requested revision, then live.
pub struct Subscription {
    pub backlog: Vec<Arc<Event>>,
    /// Current objects, when the watch starts from "now" with initial events.
    pub initial: Vec<Arc<Value>>,
    pub rv: i64,
    pub live: broadcast::Receiver<Notice>,
}

impl Cacher {
    /// Starts caching `prefix` (ending in `/`) and returns once the first list is loaded.
    pub async fn start(
        storage: Storage,
        resource: &str,
        prefix: String,
        metrics: Arc<Metrics>,
        shutdown: component_base::Shutdown,
    ) -> Result<Arc<Self>, StorageError> {
        let (rv_tx, _) = watch::channel(0);
        let (progress_tx, progress_rx) = mpsc::channel(1);
        let (notices, _) = broadcast::channel(LIVE_CAPACITY);
        let cacher = Arc::new(Self {
            resource: resource.to_string(),
            trigger: trigger_for(&prefix),
            triggered: RwLock::default(),
            prefix,
            state: RwLock::new(State::default()),
            written: Mutex::default(),
            notices: RwLock::new(notices),
            rv_tx,
            progress_tx,
            metrics,
        });
        let rv = cacher.relist(&storage).await?;
        tokio::spawn(cacher.clone().run(storage, rv, progress_rx, shutdown));
        Ok(cacher)
    }

    fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn state_mut(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn written(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, Arc<Value>)>> {
        self.written.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This server stored `obj` at `key` with revision `rev` (`obj` carries that
    /// resourceVersion, so it equals what decoding the stored bytes gives). Kept until the
    /// store's event for it arrives, unless that event was applied already.
    pub fn wrote(&self, key: &str, rev: i64, obj: Arc<Value>) {
        // Under the state lock, so `apply` cannot take the event in between.
        let st = self.state();
        if rev > st.rv {
            self.written().insert(key.to_string(), (rev, obj));
        }
    }

    async fn relist(&self, storage: &Storage) -> Result<i64, StorageError> {
        let (items, rv) = storage.list(&self.prefix, 0, &self.resource).await?;
        let mut objects = BTreeMap::new();
        for (obj, _) in items {
            let key = self.key_of(&obj);
            objects.insert(key, Arc::new(obj));
        }
        let count = objects.len();
        {
            let mut st = self.state_mut();
            self.written().clear();
            st.objects = objects;
            st.history.clear();
            st.rv = rv;
            st.oldest = rv;
            st.ready = true;
        }
        // Watchers of the previous generation cannot be continued consistently.
        let (fresh, _) = broadcast::channel(LIVE_CAPACITY);
        *self.notices.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        self.metrics
            .set_storage_objects(&self.resource, count as i64);
        self.rv_tx.send_replace(rv);
        Ok(rv)
    }

    /// The store key of an object in this cache.
    fn key_of(&self, obj: &Value) -> String {
        let ns = crate::object::namespace(obj);
        let name = crate::object::name(obj);
        if ns.is_empty() {
            format!("{}{name}", self.prefix)
        } else {
            format!("{}{ns}/{name}", self.prefix)
        }
    }

    async fn run(
        self: Arc<Self>,
        storage: Storage,
        mut rv: i64,
        mut progress_rx: mpsc::Receiver<()>,
        shutdown: component_base::Shutdown,
    ) {
        loop {
            if shutdown.is_triggered() {
                return;
            }
            match self.follow(&storage, rv, &mut progress_rx, &shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(resource = %self.resource, error = %e, "watch cache restarting");
                    tokio::select! {
                        _ = shutdown.wait() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                    match self.relist(&storage).await {
                        Ok(r) => rv = r,
                        Err(e) => {
                            tracing::warn!(resource = %self.resource, error = %e, "relist failed")
                        }
                    }
                }
            }
        }
    }

    async fn follow(
        &self,
        storage: &Storage,
        from: i64,
        progress_rx: &mut mpsc::Receiver<()>,
        shutdown: &component_base::Shutdown,
    ) -> Result<(), StorageError> {
        let create = pb::WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(pb::WatchCreateRequest {
                key: self.prefix.as_bytes().to_vec(),
                range_end: prefix_end(&self.prefix),
                start_revision: from + 1,
                prev_kv: true,
                progress_notify: true,
                ..Default::default()
            })),
        };
        let (tx, mut stream) = storage.kv().watch(create).await?;
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.wait() => return Ok(()),
                _ = tick.tick() => {
                    let _ = tx.send(progress_request()).await;
                }
                Some(()) = progress_rx.recv() => {
                    let _ = tx.send(progress_request()).await;
                }
                msg = stream.next() => {
                    let Some(msg) = msg else {
                        return Err(StorageError::Store("watch stream ended".into()));
                    };
                    let resp = msg?;
                    if resp.compact_revision > 0 {
                        return Err(StorageError::Compacted(resp.compact_revision));
                    }
                    if resp.canceled {
                        return Err(StorageError::Store(format!("watch canceled: {}", resp.cancel_reason)));
                    }
                    let header_rev = resp.header.as_ref().map(|h| h.revision).unwrap_or(0);
                    if resp.events.is_empty() {
                        if !resp.created {
                            self.progress(header_rev);
                        }
                    } else {
                        self.apply(storage.codec(), &resp.events)?;
                    }
                }
            }
        }
    }

    fn progress(&self, rv: i64) {
        let advanced = {
            let mut st = self.state_mut();
            if rv > st.rv {
                st.rv = rv;
                true
            } else {
                false
            }
        };
        if advanced {
            self.rv_tx.send_replace(rv);
        }
        let _ = self.sender().send(Notice::Progress(rv));
        for tx in self.triggered_read().values() {
            let _ = tx.send(Notice::Progress(rv));
        }
    }

    fn triggered_read(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<String, broadcast::Sender<Notice>>> {
        self.triggered.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The trigger field watches of this cache can be narrowed by.
    pub fn trigger(&self) -> Option<Trigger> {
        self.trigger
    }

    fn sender(&self) -> broadcast::Sender<Notice> {
        self.notices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn apply(
        &self,
        codec: &super::Codec,
        events: &[proto::mvccpb::Event],
    ) -> Result<(), StorageError> {
        let sender = self.sender();
        let mut newest = 0;
        let count;
        {
            let mut st = self.state_mut();
            for ev in events {
                let Some(kv) = &ev.kv else { continue };
                let key = String::from_utf8_lossy(&kv.key).into_owned();
                let rv = kv.mod_revision;
                let prev = st.objects.get(&key).cloned();
                let event = if ev.r#type == StoreEventType::Delete as i32 {
                    st.objects.remove(&key);
                    let Some(last) = prev.clone().or_else(|| {
                        ev.prev_kv
                            .as_ref()
                            .and_then(|p| codec.decode(&p.key, &p.value, p.mod_revision).ok())
                            .map(Arc::new)
                    }) else {
                        continue;
                    };
                    let mut obj = (*last).clone();
                    crate::object::set_meta(
                        &mut obj,
                        "resourceVersion",
                        Value::String(rv.to_string()),
                    );
                    Event::new(EventType::Deleted, key, Arc::new(obj), prev, rv)
                } else {
                    let known = match self.written().remove(&key) {
                        Some((at, obj)) if at == rv => Some(obj),
                        _ => None,
                    };
                    let obj = match known {
                        Some(obj) => obj,
                        None => match codec.decode(&kv.key, &kv.value, rv) {
                            Ok(o) => Arc::new(o),
                            Err(e) => {
                                tracing::warn!(error = %e, "skipping undecodable object");
                                continue;
                            }
                        },
                    };
                    st.objects.insert(key.clone(), obj.clone());
                    let kind = if prev.is_some() {
                        EventType::Modified
                    } else {
                        EventType::Added
                    };
                    Event::new(kind, key, obj, prev, rv)
                };
                let event = Arc::new(event);
                st.history.push_back(event.clone());
                while st.history.len() > HISTORY
                    || (st.history.len() > HISTORY_MIN
                        && st
                            .history
                            .front()
                            .is_some_and(|e| e.at.elapsed() > HISTORY_FRESH))
                {
                    if let Some(old) = st.history.pop_front() {
                        st.oldest = old.rv;
                    }
                }
                st.rv = st.rv.max(rv);
                newest = st.rv;
                if let Some(trigger) = self.trigger {
                    let now = (trigger.value)(&event.object);
                    let before = event.prev.as_deref().and_then(trigger.value);
                    let mut orphaned = false;
                    {
                        let channels = self.triggered_read();
                        for value in [now, before.filter(|b| Some(*b) != now)]
                            .into_iter()
                            .flatten()
                        {
                            if let Some(tx) = channels.get(value) {
                                orphaned |= tx.send(Notice::Event(event.clone())).is_err();
                            }
                        }
                    }
                    if orphaned {
                        self.triggered
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .retain(|_, tx| tx.receiver_count() > 0);
                    }
                }
                let _ = sender.send(Notice::Event(event));
            }
            count = st.objects.len();
            // Writes whose events came before their `wrote` (or never will) are dropped.
            let rv = st.rv;
            let mut written = self.written();
            if !written.is_empty() {
                written.retain(|_, (at, _)| *at > rv);
            }
        }
        for _ in events {
            self.metrics.watch_cache_event_received(&self.resource);
        }
        self.metrics
            .set_storage_objects(&self.resource, count as i64);
        if newest > 0 {
            self.rv_tx.send_replace(newest);
        }
        Ok(())
    }

    /// History at or below `rev` was compacted away: watches from there get 410.
    pub fn compacted(&self, rev: i64) {
        let mut st = self.state_mut();
        while st.history.front().map(|e| e.rv <= rev).unwrap_or(false) {
            st.history.pop_front();
        }
        st.oldest = st.oldest.max(rev);
    }

    /// The newest revision the cache has seen.
    pub fn revision(&self) -> i64 {
        self.state().rv
    }

    /// Waits until the cache has caught up with `rv` (asking the store for progress).
    pub async fn wait_for(&self, rv: i64, deadline: Duration) -> bool {
        let mut rx = self.rv_tx.subscribe();
        if *rx.borrow() >= rv {
            return true;
        }
        let _ = self.progress_tx.try_send(());
        tokio::time::timeout(deadline, rx.wait_for(|cur| *cur >= rv))
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false)
    }

    /// Objects whose key starts with `sub_prefix` (the resource prefix plus `ns/` or
    /// nothing), from `start_key` on, at the cache's revision.
    pub fn list(
        &self,
        sub_prefix: &str,
        start_key: Option<&str>,
    ) -> (Vec<(String, Arc<Value>)>, i64) {
        let st = self.state();
        let from = start_key.unwrap_or(sub_prefix).to_string();
        let items = st
            .objects
            .range(from..)
            .take_while(|(k, _)| k.starts_with(sub_prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (items, st.rv)
    }

    /// One object by key.
    pub fn get(&self, key: &str) -> (Option<Arc<Value>>, i64) {
        let st = self.state();
        (st.objects.get(key).cloned(), st.rv)
    }

    /// One object by key with the revision it was stored at (its resourceVersion), if cached.
    pub fn get_at(&self, key: &str) -> Option<(Arc<Value>, i64)> {
        let obj = self.get(key).0?;
        let rev = crate::object::resource_version(&obj).parse().ok()?;
        Some((obj, rev))
    }

    pub fn len(&self) -> usize {
        self.state().objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A watch from `rv` (events after it), or from now with every current object as initial
    /// events when `rv` is None. Err carries the oldest revision still available.
    pub fn subscribe(&self, rv: Option<i64>, sub_prefix: &str) -> Result<Subscription, i64> {
        self.subscribe_triggered(rv, sub_prefix, None)
    }

    /// Like [`subscribe`](Self::subscribe); with `Some(value)` of the cache's trigger field the
    /// live events are only those whose object had or has that value (the watch's field
    /// selector filters them further, as for any watch).
    pub fn subscribe_triggered(
        &self,
        rv: Option<i64>,
        sub_prefix: &str,
        trigger_value: Option<&str>,
    ) -> Result<Subscription, i64> {
        // Under the state lock, so no event lands between the backlog and the live channel.
        let st = self.state();
        let live = match trigger_value.filter(|_| self.trigger.is_some()) {
            Some(value) => {
                let existing = self.triggered_read().get(value).map(|tx| tx.subscribe());
                existing.unwrap_or_else(|| {
                    self.triggered
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(value.to_string())
                        .or_insert_with(|| broadcast::channel(TRIGGERED_CAPACITY).0)
                        .subscribe()
                })
            }
            None => self.sender().subscribe(),
        };
        match rv {
            None => Ok(Subscription {
                backlog: Vec::new(),
                initial: st
                    .objects
                    .range(sub_prefix.to_string()..)
                    .take_while(|(k, _)| k.starts_with(sub_prefix))
                    .map(|(_, v)| v.clone())
                    .collect(),
                rv: st.rv,
                live,
            }),
            Some(rv) if rv < st.oldest => Err(st.oldest),
            Some(rv) => Ok(Subscription {
                backlog: st
                    .history
                    .iter()
                    .filter(|e| e.rv > rv && e.key.starts_with(sub_prefix))
                    .cloned()
                    .collect(),
                initial: Vec::new(),
                rv: st.rv.max(rv),
                live,
            }),
        }
    }
}

fn progress_request() -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(RequestUnion::ProgressRequest(pb::WatchProgressRequest {})),
    }
}
