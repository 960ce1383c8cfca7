//! Lifecycle hooks: postStart right after a container starts (a failure kills it), preStop
//! before a container is stopped, inside its grace period. Handlers are exec, httpGet,
//! tcpSocket and sleep, run as the probes run them.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Probe};

use crate::cri::Runtime;
use crate::probes;

/// Upstream's floor for the time left to stop a container after its preStop hook.
pub const MIN_GRACE_AFTER_HOOK: Duration = Duration::from_secs(2);

/// Runs `handler` for `container`, giving up after `limit`; `Err` holds the failure.
pub async fn run(
    runtime: &Runtime,
    handler: &LifecycleHandler,
    container: &Container,
    container_id: &str,
    pod_ip: &str,
    limit: Duration,
) -> Result<(), String> {
    if let Some(sleep) = &handler.sleep {
        let wanted = Duration::from_secs(sleep.seconds.max(0) as u64);
        tokio::time::sleep(wanted.min(limit)).await;
        return Ok(());
    }
    let probe = Probe {
        exec: handler.exec.clone(),
        http_get: handler.http_get.clone(),
        tcp_socket: handler.tcp_socket.clone(),
        ..Default::default()
    };
    probes::run(runtime, &probe, container, container_id, pod_ip, limit).await
}

/// Runs the preStop hook of `container` (if any) within `grace`; returns the grace left for
/// stopping it (at least [`MIN_GRACE_AFTER_HOOK`] when a hook ran).
pub async fn pre_stop(
    runtime: &Runtime,
    container: &Container,
    container_id: &str,
    pod_ip: &str,
    grace: Duration,
) -> Duration {
    let Some(handler) = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
    else {
        return grace;
    };
    let started = Instant::now();
    if let Err(message) = run(runtime, handler, container, container_id, pod_ip, grace).await {
        tracing::warn!(container = %container.name, %message, "PreStop hook failed");
    }
    grace
        .saturating_sub(started.elapsed())
        .max(MIN_GRACE_AFTER_HOOK)
}
