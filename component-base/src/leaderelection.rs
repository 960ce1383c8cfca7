//! Lease-based leader election as client-go's `leaderelection`: one holder renews a coordination.k8s.io/v1 Lease.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::chrono::Utc;
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::time::Instant;

use crate::Shutdown;

/// Where the lock lives and who we are: the Lease `namespace/name` and this candidate's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseLock {
    /// Namespace of the Lease (upstream daemons use `kube-system`).
    pub namespace: String,
    /// Name of the Lease, e.g. `kube-controller-manager`.
    pub name: String,
    /// This candidate's `holderIdentity`, unique per process (see [`default_identity`]).
    pub identity: String,
}

/// The election timings; upstream's defaults are 15 s / 10 s / 2 s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    /// How long non-leaders wait after the last observed renewal before taking over.
    pub lease_duration: Duration,
    /// How long the leader keeps retrying a failing renewal before giving up leadership.
    pub renew_deadline: Duration,
    /// How long candidates wait between attempts to acquire or renew.
    pub retry_period: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Why [`LeaderElector::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Renewal failed for longer than the renew deadline; the process should exit.
    LeadershipLost,
    /// Shutdown was triggered; the lease was released if we held it.
    Shutdown,
    /// The leading future finished on its own; the lease was released.
    Finished,
}

/// `<hostname>_<uuid>`, the identity upstream components use.
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}_{}", uuid::Uuid::new_v4())
}

/// Runs a candidate for one Lease lock.
pub struct LeaderElector {
    api: Api<Lease>,
    lock: LeaseLock,
    timings: Timings,
    /// The last record we saw and when (on our clock) we saw it change.
    observed: Option<(LeaseSpec, Instant)>,
    /// The lease as we last wrote it while holding it: a renewal updates it directly, without
    /// reading it first (client-go's fast path); `None` after any failure.
    written: Option<Lease>,
    /// When we last acquired or renewed the lease while leading; `None` when not leading.
    renewed: Arc<Mutex<Option<Instant>>>,
}

/// A view of a [`LeaderElector`] for health checks, as client-go's `HealthzAdaptor`: healthy
/// unless this candidate leads and has not renewed for longer than the lease duration plus a
/// tolerance.
#[derive(Clone, Debug)]
pub struct Watchdog {
    lease: String,
    lease_duration: Duration,
    renewed: Arc<Mutex<Option<Instant>>>,
}

impl Watchdog {
    /// `Err` with upstream's message when the leader's last renewal is older than the lease
    /// duration plus `tolerance` (upstream components use 20 s).
    pub fn check(&self, tolerance: Duration) -> Result<(), String> {
        let renewed = *self.renewed.lock().unwrap_or_else(|e| e.into_inner());
        match renewed {
            Some(at) if at.elapsed() > self.lease_duration + tolerance => Err(format!(
                "failed election to renew leadership on lease {}",
                self.lease
            )),
            _ => Ok(()),
        }
    }

    /// Whether this candidate currently leads.
    pub fn is_leader(&self) -> bool {
        self.renewed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }
}

/// What one acquire-or-renew attempt found.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    /// We hold the lease now.
    Held,
    /// Another candidate holds a lease that has not expired.
    HeldByOther(String),
    /// The apiserver failed or a write conflicted.
    Failed(String),
}

impl LeaderElector {
    /// A candidate for `lock` with `timings`, talking to the apiserver through `client`.
    pub fn new(client: Client, lock: LeaseLock, timings: Timings) -> Self {
        Self {
            api: Api::namespaced(client, &lock.namespace),
            lock,
            timings,
            observed: None,
            written: None,
            renewed: Arc::new(Mutex::new(None)),
        }
    }

    /// A health-check view of this candidate (see [`Watchdog`]).
    pub fn watchdog(&self) -> Watchdog {
        Watchdog {
            lease: self.lease_name(),
            lease_duration: self.timings.lease_duration,
            renewed: self.renewed.clone(),
        }
    }

    fn set_renewed(&self, at: Option<Instant>) {
        *self.renewed.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    /// Blocks until this candidate acquires the lease, then runs `on_started_leading` while
    /// renewing it. The future gets a [`Shutdown`] that triggers when leadership is lost or
    /// `shutdown` triggers. Returns when leadership is lost (the caller should exit, as upstream
    /// components do), when `shutdown` triggers, or when the leading future finishes.
    pub async fn run<F, Fut>(mut self, shutdown: Shutdown, on_started_leading: F) -> Ended
    where
        F: FnOnce(Shutdown) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        tracing::info!(lease = %self.lease_name(), identity = %self.lock.identity, "attempting to acquire leader lease");
        loop {
            match self.try_acquire_or_renew().await {
                Attempt::Held => break,
                Attempt::HeldByOther(holder) => {
                    tracing::debug!(lease = %self.lease_name(), %holder, "lease is held by another candidate");
                }
                Attempt::Failed(e) => {
                    tracing::info!(lease = %self.lease_name(), error = %e, "failed to acquire lease");
                }
            }
            tokio::select! {
                _ = shutdown.wait() => return Ended::Shutdown,
                _ = tokio::time::sleep(jitter(self.timings.retry_period)) => {}
            }
        }
        tracing::info!(lease = %self.lease_name(), identity = %self.lock.identity, "successfully acquired lease");

        let leading = Shutdown::new();
        let task = tokio::spawn(on_started_leading(leading.clone()));
        tokio::pin!(task);
        let mut last_renew = Instant::now();
        self.set_renewed(Some(last_renew));
        let ended = loop {
            tokio::select! {
                _ = shutdown.wait() => break Ended::Shutdown,
                _ = &mut task => break Ended::Finished,
                _ = tokio::time::sleep(self.timings.retry_period) => {}
            }
            let remaining = self
                .timings
                .renew_deadline
                .saturating_sub(last_renew.elapsed());
            let attempt = match tokio::time::timeout(remaining, self.try_acquire_or_renew()).await {
                Ok(attempt) => attempt,
                Err(_) => Attempt::Failed("renew timed out".to_owned()),
            };
            match attempt {
                Attempt::Held => {
                    last_renew = Instant::now();
                    self.set_renewed(Some(last_renew));
                }
                Attempt::HeldByOther(holder) => {
                    tracing::error!(lease = %self.lease_name(), %holder, "lease was taken by another candidate");
                    break Ended::LeadershipLost;
                }
                Attempt::Failed(e) => {
                    tracing::warn!(lease = %self.lease_name(), error = %e, "failed to renew lease");
                    if last_renew.elapsed() >= self.timings.renew_deadline {
                        break Ended::LeadershipLost;
                    }
                }
            }
        };
        leading.trigger();
        self.set_renewed(None);
        match ended {
            Ended::LeadershipLost => {
                tracing::error!(lease = %self.lease_name(), "leaderelection lost");
            }
            Ended::Shutdown => {
                // Give the leading work a moment to stop before handing the lease over.
                let _ = tokio::time::timeout(Duration::from_secs(5), &mut task).await;
                self.release().await;
            }
            // The task already completed; polling it again would panic.
            Ended::Finished => self.release().await,
        }
        ended
    }

    fn lease_name(&self) -> String {
        format!("{}/{}", self.lock.namespace, self.lock.name)
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.timings.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    async fn try_acquire_or_renew(&mut self) -> Attempt {
        let now = MicroTime(Utc::now());
        // Fast path for the holder: update the record we wrote last. Its resourceVersion makes
        // the write fail if anyone else changed the lease since; then read and decide as usual.
        if let Some(mut lease) = self.written.take() {
            if let Some(spec) = lease.spec.as_mut() {
                spec.renew_time = Some(now.clone());
            }
            match self.replace(&lease).await {
                Ok(updated) => return self.hold(updated),
                Err(e) => {
                    tracing::debug!(lease = %self.lease_name(), error = %e, "optimistic renewal failed; reading the lease");
                }
            }
        }
        let existing = match self.api.get_opt(&self.lock.name).await {
            Ok(existing) => existing,
            Err(e) => return Attempt::Failed(e.to_string()),
        };
        let Some(existing) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.lock.name.clone()),
                    namespace: Some(self.lock.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.lock.identity.clone()),
                    lease_duration_seconds: Some(self.duration_seconds()),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => self.hold(created),
                Err(e) => Attempt::Failed(e.to_string()),
            };
        };

        let spec = existing.spec.clone().unwrap_or_default();
        self.observe(spec.clone());
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let ours = holder == self.lock.identity;
        if !holder.is_empty() && !ours && !self.observed_expired(&spec) {
            return Attempt::HeldByOther(holder);
        }

        let mut next = spec.clone();
        if !ours {
            next.acquire_time = Some(now.clone());
            next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        next.holder_identity = Some(self.lock.identity.clone());
        next.lease_duration_seconds = Some(self.duration_seconds());
        next.renew_time = Some(now);
        let mut lease = existing;
        lease.spec = Some(next);
        match self.replace(&lease).await {
            Ok(updated) => self.hold(updated),
            Err(e) => Attempt::Failed(e.to_string()),
        }
    }

    /// Writes `lease` back; it carries the resourceVersion it was read or written at, so a
    /// concurrent writer makes this a 409.
    async fn replace(&self, lease: &Lease) -> Result<Lease, kube::Error> {
        self.api
            .replace(&self.lock.name, &PostParams::default(), lease)
            .await
    }

    /// We hold the lease as `written` says.
    fn hold(&mut self, written: Lease) -> Attempt {
        self.observe(written.spec.clone().unwrap_or_default());
        self.written = Some(written);
        Attempt::Held
    }

    /// Records `spec` with the local time when it differs from what we saw last.
    fn observe(&mut self, spec: LeaseSpec) {
        let changed = self.observed.as_ref().is_none_or(|(seen, _)| *seen != spec);
        if changed {
            self.observed = Some((spec, Instant::now()));
        }
    }

    /// Whether the other holder's lease ran out, judged by our clock since we saw it change
    /// (as upstream, so clock skew between candidates does not matter).
    fn observed_expired(&self, spec: &LeaseSpec) -> bool {
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(self.timings.lease_duration);
        match &self.observed {
            Some((_, at)) => at.elapsed() >= duration,
            None => true,
        }
    }

    /// Hands the lease over at once: clears the holder, as upstream's ReleaseOnCancel.
    async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.lock.name).await else {
            return;
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.lock.identity.as_str()) {
            return;
        }
        let now = MicroTime(Utc::now());
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now.clone());
        spec.acquire_time = Some(now);
        lease.spec = Some(spec);
        match self.replace(&lease).await {
            Ok(_) => tracing::info!(lease = %self.lease_name(), "released leader lease"),
            Err(e) => {
                tracing::warn!(lease = %self.lease_name(), error = %e, "failed to release lease")
            }
        }
    }
}

/// `period` stretched by up to 20 %, so candidates do not retry in lockstep.
fn jitter(period: Duration) -> Duration {
    let nanos = u64::from(Utc::now().timestamp_subsec_nanos());
    period + period.mul_f64((nanos % 1000) as f64 / 1000.0 * 0.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_timings_match_upstream() {
        let t = Timings::default();
        assert_eq!(t.lease_duration, Duration::from_secs(15));
        assert_eq!(t.renew_deadline, Duration::from_secs(10));
        assert_eq!(t.retry_period, Duration::from_secs(2));
    }

    #[test]
    fn identity_is_hostname_underscore_uuid() {
        let id = default_identity();
        let (host, uuid) = id.rsplit_once('_').expect("an underscore");
        assert!(!host.is_empty());
        assert_eq!(uuid.len(), 36);
        assert_ne!(default_identity(), id);
    }

    #[test]
    fn watchdog_fails_only_for_a_leader_that_stopped_renewing() {
        let renewed = Arc::new(Mutex::new(None));
        let dog = Watchdog {
            lease: "kube-system/kube-scheduler".into(),
            lease_duration: Duration::from_secs(15),
            renewed: renewed.clone(),
        };
        assert!(dog.check(Duration::from_secs(20)).is_ok(), "not leading");
        assert!(!dog.is_leader());
        *renewed.lock().expect("lock") = Some(Instant::now());
        assert!(dog.check(Duration::from_secs(20)).is_ok(), "fresh renewal");
        assert!(dog.is_leader());
        let stale = Instant::now()
            .checked_sub(Duration::from_secs(40))
            .expect("the clock is past 40 s");
        *renewed.lock().expect("lock") = Some(stale);
        assert_eq!(
            dog.check(Duration::from_secs(20)),
            Err("failed election to renew leadership on lease kube-system/kube-scheduler".into())
        );
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let j = jitter(Duration::from_secs(2));
        assert!(j >= Duration::from_secs(2) && j <= Duration::from_millis(2400));
    }
}
