//! Max-in-flight limits: separate pools for read-only and mutating requests, 429 when full.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::metrics::{Metrics, RequestKind};

/// The `Retry-After` header value upstream sends with a throttling 429.
pub const RETRY_AFTER: &str = "1";
/// The plain-text body upstream's max-in-flight filter answers 429 with.
pub const TOO_MANY_REQUESTS_BODY: &str = "Too many requests, please try again later.\n";

/// Whether a request (by its lowercase authorization verb) counts against the mutating pool.
pub fn is_mutating_verb(verb: &str) -> bool {
    !matches!(verb, "get" | "list" | "watch")
}

/// Whether a request is long-running and so exempt from the limit (and from
/// --request-timeout): watches and proxies, and the streaming subresources. Upstream's
/// kube-apiserver check; a `get` of `pods/log` counts even without `follow`, as upstream's.
pub fn is_long_running(verb: &str, subresource: &str) -> bool {
    matches!(verb, "watch" | "proxy")
        || matches!(
            subresource,
            "attach" | "exec" | "proxy" | "log" | "portforward"
        )
}

#[derive(Debug)]
struct Pool {
    /// 0 means unlimited; requests are still counted for the metric.
    max: usize,
    current: AtomicUsize,
    /// The highest `current` since the last [`InflightLimiter::record_watermarks`].
    watermark: AtomicUsize,
}

impl Pool {
    fn new(max: usize) -> Self {
        Self {
            max,
            current: AtomicUsize::new(0),
            watermark: AtomicUsize::new(0),
        }
    }

    fn try_acquire(&self) -> bool {
        let taken = self
            .current
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (self.max == 0 || n < self.max).then_some(n + 1)
            });
        match taken {
            Ok(before) => {
                self.watermark.fetch_max(before + 1, Ordering::AcqRel);
                true
            }
            Err(_) => false,
        }
    }

    fn release(&self) {
        self.current.fetch_sub(1, Ordering::AcqRel);
    }

    /// Returns the peak since the last call and starts a new window at the current level.
    fn take_watermark(&self) -> usize {
        let current = self.current.load(Ordering::Acquire);
        self.watermark.swap(current, Ordering::AcqRel).max(current)
    }
}

#[derive(Debug)]
struct Inner {
    read_only: Pool,
    mutating: Pool,
}

impl Inner {
    fn pool(&self, mutating: bool) -> &Pool {
        if mutating {
            &self.mutating
        } else {
            &self.read_only
        }
    }
}

/// Upstream's max-in-flight filter (--max-requests-inflight, --max-mutating-requests-inflight).
///
/// Never blocks: a full pool makes [`InflightLimiter::try_acquire`] return `None` and the
/// caller answers 429 with `Retry-After: 1`. Callers skip the limiter for long-running requests
/// and, like upstream, let members of system:masters through even when a pool is full.
#[derive(Clone)]
pub struct InflightLimiter {
    inner: Arc<Inner>,
    metrics: Option<Metrics>,
}

impl std::fmt::Debug for InflightLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InflightLimiter")
            .field("read_only_max", &self.inner.read_only.max)
            .field("mutating_max", &self.inner.mutating.max)
            .field("read_only", &self.in_flight(false))
            .field("mutating", &self.in_flight(true))
            .finish()
    }
}

impl InflightLimiter {
    /// Pools of `read_only_max` and `mutating_max` permits; 0 leaves a pool unlimited.
    pub fn new(read_only_max: usize, mutating_max: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                read_only: Pool::new(read_only_max),
                mutating: Pool::new(mutating_max),
            }),
            metrics: None,
        }
    }

    /// Reports pool usage as `apiserver_current_inflight_requests` on each
    /// [`InflightLimiter::record_watermarks`].
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Takes a permit from the pool the request belongs to, or `None` when it is full.
    pub fn try_acquire(&self, mutating: bool) -> Option<InflightPermit> {
        self.inner
            .pool(mutating)
            .try_acquire()
            .then(|| InflightPermit {
                inner: Arc::clone(&self.inner),
                mutating,
            })
    }

    /// Requests holding a permit of the given pool now.
    pub fn in_flight(&self, mutating: bool) -> usize {
        self.inner.pool(mutating).current.load(Ordering::Acquire)
    }

    /// Publishes each pool's peak since the previous call and starts a new window. Upstream
    /// samples once a second, so the gauge shows the busiest moment of the last second rather
    /// than whatever happened to be running at scrape time; call this from a 1 s ticker.
    pub fn record_watermarks(&self) -> (usize, usize) {
        let read_only = self.inner.read_only.take_watermark();
        let mutating = self.inner.mutating.take_watermark();
        if let Some(metrics) = &self.metrics {
            metrics.set_inflight(RequestKind::ReadOnly, read_only);
            metrics.set_inflight(RequestKind::Mutating, mutating);
        }
        (read_only, mutating)
    }
}

/// A slot in one pool, given back when dropped.
#[derive(Debug)]
pub struct InflightPermit {
    inner: Arc<Inner>,
    mutating: bool,
}

impl InflightPermit {
    pub fn is_mutating(&self) -> bool {
        self.mutating
    }
}

impl Drop for InflightPermit {
    fn drop(&mut self) {
        self.inner.pool(self.mutating).release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_pool_refuses_until_a_permit_is_dropped() {
        let limiter = InflightLimiter::new(2, 1);
        let a = limiter.try_acquire(false).expect("first");
        let _b = limiter.try_acquire(false).expect("second");
        assert!(limiter.try_acquire(false).is_none());
        drop(a);
        assert!(limiter.try_acquire(false).is_some());
    }

    #[test]
    fn pools_are_independent() {
        let limiter = InflightLimiter::new(1, 1);
        let _read = limiter.try_acquire(false).expect("read");
        let write = limiter.try_acquire(true).expect("write");
        assert!(write.is_mutating());
        assert!(limiter.try_acquire(true).is_none());
        assert_eq!(limiter.in_flight(false), 1);
        assert_eq!(limiter.in_flight(true), 1);
    }

    #[test]
    fn zero_means_unlimited() {
        let limiter = InflightLimiter::new(0, 0);
        let permits: Vec<_> = (0..1000)
            .map(|_| limiter.try_acquire(true).expect("unlimited"))
            .collect();
        assert_eq!(limiter.in_flight(true), 1000);
        drop(permits);
        assert_eq!(limiter.in_flight(true), 0);
    }

    #[test]
    fn watermark_reports_the_peak_of_the_last_window() {
        let registry = prometheus::Registry::new();
        let metrics = Metrics::new(&registry).expect("registers");
        let limiter = InflightLimiter::new(10, 10).with_metrics(metrics);
        let permits: Vec<_> = (0..3).map(|_| limiter.try_acquire(false)).collect();
        drop(permits);
        let _one = limiter.try_acquire(true);
        assert_eq!(limiter.record_watermarks(), (3, 1));
        // The next window starts from what is still running.
        assert_eq!(limiter.record_watermarks(), (0, 1));
        let families = registry.gather();
        let gauge = families
            .iter()
            .find(|f| f.name() == "apiserver_current_inflight_requests")
            .expect("gauge exported");
        assert_eq!(gauge.get_metric().len(), 2);
    }

    #[test]
    fn permits_are_shared_safely_across_threads() {
        let limiter = InflightLimiter::new(4, 0);
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let limiter = limiter.clone();
                std::thread::spawn(move || {
                    let mut granted = 0;
                    for _ in 0..1000 {
                        if let Some(p) = limiter.try_acquire(false) {
                            assert!(limiter.in_flight(false) <= 4);
                            granted += 1;
                            drop(p);
                        }
                    }
                    granted
                })
            })
            .collect();
        let granted: usize = handles.into_iter().map(|h| h.join().expect("joins")).sum();
        assert!(granted > 0);
        assert_eq!(limiter.in_flight(false), 0);
    }

    #[test]
    fn only_get_list_and_watch_are_read_only() {
        for verb in ["get", "list", "watch"] {
            assert!(!is_mutating_verb(verb), "{verb}");
        }
        for verb in ["create", "update", "patch", "delete", "deletecollection"] {
            assert!(is_mutating_verb(verb), "{verb}");
        }
    }

    #[test]
    fn watches_and_streams_are_long_running() {
        assert!(is_long_running("watch", ""));
        assert!(is_long_running("get", "log"));
        assert!(is_long_running("create", "exec"));
        assert!(!is_long_running("list", ""));
        assert!(!is_long_running("update", "status"));
    }
}
