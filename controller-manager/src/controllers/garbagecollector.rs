//! garbage-collector: deletes dependents whose owners are gone (Background), deletes dependents
//! first for owners in foreground deletion, and orphans dependents of owners with the orphan
//! finalizer. Watches every listable resource's metadata through discovery.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
    Preconditions, PropagationPolicy,
};
use kube::core::PartialObjectMeta;
use kube::discovery::{verbs, Discovery, Scope};
use kube::runtime::watcher::{self, metadata_watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use serde_json::json;
use tokio::sync::Notify;

use super::{is_status, Error};
use crate::context::ControllerContext;

/// Finalizer that makes the GC delete dependents before the owner.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// Finalizer that makes the GC strip owner references from dependents before the owner goes.
pub const ORPHAN_FINALIZER: &str = "orphan";

/// How often discovery is re-read to pick up new resources (custom resources).
const REDISCOVER: Duration = Duration::from_secs(30);
/// Periodic full pass even without events.
const RESYNC: Duration = Duration::from_secs(10);

/// One object in the dependency graph.
#[derive(Clone, Debug)]
struct Node {
    resource: ApiResource,
    namespaced: bool,
    namespace: Option<String>,
    name: String,
    uid: String,
    owners: Vec<OwnerReference>,
    finalizers: Vec<String>,
    deleting: bool,
}

#[derive(Default)]
struct Graph {
    /// Per watched resource (its plural.group/version key): uid -> node. Shared so that a
    /// sweep's snapshot of the graph copies pointers, not strings.
    by_resource: HashMap<String, HashMap<String, Arc<Node>>>,
    synced: HashSet<String>,
}

impl Graph {
    fn nodes(&self) -> impl Iterator<Item = &Arc<Node>> {
        self.by_resource.values().flat_map(|m| m.values())
    }
}

struct Gc {
    client: kube::Client,
    graph: Mutex<Graph>,
    wake: Notify,
    discovery: Mutex<Option<Arc<Discovery>>>,
    /// Dependent/owner uid pairs already reported as invalid cross-namespace references.
    warned: Mutex<HashSet<String>>,
    /// Owners first seen with no (blocking) dependents left, by uid: their finalizer goes only
    /// once that has held for [`SETTLE`], since the graph's watches of different resources are
    /// not ordered (an owner's deletion can arrive before its dependent's creation).
    settling: Mutex<HashMap<String, tokio::time::Instant>>,
}

/// How long an owner must look free of dependents before its GC finalizer is removed.
const SETTLE: Duration = Duration::from_secs(1);

/// Builds the controller.
pub fn start(ctx: &ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error> {
    let gc = Arc::new(Gc {
        client: ctx.client.clone(),
        graph: Mutex::new(Graph::default()),
        wake: Notify::new(),
        discovery: Mutex::new(None),
        warned: Mutex::new(HashSet::new()),
        settling: Mutex::new(HashMap::new()),
    });
    let shutdown = ctx.shutdown.clone();
    Ok(async move {
        tokio::select! {
            _ = shutdown.wait() => {}
            _ = run(gc) => {}
        }
    }
    .boxed())
}

fn key(resource: &ApiResource) -> String {
    format!(
        "{}.{}/{}",
        resource.plural, resource.group, resource.version
    )
}

async fn run(gc: Arc<Gc>) {
    let mut watching: HashSet<String> = HashSet::new();
    let mut last_discovery: Option<tokio::time::Instant> = None;
    loop {
        if last_discovery.is_none_or(|t| t.elapsed() >= REDISCOVER) {
            match Discovery::new(gc.client.clone()).run().await {
                Ok(discovery) => {
                    for group in discovery.groups() {
                        for (resource, caps) in group.recommended_resources() {
                            if !caps.supports_operation(verbs::LIST)
                                || !caps.supports_operation(verbs::WATCH)
                                || !caps.supports_operation(verbs::DELETE)
                            {
                                continue;
                            }
                            if watching.insert(key(&resource)) {
                                let namespaced = caps.scope == Scope::Namespaced;
                                tokio::spawn(watch_resource(gc.clone(), resource, namespaced));
                            }
                        }
                    }
                    *gc.discovery.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(Arc::new(discovery));
                    last_discovery = Some(tokio::time::Instant::now());
                }
                Err(e) => tracing::warn!(error = %e, "garbage collector discovery failed"),
            }
        }
        let all_synced = {
            let graph = gc.graph.lock().unwrap_or_else(|e| e.into_inner());
            watching.iter().all(|k| graph.synced.contains(k))
        };
        if all_synced {
            if let Err(e) = gc.sweep().await {
                tracing::debug!(error = %e, "garbage collection pass failed");
            }
        }
        tokio::select! {
            _ = gc.wake.notified() => {
                // Let a burst of events settle into one pass.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ = tokio::time::sleep(if gc.has_settling() { SETTLE } else { RESYNC }) => {}
        }
    }
}

fn node_of(
    obj: &PartialObjectMeta<DynamicObject>,
    resource: &ApiResource,
    namespaced: bool,
) -> Option<Node> {
    Some(Node {
        resource: resource.clone(),
        namespaced,
        namespace: obj.metadata.namespace.clone(),
        name: obj.metadata.name.clone()?,
        uid: obj.metadata.uid.clone()?,
        owners: obj.metadata.owner_references.clone().unwrap_or_default(),
        finalizers: obj.metadata.finalizers.clone().unwrap_or_default(),
        deleting: obj.metadata.deletion_timestamp.is_some(),
    })
}

async fn watch_resource(gc: Arc<Gc>, resource: ApiResource, namespaced: bool) {
    let k = key(&resource);
    let api: Api<DynamicObject> = Api::all_with(gc.client.clone(), &resource);
    let mut events = metadata_watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut buffer: HashMap<String, Arc<Node>> = HashMap::new();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::debug!(resource = %k, error = %e, "gc watch failed; retrying");
                continue;
            }
        };
        let mut graph = gc.graph.lock().unwrap_or_else(|e| e.into_inner());
        let wake = match event {
            Event::Init => {
                buffer.clear();
                false
            }
            Event::InitApply(obj) => {
                if let Some(node) = node_of(&obj, &resource, namespaced) {
                    buffer.insert(node.uid.clone(), Arc::new(node));
                }
                false
            }
            Event::InitDone => {
                graph
                    .by_resource
                    .insert(k.clone(), std::mem::take(&mut buffer));
                graph.synced.insert(k.clone());
                true
            }
            Event::Apply(obj) => match node_of(&obj, &resource, namespaced) {
                Some(node) => {
                    let node = Arc::new(node);
                    let old = graph
                        .by_resource
                        .entry(k.clone())
                        .or_default()
                        .insert(node.uid.clone(), node.clone());
                    matters(&node) || old.is_some_and(|old| matters(&old))
                }
                None => false,
            },
            Event::Delete(obj) => {
                if let Some(uid) = obj.metadata.uid.as_deref() {
                    if let Some(m) = graph.by_resource.get_mut(&k) {
                        m.remove(uid);
                    }
                }
                // Its dependents may now be orphans.
                true
            }
        };
        drop(graph);
        if wake {
            gc.wake.notify_one();
        }
    }
}

/// Whether an update of `node` can change what a sweep decides: only objects with owners
/// (dependents) and objects being deleted (owners waiting on dependents) take part in a
/// decision. Most updates in an idle cluster, such as Lease renewals and Events, are neither,
/// and waking a full sweep for each of them was most of an idle controller-manager's CPU. The
/// periodic resync still runs every [`RESYNC`].
fn matters(node: &Node) -> bool {
    !node.owners.is_empty() || node.deleting
}

/// What the sweep decided to do with one object.
#[derive(Debug, Clone)]
enum Decision {
    /// Delete it with this propagation policy.
    Delete(PropagationPolicy),
    /// Remove owner references with these uids.
    DropOwners(Vec<String>),
    /// Remove this finalizer (the owner's dependents are handled).
    RemoveFinalizer(&'static str),
}

impl Gc {
    fn api(&self, node: &Node) -> Api<DynamicObject> {
        match (&node.namespace, node.namespaced) {
            (Some(ns), true) => Api::namespaced_with(self.client.clone(), ns, &node.resource),
            _ => Api::all_with(self.client.clone(), &node.resource),
        }
    }

    /// Whether the owner `r` of `dependent` is gone, confirmed against the apiserver when the
    /// graph does not have it.
    async fn owner_absent(
        &self,
        dependent: &Node,
        r: &OwnerReference,
        by_uid: &HashMap<&str, &Node>,
    ) -> bool {
        if let Some(owner) = by_uid.get(r.uid.as_str()) {
            if !owner.namespaced || owner.namespace == dependent.namespace {
                return false;
            }
            // Owner references never cross namespaces. A namespaced dependent's owner is looked
            // for in its own namespace only, so this one counts as absent; a cluster-scoped
            // dependent of a namespaced owner can never resolve and is kept. Upstream warns on
            // both.
            self.invalid_namespace(dependent, r).await;
            return dependent.namespaced;
        }
        let discovery = self
            .discovery
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(discovery) = discovery else {
            return false;
        };
        let gvk = match r.api_version.split_once('/') {
            Some((group, version)) => GroupVersionKind::gvk(group, version, &r.kind),
            None => GroupVersionKind::gvk("", &r.api_version, &r.kind),
        };
        let Some((resource, caps)) = discovery.resolve_gvk(&gvk) else {
            // An owner kind the server does not serve: upstream treats it as absent after a
            // rediscovery; be conservative and keep the dependent.
            return false;
        };
        let api: Api<DynamicObject> = if caps.scope == Scope::Namespaced {
            match (&dependent.namespace, dependent.namespaced) {
                (Some(ns), true) => Api::namespaced_with(self.client.clone(), ns, &resource),
                // A cluster-scoped dependent cannot have a namespaced owner: the reference can
                // never resolve, so the dependent is kept and a warning recorded, as upstream.
                _ => {
                    self.invalid_namespace(dependent, r).await;
                    return false;
                }
            }
        } else {
            Api::all_with(self.client.clone(), &resource)
        };
        match api.get_metadata_opt(&r.name).await {
            Ok(None) => true,
            Ok(Some(owner)) => owner.metadata.uid.as_deref() != Some(r.uid.as_str()),
            Err(_) => false,
        }
    }

    /// Whether `uid` has looked free of dependents for [`SETTLE`]; starts the clock otherwise.
    fn settled(&self, uid: &str, free: &mut HashSet<String>) -> bool {
        free.insert(uid.to_owned());
        let mut settling = self.settling.lock().unwrap_or_else(|e| e.into_inner());
        let now = tokio::time::Instant::now();
        let since = *settling.entry(uid.to_owned()).or_insert(now);
        now.duration_since(since) >= SETTLE
    }

    /// Whether some owner is waiting for [`SETTLE`] to pass (the loop then wakes soon).
    fn has_settling(&self) -> bool {
        !self
            .settling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Records upstream's OwnerRefInvalidNamespace warning on `dependent`, once per reference.
    async fn invalid_namespace(&self, dependent: &Node, r: &OwnerReference) {
        let key = format!("{}/{}", dependent.uid, r.uid);
        if !self
            .warned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key)
        {
            return;
        }
        let object = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some(dependent.resource.api_version.clone()),
            kind: Some(dependent.resource.kind.clone()),
            name: Some(dependent.name.clone()),
            namespace: dependent.namespace.clone(),
            uid: Some(dependent.uid.clone()),
            ..Default::default()
        };
        let message = format!(
            "ownerRef [{}, namespace: {}, name: {}, uid: {}] does not exist in namespace {:?}",
            r.api_version,
            dependent.namespace.as_deref().unwrap_or(""),
            r.name,
            r.uid,
            dependent.namespace.as_deref().unwrap_or(""),
        );
        super::nodeutil::record_event(
            &self.client,
            "garbage-collector-controller",
            object,
            "Warning",
            "OwnerRefInvalidNamespace",
            message,
        )
        .await;
    }

    async fn sweep(&self) -> Result<(), Error> {
        let nodes: Vec<Arc<Node>> = {
            let graph = self.graph.lock().unwrap_or_else(|e| e.into_inner());
            graph.nodes().cloned().collect()
        };
        let by_uid: HashMap<&str, &Node> = nodes.iter().map(|n| (n.uid.as_str(), &**n)).collect();
        let mut dependents: HashMap<&str, Vec<&Node>> = HashMap::new();
        for node in &nodes {
            for r in &node.owners {
                dependents.entry(r.uid.as_str()).or_default().push(node);
            }
        }

        let mut plan: Vec<(Node, Decision)> = Vec::new();
        // Owners that look free of dependents in this pass (the others' clocks restart).
        let mut free: HashSet<String> = HashSet::new();
        // Owners being deleted with a GC finalizer.
        for node in nodes.iter().filter(|n| n.deleting) {
            let deps = dependents
                .get(node.uid.as_str())
                .cloned()
                .unwrap_or_default();
            if node.finalizers.iter().any(|f| f == ORPHAN_FINALIZER) {
                for dep in &deps {
                    plan.push(((*dep).clone(), Decision::DropOwners(vec![node.uid.clone()])));
                }
                if deps.is_empty() && self.settled(&node.uid, &mut free) {
                    plan.push((
                        Node::clone(node),
                        Decision::RemoveFinalizer(ORPHAN_FINALIZER),
                    ));
                }
            } else if node.finalizers.iter().any(|f| f == FOREGROUND_FINALIZER) {
                let mut blocking = 0;
                for dep in &deps {
                    let blocks = dep
                        .owners
                        .iter()
                        .any(|r| r.uid == node.uid && r.block_owner_deletion == Some(true));
                    if blocks {
                        blocking += 1;
                    }
                    if !dep.deleting {
                        let policy = if blocks {
                            PropagationPolicy::Foreground
                        } else {
                            PropagationPolicy::Background
                        };
                        plan.push(((*dep).clone(), Decision::Delete(policy)));
                    }
                }
                if blocking == 0 && self.settled(&node.uid, &mut free) {
                    plan.push((
                        Node::clone(node),
                        Decision::RemoveFinalizer(FOREGROUND_FINALIZER),
                    ));
                }
            }
        }
        self.settling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|uid, _| free.contains(uid));
        // Dependents whose owners are gone.
        for node in nodes.iter().filter(|n| !n.owners.is_empty() && !n.deleting) {
            let mut absent = Vec::new();
            for r in &node.owners {
                if self.owner_absent(node, r, &by_uid).await {
                    absent.push(r.uid.clone());
                }
            }
            if absent.is_empty() {
                continue;
            }
            if absent.len() == node.owners.len() {
                plan.push((
                    Node::clone(node),
                    Decision::Delete(PropagationPolicy::Background),
                ));
            } else {
                plan.push((Node::clone(node), Decision::DropOwners(absent)));
            }
        }

        for (node, decision) in plan {
            if let Err(e) = self.apply(&node, &decision).await {
                tracing::debug!(object = %format!("{}/{}", node.resource.plural, node.name), error = %e, "gc action failed");
            }
        }
        Ok(())
    }

    async fn apply(&self, node: &Node, decision: &Decision) -> Result<(), Error> {
        let api = self.api(node);
        match decision {
            Decision::Delete(policy) => {
                let params = DeleteParams {
                    propagation_policy: Some(policy.clone()),
                    preconditions: Some(Preconditions {
                        uid: Some(node.uid.clone()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                tracing::info!(resource = %node.resource.plural, namespace = ?node.namespace, name = %node.name, ?policy, "garbage collecting dependent");
                match api.delete(&node.name, &params).await {
                    Ok(_) => Ok(()),
                    Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            Decision::DropOwners(uids) => {
                let owners: Vec<&OwnerReference> = node
                    .owners
                    .iter()
                    .filter(|r| !uids.contains(&r.uid))
                    .collect();
                let patch = json!({"metadata": {"ownerReferences": owners}});
                match api
                    .patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if is_status(&e, 404) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            Decision::RemoveFinalizer(finalizer) => {
                let current = match api.get_metadata_opt(&node.name).await? {
                    Some(current) => current,
                    None => return Ok(()),
                };
                let finalizers: Vec<String> = current
                    .finalizers()
                    .iter()
                    .filter(|f| f.as_str() != *finalizer)
                    .cloned()
                    .collect();
                let patch = json!({"metadata": {
                    "finalizers": finalizers,
                    "resourceVersion": current.resource_version(),
                }});
                match api
                    .patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }
}
