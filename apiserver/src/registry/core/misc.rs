//! Smaller core resources: service accounts, endpoints, limit ranges, resource quotas, bindings.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use crate::error::FieldError;
use crate::registry::quantity::{self, Quantity};
use crate::registry::validation::{
    arr_of, each_mut, get, int_of, invalid_each, is_qualified_name, is_valid_ip, is_valid_port_num,
    name_is_dns_subdomain, obj_of, set_default_str, set_field, str_of, validate_dns1123_label,
    validate_object_meta, validate_object_meta_update, validate_qualified_name,
};
use crate::registry::Strategy;

const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

/// `serviceaccounts`: metadata only.
pub struct ServiceAccountStrategy;

impl Strategy for ServiceAccountStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_object_meta(obj, Some(true), name_is_dns_subdomain)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta_update(new, old);
        errs.extend(self.validate(new));
        errs
    }

    fn allow_create_on_update(&self) -> bool {
        true
    }
}

/// Addresses endpoints may not use. Loopback stays allowed: this server's own tests run on
/// 127.0.0.0/8, where upstream would refuse it.
pub fn validate_non_special_ip(ip: &str, path: &str) -> Vec<FieldError> {
    let Ok(addr) = ip.parse::<std::net::IpAddr>() else {
        return Vec::new();
    };
    let msg = match addr {
        _ if addr.is_unspecified() => Some("may not be unspecified (0.0.0.0)"),
        std::net::IpAddr::V4(v4) if v4.is_link_local() => {
            Some("may not be in the link-local range (169.254.0.0/16, fe80::/10)")
        }
        std::net::IpAddr::V4(v4) if v4.octets()[..3] == [224, 0, 0] => {
            Some("may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)")
        }
        std::net::IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => {
            Some("may not be in the link-local range (169.254.0.0/16, fe80::/10)")
        }
        std::net::IpAddr::V6(v6) if v6.segments()[0] == 0xff02 => {
            Some("may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)")
        }
        _ => None,
    };
    msg.map(|m| vec![FieldError::invalid(path, json!(ip), m)])
        .unwrap_or_default()
}

fn validate_endpoint_address(a: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ip = str_of(a, "ip");
    if !is_valid_ip(ip) {
        errs.push(FieldError::invalid(
            format!("{path}.ip"),
            json!(ip),
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
    } else {
        errs.extend(validate_non_special_ip(ip, &format!("{path}.ip")));
    }
    let host = str_of(a, "hostname");
    if !host.is_empty() {
        errs.extend(validate_dns1123_label(host, &format!("{path}.hostname")));
    }
    if let Some(n) = get(a, "nodeName").and_then(Value::as_str) {
        errs.extend(invalid_each(
            &format!("{path}.nodeName"),
            n,
            name_is_dns_subdomain(n, false),
        ));
    }
    errs
}

/// A port of Endpoints or an EndpointSlice: name, number, protocol, appProtocol.
pub fn validate_endpoint_port(p: &Value, require_name: bool, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = str_of(p, "name");
    if require_name && name.is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    } else if !name.is_empty() {
        errs.extend(validate_dns1123_label(name, &format!("{path}.name")));
    }
    let port = int_of(p, "port").unwrap_or(0);
    errs.extend(
        is_valid_port_num(port)
            .into_iter()
            .map(|m| FieldError::invalid(format!("{path}.port"), json!(port), m)),
    );
    let proto = str_of(p, "protocol");
    if proto.is_empty() {
        errs.push(FieldError::required(format!("{path}.protocol"), ""));
    } else if !PROTOCOLS.contains(&proto) {
        errs.push(FieldError::not_supported(
            format!("{path}.protocol"),
            json!(proto),
            PROTOCOLS,
        ));
    }
    if let Some(a) = get(p, "appProtocol").and_then(Value::as_str) {
        errs.extend(validate_qualified_name(a, &format!("{path}.appProtocol")));
    }
    errs
}

fn validate_endpoints(ep: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(ep, Some(true), name_is_dns_subdomain);
    for (i, ss) in arr_of(ep, "subsets").iter().enumerate() {
        let p = format!("subsets[{i}]");
        let (ready, not_ready) = (arr_of(ss, "addresses"), arr_of(ss, "notReadyAddresses"));
        if ready.is_empty() && not_ready.is_empty() {
            errs.push(FieldError::required(
                p.as_str(),
                "must specify `addresses` or `notReadyAddresses`",
            ));
        }
        for (kind, list) in [("addresses", ready), ("notReadyAddresses", not_ready)] {
            for (j, a) in list.iter().enumerate() {
                errs.extend(validate_endpoint_address(a, &format!("{p}.{kind}[{j}]")));
            }
        }
        let ports = arr_of(ss, "ports");
        for (j, port) in ports.iter().enumerate() {
            errs.extend(validate_endpoint_port(
                port,
                ports.len() > 1,
                &format!("{p}.ports[{j}]"),
            ));
        }
    }
    errs
}

/// `endpoints`.
pub struct EndpointsStrategy;

impl Strategy for EndpointsStrategy {
    fn default(&self, obj: &mut Value) {
        each_mut(obj, "subsets", |ss| {
            each_mut(ss, "ports", |p| set_default_str(p, "protocol", "TCP"))
        });
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_endpoints(obj)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta_update(new, old);
        errs.extend(validate_endpoints(new));
        errs
    }

    fn allow_create_on_update(&self) -> bool {
        true
    }
}

// ---------------------------------------------------------------------------------------------
// LimitRange

const LIMIT_TYPES: &[&str] = &["Pod", "Container", "PersistentVolumeClaim"];

fn validate_limit_type(value: &str, path: &str) -> Vec<FieldError> {
    let errs = invalid_each(path, value, is_qualified_name(value));
    if !errs.is_empty() {
        return errs;
    }
    if !value.contains('/') && !LIMIT_TYPES.contains(&value) {
        return vec![FieldError::invalid(
            path,
            json!(value),
            "must be a standard limit type or fully qualified",
        )];
    }
    errs
}

fn validate_limit_resource_name(limit_type: &str, name: &str, path: &str) -> Vec<FieldError> {
    if matches!(limit_type, "Pod" | "Container") {
        quantity::validate_container_resource_name(name, path)
    } else {
        quantity::validate_resource_name(name, path)
    }
}

fn validate_limit_range(lr: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(lr, Some(true), name_is_dns_subdomain);
    let empty = json!({});
    let spec = lr.get("spec").unwrap_or(&empty);
    let mut types = BTreeSet::new();
    for (i, limit) in arr_of(spec, "limits").iter().enumerate() {
        let p = format!("spec.limits[{i}]");
        let ty = str_of(limit, "type");
        errs.extend(validate_limit_type(ty, &format!("{p}.type")));
        if !types.insert(ty.to_string()) {
            errs.push(FieldError::duplicate(format!("{p}.type"), json!(ty)));
        }
        let mut keys = BTreeSet::new();
        let mut read = |field: &str, errs: &mut Vec<FieldError>| -> Vec<(String, Quantity)> {
            let mut out = Vec::new();
            for (k, v) in obj_of(limit, field).into_iter().flatten() {
                let kp = format!("{p}.{field}[{k}]");
                errs.extend(validate_limit_resource_name(ty, k, &kp));
                match quantity::validate_format(v, &kp) {
                    Ok(q) => out.push((k.clone(), q)),
                    Err(e) => errs.push(e),
                }
                keys.insert(k.clone());
            }
            out
        };
        let max = read("max", &mut errs);
        let min = read("min", &mut errs);
        let (mut defaults, mut default_requests) = (Vec::new(), Vec::new());
        if ty == "Pod" {
            for f in ["default", "defaultRequest"] {
                if obj_of(limit, f).is_some_and(|m| !m.is_empty()) {
                    errs.push(FieldError::forbidden(
                        format!("{p}.{f}"),
                        "may not be specified when `type` is 'Pod'",
                    ));
                }
            }
        } else {
            defaults = read("default", &mut errs);
            default_requests = read("defaultRequest", &mut errs);
        }
        let ratios = read("maxLimitRequestRatio", &mut errs);
        if ty == "PersistentVolumeClaim" && !min.iter().chain(&max).any(|(k, _)| k == "storage") {
            errs.push(FieldError::required(
                format!("{p}.limits"),
                "either minimum or maximum storage value is required, but neither was provided",
            ));
        }
        let find =
            |l: &[(String, Quantity)], k: &str| l.iter().find(|(n, _)| n == k).map(|(_, q)| *q);
        for k in &keys {
            let (mn, mx) = (find(&min, k), find(&max, k));
            let (df, dr) = (find(&defaults, k), find(&default_requests, k));
            let ratio = find(&ratios, k);
            let c = |q: Quantity| q.canonical();
            let inv = |field: &str, q: Quantity, msg: String| {
                FieldError::invalid(format!("{p}.{field}[{k}]"), json!(c(q)), msg)
            };
            if let (Some(a), Some(b)) = (mn, mx) {
                if a > b {
                    errs.push(inv(
                        "min",
                        a,
                        format!("min value {} is greater than max value {}", c(a), c(b)),
                    ));
                }
            }
            if let (Some(r), Some(a)) = (dr, mn) {
                if a > r {
                    errs.push(inv(
                        "defaultRequest",
                        r,
                        format!(
                            "min value {} is greater than default request value {}",
                            c(a),
                            c(r)
                        ),
                    ));
                }
            }
            if let (Some(r), Some(b)) = (dr, mx) {
                if r > b {
                    errs.push(inv(
                        "defaultRequest",
                        r,
                        format!(
                            "default request value {} is greater than max value {}",
                            c(r),
                            c(b)
                        ),
                    ));
                }
            }
            if let (Some(r), Some(d)) = (dr, df) {
                if r > d {
                    errs.push(inv(
                        "defaultRequest",
                        r,
                        format!(
                            "default request value {} is greater than default limit value {}",
                            c(r),
                            c(d)
                        ),
                    ));
                }
            }
            if let (Some(d), Some(a)) = (df, mn) {
                if a > d {
                    errs.push(inv(
                        "default",
                        a,
                        format!("min value {} is greater than default value {}", c(a), c(d)),
                    ));
                }
            }
            if let (Some(d), Some(b)) = (df, mx) {
                if d > b {
                    errs.push(inv(
                        "default",
                        b,
                        format!("default value {} is greater than max value {}", c(d), c(b)),
                    ));
                }
            }
            if let Some(r) = ratio {
                if r.nanos < 1_000_000_000 {
                    errs.push(inv(
                        "maxLimitRequestRatio",
                        r,
                        format!("ratio {} is less than 1", c(r)),
                    ));
                }
            }
        }
    }
    errs
}

/// `limitranges`.
pub struct LimitRangeStrategy;

impl Strategy for LimitRangeStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec") else {
            return;
        };
        each_mut(spec, "limits", |item| {
            for f in [
                "max",
                "min",
                "default",
                "defaultRequest",
                "maxLimitRequestRatio",
            ] {
                quantity::canonicalize_list(item.get_mut(f));
            }
            if str_of(item, "type") != "Container" {
                return;
            }
            // SetDefaults_LimitRangeItem: default <- max, defaultRequest <- default <- min.
            let max = obj_of(item, "max").cloned().unwrap_or_default();
            let min = obj_of(item, "min").cloned().unwrap_or_default();
            let mut default = obj_of(item, "default").cloned().unwrap_or_default();
            for (k, v) in max {
                default.entry(k).or_insert(v);
            }
            let mut request = obj_of(item, "defaultRequest").cloned().unwrap_or_default();
            for (k, v) in default
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .chain(min)
            {
                request.entry(k).or_insert(v);
            }
            let put = |item: &mut Value, f: &str, m: Map<String, Value>| {
                if !m.is_empty() {
                    item[f] = Value::Object(m);
                }
            };
            put(item, "default", default);
            put(item, "defaultRequest", request);
        });
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_limit_range(obj)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta_update(new, old);
        errs.extend(validate_limit_range(new));
        errs
    }

    fn allow_create_on_update(&self) -> bool {
        true
    }
}

// ---------------------------------------------------------------------------------------------
// ResourceQuota

const QUOTA_SCOPES: &[&str] = &[
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
];

fn is_quota_resource(name: &str) -> bool {
    const NAMES: &[&str] = &[
        "pods",
        "services",
        "replicationcontrollers",
        "resourcequotas",
        "secrets",
        "configmaps",
        "persistentvolumeclaims",
        "services.nodeports",
        "services.loadbalancers",
        "cpu",
        "memory",
        "ephemeral-storage",
        "requests.cpu",
        "requests.memory",
        "requests.storage",
        "requests.ephemeral-storage",
        "limits.cpu",
        "limits.memory",
        "limits.ephemeral-storage",
    ];
    NAMES.contains(&name)
        || name.starts_with("hugepages-")
        || name.starts_with("requests.hugepages-")
}

fn validate_quota(rq: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(rq, Some(true), name_is_dns_subdomain);
    let empty = json!({});
    let spec = rq.get("spec").unwrap_or(&empty);
    for (k, v) in obj_of(spec, "hard").into_iter().flatten() {
        let p = format!("spec.hard[{k}]");
        let name_errs = quantity::validate_resource_name(k, &p);
        if name_errs.is_empty() && !k.contains('/') && !is_quota_resource(k) {
            errs.push(FieldError::invalid(
                p.as_str(),
                json!(k),
                "must be a standard resource for quota",
            ));
        }
        errs.extend(name_errs);
        errs.extend(quantity::validate_quantity_value(k, v, &p));
    }
    let scopes = arr_of(spec, "scopes");
    for s in scopes {
        if !s.as_str().is_some_and(|s| QUOTA_SCOPES.contains(&s)) {
            errs.push(FieldError::invalid(
                "spec.scopes",
                Value::Array(scopes.to_vec()),
                "unsupported scope",
            ));
        }
    }
    errs
}

/// `resourcequotas`.
pub struct ResourceQuotaStrategy;

impl Strategy for ResourceQuotaStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec") {
            quantity::canonicalize_list(spec.get_mut("hard"));
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        set_field(obj, "status", json!({}));
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_quota(obj)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta_update(new, old);
        errs.extend(validate_quota(new));
        errs
    }
}

// ---------------------------------------------------------------------------------------------
// Binding, ComponentStatus

/// `bindings` (and `pods/binding`): the target must name a node.
pub struct BindingStrategy;

impl Strategy for BindingStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let empty = json!({});
        let target = obj.get("target").unwrap_or(&empty);
        let kind = str_of(target, "kind");
        if !kind.is_empty() && kind != "Node" {
            errs.push(FieldError::not_supported(
                "target.kind",
                json!(kind),
                &["Node", "<empty>"],
            ));
        }
        if str_of(target, "name").is_empty() {
            errs.push(FieldError::required("target.name", ""));
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(mut v: Value) -> Value {
        v["metadata"] = json!({"name": "x", "namespace": "default"});
        v
    }

    #[test]
    fn endpoints_need_addresses_and_valid_ports() {
        struct Case {
            name: &'static str,
            subsets: Value,
            want: Vec<&'static str>,
        }
        let cases = [
            Case { name: "valid", subsets: json!([{"addresses": [{"ip": "10.1.2.3"}], "ports": [{"port": 80, "protocol": "TCP"}]}]), want: vec![] },
            Case { name: "loopback allowed", subsets: json!([{"addresses": [{"ip": "127.0.0.1"}]}]), want: vec![] },
            Case { name: "no addresses", subsets: json!([{"ports": [{"port": 80, "protocol": "TCP"}]}]),
                want: vec!["subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`"] },
            Case { name: "bad ip", subsets: json!([{"addresses": [{"ip": "nope"}]}]),
                want: vec!["subsets[0].addresses[0].ip: Invalid value: \"nope\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"] },
            Case { name: "unspecified ip", subsets: json!([{"addresses": [{"ip": "0.0.0.0"}]}]),
                want: vec!["subsets[0].addresses[0].ip: Invalid value: \"0.0.0.0\": may not be unspecified (0.0.0.0)"] },
            Case { name: "unnamed ports", subsets: json!([{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80, "protocol": "TCP"}, {"port": 81, "protocol": "TCP"}]}]),
                want: vec!["subsets[0].ports[0].name: Required value", "subsets[0].ports[1].name: Required value"] },
        ];
        for c in cases {
            let ep = meta(json!({"subsets": c.subsets}));
            let got: Vec<String> = EndpointsStrategy
                .validate(&ep)
                .iter()
                .map(FieldError::message)
                .collect();
            assert_eq!(got, c.want, "{}", c.name);
        }
    }

    #[test]
    fn limit_ranges_default_requests_from_limits() {
        let mut lr = meta(
            json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "64Mi"}, "default": {"memory": "256Mi"}}]}}),
        );
        LimitRangeStrategy.default(&mut lr);
        let item = &lr["spec"]["limits"][0];
        assert_eq!(item["default"], json!({"cpu": "2", "memory": "256Mi"}));
        assert_eq!(
            item["defaultRequest"],
            json!({"cpu": "2", "memory": "256Mi"})
        );
        assert!(LimitRangeStrategy.validate(&lr).is_empty());
    }

    #[test]
    fn limit_ranges_order_min_default_max() {
        let lr = meta(
            json!({"spec": {"limits": [{"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}}]}}),
        );
        let got: Vec<String> = LimitRangeStrategy
            .validate(&lr)
            .iter()
            .map(FieldError::message)
            .collect();
        assert_eq!(got, vec!["spec.limits[0].min[cpu]: Invalid value: \"2\": min value 2 is greater than max value 1"]);
    }

    #[test]
    fn quotas_accept_standard_and_prefixed_resources() {
        struct Case {
            name: &'static str,
            hard: Value,
            errors: usize,
        }
        let cases = [
            Case {
                name: "standard",
                hard: json!({"pods": "10", "requests.cpu": "4", "count/deployments.apps": "2"}),
                errors: 0,
            },
            Case {
                name: "unknown",
                hard: json!({"widgets": "1"}),
                errors: 1,
            },
            Case {
                name: "fractional pods",
                hard: json!({"pods": "1.5"}),
                errors: 1,
            },
            Case {
                name: "negative",
                hard: json!({"memory": "-1"}),
                errors: 1,
            },
        ];
        for c in cases {
            let rq = meta(json!({"spec": {"hard": c.hard}}));
            assert_eq!(
                ResourceQuotaStrategy.validate(&rq).len(),
                c.errors,
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn bindings_target_nodes() {
        let ok = json!({"target": {"kind": "Node", "name": "n1"}});
        assert!(BindingStrategy.validate(&ok).is_empty());
        let bad = json!({"target": {"kind": "Pod"}});
        assert_eq!(BindingStrategy.validate(&bad).len(), 2);
    }
}
