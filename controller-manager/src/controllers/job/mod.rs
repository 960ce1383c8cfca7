//! job: runs a Job's pods to completion (completions, parallelism, Indexed mode), counts finished
//! pods through the job-tracking finalizer and `status.uncountedTerminatedPods`, and fails Jobs on
//! backoffLimit, activeDeadlineSeconds or a podFailurePolicy FailJob rule.

pub mod policy;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::batch::v1::{Job, JobSpec, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::chrono::{DateTime, Utc};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;
use serde_json::json;

use self::policy::{FailureAction, COMPLETION_INDEX, TRACKING_FINALIZER};
use super::util::{controller_of, controller_ref, is_ready};
use super::{drain, error_policy, is_status, Error};
use crate::context::ControllerContext;

/// Upstream's cap on pods created in one sync.
const BURST: usize = 500;
/// How long unobserved creations hold back a Job.
const EXPECTATIONS_TTL: Duration = Duration::from_secs(60);

/// Pods created and not yet seen in the cache, per Job.
#[derive(Default)]
struct Expectations {
    inner: Mutex<HashMap<String, (HashSet<String>, Instant)>>,
}

impl Expectations {
    fn record(&self, key: &str, created: Vec<String>) {
        if created.is_empty() {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let entry = inner
            .entry(key.to_owned())
            .or_insert_with(|| (HashSet::new(), Instant::now()));
        entry.0.extend(created);
        entry.1 = Instant::now();
    }

    fn satisfied(&self, key: &str, present: &HashSet<String>) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = inner.get_mut(key) else {
            return true;
        };
        entry.0.retain(|n| !present.contains(n));
        if entry.0.is_empty() || entry.1.elapsed() > EXPECTATIONS_TTL {
            inner.remove(key);
            return true;
        }
        false
    }
}

/// Failures since the last success, for the pod-recreation backoff.
#[derive(Default, Clone, Copy)]
struct BackoffRecord {
    failures: u32,
    last_failure: Option<Instant>,
}

struct Ctx {
    client: kube::Client,
    pods: Store<Pod>,
    expectations: Expectations,
    backoff: Mutex<HashMap<String, BackoffRecord>>,
}

/// Builds the controller.
pub fn start(ctx: &ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error> {
    let jobs = ctx.informers.get::<Job>();
    let pods = ctx.informers.get::<Pod>();
    let state = Arc::new(Ctx {
        client: ctx.client.clone(),
        pods: pods.store(),
        expectations: Expectations::default(),
        backoff: Mutex::new(HashMap::new()),
    });
    let controller = Controller::for_shared_stream(jobs.subscribe(), jobs.store())
        .owns_shared_stream(pods.subscribe())
        .graceful_shutdown_on(super::stopped(&ctx.shutdown))
        .with_config(super::workers(ctx.config.concurrency.job));
    let orphans = release_orphans(
        ctx.client.clone(),
        jobs.store(),
        pods.subscribe(),
        ctx.shutdown.clone(),
    );
    let main = drain("job", controller.run(reconcile, error_policy, state));
    Ok(async move {
        tokio::join!(main, orphans);
    }
    .boxed())
}

/// Removes the tracking finalizer from pods whose Job is gone, as upstream's orphan-pod handling
/// does (the Job can no longer count them).
async fn release_orphans(
    client: kube::Client,
    jobs: Store<Job>,
    pods: impl futures::Stream<Item = Arc<Pod>> + Send + 'static,
    shutdown: component_base::Shutdown,
) {
    let work = pods.for_each(|pod| {
        let client = client.clone();
        let jobs = jobs.clone();
        async move {
            if !has_finalizer(&pod) {
                return;
            }
            let Some(owner) = controller_of(pod.as_ref()).filter(|r| r.kind == "Job") else {
                return;
            };
            let ns = pod.namespace().unwrap_or_default();
            let job = jobs.get(&ObjectRef::new(&owner.name).within(&ns));
            if job.is_some_and(|j| j.uid().as_deref() == Some(owner.uid.as_str())) {
                return;
            }
            // The cache may lag behind a new Job; ask the store once more after a moment.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let job = jobs.get(&ObjectRef::new(&owner.name).within(&ns));
            if job.is_some_and(|j| j.uid().as_deref() == Some(owner.uid.as_str())) {
                return;
            }
            let api: Api<Pod> = Api::namespaced(client, &ns);
            if let Err(e) = remove_finalizer(&api, &pod).await {
                tracing::debug!(pod = %pod.name_any(), error = %e, "releasing orphan pod failed");
            }
        }
    });
    tokio::select! {
        _ = work => {}
        _ = shutdown.wait() => {}
    }
}

fn has_finalizer(pod: &Pod) -> bool {
    pod.finalizers().iter().any(|f| f == TRACKING_FINALIZER)
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Removes the tracking finalizer, guarded by the pod's resourceVersion so a stale view never
/// drops other finalizers. Ok(true) when the pod no longer carries it.
async fn remove_finalizer(api: &Api<Pod>, pod: &Pod) -> Result<bool, kube::Error> {
    let kept: Vec<&String> = pod
        .finalizers()
        .iter()
        .filter(|f| *f != TRACKING_FINALIZER)
        .collect();
    let patch = json!({"metadata": {
        "finalizers": kept,
        "resourceVersion": pod.resource_version(),
    }});
    match api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_status(&e, 404) => Ok(true),
        Err(e) if is_status(&e, 409) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The pod a Job creates, for `index` when Indexed.
fn new_pod(job: &Job, spec: &JobSpec, index: Option<i32>) -> Pod {
    let template = spec.template.clone();
    let meta = template.metadata.unwrap_or_default();
    let name = job.name_any();
    let mut labels = meta.labels.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    let mut finalizers = meta.finalizers.unwrap_or_default();
    finalizers.push(TRACKING_FINALIZER.to_owned());
    let mut pod_spec = template.spec;
    let generate_name = match index {
        Some(i) => {
            labels.insert(COMPLETION_INDEX.into(), i.to_string());
            annotations.insert(COMPLETION_INDEX.into(), i.to_string());
            if let Some(ps) = pod_spec.as_mut() {
                if ps.hostname.is_none() {
                    ps.hostname = Some(format!("{name}-{i}"));
                }
                let env = EnvVar {
                    name: "JOB_COMPLETION_INDEX".into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            api_version: None,
                            field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                        }),
                        ..EnvVarSource::default()
                    }),
                };
                let containers = ps
                    .containers
                    .iter_mut()
                    .chain(ps.init_containers.iter_mut().flatten());
                for c in containers {
                    let vars = c.env.get_or_insert_with(Vec::new);
                    if !vars.iter().any(|v| v.name == env.name) {
                        vars.push(env.clone());
                    }
                }
            }
            format!("{name}-{i}-")
        }
        None => format!("{name}-"),
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.namespace(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: Some(finalizers),
            owner_references: controller_ref(job).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        spec: pod_spec,
        status: None,
    }
}

/// Writes `status` through the status subresource (PUT, which the job-controller role allows),
/// returning the updated Job.
async fn write_status(api: &Api<Job>, job: &Job, status: &JobStatus) -> Result<Job, Error> {
    let mut updated = job.clone();
    updated.status = Some(status.clone());
    let body = serde_json::to_vec(&updated)?;
    Ok(api
        .replace_status(&job.name_any(), &PostParams::default(), body)
        .await?)
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = job
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = job.name_any();
    let key = format!("{ns}/{name}");
    let uid = job.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let spec = job.spec.clone().ok_or(Error::MissingField("spec"))?;
    if spec
        .managed_by
        .as_deref()
        .is_some_and(|m| m != "kubernetes.io/job-controller")
    {
        return Ok(Action::await_change());
    }
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|p| controller_of(p.as_ref()).is_some_and(|r| r.uid == uid))
        .collect();

    // A Job being deleted lets go of all its pods.
    if job.metadata.deletion_timestamp.is_some() {
        for pod in pods.iter().filter(|p| has_finalizer(p)) {
            remove_finalizer(&pods_api, pod).await?;
        }
        return Ok(Action::await_change());
    }

    let mut job: Job = (*job).clone();
    let mut status = job.status.clone().unwrap_or_default();
    let now = Utc::now();
    let finished = policy::is_finished(&status);
    let finishing = finished
        || policy::true_condition(&status, policy::FAILURE_TARGET).is_some()
        || policy::true_condition(&status, policy::SUCCESS_CRITERIA_MET).is_some();
    let only_failed_replaced = spec.pod_replacement_policy.as_deref() == Some("Failed");
    let indexed = policy::is_indexed(&spec);

    // 1. Record newly finished pods in uncountedTerminatedPods before touching their finalizers,
    //    so a crash in between never loses or double-counts one.
    let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut uncounted_ok: BTreeSet<String> = uncounted
        .succeeded
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut uncounted_failed: BTreeSet<String> =
        uncounted.failed.unwrap_or_default().into_iter().collect();
    let mut completed = policy::parse_indexes(status.completed_indexes.as_deref().unwrap_or(""));
    let mut ignored: Vec<Arc<Pod>> = Vec::new();
    let mut policy_failure: Option<String> = None;
    let mut new_failures = 0u32;
    let mut new_successes = 0u32;
    let mut recorded = false;
    for pod in pods.iter().filter(|p| has_finalizer(p)) {
        let pod_uid = pod.uid().unwrap_or_default();
        if uncounted_ok.contains(&pod_uid) || uncounted_failed.contains(&pod_uid) {
            continue;
        }
        let terminating = pod.metadata.deletion_timestamp.is_some();
        match phase(pod) {
            "Succeeded" => {
                if indexed {
                    if let Some(i) =
                        policy::completion_index(pod).filter(|i| *i < spec.completions.unwrap_or(0))
                    {
                        completed.insert(i);
                    }
                }
                uncounted_ok.insert(pod_uid);
                new_successes += 1;
                recorded = true;
            }
            "Failed" => {
                let action = match &spec.pod_failure_policy {
                    Some(p) if !finishing => policy::pod_failure_action(p, pod),
                    _ => FailureAction::Count,
                };
                match action {
                    FailureAction::Ignore => ignored.push(pod.clone()),
                    FailureAction::FailJob(message) => {
                        policy_failure.get_or_insert(message);
                        uncounted_failed.insert(pod_uid);
                        new_failures += 1;
                        recorded = true;
                    }
                    FailureAction::Count => {
                        uncounted_failed.insert(pod_uid);
                        new_failures += 1;
                        recorded = true;
                    }
                }
            }
            // A deleted pod that will never finish counts as failed, unless only Failed pods are
            // replaced and the Job still runs.
            _ if terminating && (finishing || !only_failed_replaced) => {
                uncounted_failed.insert(pod_uid);
                new_failures += 1;
                recorded = true;
            }
            _ => {}
        }
    }
    {
        let mut records = ctx.backoff.lock().unwrap_or_else(|e| e.into_inner());
        let record = records.entry(key.clone()).or_default();
        if new_successes > 0 {
            *record = BackoffRecord::default();
        }
        if new_failures > 0 {
            record.failures += new_failures;
            record.last_failure = Some(Instant::now());
        }
    }
    let set_uncounted =
        |status: &mut JobStatus, ok: &BTreeSet<String>, failed: &BTreeSet<String>| {
            status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
                succeeded: (!ok.is_empty()).then(|| ok.iter().cloned().collect()),
                failed: (!failed.is_empty()).then(|| failed.iter().cloned().collect()),
            });
        };
    if recorded {
        set_uncounted(&mut status, &uncounted_ok, &uncounted_failed);
        if indexed {
            status.completed_indexes = Some(policy::format_indexes(&completed));
        }
        job = write_status(&jobs_api, &job, &policy::normalize(status.clone())).await?;
    }

    // 2. Release the recorded pods (and ignored failures), then move them into the counters.
    let by_uid: HashMap<String, &Arc<Pod>> = pods
        .iter()
        .filter_map(|p| p.uid().map(|u| (u, p)))
        .collect();
    let mut released: HashSet<String> = HashSet::new();
    for pod_uid in uncounted_ok.iter().chain(uncounted_failed.iter()) {
        match by_uid.get(pod_uid) {
            Some(pod) if has_finalizer(pod) => {
                if remove_finalizer(&pods_api, pod).await? {
                    released.insert(pod_uid.clone());
                }
            }
            // Gone or already released: countable.
            _ => {
                released.insert(pod_uid.clone());
            }
        }
    }
    for pod in &ignored {
        remove_finalizer(&pods_api, pod).await?;
    }
    let before = (uncounted_ok.len(), uncounted_failed.len());
    let newly_ok = count(
        uncounted_ok
            .iter()
            .filter(|u| released.contains(*u))
            .count(),
    );
    let newly_failed = count(
        uncounted_failed
            .iter()
            .filter(|u| released.contains(*u))
            .count(),
    );
    uncounted_ok.retain(|u| !released.contains(u));
    uncounted_failed.retain(|u| !released.contains(u));
    status.succeeded = Some(if indexed {
        count(completed.len())
    } else {
        status.succeeded.unwrap_or(0) + newly_ok
    });
    status.failed = Some(status.failed.unwrap_or(0) + newly_failed);
    set_uncounted(&mut status, &uncounted_ok, &uncounted_failed);
    let counted = before != (uncounted_ok.len(), uncounted_failed.len());

    if finished {
        if counted {
            write_status(&jobs_api, &job, &policy::normalize(status)).await?;
        }
        return Ok(Action::await_change());
    }

    // 3. Decide where the Job stands.
    let active: Vec<&Arc<Pod>> = pods
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none() && !matches!(phase(p), "Succeeded" | "Failed")
        })
        .collect();
    let terminating = pods
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_some() && !matches!(phase(p), "Succeeded" | "Failed")
        })
        .count();
    let succeeded = status.succeeded.unwrap_or(0);
    let failed = status.failed.unwrap_or(0);
    let suspended = spec.suspend.unwrap_or(false);
    let mut requeue = None;

    if policy::true_condition(&status, policy::FAILURE_TARGET).is_none()
        && policy::true_condition(&status, policy::SUCCESS_CRITERIA_MET).is_none()
    {
        let deadline_passed = spec.active_deadline_seconds.and_then(|ads| {
            let start = status.start_time.as_ref()?.0;
            let ends = start + k8s_openapi::chrono::Duration::seconds(ads);
            if now >= ends {
                Some(true)
            } else {
                requeue = Some((ends - now).to_std().unwrap_or_default());
                None
            }
        });
        let failure = if let Some(message) = policy_failure {
            Some((policy::POD_FAILURE_POLICY, message))
        } else if failed > spec.backoff_limit.unwrap_or(6) {
            Some((
                policy::BACKOFF_LIMIT_EXCEEDED,
                "Job has reached the specified backoff limit".to_owned(),
            ))
        } else if deadline_passed.is_some() && !suspended {
            Some((
                policy::DEADLINE_EXCEEDED,
                "Job was active longer than specified deadline".to_owned(),
            ))
        } else {
            None
        };
        if let Some((reason, message)) = failure {
            policy::set_condition(
                &mut status,
                policy::FAILURE_TARGET,
                true,
                reason,
                &message,
                now,
            );
            tracing::info!(job = %key, reason, "job failing");
        } else if policy::completions_reached(
            &spec,
            succeeded,
            completed.len(),
            count(active.len()),
        ) {
            policy::set_condition(
                &mut status,
                policy::SUCCESS_CRITERIA_MET,
                true,
                policy::COMPLETIONS_REACHED,
                "Reached expected number of succeeded pods",
                now,
            );
        }
    }

    let target = policy::true_condition(&status, policy::FAILURE_TARGET)
        .map(|c| (policy::FAILED, c.clone()))
        .or_else(|| {
            policy::true_condition(&status, policy::SUCCESS_CRITERIA_MET)
                .map(|c| (policy::COMPLETE, c.clone()))
        });
    let mut active_count = active.len();
    if let Some((final_type, cond)) = target {
        // Finishing: stop what still runs, then add the terminal condition once every pod has
        // been counted.
        for pod in &active {
            delete_pod(&pods_api, pod).await?;
        }
        active_count = 0;
        let pending = pods
            .iter()
            .any(|p| has_finalizer(p) && !released.contains(&p.uid().unwrap_or_default()));
        if active.is_empty()
            && terminating == 0
            && !pending
            && uncounted_ok.is_empty()
            && uncounted_failed.is_empty()
        {
            let reason = cond.reason.clone().unwrap_or_default();
            let message = cond.message.clone().unwrap_or_default();
            policy::set_condition(&mut status, final_type, true, &reason, &message, now);
            if final_type == policy::COMPLETE {
                status.completion_time = Some(Time(now));
            }
            tracing::info!(job = %key, condition = final_type, %reason, "job finished");
            // Upstream's events: Normal Completed, or a Warning named for the failure reason.
            let (kind, event, message) = if final_type == policy::COMPLETE {
                ("Normal", "Completed", "Job completed".to_owned())
            } else {
                let event = match reason.as_str() {
                    "BackoffLimitExceeded" => "BackoffLimitExceeded",
                    "DeadlineExceeded" => "DeadlineExceeded",
                    "PodFailurePolicy" => "PodFailurePolicy",
                    "MaxFailedIndexesExceeded" => "MaxFailedIndexesExceeded",
                    "FailedIndexes" => "FailedIndexes",
                    _ => "Failed",
                };
                ("Warning", event, message)
            };
            super::util::emit(&ctx.client, "job-controller", &job, kind, event, message);
        }
    } else if suspended {
        for pod in &active {
            delete_pod(&pods_api, pod).await?;
        }
        active_count = 0;
        if policy::true_condition(&status, policy::SUSPENDED).is_none() {
            policy::set_condition(
                &mut status,
                policy::SUSPENDED,
                true,
                "JobSuspended",
                "Job suspended",
                now,
            );
        }
    } else {
        if policy::true_condition(&status, policy::SUSPENDED).is_some() {
            policy::set_condition(
                &mut status,
                policy::SUSPENDED,
                false,
                "JobResumed",
                "Job resumed",
                now,
            );
            // Resuming restarts the activeDeadlineSeconds clock.
            status.start_time = Some(Time(now));
        }
        if status.start_time.is_none() {
            status.start_time = Some(Time(now));
            if let Some(ads) = spec.active_deadline_seconds {
                requeue = Some(Duration::from_secs(u64::try_from(ads).unwrap_or(0)));
            }
        }
        let present: HashSet<String> = pods.iter().map(|p| p.name_any()).collect();
        if ctx.expectations.satisfied(&key, &present) {
            let (created, wait) = manage(
                &ctx,
                &key,
                &job,
                &spec,
                &active,
                terminating,
                succeeded,
                &completed,
                &pods_api,
            )
            .await?;
            active_count += created;
            if let Some(w) = wait {
                requeue = Some(requeue.map_or(w, |r: Duration| r.min(w)));
            }
        }
    }

    status.active = Some(count(active_count));
    status.ready = Some(count(active.iter().filter(|p| is_ready(p)).count()));
    status.terminating = Some(count(terminating));
    let status = policy::normalize(status);
    if policy::normalize(job.status.clone().unwrap_or_default()) != status {
        match write_status(&jobs_api, &job, &status).await {
            Ok(_) => {}
            Err(Error::Kube(e)) if is_status(&e, 404) => return Ok(Action::await_change()),
            Err(e) => return Err(e),
        }
    }
    Ok(match requeue {
        Some(d) => crate::controllers::requeue_after(d + Duration::from_millis(100)),
        None => crate::controllers::requeue_after(Duration::from_secs(60)),
    })
}

async fn delete_pod(api: &Api<Pod>, pod: &Pod) -> Result<(), Error> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&pod.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Creates or deletes pods so the Job runs as many as it should; returns how many it created and
/// how long to wait when backoff held creation back.
#[allow(clippy::too_many_arguments)]
async fn manage(
    ctx: &Ctx,
    key: &str,
    job: &Job,
    spec: &JobSpec,
    active: &[&Arc<Pod>],
    terminating: usize,
    succeeded: i32,
    completed: &BTreeSet<i32>,
    api: &Api<Pod>,
) -> Result<(usize, Option<Duration>), Error> {
    let parallelism = usize::try_from(spec.parallelism.unwrap_or(1).max(0)).unwrap_or(0);
    // With podReplacementPolicy=Failed, terminating pods still hold their slot.
    let held = if spec.pod_replacement_policy.as_deref() == Some("Failed") {
        terminating
    } else {
        0
    };
    let mut extra: Vec<&Arc<Pod>> = Vec::new();
    let to_create: Vec<Option<i32>> = if policy::is_indexed(spec) {
        let mut running: BTreeMap<i32, Vec<&Arc<Pod>>> = BTreeMap::new();
        for pod in active {
            match policy::completion_index(pod) {
                Some(i) if i < spec.completions.unwrap_or(0) && !completed.contains(&i) => {
                    running.entry(i).or_default().push(pod)
                }
                // Pods of completed or invalid indexes, and duplicates, are removed.
                _ => extra.push(pod),
            }
        }
        for dupes in running.values_mut() {
            extra.extend(dupes.drain(1..));
        }
        let running_set: BTreeSet<i32> = running.keys().copied().collect();
        let room = parallelism.saturating_sub(running.len() + held);
        policy::indexes_to_start(spec.completions.unwrap_or(0), completed, &running_set, room)
            .into_iter()
            .map(Some)
            .collect()
    } else {
        let want = usize::try_from(policy::wanted_active(spec, succeeded, count(active.len())))
            .unwrap_or(0);
        let have = active.len() + held;
        if have > want {
            let mut ranked: Vec<&Arc<Pod>> = active.to_vec();
            // Unscheduled and not-ready pods go first.
            ranked.sort_by_key(|p| {
                (
                    p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some(),
                    is_ready(p),
                )
            });
            extra.extend(ranked.into_iter().take(have - want));
        }
        vec![None; want.saturating_sub(have)]
    };
    for pod in extra {
        delete_pod(api, pod).await?;
    }
    if to_create.is_empty() {
        return Ok((0, None));
    }
    let record = ctx
        .backoff
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(key)
        .copied()
        .unwrap_or_default();
    if let Some(last) = record.last_failure {
        let wait = policy::backoff(record.failures).saturating_sub(last.elapsed());
        if !wait.is_zero() {
            return Ok((0, Some(wait)));
        }
    }
    let mut created = Vec::new();
    let mut failure = None;
    // Slow start, as upstream: 1, 2, 4, ... so a bad template costs few requests.
    let mut batch = 1;
    let mut queue = to_create.into_iter().take(BURST).peekable();
    'outer: while queue.peek().is_some() {
        for index in queue.by_ref().take(batch) {
            match api
                .create(&PostParams::default(), &new_pod(job, spec, index))
                .await
            {
                Ok(p) => {
                    super::util::emit(
                        &ctx.client,
                        "job-controller",
                        job,
                        "Normal",
                        "SuccessfulCreate",
                        format!("Created pod: {}", p.name_any()),
                    );
                    created.push(p.name_any());
                }
                Err(e) => {
                    super::util::emit(
                        &ctx.client,
                        "job-controller",
                        job,
                        "Warning",
                        "FailedCreate",
                        format!("Error creating: {}", super::util::api_message(&e)),
                    );
                    failure = Some(e);
                    break 'outer;
                }
            }
        }
        batch *= 2;
    }
    let n = created.len();
    if n > 0 {
        tracing::info!(job = %key, created = n, "created pods");
    }
    ctx.expectations.record(key, created);
    match failure {
        Some(e) => Err(e.into()),
        None => Ok((n, None)),
    }
}

/// When a finished Job finished: its completion time or its Failed condition's transition time.
pub fn finish_time(job: &Job) -> Option<DateTime<Utc>> {
    let status = job.status.as_ref()?;
    if let Some(c) = policy::true_condition(status, policy::COMPLETE) {
        return status
            .completion_time
            .as_ref()
            .or(c.last_transition_time.as_ref())
            .map(|t| t.0);
    }
    policy::true_condition(status, policy::FAILED)
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}
