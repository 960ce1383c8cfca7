//! ttl-after-finished: deletes finished Jobs (Complete or Failed) `ttlSecondsAfterFinished` after
//! they finished, in the foreground so their pods go first.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::chrono::{DateTime, Duration as ChronoDuration, Utc};
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::ResourceExt;

use super::job::finish_time;
use super::{drain, error_policy, is_status, Error};
use crate::context::ControllerContext;

struct Ctx {
    client: kube::Client,
}

/// Builds the controller.
pub fn start(ctx: &ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error> {
    let jobs = ctx.informers.get::<Job>();
    let state = Arc::new(Ctx {
        client: ctx.client.clone(),
    });
    let controller = Controller::for_shared_stream(jobs.subscribe(), jobs.store())
        .graceful_shutdown_on(super::stopped(&ctx.shutdown))
        .with_config(super::workers(ctx.config.concurrency.ttl_after_finished));
    Ok(drain(
        "ttl-after-finished",
        controller.run(reconcile, error_policy, state),
    )
    .boxed())
}

/// When a Job with a TTL expires: `None` if it has no TTL, is not finished or is being deleted.
pub fn expires_at(job: &Job) -> Option<DateTime<Utc>> {
    if job.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    Some(finish_time(job)? + ChronoDuration::seconds(i64::from(ttl)))
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Some(expires) = expires_at(&job) else {
        return Ok(Action::await_change());
    };
    let now = Utc::now();
    if expires > now {
        let wait = (expires - now).to_std().unwrap_or_default();
        return Ok(crate::controllers::requeue_after(
            wait + Duration::from_millis(100),
        ));
    }
    let ns = job
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    // The cache may be stale (the TTL may have been changed): decide on a fresh copy.
    let Some(fresh) = api.get_opt(&job.name_any()).await? else {
        return Ok(Action::await_change());
    };
    match expires_at(&fresh) {
        Some(t) if t <= now => {}
        Some(t) => {
            let wait = (t - now).to_std().unwrap_or_default();
            return Ok(crate::controllers::requeue_after(
                wait + Duration::from_millis(100),
            ));
        }
        None => return Ok(Action::await_change()),
    }
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(Preconditions {
            uid: fresh.uid(),
            resource_version: fresh.resource_version(),
        }),
        ..DeleteParams::default()
    };
    match api.delete(&fresh.name_any(), &params).await {
        Ok(_) => {
            tracing::info!(job = %format!("{ns}/{}", fresh.name_any()), "deleted finished job after its ttl");
            Ok(Action::await_change())
        }
        Err(e) if is_status(&e, 404) => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn job(ttl: Option<i32>, condition: Option<&str>) -> Job {
        let done = DateTime::from_timestamp(1_000, 0).expect("valid");
        Job {
            spec: Some(JobSpec {
                ttl_seconds_after_finished: ttl,
                ..JobSpec::default()
            }),
            status: Some(JobStatus {
                conditions: condition.map(|c| {
                    vec![JobCondition {
                        type_: c.into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(done)),
                        ..JobCondition::default()
                    }]
                }),
                ..JobStatus::default()
            }),
            ..Job::default()
        }
    }

    #[test]
    fn only_finished_jobs_with_a_ttl_expire() {
        let at = |s| DateTime::from_timestamp(s, 0);
        let cases = [
            (
                "complete with ttl",
                job(Some(10), Some("Complete")),
                at(1_010),
            ),
            ("failed with ttl 0", job(Some(0), Some("Failed")), at(1_000)),
            ("running", job(Some(10), None), None),
            ("no ttl", job(None, Some("Complete")), None),
            (
                "suspended is not finished",
                job(Some(1), Some("Suspended")),
                None,
            ),
        ];
        for (name, j, want) in cases {
            assert_eq!(expires_at(&j), want, "{name}");
        }
    }
}
