//! What a fresh cluster has before anyone writes: the four system namespaces, the
//! `kubernetes` Service with its endpoints, and the two system priority classes.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::object;
use crate::server::ApiServer;

fn meta(name: &str, namespace: Option<&str>) -> Value {
    let mut m = json!({
        "name": name,
        "uid": uuid::Uuid::new_v4().to_string(),
        "creationTimestamp": object::now_rfc3339(),
    });
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    m
}

/// The watch cache's copy of `key`, if the cache of its prefix holds it. The periodic checks
/// read there first, as upstream's reconcilers read through the cacher: an idle cluster then
/// costs the store nothing for them. Only a missing object is looked up in the store, and
/// every write stays guarded by the revision it was read at.
fn cached(api: &ApiServer, key: &str) -> Option<(Value, i64)> {
    let (obj, rev) = key
        .char_indices()
        .rev()
        .filter(|&(_, c)| c == '/')
        .find_map(|(i, _)| api.catalog.cacher(&key[..i]))?
        .get_at(key)?;
    Some(((*obj).clone(), rev))
}

/// [`cached`], or the store when the cache does not have it.
async fn current(
    api: &ApiServer,
    key: &str,
) -> Result<Option<(Value, i64)>, crate::storage::StorageError> {
    match cached(api, key) {
        Some(c) => Ok(Some(c)),
        None => api.storage.get(key, "bootstrap").await,
    }
}

async fn ensure(api: &ApiServer, key: &str, obj: Value) {
    match current(api, key).await {
        Ok(Some(_)) => {}
        Ok(None) => match api.storage.create(key, &obj, "bootstrap").await {
            Ok(_) | Err(crate::storage::StorageError::AlreadyExists) => {}
            Err(e) => tracing::warn!(key, error = %e, "bootstrap write failed"),
        },
        Err(e) => tracing::warn!(key, error = %e, "bootstrap read failed"),
    }
}

/// Creates whatever of the defaults is missing (idempotent, safe with several apiservers).
pub async fn ensure_defaults(api: &ApiServer) {
    ensure_system_objects(api).await;
    ensure_kubernetes_service(api).await;
    reconcile_rbac(api).await;
}

/// The system namespaces and priority classes, the kubernetes Service's IP reservation and
/// the published authentication info.
async fn ensure_system_objects(api: &ApiServer) {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let mut m = meta(ns, None);
        m["labels"] = json!({"kubernetes.io/metadata.name": ns});
        ensure(
            api,
            &format!("/registry/namespaces/{ns}"),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": m,
                   "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
        )
        .await;
    }
    for (name, value, desc) in [
        ("system-node-critical", 2_000_001_000i64, "Used for system critical pods that must not be moved from their current node."),
        ("system-cluster-critical", 2_000_000_000i64, "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."),
    ] {
        ensure(
            api,
            &format!("/registry/priorityclasses/{name}"),
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": meta(name, None),
                   "value": value, "globalDefault": false, "description": desc,
                   "preemptionPolicy": "PreemptLowerPriority"}),
        )
        .await;
    }
    let ip = api.config.service_cluster_ip_range.first_ip();
    if let Err(e) = api.allocator.reserve_ip(ip).await {
        tracing::warn!(error = %e, "reserving the kubernetes service IP");
    }
    publish_authentication_info(api).await;
}

/// The `kubernetes` Service in `default` and its endpoints.
async fn ensure_kubernetes_service(api: &ApiServer) {
    let ip = api.config.service_cluster_ip_range.first_ip();
    let port = api.secure_port();
    let mut svc_meta = meta("kubernetes", Some("default"));
    svc_meta["labels"] = json!({"component": "apiserver", "provider": "kubernetes"});
    ensure(
        api,
        "/registry/services/default/kubernetes",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": svc_meta,
               "spec": {"type": "ClusterIP", "clusterIP": ip.to_string(), "clusterIPs": [ip.to_string()],
                        "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
                        "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                        "internalTrafficPolicy": "Cluster"},
               "status": {"loadBalancer": {}}}),
    )
    .await;
    reconcile_endpoints(api).await;
}

/// The data of kube-system/extension-apiserver-authentication: the client CA and the front
/// proxy's CA and header names, for the components that authenticate requests by delegation
/// (kube-scheduler, kube-controller-manager, aggregated apiservers).
fn authentication_info(config: &crate::options::Config) -> serde_json::Map<String, Value> {
    let mut data = serde_json::Map::new();
    let read = |p: &std::path::Path| match std::fs::read_to_string(p) {
        Ok(pem) => Some(pem),
        Err(e) => {
            tracing::warn!(path = %p.display(), error = %e, "reading a CA to publish");
            None
        }
    };
    if let Some(pem) = config.client_ca_file.as_deref().and_then(read) {
        data.insert("client-ca-file".into(), json!(pem));
    }
    let rh = &config.requestheader;
    if let Some(pem) = rh.client_ca_file.as_deref().and_then(read) {
        data.insert("requestheader-client-ca-file".into(), json!(pem));
        for (key, list) in [
            ("requestheader-allowed-names", &rh.allowed_names),
            ("requestheader-username-headers", &rh.username_headers),
            ("requestheader-group-headers", &rh.group_headers),
            (
                "requestheader-extra-headers-prefix",
                &rh.extra_headers_prefix,
            ),
        ] {
            data.insert(key.into(), json!(json!(list).to_string()));
        }
    }
    data
}

/// Creates or updates the ConfigMap when its data differs from this apiserver's flags.
async fn publish_authentication_info(api: &ApiServer) {
    let data = authentication_info(&api.config);
    if data.is_empty() {
        return;
    }
    let key = "/registry/configmaps/kube-system/extension-apiserver-authentication";
    for _ in 0..5 {
        match api.storage.get(key, "configmaps").await {
            Ok(None) => {
                let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": meta("extension-apiserver-authentication", Some("kube-system")),
                    "data": data});
                match api.storage.create(key, &obj, "configmaps").await {
                    Ok(_) => return,
                    Err(crate::storage::StorageError::AlreadyExists) => continue,
                    Err(e) => return tracing::warn!(error = %e, "publishing {key}"),
                }
            }
            Ok(Some((mut obj, rev))) => {
                if obj["data"].as_object() == Some(&data) {
                    return;
                }
                obj["data"] = Value::Object(data.clone());
                match api.storage.update(key, &obj, rev, "configmaps").await {
                    Ok(_) => return,
                    Err(crate::storage::StorageError::Conflict(_)) => continue,
                    Err(e) => return tracing::warn!(error = %e, "publishing {key}"),
                }
            }
            Err(e) => return tracing::warn!(error = %e, "reading {key}"),
        }
    }
}

/// Upstream's rbac/bootstrap-roles: creates the default roles and bindings and adds what an
/// older copy lacks, unless its `rbac.authorization.kubernetes.io/autoupdate` is "false".
async fn reconcile_rbac(api: &ApiServer) {
    use crate::authz::bootstrap_policy::{default_policy, reconcile, Reconciled};
    let policy = default_policy();
    for expected in policy.all() {
        let resource = match expected["kind"].as_str() {
            Some("ClusterRole") => "clusterroles",
            Some("ClusterRoleBinding") => "clusterrolebindings",
            Some("Role") => "roles",
            Some("RoleBinding") => "rolebindings",
            _ => continue,
        };
        let name = object::name(expected);
        let key = match object::meta_str(expected, "namespace") {
            Some(ns) if !ns.is_empty() => format!("/registry/{resource}/{ns}/{name}"),
            _ => format!("/registry/{resource}/{name}"),
        };
        let stored = match api.storage.get(&key, "bootstrap").await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(key, error = %e, "reading a default RBAC object");
                continue;
            }
        };
        let with_identity = |mut obj: Value| {
            let m = object::metadata_mut(&mut obj);
            m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            m.insert("creationTimestamp".into(), json!(object::now_rfc3339()));
            obj
        };
        let result = match (
            reconcile(expected, stored.as_ref().map(|(v, _)| v)),
            &stored,
        ) {
            (None, _) => continue,
            (Some(Reconciled::Create(obj)), _) => {
                match api
                    .storage
                    .create(&key, &with_identity(obj), "bootstrap")
                    .await
                {
                    Err(crate::storage::StorageError::AlreadyExists) => Ok(0),
                    r => r,
                }
            }
            (Some(Reconciled::Update(obj)), Some((_, rev))) => {
                api.storage.update(&key, &obj, *rev, "bootstrap").await
            }
            (Some(Reconciled::Recreate(obj)), Some((_, rev))) => {
                match api.storage.delete(&key, *rev, "bootstrap").await {
                    Ok(_) => {
                        api.storage
                            .create(&key, &with_identity(obj), "bootstrap")
                            .await
                    }
                    Err(e) => Err(e),
                }
            }
            (Some(_), None) => continue,
        };
        if let Err(e) = result {
            tracing::warn!(key, error = %e, "reconciling a default RBAC object");
        }
    }
    // Authorization reads the caches: let them hold the policy before the server is ready.
    api.catch_up(
        "rbac.authorization.k8s.io",
        &[
            "clusterroles",
            "clusterrolebindings",
            "roles",
            "rolebindings",
        ],
        Duration::from_secs(10),
    )
    .await;
}

/// The kubernetes Service's Endpoints and EndpointSlice point at this apiserver.
async fn reconcile_endpoints(api: &ApiServer) {
    let addr = api.config.advertise_address.to_string();
    let port = api.secure_port();
    let mut ep_meta = meta("kubernetes", Some("default"));
    ep_meta["labels"] = json!({"endpointslice.kubernetes.io/skip-mirror": "true"});
    let endpoints = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": ep_meta,
        "subsets": [{"addresses": [{"ip": addr}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]});
    let mut slice_meta = meta("kubernetes", Some("default"));
    slice_meta["labels"] = json!({"kubernetes.io/service-name": "kubernetes", "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"});
    let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": slice_meta,
        "addressType": "IPv4",
        "endpoints": [{"addresses": [addr], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}]});
    for (key, obj, field) in [
        (
            "/registry/endpoints/default/kubernetes",
            endpoints,
            "subsets",
        ),
        (
            "/registry/endpointslices/default/kubernetes",
            slice,
            "endpoints",
        ),
    ] {
        match current(api, key).await {
            Ok(Some((cur, rev))) => {
                if cur[field] != obj[field] {
                    let mut next = cur.clone();
                    next[field] = obj[field].clone();
                    if field == "endpoints" {
                        next["ports"] = obj["ports"].clone();
                    }
                    let _ = api.storage.update(key, &next, rev, "bootstrap").await;
                }
            }
            Ok(None) => {
                let _ = api.storage.create(key, &obj, "bootstrap").await;
            }
            Err(e) => tracing::warn!(key, error = %e, "endpoints reconcile failed"),
        }
    }
}

/// Keeps the defaults in place (someone may delete them) until shutdown, at upstream's
/// intervals: the `kubernetes` Service and endpoints every 10 s, the system namespaces (and
/// the rest of the system objects) every minute. The default RBAC policy is reconciled once at
/// start, as upstream's rbac/bootstrap-roles hook does; re-reading its ~150 objects every 10 s
/// was most of an idle cluster's store traffic.
pub async fn maintain(api: Arc<ApiServer>) {
    const SERVICE_EVERY: Duration = Duration::from_secs(10);
    const SYSTEM_EVERY: u32 = 6;
    let mut round = 0u32;
    loop {
        tokio::select! {
            _ = api.shutdown.wait() => return,
            _ = tokio::time::sleep(SERVICE_EVERY) => {}
        }
        round += 1;
        if round % SYSTEM_EVERY == 0 {
            ensure_system_objects(&api).await;
        }
        ensure_kubernetes_service(&api).await;
    }
}
