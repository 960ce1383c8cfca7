//! Who is calling and may they: client certificates (verified by TLS against
//! authentication.x509.clientCAFile) or bearer tokens checked with a TokenReview
//! (authentication.webhook.enabled), then a SubjectAccessReview on the node's subresource
//! (authorization.mode Webhook), as upstream's kubelet server does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

/// How long review answers are reused.
const CACHE_TTL: Duration = Duration::from_secs(10);
const CACHE_MAX: usize = 4096;

/// --authorization-mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthzMode {
    AlwaysAllow,
    Webhook,
}

impl std::str::FromStr for AuthzMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "AlwaysAllow" => Ok(AuthzMode::AlwaysAllow),
            "Webhook" => Ok(AuthzMode::Webhook),
            other => Err(format!(
                "unknown authorization mode {other:?} (want AlwaysAllow or Webhook)"
            )),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn anonymous() -> Self {
        User {
            name: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
        }
    }
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// 401.
    Unauthorized,
    /// 403, with upstream's message.
    Forbidden(String),
    /// The review itself failed (apiserver unreachable): 500.
    Failed(String),
}

/// The attributes a kubelet request is authorized with: verb from the method, subresource
/// from the path (upstream's kubelet auth mapping).
pub fn attributes(method: &http::Method, path: &str) -> (&'static str, &'static str) {
    let verb = match *method {
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "get",
    };
    let sub = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    let subresource = if sub("/stats") {
        "stats"
    } else if sub("/metrics") {
        "metrics"
    } else if sub("/logs") {
        "log"
    } else if sub("/checkpoint") {
        "checkpoint"
    } else if sub("/configz") {
        "configz"
    } else {
        "proxy"
    };
    (verb, subresource)
}

/// The CN and O of a DER client certificate (chain verified by TLS; validity checked here on
/// every request).
pub fn user_from_cert(der: &[u8]) -> Option<User> {
    let (name, mut groups) = component_base::x509::client_identity(der)?;
    groups.push("system:authenticated".into());
    Some(User {
        name,
        uid: String::new(),
        groups,
    })
}

type Cache<K, V> = Mutex<HashMap<K, (Instant, V)>>;

fn cached<K: std::hash::Hash + Eq, V: Clone>(cache: &Cache<K, V>, key: &K) -> Option<V> {
    let cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .get(key)
        .filter(|(at, _)| at.elapsed() < CACHE_TTL)
        .map(|(_, v)| v.clone())
}

fn remember<K: std::hash::Hash + Eq, V>(cache: &Cache<K, V>, key: K, value: V) {
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= CACHE_MAX {
        cache.clear();
    }
    cache.insert(key, (Instant::now(), value));
}

/// The kubelet's authenticator and authorizer.
pub struct Auth {
    pub client: kube::Client,
    pub node_name: String,
    pub anonymous: bool,
    pub webhook_authn: bool,
    pub mode: AuthzMode,
    tokens: Cache<String, Option<User>>,
    decisions: Cache<(String, String, String), bool>,
}

impl Auth {
    pub fn new(
        client: kube::Client,
        node_name: String,
        anonymous: bool,
        webhook_authn: bool,
        mode: AuthzMode,
    ) -> Self {
        Auth {
            client,
            node_name,
            anonymous,
            webhook_authn,
            mode,
            tokens: Mutex::default(),
            decisions: Mutex::default(),
        }
    }

    /// Authenticates then authorizes one request.
    pub async fn check(
        &self,
        peer_cert: Option<&[u8]>,
        authorization: Option<&str>,
        method: &http::Method,
        path: &str,
    ) -> Result<User, Denied> {
        let user = self.authenticate(peer_cert, authorization).await?;
        if self.mode == AuthzMode::AlwaysAllow {
            return Ok(user);
        }
        let (verb, subresource) = attributes(method, path);
        let key = (user.name.clone(), verb.to_string(), subresource.to_string());
        let allowed = match cached(&self.decisions, &key) {
            Some(allowed) => allowed,
            None => {
                let allowed = self.review(&user, verb, subresource).await?;
                remember(&self.decisions, key, allowed);
                allowed
            }
        };
        if allowed {
            Ok(user)
        } else {
            Err(Denied::Forbidden(format!(
                "Forbidden (user={}, verb={verb}, resource=nodes, subresource={subresource})",
                user.name
            )))
        }
    }

    async fn authenticate(
        &self,
        peer_cert: Option<&[u8]>,
        authorization: Option<&str>,
    ) -> Result<User, Denied> {
        if let Some(user) = peer_cert.and_then(user_from_cert) {
            return Ok(user);
        }
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        match token {
            Some(token) if self.webhook_authn => {
                let user = match cached(&self.tokens, &token.to_string()) {
                    Some(user) => user,
                    None => {
                        let user = self.token_review(token).await?;
                        remember(&self.tokens, token.to_string(), user.clone());
                        user
                    }
                };
                user.ok_or(Denied::Unauthorized)
            }
            Some(_) => Err(Denied::Unauthorized),
            None if self.anonymous => Ok(User::anonymous()),
            None => Err(Denied::Unauthorized),
        }
    }

    async fn token_review(&self, token: &str) -> Result<Option<User>, Denied> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                ..TokenReviewSpec::default()
            },
            ..TokenReview::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "tokenreview failed");
                Denied::Failed("Internal Server Error: tokenreview failed".into())
            })?;
        Ok(answer
            .status
            .filter(|s| s.authenticated == Some(true))
            .and_then(|s| s.user)
            .map(|u| User {
                name: u.username.unwrap_or_default(),
                uid: u.uid.unwrap_or_default(),
                groups: u.groups.unwrap_or_default(),
            }))
    }

    async fn review(&self, user: &User, verb: &str, subresource: &str) -> Result<bool, Denied> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                groups: Some(user.groups.clone()),
                uid: (!user.uid.is_empty()).then(|| user.uid.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.to_string()),
                    version: Some("v1".into()),
                    resource: Some("nodes".into()),
                    subresource: Some(subresource.to_string()),
                    name: Some(self.node_name.clone()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "subjectaccessreview failed");
                Denied::Failed("Internal Server Error: subjectaccessreview failed".into())
            })?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_upstream_subresources_and_methods_to_verbs() {
        let cases = [
            ("stats", http::Method::GET, "/stats/summary", "get", "stats"),
            ("metrics", http::Method::GET, "/metrics", "get", "metrics"),
            (
                "metrics sub",
                http::Method::GET,
                "/metrics/cadvisor",
                "get",
                "metrics",
            ),
            ("logs", http::Method::GET, "/logs/syslog", "get", "log"),
            (
                "container logs",
                http::Method::GET,
                "/containerLogs/a/b/c",
                "get",
                "proxy",
            ),
            ("exec", http::Method::POST, "/exec/a/b/c", "create", "proxy"),
            ("pods", http::Method::GET, "/pods", "get", "proxy"),
            ("prefix only", http::Method::GET, "/statsx", "get", "proxy"),
            ("delete", http::Method::DELETE, "/x", "delete", "proxy"),
        ];
        for (name, method, path, verb, sub) in cases {
            assert_eq!(attributes(&method, path), (verb, sub), "{name}");
        }
    }

    #[test]
    fn authorization_modes_parse() {
        assert_eq!("Webhook".parse::<AuthzMode>(), Ok(AuthzMode::Webhook));
        assert_eq!(
            "AlwaysAllow".parse::<AuthzMode>(),
            Ok(AuthzMode::AlwaysAllow)
        );
        assert!("RBAC".parse::<AuthzMode>().is_err());
    }
}
