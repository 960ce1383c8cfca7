//! Discovery: /api, /apis and per group-version resource lists, plain and aggregated (v2).

use serde_json::{json, Value};

use crate::catalog::Catalog;
use crate::resources::ResourceInfo;

pub const AGGREGATED_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// True when `Accept` prefers the aggregated v2 (or v2beta1) discovery document.
pub fn wants_aggregated(accept: Option<&str>) -> Option<&'static str> {
    let accept = accept?;
    for media in accept.split(',') {
        let m = media.replace(' ', "");
        if m.contains("as=APIGroupDiscoveryList") && m.contains("g=apidiscovery.k8s.io") {
            if m.contains("v=v2beta1") {
                return Some("v2beta1");
            }
            if m.contains("v=v2") {
                return Some("v2");
            }
        }
        if m.starts_with("application/json") && !m.contains("as=") {
            return None;
        }
    }
    None
}

/// `/api`: the core group's versions.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// `/apis`: every named group.
pub fn api_group_list(catalog: &Catalog) -> Value {
    let groups: Vec<Value> = catalog
        .group_versions()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_json(&g, &vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn group_json(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(Value::Null),
    })
}

/// `/apis/{group}`.
pub fn api_group(catalog: &Catalog, group: &str) -> Option<Value> {
    let (_, vs) = catalog
        .group_versions()
        .into_iter()
        .find(|(g, _)| g == group)?;
    let mut g = group_json(group, &vs);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

/// `/api/v1`, `/apis/{group}/{version}`: the APIResourceList.
pub fn resource_list(catalog: &Catalog, group: &str, version: &str) -> Option<Value> {
    let entries: Vec<_> = catalog
        .all()
        .into_iter()
        .filter(|e| e.info.group == group && e.info.version == version)
        .collect();
    if entries.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for e in &entries {
        resources.push(api_resource(&e.info));
        for s in &e.info.subresources {
            let mut r = json!({
                "name": format!("{}/{}", e.info.resource, s.name),
                "singularName": "",
                "namespaced": e.info.namespaced,
                "kind": s.kind,
                "verbs": s.verbs,
            });
            if s.group != e.info.group || s.version != e.info.version {
                r["group"] = json!(s.group);
                r["version"] = json!(s.version);
            }
            resources.push(r);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

fn api_resource(info: &ResourceInfo) -> Value {
    let mut r = json!({
        "name": info.resource,
        "singularName": info.singular,
        "namespaced": info.namespaced,
        "kind": info.kind,
        "verbs": info.verbs,
        "storageVersionHash": storage_hash(info),
    });
    if !info.short_names.is_empty() {
        r["shortNames"] = json!(info.short_names);
    }
    if !info.categories.is_empty() {
        r["categories"] = json!(info.categories);
    }
    r
}

fn storage_hash(info: &ResourceInfo) -> String {
    use base64::Engine;
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("{}/{}/{}", info.group, info.version, info.kind));
    base64::engine::general_purpose::STANDARD.encode(&d[..8])
}

/// The aggregated document for the core group (`/api`) or all named groups (`/apis`).
pub fn aggregated(catalog: &Catalog, core: bool, version: &str) -> Value {
    let mut items = Vec::new();
    for (group, versions) in catalog.group_versions() {
        if group.is_empty() != core {
            continue;
        }
        let mut vs = Vec::new();
        for v in &versions {
            let mut resources = Vec::new();
            for e in catalog.all() {
                if e.info.group != group || e.info.version != *v {
                    continue;
                }
                let info = &e.info;
                let subs: Vec<Value> = info
                    .subresources
                    .iter()
                    .map(|s| {
                        json!({
                            "subresource": s.name,
                            "responseKind": {"group": s.group, "version": s.version, "kind": s.kind},
                            "verbs": s.verbs,
                        })
                    })
                    .collect();
                let mut r = json!({
                    "resource": info.resource,
                    "responseKind": {"group": info.group, "version": info.version, "kind": info.kind},
                    "scope": if info.namespaced { "Namespaced" } else { "Cluster" },
                    "singularResource": info.singular,
                    "verbs": info.verbs,
                });
                if !info.short_names.is_empty() {
                    r["shortNames"] = json!(info.short_names);
                }
                if !info.categories.is_empty() {
                    r["categories"] = json!(info.categories);
                }
                if !subs.is_empty() {
                    r["subresources"] = json!(subs);
                }
                resources.push(r);
            }
            vs.push(json!({"version": v, "resources": resources, "freshness": "Current"}));
        }
        items.push(json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": vs}));
    }
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}
