//! Shared informers: one list+watch and one cache per resource type for the whole process, fanned
//! out to every controller that subscribes.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

/// How many changed objects a slow subscriber may fall behind before it is re-sent the whole
/// cache instead. tokio's broadcast allocates every slot up front (~40 bytes each, per
/// informer), so this bounds memory; being behind costs a resync, not a missed change.
const FANOUT_BUFFER: usize = 1024;

/// A resource type's shared cache and change feed.
pub struct Informer<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    tx: broadcast::Sender<Arc<K>>,
    synced: Arc<AtomicBool>,
}

impl<K: Resource<DynamicType = ()> + 'static> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            tx: self.tx.clone(),
            synced: self.synced.clone(),
        }
    }
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    /// The cache, filled by the one watch of this type.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Every object that is added, changed or deleted from now on (and all objects after each
    /// initial list). A subscriber that falls more than the buffer behind gets every cached
    /// object again in place of what it missed (changes are level-triggered: the current
    /// state is what a controller acts on).
    pub fn subscribe(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let store = self.store.clone();
        BroadcastStream::new(self.tx.subscribe()).flat_map(move |item| {
            let objects = match item {
                Ok(obj) => vec![obj],
                Err(e) => {
                    tracing::info!(kind = %K::kind(&()), error = %e, "informer subscriber fell behind; resyncing it from the cache");
                    store.state()
                }
            };
            futures::stream::iter(objects)
        })
    }

    /// Whether the first list has completed.
    pub fn has_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }
}

/// Creates informers on first use; [`SharedInformers::start`] starts their watches.
pub struct SharedInformers {
    client: Client,
    informers: Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>,
    pending: Mutex<Vec<BoxFuture<'static, ()>>>,
    synced: Mutex<Vec<(String, Arc<AtomicBool>)>>,
}

impl SharedInformers {
    /// A factory whose watches go through `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            informers: Mutex::new(HashMap::new()),
            pending: Mutex::new(Vec::new()),
            synced: Mutex::new(Vec::new()),
        }
    }

    /// The shared informer for `K`, created (not yet watching) on first call.
    pub fn get<K>(&self) -> Informer<K>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let mut informers = self.informers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = informers
            .get(&TypeId::of::<K>())
            .and_then(|b| b.downcast_ref::<Informer<K>>())
        {
            return existing.clone();
        }
        let (store, writer) = reflector::store::<K>();
        let (tx, _) = broadcast::channel(FANOUT_BUFFER);
        let synced = Arc::new(AtomicBool::new(false));
        let informer = Informer {
            store,
            tx: tx.clone(),
            synced: synced.clone(),
        };
        informers.insert(TypeId::of::<K>(), Box::new(informer.clone()));
        self.synced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((K::plural(&()).into_owned(), synced.clone()));
        let api: Api<K> = Api::all(self.client.clone());
        let reader = informer.store.clone();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::pin(drive(api, writer, reader, tx, synced)));
        informer
    }

    /// Starts the watches of every informer created so far; informers created later start on the
    /// next call.
    pub fn start(&self) {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        for task in pending {
            tokio::spawn(task);
        }
    }

    /// The resources whose first list has not completed yet.
    pub fn unsynced(&self) -> Vec<String> {
        self.synced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, s)| !s.load(Ordering::Acquire))
            .map(|(name, _)| name.clone())
            .collect()
    }
}

async fn drive<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    reader: Store<K>,
    tx: broadcast::Sender<Arc<K>>,
    synced: Arc<AtomicBool>,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let events = watcher(api, watcher::Config::default()).default_backoff();
    fan_out(events, writer, reader, tx, synced).await
}

/// Applies watch events to the cache and announces every changed object to the subscribers.
async fn fan_out<K>(
    events: impl Stream<Item = Result<Event<K>, watcher::Error>>,
    mut writer: reflector::store::Writer<K>,
    reader: Store<K>,
    tx: broadcast::Sender<Arc<K>>,
    synced: Arc<AtomicBool>,
) where
    K: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static,
{
    let mut before: Vec<Arc<K>> = Vec::new();
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying");
                continue;
            }
        };
        writer.apply_watcher_event(&event);
        match event {
            Event::Apply(obj) | Event::Delete(obj) => {
                let _ = tx.send(Arc::new(obj));
            }
            Event::Init => {
                // A relist (the watch could not resume): remember what the cache held, so
                // objects deleted while no watch was open are still announced.
                if synced.load(Ordering::Acquire) {
                    tracing::info!(kind = %K::kind(&()), "watch restarted from a new list");
                    before = reader.state();
                }
            }
            Event::InitDone => {
                synced.store(true, Ordering::Release);
                // Objects gone from the new list were deleted unseen: subscribers get their
                // last known state, as upstream informers deliver DeletedFinalStateUnknown.
                for obj in std::mem::take(&mut before) {
                    if reader.get(&ObjectRef::from_obj(&*obj)).is_none() {
                        let _ = tx.send(obj);
                    }
                }
                for obj in reader.state() {
                    let _ = tx.send(obj);
                }
            }
            Event::InitApply(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ServiceAccount;
    use kube::api::ObjectMeta;

    fn account(name: &str) -> ServiceAccount {
        ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        }
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_gets_the_whole_cache_again() {
        let (reader, mut writer) = reflector::store::<ServiceAccount>();
        let (tx, _) = broadcast::channel(2);
        let informer = Informer {
            store: reader,
            tx: tx.clone(),
            synced: Arc::new(AtomicBool::new(true)),
        };
        let mut feed = Box::pin(informer.subscribe());
        for name in ["a", "b", "c", "d", "e"] {
            let obj = account(name);
            writer.apply_watcher_event(&Event::Apply(obj.clone()));
            let _ = tx.send(Arc::new(obj));
        }
        drop(tx);
        drop(informer);
        let mut seen = Vec::new();
        while let Some(obj) = feed.next().await {
            seen.push(obj.metadata.name.clone().unwrap_or_default());
        }
        // a, b and c were overwritten in the 2-slot buffer: the whole cache comes instead,
        // then what the buffer still holds.
        let (resync, rest) = seen.split_at(seen.len() - 2);
        let mut resync = resync.to_vec();
        resync.sort();
        assert_eq!(resync, ["a", "b", "c", "d", "e"], "{seen:?}");
        assert_eq!(rest, ["d", "e"], "{seen:?}");
    }

    #[tokio::test]
    async fn a_relist_announces_objects_deleted_while_unwatched() {
        let (reader, writer) = reflector::store::<ServiceAccount>();
        let (tx, mut rx) = broadcast::channel(16);
        let events = futures::stream::iter(
            [
                Event::Init,
                Event::InitApply(account("a")),
                Event::InitApply(account("b")),
                Event::InitDone,
                // The watch broke and "b" was deleted before the new list.
                Event::Init,
                Event::InitApply(account("a")),
                Event::InitDone,
            ]
            .map(Ok),
        );
        fan_out(
            events,
            writer,
            reader.clone(),
            tx,
            Arc::new(AtomicBool::new(false)),
        )
        .await;
        let mut seen = Vec::new();
        while let Ok(obj) = rx.try_recv() {
            seen.push(obj.metadata.name.clone().unwrap_or_default());
        }
        // First list: a and b (in any order); the relist: b as deleted, then a.
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert_eq!(seen[2..], ["b".to_string(), "a".to_string()], "{seen:?}");
        assert!(reader.get(&ObjectRef::new("b").within("ns")).is_none());
    }
}
