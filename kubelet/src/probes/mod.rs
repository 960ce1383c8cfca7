//! Container probes (liveness, readiness, startup) by exec (CRI ExecSync), httpGet and
//! tcpSocket, with upstream's timing and thresholds: startup gates the others, readiness drives
//! `ready`, and liveness or startup failures ask for the container to be killed.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cri::Runtime;

mod tls;

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }

    fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            Kind::Liveness => c.liveness_probe.as_ref(),
            Kind::Readiness => c.readiness_probe.as_ref(),
            Kind::Startup => c.startup_probe.as_ref(),
        }
    }
}

/// A probe's settings with upstream's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(p: &Probe) -> Self {
        let secs =
            |v: Option<i32>, default: i32| Duration::from_secs(v.unwrap_or(default).max(0) as u64);
        Timing {
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

/// One probe's consecutive results and current verdict.
#[derive(Debug, Clone, Default)]
pub struct ProbeState {
    successes: u32,
    failures: u32,
    /// `None` until a threshold was reached.
    pub result: Option<bool>,
    last_run: Option<Instant>,
    pub last_message: String,
}

impl ProbeState {
    /// Whether the probe should run now, for a container started at `started`.
    pub fn due(
        &self,
        timing: &Timing,
        started: SystemTime,
        now: SystemTime,
        clock: Instant,
    ) -> bool {
        let since_start = now.duration_since(started).unwrap_or_default();
        if since_start < timing.initial_delay {
            return false;
        }
        self.last_run
            .is_none_or(|last| clock.duration_since(last) >= timing.period)
    }

    /// Records one outcome; returns the verdict after it.
    pub fn record(&mut self, ok: bool, timing: &Timing, clock: Instant) -> Option<bool> {
        self.last_run = Some(clock);
        if ok {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= timing.success_threshold {
                self.result = Some(true);
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= timing.failure_threshold {
                self.result = Some(false);
            }
        }
        self.result
    }
}

/// Probe state of one container instance.
#[derive(Debug, Default)]
struct ContainerProbes {
    id: String,
    states: HashMap<Kind, ProbeState>,
}

/// A running container as the prober needs it.
#[derive(Debug, Clone)]
pub struct Running {
    pub name: String,
    pub id: String,
    pub started: SystemTime,
}

/// Why a container must be killed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kill {
    pub name: String,
    pub id: String,
    pub message: String,
}

/// A failed probe run (upstream records it as an `Unhealthy` event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub name: String,
    pub kind: Kind,
    pub message: String,
}

/// What one round of probing found.
#[derive(Debug, Default)]
pub struct Tick {
    pub kills: Vec<Kill>,
    pub failures: Vec<Failure>,
}

/// The probes of one pod's containers; kept by the pod's worker.
#[derive(Debug, Default)]
pub struct Prober {
    containers: HashMap<String, ContainerProbes>,
}

impl Prober {
    /// Whether the container's startup probe (if any) has succeeded.
    pub fn started(&self, c: &Container) -> bool {
        c.startup_probe.is_none()
            || self
                .containers
                .get(&c.name)
                .and_then(|p| p.states.get(&Kind::Startup))
                .and_then(|s| s.result)
                == Some(true)
    }

    /// Whether the running container counts as ready: started, and its readiness probe (if any)
    /// succeeded last.
    pub fn ready(&self, c: &Container) -> bool {
        self.started(c)
            && (c.readiness_probe.is_none()
                || self
                    .containers
                    .get(&c.name)
                    .and_then(|p| p.states.get(&Kind::Readiness))
                    .and_then(|s| s.result)
                    == Some(true))
    }

    /// Runs the probes that are due for `running` containers; returns the failures and the
    /// containers to kill.
    pub async fn tick(
        &mut self,
        runtime: &Runtime,
        containers: &[Container],
        running: &[Running],
        pod_ip: &str,
    ) -> Tick {
        self.containers
            .retain(|name, p| running.iter().any(|r| &r.name == name && r.id == p.id));
        let now = SystemTime::now();
        let clock = Instant::now();
        let mut due = Vec::new();
        for r in running {
            let Some(c) = containers.iter().find(|c| c.name == r.name) else {
                continue;
            };
            let probes = self
                .containers
                .entry(r.name.clone())
                .or_insert_with(|| ContainerProbes {
                    id: r.id.clone(),
                    states: HashMap::new(),
                });
            let started = c.startup_probe.is_none()
                || probes.states.get(&Kind::Startup).and_then(|s| s.result) == Some(true);
            let kinds: &[Kind] = if started {
                &[Kind::Liveness, Kind::Readiness]
            } else {
                &[Kind::Startup]
            };
            for &kind in kinds {
                let Some(probe) = kind.of(c) else { continue };
                let timing = Timing::of(probe);
                let state = probes.states.entry(kind).or_default();
                if state.due(&timing, r.started, now, clock) {
                    due.push((r.clone(), c.clone(), kind, probe.clone(), timing));
                }
            }
        }
        let outcomes = futures::future::join_all(due.into_iter().map(
            |(r, c, kind, probe, timing)| async move {
                let outcome = run(runtime, &probe, &c, &r.id, pod_ip, timing.timeout).await;
                (r, kind, timing, outcome)
            },
        ))
        .await;
        let mut tick = Tick::default();
        for (r, kind, timing, outcome) in outcomes {
            let Some(probes) = self.containers.get_mut(&r.name) else {
                continue;
            };
            let state = probes.states.entry(kind).or_default();
            let ok = outcome.is_ok();
            if let Err(message) = &outcome {
                state.last_message = message.clone();
                tracing::info!(container = %r.name, probe = kind.name(), %message, "probe failed");
                tick.failures.push(Failure {
                    name: r.name.clone(),
                    kind,
                    message: message.clone(),
                });
            }
            let failed_for_good = !ok && state.failures + 1 >= timing.failure_threshold;
            let verdict = state.record(ok, &timing, clock);
            let kill = match kind {
                Kind::Liveness => verdict == Some(false),
                Kind::Startup => failed_for_good,
                Kind::Readiness => false,
            };
            if kill {
                tick.kills.push(Kill {
                    name: r.name.clone(),
                    id: r.id.clone(),
                    message: format!(
                        "Container {} failed {} probe, will be restarted",
                        r.name,
                        kind.name().to_lowercase()
                    ),
                });
            }
        }
        tick
    }
}

/// Runs one probe; `Err` holds upstream-like failure output.
pub async fn run(
    runtime: &Runtime,
    probe: &Probe,
    container: &Container,
    container_id: &str,
    pod_ip: &str,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(exec) = &probe.exec {
        let cmd = exec.command.clone().unwrap_or_default();
        return match runtime.exec_sync(container_id, cmd, timeout).await {
            Ok(out) if out.exit_code == 0 => Ok(()),
            Ok(out) => Err(format!(
                "command exited with {}: {}{}",
                out.exit_code,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )),
            Err(e) => Err(format!("exec: {e}")),
        };
    }
    if let Some(http) = &probe.http_get {
        let port = resolve_port(&http.port, container)?;
        let host = http
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| pod_ip.to_string());
        let https = http.scheme.as_deref() == Some("HTTPS");
        let scheme = if https { "https" } else { "http" };
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let headers: Vec<(String, String)> = http
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        let request = http_request(&host, port, &path, &headers);
        let url = format!("{scheme}://{host}:{port}{path}");
        let result = tokio::time::timeout(timeout, async {
            let tcp = TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| format!("Get \"{url}\": {e}"))?;
            if https {
                let tls = tls::connector()?
                    .connect(tls::server_name(&host)?, tcp)
                    .await
                    .map_err(|e| format!("Get \"{url}\": {e}"))?;
                exchange(tls, &request).await
            } else {
                exchange(tcp, &request).await
            }
        })
        .await;
        return match result {
            Err(_) => Err(format!("Get \"{url}\": context deadline exceeded")),
            Ok(Err(e)) => Err(e),
            Ok(Ok(code)) if (200..400).contains(&code) => Ok(()),
            Ok(Ok(code)) => Err(format!("HTTP probe failed with statuscode: {code}")),
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let port = resolve_port(&tcp.port, container)?;
        let host = tcp
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| pod_ip.to_string());
        return match tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), port))).await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {host}:{port}: {e}")),
            Err(_) => Err(format!("dial tcp {host}:{port}: i/o timeout")),
        };
    }
    Err("probe has no handler this kubelet supports".into())
}

/// Sends `request` and reads the status line of the answer.
async fn exchange<S>(mut stream: S, request: &str) -> Result<u16, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 1024];
    let mut got = 0;
    while got < buf.len() {
        let n = stream
            .read(&mut buf[got..])
            .await
            .map_err(|e| e.to_string())?;
        got += n;
        if n == 0 || buf[..got].windows(2).any(|w| w == b"\r\n") {
            break;
        }
    }
    status_code(&buf[..got]).ok_or_else(|| "malformed HTTP response".to_string())
}

/// A port number, or a named container port.
fn resolve_port(port: &IntOrString, c: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| format!("invalid port {p}")),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .or_else(|| name.parse().ok())
            .ok_or_else(|| format!("couldn't find port {name:?} in container {}", c.name)),
    }
}

fn http_request(host: &str, port: u16, path: &str, headers: &[(String, String)]) -> String {
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    if !has("host") {
        req.push_str(&format!("Host: {host}:{port}\r\n"));
    }
    if !has("user-agent") {
        req.push_str("User-Agent: kube-probe/1.33\r\n");
    }
    if !has("accept") {
        req.push_str("Accept: */*\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    req
}

/// The status code of an HTTP/1.x status line.
fn status_code(response: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(response).ok()?.lines().next()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ContainerPort;

    #[test]
    fn thresholds_need_consecutive_results() {
        let timing = Timing {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: 2,
            failure_threshold: 3,
        };
        let mut s = ProbeState::default();
        let t = Instant::now();
        assert_eq!(s.record(true, &timing, t), None);
        assert_eq!(s.record(true, &timing, t), Some(true));
        assert_eq!(s.record(false, &timing, t), Some(true));
        assert_eq!(s.record(false, &timing, t), Some(true));
        assert_eq!(
            s.record(true, &timing, t),
            Some(true),
            "a success resets failures"
        );
        for _ in 0..2 {
            assert_eq!(s.record(false, &timing, t), Some(true));
        }
        assert_eq!(s.record(false, &timing, t), Some(false));
        assert_eq!(s.record(true, &timing, t), Some(false));
        assert_eq!(s.record(true, &timing, t), Some(true));
    }

    #[test]
    fn probes_wait_for_the_initial_delay_and_then_the_period() {
        let timing = Timing::of(&Probe {
            initial_delay_seconds: Some(5),
            period_seconds: Some(2),
            ..Default::default()
        });
        assert_eq!(timing.timeout, Duration::from_secs(1));
        assert_eq!(timing.failure_threshold, 3);
        let started = SystemTime::now() - Duration::from_secs(3);
        let mut s = ProbeState::default();
        let clock = Instant::now();
        assert!(!s.due(&timing, started, SystemTime::now(), clock));
        let started = SystemTime::now() - Duration::from_secs(6);
        assert!(s.due(&timing, started, SystemTime::now(), clock));
        s.record(true, &timing, clock);
        assert!(!s.due(&timing, started, SystemTime::now(), clock));
        assert!(s.due(
            &timing,
            started,
            SystemTime::now(),
            clock + Duration::from_secs(2)
        ));
    }

    #[test]
    fn named_ports_resolve_from_the_container() {
        let c = Container {
            name: "web".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &c),
            Ok(8080)
        );
        assert_eq!(resolve_port(&IntOrString::Int(81), &c), Ok(81));
        assert!(resolve_port(&IntOrString::String("nope".into()), &c).is_err());
    }

    #[test]
    fn http_status_lines_parse() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 404 Not Found\r\n"), Some(404));
        assert_eq!(status_code(b"garbage"), None);
        let req = http_request("10.0.0.1", 80, "/healthz", &[("X-A".into(), "b".into())]);
        assert!(req.starts_with("GET /healthz HTTP/1.1\r\nHost: 10.0.0.1:80\r\n"));
        assert!(req.contains("User-Agent: kube-probe/"));
        assert!(req.contains("X-A: b\r\n"));
    }
}
