//! pods/log for a deleted pod (beyond upstream): kubelets keep an archive of deleted pods'
//! logs, so the apiserver asks the kubelet of the node the pod last ran on. That node is found
//! in the pod's Events, which outlive the pod (the kubelet's events carry `source.host`): no
//! extra state is kept, and every apiserver of an HA control plane finds the same node.
//! Without such an event the answer stays the pod's NotFound.

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::Value;

use super::{encode, error_from, request, stream_response, validate_log_options};
use crate::error::{ApiError, Result};
use crate::http::response::Resp;
use crate::server::ApiServer;

/// The node of the newest event about pod `name` that a kubelet reported.
pub fn last_node(events: &[Value], name: &str) -> Option<String> {
    events
        .iter()
        .filter(|e| e["involvedObject"]["kind"] == "Pod" && e["involvedObject"]["name"] == name)
        .filter_map(|e| {
            let node = e["source"]["host"]
                .as_str()
                .filter(|h| !h.is_empty())
                .or_else(|| {
                    (e["reportingComponent"] == "kubelet")
                        .then(|| e["reportingInstance"].as_str())
                        .flatten()
                })?;
            let when = ["lastTimestamp", "eventTime", "firstTimestamp"]
                .iter()
                .find_map(|k| e[*k].as_str().filter(|s| !s.is_empty()))
                .unwrap_or_default()
                .to_string();
            Some((when, node.to_string()))
        })
        .max()
        .map(|(_, node)| node)
}

/// The archived log of deleted pod `namespace/name` from its last node's kubelet; `missing`
/// (the pod's NotFound) when no node is known or the kubelet has nothing.
pub async fn deleted_pod_log(
    api: &ApiServer,
    namespace: &str,
    name: &str,
    query: &crate::http::request::Query,
    missing: ApiError,
) -> Result<Resp> {
    validate_log_options(name, query)?;
    let Some(entry) = api.catalog.find("", "v1", "events") else {
        return Err(missing);
    };
    let (events, _) = api
        .storage
        .list(&entry.scope_prefix(namespace), 0, "events")
        .await
        .map_err(|e| e.to_api("", "events", ""))?;
    let events: Vec<Value> = events.into_iter().map(|(e, _)| e).collect();
    let Some(node) = last_node(&events, name) else {
        return Err(missing);
    };
    let container = query.get("container").unwrap_or_default();
    let mut params = Vec::new();
    for key in [
        "timestamps",
        "tailLines",
        "limitBytes",
        "sinceSeconds",
        "sinceTime",
    ] {
        if let Some(v) = query.get(key) {
            if key == "timestamps" && !query.flag(key) {
                continue;
            }
            let v = if v.is_empty() { "true" } else { v };
            params.push(format!("{key}={}", encode(v)));
        }
    }
    let mut path = format!(
        "/containerLogs/{}/{}/{}",
        encode(namespace),
        encode(name),
        encode(container)
    );
    if !params.is_empty() {
        path.push('?');
        path.push_str(&params.join("&"));
    }
    let k = match request(api, &node, Method::GET, &path, None, Bytes::new()).await {
        Ok(k) => k,
        Err(_) => return Err(missing),
    };
    match k.status {
        StatusCode::OK => Ok(stream_response(k, "text/plain")),
        StatusCode::NOT_FOUND => Err(missing),
        _ => Err(error_from(k).await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_newest_kubelet_event_names_the_node() {
        let events = vec![
            json!({"involvedObject": {"kind": "Pod", "name": "p"}, "source": {"component": "default-scheduler"}, "lastTimestamp": "2026-01-01T00:00:09Z"}),
            json!({"involvedObject": {"kind": "Pod", "name": "p"}, "source": {"component": "kubelet", "host": "node-a"}, "lastTimestamp": "2026-01-01T00:00:01Z"}),
            json!({"involvedObject": {"kind": "Pod", "name": "p"}, "source": {"component": "kubelet", "host": "node-b"}, "lastTimestamp": "2026-01-01T00:00:05Z"}),
            json!({"involvedObject": {"kind": "Pod", "name": "other"}, "source": {"host": "node-c"}, "lastTimestamp": "2026-01-01T00:00:07Z"}),
            json!({"involvedObject": {"kind": "Pod", "name": "q"}, "reportingComponent": "kubelet", "reportingInstance": "node-d", "eventTime": "2026-01-01T00:00:02.000000Z"}),
        ];
        assert_eq!(last_node(&events, "p"), Some("node-b".into()));
        assert_eq!(last_node(&events, "q"), Some("node-d".into()));
        assert_eq!(last_node(&events, "none"), None);
    }
}
