//! Who is calling: client certificates and static bearer tokens, plus the system:masters check.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use serde_json::{json, Value};

use crate::error::{qualified, ApiError};
use crate::serviceaccount::TokenAuthority;
use crate::source::ObjectSource;

/// Group of the super-user; its members pass every authorization check.
pub const SYSTEM_MASTERS: &str = "system:masters";
/// Group every authenticated user is added to.
pub const SYSTEM_AUTHENTICATED: &str = "system:authenticated";
/// Group of the anonymous user.
pub const SYSTEM_UNAUTHENTICATED: &str = "system:unauthenticated";
/// Name given to requests that carry no credentials.
pub const ANONYMOUS_USER: &str = "system:anonymous";

/// Paths anyone may read, as granted by upstream's `system:public-info-viewer` role.
const PUBLIC_PATHS: &[&str] = &["/healthz", "/livez", "/readyz", "/version", "/version/"];

/// An authenticated identity, as upstream's `user.Info`.
#[derive(Debug, Clone, PartialEq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn new(name: impl Into<String>, groups: Vec<String>) -> Self {
        Self {
            name: name.into(),
            uid: String::new(),
            groups,
            extra: BTreeMap::new(),
        }
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// The user unauthenticated requests run as; callers let it reach only [`is_public_path`]s.
pub fn anonymous() -> UserInfo {
    UserInfo::new(ANONYMOUS_USER, vec![SYSTEM_UNAUTHENTICATED.to_owned()])
}

/// Whether `path` is readable without credentials (health and version endpoints).
pub fn is_public_path(path: &str) -> bool {
    PUBLIC_PATHS.contains(&path)
}

/// Why authentication could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    #[error("cannot read token file {path}")]
    ReadTokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("token file {path}: parse error on line {line}: {reason}")]
    ParseTokenFile {
        path: PathBuf,
        line: usize,
        reason: &'static str,
    },
    #[error("token file '{path}' must have at least 3 columns (token, user name, user uid), found {found}")]
    TooFewColumns { path: PathBuf, found: usize },
}

/// Users by bearer token, read from --token-auth-file.
#[derive(Clone, Default)]
pub struct TokenFile {
    tokens: HashMap<String, UserInfo>,
}

impl fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tokens are secrets; never let them reach a log line.
        f.debug_struct("TokenFile")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

impl TokenFile {
    /// Parses upstream's CSV format, `token,user,uid[,"group1,group2"]`, with Go's CSV rules:
    /// blank lines are skipped, fields may be quoted, and `""` inside quotes is a quote.
    /// `path` only names the file in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, AuthnError> {
        let records = parse_csv(text).map_err(|(line, reason)| AuthnError::ParseTokenFile {
            path: path.to_owned(),
            line,
            reason,
        })?;
        let mut tokens = HashMap::new();
        for (number, record) in records.into_iter().enumerate() {
            if record.len() < 3 {
                return Err(AuthnError::TooFewColumns {
                    path: path.to_owned(),
                    found: record.len(),
                });
            }
            let mut fields = record.into_iter();
            let token = fields.next().unwrap_or_default();
            let name = fields.next().unwrap_or_default();
            let uid = fields.next().unwrap_or_default();
            if token.is_empty() {
                tracing::warn!(path = %path.display(), record = number + 1, "empty token in token file");
                continue;
            }
            // Upstream keeps an empty string as a group; an empty group grants nothing, so it
            // is dropped here.
            let groups = fields
                .next()
                .map(|g| {
                    g.split(',')
                        .filter(|g| !g.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let user = UserInfo {
                name,
                uid,
                groups,
                extra: BTreeMap::new(),
            };
            if tokens.insert(token, user).is_some() {
                tracing::warn!(path = %path.display(), record = number + 1, "duplicate token in token file");
            }
        }
        Ok(Self { tokens })
    }

    /// The user `token` belongs to.
    pub fn lookup(&self, token: &str) -> Option<&UserInfo> {
        self.tokens.get(token)
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// Reads a static token file (--token-auth-file).
pub fn from_token_file(path: &Path) -> Result<TokenFile, AuthnError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthnError::ReadTokenFile {
        path: path.to_owned(),
        source,
    })?;
    TokenFile::parse(path, &text)
}

/// Splits CSV text into records the way Go's `encoding/csv` does with default settings and
/// variable field counts. Errors carry the 1-based line and Go's wording.
fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, (usize, &'static str)> {
    const BARE_QUOTE: &str = "bare \" in non-quoted-field";
    const BAD_QUOTE: &str = "extraneous or missing \" in quoted-field";

    let text = text.replace("\r\n", "\n");
    let bytes = text.as_bytes();
    let mut records = Vec::new();
    let mut pos = 0;
    let mut line = 1;
    while pos < bytes.len() {
        if bytes[pos] == b'\n' {
            pos += 1;
            line += 1;
            continue;
        }
        let mut fields = Vec::new();
        loop {
            if bytes.get(pos) == Some(&b'"') {
                pos += 1;
                let mut field = String::new();
                let mut start = pos;
                loop {
                    match bytes.get(pos) {
                        None => return Err((line, BAD_QUOTE)),
                        Some(b'"') => {
                            field.push_str(&text[start..pos]);
                            match bytes.get(pos + 1) {
                                Some(b'"') => {
                                    field.push('"');
                                    pos += 2;
                                    start = pos;
                                }
                                Some(b',') | Some(b'\n') | None => {
                                    pos += 1;
                                    break;
                                }
                                Some(_) => return Err((line, BAD_QUOTE)),
                            }
                        }
                        Some(b'\n') => {
                            line += 1;
                            pos += 1;
                        }
                        Some(_) => pos += 1,
                    }
                }
                fields.push(field);
            } else {
                let end = bytes[pos..]
                    .iter()
                    .position(|b| *b == b',' || *b == b'\n')
                    .map_or(bytes.len(), |n| pos + n);
                let field = &text[pos..end];
                if field.contains('"') {
                    return Err((line, BARE_QUOTE));
                }
                fields.push(field.to_owned());
                pos = end;
            }
            match bytes.get(pos) {
                Some(b',') => pos += 1,
                Some(b'\n') => {
                    pos += 1;
                    line += 1;
                    break;
                }
                _ => break,
            }
        }
        records.push(fields);
    }
    Ok(records)
}

/// The user named by a client certificate: CommonName is the user, each Organization a
/// group. Chain verification against --client-ca-file already happened in the TLS handshake;
/// the validity period is checked again on every request (see
/// [`component_base::x509::client_identity`]).
pub fn user_from_client_cert(der: &[u8]) -> Option<UserInfo> {
    let (name, groups) = component_base::x509::client_identity(der)?;
    Some(UserInfo::new(&name, groups))
}

/// The token of an `Authorization: Bearer <token>` header, as upstream splits it.
pub fn bearer_token(header: &str) -> Option<&str> {
    let mut parts = header.trim().splitn(3, ' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Upstream's AuthenticatedGroupAdder: everyone who authenticated is in system:authenticated.
pub fn with_authenticated_group(mut user: UserInfo) -> UserInfo {
    let marked = user
        .groups
        .iter()
        .any(|g| g == SYSTEM_AUTHENTICATED || g == SYSTEM_UNAUTHENTICATED);
    if user.name != ANONYMOUS_USER && !marked {
        user.groups.push(SYSTEM_AUTHENTICATED.to_owned());
    }
    user
}

/// Authenticates requests from their TLS peer certificate and `Authorization` header, as
/// upstream's union: client certificate, token file, bootstrap tokens, service-account tokens,
/// then anonymous.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    tokens: Option<TokenFile>,
    service_accounts: Option<Arc<TokenAuthority>>,
    bootstrap_tokens: bool,
    anonymous: bool,
}

impl Authenticator {
    /// Client certificates are always honoured; bearer tokens only with a token file.
    pub fn new(token_file: Option<&Path>) -> Result<Self, AuthnError> {
        Ok(Self {
            tokens: token_file.map(from_token_file).transpose()?,
            ..Self::default()
        })
    }

    pub fn with_tokens(tokens: TokenFile) -> Self {
        Self {
            tokens: Some(tokens),
            ..Self::default()
        }
    }

    /// Accepts service-account tokens of `authority`.
    pub fn with_service_accounts(mut self, authority: Arc<TokenAuthority>) -> Self {
        self.service_accounts = Some(authority);
        self
    }

    /// Accepts bootstrap tokens (--enable-bootstrap-token-auth).
    pub fn with_bootstrap_tokens(mut self, on: bool) -> Self {
        self.bootstrap_tokens = on;
        self
    }

    /// Runs requests without credentials as system:anonymous (--anonymous-auth).
    pub fn with_anonymous(mut self, on: bool) -> Self {
        self.anonymous = on;
        self
    }

    pub fn service_accounts(&self) -> Option<&Arc<TokenAuthority>> {
        self.service_accounts.as_ref()
    }

    /// The caller's identity: the client certificate wins over a bearer token; a request
    /// with neither is anonymous when that is enabled. `None` means 401: credentials that no
    /// authenticator accepts, or none at all with anonymous requests off.
    pub fn authenticate(
        &self,
        peer_cert: Option<&[u8]>,
        authorization_header: Option<&str>,
        source: &dyn ObjectSource,
    ) -> Option<UserInfo> {
        if let Some(user) = peer_cert.and_then(user_from_client_cert) {
            return Some(with_authenticated_group(user));
        }
        let Some(header) = authorization_header else {
            return self.anonymous.then(anonymous);
        };
        let token = bearer_token(header)?;
        let user = self.authenticate_token(token, None, source)?.0;
        Some(with_authenticated_group(user))
    }

    /// Authenticates a bearer token alone (also for TokenReview, with its audiences);
    /// returns the user and the audiences the token was accepted for.
    pub fn authenticate_token(
        &self,
        token: &str,
        audiences: Option<&[String]>,
        source: &dyn ObjectSource,
    ) -> Option<(UserInfo, Vec<String>)> {
        let api_audiences = || {
            self.service_accounts
                .as_ref()
                .map(|a| a.api_audiences().to_vec())
                .unwrap_or_default()
        };
        if let Some(user) = self.tokens.as_ref().and_then(|t| t.lookup(token)) {
            return Some((user.clone(), api_audiences()));
        }
        let now = std::time::SystemTime::now();
        if self.bootstrap_tokens {
            match crate::serviceaccount::bootstrap_token::authenticate(token, source, now) {
                Some(Ok(user)) => return Some((user, api_audiences())),
                Some(Err(reason)) => {
                    tracing::info!(%reason, "bootstrap token rejected");
                    return None;
                }
                None => {}
            }
        }
        if let Some(authority) = &self.service_accounts {
            match authority.authenticate_for(token, audiences, source, now) {
                Some(Ok(a)) => return Some((a.user, a.audiences)),
                Some(Err(reason)) => {
                    tracing::info!(%reason, "service account token rejected");
                    return None;
                }
                None => {}
            }
        }
        None
    }
}

/// Go's `%q` for the strings that appear in messages.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Upstream escapes these so a reflected message never reads as HTML.
fn sanitize(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn forbidden_reason(
    user: &UserInfo,
    verb: &str,
    group: &str,
    resource: &str,
    subresource: &str,
    namespace: &str,
) -> String {
    let resource = if subresource.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}/{subresource}")
    };
    let scope = if namespace.is_empty() {
        "at the cluster scope".to_owned()
    } else {
        format!("in the namespace {}", go_quote(namespace))
    };
    sanitize(&format!(
        "User {} cannot {verb} resource {} in API group {} {scope}",
        go_quote(&user.name),
        go_quote(&resource),
        go_quote(group),
    ))
}

/// Upstream's 403 message for a resource request, e.g. `pods is forbidden: User "alice"
/// cannot list resource "pods" in API group "" in the namespace "default"`. `verb` is the
/// lowercase authorization verb (get, list, watch, create, update, patch, delete, ...).
pub fn forbidden_message(
    user: &UserInfo,
    verb: &str,
    group: &str,
    resource: &str,
    subresource: &str,
    namespace: &str,
    name: &str,
) -> String {
    let reason = forbidden_reason(user, verb, group, resource, subresource, namespace);
    let target = qualified(group, resource);
    if target.is_empty() {
        format!("forbidden: {reason}")
    } else if name.is_empty() {
        format!("{target} is forbidden: {reason}")
    } else {
        format!("{target} {} is forbidden: {reason}", go_quote(name))
    }
}

/// Upstream's 403 message for a non-resource request: `forbidden: User "alice" cannot get
/// path "/api"`.
pub fn forbidden_path_message(user: &UserInfo, verb: &str, path: &str) -> String {
    let reason = sanitize(&format!(
        "User {} cannot {verb} path {}",
        go_quote(&user.name),
        go_quote(path)
    ));
    format!("forbidden: {reason}")
}

/// The 403 `Status` for a resource request, with upstream's details (group, kind=resource,
/// name).
pub fn forbidden_error(
    user: &UserInfo,
    verb: &str,
    group: &str,
    resource: &str,
    subresource: &str,
    namespace: &str,
    name: &str,
) -> ApiError {
    let message = forbidden_message(user, verb, group, resource, subresource, namespace, name);
    let mut details = serde_json::Map::new();
    if !name.is_empty() {
        details.insert("name".into(), json!(name));
    }
    if !group.is_empty() {
        details.insert("group".into(), json!(group));
    }
    if !resource.is_empty() {
        details.insert("kind".into(), json!(resource));
    }
    ApiError::forbidden(message).with_details(Value::Object(details))
}

/// The 403 `Status` for a non-resource request; upstream sends empty details.
pub fn forbidden_path_error(user: &UserInfo, verb: &str, path: &str) -> ApiError {
    ApiError::forbidden(forbidden_path_message(user, verb, path)).with_details(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Result<TokenFile, AuthnError> {
        TokenFile::parse(Path::new("tokens.csv"), text)
    }

    fn alice() -> UserInfo {
        UserInfo::new("alice", vec![])
    }

    #[test]
    fn token_file_reads_users_uids_and_quoted_groups() {
        let file = tokens(
            "abc,admin,1,\"system:masters,ops\"\n\ndef,bob,2\r\nghi,carol,3,dev\n\"j\"\"k\",dave,4,",
        )
        .expect("parses");
        assert_eq!(file.len(), 4);
        let admin = file.lookup("abc").expect("admin");
        assert_eq!(admin.name, "admin");
        assert_eq!(admin.uid, "1");
        assert_eq!(admin.groups, vec!["system:masters", "ops"]);
        assert!(file.lookup("def").expect("bob").groups.is_empty());
        assert_eq!(file.lookup("ghi").expect("carol").groups, vec!["dev"]);
        assert_eq!(file.lookup("j\"k").expect("dave").name, "dave");
    }

    #[test]
    fn token_file_with_too_few_columns_is_refused() {
        let err = tokens("abc,admin\n").expect_err("two columns");
        assert_eq!(
            err.to_string(),
            "token file 'tokens.csv' must have at least 3 columns (token, user name, user uid), found 2"
        );
    }

    #[test]
    fn token_file_with_bad_quotes_is_refused() {
        for (name, text) in [
            ("bare", "ab\"c,admin,1\n"),
            ("unterminated", "abc,admin,\"1\n"),
            ("trailing", "abc,admin,\"1\"x\n"),
        ] {
            let err = tokens(text).expect_err(name);
            assert!(
                matches!(err, AuthnError::ParseTokenFile { .. }),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn empty_tokens_are_skipped_and_the_last_duplicate_wins() {
        let file = tokens(",nobody,0\nabc,first,1\nabc,second,2\n").expect("parses");
        assert_eq!(file.len(), 1);
        assert_eq!(file.lookup("abc").expect("user").name, "second");
    }

    #[test]
    fn bearer_tokens_are_split_like_upstream() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("  bearer abc  "), Some("abc"));
        assert_eq!(bearer_token("Bearer abc def"), Some("abc"));
        assert_eq!(bearer_token("Bearer  abc"), None);
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    fn client_cert(cn: &str, orgs: &[&str]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if !cn.is_empty() {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        for org in orgs {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, *org);
        }
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("signs").der().to_vec()
    }

    #[test]
    fn client_certificate_names_the_user_and_its_groups() {
        let der = client_cert("kubernetes-admin", &["kubeadm:cluster-admins"]);
        let user = user_from_client_cert(&der).expect("user");
        assert_eq!(user.name, "kubernetes-admin");
        assert_eq!(user.groups, vec!["kubeadm:cluster-admins"]);
        assert!(user_from_client_cert(&client_cert("", &["x"])).is_none());
        assert!(user_from_client_cert(b"not der").is_none());
    }

    #[test]
    fn certificate_wins_over_token_and_both_add_system_authenticated() {
        let src = crate::source::MemorySource::new();
        let auth = Authenticator::with_tokens(tokens("tok,bob,2,dev\n").expect("parses"));
        let der = client_cert("alice", &["system:masters"]);
        let user = auth
            .authenticate(Some(&der), Some("Bearer tok"), &src)
            .expect("cert user");
        assert_eq!(user.name, "alice");
        assert_eq!(user.groups, vec!["system:masters", "system:authenticated"]);

        let user = auth
            .authenticate(None, Some("Bearer tok"), &src)
            .expect("token user");
        assert_eq!(user.name, "bob");
        assert_eq!(user.groups, vec!["dev", "system:authenticated"]);

        assert!(auth.authenticate(None, Some("Bearer nope"), &src).is_none());
        assert!(
            auth.authenticate(None, None, &src).is_none(),
            "anonymous is off"
        );
        assert!(Authenticator::default()
            .authenticate(None, Some("Bearer tok"), &src)
            .is_none());
    }

    #[test]
    fn anonymous_requests_only_when_enabled_and_bad_tokens_never() {
        let src = crate::source::MemorySource::new();
        let auth =
            Authenticator::with_tokens(tokens("tok,bob,2\n").expect("parses")).with_anonymous(true);
        let user = auth.authenticate(None, None, &src).expect("anonymous");
        assert_eq!(user.name, ANONYMOUS_USER);
        assert_eq!(user.groups, vec![SYSTEM_UNAUTHENTICATED]);
        assert!(
            auth.authenticate(None, Some("Bearer nope"), &src).is_none(),
            "a bad token is a 401, never anonymous"
        );
    }

    #[test]
    fn debug_output_hides_tokens() {
        let auth = Authenticator::with_tokens(tokens("secret-token,bob,2\n").expect("parses"));
        assert!(!format!("{auth:?}").contains("secret-token"));
    }

    #[test]
    fn forbidden_messages_use_upstream_wording() {
        let cases = [
            (
                "namespaced list",
                forbidden_message(&alice(), "list", "", "pods", "", "default", ""),
                "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"",
            ),
            (
                "named subresource",
                forbidden_message(&alice(), "get", "apps", "deployments", "scale", "web", "api"),
                "deployments.apps \"api\" is forbidden: User \"alice\" cannot get resource \"deployments/scale\" in API group \"apps\" in the namespace \"web\"",
            ),
            (
                "cluster scope",
                forbidden_message(&alice(), "list", "", "nodes", "", "", ""),
                "nodes is forbidden: User \"alice\" cannot list resource \"nodes\" in API group \"\" at the cluster scope",
            ),
            (
                "path",
                forbidden_path_message(&alice(), "get", "/api"),
                "forbidden: User \"alice\" cannot get path \"/api\"",
            ),
            (
                "html is escaped",
                forbidden_path_message(&alice(), "get", "/<script>"),
                "forbidden: User \"alice\" cannot get path \"/&lt;script&gt;\"",
            ),
        ];
        for (name, got, want) in cases {
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn forbidden_status_carries_upstream_details() {
        let status =
            forbidden_error(&alice(), "get", "apps", "deployments", "", "ns", "web").to_status();
        assert_eq!(status["code"], 403);
        assert_eq!(status["reason"], "Forbidden");
        assert_eq!(
            status["details"],
            json!({"name": "web", "group": "apps", "kind": "deployments"})
        );
        let status = forbidden_path_error(&alice(), "get", "/api").to_status();
        assert_eq!(status["details"], json!({}));
    }

    #[test]
    fn only_health_and_version_are_public() {
        assert!(is_public_path("/healthz"));
        assert!(is_public_path("/version"));
        assert!(!is_public_path("/api"));
        assert!(!is_public_path("/healthz/etcd"));
        assert_eq!(anonymous().groups, vec![SYSTEM_UNAUTHENTICATED]);
    }
}
