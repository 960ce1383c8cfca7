//! The scheduler's caches of PersistentVolumeClaims, PersistentVolumes and StorageClasses (one
//! watch each), read by the VolumeBinding plugin.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::Api;
use kube::runtime::watcher::{self, watcher, Event as WatchEvent};
use serde::de::DeserializeOwned;

type Map<K> = RwLock<HashMap<String, Arc<K>>>;

/// Volumes VolumeBinding's Reserve chose for a pod whose claimRef is not written yet:
/// volume name -> (pod key, the claimRef it will get).
type Assumed = RwLock<HashMap<String, (String, ObjectReference)>>;

/// The volume objects the scheduler knows, keyed by `namespace/name` (claims) or name.
#[derive(Default)]
pub struct VolumeStore {
    claims: Map<PersistentVolumeClaim>,
    volumes: Map<PersistentVolume>,
    classes: Map<StorageClass>,
    claims_synced: AtomicBool,
    volumes_synced: AtomicBool,
    classes_synced: AtomicBool,
    assumed: Assumed,
}

fn read<K>(map: &Map<K>) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<K>>> {
    // Writers replace whole entries, so a poisoned lock still holds consistent data.
    map.read().unwrap_or_else(|e| e.into_inner())
}

fn write<K>(map: &Map<K>) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<K>>> {
    map.write().unwrap_or_else(|e| e.into_inner())
}

fn name_of(meta: &kube::api::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

fn claim_key(c: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}",
        c.metadata.namespace.as_deref().unwrap_or_default(),
        name_of(&c.metadata)
    )
}

impl VolumeStore {
    /// The claim `namespace/name`.
    pub fn claim(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        read(&self.claims)
            .get(&format!("{namespace}/{name}"))
            .cloned()
    }

    /// The volume `name`.
    pub fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        read(&self.volumes).get(name).cloned()
    }

    /// Every volume, with the claimRefs Reserve assumed laid over volumes the informer still
    /// shows unclaimed (upstream's assume cache), so two pods never choose the same volume.
    pub fn volumes(&self) -> Vec<Arc<PersistentVolume>> {
        let assumed = self.assumed.read().unwrap_or_else(|e| e.into_inner());
        read(&self.volumes)
            .iter()
            .map(|(name, v)| match assumed.get(name) {
                Some((_, claim_ref)) if v.spec.as_ref().is_none_or(|s| s.claim_ref.is_none()) => {
                    let mut v = v.as_ref().clone();
                    v.spec.get_or_insert_with(Default::default).claim_ref = Some(claim_ref.clone());
                    Arc::new(v)
                }
                _ => v.clone(),
            })
            .collect()
    }

    /// Records that `pod` takes volume `pv` for the claim `claim_ref` names.
    pub fn assume_claim_ref(&self, pv: &str, pod: &str, claim_ref: ObjectReference) {
        self.assumed
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pv.to_owned(), (pod.to_owned(), claim_ref));
    }

    /// Drops every assumption made for `pod` (upstream's RevertAssumedPodVolumes, or once its
    /// bindings are written and observed).
    pub fn forget_assumed(&self, pod: &str) {
        self.assumed
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, (p, _)| p != pod);
    }

    /// The StorageClass `name`.
    pub fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
        read(&self.classes).get(name).cloned()
    }

    /// Adds or replaces a claim.
    pub fn upsert_claim(&self, c: PersistentVolumeClaim) {
        write(&self.claims).insert(claim_key(&c), Arc::new(c));
    }

    /// Adds or replaces a volume.
    pub fn upsert_volume(&self, v: PersistentVolume) {
        write(&self.volumes).insert(name_of(&v.metadata), Arc::new(v));
    }

    /// Adds or replaces a StorageClass.
    pub fn upsert_class(&self, c: StorageClass) {
        write(&self.classes).insert(name_of(&c.metadata), Arc::new(c));
    }

    /// Whether all three informers have listed once.
    pub fn synced(&self) -> bool {
        self.claims_synced.load(Ordering::Relaxed)
            && self.volumes_synced.load(Ordering::Relaxed)
            && self.classes_synced.load(Ordering::Relaxed)
    }

    /// Runs the three informers until their streams end; `on_change` runs after every add or
    /// update (upstream's VolumeBinding does not react to deletions).
    pub async fn run_informers(
        self: Arc<Self>,
        client: kube::Client,
        on_change: Arc<dyn Fn() + Send + Sync>,
    ) {
        tokio::join!(
            run_one(
                Api::<PersistentVolumeClaim>::all(client.clone()),
                &self.claims,
                claim_key,
                &self.claims_synced,
                on_change.as_ref(),
            ),
            run_one(
                Api::<PersistentVolume>::all(client.clone()),
                &self.volumes,
                |v| name_of(&v.metadata),
                &self.volumes_synced,
                on_change.as_ref(),
            ),
            run_one(
                Api::<StorageClass>::all(client),
                &self.classes,
                |c| name_of(&c.metadata),
                &self.classes_synced,
                on_change.as_ref(),
            ),
        );
    }
}

async fn run_one<K>(
    api: Api<K>,
    map: &Map<K>,
    key: fn(&K) -> String,
    synced: &AtomicBool,
    on_change: &(dyn Fn() + Send + Sync),
) where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let kind = K::kind(&()).to_string();
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    let mut relist: Option<HashMap<String, Arc<K>>> = None;
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(WatchEvent::Apply(o)) => {
                write(map).insert(key(&o), Arc::new(o));
                on_change();
            }
            Ok(WatchEvent::Delete(o)) => {
                write(map).remove(&key(&o));
            }
            Ok(WatchEvent::Init) => relist = Some(HashMap::new()),
            Ok(WatchEvent::InitApply(o)) => {
                if let Some(fresh) = relist.as_mut() {
                    fresh.insert(key(&o), Arc::new(o));
                }
            }
            Ok(WatchEvent::InitDone) => {
                if let Some(fresh) = relist.take() {
                    *write(map) = fresh;
                }
                synced.store(true, Ordering::Relaxed);
                on_change();
            }
            Err(e) => {
                tracing::warn!(error = %e, kind = %kind, "watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
