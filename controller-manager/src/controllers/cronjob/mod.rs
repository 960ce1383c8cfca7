//! cronjob: creates a Job from each CronJob at its scheduled times (concurrency policy, starting
//! deadline, suspend), tracks the running ones in status and trims the finished ones' history.

pub mod schedule;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::chrono::{DateTime, Duration as ChronoDuration, Utc};
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::ResourceExt;

use self::schedule::{Schedule, Zone};
use super::job::policy::{true_condition, COMPLETE, FAILED};
use super::util::{controller_of, controller_ref};
use super::{drain, error_policy, is_status, Error};
use crate::context::ControllerContext;

/// Annotation on created Jobs: the scheduled time, RFC 3339 in the CronJob's zone.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// Upstream gives up listing missed start times past this many and warns.
const TOO_MANY_MISSED: usize = 100;

struct Ctx {
    client: kube::Client,
    jobs: Store<Job>,
}

/// Builds the controller.
pub fn start(ctx: &ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error> {
    let cronjobs = ctx.informers.get::<CronJob>();
    let jobs = ctx.informers.get::<Job>();
    let state = Arc::new(Ctx {
        client: ctx.client.clone(),
        jobs: jobs.store(),
    });
    let controller = Controller::for_shared_stream(cronjobs.subscribe(), cronjobs.store())
        .owns_shared_stream(jobs.subscribe())
        .graceful_shutdown_on(super::stopped(&ctx.shutdown))
        .with_config(super::workers(ctx.config.concurrency.cronjob));
    Ok(drain("cronjob", controller.run(reconcile, error_policy, state)).boxed())
}

/// The Job name for a scheduled time: `<cronjob>-<minutes since the epoch>`, as upstream.
pub fn job_name(cronjob: &str, scheduled: DateTime<Utc>) -> String {
    format!("{cronjob}-{}", scheduled.timestamp().div_euclid(60))
}

/// The latest fire time in (`earliest`, `now`], and how many there were (capped).
pub fn most_recent_missed(
    schedule: &Schedule,
    zone: Zone,
    earliest: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (Option<DateTime<Utc>>, usize) {
    let mut latest = None;
    let mut missed = 0;
    let mut t = earliest;
    while let Some(next) = schedule.next(t, zone) {
        if next > now {
            break;
        }
        latest = Some(next);
        missed += 1;
        if missed > TOO_MANY_MISSED {
            // Only the latest matters: look back from now in widening windows.
            let mut window = ChronoDuration::minutes(1);
            loop {
                let from = (now - window).max(next);
                let mut found = None;
                let mut t2 = from;
                while let Some(n) = schedule.next(t2, zone).filter(|n| *n <= now) {
                    found = Some(n);
                    t2 = n;
                }
                if found.is_some() || from == next {
                    return (found.or(latest), missed);
                }
                window = window * 2;
            }
        }
        t = next;
    }
    (latest, missed)
}

fn finished_type(job: &Job) -> Option<&'static str> {
    let status = job.status.as_ref()?;
    if true_condition(status, COMPLETE).is_some() {
        Some(COMPLETE)
    } else if true_condition(status, FAILED).is_some() {
        Some(FAILED)
    } else {
        None
    }
}

fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

async fn delete_job(api: &Api<Job>, name: &str) -> Result<(), Error> {
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = cj
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = cj.name_any();
    let key = format!("{ns}/{name}");
    let uid = cj.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let spec = cj.spec.clone().ok_or(Error::MissingField("spec"))?;
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let now = Utc::now();
    let owned: Vec<Arc<Job>> = ctx
        .jobs
        .state()
        .into_iter()
        .filter(|j| j.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|j| controller_of(j.as_ref()).is_some_and(|r| r.uid == uid))
        .collect();

    // 1. Bring status.active in line with the Jobs that exist and still run.
    let mut status = cj.status.clone().unwrap_or_default();
    let mut active = status.active.take().unwrap_or_default();
    for job in &owned {
        let in_active = active.iter().any(|r| r.uid == job.metadata.uid);
        match finished_type(job) {
            Some(kind) if in_active => {
                active.retain(|r| r.uid != job.metadata.uid);
                super::util::emit(
                    &ctx.client,
                    "cronjob-controller",
                    cj.as_ref(),
                    "Normal",
                    "SawCompletedJob",
                    format!("Saw completed job: {}, condition: {kind}", job.name_any()),
                );
                if kind == COMPLETE {
                    let done = job.status.as_ref().and_then(|s| s.completion_time.clone());
                    let newer = match (&done, &status.last_successful_time) {
                        (Some(d), Some(last)) => d.0 > last.0,
                        (Some(_), None) => true,
                        _ => false,
                    };
                    if newer {
                        status.last_successful_time = done;
                    }
                }
            }
            None if !in_active => {
                tracing::warn!(cronjob = %key, job = %job.name_any(), "saw a job that the controller did not create or forgot");
            }
            _ => {}
        }
    }
    let known: HashSet<Option<String>> = owned.iter().map(|j| j.metadata.uid.clone()).collect();
    let mut kept = Vec::new();
    for r in active {
        if known.contains(&r.uid) {
            kept.push(r);
            continue;
        }
        // Not in the cache: it may be new or gone; ask.
        let Some(job_name) = r.name.clone() else {
            continue;
        };
        match jobs_api.get_opt(&job_name).await? {
            Some(j) if j.metadata.uid == r.uid => kept.push(r),
            _ => {}
        }
    }
    let mut active = kept;

    // 2. Trim the history of finished Jobs.
    if cj.metadata.deletion_timestamp.is_none() {
        for (kind, limit) in [
            (COMPLETE, spec.successful_jobs_history_limit.unwrap_or(3)),
            (FAILED, spec.failed_jobs_history_limit.unwrap_or(1)),
        ] {
            let mut done: Vec<&Arc<Job>> = owned
                .iter()
                .filter(|j| finished_type(j) == Some(kind))
                .filter(|j| j.metadata.deletion_timestamp.is_none())
                .collect();
            let limit = usize::try_from(limit.max(0)).unwrap_or(0);
            if done.len() > limit {
                done.sort_by_key(|j| {
                    j.status
                        .as_ref()
                        .and_then(|s| s.start_time.clone())
                        .or_else(|| j.metadata.creation_timestamp.clone())
                        .map(|t| t.0)
                });
                let extra = done.len() - limit;
                for job in done.into_iter().take(extra) {
                    delete_job(&jobs_api, &job.name_any()).await?;
                    tracing::info!(cronjob = %key, job = %job.name_any(), "deleted finished job");
                }
            }
        }
    }

    // 3. Start the Job of the most recent missed schedule, if any.
    let mut requeue = None;
    let suspended = spec.suspend.unwrap_or(false);
    if cj.metadata.deletion_timestamp.is_none() && !suspended {
        match plan(&cj, now) {
            Err(message) => {
                tracing::warn!(cronjob = %key, %message, "unparseable schedule");
            }
            Ok((next, scheduled)) => {
                requeue = next.map(|n| (n - now).to_std().unwrap_or_default());
                if let Some(scheduled) = scheduled {
                    let late = spec
                        .starting_deadline_seconds
                        .is_some_and(|sds| scheduled + ChronoDuration::seconds(sds) < now);
                    let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
                    let job_name = job_name(&name, scheduled);
                    let exists = owned.iter().any(|j| j.name_any() == job_name)
                        || active
                            .iter()
                            .any(|r| r.name.as_deref() == Some(job_name.as_str()));
                    if late {
                        tracing::info!(cronjob = %key, %scheduled, "missed starting window");
                    } else if exists {
                        status.last_schedule_time = Some(Time(scheduled));
                    } else if policy == "Forbid" && !active.is_empty() {
                        tracing::debug!(cronjob = %key, "not starting job: previous still runs");
                    } else {
                        if policy == "Replace" {
                            for r in active.drain(..) {
                                if let Some(n) = r.name {
                                    delete_job(&jobs_api, &n).await?;
                                }
                            }
                        }
                        let zone = zone_of(&cj).unwrap_or(Zone::UTC);
                        let job = new_job(&cj, &job_name, &zone.rfc3339(scheduled));
                        match jobs_api.create(&PostParams::default(), &job).await {
                            Ok(created) => {
                                tracing::info!(cronjob = %key, job = %job_name, "created job");
                                super::util::emit(
                                    &ctx.client,
                                    "cronjob-controller",
                                    cj.as_ref(),
                                    "Normal",
                                    "SuccessfulCreate",
                                    format!("Created job {job_name}"),
                                );
                                active.push(job_ref(&created));
                            }
                            Err(e) if is_status(&e, 409) => {}
                            Err(e) => return Err(e.into()),
                        }
                        status.last_schedule_time = Some(Time(scheduled));
                    }
                }
            }
        }
    }

    status.active = (!active.is_empty()).then_some(active);
    if cj.status.clone().unwrap_or_default() != status {
        let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
        let mut updated = (*cj).clone();
        updated.status = Some(status);
        let body = serde_json::to_vec(&updated)?;
        match api
            .replace_status(&name, &PostParams::default(), body)
            .await
        {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(match requeue {
        Some(d) => crate::controllers::requeue_after(d + Duration::from_millis(100)),
        None => crate::controllers::requeue_after(Duration::from_secs(300)),
    })
}

fn zone_of(cj: &CronJob) -> Result<Zone, String> {
    let spec = cj.spec.as_ref().ok_or("no spec")?;
    let parsed = Schedule::parse(&spec.schedule).map_err(|e| e.to_string())?;
    let name = spec
        .time_zone
        .clone()
        .or(parsed.prefix_zone)
        .unwrap_or_default();
    Zone::from_name(&name).map_err(|e| e.to_string())
}

/// The next fire time after `now`, and the most recent unmet scheduled time.
type Plan = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// Where the CronJob's schedule stands at `now`.
fn plan(cj: &CronJob, now: DateTime<Utc>) -> Result<Plan, String> {
    let spec = cj.spec.as_ref().ok_or("no spec")?;
    let schedule = Schedule::parse(&spec.schedule).map_err(|e| e.to_string())?;
    let zone = zone_of(cj)?;
    let created = cj
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(now);
    let mut earliest = cj
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .map(|t| t.0)
        .unwrap_or(created);
    if let Some(sds) = spec.starting_deadline_seconds {
        earliest = earliest.max(now - ChronoDuration::seconds(sds));
    }
    let (latest, missed) = most_recent_missed(&schedule, zone, earliest, now);
    if missed > TOO_MANY_MISSED {
        tracing::warn!(cronjob = %cj.name_any(), missed, "too many missed start times; set or decrease .spec.startingDeadlineSeconds or check clock skew");
    }
    Ok((schedule.next(now, zone), latest))
}

fn new_job(cj: &CronJob, name: &str, scheduled: &str) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), scheduled.into());
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: cj.namespace(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: controller_ref(cj).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid time")
            .with_timezone(&Utc)
    }

    #[test]
    fn job_names_carry_minutes_since_the_epoch() {
        assert_eq!(
            job_name("hello", at("2024-01-01T00:01:00Z")),
            "hello-28401121"
        );
    }

    #[test]
    fn only_the_most_recent_missed_time_is_started() {
        let s = Schedule::parse("*/5 * * * *").expect("parses");
        let (latest, missed) = most_recent_missed(
            &s,
            Zone::UTC,
            at("2024-01-01T00:00:00Z"),
            at("2024-01-01T00:17:00Z"),
        );
        assert_eq!(latest, Some(at("2024-01-01T00:15:00Z")));
        assert_eq!(missed, 3);
        let (none, zero) = most_recent_missed(
            &s,
            Zone::UTC,
            at("2024-01-01T00:15:00Z"),
            at("2024-01-01T00:17:00Z"),
        );
        assert_eq!((none, zero), (None, 0));
    }

    #[test]
    fn long_outages_still_find_the_latest_time_quickly() {
        let s = Schedule::parse("* * * * *").expect("parses");
        let (latest, missed) = most_recent_missed(
            &s,
            Zone::UTC,
            at("2020-01-01T00:00:00Z"),
            at("2024-01-01T00:00:30Z"),
        );
        assert_eq!(latest, Some(at("2024-01-01T00:00:00Z")));
        assert!(missed > TOO_MANY_MISSED);
    }
}
