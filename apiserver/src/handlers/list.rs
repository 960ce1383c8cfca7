//! list: served from the watch cache at a consistent revision, filtered by label and field
//! selectors, in pages (`limit`/`continue`), in upstream's resourceVersion semantics.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use super::Ctx;
use crate::error::{ApiError, Result};
use crate::http::negotiate::Output;
use crate::http::response::{self, Resp};
use crate::object;
use crate::selector::{FieldSelector, LabelSelector};
use crate::storage::StorageError;

/// Label and field selectors of a request, checked against the resource's fields.
pub struct Filter {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn from_ctx(ctx: &Ctx) -> Result<Self> {
        let labels = LabelSelector::parse(ctx.query.get("labelSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?;
        let fields = FieldSelector::parse(ctx.query.get("fieldSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?;
        let info = &ctx.entry.info;
        let extra_owned: Vec<String> = ctx
            .entry
            .custom
            .as_ref()
            .map(|c| c.selectable_fields.clone())
            .unwrap_or_default();
        let extra: Vec<&str> = extra_owned.iter().map(String::as_str).collect();
        crate::selector::validate_fields(&info.group, &info.resource, &fields, &extra)
            .map_err(ApiError::bad_request)?;
        Ok(Self { labels, fields })
    }

    pub fn matches(&self, ctx: &Ctx, obj: &Value) -> bool {
        let info = &ctx.entry.info;
        self.labels.matches(|k| {
            obj.get("metadata")
                .and_then(|m| m.get("labels"))
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
        }) && self
            .fields
            .matches(|f| crate::selector::field_value(&info.group, &info.resource, obj, f))
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Continue {
    v: String,
    rv: i64,
    start: String,
}

fn encode_continue(rv: i64, start: &str) -> String {
    let c = Continue {
        v: "meta.k8s.io/v1".into(),
        rv,
        start: start.to_string(),
    };
    base64::engine::general_purpose::URL_SAFE.encode(serde_json::to_vec(&c).expect("serializable"))
}

fn decode_continue(token: &str) -> Result<Continue> {
    let bad = || {
        ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    };
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
        .map_err(|_| bad())?;
    let c: Continue = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if c.v != "meta.k8s.io/v1" || c.rv <= 0 || c.start.contains("..") {
        return Err(bad());
    }
    Ok(c)
}

/// Selected objects, the list's resourceVersion, the continue token and remaining count.
pub type Selection = (Vec<Value>, i64, Option<String>, Option<i64>);

/// The matching objects at the store's current revision: from the cache once it has caught
/// up, else from the store.
pub async fn select_consistent(ctx: &Ctx) -> Result<Selection> {
    let current = ctx
        .api
        .storage
        .current_revision()
        .await
        .map_err(|e| e.to_api(ctx.group(), ctx.resource(), ""))?;
    if ctx
        .entry
        .cacher
        .wait_for(current, Duration::from_secs(3))
        .await
    {
        select_from_cache(ctx, None)
    } else {
        from_store(ctx, 0, None).await
    }
}

fn select_from_cache(ctx: &Ctx, start: Option<(i64, String)>) -> Result<Selection> {
    let filter = Filter::from_ctx(ctx)?;
    let limit: usize = match ctx.query.get("limit") {
        Some(l) if !l.is_empty() => l
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit: {l}")))?
            .max(0) as usize,
        _ => 0,
    };
    let prefix = ctx.entry.scope_prefix(&ctx.info.namespace);
    let start_key = start.as_ref().map(|(_, k)| format!("{prefix}{k}"));
    let (items, rv) = ctx.entry.cacher.list(&prefix, start_key.as_deref());
    page(ctx, &filter, items.into_iter(), rv, limit, &prefix)
}

fn page(
    ctx: &Ctx,
    filter: &Filter,
    items: impl Iterator<Item = (String, Arc<Value>)>,
    rv: i64,
    limit: usize,
    prefix: &str,
) -> Result<Selection> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    let mut remaining = 0i64;
    for (key, obj) in items {
        if !filter.matches(ctx, &obj) {
            continue;
        }
        if limit > 0 && out.len() >= limit {
            if next.is_none() {
                next = Some(key.strip_prefix(prefix).unwrap_or(&key).to_string());
            }
            remaining += 1;
            continue;
        }
        out.push((*obj).clone());
    }
    let token = next.map(|start| encode_continue(rv, &start));
    let remaining = token.as_ref().map(|_| remaining);
    Ok((out, rv, token, remaining))
}

/// GET on a collection.
pub async fn list(ctx: &Ctx) -> Result<Resp> {
    let rv_param = ctx.query.get("resourceVersion").unwrap_or("").to_string();
    let rv_match = ctx
        .query
        .get("resourceVersionMatch")
        .unwrap_or("")
        .to_string();
    let selection = if let Some(token) = ctx.query.get("continue").filter(|t| !t.is_empty()) {
        if !rv_param.is_empty() && rv_param != "0" {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let c = decode_continue(token)?;
        if ctx.entry.cacher.revision() == c.rv {
            select_from_cache(ctx, Some((c.rv, c.start)))?
        } else {
            from_store(ctx, c.rv, Some(c.start)).await?
        }
    } else {
        match (rv_param.as_str(), rv_match.as_str()) {
            // A consistent read: the cache must have caught up with the store.
            ("", "") => select_consistent(ctx).await?,
            ("", _) => {
                return Err(ApiError::bad_request(
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                ))
            }
            (rv, "Exact") => {
                let rv: i64 = rv.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version: {rv}"))
                })?;
                from_store(ctx, rv, None).await?
            }
            (rv, "" | "NotOlderThan") => {
                let min: i64 = rv.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version: {rv}"))
                })?;
                if min > 0 && !ctx.entry.cacher.wait_for(min, Duration::from_secs(3)).await {
                    return Err(ApiError::timeout(format!(
                        "Too large resource version: {min}, current: {}",
                        ctx.entry.cacher.revision()
                    )));
                }
                select_from_cache(ctx, None)?
            }
            (_, other) => {
                return Err(ApiError::bad_request(format!(
                    "unknown resourceVersionMatch {other:?}"
                )))
            }
        }
    };
    respond_list(ctx, selection)
}

/// A page read from the store at `rv` (continuing an older list, or an exact read).
async fn from_store(ctx: &Ctx, rv: i64, start: Option<String>) -> Result<Selection> {
    let filter = Filter::from_ctx(ctx)?;
    let limit: usize = ctx
        .query
        .get("limit")
        .and_then(|l| l.parse::<i64>().ok())
        .unwrap_or(0)
        .max(0) as usize;
    let prefix = ctx.entry.scope_prefix(&ctx.info.namespace);
    match ctx.api.storage.list(&prefix, rv, ctx.resource()).await {
        Ok((items, read_rv)) => {
            let rv = if rv > 0 { rv } else { read_rv };
            let start_key = start.map(|s| format!("{prefix}{s}"));
            let items = items
                .into_iter()
                .map(|(o, _)| {
                    (
                        ctx.entry.key(object::namespace(&o), object::name(&o)),
                        Arc::new(o),
                    )
                })
                .filter(|(k, _)| start_key.as_ref().map(|s| k >= s).unwrap_or(true));
            page(ctx, &filter, items, rv, limit, &prefix)
        }
        Err(StorageError::Compacted(_)) => {
            let fresh = start
                .map(|s| encode_continue(ctx.entry.cacher.revision(), &s))
                .unwrap_or_default();
            Err(ApiError::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")
                .with_continue(fresh))
        }
        Err(e) => Err(e.to_api(ctx.group(), ctx.resource(), "")),
    }
}

fn respond_list(ctx: &Ctx, (items, rv, token, remaining): Selection) -> Result<Resp> {
    let info = &ctx.entry.info;
    let rv_s = rv.to_string();
    let r = match ctx.output()? {
        Output::Table => {
            let mut rows = Vec::with_capacity(items.len());
            let mut columns = None;
            for o in items {
                let o = ctx.present(o);
                let (cols, row) = ctx.api.table_row(&ctx.entry, &o);
                columns.get_or_insert(cols);
                rows.push((row, ctx.include_object(&o)));
            }
            let columns = columns.unwrap_or_else(|| ctx.api.table_columns(&ctx.entry));
            response::json(
                200,
                &crate::table::table(&columns, rows, &rv_s, token.as_deref(), remaining),
            )
        }
        Output::Metadata => {
            let items: Vec<Value> = items
                .into_iter()
                .map(|o| crate::table::partial_metadata(&ctx.present(o)))
                .collect();
            let mut meta = json!({"resourceVersion": rv_s});
            if let Some(t) = &token {
                meta["continue"] = json!(t);
            }
            response::json(
                200,
                &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items}),
            )
        }
        out => {
            let items: Vec<Value> = items.into_iter().map(|o| ctx.present(o)).collect();
            let mut meta = json!({"resourceVersion": rv_s});
            if let Some(t) = &token {
                meta["continue"] = json!(t);
            }
            if let Some(n) = remaining {
                meta["remainingItemCount"] = json!(n);
            }
            let list = json!({
                "kind": info.list_kind,
                "apiVersion": info.api_version(),
                "metadata": meta,
                "items": items,
            });
            if out == Output::Yaml {
                response::with_type(
                    200,
                    "application/yaml",
                    serde_yaml_ng::to_string(&list).unwrap_or_default(),
                )
            } else {
                response::json(200, &list)
            }
        }
    };
    Ok(r)
}
