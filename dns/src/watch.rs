//! Watch caches of Namespaces, Services and EndpointSlices, and the [`Index`] snapshot rebuilt
//! from them after every change.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::{stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::Notify;

use component_base::Shutdown;

use crate::index::Index;

/// The current snapshot and whether the first lists have completed; clones share both.
#[derive(Clone, Default)]
pub struct Cache {
    index: Arc<RwLock<Arc<Index>>>,
    synced: Arc<AtomicBool>,
}

impl Cache {
    /// The snapshot queries are answered from.
    pub fn index(&self) -> Arc<Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether Namespaces, Services and EndpointSlices have all been listed once.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    fn publish(&self, index: Index) {
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(index);
    }
}

/// Watches the three resources until shutdown, publishing a fresh snapshot into `cache` after
/// each batch of changes.
pub async fn run(client: Client, cache: Cache, shutdown: Shutdown) {
    let changed = Arc::new(Notify::new());
    let (namespaces, ns_events) = watch(Api::<Namespace>::all(client.clone()), &changed);
    let (services, svc_events) = watch(Api::<Service>::all(client.clone()), &changed);
    let (slices, eps_events) = watch(Api::<EndpointSlice>::all(client), &changed);
    let mut events = stream::select_all([ns_events, svc_events, eps_events]);
    let drive = async { while events.next().await.is_some() {} };

    let rebuild = async {
        let ready = async {
            let _ = namespaces.wait_until_ready().await;
            let _ = services.wait_until_ready().await;
            let _ = slices.wait_until_ready().await;
        };
        ready.await;
        let mut serial = 0u32;
        loop {
            serial = next_serial(serial);
            let index = Index::build(
                &namespaces.state(),
                &services.state(),
                &slices.state(),
                serial,
            );
            tracing::debug!(
                services = index.services.len(),
                namespaces = index.namespaces.len(),
                serial,
                "dns index rebuilt"
            );
            cache.publish(index);
            if !cache.synced.swap(true, Ordering::AcqRel) {
                tracing::info!("initial sync of namespaces, services and endpointslices done");
            }
            // Notifications that arrive while building collapse into one more rebuild.
            changed.notified().await;
        }
    };
    tokio::select! {
        _ = shutdown.wait() => {}
        _ = drive => {}
        _ = rebuild => {}
    }
}

type Events = std::pin::Pin<Box<dyn futures::Stream<Item = ()> + Send>>;

fn watch<K>(api: Api<K>, changed: &Arc<Notify>) -> (Store<K>, Events)
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let changed = changed.clone();
    let events = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default())
            .default_backoff()
            // Managed fields are large and never read here.
            .modify(|o: &mut K| o.managed_fields_mut().clear()),
    )
    .map(move |event| match event {
        Ok(_) => changed.notify_one(),
        Err(e) => tracing::warn!(
            kind = K::kind(&()).as_ref(),
            error = %e,
            "watch failed; retrying"
        ),
    });
    (reader, Box::pin(events))
}

/// A SOA serial that grows with every snapshot: the Unix time, or one more than the last.
fn next_serial(previous: u32) -> u32 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0);
    now.max(previous.wrapping_add(1))
}
