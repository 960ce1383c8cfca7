//! Periodic compaction of the store's history, as kube-apiserver does with
//! --etcd-compaction-interval (default 5m): each round compacts to the revision seen one
//! interval earlier, so watchers always have at least one interval of history.

use std::time::Duration;

use super::Storage;

/// Compacts every `interval` until shutdown; an interval of zero disables it.
pub async fn run<F: Fn(i64) + Send>(
    storage: Storage,
    interval: Duration,
    shutdown: component_base::Shutdown,
    on_compacted: F,
) {
    if interval.is_zero() {
        return;
    }
    let mut previous: Option<i64> = None;
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let current = match storage.current_revision().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "compactor: reading the revision");
                continue;
            }
        };
        if let Some(rev) = previous {
            match storage.compact(rev).await {
                Ok(()) => {
                    tracing::debug!(revision = rev, "compacted");
                    on_compacted(rev);
                }
                Err(e) => tracing::debug!(error = %e, revision = rev, "compaction skipped"),
            }
        }
        previous = Some(current);
    }
}
