//! Delegated authentication and authorization for the secure port of apiserver clients
//! (kube-scheduler, kube-controller-manager), as upstream's `--authentication-kubeconfig` /
//! `--authorization-kubeconfig`: bearer tokens are checked with a TokenReview, the request with a
//! SubjectAccessReview on its non-resource path, both answered by the kube-apiserver. Paths in
//! `--authorization-always-allow-paths` (default `/healthz,/readyz,/livez`) skip both.
//!
//! Requests without a token are `system:anonymous`, so RBAC decides (normally 403), as upstream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use crate::http::{Guard, Reply};

/// How long a review's answer is reused (upstream caches both for 10 s by default).
const CACHE_TTL: Duration = Duration::from_secs(10);
/// Cached answers kept at most; the cache is cleared when it grows past this.
const CACHE_MAX: usize = 4096;

/// Upstream's default `--authorization-always-allow-paths`.
pub const DEFAULT_ALWAYS_ALLOW: &[&str] = &["/healthz", "/readyz", "/livez"];

/// A cached answer: when it was made, and the verdict.
type Cached = (Instant, Result<(), Reply>);

/// The reviewer: a client of the apiserver plus the always-allowed paths.
pub struct DelegatedAuth {
    authn: kube::Client,
    authz: kube::Client,
    always_allow: Vec<String>,
    cache: Mutex<HashMap<(String, String), Cached>>,
}

impl DelegatedAuth {
    /// Reviews tokens through `authn` and requests through `authz` (often the same client).
    pub fn new(authn: kube::Client, authz: kube::Client, always_allow: Vec<String>) -> Arc<Self> {
        Arc::new(Self {
            authn,
            authz,
            always_allow,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The guard to hand to [`crate::http::serve_guarded`].
    pub fn guard(self: Arc<Self>) -> Guard {
        Arc::new(move |path, authorization| {
            let this = self.clone();
            Box::pin(async move { this.check(&path, authorization.as_deref()).await })
        })
    }

    fn always_allowed(&self, path: &str) -> bool {
        self.always_allow.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == p,
        })
    }

    /// Ok when the request may proceed, else the 401/403 reply.
    pub async fn check(&self, path: &str, authorization: Option<&str>) -> Result<(), Reply> {
        if self.always_allowed(path) {
            return Ok(());
        }
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let key = (token.unwrap_or_default().to_owned(), path.to_owned());
        if let Some((at, answer)) = self.cache_get(&key) {
            if at.elapsed() < CACHE_TTL {
                return answer;
            }
        }
        let answer = self.review(path, token).await;
        // A failed review call (apiserver down) is not cached: the next request asks again.
        if !matches!(&answer, Err(r) if r.status == StatusCode::INTERNAL_SERVER_ERROR) {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(key, (Instant::now(), answer.clone()));
        }
        answer
    }

    fn cache_get(&self, key: &(String, String)) -> Option<Cached> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    async fn review(&self, path: &str, token: Option<&str>) -> Result<(), Reply> {
        let user = match token {
            None => UserInfo {
                username: Some("system:anonymous".to_owned()),
                groups: Some(vec!["system:unauthenticated".to_owned()]),
                ..UserInfo::default()
            },
            Some(token) => self.authenticate(token).await?,
        };
        let name = user.username.clone().unwrap_or_default();
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                groups: user.groups,
                uid: user.uid,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(path.to_owned()),
                    verb: Some("get".to_owned()),
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.authz.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| review_failed("subjectaccessreview", e))?;
        if answer.status.is_some_and(|s| s.allowed) {
            Ok(())
        } else {
            Err(status(
                StatusCode::FORBIDDEN,
                "Forbidden",
                &format!("forbidden: User {name:?} cannot get path {path:?}"),
            ))
        }
    }

    async fn authenticate(&self, token: &str) -> Result<UserInfo, Reply> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                ..TokenReviewSpec::default()
            },
            ..TokenReview::default()
        };
        let api: Api<TokenReview> = Api::all(self.authn.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| review_failed("tokenreview", e))?;
        match answer.status {
            Some(s) if s.authenticated == Some(true) => Ok(s.user.unwrap_or_default()),
            _ => Err(status(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "Unauthorized",
            )),
        }
    }
}

fn review_failed(what: &str, e: kube::Error) -> Reply {
    tracing::warn!(error = %e, "{what} failed");
    status(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        &format!("Internal Server Error: {what} failed"),
    )
}

/// An upstream-shaped `Status` body.
fn status(code: StatusCode, reason: &str, message: &str) -> Reply {
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": {},
        "code": code.as_u16(),
    });
    Reply::json(code, body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn always_allowed_paths_match_exactly_or_by_trailing_star() {
        let config = kube::Config::new("https://127.0.0.1:1".parse().unwrap());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let client = kube::Client::try_from(config).unwrap();
            let auth = DelegatedAuth::new(
                client.clone(),
                client,
                vec!["/healthz".into(), "/debug/*".into()],
            );
            assert!(auth.always_allowed("/healthz"));
            assert!(!auth.always_allowed("/healthz/x"));
            assert!(auth.always_allowed("/debug/pending/a/b"));
            assert!(!auth.always_allowed("/metrics"));
        });
    }
}
