//! A cloneable shutdown signal that daemons wait on, triggered by hand or by SIGTERM/SIGINT.

use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::Error;

/// Tells every part of a daemon to stop; all clones share one state.
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A handle that has not been triggered.
    pub fn new() -> Self {
        let (tx, _rx) = watch::channel(false);
        Self { tx: Arc::new(tx) }
    }

    /// A handle triggered by the first SIGTERM or SIGINT.
    ///
    /// As upstream components do, a second signal exits the process at once with code 1, so an
    /// operator can always stop a daemon whose graceful shutdown hangs. Must be called inside a
    /// tokio runtime.
    pub fn on_signals() -> Result<Self, Error> {
        let shutdown = Self::new();
        let mut term = signal(SignalKind::terminate()).map_err(Error::SignalHandler)?;
        let mut int = signal(SignalKind::interrupt()).map_err(Error::SignalHandler)?;
        let handle = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
                _ = int.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
            }
            handle.trigger();
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
            tracing::warn!("second signal received, exiting now");
            std::process::exit(1);
        });
        Ok(shutdown)
    }

    /// Starts shutdown; later calls do nothing.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether shutdown has started.
    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once shutdown has started (at once if it already has).
    pub async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|triggered| *triggered).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wait_returns_after_a_clone_triggers() {
        let shutdown = Shutdown::new();
        assert!(!shutdown.is_triggered());
        let waiter = {
            let s = shutdown.clone();
            tokio::spawn(async move { s.wait().await })
        };
        shutdown.clone().trigger();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("waiter finishes")
            .expect("waiter does not panic");
        assert!(shutdown.is_triggered());
    }

    #[tokio::test]
    async fn wait_returns_at_once_when_already_triggered() {
        let shutdown = Shutdown::new();
        shutdown.trigger();
        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(1), shutdown.wait())
            .await
            .expect("already triggered");
    }
}
