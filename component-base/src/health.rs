//! Named health checks answered on `/healthz`, `/livez` and `/readyz` the way upstream does.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, RwLock};

use http::StatusCode;

use crate::http::Reply;

type CheckFn = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

#[derive(Clone)]
struct Check {
    name: String,
    check: CheckFn,
    readiness_only: bool,
}

/// A shared registry of health checks; clones see the same checks.
///
/// It starts with upstream's `ping` check, which always passes.
#[derive(Clone)]
pub struct Health {
    checks: Arc<RwLock<Vec<Check>>>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.snapshot().into_iter().map(|c| c.name).collect();
        f.debug_struct("Health").field("checks", &names).finish()
    }
}

/// The root health paths; each is answered by `name check passed` / `name check failed`.
const ENDPOINTS: &[&str] = &["healthz", "livez", "readyz"];

impl Health {
    /// A registry holding only the `ping` check.
    pub fn new() -> Self {
        let health = Self {
            checks: Arc::new(RwLock::new(Vec::new())),
        };
        health.add_check("ping", || Ok(()));
        health
    }

    /// Adds a check evaluated by `/healthz`, `/livez` and `/readyz`, replacing any check of the
    /// same name. The error string is logged and shown on `/<endpoint>/<name>`, never on the
    /// root endpoints.
    pub fn add_check<F>(&self, name: impl Into<String>, check: F)
    where
        F: Fn() -> Result<(), String> + Send + Sync + 'static,
    {
        self.insert(name.into(), Arc::new(check), false);
    }

    /// Adds a check evaluated by `/readyz` only, e.g. "caches synced" or "not shutting down".
    pub fn add_readiness_check<F>(&self, name: impl Into<String>, check: F)
    where
        F: Fn() -> Result<(), String> + Send + Sync + 'static,
    {
        self.insert(name.into(), Arc::new(check), true);
    }

    fn insert(&self, name: String, check: CheckFn, readiness_only: bool) {
        let mut checks = self.checks.write().unwrap_or_else(|e| e.into_inner());
        let entry = Check {
            name,
            check,
            readiness_only,
        };
        match checks.iter_mut().find(|c| c.name == entry.name) {
            Some(existing) => *existing = entry,
            None => checks.push(entry),
        }
    }

    fn snapshot(&self) -> Vec<Check> {
        // A check that panicked cannot leave the list half-written, so a poisoned lock is fine.
        self.checks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Answers a health path (`/healthz`, `/livez`, `/readyz` or `/<endpoint>/<check>`), or
    /// `None` when `path` is not one.
    pub fn respond(&self, path: &str, query: Option<&str>) -> Option<Reply> {
        let path = path.strip_prefix('/')?;
        let (endpoint, check) = match path.split_once('/') {
            Some((endpoint, check)) => (endpoint, Some(check)),
            None => (path, None),
        };
        if !ENDPOINTS.contains(&endpoint) {
            return None;
        }
        let checks: Vec<Check> = self
            .snapshot()
            .into_iter()
            .filter(|c| endpoint == "readyz" || !c.readiness_only)
            .collect();
        Some(match check {
            None => root(endpoint, &checks, query.unwrap_or("")),
            Some(name) => match checks.iter().find(|c| c.name == name) {
                Some(c) => single(c),
                None => Reply::not_found(),
            },
        })
    }
}

fn single(check: &Check) -> Reply {
    match (check.check)() {
        Ok(()) => Reply::text(StatusCode::OK, "ok"),
        Err(reason) => Reply::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal server error: {reason}\n"),
        ),
    }
}

fn root(endpoint: &str, checks: &[Check], query: &str) -> Reply {
    let mut verbose = false;
    let mut excluded = BTreeSet::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "verbose" => verbose = true,
            "exclude" => {
                excluded.insert(value.to_owned());
            }
            _ => {}
        }
    }

    let mut lines = String::new();
    let mut failed = Vec::new();
    let mut reasons = String::new();
    for c in checks {
        if excluded.remove(&c.name) {
            lines.push_str(&format!("[+]{} excluded: ok\n", c.name));
            continue;
        }
        match (c.check)() {
            Ok(()) => lines.push_str(&format!("[+]{} ok\n", c.name)),
            Err(reason) => {
                // The root endpoints are public, so the reason goes to the log only.
                lines.push_str(&format!("[-]{} failed: reason withheld\n", c.name));
                reasons.push_str(&format!("[-]{} failed: {reason}\n", c.name));
                failed.push(c.name.as_str());
            }
        }
    }
    if !excluded.is_empty() {
        let names: Vec<String> = excluded.iter().map(|n| format!("{n:?}")).collect();
        lines.push_str(&format!(
            "warn: some health checks cannot be excluded: no matches for {}\n",
            names.join(",")
        ));
    }

    if !failed.is_empty() {
        tracing::info!(
            endpoint,
            failed = %failed.join(","),
            "health check failed:\n{reasons}"
        );
        return Reply::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{lines}{endpoint} check failed\n"),
        );
    }
    if !verbose {
        return Reply::text(StatusCode::OK, "ok");
    }
    Reply::text(StatusCode::OK, format!("{lines}{endpoint} check passed\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(reply: &Reply) -> &str {
        std::str::from_utf8(&reply.body).expect("utf-8 body")
    }

    fn respond(health: &Health, path: &str, query: Option<&str>) -> Reply {
        health.respond(path, query).expect("a health path")
    }

    #[test]
    fn healthy_root_answers_ok_without_details() {
        let health = Health::new();
        for path in ["/healthz", "/livez", "/readyz"] {
            let reply = respond(&health, path, None);
            assert_eq!(reply.status, StatusCode::OK);
            assert_eq!(body(&reply), "ok");
            assert_eq!(reply.content_type, "text/plain; charset=utf-8");
        }
    }

    #[test]
    fn verbose_root_lists_each_check_and_the_endpoint_name() {
        let health = Health::new();
        health.add_check("etcd", || Ok(()));
        let reply = respond(&health, "/livez", Some("verbose"));
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(body(&reply), "[+]ping ok\n[+]etcd ok\nlivez check passed\n");
    }

    #[test]
    fn failing_check_gives_500_and_withholds_the_reason() {
        let health = Health::new();
        health.add_check("etcd", || Err("connection refused".to_owned()));
        let reply = respond(&health, "/healthz", None);
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body(&reply),
            "[+]ping ok\n[-]etcd failed: reason withheld\nhealthz check failed\n"
        );
    }

    #[test]
    fn single_check_path_shows_the_reason() {
        let health = Health::new();
        health.add_check("etcd", || Err("connection refused".to_owned()));
        let reply = respond(&health, "/healthz/etcd", None);
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body(&reply), "internal server error: connection refused\n");
        let reply = respond(&health, "/healthz/ping", None);
        assert_eq!((reply.status, body(&reply)), (StatusCode::OK, "ok"));
    }

    #[test]
    fn unknown_single_check_is_404() {
        let reply = respond(&Health::new(), "/readyz/nope", None);
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn excluded_check_passes_and_unknown_exclusions_are_warned_about() {
        let health = Health::new();
        health.add_check("etcd", || Err("down".to_owned()));
        let reply = respond(
            &health,
            "/readyz",
            Some("verbose&exclude=etcd&exclude=nope"),
        );
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            body(&reply),
            "[+]ping ok\n[+]etcd excluded: ok\n\
             warn: some health checks cannot be excluded: no matches for \"nope\"\n\
             readyz check passed\n"
        );
    }

    #[test]
    fn readiness_checks_only_affect_readyz() {
        let health = Health::new();
        health.add_readiness_check("informer-sync", || Err("not synced".to_owned()));
        assert_eq!(respond(&health, "/healthz", None).status, StatusCode::OK);
        assert_eq!(respond(&health, "/livez", None).status, StatusCode::OK);
        assert_eq!(
            respond(&health, "/readyz", None).status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            respond(&health, "/healthz/informer-sync", None).status,
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn adding_a_check_twice_replaces_it() {
        let health = Health::new();
        health.add_check("etcd", || Err("down".to_owned()));
        health.add_check("etcd", || Ok(()));
        let reply = respond(&health, "/healthz", Some("verbose"));
        assert_eq!(
            body(&reply),
            "[+]ping ok\n[+]etcd ok\nhealthz check passed\n"
        );
    }

    #[test]
    fn other_paths_are_not_health_paths() {
        let health = Health::new();
        assert!(health.respond("/metrics", None).is_none());
        assert!(health.respond("/healthzz", None).is_none());
        assert!(health.respond("/", None).is_none());
    }
}
