//! The :10256 health server: upstream's JSON body, 503 once a queued change waited too long.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use component_base::Shutdown;

/// Sync bookkeeping shared by the sync loop and the health server.
#[derive(Debug)]
pub struct HealthState {
    /// When the last successful sync finished.
    pub last_updated: Option<SystemTime>,
    /// The oldest change not yet programmed.
    pub oldest_pending: Option<Instant>,
    pub started: Instant,
    /// How long a change may wait before the proxy counts as unhealthy (2 × sync period).
    pub timeout: Duration,
}

/// A cloneable handle to the health state.
#[derive(Clone, Debug)]
pub struct ProxyHealth(pub Arc<Mutex<HealthState>>);

impl ProxyHealth {
    pub fn new(timeout: Duration) -> Self {
        Self(Arc::new(Mutex::new(HealthState {
            last_updated: None,
            oldest_pending: None,
            started: Instant::now(),
            timeout,
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A change arrived that is not programmed yet.
    pub fn queued(&self) {
        let mut s = self.lock();
        if s.oldest_pending.is_none() {
            s.oldest_pending = Some(Instant::now());
        }
    }

    /// Everything queued so far is programmed.
    pub fn updated(&self) {
        let mut s = self.lock();
        s.last_updated = Some(SystemTime::now());
        s.oldest_pending = None;
    }

    /// (healthy, lastUpdated)
    pub fn status(&self) -> (bool, Option<SystemTime>) {
        let s = self.lock();
        let healthy = match (s.oldest_pending, s.last_updated) {
            (Some(p), _) => p.elapsed() <= s.timeout,
            // Never synced: healthy only during the first timeout after start.
            (None, None) => s.started.elapsed() <= s.timeout,
            (None, Some(_)) => true,
        };
        (healthy, s.last_updated)
    }
}

/// Go's `time.Time.String()` in UTC: `2006-01-02 15:04:05.999999999 +0000 UTC`.
pub fn go_time(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    let mut frac = String::new();
    if d.subsec_nanos() != 0 {
        frac = format!(".{:09}", d.subsec_nanos());
        while frac.ends_with('0') {
            frac.pop();
        }
    }
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}{frac} +0000 UTC",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// The body and status of `/healthz` and `/livez`.
pub fn reply(health: &ProxyHealth) -> (u16, String) {
    let (healthy, last) = health.status();
    let last = last
        .map(go_time)
        .unwrap_or_else(|| "0001-01-01 00:00:00 +0000 UTC".into());
    let body = format!(
        "{{\"lastUpdated\": {:?},\"currentTime\": {:?}, \"nodeEligible\": true}}",
        last,
        go_time(SystemTime::now())
    );
    (if healthy { 200 } else { 503 }, body)
}

/// Serves `/healthz` and `/livez` on `addr` until shutdown; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    health: ProxyHealth,
    shutdown: Shutdown,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "serving healthz");
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.wait() => return,
                a = listener.accept() => a,
            };
            let Ok((mut stream, _)) = accepted else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let health = health.clone();
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(1024);
                let mut chunk = [0u8; 1024];
                // Read the request head (bounded), then answer and close.
                let read = tokio::time::timeout(Duration::from_secs(10), async {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16384 {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                })
                .await;
                if read.is_err() {
                    return;
                }
                let head = String::from_utf8_lossy(&buf);
                let path = head
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .split('?')
                    .next()
                    .unwrap_or("/")
                    .to_owned();
                let (status, ctype, body) = match path.as_str() {
                    "/healthz" | "/livez" => {
                        let (s, b) = reply(&health);
                        (s, "application/json", b)
                    }
                    _ => (
                        404,
                        "text/plain; charset=utf-8",
                        "404 page not found\n".into(),
                    ),
                };
                let reason = match status {
                    200 => "OK",
                    503 => "Service Unavailable",
                    _ => "Not Found",
                };
                let resp = format!(
                    "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nX-Content-Type-Options: nosniff\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(resp.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_time_formats_like_time_string() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1709283600, 500_000_000);
        assert_eq!(go_time(t), "2024-03-01 09:00:00.5 +0000 UTC");
    }

    #[test]
    fn stale_pending_change_is_unhealthy() {
        let h = ProxyHealth::new(Duration::ZERO);
        h.updated();
        assert!(h.status().0);
        h.queued();
        std::thread::sleep(Duration::from_millis(5));
        assert!(!h.status().0);
        assert_eq!(reply(&h).0, 503);
        h.updated();
        assert_eq!(reply(&h).0, 200);
    }
}
