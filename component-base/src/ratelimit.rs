//! client-go's client-side rate limiter (`--kube-api-qps`, `--kube-api-burst`): a token bucket
//! that holds `burst` tokens and refills at `qps` per second, as a tower layer under the kube
//! Client. Each request takes one token; when the bucket is empty the request waits in
//! `poll_ready` (the Client's buffer worker calls it before `call`), so requests leave in order.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

/// The shared bucket.
#[derive(Debug)]
pub struct TokenBucket {
    qps: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilled at `qps` per second (`qps > 0`, `burst >= 1`).
    pub fn new(qps: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            qps,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes a token at `now` and says how long to wait before using it (zero: go now).
    /// Tokens may go negative: later callers queue behind earlier reservations.
    pub fn reserve_at(&self, now: Instant) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = *state;
        let refilled = now.saturating_duration_since(last).as_secs_f64() * self.qps;
        let tokens = (tokens + refilled).min(self.burst) - 1.0;
        *state = (tokens, now.max(last));
        if tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-tokens / self.qps)
        }
    }
}

/// Wraps a service with a [`TokenBucket`].
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    bucket: Arc<TokenBucket>,
}

impl RateLimitLayer {
    /// `None` when `qps` is negative (upstream: no limit); `qps == 0` is invalid here and
    /// must be defaulted by the caller.
    pub fn new(qps: f32, burst: u32) -> Option<Self> {
        (qps > 0.0).then(|| Self {
            bucket: Arc::new(TokenBucket::new(f64::from(qps), burst)),
        })
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimited {
            inner,
            bucket: self.bucket.clone(),
            sleep: None,
            permitted: false,
        }
    }
}

/// A kube Client from `config` whose requests go through a `qps`/`burst` token bucket (no
/// limit when `qps` is negative or zero).
pub fn client(config: kube::Config, qps: f32, burst: u32) -> Result<kube::Client, kube::Error> {
    let builder = kube::client::ClientBuilder::try_from(config)?;
    Ok(match RateLimitLayer::new(qps, burst) {
        Some(layer) => builder.with_layer(&layer).build(),
        None => builder.build(),
    })
}

/// The rate-limited service.
#[derive(Debug)]
pub struct RateLimited<S> {
    inner: S,
    bucket: Arc<TokenBucket>,
    sleep: Option<Pin<Box<Sleep>>>,
    /// A token was taken and its wait is over: the next `call` may go.
    permitted: bool,
}

impl<S, Req> Service<Req> for RateLimited<S>
where
    S: Service<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        loop {
            if self.permitted {
                return self.inner.poll_ready(cx);
            }
            if let Some(sleep) = self.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
                self.permitted = true;
                continue;
            }
            let wait = self.bucket.reserve_at(Instant::now());
            if wait.is_zero() {
                self.permitted = true;
            } else {
                self.sleep = Some(Box::pin(tokio::time::sleep(wait)));
            }
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.permitted = false;
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_goes_at_once_then_requests_are_spaced_by_one_over_qps() {
        let bucket = TokenBucket::new(10.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(bucket.reserve_at(t0), Duration::ZERO);
        }
        // Empty: the 4th waits 100 ms, the 5th 200 ms (queued behind the 4th).
        assert_eq!(bucket.reserve_at(t0).as_millis(), 100);
        assert_eq!(bucket.reserve_at(t0).as_millis(), 200);
        // A second later 10 tokens came in, 2 of them owed: 7 go at once, capped by burst 3.
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..3 {
            assert_eq!(bucket.reserve_at(t1), Duration::ZERO);
        }
        assert_eq!(bucket.reserve_at(t1).as_millis(), 100);
    }

    #[test]
    fn idle_time_refills_only_up_to_burst() {
        let bucket = TokenBucket::new(100.0, 2);
        let t0 = Instant::now() + Duration::from_secs(60);
        assert_eq!(bucket.reserve_at(t0), Duration::ZERO);
        assert_eq!(bucket.reserve_at(t0), Duration::ZERO);
        assert!(bucket.reserve_at(t0) > Duration::ZERO);
    }

    #[test]
    fn negative_qps_disables_the_limit() {
        assert!(RateLimitLayer::new(-1.0, 0).is_none());
        assert!(RateLimitLayer::new(50.0, 100).is_some());
    }

    struct Echo;

    impl Service<u32> for Echo {
        type Response = u32;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<u32, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, x: u32) -> Self::Future {
            std::future::ready(Ok(x))
        }
    }

    #[tokio::test]
    async fn the_layer_spaces_calls_by_the_bucket() {
        use std::future::poll_fn;
        let layer = RateLimitLayer::new(20.0, 1).expect("limited");
        let mut svc = layer.layer(Echo);
        let start = Instant::now();
        for i in 0..3 {
            poll_fn(|cx| svc.poll_ready(cx)).await.expect("ready");
            assert_eq!(svc.call(i).await.expect("call"), i);
        }
        // 1 at once, then 2 more at 20/s: about 100 ms.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(95) && took < Duration::from_secs(1),
            "{took:?}"
        );
    }
}
