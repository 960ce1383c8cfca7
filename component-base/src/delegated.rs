//! Delegated authentication and authorization for the secure port of apiserver clients
//! (kube-scheduler, kube-controller-manager), as upstream's `--authentication-kubeconfig` /
//! `--authorization-kubeconfig`: bearer tokens are checked with a TokenReview, the request with a
//! SubjectAccessReview on its non-resource path, both answered by the kube-apiserver. Paths in
//! `--authorization-always-allow-paths` (default `/healthz,/readyz,/livez`) skip both.
//!
//! Requests without a token are `system:anonymous`, so RBAC decides (normally 403), as upstream.
//!
//! Client certificates authenticate too, as upstream's `--client-ca-file` (user = CN, groups =
//! O) and `--requestheader-client-ca-file` (a front proxy's certificate, whose request headers
//! name the user); both are tried before a bearer token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use rustls::server::danger::ClientCertVerifier;

use crate::http::{Access, Guard, Reply};

/// How long a review's answer is reused (upstream caches both for 10 s by default).
const CACHE_TTL: Duration = Duration::from_secs(10);
/// Cached answers kept at most; the cache is cleared when it grows past this.
const CACHE_MAX: usize = 4096;

/// Upstream's default `--authorization-always-allow-paths`.
pub const DEFAULT_ALWAYS_ALLOW: &[&str] = &["/healthz", "/readyz", "/livez"];

/// A cached answer: when it was made, and the verdict.
type Cached = (Instant, Result<(), Reply>);

/// Upstream's client-certificate authentication flags of the secure port
/// (`--client-ca-file`, `--requestheader-*`), as kube-scheduler and kube-controller-manager
/// take them.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CertFlags {
    /// If set, any request presenting a client certificate signed by one of the authorities in
    /// this file is authenticated with the certificate's CommonName as user and its
    /// Organizations as groups.
    #[arg(long, default_value = "")]
    pub client_ca_file: String,
    /// Root certificate bundle verifying client certificates on incoming requests before their
    /// usernames are taken from the headers in --requestheader-username-headers.
    #[arg(long, default_value = "")]
    pub requestheader_client_ca_file: String,
    /// Client certificate common names allowed to pass usernames in headers; empty: any
    /// certificate validated by --requestheader-client-ca-file.
    #[arg(long, value_delimiter = ',')]
    pub requestheader_allowed_names: Vec<String>,
    /// Request headers to inspect for usernames; the first one with a value wins.
    #[arg(long, value_delimiter = ',', default_value = "x-remote-user")]
    pub requestheader_username_headers: Vec<String>,
    /// Request headers to inspect for groups.
    #[arg(long, value_delimiter = ',', default_value = "x-remote-group")]
    pub requestheader_group_headers: Vec<String>,
    /// Request header prefixes to inspect for extra user information.
    #[arg(long, value_delimiter = ',', default_value = "x-remote-extra-")]
    pub requestheader_extra_headers_prefix: Vec<String>,
}

impl CertFlags {
    /// The CA files the TLS handshake should accept client certificates of.
    pub fn ca_files(&self) -> Vec<std::path::PathBuf> {
        [&self.client_ca_file, &self.requestheader_client_ca_file]
            .into_iter()
            .filter(|f| !f.is_empty())
            .map(std::path::PathBuf::from)
            .collect()
    }

    /// The authenticators these flags ask for (fails on unreadable CA files).
    pub fn cert_auth(&self) -> Result<CertAuth, crate::Error> {
        fn path(s: &str) -> Option<&std::path::Path> {
            (!s.is_empty()).then(|| std::path::Path::new(s))
        }
        CertAuth::from_flags(
            path(&self.client_ca_file),
            path(&self.requestheader_client_ca_file),
            self.requestheader_allowed_names.clone(),
            self.requestheader_username_headers.clone(),
            self.requestheader_group_headers.clone(),
            self.requestheader_extra_headers_prefix.clone(),
        )
    }
}

/// The namespace and name of the ConfigMap kube-apiserver publishes its client-authentication
/// settings in.
pub const AUTHENTICATION_INFO: (&str, &str) = ("kube-system", "extension-apiserver-authentication");

impl CertFlags {
    /// Fills what the flags leave unset from kube-apiserver's `extension-apiserver-authentication`
    /// ConfigMap, as upstream's delegated authentication does: `client-ca-file`, and
    /// `requestheader-client-ca-file` with its allowed names and header names. The CA bundles
    /// are written into `dir` (the TLS layer and [`CertFlags::cert_auth`] read files). The
    /// apiserver may still be starting: an unreachable one is retried for up to `wait`; after
    /// that, or when the ConfigMap is missing or forbidden, the flags stay as they are and a
    /// warning says so.
    pub async fn with_cluster_lookup(
        mut self,
        client: &kube::Client,
        dir: &std::path::Path,
        wait: Duration,
    ) -> Self {
        use k8s_openapi::api::core::v1::ConfigMap;
        if !self.client_ca_file.is_empty() && !self.requestheader_client_ca_file.is_empty() {
            return self;
        }
        let (ns, name) = AUTHENTICATION_INFO;
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        let deadline = Instant::now() + wait;
        // An apiserver serves before it has published the ConfigMap and reconciled the roles
        // that let us read it; /readyz turns ok once both are done.
        loop {
            let ready = http::Request::get("/readyz")
                .body(Vec::new())
                .map_err(kube::Error::HttpError);
            match ready {
                Ok(req) => match client.request_text(req).await {
                    Ok(_) => break,
                    Err(e) if Instant::now() >= deadline => {
                        tracing::warn!(error = %e, "the apiserver is not ready; client certificates are not trusted unless --client-ca-file is set");
                        return self;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                },
                Err(_) => break,
            }
        }
        let data = loop {
            match api.get_opt(name).await {
                Ok(Some(cm)) => break cm.data.unwrap_or_default(),
                // A ready apiserver without it has nothing to publish.
                Ok(None) => {
                    tracing::warn!("configmap {ns}/{name} not found; client certificates are not trusted unless --client-ca-file is set");
                    return self;
                }
                Err(kube::Error::Api(e)) if e.code == 403 => {
                    tracing::warn!(error = %e.message, "unable to read {ns}/{name}; client certificates are not trusted unless --client-ca-file is set");
                    return self;
                }
                Err(e) if Instant::now() >= deadline => {
                    tracing::warn!(error = %e, "unable to read {ns}/{name}; client certificates are not trusted unless --client-ca-file is set");
                    return self;
                }
                _ => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        };
        let write = |file: &str, pem: &str| -> Option<String> {
            let path = dir.join(file);
            std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::write(&path, pem))
                .map_err(|e| tracing::warn!(path = %path.display(), error = %e, "writing a client CA bundle"))
                .ok()?;
            Some(path.display().to_string())
        };
        let list = |key: &str| -> Option<Vec<String>> { serde_json::from_str(data.get(key)?).ok() };
        if self.client_ca_file.is_empty() {
            if let Some(path) = data
                .get("client-ca-file")
                .and_then(|pem| write("client-ca.crt", pem))
            {
                self.client_ca_file = path;
            }
        }
        if self.requestheader_client_ca_file.is_empty() {
            if let Some(path) = data
                .get("requestheader-client-ca-file")
                .and_then(|pem| write("requestheader-client-ca.crt", pem))
            {
                self.requestheader_client_ca_file = path;
                if let Some(v) = list("requestheader-allowed-names") {
                    self.requestheader_allowed_names = v;
                }
                if let Some(v) = list("requestheader-username-headers") {
                    self.requestheader_username_headers = v;
                }
                if let Some(v) = list("requestheader-group-headers") {
                    self.requestheader_group_headers = v;
                }
                if let Some(v) = list("requestheader-extra-headers-prefix") {
                    self.requestheader_extra_headers_prefix = v;
                }
            }
        }
        self
    }
}

/// Client-certificate authenticators of the secure port.
#[derive(Default, Clone)]
pub struct CertAuth {
    /// `--client-ca-file`: a certificate it issued is the user of its CN, in the groups of its O.
    pub client_ca: Option<Arc<dyn ClientCertVerifier>>,
    /// `--requestheader-*`: a front proxy whose certificate lets request headers name the user.
    pub request_header: Option<RequestHeader>,
}

/// Upstream's request-header authenticator (the front proxy's headers).
#[derive(Clone)]
pub struct RequestHeader {
    /// `--requestheader-client-ca-file`.
    pub ca: Arc<dyn ClientCertVerifier>,
    /// `--requestheader-allowed-names`: the proxy certificates' CNs (any when empty).
    pub allowed_names: Vec<String>,
    /// `--requestheader-username-headers` (upstream: `X-Remote-User`).
    pub username_headers: Vec<String>,
    /// `--requestheader-group-headers` (upstream: `X-Remote-Group`).
    pub group_headers: Vec<String>,
    /// `--requestheader-extra-headers-prefix` (upstream: `X-Remote-Extra-`).
    pub extra_headers_prefix: Vec<String>,
}

impl CertAuth {
    /// The authenticators of the upstream flags; `None` files leave one out.
    pub fn from_flags(
        client_ca_file: Option<&std::path::Path>,
        requestheader_client_ca_file: Option<&std::path::Path>,
        allowed_names: Vec<String>,
        username_headers: Vec<String>,
        group_headers: Vec<String>,
        extra_headers_prefix: Vec<String>,
    ) -> Result<Self, crate::Error> {
        Ok(Self {
            client_ca: client_ca_file
                .map(crate::tls::client_verifier)
                .transpose()?,
            request_header: requestheader_client_ca_file
                .map(crate::tls::client_verifier)
                .transpose()?
                .map(|ca| RequestHeader {
                    ca,
                    allowed_names,
                    username_headers,
                    group_headers,
                    extra_headers_prefix,
                }),
        })
    }

    /// The user a request's client certificate (and, for a front proxy, its headers) names;
    /// `Ok(None)` when no certificate authenticator applies, `Err` for a refused proxy.
    fn user(&self, access: &Access) -> Result<Option<UserInfo>, Reply> {
        let Some(der) = access.client_cert.as_deref() else {
            return Ok(None);
        };
        if let Some(rh) = &self.request_header {
            if crate::tls::verifies(rh.ca.as_ref(), der) {
                let (cn, _) = subject(der).ok_or_else(unauthorized)?;
                if !rh.allowed_names.is_empty() && !rh.allowed_names.contains(&cn) {
                    return Err(unauthorized());
                }
                if let Some(user) = header_user(rh, &access.headers) {
                    return Ok(Some(user));
                }
            }
        }
        if let Some(ca) = &self.client_ca {
            if crate::tls::verifies(ca.as_ref(), der) {
                let (cn, orgs) = subject(der).ok_or_else(unauthorized)?;
                let mut groups = orgs;
                groups.push("system:authenticated".to_owned());
                return Ok(Some(UserInfo {
                    username: Some(cn),
                    groups: Some(groups),
                    ..UserInfo::default()
                }));
            }
        }
        Ok(None)
    }
}

/// The CN and the O values of a valid DER certificate's subject.
fn subject(der: &[u8]) -> Option<(String, Vec<String>)> {
    crate::x509::client_identity(der)
}

/// The user a front proxy names in its headers, if it names one.
fn header_user(rh: &RequestHeader, headers: &http::HeaderMap) -> Option<UserInfo> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect()
    };
    let username = rh
        .username_headers
        .iter()
        .flat_map(|h| values(h))
        .find(|v| !v.is_empty())?;
    let groups: Vec<String> = rh.group_headers.iter().flat_map(|h| values(h)).collect();
    let mut extra: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (name, value) in headers {
        let name = name.as_str();
        for prefix in &rh.extra_headers_prefix {
            let prefix = prefix.to_ascii_lowercase();
            if let (Some(key), Ok(v)) = (name.strip_prefix(&prefix), value.to_str()) {
                extra.entry(key.to_owned()).or_default().push(v.to_owned());
            }
        }
    }
    Some(UserInfo {
        username: Some(username),
        groups: Some(groups),
        extra: (!extra.is_empty()).then_some(extra),
        ..UserInfo::default()
    })
}

fn unauthorized() -> Reply {
    status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
}

/// The reviewer: a client of the apiserver plus the always-allowed paths.
pub struct DelegatedAuth {
    authn: kube::Client,
    authz: kube::Client,
    always_allow: Vec<String>,
    certs: CertAuth,
    cache: Mutex<HashMap<(String, String), Cached>>,
}

impl DelegatedAuth {
    /// Reviews tokens through `authn` and requests through `authz` (often the same client).
    pub fn new(authn: kube::Client, authz: kube::Client, always_allow: Vec<String>) -> Arc<Self> {
        Self::with_certs(authn, authz, always_allow, CertAuth::default())
    }

    /// [`DelegatedAuth::new`] with client-certificate authenticators tried before tokens.
    pub fn with_certs(
        authn: kube::Client,
        authz: kube::Client,
        always_allow: Vec<String>,
        certs: CertAuth,
    ) -> Arc<Self> {
        Arc::new(Self {
            authn,
            authz,
            always_allow,
            certs,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The guard to hand to [`crate::http::serve_guarded`].
    pub fn guard(self: Arc<Self>) -> Guard {
        Arc::new(move |access| {
            let this = self.clone();
            Box::pin(async move { this.check(&access).await })
        })
    }

    fn always_allowed(&self, path: &str) -> bool {
        self.always_allow.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == p,
        })
    }

    /// Ok when the request may proceed, else the 401/403 reply.
    pub async fn check(&self, access: &Access) -> Result<(), Reply> {
        let path = access.path.as_str();
        if self.always_allowed(path) {
            return Ok(());
        }
        if let Some(user) = self.certs.user(access)? {
            let key = (format!("cert:{user:?}"), path.to_owned());
            if let Some((at, answer)) = self.cache_get(&key) {
                if at.elapsed() < CACHE_TTL {
                    return answer;
                }
            }
            let answer = self.authorize(path, user).await;
            self.cache_put(key, &answer);
            return answer;
        }
        let token = access
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let key = (
            format!("token:{}", token.unwrap_or_default()),
            path.to_owned(),
        );
        if let Some((at, answer)) = self.cache_get(&key) {
            if at.elapsed() < CACHE_TTL {
                return answer;
            }
        }
        let answer = self.review(path, token).await;
        self.cache_put(key, &answer);
        answer
    }

    /// Caches `answer`, unless the review call itself failed (apiserver down): the next
    /// request asks again.
    fn cache_put(&self, key: (String, String), answer: &Result<(), Reply>) {
        if !matches!(answer, Err(r) if r.status == StatusCode::INTERNAL_SERVER_ERROR) {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(key, (Instant::now(), answer.clone()));
        }
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
        self.authorize(path, user).await
    }

    /// A SubjectAccessReview of `user` getting `path`.
    async fn authorize(&self, path: &str, user: UserInfo) -> Result<(), Reply> {
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
            _ => Err(unauthorized()),
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
