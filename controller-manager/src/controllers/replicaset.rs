//! replicaset: creates and deletes pods so each ReplicaSet runs `spec.replicas` of them, with
//! expectations so a lagging cache never makes it overshoot, and keeps its status current.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::chrono::Utc;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::ResourceExt;

use super::util::{
    api_message, claim_pods, controller_ref, emit, is_active, is_available, is_ready,
};

/// The events' source component, as upstream.
const COMPONENT: &str = "replicaset-controller";
use super::{drain, error_policy, is_status, Error};
use crate::context::ControllerContext;

/// Upstream's cap on pods created or deleted in one sync.
const BURST_REPLICAS: usize = 500;
/// How long unobserved creations/deletions hold back a ReplicaSet.
const EXPECTATIONS_TTL: Duration = Duration::from_secs(60);

/// Pods this controller created or deleted and has not seen in its cache yet, per ReplicaSet.
#[derive(Default)]
pub struct Expectations {
    inner: Mutex<HashMap<String, Expected>>,
}

#[derive(Default, Clone)]
struct Expected {
    adds: HashSet<String>,
    dels: HashSet<String>,
    since: Option<Instant>,
}

impl Expectations {
    fn record(&self, key: &str, adds: Vec<String>, dels: Vec<String>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let entry = inner.entry(key.to_owned()).or_default();
        entry.adds.extend(adds);
        entry.dels.extend(dels);
        entry.since = Some(Instant::now());
    }

    /// Whether the cache has caught up with every recorded action of `key` (pods `present`).
    fn satisfied(&self, key: &str, present: &HashMap<String, bool>) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = inner.get_mut(key) else {
            return true;
        };
        entry.adds.retain(|n| !present.contains_key(n));
        entry
            .dels
            .retain(|n| present.get(n).is_some_and(|terminating| !terminating));
        let expired = entry.since.is_some_and(|s| s.elapsed() > EXPECTATIONS_TTL);
        if (entry.adds.is_empty() && entry.dels.is_empty()) || expired {
            inner.remove(key);
            return true;
        }
        false
    }
}

struct Ctx {
    client: kube::Client,
    pods: Store<Pod>,
    expectations: Expectations,
}

/// Builds the controller.
pub fn start(ctx: &ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error> {
    let sets = ctx.informers.get::<ReplicaSet>();
    let pods = ctx.informers.get::<Pod>();
    let state = Arc::new(Ctx {
        client: ctx.client.clone(),
        pods: pods.store(),
        expectations: Expectations::default(),
    });
    let rs_store = sets.store();
    let controller = Controller::for_shared_stream(sets.subscribe(), sets.store())
        .owns_shared_stream(pods.subscribe())
        // An orphan pod wakes every ReplicaSet whose selector matches it, to be adopted.
        .watches_shared_stream(pods.subscribe(), move |pod: Arc<Pod>| {
            super::util::orphan_claimants(&rs_store, pod.as_ref(), |rs: &ReplicaSet| {
                rs.spec.as_ref().map(|s| &s.selector)
            })
        })
        .graceful_shutdown_on(super::stopped(&ctx.shutdown))
        .with_config(super::workers(ctx.config.concurrency.replicaset));
    Ok(drain("replicaset", controller.run(reconcile, error_policy, state)).boxed())
}

/// Orders pods for deletion as upstream's ActivePods ranking: unassigned, pending, not ready,
/// and most recently created go first.
fn deletion_rank(pod: &Pod) -> (u8, u8, u8, std::cmp::Reverse<Option<String>>) {
    let assigned = u8::from(
        pod.spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_some(),
    );
    let phase = match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        _ => 2,
    };
    let created = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.to_rfc3339());
    (
        assigned,
        phase,
        u8::from(is_ready(pod)),
        std::cmp::Reverse(created),
    )
}

fn new_pod(rs: &ReplicaSet) -> Result<Pod, Error> {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .ok_or(Error::MissingField("spec.template"))?;
    let meta = template.metadata.unwrap_or_default();
    Ok(Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.name_any())),
            namespace: rs.namespace(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: controller_ref(rs).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    })
}

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = rs
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = rs.name_any();
    let key = format!("{ns}/{name}");
    let spec = rs.spec.clone().ok_or(Error::MissingField("spec"))?;
    let wanted = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);

    let owner_ref = controller_ref(rs.as_ref()).ok_or(Error::MissingField("metadata.uid"))?;
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    // Matching active orphans are adopted, as upstream's ControllerRefManager does.
    let in_ns = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()));
    let owned = claim_pods(
        &pod_api,
        in_ns,
        &owner_ref,
        deleting,
        &spec.selector,
        is_active,
    )
    .await?;
    let present: HashMap<String, bool> = owned
        .iter()
        .map(|p| (p.name_any(), p.metadata.deletion_timestamp.is_some()))
        .collect();
    let mut active: Vec<Arc<Pod>> = owned.iter().filter(|p| is_active(p)).cloned().collect();

    let mut failure = None;
    if rs.metadata.deletion_timestamp.is_none() && ctx.expectations.satisfied(&key, &present) {
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        if active.len() < wanted {
            let count = (wanted - active.len()).min(BURST_REPLICAS);
            let pod = new_pod(&rs)?;
            let mut created = Vec::new();
            // Slow start, as upstream: 1, 2, 4, ... so a failing template costs few requests.
            let mut batch = 1;
            let mut done = 0;
            'outer: while done < count {
                let n = batch.min(count - done);
                for _ in 0..n {
                    match api.create(&PostParams::default(), &pod).await {
                        Ok(p) => {
                            emit(
                                &ctx.client,
                                COMPONENT,
                                rs.as_ref(),
                                "Normal",
                                "SuccessfulCreate",
                                format!("Created pod: {}", p.name_any()),
                            );
                            created.push(p.name_any());
                        }
                        Err(e) => {
                            emit(
                                &ctx.client,
                                COMPONENT,
                                rs.as_ref(),
                                "Warning",
                                "FailedCreate",
                                format!("Error creating: {}", api_message(&e)),
                            );
                            failure = Some(e.to_string());
                            break 'outer;
                        }
                    }
                }
                done += n;
                batch *= 2;
            }
            if !created.is_empty() {
                tracing::info!(replicaset = %key, created = created.len(), "created pods");
            }
            ctx.expectations.record(&key, created, Vec::new());
        } else if active.len() > wanted {
            let count = (active.len() - wanted).min(BURST_REPLICAS);
            active.sort_by_key(|p| deletion_rank(p));
            let mut deleted = Vec::new();
            for pod in active.iter().take(count) {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: pod.uid(),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match api.delete(&pod.name_any(), &params).await {
                    Ok(_) => {
                        emit(
                            &ctx.client,
                            COMPONENT,
                            rs.as_ref(),
                            "Normal",
                            "SuccessfulDelete",
                            format!("Deleted pod: {}", pod.name_any()),
                        );
                        deleted.push(pod.name_any());
                    }
                    Err(e) if is_status(&e, 404) => {}
                    Err(e) => {
                        failure = Some(e.to_string());
                        break;
                    }
                }
            }
            tracing::info!(replicaset = %key, deleted = deleted.len(), "deleted pods");
            ctx.expectations.record(&key, Vec::new(), deleted);
        }
    }

    // Status from the cache as it is now (the next event brings the rest).
    let now = Utc::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let active: Vec<&Arc<Pod>> = owned.iter().filter(|p| is_active(p)).collect();
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(active.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let mut status = ReplicaSetStatus {
        replicas: count(&|_| true),
        fully_labeled_replicas: Some(count(&|p| {
            template_labels
                .iter()
                .all(|(k, v)| p.labels().get(k) == Some(v))
        })),
        ready_replicas: Some(count(&|p| is_ready(p))),
        available_replicas: Some(count(&|p| is_available(p, min_ready, now))),
        observed_generation: rs.metadata.generation,
        conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
        terminating_replicas: None,
    };
    let mut conditions = status.conditions.take().unwrap_or_default();
    conditions.retain(|c| c.type_ != "ReplicaFailure");
    if let Some(message) = &failure {
        conditions.push(k8s_openapi::api::apps::v1::ReplicaSetCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some("FailedCreate".into()),
            message: Some(message.clone()),
            last_transition_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now)),
        });
    }
    status.conditions = (!conditions.is_empty()).then_some(conditions);
    let old = rs.status.clone().unwrap_or_default();
    let unchanged = old.replicas == status.replicas
        && old.fully_labeled_replicas.unwrap_or(0) == status.fully_labeled_replicas.unwrap_or(0)
        && old.ready_replicas.unwrap_or(0) == status.ready_replicas.unwrap_or(0)
        && old.available_replicas.unwrap_or(0) == status.available_replicas.unwrap_or(0)
        && old.observed_generation == status.observed_generation
        && old.conditions.is_some() == status.conditions.is_some();
    if !unchanged {
        let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
        // PUT, not PATCH: upstream's replicaset-controller role may only update status.
        let mut updated = (*rs).clone();
        updated.status = Some(status.clone());
        match api
            .replace_status(&name, &PostParams::default(), serde_json::to_vec(&updated)?)
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
    let ready_not_available =
        status.ready_replicas.unwrap_or(0) > status.available_replicas.unwrap_or(0);
    if min_ready > 0 && ready_not_available {
        let secs = u64::try_from(min_ready).unwrap_or(1);
        return Ok(crate::controllers::requeue_after(Duration::from_secs(secs)));
    }
    Ok(crate::controllers::requeue_after(Duration::from_secs(30)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};

    fn pod(name: &str, node: Option<&str>, phase: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(str::to_owned),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn unassigned_and_pending_pods_are_deleted_first() {
        let mut pods = [
            pod("running", Some("n1"), "Running"),
            pod("unassigned", None, "Pending"),
            pod("pending", Some("n1"), "Pending"),
        ];
        pods.sort_by_key(deletion_rank);
        let names: Vec<_> = pods.iter().map(|p| p.name_any()).collect();
        assert_eq!(names, ["unassigned", "pending", "running"]);
    }

    #[test]
    fn expectations_hold_until_created_pods_are_observed() {
        let e = Expectations::default();
        e.record("ns/rs", vec!["a".into(), "b".into()], Vec::new());
        let mut present = HashMap::new();
        present.insert("a".to_owned(), false);
        assert!(!e.satisfied("ns/rs", &present));
        present.insert("b".to_owned(), false);
        assert!(e.satisfied("ns/rs", &present));
        e.record("ns/rs", Vec::new(), vec!["a".into()]);
        assert!(!e.satisfied("ns/rs", &present));
        present.insert("a".to_owned(), true);
        assert!(e.satisfied("ns/rs", &present));
    }
}
