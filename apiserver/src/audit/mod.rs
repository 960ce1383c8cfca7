//! Audit logging: policy evaluation per request and `audit.k8s.io/v1` events to a log backend.
//!
//! A handler asks [`Auditor::begin`] for an [`AuditContext`] once the request is authenticated
//! and its attributes are parsed (`None` means the policy says not to audit it, at the cost of
//! one policy lookup). `begin` writes the `RequestReceived` event; the handler then records the
//! authorization decision and finishes with [`AuditContext::complete`], which writes
//! `ResponseComplete`. Long-running requests (watch, exec, proxy) call
//! [`AuditContext::response_started`] when the response head goes out, as upstream emits
//! `ResponseStarted` for them only. Dropping a context unfinished (the client went away) still
//! writes `ResponseComplete`, like upstream's deferred event.

pub mod log;
pub mod policy;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::authn::UserInfo;

pub use self::log::{LogBackend, Rotation};
pub use self::policy::{Policy, RequestAuditConfig};

/// Request and response header carrying the audit ID.
pub const HEADER_AUDIT_ID: &str = "Audit-ID";
/// Annotation recording the authorizer's decision (`allow` or `forbid`).
pub const ANNOTATION_DECISION: &str = "authorization.k8s.io/decision";
/// Annotation recording why the authorizer decided as it did.
pub const ANNOTATION_REASON: &str = "authorization.k8s.io/reason";

const EVENT_API_VERSION: &str = "audit.k8s.io/v1";

/// What went wrong setting up auditing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The policy file could not be read.
    #[error("failed to read audit policy file {path:?}")]
    ReadPolicy {
        /// The configured path.
        path: String,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The policy file is not YAML or JSON of the expected shape.
    #[error("error parsing audit policy file {path:?}")]
    ParsePolicy {
        /// The configured path.
        path: String,
        /// The parse failure.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// The policy decoded but failed validation; holds every problem found.
    #[error("invalid audit policy {path:?}: {}", .errors.join("; "))]
    InvalidPolicy {
        /// The configured path.
        path: String,
        /// One message per problem, prefixed with its field path.
        errors: Vec<String>,
    },
    /// `--audit-log-format` names a format this server does not write.
    #[error("unsupported --audit-log-format {0:?}: only \"json\" is supported by this server")]
    UnsupportedFormat(String),
    /// The audit log file or its directory could not be created.
    #[error("failed to open audit log file {path:?}")]
    OpenLog {
        /// The configured path.
        path: String,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
}

/// How much of a request is recorded, ordered from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Not audited.
    None,
    /// Who did what to which object, without bodies.
    Metadata,
    /// Metadata plus the request body.
    Request,
    /// Metadata plus request and response bodies.
    RequestResponse,
}

impl Level {
    /// The level named as in the policy file.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "None" => Some(Self::None),
            "Metadata" => Some(Self::Metadata),
            "Request" => Some(Self::Request),
            "RequestResponse" => Some(Self::RequestResponse),
            _ => None,
        }
    }

    /// The name used in policies and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Metadata => "Metadata",
            Self::Request => "Request",
            Self::RequestResponse => "RequestResponse",
        }
    }
}

impl Serialize for Level {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The point in request handling an event describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// As soon as the request is received, before it is handled.
    RequestReceived,
    /// Once the response head is sent, before the body; long-running requests only.
    ResponseStarted,
    /// When the response is complete.
    ResponseComplete,
    /// When handling the request panicked.
    Panic,
}

impl Stage {
    /// The stage named as in policies and events.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RequestReceived" => Some(Self::RequestReceived),
            "ResponseStarted" => Some(Self::ResponseStarted),
            "ResponseComplete" => Some(Self::ResponseComplete),
            "Panic" => Some(Self::Panic),
            _ => None,
        }
    }

    /// The name used in policies and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestReceived => "RequestReceived",
            Self::ResponseStarted => "ResponseStarted",
            Self::ResponseComplete => "ResponseComplete",
            Self::Panic => "Panic",
        }
    }
}

impl Serialize for Stage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The parsed target of a resource request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceAttrs {
    /// API group; empty for the core group.
    pub group: String,
    /// API version, e.g. `v1`.
    pub version: String,
    /// Plural resource, e.g. `pods`.
    pub resource: String,
    /// Subresource, e.g. `status` or `log`; empty when none.
    pub subresource: String,
    /// Namespace; empty for cluster-scoped requests.
    pub namespace: String,
    /// Object name; empty for collection requests.
    pub name: String,
}

/// What a request does, as the policy sees it (upstream's authorizer attributes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestAttrs {
    /// Kubernetes verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`) or, for non-resource requests, the lower-case HTTP method.
    pub verb: String,
    /// URL path without the query.
    pub path: String,
    /// The target for resource requests; `None` for non-resource URLs.
    pub resource: Option<ResourceAttrs>,
}

impl RequestAttrs {
    /// A resource request with its Kubernetes verb.
    pub fn resource(
        verb: impl Into<String>,
        target: ResourceAttrs,
        path: impl Into<String>,
    ) -> Self {
        Self {
            verb: verb.into(),
            path: path.into(),
            resource: Some(target),
        }
    }

    /// A non-resource request (`/healthz`, `/version`, discovery); the verb is the
    /// lower-case HTTP method, as upstream.
    pub fn non_resource(method: &str, path: impl Into<String>) -> Self {
        Self {
            verb: method.to_ascii_lowercase(),
            path: path.into(),
            resource: None,
        }
    }

    /// Whether the request targets an API resource.
    pub fn is_resource_request(&self) -> bool {
        self.resource.is_some()
    }
}

/// The HTTP facts about a request that go into its events. Built cheaply from borrowed
/// headers; nothing is copied unless the request is audited.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta<'a> {
    /// Path and query as received, e.g. `/api/v1/pods?watch=true`.
    pub request_uri: &'a str,
    /// The `User-Agent` header.
    pub user_agent: &'a str,
    /// The `Audit-ID` request header, reused as the event's ID when non-empty.
    pub audit_id: Option<&'a str>,
    /// The `X-Forwarded-For` header.
    pub x_forwarded_for: Option<&'a str>,
    /// The `X-Real-Ip` header.
    pub x_real_ip: Option<&'a str>,
    /// The peer address of the connection.
    pub remote_ip: Option<IpAddr>,
    /// When the request arrived; now when `None`.
    pub received: Option<OffsetDateTime>,
    /// Long-running requests (watch, exec, attach, port-forward, proxy, log follow) also get
    /// a `ResponseStarted` event.
    pub long_running: bool,
}

/// The client addresses of a request, as upstream: the `X-Forwarded-For` chain, then
/// `X-Real-Ip` unless already listed, then the peer address unless it ends the chain.
pub fn source_ips(
    x_forwarded_for: Option<&str>,
    x_real_ip: Option<&str>,
    remote_ip: Option<IpAddr>,
) -> Vec<String> {
    let mut ips: Vec<IpAddr> = x_forwarded_for
        .unwrap_or_default()
        .split(',')
        .filter_map(|part| part.trim().parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .collect();
    if let Some(ip) = x_real_ip.and_then(|s| s.trim().parse::<IpAddr>().ok()) {
        let ip = ip.to_canonical();
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    if let Some(ip) = remote_ip.map(|ip| ip.to_canonical()) {
        if ips.last() != Some(&ip) {
            ips.push(ip);
        }
    }
    ips.into_iter().map(|ip| ip.to_string()).collect()
}

/// A user as recorded in events (upstream's `authentication.k8s.io/v1` `UserInfo`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EventUser {
    /// User name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// User UID.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// Groups the user is in.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Extra attributes from the authenticator.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl From<&UserInfo> for EventUser {
    fn from(u: &UserInfo) -> Self {
        Self {
            username: u.name.clone(),
            uid: u.uid.clone(),
            groups: u.groups.clone(),
            extra: u.extra.clone(),
        }
    }
}

/// The object a request targets.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// Plural resource.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource: String,
    /// Namespace.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Object name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Object UID, when the request body carries one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// API group; empty for the core group.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    /// API version.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// Resource version, when the request body carries one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    /// Subresource.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subresource: String,
}

/// Always serialised as `{}`, as upstream's empty `ListMeta`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EmptyMeta {}

/// The bounded fields of the response `Status` kept in events.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ResponseStatus {
    /// Always empty.
    pub metadata: EmptyMeta,
    /// `Success` or `Failure` when the response was a `Status`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status: String,
    /// Human-readable description.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Machine-readable reason, e.g. `NotFound`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// The `Status` details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// HTTP status code.
    #[serde(skip_serializing_if = "is_zero")]
    pub code: u16,
}

fn is_zero(code: &u16) -> bool {
    *code == 0
}

impl ResponseStatus {
    fn code(code: u16) -> Self {
        Self {
            code,
            ..Self::default()
        }
    }

    /// Copies the bounded fields of a `Status` object; `code` fills in a missing code.
    fn from_status(status: &Value, code: u16) -> Self {
        let text = |k: &str| {
            status
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Self {
            metadata: EmptyMeta {},
            status: text("status"),
            message: text("message"),
            reason: text("reason"),
            details: status.get("details").filter(|d| !d.is_null()).cloned(),
            code: status
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .filter(|c| *c != 0)
                .unwrap_or(code),
        }
    }
}

/// One audit event, serialised as upstream's `audit.k8s.io/v1` `Event`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Always `Event`.
    pub kind: &'static str,
    /// Always `audit.k8s.io/v1`.
    pub api_version: &'static str,
    /// Level the event was generated at.
    pub level: Level,
    /// Unique ID shared by all events of one request.
    #[serde(rename = "auditID")]
    pub audit_id: String,
    /// Stage this event describes.
    pub stage: Stage,
    /// Path and query as received.
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    /// Kubernetes verb or lower-case HTTP method.
    pub verb: String,
    /// The authenticated user.
    pub user: EventUser,
    /// The user being impersonated, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impersonated_user: Option<EventUser>,
    /// Client and proxy addresses.
    #[serde(rename = "sourceIPs", skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    /// The `User-Agent` header.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
    /// Target of resource requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_ref: Option<ObjectRef>,
    /// Response status; absent in `RequestReceived`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_status: Option<ResponseStatus>,
    /// Request body, at level `Request` and above.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_object: Option<Value>,
    /// Response body, at level `RequestResponse`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_object: Option<Value>,
    /// When the request arrived (RFC 3339, microseconds).
    pub request_received_timestamp: String,
    /// When this stage was reached (RFC 3339, microseconds).
    pub stage_timestamp: String,
    /// Annotations from the authorizer and admission.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Where events go.
pub trait Sink: Send + Sync + std::fmt::Debug {
    /// Records one event. Must not fail the request: errors are logged, never returned.
    fn process(&self, event: &Event);
}

/// A sink that keeps events in memory, for tests.
#[derive(Debug, Default)]
pub struct MemorySink {
    events: Mutex<Vec<Event>>,
}

impl MemorySink {
    /// The events recorded so far.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Sink for MemorySink {
    fn process(&self, event: &Event) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event.clone());
    }
}

/// The `--audit-*` flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditOptions {
    /// `--audit-log-path`; `-` is stdout; unset disables the log backend.
    pub log_path: Option<String>,
    /// `--audit-policy-file`; unset disables auditing, as upstream.
    pub policy_file: Option<PathBuf>,
    /// `--audit-log-maxsize` in MB; 0 never rotates.
    pub log_max_size_mb: u64,
    /// `--audit-log-maxbackup`; 0 keeps all.
    pub log_max_backup: usize,
    /// `--audit-log-maxage` in days; 0 keeps backups regardless of age.
    pub log_max_age_days: u64,
    /// `--audit-log-format`; `json` (or empty) only.
    pub log_format: String,
}

impl AuditOptions {
    /// Builds the auditor the flags describe; `None` when auditing is off (no policy file or
    /// no log path). Fails on a bad policy, an unsupported format or an unwritable log path.
    pub fn build(&self) -> Result<Option<Arc<Auditor>>, Error> {
        match self.log_format.as_str() {
            "" | "json" => {}
            other => return Err(Error::UnsupportedFormat(other.to_owned())),
        }
        let (Some(path), Some(policy_file)) = (
            self.log_path.as_deref().filter(|p| !p.is_empty()),
            self.policy_file
                .as_deref()
                .filter(|p| !p.as_os_str().is_empty()),
        ) else {
            if self.log_path.is_some() {
                tracing::info!("no audit policy file provided, no events will be recorded");
            }
            return Ok(None);
        };
        let policy = Policy::load(policy_file)?;
        let rotation = Rotation::from_flags(
            self.log_max_size_mb,
            self.log_max_backup,
            self.log_max_age_days,
        );
        let backend = LogBackend::open(path, rotation)?;
        Ok(Some(Arc::new(Auditor::new(policy, Arc::new(backend)))))
    }
}

/// Evaluates the policy for each request and hands out [`AuditContext`]s writing to one sink.
#[derive(Debug)]
pub struct Auditor {
    policy: Policy,
    sink: Arc<dyn Sink>,
}

impl Auditor {
    /// An auditor writing events chosen by `policy` to `sink`.
    pub fn new(policy: Policy, sink: Arc<dyn Sink>) -> Self {
        Self { policy, sink }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Starts auditing a request: `None` when the policy level is `None`; otherwise writes
    /// the `RequestReceived` event (unless omitted) and returns the context to finish.
    pub fn begin(
        &self,
        attrs: &RequestAttrs,
        user: &UserInfo,
        meta: &RequestMeta<'_>,
    ) -> Option<AuditContext> {
        let config = self.policy.level_for(attrs, user);
        if config.level == Level::None {
            return None;
        }
        let received = meta.received.unwrap_or_else(OffsetDateTime::now_utc);
        let received_text = format_micro_time(received);
        let audit_id = meta
            .audit_id
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let object_ref = attrs.resource.as_ref().map(|r| ObjectRef {
            resource: r.resource.clone(),
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            api_group: r.group.clone(),
            api_version: r.version.clone(),
            subresource: r.subresource.clone(),
            ..ObjectRef::default()
        });
        let event = Event {
            kind: "Event",
            api_version: EVENT_API_VERSION,
            level: config.level,
            audit_id,
            stage: Stage::RequestReceived,
            request_uri: meta.request_uri.to_owned(),
            verb: attrs.verb.clone(),
            user: EventUser::from(user),
            impersonated_user: None,
            source_ips: source_ips(meta.x_forwarded_for, meta.x_real_ip, meta.remote_ip),
            user_agent: meta.user_agent.to_owned(),
            object_ref,
            response_status: None,
            request_object: None,
            response_object: None,
            request_received_timestamp: received_text.clone(),
            stage_timestamp: received_text,
            annotations: BTreeMap::new(),
        };
        let mut ctx = AuditContext {
            event,
            sink: Arc::clone(&self.sink),
            omit_stages: config.omit_stages,
            omit_managed_fields: config.omit_managed_fields,
            long_running: meta.long_running,
            started: false,
            finished: false,
        };
        ctx.emit_as(Stage::RequestReceived);
        Some(ctx)
    }
}

/// The audit event of one request under construction.
#[derive(Debug)]
pub struct AuditContext {
    event: Event,
    sink: Arc<dyn Sink>,
    omit_stages: Vec<Stage>,
    omit_managed_fields: bool,
    long_running: bool,
    started: bool,
    finished: bool,
}

impl AuditContext {
    /// The ID of this request's events; send it back in the `Audit-ID` response header.
    pub fn audit_id(&self) -> &str {
        &self.event.audit_id
    }

    /// The level the policy chose.
    pub fn level(&self) -> Level {
        self.event.level
    }

    /// Whether the request body will be recorded (level `Request` or above).
    pub fn wants_request_object(&self) -> bool {
        self.event.level >= Level::Request
    }

    /// Whether the response body will be recorded (level `RequestResponse`).
    pub fn wants_response_object(&self) -> bool {
        self.event.level >= Level::RequestResponse
    }

    /// Adds an annotation; as upstream, an existing key keeps its first value.
    pub fn add_annotation(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        if let Some(old) = self.event.annotations.get(&key) {
            let value = value.into();
            if *old != value {
                tracing::warn!(key = %key, old = %old, new = %value, "audit annotation already set, keeping the first value");
            }
            return;
        }
        self.event.annotations.insert(key, value.into());
    }

    /// Records the authorizer's decision and reason as upstream's annotations.
    pub fn set_authorization(&mut self, allowed: bool, reason: &str) {
        self.add_annotation(
            ANNOTATION_DECISION,
            if allowed { "allow" } else { "forbid" },
        );
        if !reason.is_empty() {
            self.add_annotation(ANNOTATION_REASON, reason);
        }
    }

    /// Records the user an impersonating request acts as.
    pub fn set_impersonated_user(&mut self, user: &UserInfo) {
        self.event.impersonated_user = Some(EventUser::from(user));
    }

    /// Records the request body (JSON). Fills the object reference's name, namespace, UID and
    /// resource version from a body object's metadata where the URL left them empty (except
    /// for patches, whose body is not the object), and keeps the body at level `Request` and
    /// above. Bodies that are not JSON are skipped.
    pub fn set_request_body(&mut self, body: &[u8]) {
        if body.is_empty() {
            return;
        }
        let needs_ref = self.event.verb != "patch"
            && self.event.object_ref.as_ref().is_some_and(|r| {
                r.name.is_empty() || r.namespace.is_empty() || r.resource_version.is_empty()
            });
        if !needs_ref && !self.wants_request_object() {
            return;
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(value) => self.set_request_object(value),
            Err(e) => {
                tracing::debug!(error = %e, audit_id = %self.event.audit_id, "request body is not JSON, not audited")
            }
        }
    }

    /// Like [`Self::set_request_body`] for an already decoded body.
    pub fn set_request_object(&mut self, mut object: Value) {
        if self.event.verb != "patch" {
            if let (Some(r), Some(meta)) = (
                self.event.object_ref.as_mut(),
                object.get("metadata").and_then(Value::as_object),
            ) {
                let text = |k: &str| meta.get(k).and_then(Value::as_str).unwrap_or_default();
                for (field, key) in [
                    (&mut r.namespace, "namespace"),
                    (&mut r.name, "name"),
                    (&mut r.uid, "uid"),
                    (&mut r.resource_version, "resourceVersion"),
                ] {
                    if field.is_empty() {
                        text(key).clone_into(field);
                    }
                }
            }
        }
        if !self.wants_request_object() {
            return;
        }
        if self.omit_managed_fields {
            strip_managed_fields(&mut object);
        }
        self.event.request_object = Some(object);
    }

    /// Records the response body (JSON) at level `RequestResponse`; skipped otherwise or when
    /// it is not JSON.
    pub fn set_response_body(&mut self, body: &[u8]) {
        if !self.wants_response_object() || body.is_empty() {
            return;
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(value) => self.set_response_object(value),
            Err(e) => {
                tracing::debug!(error = %e, audit_id = %self.event.audit_id, "response body is not JSON, not audited")
            }
        }
    }

    /// Like [`Self::set_response_body`] for an already encoded object.
    pub fn set_response_object(&mut self, mut object: Value) {
        if !self.wants_response_object() {
            return;
        }
        if self.omit_managed_fields {
            strip_managed_fields(&mut object);
        }
        self.event.response_object = Some(object);
    }

    /// The response head of a long-running request went out with `code`: writes the
    /// `ResponseStarted` event once. Does nothing for other requests, as upstream.
    pub fn response_started(&mut self, code: u16) {
        if self.started {
            return;
        }
        self.started = true;
        if self.event.response_status.is_none() {
            self.event.response_status = Some(ResponseStatus::code(code));
        }
        if self.long_running {
            self.emit_as(Stage::ResponseStarted);
        }
    }

    /// Finishes the request and writes `ResponseComplete` (after `ResponseStarted` for a
    /// long-running request that did not report one). `status` is the `Status` body of error
    /// (or `Status`-returning) responses; bodies are recorded as the level allows.
    pub fn complete(
        mut self,
        code: u16,
        status: Option<&Value>,
        request_body: Option<&[u8]>,
        response_body: Option<&[u8]>,
    ) {
        if let Some(body) = request_body {
            self.set_request_body(body);
        }
        if let Some(body) = response_body {
            self.set_response_body(body);
        }
        self.event.response_status = Some(match status {
            Some(s) => ResponseStatus::from_status(s, code),
            None => ResponseStatus::code(code),
        });
        if self.long_running && !self.started {
            self.started = true;
            self.emit_as(Stage::ResponseStarted);
        }
        self.finished = true;
        self.emit_as(Stage::ResponseComplete);
    }

    /// Handling panicked: writes the `Panic` event instead of `ResponseComplete`.
    pub fn panicked(mut self, message: &str) {
        self.event.response_status = Some(ResponseStatus {
            status: "Failure".into(),
            message: format!("APIServer panic'd: {message}"),
            reason: "InternalError".into(),
            code: 500,
            ..ResponseStatus::default()
        });
        self.finished = true;
        self.emit_as(Stage::Panic);
    }

    fn emit_as(&mut self, stage: Stage) {
        if self.omit_stages.contains(&stage) {
            return;
        }
        // The event is updated in place rather than cloned: bodies can be large lists.
        self.event.stage = stage;
        self.event.stage_timestamp = if stage == Stage::RequestReceived {
            self.event.request_received_timestamp.clone()
        } else {
            format_micro_time(OffsetDateTime::now_utc())
        };
        self.sink.process(&self.event);
    }
}

impl Drop for AuditContext {
    // The handler future was dropped (client disconnect, timeout) before finishing: record
    // completion anyway, as upstream's deferred event does.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.event.response_status.is_none() {
            self.event.response_status = Some(ResponseStatus {
                status: "Success".into(),
                message: "Connection closed early".into(),
                code: 200,
                ..ResponseStatus::default()
            });
            if self.long_running && !self.started {
                self.started = true;
                self.emit_as(Stage::ResponseStarted);
            }
        }
        self.emit_as(Stage::ResponseComplete);
    }
}

/// Removes `metadata.managedFields` from an object or from each item of a list.
fn strip_managed_fields(object: &mut Value) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    if let Some(items) = object.get_mut("items").and_then(Value::as_array_mut) {
        for item in items {
            if let Some(meta) = item.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("managedFields");
            }
        }
    }
}

/// RFC 3339 in UTC with microseconds, as upstream's `MicroTime`.
pub fn format_micro_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn auditor(policy: &str) -> (Auditor, Arc<MemorySink>) {
        let sink = Arc::new(MemorySink::default());
        let policy = Policy::from_slice(policy.as_bytes()).unwrap();
        (Auditor::new(policy, sink.clone()), sink)
    }

    fn level_policy(level: &str) -> String {
        format!("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: {level}\n")
    }

    fn admin() -> UserInfo {
        let mut u = UserInfo::new(
            "admin",
            vec!["system:masters".into(), "system:authenticated".into()],
        );
        u.uid = "u-1".into();
        u.extra.insert("scopes".into(), vec!["a".into()]);
        u
    }

    fn create_pod() -> RequestAttrs {
        RequestAttrs::resource(
            "create",
            ResourceAttrs {
                version: "v1".into(),
                resource: "pods".into(),
                namespace: "default".into(),
                ..ResourceAttrs::default()
            },
            "/api/v1/namespaces/default/pods",
        )
    }

    fn meta() -> RequestMeta<'static> {
        RequestMeta {
            request_uri: "/api/v1/namespaces/default/pods?fieldManager=kubectl",
            user_agent: "kubectl/v1.33",
            remote_ip: Some("10.0.0.9".parse().unwrap()),
            ..RequestMeta::default()
        }
    }

    const POD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p1","namespace":"default","managedFields":[{"manager":"kubectl"}]},"spec":{}}"#;

    #[test]
    fn level_none_creates_no_context_and_no_events() {
        let (a, sink) = auditor(&level_policy("None"));
        assert!(a.begin(&create_pod(), &admin(), &meta()).is_none());
        assert!(sink.events().is_empty());
    }

    #[test]
    fn metadata_level_writes_received_and_complete_without_bodies() {
        let (a, sink) = auditor(&level_policy("Metadata"));
        let mut ctx = a.begin(&create_pod(), &admin(), &meta()).unwrap();
        ctx.set_authorization(true, "RBAC: allowed by ClusterRoleBinding \"admin\"");
        let id = ctx.audit_id().to_owned();
        assert!(uuid::Uuid::parse_str(&id).is_ok());
        ctx.complete(201, None, Some(POD.as_bytes()), Some(POD.as_bytes()));

        let events = sink.events();
        assert_eq!(events.len(), 2);
        let received = serde_json::to_value(&events[0]).unwrap();
        let complete = serde_json::to_value(&events[1]).unwrap();
        assert_eq!(received["stage"], "RequestReceived");
        assert_eq!(
            received["stageTimestamp"],
            received["requestReceivedTimestamp"]
        );
        assert!(received.get("responseStatus").is_none());
        assert!(received.get("annotations").is_none());
        assert_eq!(complete["stage"], "ResponseComplete");
        assert_eq!(complete["auditID"], id.as_str());
        assert_eq!(complete["kind"], "Event");
        assert_eq!(complete["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(complete["level"], "Metadata");
        assert_eq!(complete["verb"], "create");
        assert_eq!(
            complete["requestURI"],
            "/api/v1/namespaces/default/pods?fieldManager=kubectl"
        );
        assert_eq!(
            complete["user"],
            json!({"username": "admin", "uid": "u-1", "groups": ["system:masters", "system:authenticated"], "extra": {"scopes": ["a"]}})
        );
        assert_eq!(complete["sourceIPs"], json!(["10.0.0.9"]));
        assert_eq!(complete["userAgent"], "kubectl/v1.33");
        // The name comes from the body even at Metadata level; empty fields are omitted.
        assert_eq!(
            complete["objectRef"],
            json!({"resource": "pods", "namespace": "default", "name": "p1", "apiVersion": "v1"})
        );
        assert_eq!(
            complete["responseStatus"],
            json!({"metadata": {}, "code": 201})
        );
        assert!(complete.get("requestObject").is_none());
        assert!(complete.get("responseObject").is_none());
        assert_eq!(
            complete["annotations"]["authorization.k8s.io/decision"],
            "allow"
        );
        assert_eq!(
            complete["annotations"]["authorization.k8s.io/reason"],
            "RBAC: allowed by ClusterRoleBinding \"admin\""
        );
        assert!(complete.get("impersonatedUser").is_none());
    }

    #[test]
    fn request_level_records_the_request_body_only() {
        let (a, sink) = auditor(&level_policy("Request"));
        let ctx = a.begin(&create_pod(), &admin(), &meta()).unwrap();
        ctx.complete(201, None, Some(POD.as_bytes()), Some(POD.as_bytes()));
        let complete = serde_json::to_value(&sink.events()[1]).unwrap();
        assert_eq!(complete["requestObject"]["metadata"]["name"], "p1");
        assert!(complete["requestObject"]["metadata"]["managedFields"].is_array());
        assert!(complete.get("responseObject").is_none());
    }

    #[test]
    fn request_response_level_records_both_and_can_omit_managed_fields() {
        let (a, sink) = auditor(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitManagedFields: true\nrules:\n- level: RequestResponse\n",
        );
        let ctx = a.begin(&create_pod(), &admin(), &meta()).unwrap();
        let list =
            json!({"kind": "PodList", "items": [serde_json::from_str::<Value>(POD).unwrap()]});
        let list_bytes = serde_json::to_vec(&list).unwrap();
        ctx.complete(201, None, Some(POD.as_bytes()), Some(&list_bytes));
        let complete = serde_json::to_value(&sink.events()[1]).unwrap();
        assert_eq!(complete["requestObject"]["metadata"]["name"], "p1");
        assert!(complete["requestObject"]["metadata"]
            .get("managedFields")
            .is_none());
        assert_eq!(complete["responseObject"]["kind"], "PodList");
        assert!(complete["responseObject"]["items"][0]["metadata"]
            .get("managedFields")
            .is_none());
    }

    #[test]
    fn failures_copy_the_bounded_status_fields() {
        let (a, sink) = auditor(&level_policy("Metadata"));
        let mut ctx = a.begin(&create_pod(), &admin(), &meta()).unwrap();
        ctx.set_authorization(false, "");
        let status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "pods \"p1\" already exists", "reason": "AlreadyExists",
            "details": {"name": "p1", "kind": "pods"}, "code": 409
        });
        ctx.complete(409, Some(&status), None, None);
        let complete = serde_json::to_value(&sink.events()[1]).unwrap();
        assert_eq!(
            complete["responseStatus"],
            json!({"metadata": {}, "status": "Failure", "message": "pods \"p1\" already exists",
                   "reason": "AlreadyExists", "details": {"name": "p1", "kind": "pods"}, "code": 409})
        );
        assert_eq!(
            complete["annotations"],
            json!({"authorization.k8s.io/decision": "forbid"})
        );
    }

    #[test]
    fn long_running_requests_get_a_response_started_event() {
        let (a, sink) = auditor(&level_policy("Metadata"));
        let attrs = RequestAttrs::resource(
            "watch",
            ResourceAttrs {
                version: "v1".into(),
                resource: "pods".into(),
                ..ResourceAttrs::default()
            },
            "/api/v1/pods",
        );
        let m = RequestMeta {
            request_uri: "/api/v1/pods?watch=true",
            long_running: true,
            ..RequestMeta::default()
        };
        let mut ctx = a.begin(&attrs, &admin(), &m).unwrap();
        ctx.response_started(200);
        ctx.response_started(200);
        drop(ctx); // the client went away
        let stages: Vec<Stage> = sink.events().iter().map(|e| e.stage).collect();
        assert_eq!(
            stages,
            vec![
                Stage::RequestReceived,
                Stage::ResponseStarted,
                Stage::ResponseComplete
            ]
        );
        let last = serde_json::to_value(sink.events().last().unwrap()).unwrap();
        assert_eq!(last["responseStatus"], json!({"metadata": {}, "code": 200}));
        assert!(last.get("objectRef").unwrap().get("namespace").is_none());
    }

    #[test]
    fn short_requests_never_write_response_started() {
        let (a, sink) = auditor(&level_policy("Metadata"));
        let mut ctx = a.begin(&create_pod(), &admin(), &meta()).unwrap();
        ctx.response_started(201);
        ctx.complete(201, None, None, None);
        let stages: Vec<Stage> = sink.events().iter().map(|e| e.stage).collect();
        assert_eq!(
            stages,
            vec![Stage::RequestReceived, Stage::ResponseComplete]
        );
    }

    #[test]
    fn dropped_contexts_complete_with_the_early_close_status() {
        let (a, sink) = auditor(&level_policy("Metadata"));
        drop(a.begin(&create_pod(), &admin(), &meta()).unwrap());
        let last = serde_json::to_value(sink.events().last().unwrap()).unwrap();
        assert_eq!(last["stage"], "ResponseComplete");
        assert_eq!(
            last["responseStatus"],
            json!({"metadata": {}, "status": "Success", "message": "Connection closed early", "code": 200})
        );
        assert_eq!(sink.events().len(), 2);
    }

    #[test]
    fn panics_write_a_panic_event() {
        let (a, sink) = auditor(&level_policy("Metadata"));
        a.begin(&create_pod(), &admin(), &meta())
            .unwrap()
            .panicked("index out of bounds");
        let events = sink.events();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].stage, Stage::Panic);
        let status = events[1].response_status.as_ref().unwrap();
        assert_eq!(status.code, 500);
        assert_eq!(status.message, "APIServer panic'd: index out of bounds");
    }

    #[test]
    fn omitted_stages_are_not_written() {
        let (a, sink) = auditor(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n",
        );
        a.begin(&create_pod(), &admin(), &meta())
            .unwrap()
            .complete(201, None, None, None);
        let stages: Vec<Stage> = sink.events().iter().map(|e| e.stage).collect();
        assert_eq!(stages, vec![Stage::ResponseComplete]);
    }

    #[test]
    fn the_audit_id_header_is_reused() {
        let (a, sink) = auditor(&level_policy("Metadata"));
        let m = RequestMeta {
            audit_id: Some("abc-123"),
            ..meta()
        };
        let ctx = a
            .begin(&RequestAttrs::non_resource("GET", "/healthz"), &admin(), &m)
            .unwrap();
        assert_eq!(ctx.audit_id(), "abc-123");
        ctx.complete(200, None, None, None);
        let e = serde_json::to_value(&sink.events()[1]).unwrap();
        assert_eq!(e["auditID"], "abc-123");
        assert_eq!(e["verb"], "get");
        assert!(e.get("objectRef").is_none());
    }

    #[test]
    fn patches_do_not_fill_the_object_reference() {
        let (a, sink) = auditor(&level_policy("Request"));
        let attrs = RequestAttrs::resource(
            "patch",
            ResourceAttrs {
                group: "apps".into(),
                version: "v1".into(),
                resource: "deployments".into(),
                namespace: "default".into(),
                name: "web".into(),
                ..ResourceAttrs::default()
            },
            "/apis/apps/v1/namespaces/default/deployments/web",
        );
        let patch = br#"{"metadata":{"resourceVersion":"7"},"spec":{"replicas":3}}"#;
        a.begin(&attrs, &admin(), &meta())
            .unwrap()
            .complete(200, None, Some(patch), None);
        let e = serde_json::to_value(&sink.events()[1]).unwrap();
        assert!(e["objectRef"].get("resourceVersion").is_none());
        assert_eq!(e["objectRef"]["apiGroup"], "apps");
        assert_eq!(e["requestObject"]["spec"]["replicas"], 3);
    }

    #[test]
    fn annotations_keep_their_first_value() {
        let (a, sink) = auditor(&level_policy("Metadata"));
        let mut ctx = a.begin(&create_pod(), &admin(), &meta()).unwrap();
        ctx.add_annotation(
            "pod-security.kubernetes.io/enforce-policy",
            "restricted:latest",
        );
        ctx.add_annotation(
            "pod-security.kubernetes.io/enforce-policy",
            "baseline:latest",
        );
        ctx.set_impersonated_user(&UserInfo::new("bob", vec![]));
        ctx.complete(201, None, None, None);
        let e = serde_json::to_value(&sink.events()[1]).unwrap();
        assert_eq!(
            e["annotations"]["pod-security.kubernetes.io/enforce-policy"],
            "restricted:latest"
        );
        assert_eq!(e["impersonatedUser"], json!({"username": "bob"}));
    }

    #[test]
    fn source_ips_follow_upstream_order() {
        let remote: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(source_ips(None, None, Some(remote)), vec!["10.0.0.1"]);
        assert_eq!(
            source_ips(
                Some("1.1.1.1, junk, 2.2.2.2"),
                Some("3.3.3.3"),
                Some(remote)
            ),
            vec!["1.1.1.1", "2.2.2.2", "3.3.3.3", "10.0.0.1"]
        );
        assert_eq!(
            source_ips(Some("1.1.1.1,10.0.0.1"), Some("1.1.1.1"), Some(remote)),
            vec!["1.1.1.1", "10.0.0.1"]
        );
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(source_ips(None, None, Some(mapped)), vec!["10.0.0.1"]);
    }

    #[test]
    fn timestamps_are_rfc3339_with_microseconds() {
        let t = time::PrimitiveDateTime::new(
            time::Date::from_calendar_date(2024, time::Month::January, 2).unwrap(),
            time::Time::from_hms_micro(3, 4, 5, 60).unwrap(),
        )
        .assume_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap());
        assert_eq!(format_micro_time(t), "2024-01-02T01:04:05.000060Z");
    }

    #[test]
    fn options_build_a_file_backed_auditor() {
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy.yaml");
        std::fs::write(&policy, level_policy("Metadata")).unwrap();
        let log = dir.path().join("logs/audit.log");
        let opts = AuditOptions {
            log_path: Some(log.display().to_string()),
            policy_file: Some(policy.clone()),
            log_format: "json".into(),
            ..AuditOptions::default()
        };
        let a = opts.build().unwrap().unwrap();
        a.begin(&create_pod(), &admin(), &meta())
            .unwrap()
            .complete(201, None, None, None);
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["stage"], "RequestReceived");
        assert_eq!(lines[1]["stage"], "ResponseComplete");
        assert!(text.starts_with(
            r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"#
        ));

        let legacy = AuditOptions {
            log_format: "legacy".into(),
            ..opts.clone()
        };
        assert!(matches!(legacy.build(), Err(Error::UnsupportedFormat(_))));
        let no_policy = AuditOptions {
            policy_file: None,
            ..opts.clone()
        };
        assert!(no_policy.build().unwrap().is_none());
        assert!(AuditOptions::default().build().unwrap().is_none());
        let bad_policy = AuditOptions {
            policy_file: Some(dir.path().join("missing.yaml")),
            ..opts
        };
        assert!(matches!(bad_policy.build(), Err(Error::ReadPolicy { .. })));
    }

    #[test]
    fn rotation_through_the_backend_keeps_every_event() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        let backend = Arc::new(
            LogBackend::open(
                log.to_str().unwrap(),
                Rotation {
                    max_bytes: 1500,
                    max_backups: 0,
                    max_age_days: 0,
                },
            )
            .unwrap(),
        );
        let a = Auditor::new(Policy::uniform(Level::Metadata), backend);
        for _ in 0..10 {
            a.begin(&create_pod(), &admin(), &meta())
                .unwrap()
                .complete(201, None, None, None);
        }
        let mut lines = 0;
        let mut files = 0;
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            assert!(text.len() <= 1500);
            for line in text.lines() {
                let v: Value = serde_json::from_str(line).unwrap();
                assert_eq!(v["kind"], "Event");
                lines += 1;
            }
            files += 1;
        }
        assert_eq!(lines, 20);
        assert!(files > 1);
    }
}
