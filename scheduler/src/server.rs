//! The secure port: health, metrics and `/debug/pending/<namespace>/<pod>`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use component_base::leaderelection::Watchdog;
use component_base::{http::handler, Health, Reply, Shutdown};
use http::StatusCode;

use crate::metrics::Metrics;
use crate::scheduler::Scheduler;
use crate::{Config, Error};

fn self_signed(dir: Option<&PathBuf>) -> Result<(PathBuf, PathBuf), Error> {
    let boxed = |e: Box<dyn std::error::Error + Send + Sync>| Error::SelfSigned(e);
    let dir = dir.cloned().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("kube-scheduler-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).map_err(|e| boxed(Box::new(e)))?;
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .map_err(|e| boxed(Box::new(e)))?;
    let crt = dir.join("kube-scheduler.crt");
    let key = dir.join("kube-scheduler.key");
    std::fs::write(&crt, cert.cert.pem()).map_err(|e| boxed(Box::new(e)))?;
    std::fs::write(&key, cert.signing_key.serialize_pem()).map_err(|e| boxed(Box::new(e)))?;
    Ok((crt, key))
}

/// Serves HTTPS on `addr`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    cfg: &Config,
    sched: Arc<Scheduler>,
    metrics: &Metrics,
    leader: Option<Watchdog>,
    auth: Arc<component_base::delegated::DelegatedAuth>,
    shutdown: Shutdown,
) -> Result<SocketAddr, Error> {
    let (crt, key) = match cfg.tls.clone() {
        Some(pair) => pair,
        None => self_signed(cfg.cert_dir.as_ref())?,
    };
    let client_cas = cfg.cert_auth.ca_files();
    let tls = component_base::tls::server_config_optional_client_certs(
        &crt,
        &key,
        &client_cas.iter().map(PathBuf::as_path).collect::<Vec<_>>(),
        component_base::tls::ALPN_HTTP,
    )
    .map_err(Error::Serve)?;
    let health = Health::new();
    if let Some(dog) = leader {
        // As upstream's leader-election healthz adaptor: a leader that stopped renewing is
        // unhealthy; a standby is healthy.
        health.add_check("leaderElection", move || {
            dog.check(crate::leader_election::HEALTHZ_TOLERANCE)
        });
    }
    let s = sched.clone();
    health.add_readiness_check("sched-handler-sync", move || {
        if s.synced() {
            Ok(())
        } else {
            Err("informers not synced".into())
        }
    });
    let extra = handler(move |path: String, _query: Option<String>| {
        let sched = sched.clone();
        async move {
            let Some(rest) = path.strip_prefix("/debug/pending/") else {
                return Reply::not_found();
            };
            let Some((ns, name)) = rest.split_once('/') else {
                return Reply::not_found();
            };
            match sched.pending_diagnosis(&format!("{ns}/{name}")) {
                Some(d) => match serde_json::to_vec(&serde_json::json!({
                    "pod": format!("{ns}/{name}"),
                    "message": d.message,
                    "nodes": d.nodes,
                })) {
                    Ok(body) => Reply::json(StatusCode::OK, body),
                    Err(_) => Reply::text(StatusCode::INTERNAL_SERVER_ERROR, "encode failed\n"),
                },
                None => Reply::text(
                    StatusCode::NOT_FOUND,
                    format!("pod {ns}/{name} is not pending in this scheduler\n"),
                ),
            }
        }
    });
    let (bound, _task) = component_base::serve_guarded(
        addr,
        Some(tls),
        metrics.registry.clone(),
        health,
        Some(extra),
        Some(auth.guard()),
        shutdown,
    )
    .await
    .map_err(Error::Serve)?;
    Ok(bound)
}
