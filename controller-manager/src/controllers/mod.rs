//! The controllers, one module each, plus helpers they share.

pub mod bootstrap;
pub mod certificates;
pub mod clusterroleaggregation;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod garbagecollector;
pub mod history;
pub mod job;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod nodeutil;
pub mod persistentvolume;
pub mod podgc;
pub mod protection;
pub mod replicaset;
pub mod resourcequota;
pub mod rootcacert;
pub mod serviceaccount;
pub mod statefulset;
pub mod tainteviction;
pub mod ttlafterfinished;
pub mod util;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::controller::Action;
use kube::Resource;

/// What a reconcile can fail on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("apiserver request failed")]
    Kube(#[from] kube::Error),
    #[error("object has no {0}")]
    MissingField(&'static str),
    #[error("discovery failed")]
    Discovery(#[source] kube::Error),
    #[error("failed to serialize object")]
    Serialize(#[from] serde_json::Error),
    #[error("{0}")]
    Other(String),
}

/// The shared error policy: log and retry with a short backoff.
pub fn error_policy<K: Resource, C>(obj: Arc<K>, error: &Error, _ctx: Arc<C>) -> Action {
    let name = obj.meta().name.clone().unwrap_or_default();
    tracing::debug!(kind = %std::any::type_name::<K>(), %name, error = %error, "reconcile failed; requeueing");
    Action::requeue(Duration::from_secs(2))
}

/// The longest a reconcile asks to wait: later deadlines (a cron schedule years away, a token
/// expiring in 2099) are re-evaluated after this instead; kube-runtime's scheduler cannot hold
/// an instant decades away.
pub const MAX_REQUEUE: Duration = Duration::from_secs(3600);

/// `Action::requeue(after)`, capped at [`MAX_REQUEUE`].
pub fn requeue_after(after: Duration) -> Action {
    Action::requeue(after.min(MAX_REQUEUE))
}

/// Drains a controller's result stream, logging failures at debug level.
pub async fn drain<S, T, E>(controller: &'static str, results: S)
where
    S: futures::Stream<Item = Result<T, E>>,
    E: Debug,
{
    results
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(controller, error = ?e, "reconcile error");
            }
        })
        .await;
}

/// Whether the error is an HTTP status with `code`.
pub fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// A `'static` future that resolves when `shutdown` triggers, for `graceful_shutdown_on`.
pub fn stopped(
    shutdown: &component_base::Shutdown,
) -> impl std::future::Future<Output = ()> + Send + Sync + 'static {
    let shutdown = shutdown.clone();
    async move { shutdown.wait().await }
}

/// Controller settings with `workers` concurrent reconciles.
pub fn workers(workers: u16) -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default().concurrency(workers)
}
