//! watch: newline-delimited JSON events over a chunked response, from the watch cache, with
//! bookmarks, initial events, selector transitions and 410 for expired resourceVersions.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::list::Filter;
use super::Ctx;
use crate::error::ApiError;
use crate::http::negotiate::Output;
use crate::http::response::Resp;
use crate::storage::cacher::{Event, EventType, Notice};

/// Serves a watch until the client goes, the timeout passes, or the server stops.
pub async fn watch(ctx: Ctx) -> Resp {
    match start(ctx) {
        Ok(r) => r,
        Err((ctx, e)) => ctx.error(e),
    }
}

struct Encoder {
    output: Output,
    sent_columns: bool,
}

#[allow(clippy::result_large_err)] // Built once per watch; the Ctx goes back to answer the error.
fn start(ctx: Ctx) -> Result<Resp, (Ctx, ApiError)> {
    let output = match ctx.output() {
        Ok(o) => o,
        Err(e) => return Err((ctx, e)),
    };
    let filter = match Filter::from_ctx(&ctx) {
        Ok(f) => f,
        Err(e) => return Err((ctx, e)),
    };
    let bookmarks = ctx.query.flag("allowWatchBookmarks");
    let initial_events = ctx.query.flag("sendInitialEvents");
    let rv = ctx.query.get("resourceVersion").unwrap_or("").to_string();
    let timeout_param = ctx.query.get("timeoutSeconds").map(str::to_string);
    let timeout = match timeout_param {
        Some(t) => match t.parse::<u64>() {
            Ok(s) => Duration::from_secs(s),
            Err(_) => {
                return Err((
                    ctx,
                    ApiError::bad_request(format!("invalid timeoutSeconds: {t}")),
                ))
            }
        },
        None => {
            // Spread reconnects, as upstream's min-request-timeout randomization does.
            let min = ctx.api.config.min_request_timeout.as_secs().max(1);
            let jitter = uuid::Uuid::new_v4().as_bytes()[0] as u64 * min / 255;
            Duration::from_secs(min + jitter)
        }
    };
    let start_rv = match rv.as_str() {
        "" | "0" => None,
        r => match r.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return Err((
                    ctx,
                    ApiError::bad_request(format!("invalid resource version: {r}")),
                ))
            }
        },
    };
    if initial_events && !bookmarks {
        return Err((
            ctx,
            ApiError::invalid(
                "meta.k8s.io",
                "ListOptions",
                "",
                &[crate::error::FieldError::forbidden(
                    "allowWatchBookmarks",
                    "allowWatchBookmarks required when sendInitialEvents is true",
                )],
            ),
        ));
    }
    let prefix = ctx.entry.scope_prefix(&ctx.info.namespace);
    // With sendInitialEvents the state at (or after) rv is sent as ADDED events first.
    let subscribe_rv = if initial_events { None } else { start_rv };
    // A watch narrowed to one node's pods listens on that node's channel only.
    let trigger_value = ctx
        .entry
        .cacher
        .trigger()
        .and_then(|t| filter.fields.requires_exact_match(t.field));
    let sub = ctx
        .entry
        .cacher
        .subscribe_triggered(subscribe_rv, &prefix, trigger_value);
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
    let mut resp = hyper::Response::new(StreamBody::new(ReceiverStream::new(rx)).boxed());
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let ctx = Arc::new(ctx);
    let mut enc = Encoder {
        output,
        sent_columns: false,
    };
    match sub {
        Err(oldest) => {
            let e = ApiError::expired(format!(
                "too old resource version: {} ({oldest})",
                start_rv.unwrap_or(0)
            ));
            let line = json!({"type": "ERROR", "object": e.to_status()});
            tokio::spawn(async move {
                let _ = tx.send(Ok(Frame::data(line_bytes(&line)))).await;
            });
        }
        Ok(sub) => {
            let api = ctx.api.clone();
            tokio::spawn(async move {
                let info = &ctx.info;
                let _longrunning = api.metrics.longrunning(&crate::metrics::RequestLabels {
                    verb: "WATCH",
                    dry_run: "",
                    group: &info.group,
                    version: &info.version,
                    resource: &info.resource,
                    subresource: &info.subresource,
                    scope: crate::metrics::scope(&info.namespace, &info.name, true, false),
                });
                let shutdown = api.shutdown.clone();
                let fell_behind = tokio::select! {
                    behind = run(&ctx, &filter, &mut enc, sub, &tx, bookmarks, initial_events) => behind,
                    _ = tokio::time::sleep(timeout) => false,
                    _ = shutdown.wait() => false,
                    _ = tx.closed() => false,
                };
                if fell_behind {
                    api.metrics.watcher_terminated(&ctx.entry.info.resource);
                }
            });
        }
    }
    Ok(resp)
}

fn line_bytes(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).expect("JSON values always serialize");
    b.push(b'\n');
    Bytes::from(b)
}

/// Sends the subscription's events until the client goes away; true when it ended because
/// the watcher fell behind even the history (upstream counts those as terminated watchers).
async fn run(
    ctx: &Ctx,
    filter: &Filter,
    enc: &mut Encoder,
    mut sub: crate::storage::cacher::Subscription,
    tx: &mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
    bookmarks: bool,
    initial_events: bool,
) -> bool {
    let mut last_rv = sub.rv;
    for obj in std::mem::take(&mut sub.initial) {
        if filter.matches(ctx, &obj) && !send(ctx, enc, tx, "ADDED", &obj).await {
            return false;
        }
    }
    if initial_events {
        let mut mark = bookmark(ctx, last_rv);
        mark["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        if tx
            .send(Ok(Frame::data(line_bytes(
                &json!({"type": "BOOKMARK", "object": mark}),
            ))))
            .await
            .is_err()
        {
            return false;
        }
    }
    for ev in std::mem::take(&mut sub.backlog) {
        if !deliver(ctx, filter, enc, tx, &ev).await {
            return false;
        }
        last_rv = ev.rv;
    }
    let mut last_bookmark = last_rv;
    let prefix = ctx.entry.scope_prefix(&ctx.info.namespace);
    loop {
        match sub.live.recv().await {
            Ok(Notice::Event(ev)) => {
                if ev.rv <= last_rv || !ev.key.starts_with(&prefix) {
                    continue;
                }
                if !deliver(ctx, filter, enc, tx, &ev).await {
                    return false;
                }
                last_rv = ev.rv;
            }
            Ok(Notice::Progress(rv)) => {
                if rv > last_rv {
                    last_rv = rv;
                }
                if bookmarks && last_rv > last_bookmark {
                    last_bookmark = last_rv;
                    let line = json!({"type": "BOOKMARK", "object": bookmark(ctx, last_rv)});
                    if tx.send(Ok(Frame::data(line_bytes(&line)))).await.is_err() {
                        return false;
                    }
                }
            }
            // Behind by more than the live channel holds: continue from the history, which
            // still has every event after `last_rv` unless the watcher fell out of its window
            // too; then end the watch, and the client resumes from its last version.
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let trigger_value = ctx
                    .entry
                    .cacher
                    .trigger()
                    .and_then(|t| filter.fields.requires_exact_match(t.field));
                let Ok(resumed) =
                    ctx.entry
                        .cacher
                        .subscribe_triggered(Some(last_rv), &prefix, trigger_value)
                else {
                    return true;
                };
                sub.live = resumed.live;
                for ev in resumed.backlog {
                    if ev.rv <= last_rv {
                        continue;
                    }
                    if !deliver(ctx, filter, enc, tx, &ev).await {
                        return false;
                    }
                    last_rv = ev.rv;
                }
            }
            Err(broadcast::error::RecvError::Closed) => return false,
        }
    }
}

fn bookmark(ctx: &Ctx, rv: i64) -> Value {
    json!({
        "kind": ctx.entry.info.kind,
        "apiVersion": ctx.entry.info.api_version(),
        "metadata": {"resourceVersion": rv.to_string()},
    })
}

/// Sends one event, turned into ADDED/DELETED when the object enters or leaves the selection.
async fn deliver(
    ctx: &Ctx,
    filter: &Filter,
    enc: &mut Encoder,
    tx: &mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
    ev: &Event,
) -> bool {
    let now = filter.matches(ctx, &ev.object);
    let before = ev
        .prev
        .as_ref()
        .map(|p| filter.matches(ctx, p))
        .unwrap_or(false);
    let kind = match ev.kind {
        EventType::Added if now => "ADDED",
        EventType::Deleted if now || before => "DELETED",
        EventType::Modified if now && before => "MODIFIED",
        EventType::Modified if now => "ADDED",
        EventType::Modified if before => "DELETED",
        _ => return true,
    };
    // Plain JSON of an object already in the served shape: every watcher sends the same
    // bytes, serialized once per event (`{"object":...,"type":...}`, serde_json's key order).
    if !matches!(enc.output, Output::Table | Output::Metadata)
        && ctx.entry.info.group != "events.k8s.io"
    {
        let info = &ctx.entry.info;
        if let Some(json) = ev.json_as(&info.api_version(), &info.kind) {
            return send_line(ctx, tx, event_line(&json, kind)).await;
        }
    }
    send(ctx, enc, tx, kind, &ev.object).await
}

async fn send(
    ctx: &Ctx,
    enc: &mut Encoder,
    tx: &mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
    kind: &str,
    obj: &Value,
) -> bool {
    let obj = ctx.present(obj.clone());
    let payload = match enc.output {
        Output::Table => {
            let (mut columns, row) = ctx.api.table_row(&ctx.entry, &obj);
            if enc.sent_columns {
                columns.clear();
            }
            enc.sent_columns = true;
            let rv = crate::object::resource_version(&obj).to_string();
            crate::table::table(
                &columns,
                vec![(row, ctx.include_object(&obj))],
                &rv,
                None,
                None,
            )
        }
        Output::Metadata => crate::table::partial_metadata(&obj),
        _ => obj,
    };
    let line = line_bytes(&json!({"type": kind, "object": payload}));
    send_line(ctx, tx, line).await
}

/// The line `line_bytes(&json!({"type": kind, "object": object}))` makes, from the object's
/// JSON (`kind` is one of the event types, which need no escaping).
fn event_line(object_json: &[u8], kind: &str) -> Bytes {
    let mut line = Vec::with_capacity(object_json.len() + 32);
    line.extend_from_slice(b"{\"object\":");
    line.extend_from_slice(object_json);
    line.extend_from_slice(b",\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\"}\n");
    Bytes::from(line)
}

async fn send_line(
    ctx: &Ctx,
    tx: &mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
    line: Bytes,
) -> bool {
    ctx.api.metrics.watch_event_sent(
        &ctx.entry.info.group,
        &ctx.entry.info.version,
        &ctx.entry.info.kind,
        line.len(),
    );
    tx.send(Ok(Frame::data(line))).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_event_lines_match_the_per_watcher_encoding() {
        let obj = json!({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": "p", "labels": {"a": "\"q\""}},
                         "spec": {"nodeName": "n"}});
        let json = serde_json::to_vec(&obj).expect("json");
        for kind in ["ADDED", "MODIFIED", "DELETED"] {
            assert_eq!(
                event_line(&json, kind),
                line_bytes(&json!({"type": kind, "object": obj})),
                "{kind}"
            );
        }
    }
}
