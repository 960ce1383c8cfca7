//! The REST verbs on one resource, in upstream's order of steps: decode, admit (defaults,
//! strategy, validation), write with a resourceVersion guard, and encode for the client.

pub mod binding;
pub mod delete;
pub mod list;
pub mod reviews;
pub mod subresources;
pub mod watch;
pub mod write;

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use serde_json::{json, Value};

use crate::authn::UserInfo;
use crate::catalog::Entry;
use crate::error::{ApiError, Result};
use crate::http::negotiate::{self, BodyType, Output};
use crate::http::request::{Query, RequestInfo};
use crate::http::response::{self, Resp};
use crate::object;
use crate::server::ApiServer;

/// Largest request body accepted, as upstream (3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// One request on one resource.
pub struct Ctx {
    pub api: Arc<ApiServer>,
    pub entry: Arc<Entry>,
    pub info: RequestInfo,
    pub query: Query,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub user: UserInfo,
    pub warnings: Vec<String>,
    /// The request's method and, for upgrade requests, the client connection once upgraded
    /// (exec, attach, portforward and proxy pass through to the kubelet).
    pub method: http::Method,
    pub upgrade: Option<hyper::upgrade::OnUpgrade>,
}

impl Ctx {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn output(&self) -> Result<Output> {
        negotiate::output(self.header("accept"))
    }

    pub fn dry_run(&self) -> bool {
        self.query.all("dryRun").iter().any(|v| v == "All")
    }

    pub fn group(&self) -> &str {
        &self.entry.info.group
    }

    pub fn resource(&self) -> &str {
        &self.entry.info.resource
    }

    /// 404 for `name` of this resource.
    pub fn not_found(&self, name: &str) -> ApiError {
        ApiError::not_found(self.group(), self.resource(), name)
    }

    /// The store key for `name` in the request's namespace.
    pub fn key(&self, name: &str) -> String {
        self.entry.key(&self.info.namespace, name)
    }

    /// The body as JSON (YAML accepted), with upstream's limits.
    pub fn body_json(&self) -> Result<Value> {
        let ty = negotiate::body_type(self.header("content-type"))?;
        decode_body(&self.body, ty)
    }

    /// Writes the object into the served version's shape (apiVersion/kind, conversions).
    pub fn present(&self, mut obj: Value) -> Value {
        let info = &self.entry.info;
        if info.group == "events.k8s.io" {
            obj = crate::registry::core_to_events_v1(&obj);
        }
        if let Some(m) = obj.as_object_mut() {
            m.insert("apiVersion".into(), json!(info.api_version()));
            m.insert("kind".into(), json!(info.kind));
        }
        obj
    }

    /// Encodes one object for the client (JSON, YAML, a one-row Table, or metadata only).
    pub fn respond_object(&self, status: u16, obj: Value) -> Resp {
        let obj = self.present(obj);
        let mut r = match self.output() {
            Ok(Output::Table) => {
                let rv = object::resource_version(&obj).to_string();
                let (columns, row) = self.api.table_row(&self.entry, &obj);
                let include = self.include_object(&obj);
                response::json(
                    status,
                    &crate::table::table(&columns, vec![(row, include)], &rv, None, None),
                )
            }
            Ok(Output::Metadata) => response::json(status, &crate::table::partial_metadata(&obj)),
            Ok(Output::Yaml) => response::with_type(
                status,
                "application/yaml",
                serde_yaml_ng::to_string(&obj).unwrap_or_default(),
            ),
            Ok(Output::Json) => response::json(status, &obj),
            Err(e) => response::error(&e),
        };
        response::add_warnings(&mut r, &self.warnings);
        r
    }

    /// [`Self::respond_object`] of an object shared with the watch cache: plain JSON of an
    /// object already in the served shape is written from it without a copy.
    pub fn respond_shared(&self, status: u16, obj: Arc<Value>) -> Resp {
        let info = &self.entry.info;
        let is = |field: &str, want: &str| obj.get(field).and_then(Value::as_str) == Some(want);
        if info.group != "events.k8s.io"
            && is("apiVersion", &info.api_version())
            && is("kind", &info.kind)
            && matches!(self.output(), Ok(Output::Json))
        {
            let mut r = response::json(status, &obj);
            response::add_warnings(&mut r, &self.warnings);
            return r;
        }
        let obj = Arc::try_unwrap(obj).unwrap_or_else(|shared| (*shared).clone());
        self.respond_object(status, obj)
    }

    /// `includeObject` of a Table request: the object, its metadata, or nothing.
    pub fn include_object(&self, obj: &Value) -> Value {
        match self.query.get("includeObject").unwrap_or("Metadata") {
            "Object" => obj.clone(),
            "None" => Value::Null,
            _ => crate::table::partial_metadata(obj),
        }
    }

    pub fn error(&self, e: ApiError) -> Resp {
        let mut r = response::error(&e);
        response::add_warnings(&mut r, &self.warnings);
        r
    }
}

/// Depth beyond which a body is refused before it can exhaust the stack.
const MAX_DEPTH: usize = 100;

fn too_deep(v: &Value, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return true;
    }
    match v {
        Value::Array(a) => a.iter().any(|x| too_deep(x, depth + 1)),
        Value::Object(m) => m.values().any(|x| too_deep(x, depth + 1)),
        _ => false,
    }
}

/// Decodes a JSON or YAML body; nesting and alias bombs fail fast with 400/413.
pub fn decode_body(body: &[u8], ty: BodyType) -> Result<Value> {
    if body.len() > MAX_BODY {
        return Err(ApiError::too_large(
            "Request entity too large: limit is 3145728",
        ));
    }
    let value: Value = match ty {
        BodyType::Yaml | BodyType::ApplyPatch => {
            // JSON is YAML; parse JSON directly when it is, so error messages stay JSON's.
            let trimmed = body.iter().find(|b| !b.is_ascii_whitespace());
            if matches!(trimmed, Some(b'{') | Some(b'[')) {
                parse_json(body)?
            } else {
                let text = std::str::from_utf8(body)
                    .map_err(|_| ApiError::bad_request("the body is not valid UTF-8"))?;
                serde_yaml_ng::from_str::<Value>(text).map_err(|e| {
                    ApiError::bad_request(format!("error converting YAML to JSON: yaml: {e}"))
                })?
            }
        }
        BodyType::Protobuf => crate::protobuf::decode(body)?,
        _ => parse_json(body)?,
    };
    if too_deep(&value, 0) {
        return Err(ApiError::bad_request(
            "the object is nested too deeply (more than 100 levels)",
        ));
    }
    Ok(value)
}

fn parse_json(body: &[u8]) -> Result<Value> {
    let mut de = serde_json::Deserializer::from_slice(body);
    // serde_json stops at 128 levels on its own; past that is an error, not a crash.
    let v = serde::Deserialize::deserialize(&mut de).map_err(|e: serde_json::Error| {
        ApiError::bad_request(format!(
            "couldn't get version/kind; json parse error: {}",
            e
        ))
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("json parse error: {e}")))?;
    Ok(v)
}

/// Dispatches a resource request to its verb.
pub async fn handle(mut ctx: Ctx) -> Resp {
    let sub = ctx.info.subresource.clone();
    let result = if sub.is_empty()
        && ctx.info.verb == "create"
        && reviews::is_review(ctx.group(), ctx.resource())
    {
        reviews::create(&mut ctx).await
    } else if !sub.is_empty() {
        subresources::handle(&mut ctx).await
    } else {
        match ctx.info.verb.as_str() {
            "get" => get(&ctx).await,
            "list" => list::list(&ctx).await,
            "watch" => return watch::watch(ctx).await,
            "create" => write::create(&mut ctx).await,
            "update" => write::update(&mut ctx).await,
            "patch" => write::patch(&mut ctx).await,
            "delete" => delete::delete(&mut ctx).await,
            "deletecollection" => delete::delete_collection(&mut ctx).await,
            _ => Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            )),
        }
    };
    match result {
        Ok(r) => r,
        Err(e) => ctx.error(e),
    }
}

/// GET of one object: from the store for the newest state, from the cache for "0" or a
/// not-older-than resourceVersion.
pub async fn get(ctx: &Ctx) -> Result<Resp> {
    let obj = read(ctx, &ctx.info.name).await?;
    Ok(ctx.respond_object(200, obj))
}

/// The current object `name`, honouring the request's resourceVersion.
pub async fn read(ctx: &Ctx, name: &str) -> Result<Value> {
    let key = ctx.key(name);
    match ctx.query.get("resourceVersion").unwrap_or("") {
        "" => {
            let got = ctx
                .api
                .storage
                .get(&key, ctx.resource())
                .await
                .map_err(|e| e.to_api(ctx.group(), ctx.resource(), name))?;
            got.map(|(o, _)| o).ok_or_else(|| ctx.not_found(name))
        }
        rv => {
            let min: i64 = rv
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?;
            if min > 0
                && !ctx
                    .entry
                    .cacher
                    .wait_for(min, std::time::Duration::from_secs(3))
                    .await
            {
                return Err(ApiError::timeout(format!(
                    "Too large resource version: {min}, current: {}",
                    ctx.entry.cacher.revision()
                )));
            }
            let (obj, _) = ctx.entry.cacher.get(&key);
            obj.map(|o| (*o).clone()).ok_or_else(|| ctx.not_found(name))
        }
    }
}
