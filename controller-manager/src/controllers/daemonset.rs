//! daemonset: runs one pod of each DaemonSet on every node its selector, affinity and tolerations
//! admit, rolls template changes out node by node and keeps the DaemonSet's status current.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::chrono::{DateTime, Utc};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

use super::deployment::resolve;
use super::history::{self, CONTROLLER_REVISION_HASH};
use super::util::{claim_pods, controller_ref, is_available, is_ready};
use super::{drain, error_policy, is_status, Error};
use crate::context::ControllerContext;

/// The label with the DaemonSet's template generation, as upstream puts on its pods.
pub const POD_TEMPLATE_GENERATION: &str = "pod-template-generation";
const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
/// How long unobserved creations/deletions hold back a DaemonSet.
const EXPECTATIONS_TTL: Duration = Duration::from_secs(60);

struct Ctx {
    client: kube::Client,
    pods: Store<Pod>,
    nodes: Store<Node>,
    revisions: Store<ControllerRevision>,
    expectations: Expectations,
}

/// Builds the controller.
pub fn start(ctx: &ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error> {
    let sets = ctx.informers.get::<DaemonSet>();
    let pods = ctx.informers.get::<Pod>();
    let nodes = ctx.informers.get::<Node>();
    let revisions = ctx.informers.get::<ControllerRevision>();
    let state = Arc::new(Ctx {
        client: ctx.client.clone(),
        pods: pods.store(),
        nodes: nodes.store(),
        revisions: revisions.store(),
        expectations: Expectations::default(),
    });
    let ds_store = sets.store();
    let controller = Controller::for_shared_stream(sets.subscribe(), sets.store())
        .owns_shared_stream(pods.subscribe())
        .owns_shared_stream(revisions.subscribe())
        // An orphan pod wakes every DaemonSet whose selector matches it, to be adopted.
        .watches_shared_stream(pods.subscribe(), {
            let ds_store = sets.store();
            move |pod: Arc<Pod>| {
                super::util::orphan_claimants(&ds_store, pod.as_ref(), |ds: &DaemonSet| {
                    ds.spec.as_ref().map(|s| &s.selector)
                })
            }
        })
        // Any node change may change where every DaemonSet should run.
        .watches_shared_stream(nodes.subscribe(), move |_node: Arc<Node>| {
            ds_store
                .state()
                .iter()
                .map(|ds| ObjectRef::from_obj(ds.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(super::stopped(&ctx.shutdown))
        .with_config(super::workers(ctx.config.concurrency.daemonset));
    Ok(drain("daemonset", controller.run(reconcile, error_policy, state)).boxed())
}

/// Pod names created and deleted, and when last recorded.
type Pending = (HashSet<String>, HashSet<String>, Instant);

/// Pods created or deleted and not yet seen so in the cache, per DaemonSet.
#[derive(Default)]
struct Expectations {
    inner: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    fn record(&self, key: &str, adds: Vec<String>, dels: Vec<String>) {
        if adds.is_empty() && dels.is_empty() {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let entry = inner
            .entry(key.to_owned())
            .or_insert_with(|| (HashSet::new(), HashSet::new(), Instant::now()));
        entry.0.extend(adds);
        entry.1.extend(dels);
        entry.2 = Instant::now();
    }

    /// Whether the cache reflects every recorded action; `present` maps pod names to whether
    /// they are being deleted.
    fn satisfied(&self, key: &str, present: &HashMap<String, bool>) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some((adds, dels, since)) = inner.get_mut(key) else {
            return true;
        };
        adds.retain(|n| !present.contains_key(n));
        dels.retain(|n| present.get(n).is_some_and(|deleting| !deleting));
        if (adds.is_empty() && dels.is_empty()) || since.elapsed() > EXPECTATIONS_TTL {
            inner.remove(key);
            return true;
        }
        false
    }
}

/// Adds the tolerations upstream gives every DaemonSet pod, so node conditions that would keep
/// ordinary pods away do not evict or block daemons.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in wanted {
        let present = tolerations.iter().any(|t| {
            t.key.as_deref() == Some(key)
                && t.effect.as_deref() == Some(effect)
                && t.operator.as_deref() == Some("Exists")
        });
        if !present {
            tolerations.push(Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some(effect.into()),
                ..Toleration::default()
            });
        }
    }
}

/// Whether `toleration` tolerates `taint`, as upstream's `ToleratesTaint`.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            !key.is_empty()
                && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(number),
                values.first().and_then(|b| number(b)),
            ) else {
                return false;
            };
            if req.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether `node` satisfies one node selector term (an empty term matches nothing).
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            let value = if r.key == "metadata.name" {
                node.metadata.name.as_deref()
            } else {
                None
            };
            requirement_matches(r, value)
        })
}

/// Whether the pod's nodeSelector and required node affinity admit `node`.
pub fn fits_node_affinity(spec: &PodSpec, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if let Some(selector) = &spec.node_selector {
        if selector.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)))
}

/// Where a daemon pod belongs on a node: whether a new one should be placed there, and whether
/// one already there may stay (only untolerated NoExecute taints evict).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub should_run: bool,
    pub should_continue_running: bool,
}

/// Upstream's `NodeShouldRunDaemonPod` for a pod spec that already carries the daemon tolerations.
pub fn placement(spec: &PodSpec, node: &Node) -> Placement {
    if let Some(name) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        if Some(name) != node.metadata.name.as_deref() {
            return Placement {
                should_run: false,
                should_continue_running: false,
            };
        }
    }
    if !fits_node_affinity(spec, node) {
        return Placement {
            should_run: false,
            should_continue_running: false,
        };
    }
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let untolerated = |effect: &str| {
        taints
            .iter()
            .any(|t| t.effect == effect && !tolerations.iter().any(|tol| tolerates(tol, t)))
    };
    let no_execute = untolerated("NoExecute");
    Placement {
        should_run: !no_execute && !untolerated("NoSchedule"),
        should_continue_running: !no_execute,
    }
}

/// The node a daemon pod is bound to, or the one its `metadata.name` affinity targets.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(name) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(name.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|f| f.key == "metadata.name" && f.operator == "In")
        .and_then(|f| f.values.as_ref()?.first().cloned())
}

/// Pins the pod to `node` the way upstream does: one required term with a `metadata.name` field
/// requirement, which the scheduler honours.
fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.to_owned()]),
            }]),
            match_expressions: None,
        }],
    });
}

fn pod_hash(pod: &Pod) -> Option<&str> {
    pod.labels()
        .get(CONTROLLER_REVISION_HASH)
        .map(String::as_str)
}

fn created(pod: &Pod) -> Option<DateTime<Utc>> {
    pod.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

fn is_deleting(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// What to do on one node: create a pod there, and which pods to delete.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NodeActions {
    pub create: bool,
    pub delete: Vec<String>,
}

/// Upstream's `podsShouldBeOnNode`: places a missing pod, drops failed and surplus ones (keeping
/// the oldest, or with surge the oldest of each revision), evicts from nodes it may not stay on.
pub fn node_actions(
    placement: Placement,
    pods: &[&Pod],
    hash: &str,
    surge: bool,
    min_ready: i32,
    now: DateTime<Utc>,
) -> NodeActions {
    let mut actions = NodeActions::default();
    if placement.should_run && pods.is_empty() {
        actions.create = true;
        return actions;
    }
    if !placement.should_continue_running {
        actions.delete = pods
            .iter()
            .filter(|p| !is_deleting(p))
            .map(|p| p.name_any())
            .collect();
        return actions;
    }
    let mut running: Vec<&Pod> = Vec::new();
    for pod in pods.iter().filter(|p| !is_deleting(p)) {
        if matches!(phase(pod), "Failed" | "Succeeded") {
            actions.delete.push(pod.name_any());
        } else {
            running.push(pod);
        }
    }
    running.sort_by_key(|p| (created(p), p.name_any()));
    if !surge {
        actions
            .delete
            .extend(running.iter().skip(1).map(|p| p.name_any()));
        return actions;
    }
    let mut newest: Option<&Pod> = None;
    let mut oldest_old: Option<&Pod> = None;
    for pod in running {
        let slot = if pod_hash(pod) == Some(hash) {
            &mut newest
        } else {
            &mut oldest_old
        };
        if slot.is_none() {
            *slot = Some(pod);
        } else {
            actions.delete.push(pod.name_any());
        }
    }
    if let (Some(new), Some(old)) = (newest, oldest_old) {
        if is_available(new, min_ready, now) {
            actions.delete.push(old.name_any());
        }
    }
    actions
}

/// The updated and the old pod on a node, or `None` when there is more than one of either.
fn updated_and_old<'a>(pods: &[&'a Pod], hash: &str) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
    let (mut new, mut old) = (None, None);
    for pod in pods.iter().filter(|p| !is_deleting(p)) {
        let slot = if pod_hash(pod) == Some(hash) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(*pod);
    }
    Some((new, old))
}

/// Upstream's RollingUpdate step over the nodes a daemon should run on: which old pods to delete
/// and on which nodes to surge a new pod, within maxUnavailable and maxSurge.
pub fn rolling_update(
    nodes: &[(String, Vec<&Pod>)],
    hash: &str,
    max_unavailable: i32,
    max_surge: i32,
    min_ready: i32,
    now: DateTime<Utc>,
) -> (Vec<String>, Vec<String>) {
    let available = |p: &Pod| is_available(p, min_ready, now);
    let mut delete = Vec::new();
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut replace_now = Vec::new();
        let mut candidates = Vec::new();
        for (_, pods) in nodes {
            match updated_and_old(pods, hash) {
                None | Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
                Some((Some(new), None)) => unavailable += i32::from(!available(new)),
                Some((None, Some(old))) if !available(old) => {
                    // Already unavailable: replacing it costs nothing more.
                    unavailable += 1;
                    replace_now.push(old.name_any());
                }
                Some((None, Some(old))) => candidates.push(old.name_any()),
            }
        }
        let budget = usize::try_from((max_unavailable - unavailable).max(0)).unwrap_or(0);
        delete.extend(replace_now);
        delete.extend(candidates.into_iter().take(budget));
        return (delete, Vec::new());
    }
    let mut surged = 0;
    let mut create_now = Vec::new();
    let mut candidates = Vec::new();
    for (node, pods) in nodes {
        match updated_and_old(pods, hash) {
            None => surged += 1,
            Some((_, None)) => {}
            Some((None, Some(old))) if !available(old) => create_now.push(node.clone()),
            Some((None, Some(_))) => candidates.push(node.clone()),
            Some((Some(new), Some(old))) => {
                if available(new) {
                    delete.push(old.name_any());
                } else {
                    surged += 1;
                }
            }
        }
    }
    let budget = usize::try_from((max_surge - surged).max(0)).unwrap_or(0);
    create_now.extend(candidates.into_iter().take(budget));
    (delete, create_now)
}

fn new_pod(
    ds: &DaemonSet,
    node: &str,
    hash: &str,
    generation: Option<&String>,
) -> Result<Pod, Error> {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .ok_or(Error::MissingField("spec.template"))?;
    let meta = template.metadata.unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(CONTROLLER_REVISION_HASH.into(), hash.to_owned());
    if let Some(g) = generation {
        labels.insert(POD_TEMPLATE_GENERATION.into(), g.clone());
    }
    let mut spec = template
        .spec
        .ok_or(Error::MissingField("spec.template.spec"))?;
    add_daemon_tolerations(&mut spec);
    pin_to_node(&mut spec, node);
    Ok(Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.name_any())),
            namespace: ds.namespace(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: controller_ref(ds).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    })
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = ds
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = ds.name_any();
    let key = format!("{ns}/{name}");
    let uid = ds.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let spec = ds.spec.clone().ok_or(Error::MissingField("spec"))?;
    let now = Utc::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);

    let owner = history::Owner {
        namespace: &ns,
        name: &name,
        uid: &uid,
        owner_ref: controller_ref(ds.as_ref()).ok_or(Error::MissingField("metadata.uid"))?,
        template: &spec.template,
        annotations: ds.annotations().clone(),
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
    };
    let hist = history::sync(
        &ctx.client,
        &owner,
        history::claim(
            &ctx.client,
            &ctx.revisions,
            &ns,
            &owner.owner_ref,
            &spec.selector,
        )
        .await?,
    )
    .await?;
    let hash = hist
        .update
        .labels()
        .get(CONTROLLER_REVISION_HASH)
        .cloned()
        .ok_or(Error::MissingField("controller-revision-hash"))?;

    let mut template_spec = spec.template.spec.clone().unwrap_or_default();
    add_daemon_tolerations(&mut template_spec);
    let nodes = ctx.nodes.state();
    let node_names: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();

    // Matching orphans are adopted (e.g. after `kubectl delete daemonset --cascade=orphan` and a
    // re-create), as upstream's ControllerRefManager does.
    let in_ns = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()));
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pods: Vec<Arc<Pod>> = claim_pods(
        &pod_api,
        in_ns,
        &owner.owner_ref,
        false,
        &spec.selector,
        |_| true,
    )
    .await?
    .into_iter()
    .filter(|p| !(is_deleting(p) && matches!(phase(p), "Failed" | "Succeeded")))
    .collect();
    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    let mut orphans = Vec::new();
    for pod in &pods {
        match target_node(pod) {
            Some(n) if node_names.contains(&n) => by_node.entry(n).or_default().push(pod.as_ref()),
            // Unbound pods for nodes that are gone, as upstream; bound ones are podgc's.
            _ if !is_deleting(pod)
                && pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_ref())
                    .is_none() =>
            {
                orphans.push(pod.name_any());
            }
            _ => {}
        }
    }
    let placements: Vec<(String, Placement)> = nodes
        .iter()
        .map(|n| (n.name_any(), placement(&template_spec, n)))
        .collect();

    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate";
    let desired =
        i32::try_from(placements.iter().filter(|(_, p)| p.should_run).count()).unwrap_or(i32::MAX);
    let (max_surge, max_unavailable) = if rolling {
        let ru = strategy.rolling_update.clone().unwrap_or_default();
        let surge = resolve(ru.max_surge.as_ref(), 0, desired, true);
        let unavailable = resolve(ru.max_unavailable.as_ref(), 0, desired, true);
        if surge == 0 && unavailable == 0 {
            (0, 1)
        } else {
            (surge, unavailable)
        }
    } else {
        (0, 1)
    };

    let present: HashMap<String, bool> = pods
        .iter()
        .map(|p| (p.name_any(), is_deleting(p)))
        .collect();
    let mut failure = None;
    if ctx.expectations.satisfied(&key, &present) {
        let mut create_on = Vec::new();
        let mut delete = orphans;
        for (node, place) in &placements {
            let on_node = by_node.get(node).cloned().unwrap_or_default();
            let a = node_actions(*place, &on_node, &hash, max_surge > 0, min_ready, now);
            if a.create {
                create_on.push(node.clone());
            }
            delete.extend(a.delete);
        }
        if create_on.is_empty() && delete.is_empty() && rolling {
            let eligible: Vec<(String, Vec<&Pod>)> = placements
                .iter()
                .filter(|(_, p)| p.should_run)
                .map(|(n, _)| (n.clone(), by_node.get(n).cloned().unwrap_or_default()))
                .collect();
            let (d, c) =
                rolling_update(&eligible, &hash, max_unavailable, max_surge, min_ready, now);
            delete = d;
            create_on = c;
        }
        let generation = ds.annotations().get(TEMPLATE_GENERATION_ANNOTATION);
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        let mut added = Vec::new();
        for node in &create_on {
            let pod = new_pod(&ds, node, &hash, generation)?;
            match api.create(&PostParams::default(), &pod).await {
                Ok(p) => {
                    super::util::emit(
                        &ctx.client,
                        "daemonset-controller",
                        ds.as_ref(),
                        "Normal",
                        "SuccessfulCreate",
                        format!("Created pod: {}", p.name_any()),
                    );
                    added.push(p.name_any());
                }
                Err(e) => {
                    super::util::emit(
                        &ctx.client,
                        "daemonset-controller",
                        ds.as_ref(),
                        "Warning",
                        "FailedCreate",
                        format!("Error creating: {}", super::util::api_message(&e)),
                    );
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        let mut removed = Vec::new();
        for pod in &delete {
            let uid = pods
                .iter()
                .find(|p| &p.name_any() == pod)
                .and_then(|p| p.uid());
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid,
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(pod, &params).await {
                Ok(_) => removed.push(pod.clone()),
                Err(e) if is_status(&e, 404) => {}
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        if !added.is_empty() || !removed.is_empty() {
            tracing::info!(daemonset = %key, created = added.len(), deleted = removed.len(), "synced daemon pods");
        }
        ctx.expectations.record(&key, added, removed);
        if create_on.is_empty() && delete.is_empty() {
            let live: HashSet<&str> = pods.iter().filter_map(|p| pod_hash(p)).collect();
            let in_use: HashSet<String> = hist
                .all
                .iter()
                .filter(|r| {
                    r.name_any() == hist.update.name_any()
                        || r.labels()
                            .get(CONTROLLER_REVISION_HASH)
                            .is_some_and(|h| live.contains(h.as_str()))
                })
                .map(|r| r.name_any())
                .collect();
            history::truncate(
                &ctx.client,
                &ns,
                &hist.all,
                &in_use,
                spec.revision_history_limit,
            )
            .await?;
        }
    }

    let status = compute_status(
        &ds,
        &placements,
        &by_node,
        &hash,
        min_ready,
        now,
        hist.collision_count,
    );
    if ds.status.as_ref() != Some(&status) {
        let mut updated = ds.as_ref().clone();
        updated.status = Some(status.clone());
        let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
        let data = serde_json::to_vec(&updated)?;
        match api
            .replace_status(&name, &PostParams::default(), data)
            .await
        {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(message) = failure {
        return Err(Error::Other(message));
    }
    if min_ready > 0 && status.number_ready > status.number_available.unwrap_or(0) {
        return Ok(crate::controllers::requeue_after(Duration::from_secs(
            u64::try_from(min_ready).unwrap_or(1),
        )));
    }
    Ok(crate::controllers::requeue_after(Duration::from_secs(60)))
}

fn compute_status(
    ds: &DaemonSet,
    placements: &[(String, Placement)],
    by_node: &BTreeMap<String, Vec<&Pod>>,
    hash: &str,
    min_ready: i32,
    now: DateTime<Utc>,
    collision_count: i32,
) -> DaemonSetStatus {
    let mut s = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        collision_count: (collision_count > 0).then_some(collision_count),
        conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
        ..DaemonSetStatus::default()
    };
    let mut updated = 0;
    for (node, place) in placements {
        let mut pods = by_node.get(node).cloned().unwrap_or_default();
        if place.should_run {
            s.desired_number_scheduled += 1;
            if pods.is_empty() {
                continue;
            }
            s.current_number_scheduled += 1;
            // The oldest running pod stands for the node, as upstream.
            pods.sort_by_key(|p| (phase(p) != "Running", created(p), p.name_any()));
            let pod = pods[0];
            if is_ready(pod) {
                s.number_ready += 1;
                if is_available(pod, min_ready, now) {
                    *s.number_available.get_or_insert(0) += 1;
                }
            }
            if pod_hash(pod) == Some(hash) {
                updated += 1;
            }
        } else if !pods.is_empty() {
            s.number_misscheduled += 1;
        }
    }
    s.updated_number_scheduled = Some(updated);
    let unavailable = s.desired_number_scheduled - s.number_available.unwrap_or(0);
    s.number_unavailable = (unavailable > 0).then_some(unavailable);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                taints: Some(
                    taints
                        .iter()
                        .map(|(k, e)| Taint {
                            key: k.to_string(),
                            effect: e.to_string(),
                            ..Taint::default()
                        })
                        .collect(),
                ),
                ..NodeSpec::default()
            }),
            status: None,
        }
    }

    fn daemon_spec(selector: &[(&str, &str)], tolerations: Vec<Toleration>) -> PodSpec {
        let mut spec = PodSpec {
            node_selector: (!selector.is_empty()).then(|| {
                selector
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            }),
            tolerations: Some(tolerations),
            ..PodSpec::default()
        };
        add_daemon_tolerations(&mut spec);
        spec
    }

    #[test]
    fn node_eligibility_follows_selector_affinity_and_taints() {
        let gpu_toleration = Toleration {
            key: Some("gpu".into()),
            operator: Some("Exists".into()),
            ..Toleration::default()
        };
        let run = Placement {
            should_run: true,
            should_continue_running: true,
        };
        let never = Placement {
            should_run: false,
            should_continue_running: false,
        };
        let cases = [
            (
                "plain node",
                daemon_spec(&[], vec![]),
                node("a", &[], &[]),
                run,
            ),
            (
                "selector mismatch",
                daemon_spec(&[("disk", "ssd")], vec![]),
                node("a", &[("disk", "hdd")], &[]),
                never,
            ),
            (
                "selector match",
                daemon_spec(&[("disk", "ssd")], vec![]),
                node("a", &[("disk", "ssd")], &[]),
                run,
            ),
            (
                "untolerated NoSchedule keeps new pods away but lets old ones stay",
                daemon_spec(&[], vec![]),
                node("a", &[], &[("gpu", "NoSchedule")]),
                Placement {
                    should_run: false,
                    should_continue_running: true,
                },
            ),
            (
                "untolerated NoExecute evicts",
                daemon_spec(&[], vec![]),
                node("a", &[], &[("gpu", "NoExecute")]),
                never,
            ),
            (
                "tolerated taint",
                daemon_spec(&[], vec![gpu_toleration]),
                node("a", &[], &[("gpu", "NoSchedule")]),
                run,
            ),
            (
                "PreferNoSchedule is ignored",
                daemon_spec(&[], vec![]),
                node("a", &[], &[("gpu", "PreferNoSchedule")]),
                run,
            ),
            (
                "automatic tolerations cover not-ready and unschedulable",
                daemon_spec(&[], vec![]),
                node(
                    "a",
                    &[],
                    &[
                        ("node.kubernetes.io/not-ready", "NoExecute"),
                        ("node.kubernetes.io/unschedulable", "NoSchedule"),
                    ],
                ),
                run,
            ),
            (
                "network-unavailable is tolerated only with hostNetwork",
                daemon_spec(&[], vec![]),
                node(
                    "a",
                    &[],
                    &[("node.kubernetes.io/network-unavailable", "NoSchedule")],
                ),
                Placement {
                    should_run: false,
                    should_continue_running: true,
                },
            ),
        ];
        for (name, spec, node, want) in cases {
            assert_eq!(placement(&spec, &node), want, "{name}");
        }
        let mut host = PodSpec {
            host_network: Some(true),
            ..PodSpec::default()
        };
        add_daemon_tolerations(&mut host);
        let n = node(
            "a",
            &[],
            &[("node.kubernetes.io/network-unavailable", "NoSchedule")],
        );
        assert!(placement(&host, &n).should_run);
    }

    #[test]
    fn required_affinity_terms_are_ored_and_fields_match_the_name() {
        let mut spec = PodSpec::default();
        pin_to_node(&mut spec, "b");
        assert!(!fits_node_affinity(&spec, &node("a", &[], &[])));
        assert!(fits_node_affinity(&spec, &node("b", &[], &[])));
        let term = |key: &str, op: &str, values: &[&str]| NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: Some(values.iter().map(|v| v.to_string()).collect()),
            }]),
            match_fields: None,
        };
        spec.affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![
                        term("zone", "In", &["x"]),
                        term("cpus", "Gt", &["4"]),
                    ],
                }),
                ..NodeAffinity::default()
            }),
            ..Affinity::default()
        });
        assert!(fits_node_affinity(&spec, &node("a", &[("zone", "x")], &[])));
        assert!(fits_node_affinity(&spec, &node("a", &[("cpus", "8")], &[])));
        assert!(!fits_node_affinity(
            &spec,
            &node("a", &[("cpus", "2")], &[])
        ));
        assert!(!term_matches(
            &NodeSelectorTerm::default(),
            &node("a", &[], &[])
        ));
    }

    fn pod(name: &str, hash: &str, ready: bool, age_secs: i64) -> Pod {
        let mut spec = PodSpec::default();
        pin_to_node(&mut spec, "n");
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([(CONTROLLER_REVISION_HASH.to_owned(), hash.to_owned())].into()),
                creation_timestamp: Some(Time(
                    Utc::now() - k8s_openapi::chrono::Duration::seconds(age_secs),
                )),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn node_actions_create_trim_and_evict() {
        let run = Placement {
            should_run: true,
            should_continue_running: true,
        };
        let now = Utc::now();
        assert!(node_actions(run, &[], "h", false, 0, now).create);
        let (old, young) = (pod("old", "h", true, 100), pod("young", "h", true, 10));
        let a = node_actions(run, &[&young, &old], "h", false, 0, now);
        assert_eq!(a.delete, ["young"]);
        let evict = Placement {
            should_run: false,
            should_continue_running: false,
        };
        assert_eq!(
            node_actions(evict, &[&old], "h", false, 0, now).delete,
            ["old"]
        );
        // With surge, an available new pod retires the old one.
        let (prev, next) = (pod("prev", "old", true, 100), pod("next", "h", true, 1));
        assert_eq!(
            node_actions(run, &[&prev, &next], "h", true, 0, now).delete,
            ["prev"]
        );
        let unready = pod("next", "h", false, 1);
        assert!(node_actions(run, &[&prev, &unready], "h", true, 0, now)
            .delete
            .is_empty());
        assert_eq!(target_node(&old).as_deref(), Some("n"));
    }

    #[test]
    fn rolling_update_respects_max_unavailable_and_max_surge() {
        let now = Utc::now();
        let olds: Vec<Pod> = (0..4)
            .map(|i| pod(&format!("p{i}"), "old", true, 10))
            .collect();
        let nodes: Vec<(String, Vec<&Pod>)> = olds
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("n{i}"), vec![p]))
            .collect();
        let (delete, create) = rolling_update(&nodes, "new", 1, 0, 0, now);
        assert_eq!((delete.len(), create.len()), (1, 0));
        let (delete, _) = rolling_update(&nodes, "new", 2, 0, 0, now);
        assert_eq!(delete.len(), 2);
        // One node already missing its pod uses up the budget.
        let mut short = nodes.clone();
        short[0].1.clear();
        assert!(rolling_update(&short, "new", 1, 0, 0, now).0.is_empty());
        // Unready new pods count as unavailable.
        let fresh = pod("fresh", "new", false, 1);
        short[0].1.push(&fresh);
        assert!(rolling_update(&short, "new", 1, 0, 0, now).0.is_empty());
        // Surge: new pods on up to maxSurge nodes, nothing deleted yet.
        let (delete, create) = rolling_update(&nodes, "new", 0, 2, 0, now);
        assert_eq!((delete.len(), create.len()), (0, 2));
    }
}
