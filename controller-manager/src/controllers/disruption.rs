//! disruption: keeps each PodDisruptionBudget's status (expected, healthy and desired pod counts,
//! how many disruptions are allowed now) so the eviction subresource can honour the budget.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{
    PodDisruptionBudget, PodDisruptionBudgetSpec, PodDisruptionBudgetStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::chrono::{DateTime, Utc};
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

use super::util::{controller_of, is_ready, selector_matches};
use super::{drain, error_policy, is_status, Error};
use crate::context::ControllerContext;

/// The condition this controller maintains.
pub const CONDITION: &str = "DisruptionAllowed";
/// Reason when at least one disruption is allowed.
pub const SUFFICIENT_PODS: &str = "SufficientPods";
/// Reason when no disruption is allowed.
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
/// Reason when the status could not be computed (no disruption is allowed then).
pub const SYNC_FAILED: &str = "SyncFailed";
/// How long an eviction recorded in `disruptedPods` is trusted before the pod counts again,
/// upstream's DeletionTimeout.
const DELETION_TIMEOUT: Duration = Duration::from_secs(120);
/// Periodic recheck even without events.
const RESYNC: Duration = Duration::from_secs(300);

struct Ctx {
    client: kube::Client,
    pods: Store<Pod>,
    replica_sets: Store<ReplicaSet>,
    deployments: Store<Deployment>,
    stateful_sets: Store<StatefulSet>,
    replication_controllers: Store<ReplicationController>,
}

/// Builds the controller.
pub fn start(ctx: &ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error> {
    let pdbs = ctx.informers.get::<PodDisruptionBudget>();
    let pods = ctx.informers.get::<Pod>();
    let replica_sets = ctx.informers.get::<ReplicaSet>();
    let deployments = ctx.informers.get::<Deployment>();
    let stateful_sets = ctx.informers.get::<StatefulSet>();
    let rcs = ctx.informers.get::<ReplicationController>();
    let state = Arc::new(Ctx {
        client: ctx.client.clone(),
        pods: pods.store(),
        replica_sets: replica_sets.store(),
        deployments: deployments.store(),
        stateful_sets: stateful_sets.store(),
        replication_controllers: rcs.store(),
    });
    let for_pod = pdbs.store();
    let (s1, s2, s3, s4) = (pdbs.store(), pdbs.store(), pdbs.store(), pdbs.store());
    let controller = Controller::for_shared_stream(pdbs.subscribe(), pdbs.store())
        .watches_shared_stream(pods.subscribe(), move |pod: Arc<Pod>| {
            budgets_for_pod(&for_pod, &pod)
        })
        .watches_shared_stream(replica_sets.subscribe(), move |o: Arc<ReplicaSet>| {
            budgets_in(&s1, o.namespace())
        })
        .watches_shared_stream(deployments.subscribe(), move |o: Arc<Deployment>| {
            budgets_in(&s2, o.namespace())
        })
        .watches_shared_stream(stateful_sets.subscribe(), move |o: Arc<StatefulSet>| {
            budgets_in(&s3, o.namespace())
        })
        .watches_shared_stream(rcs.subscribe(), move |o: Arc<ReplicationController>| {
            budgets_in(&s4, o.namespace())
        })
        .graceful_shutdown_on(super::stopped(&ctx.shutdown))
        .with_config(super::workers(1));
    Ok(drain("disruption", controller.run(reconcile, error_policy, state)).boxed())
}

fn budgets_in(
    pdbs: &Store<PodDisruptionBudget>,
    ns: Option<String>,
) -> Vec<ObjectRef<PodDisruptionBudget>> {
    let Some(ns) = ns else { return Vec::new() };
    pdbs.state()
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .map(|p| ObjectRef::from_obj(&**p))
        .collect()
}

fn budgets_for_pod(
    pdbs: &Store<PodDisruptionBudget>,
    pod: &Pod,
) -> Vec<ObjectRef<PodDisruptionBudget>> {
    let labels = pod.labels();
    pdbs.state()
        .iter()
        .filter(|p| p.metadata.namespace == pod.metadata.namespace)
        .filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_some_and(|sel| selector_matches(sel, labels))
        })
        .map(|p| ObjectRef::from_obj(&**p))
        .collect()
}

/// `value` as a count: an integer as is, `N%` of `total` rounded up or down.
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match value {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let percent: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let product = percent * i64::from(total);
            let v = if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            Ok(v as i32)
        }
    }
}

/// The scale of the workload that controls a pod, found through its controller reference.
pub trait ScaleFinder {
    /// `(uid of the scaling controller, replicas)` for a pod's controller reference.
    fn scale_of(&self, ns: &str, owner: &OwnerReference) -> Option<(String, i32)>;
}

/// `(expectedPods, desiredHealthy)` for a budget over `pods`.
pub fn expected_and_desired(
    spec: &PodDisruptionBudgetSpec,
    pods: &[Arc<Pod>],
    ns: &str,
    finder: &dyn ScaleFinder,
) -> Result<(i32, i32), String> {
    if let Some(max_unavailable) = &spec.max_unavailable {
        let expected = expected_scale(pods, ns, finder)?;
        let max = scaled_value(max_unavailable, expected, true)?;
        return Ok((expected, (expected - max).max(0)));
    }
    match &spec.min_available {
        Some(IntOrString::Int(i)) => Ok((pods.len() as i32, *i)),
        Some(pct @ IntOrString::String(_)) => {
            let expected = expected_scale(pods, ns, finder)?;
            Ok((expected, scaled_value(pct, expected, true)?))
        }
        None => Ok((pods.len() as i32, 0)),
    }
}

/// Sum of the replicas of every controller owning one of `pods`, each controller once. Pods
/// without a controller are left out, as upstream does.
fn expected_scale(pods: &[Arc<Pod>], ns: &str, finder: &dyn ScaleFinder) -> Result<i32, String> {
    let mut scales: HashMap<String, i32> = HashMap::new();
    for pod in pods {
        let Some(owner) = controller_of(&**pod) else {
            continue;
        };
        let (uid, scale) = finder
            .scale_of(ns, owner)
            .ok_or_else(|| format!("found no controllers for pod {:?}", pod.name_any()))?;
        scales.insert(uid, scale);
    }
    Ok(scales.values().sum())
}

/// Entries of `disruptedPods` still pending (pod not yet deleted, eviction not older than the
/// deletion timeout), and when the earliest of them expires.
pub fn live_disrupted_pods(
    recorded: &BTreeMap<String, Time>,
    pods: &[Arc<Pod>],
    now: DateTime<Utc>,
) -> (BTreeMap<String, Time>, Option<DateTime<Utc>>) {
    let timeout = k8s_openapi::chrono::Duration::from_std(DELETION_TIMEOUT)
        .expect("two minutes fits a chrono duration");
    let mut kept = BTreeMap::new();
    let mut recheck: Option<DateTime<Utc>> = None;
    for pod in pods {
        let name = pod.name_any();
        let Some(at) = recorded.get(&name) else {
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let expires = at.0 + timeout;
        if expires < now {
            continue;
        }
        recheck = Some(recheck.map_or(expires, |r| r.min(expires)));
        kept.insert(name, at.clone());
    }
    (kept, recheck)
}

/// Pods that are Ready, not being deleted and not recorded as being evicted.
pub fn count_healthy(pods: &[Arc<Pod>], disrupted: &BTreeMap<String, Time>) -> i32 {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !disrupted.contains_key(&p.name_any()))
        .filter(|p| is_ready(p))
        .count() as i32
}

/// The `DisruptionAllowed` condition, keeping the transition time when the status is unchanged.
fn condition(
    old: Option<&Vec<Condition>>,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Condition {
    let status = if status { "True" } else { "False" };
    let since = old
        .into_iter()
        .flatten()
        .find(|c| c.type_ == CONDITION && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: CONDITION.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

/// The status a budget should have.
pub fn desired_status(
    pdb: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
    finder: &dyn ScaleFinder,
    now: DateTime<Utc>,
) -> (PodDisruptionBudgetStatus, Option<DateTime<Utc>>) {
    let old = pdb.status.as_ref();
    let old_conditions = old.and_then(|s| s.conditions.as_ref());
    let generation = pdb.metadata.generation;
    let ns = pdb.metadata.namespace.clone().unwrap_or_default();
    let spec = pdb.spec.clone().unwrap_or_default();
    let computed = expected_and_desired(&spec, pods, &ns, finder);
    let (expected, desired) = match computed {
        Ok(v) => v,
        Err(message) => {
            // Fail safe: no disruptions while the budget cannot be evaluated.
            let mut status = old.cloned().unwrap_or_default();
            status.disruptions_allowed = 0;
            status.conditions = Some(vec![condition(
                old_conditions,
                false,
                SYNC_FAILED,
                message,
                generation,
                now,
            )]);
            return (status, None);
        }
    };
    let recorded = old
        .and_then(|s| s.disrupted_pods.clone())
        .unwrap_or_default();
    let (disrupted, recheck) = live_disrupted_pods(&recorded, pods, now);
    let healthy = count_healthy(pods, &disrupted);
    let allowed = if expected <= 0 {
        0
    } else {
        (healthy - desired).max(0)
    };
    let cond = if allowed > 0 {
        condition(
            old_conditions,
            true,
            SUFFICIENT_PODS,
            String::new(),
            generation,
            now,
        )
    } else {
        condition(
            old_conditions,
            false,
            INSUFFICIENT_PODS,
            String::new(),
            generation,
            now,
        )
    };
    let status = PodDisruptionBudgetStatus {
        current_healthy: healthy,
        desired_healthy: desired,
        expected_pods: expected,
        disruptions_allowed: allowed,
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        observed_generation: generation,
        conditions: Some(vec![cond]),
    };
    (status, recheck)
}

impl ScaleFinder for Ctx {
    fn scale_of(&self, ns: &str, owner: &OwnerReference) -> Option<(String, i32)> {
        let group = owner.api_version.split('/').rev().nth(1).unwrap_or("");
        let same = |uid: Option<&String>| uid == Some(&owner.uid);
        match (group, owner.kind.as_str()) {
            ("apps", "ReplicaSet") => {
                let rs = self
                    .replica_sets
                    .get(&ObjectRef::new(&owner.name).within(ns))?;
                if !same(rs.metadata.uid.as_ref()) {
                    return None;
                }
                if let Some(dref) = controller_of(&*rs).filter(|r| r.kind == "Deployment") {
                    let d = self
                        .deployments
                        .get(&ObjectRef::new(&dref.name).within(ns))?;
                    if d.metadata.uid.as_ref() != Some(&dref.uid) {
                        return None;
                    }
                    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    return Some((dref.uid.clone(), replicas));
                }
                let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                Some((owner.uid.clone(), replicas))
            }
            ("apps", "StatefulSet") => {
                let ss = self
                    .stateful_sets
                    .get(&ObjectRef::new(&owner.name).within(ns))?;
                same(ss.metadata.uid.as_ref()).then_some(())?;
                let replicas = ss.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                Some((owner.uid.clone(), replicas))
            }
            ("", "ReplicationController") => {
                let rc = self
                    .replication_controllers
                    .get(&ObjectRef::new(&owner.name).within(ns))?;
                same(rc.metadata.uid.as_ref()).then_some(())?;
                let replicas = rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                Some((owner.uid.clone(), replicas))
            }
            _ => None,
        }
    }
}

async fn reconcile(pdb: Arc<PodDisruptionBudget>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if pdb.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = pdb
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    // A budget without a selector selects nothing; an empty one selects every pod.
    let selector = pdb.spec.as_ref().and_then(|s| s.selector.clone());
    let pods: Vec<Arc<Pod>> = match &selector {
        None => Vec::new(),
        Some(sel) => ctx
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
            .filter(|p| selector_matches(sel, p.labels()))
            .collect(),
    };
    let now = Utc::now();
    let (status, recheck) = desired_status(&pdb, &pods, &*ctx, now);
    if !same_status(pdb.status.as_ref(), &status) {
        let mut updated = (*pdb).clone();
        updated.status = Some(status);
        let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &ns);
        let body = serde_json::to_vec(&updated)?;
        match api
            .replace_status(&pdb.name_any(), &PostParams::default(), body)
            .await
        {
            Ok(_) => {}
            Err(e) if is_status(&e, 409) || is_status(&e, 404) => {
                return Ok(crate::controllers::requeue_after(Duration::from_millis(
                    500,
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let next = recheck
        .and_then(|at| (at - now).to_std().ok())
        .map_or(RESYNC, |d| d.min(RESYNC) + Duration::from_secs(1));
    Ok(crate::controllers::requeue_after(next))
}

/// Whether two statuses agree on everything but condition timestamps.
fn same_status(old: Option<&PodDisruptionBudgetStatus>, new: &PodDisruptionBudgetStatus) -> bool {
    let Some(old) = old else { return false };
    let strip = |s: &PodDisruptionBudgetStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_transition_time = Time(DateTime::<Utc>::UNIX_EPOCH);
        }
        s
    };
    strip(old) == strip(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    struct Fixed(i32);
    impl ScaleFinder for Fixed {
        fn scale_of(&self, _ns: &str, owner: &OwnerReference) -> Option<(String, i32)> {
            (owner.kind == "ReplicaSet").then(|| (owner.uid.clone(), self.0))
        }
    }

    fn pod(name: &str, ready: bool, owner: Option<&str>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                owner_references: owner.map(|kind| {
                    vec![OwnerReference {
                        api_version: "apps/v1".into(),
                        kind: kind.into(),
                        name: "owner".into(),
                        uid: "u1".into(),
                        controller: Some(true),
                        block_owner_deletion: None,
                    }]
                }),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        })
    }

    fn pdb(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: ObjectMeta {
                name: Some("b".into()),
                namespace: Some("ns".into()),
                generation: Some(3),
                ..ObjectMeta::default()
            },
            spec: Some(PodDisruptionBudgetSpec {
                min_available: min,
                max_unavailable: max,
                selector: Some(LabelSelector::default()),
                ..PodDisruptionBudgetSpec::default()
            }),
            status: None,
        }
    }

    #[test]
    fn percentages_scale_like_upstream() {
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(scaled_value(&pct("50%"), 5, true), Ok(3));
        assert_eq!(scaled_value(&pct("50%"), 5, false), Ok(2));
        assert_eq!(scaled_value(&pct("100%"), 4, true), Ok(4));
        assert_eq!(scaled_value(&IntOrString::Int(2), 10, true), Ok(2));
        assert!(scaled_value(&pct("abc"), 5, true).is_err());
    }

    #[test]
    fn budgets_compute_expected_desired_and_allowed() {
        let now = Utc::now();
        let ready3 = vec![
            pod("a", true, None),
            pod("b", true, None),
            pod("c", false, None),
        ];
        let owned = vec![
            pod("a", true, Some("ReplicaSet")),
            pod("b", true, Some("ReplicaSet")),
            pod("c", true, Some("ReplicaSet")),
        ];
        let cases = [
            (
                "minAvailable int",
                pdb(Some(IntOrString::Int(1)), None),
                ready3.clone(),
                3,
                1,
                1,
                true,
            ),
            (
                "minAvailable int all needed",
                pdb(Some(IntOrString::Int(2)), None),
                ready3.clone(),
                3,
                2,
                0,
                false,
            ),
            (
                "minAvailable percent of scale 4",
                pdb(Some(IntOrString::String("50%".into())), None),
                owned.clone(),
                4,
                2,
                1,
                true,
            ),
            (
                "maxUnavailable int",
                pdb(None, Some(IntOrString::Int(1))),
                owned.clone(),
                4,
                3,
                0,
                false,
            ),
            (
                "maxUnavailable percent",
                pdb(None, Some(IntOrString::String("50%".into()))),
                owned.clone(),
                4,
                2,
                1,
                true,
            ),
        ];
        for (name, budget, pods, expected, desired, allowed, ok) in cases {
            let (status, _) = desired_status(&budget, &pods, &Fixed(4), now);
            assert_eq!(status.expected_pods, expected, "{name}");
            assert_eq!(status.desired_healthy, desired, "{name}");
            assert_eq!(status.disruptions_allowed, allowed, "{name}");
            assert_eq!(status.observed_generation, Some(3), "{name}");
            let c = &status.conditions.expect("conditions")[0];
            assert_eq!(c.type_, CONDITION);
            assert_eq!(c.status == "True", ok, "{name}");
            assert_eq!(
                c.reason,
                if ok {
                    SUFFICIENT_PODS
                } else {
                    INSUFFICIENT_PODS
                }
            );
        }
    }

    #[test]
    fn unknown_controller_fails_safe() {
        let pods = vec![pod("a", true, Some("Widget"))];
        let budget = pdb(None, Some(IntOrString::Int(1)));
        let (status, _) = desired_status(&budget, &pods, &Fixed(4), Utc::now());
        assert_eq!(status.disruptions_allowed, 0);
        let c = &status.conditions.expect("conditions")[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", SYNC_FAILED)
        );
    }

    #[test]
    fn disrupted_pods_count_as_unhealthy_until_they_expire_or_go() {
        let now = Utc::now();
        let pods = vec![pod("a", true, None), pod("b", true, None)];
        let recorded = BTreeMap::from([
            (
                "a".to_owned(),
                Time(now - k8s_openapi::chrono::Duration::seconds(10)),
            ),
            (
                "b".to_owned(),
                Time(now - k8s_openapi::chrono::Duration::seconds(600)),
            ),
            ("gone".to_owned(), Time(now)),
        ]);
        let (kept, recheck) = live_disrupted_pods(&recorded, &pods, now);
        assert_eq!(kept.keys().collect::<Vec<_>>(), vec!["a"]);
        assert!(recheck.is_some_and(|r| r > now));
        assert_eq!(count_healthy(&pods, &kept), 1);
    }
}
