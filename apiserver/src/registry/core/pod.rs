//! Pods and pod specs: v1 defaults, admission defaults, validation and the update rules.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::error::{FieldError, FieldErrorType};
use crate::registry::quantity::{self, Quantity};
use crate::registry::validation::{
    arr_of, bool_of, each_mut, get, inclusive_range_error, int_of, invalid_each, is_config_map_key,
    is_env_var_name, is_label_value, is_valid_ip, is_valid_port_name, is_valid_port_num,
    name_is_dns_subdomain, remove, semantic_eq, set_default, set_default_str, str_of,
    validate_annotations, validate_dns1123_label, validate_dns1123_subdomain, validate_labels,
    validate_nonnegative, validate_object_meta, validate_object_meta_update,
    validate_qualified_name, NEGATIVE_ERROR,
};
use crate::registry::Strategy;

const FILE_MODE_ERROR: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];
/// Upstream's list of what a pod update may change, joined with commas in the message.
const UPDATABLE_POD_FIELDS: &[&str] = &[
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
];
/// Volume source fields, to count how many a volume sets.
const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];
const CONTAINER_KINDS: &[&str] = &["initContainers", "containers", "ephemeralContainers"];

// ---------------------------------------------------------------------------------------------
// Defaults.

/// The tag an image reference pulls: `latest` when it names neither tag nor digest, `""` when
/// it has a digest only or cannot be parsed (upstream's `parsers.ParseImageName`).
pub fn image_tag(image: &str) -> String {
    if image.is_empty() || image.chars().any(char::is_whitespace) {
        return String::new();
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    // The domain (first component with '.', ':' or "localhost") may contain a port.
    let rest = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            rest
        }
        _ => name,
    };
    let (repo, tag) = match rest.rsplit_once(':') {
        Some((r, t)) => (r, t),
        None => (rest, ""),
    };
    if repo.is_empty() || repo.to_lowercase() != repo {
        return String::new();
    }
    if !tag.is_empty() {
        let valid = tag.len() <= 128
            && tag.as_bytes()[0] != b'.'
            && tag.as_bytes()[0] != b'-'
            && tag
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-');
        return if valid {
            tag.to_string()
        } else {
            String::new()
        };
    }
    if digest.is_some() {
        String::new()
    } else {
        "latest".into()
    }
}

fn default_probe(probe: Option<&mut Value>) {
    let Some(p) = probe.filter(|p| p.is_object()) else {
        return;
    };
    set_default(p, "timeoutSeconds", json!(1));
    set_default(p, "periodSeconds", json!(10));
    set_default(p, "successThreshold", json!(1));
    set_default(p, "failureThreshold", json!(3));
    default_handler(p);
}

/// `httpGet` path and scheme, as `SetDefaults_HTTPGetAction`.
fn default_handler(h: &mut Value) {
    if let Some(g) = h.get_mut("httpGet").filter(|g| g.is_object()) {
        set_default_str(g, "path", "/");
        set_default_str(g, "scheme", "HTTP");
    }
}

fn default_field_ref(holder: &mut Value) {
    if let Some(f) = holder.get_mut("fieldRef").filter(|f| f.is_object()) {
        set_default_str(f, "apiVersion", "v1");
    }
}

fn default_container(c: &mut Value) {
    if !c.is_object() {
        return;
    }
    let pull = if image_tag(str_of(c, "image")) == "latest" {
        "Always"
    } else {
        "IfNotPresent"
    };
    set_default_str(c, "imagePullPolicy", pull);
    set_default_str(c, "terminationMessagePath", "/dev/termination-log");
    set_default_str(c, "terminationMessagePolicy", "File");
    set_default(c, "resources", json!({}));
    each_mut(c, "ports", |p| set_default_str(p, "protocol", "TCP"));
    each_mut(c, "env", |e| {
        if let Some(from) = e.get_mut("valueFrom") {
            default_field_ref(from);
        }
    });
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        default_probe(c.get_mut(probe));
    }
    if let Some(l) = c.get_mut("lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = l.get_mut(hook) {
                default_handler(h);
            }
        }
    }
    if let Some(r) = c.get_mut("resources") {
        quantity::canonicalize_list(r.get_mut("limits"));
        quantity::canonicalize_list(r.get_mut("requests"));
    }
}

fn default_volume(v: &mut Value) {
    if !v.is_object() {
        return;
    }
    if !VOLUME_SOURCES.iter().any(|s| get(v, s).is_some()) {
        v["emptyDir"] = json!({});
    }
    for (src, mode) in [
        ("secret", "defaultMode"),
        ("configMap", "defaultMode"),
        ("downwardAPI", "defaultMode"),
        ("projected", "defaultMode"),
    ] {
        if let Some(s) = v.get_mut(src).filter(|s| s.is_object()) {
            set_default(s, mode, json!(0o644));
        }
    }
    if let Some(d) = v.get_mut("downwardAPI") {
        each_mut(d, "items", default_field_ref);
    }
    if let Some(h) = v.get_mut("hostPath").filter(|h| h.is_object()) {
        set_default(h, "type", json!(""));
    }
    if let Some(p) = v.get_mut("projected") {
        each_mut(p, "sources", |s| {
            if let Some(t) = s.get_mut("serviceAccountToken").filter(|t| t.is_object()) {
                set_default(t, "expirationSeconds", json!(3600));
            }
            if let Some(d) = s.get_mut("downwardAPI") {
                each_mut(d, "items", default_field_ref);
            }
        });
    }
    if let Some(e) = v
        .get_mut("ephemeral")
        .and_then(|e| e.get_mut("volumeClaimTemplate"))
    {
        if let Some(spec) = e.get_mut("spec") {
            set_default_str(spec, "volumeMode", "Filesystem");
        }
    }
}

/// `SetDefaults_PodSpec` and what it reaches (containers, volumes, probes): applies to pods
/// and pod templates alike.
pub fn default_pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_default_str(spec, "dnsPolicy", "ClusterFirst");
    set_default_str(spec, "restartPolicy", "Always");
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default_str(spec, "schedulerName", "default-scheduler");
    for kind in CONTAINER_KINDS {
        each_mut(spec, kind, default_container);
    }
    each_mut(spec, "volumes", default_volume);
    quantity::canonicalize_list(spec.get_mut("overhead"));
    // v1 conversion: the deprecated `serviceAccount` mirrors `serviceAccountName`.
    let sa = str_of(spec, "serviceAccountName").to_string();
    let deprecated = str_of(spec, "serviceAccount").to_string();
    if sa.is_empty() && !deprecated.is_empty() {
        spec["serviceAccountName"] = json!(deprecated);
    } else if !sa.is_empty() {
        spec["serviceAccount"] = json!(sa);
    }
}

/// Defaults of a pod template (`template.spec`).
pub fn default_pod_template(template: Option<&mut Value>) {
    if let Some(spec) = template.and_then(|t| t.get_mut("spec")) {
        default_pod_spec(spec);
    }
}

/// `SetDefaults_Pod`: what only pods get beyond the pod spec defaults.
pub fn default_pod(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    default_pod_spec(spec);
    set_default(spec, "enableServiceLinks", json!(true));
    let host_network = bool_of(spec, "hostNetwork");
    for kind in CONTAINER_KINDS {
        each_mut(spec, kind, |c| {
            // Limits without requests request the limit.
            if let Some(limits) = c
                .pointer("/resources/limits")
                .and_then(Value::as_object)
                .cloned()
            {
                let res = crate::registry::validation::child_mut(c, "resources");
                let req = crate::registry::validation::child_mut(res, "requests");
                for (k, v) in limits {
                    set_default(req, &k, v);
                }
            }
            if host_network {
                each_mut(c, "ports", |p| {
                    if int_of(p, "hostPort").unwrap_or(0) == 0 {
                        if let Some(cp) = get(p, "containerPort").cloned() {
                            p["hostPort"] = cp;
                        }
                    }
                });
            }
        });
    }
}

/// Known system priority classes and their values.
pub fn system_priority(class: &str) -> Option<i64> {
    match class {
        "system-node-critical" => Some(2_000_001_000),
        "system-cluster-critical" => Some(2_000_000_000),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// QoS.

/// The QoS class of a pod spec, as upstream's `qos.GetPodQOS`.
pub fn pod_qos(spec: &Value) -> &'static str {
    let mut requests: BTreeMap<String, Quantity> = BTreeMap::new();
    let mut limits: BTreeMap<String, Quantity> = BTreeMap::new();
    let mut guaranteed = true;
    let supported = |n: &str| n == "cpu" || n == "memory";
    let containers = arr_of(spec, "containers")
        .iter()
        .chain(arr_of(spec, "initContainers"));
    for c in containers {
        let res = c.get("resources");
        for (name, q) in quantity::list(res.and_then(|r| r.get("requests"))) {
            if supported(&name) && q.nanos > 0 {
                let sum = requests.get(&name).map_or(q, |s| s.add(&q));
                requests.insert(name, sum);
            }
        }
        let mut found = BTreeSet::new();
        for (name, q) in quantity::list(res.and_then(|r| r.get("limits"))) {
            if supported(&name) && q.nanos > 0 {
                found.insert(name.clone());
                let sum = limits.get(&name).map_or(q, |s| s.add(&q));
                limits.insert(name, sum);
            }
        }
        if !(found.contains("cpu") && found.contains("memory")) {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed
        && requests.iter().all(|(k, r)| limits.get(k) == Some(r))
        && requests.len() == limits.len()
    {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

// ---------------------------------------------------------------------------------------------
// Validation.

/// Where a pod spec lives: pods are checked more strictly than templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecKind {
    Pod,
    Template,
}

/// Taint effects as upstream's `validateTaintEffect`.
pub fn validate_taint_effect(effect: &str, allow_empty: bool, path: &str) -> Vec<FieldError> {
    if effect.is_empty() && !allow_empty {
        return vec![FieldError::required(path, "")];
    }
    if TAINT_EFFECTS.contains(&effect) {
        Vec::new()
    } else {
        vec![FieldError::not_supported(
            path,
            json!(effect),
            TAINT_EFFECTS,
        )]
    }
}

/// Upstream's `ValidateTolerations`.
pub fn validate_tolerations(tolerations: &[Value], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, t) in tolerations.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let key = str_of(t, "key");
        let op = str_of(t, "operator");
        let effect = str_of(t, "effect");
        if !key.is_empty() {
            errs.extend(validate_qualified_name(key, &format!("{p}.key")));
        }
        if key.is_empty() && op != "Exists" {
            errs.push(FieldError::invalid(
                format!("{p}.operator"),
                json!(op),
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if get(t, "tolerationSeconds").is_some() && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                format!("{p}.effect"),
                json!(effect),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match op {
            "Equal" | "" => {
                let value = str_of(t, "value");
                let msgs = is_label_value(value);
                if !msgs.is_empty() {
                    errs.push(FieldError::invalid(
                        format!("{p}.operator"),
                        json!(value),
                        msgs.join(";"),
                    ));
                }
            }
            "Exists" => {
                if !str_of(t, "value").is_empty() {
                    errs.push(FieldError::invalid(
                        format!("{p}.operator"),
                        t.clone(),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            _ => errs.push(FieldError::not_supported(
                format!("{p}.operator"),
                json!(op),
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() {
            errs.extend(validate_taint_effect(effect, true, &format!("{p}.effect")));
        }
    }
    errs
}

/// An int-or-string port: a valid number, or a valid port name.
pub fn validate_port_num_or_name(port: Option<&Value>, path: &str) -> Vec<FieldError> {
    match port {
        Some(Value::Number(n)) => {
            let v = n.as_i64().unwrap_or(0);
            is_valid_port_num(v)
                .into_iter()
                .map(|m| FieldError::invalid(path, json!(v), m))
                .collect()
        }
        Some(Value::String(s)) if !s.is_empty() => invalid_each(path, s, is_valid_port_name(s)),
        _ => vec![FieldError::required(path, "")],
    }
}

fn validate_handler(h: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut count = 0;
    for kind in ["exec", "httpGet", "tcpSocket", "grpc", "sleep"] {
        let Some(x) = get(h, kind) else { continue };
        count += 1;
        if count > 1 {
            errs.push(FieldError::forbidden(
                format!("{path}.{kind}"),
                "may not specify more than 1 handler type",
            ));
            continue;
        }
        match kind {
            "exec" if arr_of(x, "command").is_empty() => {
                errs.push(FieldError::required(format!("{path}.exec.command"), ""));
            }
            "httpGet" => {
                if str_of(x, "path").is_empty() {
                    errs.push(FieldError::required(format!("{path}.httpGet.path"), ""));
                }
                errs.extend(validate_port_num_or_name(
                    get(x, "port"),
                    &format!("{path}.httpGet.port"),
                ));
                let scheme = str_of(x, "scheme");
                if !["HTTP", "HTTPS"].contains(&scheme) {
                    errs.push(FieldError::not_supported(
                        format!("{path}.httpGet.scheme"),
                        json!(scheme),
                        &["HTTP", "HTTPS"],
                    ));
                }
            }
            "tcpSocket" => {
                errs.extend(validate_port_num_or_name(
                    get(x, "port"),
                    &format!("{path}.tcpSocket.port"),
                ));
            }
            "grpc" => {
                let port = int_of(x, "port").unwrap_or(0);
                errs.extend(
                    is_valid_port_num(port)
                        .into_iter()
                        .map(|m| FieldError::invalid(format!("{path}.grpc.port"), json!(port), m)),
                );
            }
            _ => {}
        }
    }
    if count == 0 {
        errs.push(FieldError::required(path, "must specify a handler type"));
    }
    errs
}

fn validate_probe(probe: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = validate_handler(probe, path);
    for f in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        errs.extend(validate_nonnegative(probe, f, &format!("{path}.{f}")));
    }
    if let Some(g) = int_of(probe, "terminationGracePeriodSeconds") {
        if g <= 0 {
            errs.push(FieldError::invalid(
                format!("{path}.terminationGracePeriodSeconds"),
                json!(g),
                "must be greater than 0",
            ));
        }
    }
    errs
}

/// Upstream's `ValidateResourceRequirements` for a container.
pub fn validate_resources(res: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let lim_path = format!("{path}.limits");
    let req_path = format!("{path}.requests");
    let limits = res.get("limits");
    if let Some(m) = limits.and_then(Value::as_object) {
        for (name, v) in m {
            let p = format!("{lim_path}[{name}]");
            errs.extend(quantity::validate_container_resource_name(name, &p));
            errs.extend(quantity::validate_quantity_value(name, v, &p));
        }
    }
    if let Some(m) = res.get("requests").and_then(Value::as_object) {
        for (name, v) in m {
            let p = format!("{req_path}[{name}]");
            errs.extend(quantity::validate_container_resource_name(name, &p));
            let value_errs = quantity::validate_quantity_value(name, v, &p);
            let ok = value_errs.is_empty();
            errs.extend(value_errs);
            let overcommit = quantity::is_native(name) && !name.starts_with("hugepages-");
            match (ok, quantity::from_value(v), quantity::lookup(limits, name)) {
                (true, Ok(req), Some(lim)) => {
                    if req != lim && !overcommit {
                        errs.push(FieldError::invalid(
                            req_path.as_str(),
                            json!(req.canonical()),
                            format!("must be equal to {name} limit of {}", lim.canonical()),
                        ));
                    } else if req > lim {
                        errs.push(FieldError::invalid(
                            req_path.as_str(),
                            json!(req.canonical()),
                            format!(
                                "must be less than or equal to {name} limit of {}",
                                lim.canonical()
                            ),
                        ));
                    }
                }
                (true, Ok(_), None) if !overcommit => errs.push(FieldError::required(
                    lim_path.as_str(),
                    "Limit must be set for non overcommitable resources",
                )),
                _ => {}
            }
        }
    }
    errs
}

fn validate_env(env: &[Value], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, e) in env.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let name = str_of(e, "name");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{p}.name"), ""));
        } else {
            errs.extend(invalid_each(
                &format!("{p}.name"),
                name,
                is_env_var_name(name),
            ));
        }
        let Some(from) = get(e, "valueFrom") else {
            continue;
        };
        let fp = format!("{p}.valueFrom");
        let mut sources = 0;
        if let Some(f) = get(from, "fieldRef") {
            sources += 1;
            if str_of(f, "fieldPath").is_empty() {
                errs.push(FieldError::required(format!("{fp}.fieldRef.fieldPath"), ""));
            }
        }
        if let Some(r) = get(from, "resourceFieldRef") {
            sources += 1;
            if str_of(r, "resource").is_empty() {
                errs.push(FieldError::required(
                    format!("{fp}.resourceFieldRef.resource"),
                    "",
                ));
            }
        }
        for sel in ["configMapKeyRef", "secretKeyRef"] {
            if let Some(r) = get(from, sel) {
                sources += 1;
                if str_of(r, "name").is_empty() {
                    errs.push(FieldError::required(format!("{fp}.{sel}.name"), ""));
                }
                let key = str_of(r, "key");
                if key.is_empty() {
                    errs.push(FieldError::required(format!("{fp}.{sel}.key"), ""));
                } else {
                    errs.extend(invalid_each(
                        &format!("{fp}.{sel}.key"),
                        key,
                        is_config_map_key(key),
                    ));
                }
            }
        }
        if sources == 0 {
            errs.push(FieldError::invalid(
                fp.as_str(),
                json!(""),
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if !str_of(e, "value").is_empty() {
            errs.push(FieldError::invalid(
                fp.as_str(),
                json!(""),
                "may not be specified when `value` is not empty",
            ));
        } else if sources > 1 {
            errs.push(FieldError::invalid(
                fp.as_str(),
                json!(""),
                "may not have more than one field specified at a time",
            ));
        }
    }
    errs
}

fn not_found(path: String, value: &str) -> FieldError {
    FieldError::new(FieldErrorType::NotFound, path, "").with_value(json!(value))
}

fn validate_volume_mounts(
    mounts: &[Value],
    volumes: &BTreeSet<String>,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let name = str_of(m, "name");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{p}.name"), ""));
        }
        if !volumes.contains(name) {
            errs.push(not_found(format!("{p}.name"), name));
        }
        let mount_path = str_of(m, "mountPath");
        if mount_path.is_empty() {
            errs.push(FieldError::required(format!("{p}.mountPath"), ""));
        }
        if !seen.insert(mount_path.to_string()) {
            errs.push(FieldError::invalid(
                format!("{p}.mountPath"),
                json!(mount_path),
                "must be unique",
            ));
        }
        let sub = str_of(m, "subPath");
        if !sub.is_empty() {
            errs.extend(validate_local_descending_path(sub, &format!("{p}.subPath")));
        }
    }
    errs
}

/// A relative path that stays below its root (no absolute paths, no `..` elements).
pub fn validate_local_descending_path(target: &str, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if target.starts_with('/') {
        errs.push(FieldError::invalid(
            path,
            json!(target),
            "must be a relative path",
        ));
    }
    if target.split('/').any(|p| p == "..") {
        errs.push(FieldError::invalid(
            path,
            json!(target),
            "must not contain '..'",
        ));
    }
    errs
}

struct ContainerCtx<'a> {
    volumes: &'a BTreeSet<String>,
    kind: SpecKind,
    host_network: bool,
}

fn validate_container(
    c: &Value,
    path: &str,
    ctx: &ContainerCtx<'_>,
    init: bool,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = str_of(c, "name");
    if name.is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    } else {
        errs.extend(validate_dns1123_label(name, &format!("{path}.name")));
    }
    let image = str_of(c, "image");
    if image.is_empty() {
        errs.push(FieldError::required(format!("{path}.image"), ""));
    } else if ctx.kind == SpecKind::Pod && image.trim() != image {
        errs.push(FieldError::invalid(
            format!("{path}.image"),
            json!(image),
            "must not have leading or trailing whitespace",
        ));
    }
    let mut port_names = BTreeSet::new();
    for (j, p) in arr_of(c, "ports").iter().enumerate() {
        let pp = format!("{path}.ports[{j}]");
        let pname = str_of(p, "name");
        if !pname.is_empty() {
            errs.extend(invalid_each(
                &format!("{pp}.name"),
                pname,
                is_valid_port_name(pname),
            ));
            if !port_names.insert(pname.to_string()) {
                errs.push(FieldError::duplicate(format!("{pp}.name"), json!(pname)));
            }
        }
        let cp = int_of(p, "containerPort").unwrap_or(0);
        if cp == 0 {
            errs.push(FieldError::required(format!("{pp}.containerPort"), ""));
        } else {
            errs.extend(
                is_valid_port_num(cp)
                    .into_iter()
                    .map(|m| FieldError::invalid(format!("{pp}.containerPort"), json!(cp), m)),
            );
        }
        let hp = int_of(p, "hostPort").unwrap_or(0);
        if hp != 0 {
            errs.extend(
                is_valid_port_num(hp)
                    .into_iter()
                    .map(|m| FieldError::invalid(format!("{pp}.hostPort"), json!(hp), m)),
            );
        }
        // Templates keep hostPort 0 (only pods default it to containerPort).
        if ctx.host_network && hp != 0 && hp != cp {
            errs.push(FieldError::invalid(
                format!("{pp}.hostPort"),
                json!(hp),
                "must match `containerPort` when `hostNetwork` is true",
            ));
        }
        let proto = str_of(p, "protocol");
        if proto.is_empty() {
            errs.push(FieldError::required(format!("{pp}.protocol"), ""));
        } else if !PROTOCOLS.contains(&proto) {
            errs.push(FieldError::not_supported(
                format!("{pp}.protocol"),
                json!(proto),
                PROTOCOLS,
            ));
        }
        let host_ip = str_of(p, "hostIP");
        if !host_ip.is_empty() && !is_valid_ip(host_ip) {
            errs.push(FieldError::invalid(
                format!("{pp}.hostIP"),
                json!(host_ip),
                "must be a valid IP address",
            ));
        }
    }
    errs.extend(validate_env(arr_of(c, "env"), &format!("{path}.env")));
    errs.extend(validate_volume_mounts(
        arr_of(c, "volumeMounts"),
        ctx.volumes,
        &format!("{path}.volumeMounts"),
    ));
    let restart = str_of(c, "restartPolicy");
    let sidecar = init && restart == "Always";
    if !restart.is_empty() {
        if !init {
            errs.push(FieldError::forbidden(
                format!("{path}.restartPolicy"),
                "may not be set for non-init containers",
            ));
        } else if restart != "Always" {
            errs.push(FieldError::not_supported(
                format!("{path}.restartPolicy"),
                json!(restart),
                &["Always"],
            ));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(p) = get(c, probe) else { continue };
        let pp = format!("{path}.{probe}");
        if init && !sidecar {
            errs.push(FieldError::forbidden(
                pp,
                "may not be set for init containers without restartPolicy=Always",
            ));
            continue;
        }
        errs.extend(validate_probe(p, &pp));
        if probe != "readinessProbe" {
            let st = int_of(p, "successThreshold").unwrap_or(1);
            if st != 1 {
                errs.push(FieldError::invalid(
                    format!("{pp}.successThreshold"),
                    json!(st),
                    "must be 1",
                ));
            }
        } else if get(p, "terminationGracePeriodSeconds").is_some() {
            errs.push(FieldError::invalid(
                format!("{pp}.terminationGracePeriodSeconds"),
                p["terminationGracePeriodSeconds"].clone(),
                "must not be set for readinessProbes",
            ));
        }
    }
    if let Some(l) = get(c, "lifecycle") {
        if init && !sidecar {
            errs.push(FieldError::forbidden(
                format!("{path}.lifecycle"),
                "may not be set for init containers without restartPolicy=Always",
            ));
        } else {
            for hook in ["postStart", "preStop"] {
                if let Some(h) = get(l, hook) {
                    errs.extend(validate_handler(h, &format!("{path}.lifecycle.{hook}")));
                }
            }
        }
    }
    if let Some(res) = get(c, "resources") {
        errs.extend(validate_resources(res, &format!("{path}.resources")));
    }
    let pull = str_of(c, "imagePullPolicy");
    if pull.is_empty() {
        errs.push(FieldError::required(format!("{path}.imagePullPolicy"), ""));
    } else if !PULL_POLICIES.contains(&pull) {
        errs.push(FieldError::not_supported(
            format!("{path}.imagePullPolicy"),
            json!(pull),
            PULL_POLICIES,
        ));
    }
    let tmp = str_of(c, "terminationMessagePolicy");
    if tmp.is_empty() {
        errs.push(FieldError::required(
            format!("{path}.terminationMessagePolicy"),
            "",
        ));
    } else if !["File", "FallbackToLogsOnError"].contains(&tmp) {
        errs.push(FieldError::not_supported(
            format!("{path}.terminationMessagePolicy"),
            json!(tmp),
            &["File", "FallbackToLogsOnError"],
        ));
    }
    errs
}

fn validate_volumes(volumes: &[Value], path: &str) -> (BTreeSet<String>, Vec<FieldError>) {
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let name = str_of(v, "name");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{p}.name"), ""));
        } else {
            errs.extend(validate_dns1123_label(name, &format!("{p}.name")));
        }
        if !names.insert(name.to_string()) {
            errs.push(FieldError::duplicate(format!("{p}.name"), json!(name)));
        }
        let sources: Vec<&str> = VOLUME_SOURCES
            .iter()
            .copied()
            .filter(|s| get(v, s).is_some())
            .collect();
        match sources.as_slice() {
            [] => errs.push(FieldError::required(
                p.as_str(),
                "must specify a volume type",
            )),
            [one] => errs.extend(validate_volume_source(one, &v[*one], &format!("{p}.{one}"))),
            [_, extra @ ..] => {
                for s in extra {
                    errs.push(FieldError::forbidden(
                        format!("{p}.{s}"),
                        "may not specify more than 1 volume type",
                    ));
                }
            }
        }
    }
    (names, errs)
}

fn validate_mode(src: &Value, key: &str, path: &str) -> Vec<FieldError> {
    match int_of(src, key) {
        Some(m) if !(0..=0o777).contains(&m) => {
            vec![FieldError::invalid(
                format!("{path}.{key}"),
                json!(m),
                FILE_MODE_ERROR,
            )]
        }
        _ => Vec::new(),
    }
}

fn validate_key_to_paths(items: &[Value], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if str_of(it, "key").is_empty() {
            errs.push(FieldError::required(format!("{p}.key"), ""));
        }
        let target = str_of(it, "path");
        if target.is_empty() {
            errs.push(FieldError::required(format!("{p}.path"), ""));
        } else {
            errs.extend(validate_local_descending_path(target, &format!("{p}.path")));
        }
        errs.extend(validate_mode(it, "mode", &p));
    }
    errs
}

fn validate_volume_source(kind: &str, src: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let required = |field: &str| -> Option<FieldError> {
        str_of(src, field)
            .is_empty()
            .then(|| FieldError::required(format!("{path}.{field}"), ""))
    };
    match kind {
        "hostPath" => {
            errs.extend(required("path"));
            let t = str_of(src, "type");
            const TYPES: &[&str] = &[
                "",
                "DirectoryOrCreate",
                "Directory",
                "FileOrCreate",
                "File",
                "Socket",
                "CharDevice",
                "BlockDevice",
            ];
            if !TYPES.contains(&t) {
                errs.push(FieldError::not_supported(
                    format!("{path}.type"),
                    json!(t),
                    TYPES,
                ));
            }
        }
        "secret" => {
            errs.extend(required("secretName"));
            errs.extend(validate_mode(src, "defaultMode", path));
            errs.extend(validate_key_to_paths(
                arr_of(src, "items"),
                &format!("{path}.items"),
            ));
        }
        "configMap" => {
            errs.extend(required("name"));
            errs.extend(validate_mode(src, "defaultMode", path));
            errs.extend(validate_key_to_paths(
                arr_of(src, "items"),
                &format!("{path}.items"),
            ));
        }
        "persistentVolumeClaim" => errs.extend(required("claimName")),
        "nfs" => {
            errs.extend(required("server"));
            errs.extend(required("path"));
        }
        "downwardAPI" | "projected" => errs.extend(validate_mode(src, "defaultMode", path)),
        "emptyDir" => {
            if let Some(limit) = get(src, "sizeLimit") {
                errs.extend(quantity::validate_quantity_value(
                    "ephemeral-storage",
                    limit,
                    &format!("{path}.sizeLimit"),
                ));
            }
        }
        _ => {}
    }
    errs
}

fn validate_restart_policy(policy: &str, path: &str) -> Vec<FieldError> {
    if policy.is_empty() {
        vec![FieldError::required(path, "")]
    } else if RESTART_POLICIES.contains(&policy) {
        Vec::new()
    } else {
        vec![FieldError::not_supported(
            path,
            json!(policy),
            RESTART_POLICIES,
        )]
    }
}

/// Upstream's `ValidatePodSpec` (the parts this server enforces).
pub fn validate_pod_spec(spec: &Value, path: &str, kind: SpecKind) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let (volumes, vol_errs) = validate_volumes(arr_of(spec, "volumes"), &format!("{path}.volumes"));
    errs.extend(vol_errs);
    let ctx = ContainerCtx {
        volumes: &volumes,
        kind,
        host_network: bool_of(spec, "hostNetwork"),
    };
    let mut names = BTreeSet::new();
    let containers = arr_of(spec, "containers");
    if containers.is_empty() {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
    }
    for (kind_key, init) in [("containers", false), ("initContainers", true)] {
        for (i, c) in arr_of(spec, kind_key).iter().enumerate() {
            let p = format!("{path}.{kind_key}[{i}]");
            errs.extend(validate_container(c, &p, &ctx, init));
            let name = str_of(c, "name");
            if !name.is_empty() && !names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(format!("{p}.name"), json!(name)));
            }
        }
    }
    if !arr_of(spec, "ephemeralContainers").is_empty() {
        let detail = match kind {
            SpecKind::Pod => "cannot be set on create",
            SpecKind::Template => "ephemeral containers not allowed in pod template",
        };
        errs.push(FieldError::forbidden(
            format!("{path}.ephemeralContainers"),
            detail,
        ));
    }
    errs.extend(validate_host_ports(spec, path));
    errs.extend(validate_restart_policy(
        str_of(spec, "restartPolicy"),
        &format!("{path}.restartPolicy"),
    ));
    let dns = str_of(spec, "dnsPolicy");
    if dns.is_empty() {
        errs.push(FieldError::required(format!("{path}.dnsPolicy"), ""));
    } else if !DNS_POLICIES.contains(&dns) {
        errs.push(FieldError::not_supported(
            format!("{path}.dnsPolicy"),
            json!(dns),
            DNS_POLICIES,
        ));
    }
    if dns == "None" {
        match get(spec, "dnsConfig") {
            None => errs.push(FieldError::required(
                format!("{path}.dnsConfig"),
                "must provide `dnsConfig` when `dnsPolicy` is None",
            )),
            Some(c) if arr_of(c, "nameservers").is_empty() => errs.push(FieldError::required(
                format!("{path}.dnsConfig.nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            )),
            _ => {}
        }
    }
    if let Some(c) = get(spec, "dnsConfig") {
        let ns = arr_of(c, "nameservers");
        if ns.len() > 3 {
            errs.push(FieldError::invalid(
                format!("{path}.dnsConfig.nameservers"),
                Value::Array(ns.to_vec()),
                "must not have more than 3 nameservers",
            ));
        }
        for (i, n) in ns.iter().enumerate() {
            let n = n.as_str().unwrap_or("");
            if !is_valid_ip(n) {
                errs.push(FieldError::invalid(
                    format!("{path}.dnsConfig.nameservers[{i}]"),
                    json!(n),
                    "must be a valid IP address",
                ));
            }
        }
    }
    errs.extend(validate_labels(
        spec.get("nodeSelector"),
        &format!("{path}.nodeSelector"),
    ));
    for (field, check) in [
        (
            "serviceAccountName",
            name_is_dns_subdomain as fn(&str, bool) -> Vec<String>,
        ),
        ("nodeName", name_is_dns_subdomain),
        ("priorityClassName", name_is_dns_subdomain),
    ] {
        let v = str_of(spec, field);
        if !v.is_empty() {
            errs.extend(invalid_each(&format!("{path}.{field}"), v, check(v, false)));
        }
    }
    for field in ["hostname", "subdomain"] {
        let v = str_of(spec, field);
        if !v.is_empty() {
            errs.extend(validate_dns1123_label(v, &format!("{path}.{field}")));
        }
    }
    let scheduler = str_of(spec, "schedulerName");
    if !scheduler.is_empty() {
        errs.extend(validate_dns1123_subdomain(
            scheduler,
            &format!("{path}.schedulerName"),
        ));
    }
    if let Some(ads) = int_of(spec, "activeDeadlineSeconds") {
        if !(1..=i64::from(i32::MAX)).contains(&ads) {
            errs.push(FieldError::invalid(
                format!("{path}.activeDeadlineSeconds"),
                json!(ads),
                inclusive_range_error(1, i64::from(i32::MAX)),
            ));
        }
    }
    errs.extend(validate_tolerations(
        arr_of(spec, "tolerations"),
        &format!("{path}.tolerations"),
    ));
    if let Some(o) = get(spec, "overhead") {
        errs.extend(quantity::validate_resource_list(
            Some(o),
            &format!("{path}.overhead"),
        ));
    }
    for (i, g) in arr_of(spec, "schedulingGates").iter().enumerate() {
        errs.extend(validate_qualified_name(
            str_of(g, "name"),
            &format!("{path}.schedulingGates[{i}].name"),
        ));
    }
    errs
}

/// Two containers may not claim the same host port, protocol and address.
fn validate_host_ports(spec: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen = BTreeSet::new();
    for kind in ["containers", "initContainers"] {
        for (i, c) in arr_of(spec, kind).iter().enumerate() {
            for (j, p) in arr_of(c, "ports").iter().enumerate() {
                let hp = int_of(p, "hostPort").unwrap_or(0);
                if hp == 0 {
                    continue;
                }
                let key = format!("{}/{}/{hp}", str_of(p, "hostIP"), str_of(p, "protocol"));
                if !seen.insert(key.clone()) {
                    errs.push(FieldError::duplicate(
                        format!("{path}.{kind}[{i}].ports[{j}].hostPort"),
                        json!(key),
                    ));
                }
            }
        }
    }
    errs
}

/// Upstream's `ValidatePodTemplateSpec` for the template at `path` (`spec.template`).
pub fn validate_pod_template_spec(template: Option<&Value>, path: &str) -> Vec<FieldError> {
    let Some(t) = template.filter(|t| t.is_object()) else {
        return vec![FieldError::required(path, "")];
    };
    let empty = json!({});
    let meta = t.get("metadata").unwrap_or(&empty);
    let mut errs = validate_labels(meta.get("labels"), &format!("{path}.labels"));
    errs.extend(validate_annotations(
        meta.get("annotations"),
        &format!("{path}.annotations"),
    ));
    errs.extend(validate_pod_spec(
        t.get("spec").unwrap_or(&empty),
        &format!("{path}.spec"),
        SpecKind::Template,
    ));
    errs
}

/// Upstream's `ValidatePodTemplateSpecForReplicaSet` and its siblings: the template of a
/// controller whose pods always restart. `selector` is a `metav1.LabelSelector` or a plain
/// map (RCs); `None` selects nothing (a missing selector never matches).
pub fn validate_controller_template(
    template: Option<&Value>,
    selector: Option<&Value>,
    path: &str,
    owner: &str,
) -> Vec<FieldError> {
    let Some(t) = template.filter(|t| t.is_object()) else {
        return vec![FieldError::required(path, "")];
    };
    let mut errs = Vec::new();
    let labels = t.get("metadata").and_then(|m| m.get("labels"));
    if !selector.is_some_and(|sel| template_matches(sel, labels)) {
        errs.push(FieldError::invalid(
            format!("{path}.metadata.labels"),
            labels.cloned().unwrap_or(Value::Null),
            "`selector` does not match template `labels`",
        ));
    }
    errs.extend(validate_pod_template_spec(Some(t), path));
    let empty = json!({});
    let spec = t.get("spec").unwrap_or(&empty);
    let restart = str_of(spec, "restartPolicy");
    if restart != "Always" {
        errs.push(FieldError::not_supported(
            format!("{path}.spec.restartPolicy"),
            json!(restart),
            &["Always"],
        ));
    }
    if let Some(ads) = get(spec, "activeDeadlineSeconds") {
        let p = format!("{path}.spec.activeDeadlineSeconds");
        let detail = format!("activeDeadlineSeconds in {owner} is not Supported");
        errs.push(match owner {
            "ReplicationController" | "StatefulSet" => FieldError::forbidden(p, detail),
            _ => FieldError::invalid(p, ads.clone(), detail),
        });
    }
    errs
}

/// Whether a non-empty selector selects the template's labels (an empty one skips the check).
pub fn template_matches(selector: &Value, labels: Option<&Value>) -> bool {
    use crate::registry::validation::{map_selector_matches, selector_is_empty, selector_matches};
    let Some(map) = selector.as_object() else {
        return true;
    };
    let is_label_selector = map.contains_key("matchLabels") || map.contains_key("matchExpressions");
    if is_label_selector {
        selector_is_empty(selector) || selector_matches(selector, labels)
    } else {
        map.is_empty() || map_selector_matches(map, labels)
    }
}

// ---------------------------------------------------------------------------------------------
// Updates.

fn validate_container_updates(new: &[Value], old: &[Value], path: &str) -> (Vec<FieldError>, bool) {
    if new.len() != old.len() {
        return (
            vec![FieldError::forbidden(
                path,
                "pod updates may not add or remove containers",
            )],
            true,
        );
    }
    let mut errs = Vec::new();
    for (i, c) in new.iter().enumerate() {
        let image = str_of(c, "image");
        if image.is_empty() {
            errs.push(FieldError::required(format!("{path}[{i}].image"), ""));
        }
        if image.trim() != image {
            errs.push(FieldError::invalid(
                format!("{path}[{i}].image"),
                json!(image),
                "must not have leading or trailing whitespace",
            ));
        }
    }
    (errs, false)
}

fn validate_only_added_tolerations(new: &[Value], old: &[Value], path: &str) -> Vec<FieldError> {
    for o in old {
        let found = new.iter().any(|n| {
            let mut o = o.clone();
            remove(&mut o, "tolerationSeconds");
            let mut n = n.clone();
            remove(&mut n, "tolerationSeconds");
            semantic_eq(Some(&o), Some(&n))
        });
        if !found {
            return vec![FieldError::forbidden(
                path,
                "existing toleration can not be modified except its tolerationSeconds",
            )];
        }
    }
    Vec::new()
}

/// Upstream's `ValidatePodUpdate` for the spec: only images, a shorter activeDeadlineSeconds,
/// added tolerations, removed scheduling gates and a fixed negative grace period may change.
pub fn validate_pod_spec_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let empty = json!({});
    let ns = new.get("spec").filter(|s| s.is_object()).unwrap_or(&empty);
    let os = old.get("spec").filter(|s| s.is_object()).unwrap_or(&empty);
    let mut errs = Vec::new();
    for kind in ["containers", "initContainers"] {
        let (e, stop) =
            validate_container_updates(arr_of(ns, kind), arr_of(os, kind), &format!("spec.{kind}"));
        errs.extend(e);
        if stop {
            return errs;
        }
    }
    match (
        int_of(ns, "activeDeadlineSeconds"),
        int_of(os, "activeDeadlineSeconds"),
    ) {
        (Some(n), _) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            errs.push(FieldError::invalid(
                "spec.activeDeadlineSeconds",
                json!(n),
                inclusive_range_error(0, i64::from(i32::MAX)),
            ));
            return errs;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(FieldError::invalid(
                "spec.activeDeadlineSeconds",
                json!(n),
                "must be less than or equal to previous value",
            ));
            return errs;
        }
        (None, Some(_)) => errs.push(FieldError::invalid(
            "spec.activeDeadlineSeconds",
            Value::Null,
            "must not update from a positive integer to nil value",
        )),
        _ => {}
    }
    errs.extend(validate_only_added_tolerations(
        arr_of(ns, "tolerations"),
        arr_of(os, "tolerations"),
        "spec.tolerations",
    ));
    let old_gates: Vec<&Value> = arr_of(os, "schedulingGates").iter().collect();
    if arr_of(ns, "schedulingGates")
        .iter()
        .any(|g| !old_gates.contains(&g))
    {
        errs.push(FieldError::forbidden(
            "spec.schedulingGates",
            "only deletion is allowed, but found new scheduling gate",
        ));
    }
    if semantic_eq(Some(ns), Some(os)) {
        return errs;
    }
    let mut munged = ns.clone();
    for kind in ["containers", "initContainers"] {
        let old_c = arr_of(os, kind);
        if let Some(cs) = munged.get_mut(kind).and_then(Value::as_array_mut) {
            for (c, o) in cs.iter_mut().zip(old_c) {
                if c.is_object() {
                    c["image"] = o.get("image").cloned().unwrap_or(Value::Null);
                }
            }
        }
    }
    for f in ["activeDeadlineSeconds", "schedulingGates", "tolerations"] {
        match os.get(f) {
            Some(v) => munged[f] = v.clone(),
            None => remove(&mut munged, f),
        }
    }
    if int_of(os, "terminationGracePeriodSeconds").is_some_and(|g| g < 0)
        && int_of(&munged, "terminationGracePeriodSeconds") == Some(1)
    {
        munged["terminationGracePeriodSeconds"] = os["terminationGracePeriodSeconds"].clone();
    }
    if !semantic_eq(Some(&munged), Some(os)) {
        errs.push(FieldError::forbidden(
            "spec",
            format!(
                "pod updates may not change fields other than {}",
                UPDATABLE_POD_FIELDS.join(",")
            ),
        ));
    }
    errs
}

// ---------------------------------------------------------------------------------------------
// Strategies.

/// `pods`.
pub struct PodStrategy;

impl Strategy for PodStrategy {
    fn default(&self, obj: &mut Value) {
        default_pod(obj);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        let empty = json!({});
        let spec = obj.get("spec").unwrap_or(&empty);
        let mut status = json!({"phase": "Pending", "qosClass": pod_qos(spec)});
        if !arr_of(spec, "schedulingGates").is_empty() {
            status["conditions"] = json!([{
                "type": "PodScheduled",
                "status": "False",
                "reason": "SchedulingGated",
                "message": "Scheduling is blocked due to non-empty scheduling gates",
            }]);
        }
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), status);
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta(obj, Some(true), name_is_dns_subdomain);
        let empty = json!({});
        let spec = obj.get("spec").unwrap_or(&empty);
        errs.extend(validate_pod_spec(spec, "spec", SpecKind::Pod));
        if !str_of(spec, "nodeName").is_empty() && !arr_of(spec, "schedulingGates").is_empty() {
            errs.push(FieldError::forbidden(
                "spec.nodeName",
                "cannot be set until all schedulingGates have been cleared",
            ));
        }
        errs
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // Admission keeps what it computed on create when an update leaves it out.
        let old_spec = old.get("spec").cloned().unwrap_or(Value::Null);
        if let Some(spec) = new.get_mut("spec").filter(|s| s.is_object()) {
            for f in ["priority", "preemptionPolicy"] {
                if get(spec, f).is_none() {
                    if let Some(v) = get(&old_spec, f) {
                        spec[f] = v.clone();
                    }
                }
            }
        }
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta_update(new, old);
        errs.extend(validate_object_meta(new, Some(true), name_is_dns_subdomain));
        let empty = json!({});
        let mut spec_errs =
            validate_pod_spec(new.get("spec").unwrap_or(&empty), "spec", SpecKind::Pod);
        // Ephemeral containers arrive through their own subresource and stay on updates.
        spec_errs.retain(|e| e.field != "spec.ephemeralContainers");
        errs.extend(spec_errs);
        errs.extend(validate_pod_spec_update(new, old));
        errs
    }
}

/// `podtemplates`.
pub struct PodTemplateStrategy;

impl Strategy for PodTemplateStrategy {
    fn default(&self, obj: &mut Value) {
        default_pod_template(obj.get_mut("template"));
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta(obj, Some(true), name_is_dns_subdomain);
        errs.extend(validate_pod_template_spec(obj.get("template"), "template"));
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta_update(new, old);
        errs.extend(self.validate(new));
        errs
    }
}

/// `must be greater than or equal to 0` for an integer already read.
pub fn nonnegative(value: Option<i64>, path: &str) -> Vec<FieldError> {
    match value {
        Some(v) if v < 0 => vec![FieldError::invalid(path, json!(v), NEGATIVE_ERROR)],
        _ => Vec::new(),
    }
}

/// The spec of an object, or an empty object.
pub fn spec_of(obj: &Value) -> &Value {
    static EMPTY: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    obj.get("spec")
        .filter(|s| s.is_object())
        .unwrap_or_else(|| EMPTY.get_or_init(|| json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec})
    }

    fn created(spec: Value) -> Value {
        let mut p = pod(spec);
        PodStrategy.default(&mut p);
        PodStrategy.prepare_for_create(&mut p);
        p
    }

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    #[test]
    fn image_tags_decide_the_pull_policy() {
        struct Case {
            name: &'static str,
            image: &'static str,
            policy: &'static str,
        }
        let cases = [
            Case {
                name: "no tag",
                image: "nginx",
                policy: "Always",
            },
            Case {
                name: "latest",
                image: "nginx:latest",
                policy: "Always",
            },
            Case {
                name: "pinned",
                image: "nginx:1.25",
                policy: "IfNotPresent",
            },
            Case {
                name: "registry port without tag",
                image: "localhost:5000/app",
                policy: "Always",
            },
            Case {
                name: "registry port with tag",
                image: "localhost:5000/app:v1",
                policy: "IfNotPresent",
            },
            Case {
                name: "digest only",
                image: "busybox@sha256:abcd",
                policy: "IfNotPresent",
            },
            Case {
                name: "upper case repository",
                image: "Busybox",
                policy: "IfNotPresent",
            },
        ];
        for c in cases {
            let p = created(json!({"containers": [{"name": "c", "image": c.image}]}));
            assert_eq!(
                p["spec"]["containers"][0]["imagePullPolicy"], c.policy,
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn pods_get_v1_defaults() {
        let p = created(
            json!({"containers": [{"name": "c", "image": "busybox:1", "ports": [{"containerPort": 80}]}]}),
        );
        let s = &p["spec"];
        assert_eq!(s["restartPolicy"], "Always");
        assert_eq!(s["dnsPolicy"], "ClusterFirst");
        assert_eq!(s["terminationGracePeriodSeconds"], 30);
        assert_eq!(s["schedulerName"], "default-scheduler");
        assert_eq!(s["securityContext"], json!({}));
        assert_eq!(s["enableServiceLinks"], true);
        assert!(
            s.get("serviceAccountName").is_none() && s.get("tolerations").is_none(),
            "service account and tolerations come from admission, not the strategy"
        );
        let c = &s["containers"][0];
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["resources"], json!({}));
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(
            p["status"],
            json!({"phase": "Pending", "qosClass": "BestEffort"})
        );
        assert!(
            PodStrategy.validate(&p).is_empty(),
            "{:?}",
            PodStrategy.validate(&p)
        );
    }

    #[test]
    fn templates_do_not_get_pod_only_defaults() {
        let mut t = json!({"spec": {"containers": [{"name": "c", "image": "x"}]}});
        default_pod_template(Some(&mut t));
        assert!(t["spec"].get("enableServiceLinks").is_none());
        assert!(t["spec"].get("tolerations").is_none());
        assert!(t["spec"].get("serviceAccountName").is_none());
        assert_eq!(t["spec"]["restartPolicy"], "Always");
    }

    #[test]
    fn qos_classes_follow_requests_and_limits() {
        struct Case {
            name: &'static str,
            resources: Value,
            qos: &'static str,
        }
        let cases = [
            Case {
                name: "nothing",
                resources: json!({}),
                qos: "BestEffort",
            },
            Case {
                name: "requests only",
                resources: json!({"requests": {"cpu": "100m"}}),
                qos: "Burstable",
            },
            Case {
                name: "limits default requests",
                resources: json!({"limits": {"cpu": "1", "memory": "1Gi"}}),
                qos: "Guaranteed",
            },
            Case {
                name: "unequal",
                resources: json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}),
                qos: "Burstable",
            },
            Case {
                name: "only cpu limit",
                resources: json!({"limits": {"cpu": "1"}}),
                qos: "Burstable",
            },
        ];
        for c in cases {
            let p = created(
                json!({"containers": [{"name": "c", "image": "x", "resources": c.resources}]}),
            );
            assert_eq!(p["status"]["qosClass"], c.qos, "{}", c.name);
        }
    }

    #[test]
    fn pod_validation_reports_upstream_paths() {
        struct Case {
            name: &'static str,
            spec: Value,
            want: Vec<&'static str>,
        }
        let cases = [
            Case { name: "no containers", spec: json!({}), want: vec!["spec.containers: Required value"] },
            Case { name: "missing image", spec: json!({"containers": [{"name": "c"}]}), want: vec!["spec.containers[0].image: Required value"] },
            Case { name: "duplicate names", spec: json!({"containers": [{"name": "c", "image": "x"}, {"name": "c", "image": "y"}]}),
                want: vec!["spec.containers[1].name: Duplicate value: \"c\""] },
            Case { name: "bad port", spec: json!({"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 70000}]}]}),
                want: vec!["spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive"] },
            Case { name: "bad restart policy", spec: json!({"restartPolicy": "Sometimes", "containers": [{"name": "c", "image": "x"}]}),
                want: vec!["spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""] },
            Case { name: "bad dns policy", spec: json!({"dnsPolicy": "Google", "containers": [{"name": "c", "image": "x"}]}),
                want: vec!["spec.dnsPolicy: Unsupported value: \"Google\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\""] },
            Case { name: "duplicate volumes", spec: json!({"volumes": [{"name": "v"}, {"name": "v"}], "containers": [{"name": "c", "image": "x"}]}),
                want: vec!["spec.volumes[1].name: Duplicate value: \"v\""] },
            Case { name: "request above limit", spec: json!({"containers": [{"name": "c", "image": "x", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}}]}),
                want: vec!["spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1"] },
            Case { name: "bad quantity", spec: json!({"containers": [{"name": "c", "image": "x", "resources": {"requests": {"memory": "lots"}}}]}),
                want: vec!["spec.containers[0].resources.requests[memory]: Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"] },
            Case { name: "bad container name", spec: json!({"containers": [{"name": "C", "image": "x"}]}),
                want: vec!["spec.containers[0].name: Invalid value: \"C\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"] },
            Case { name: "unknown mount", spec: json!({"containers": [{"name": "c", "image": "x", "volumeMounts": [{"name": "v", "mountPath": "/v"}]}]}),
                want: vec!["spec.containers[0].volumeMounts[0].name: Not found"] },
            Case { name: "toleration without key", spec: json!({"containers": [{"name": "c", "image": "x"}], "tolerations": [{"operator": "Equal", "value": "x"}]}),
                want: vec!["spec.tolerations[0].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\""] },
        ];
        for c in cases {
            let mut p = pod(c.spec);
            PodStrategy.default(&mut p);
            let got = messages(&PodStrategy.validate(&p));
            assert_eq!(got, c.want, "{}", c.name);
        }
    }

    #[test]
    fn pod_updates_may_only_change_images_and_friends() {
        struct Case {
            name: &'static str,
            change: fn(&mut Value),
            want: Vec<&'static str>,
        }
        let forbidden = "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";
        let cases = [
            Case { name: "image", change: |p| p["spec"]["containers"][0]["image"] = json!("busybox:2"), want: vec![] },
            Case { name: "labels", change: |p| p["metadata"]["labels"] = json!({"a": "b"}), want: vec![] },
            Case { name: "port", change: |p| p["spec"]["containers"][0]["ports"] = json!([{"containerPort": 81, "protocol": "TCP"}]), want: vec![forbidden] },
            Case { name: "node name", change: |p| p["spec"]["nodeName"] = json!("n2"), want: vec![forbidden] },
            Case { name: "added container", change: |p| {
                let c = p["spec"]["containers"][0].clone();
                if let Some(a) = p["spec"]["containers"].as_array_mut() { a.push(c) }
            }, want: vec!["spec.containers[1].name: Duplicate value: \"c\"", "spec.containers: Forbidden: pod updates may not add or remove containers"] },
            Case { name: "added toleration", change: |p| {
                if let Some(a) = p["spec"]["tolerations"].as_array_mut() { a.push(json!({"key": "k2", "operator": "Exists"})) }
            }, want: vec![] },
            Case { name: "removed toleration", change: |p| p["spec"]["tolerations"] = json!([]), want: vec!["spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"] },
            Case { name: "shorter toleration seconds", change: |p| p["spec"]["tolerations"][1]["tolerationSeconds"] = json!(10), want: vec![] },
            Case { name: "longer deadline", change: |p| p["spec"]["activeDeadlineSeconds"] = json!(100), want: vec!["spec.activeDeadlineSeconds: Invalid value: 100: must be less than or equal to previous value"] },
        ];
        for c in cases {
            let mut old = created(
                json!({"containers": [{"name": "c", "image": "busybox:1", "ports": [{"containerPort": 80}]}], "activeDeadlineSeconds": 50,
                "tolerations": [{"key": "k", "operator": "Exists"},
                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]}),
            );
            old["spec"]["nodeName"] = json!("n1");
            let mut new = old.clone();
            (c.change)(&mut new);
            PodStrategy.default(&mut new);
            PodStrategy.prepare_for_update(&mut new, &old);
            let got = messages(&PodStrategy.validate_update(&new, &old));
            assert_eq!(got, c.want, "{}", c.name);
        }
    }

    #[test]
    fn host_network_ports_default_for_pods_and_stay_valid_in_templates() {
        let p = created(
            json!({"hostNetwork": true, "containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 8080}]}]}),
        );
        assert_eq!(p["spec"]["containers"][0]["ports"][0]["hostPort"], 8080);
        assert!(PodStrategy.validate(&p).is_empty());
        let mut t = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 8080}]}]}});
        default_pod_template(Some(&mut t));
        assert!(t["spec"]["containers"][0]["ports"][0]
            .get("hostPort")
            .is_none());
        assert!(validate_pod_template_spec(Some(&t), "spec.template").is_empty());
        let mut bad = p.clone();
        bad["spec"]["containers"][0]["ports"][0]["hostPort"] = json!(9090);
        assert_eq!(
            messages(&PodStrategy.validate(&bad)),
            vec!["spec.containers[0].ports[0].hostPort: Invalid value: 9090: must match `containerPort` when `hostNetwork` is true"]
        );
    }

    #[test]
    fn gated_pods_are_pending_and_unbound() {
        let p = created(
            json!({"schedulingGates": [{"name": "example.com/wait"}], "containers": [{"name": "c", "image": "x"}]}),
        );
        assert_eq!(p["status"]["conditions"][0]["reason"], "SchedulingGated");
        let mut bound = p.clone();
        bound["spec"]["nodeName"] = json!("n1");
        assert_eq!(
            messages(&PodStrategy.validate(&bound)),
            vec!["spec.nodeName: Forbidden: cannot be set until all schedulingGates have been cleared"]
        );
    }

    #[test]
    fn controller_templates_must_match_their_selector() {
        let t = json!({"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "x", "imagePullPolicy": "Always", "terminationMessagePolicy": "File"}], "restartPolicy": "OnFailure", "dnsPolicy": "ClusterFirst"}});
        let sel = json!({"matchLabels": {"app": "b"}});
        let got = messages(&validate_controller_template(
            Some(&t),
            Some(&sel),
            "spec.template",
            "ReplicaSet",
        ));
        assert_eq!(
            got,
            vec![
                "spec.template.metadata.labels: Invalid value: {\"app\":\"a\"}: `selector` does not match template `labels`".to_string(),
                "spec.template.spec.restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\"".to_string(),
            ]
        );
    }
}
