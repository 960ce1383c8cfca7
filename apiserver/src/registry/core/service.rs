//! Services: v1 defaults, clusterIP normalization, validation and update rules.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::error::FieldError;
use crate::registry::core::pod::validate_port_num_or_name;
use crate::registry::validation::{
    arr_of, each_mut, get, int_of, is_valid_ip, is_valid_ipv6, is_valid_port_num,
    name_is_dns1035_label, remove, semantic_eq, set_default, set_default_str, set_field, str_of,
    validate_dns1123_label, validate_dns1123_subdomain, validate_labels, validate_object_meta,
    validate_object_meta_update, validate_qualified_name,
};
use crate::registry::Strategy;

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const AFFINITIES: &[&str] = &["ClientIP", "None"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const TRAFFIC_POLICIES: &[&str] = &["Cluster", "Local"];
const FAMILY_POLICIES: &[&str] = &["PreferDualStack", "RequireDualStack", "SingleStack"];
const FAMILIES: &[&str] = &["IPv4", "IPv6"];

fn ty(svc: &Value) -> &str {
    svc.get("spec").map(|s| str_of(s, "type")).unwrap_or("")
}

fn spec(svc: &Value) -> &Value {
    crate::registry::core::pod::spec_of(svc)
}

fn cluster_ips(svc: &Value) -> Vec<String> {
    arr_of(spec(svc), "clusterIPs")
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect()
}

/// `clusterIP: None` (or clusterIPs `[None]`).
pub fn is_headless(svc: &Value) -> bool {
    let ips = cluster_ips(svc);
    (ips.len() == 1 && ips[0] == "None")
        || (ips.is_empty() && str_of(spec(svc), "clusterIP") == "None")
}

fn needs_cluster_ip(svc: &Value) -> bool {
    ty(svc) != "ExternalName"
}

fn needs_node_port(svc: &Value) -> bool {
    matches!(ty(svc), "NodePort" | "LoadBalancer")
}

fn needs_health_check(svc: &Value) -> bool {
    ty(svc) == "LoadBalancer" && str_of(spec(svc), "externalTrafficPolicy") == "Local"
}

/// LoadBalancer, NodePort, or ClusterIP with external IPs.
pub fn externally_accessible(svc: &Value) -> bool {
    match ty(svc) {
        "LoadBalancer" | "NodePort" => true,
        "ClusterIP" => !arr_of(spec(svc), "externalIPs").is_empty(),
        _ => false,
    }
}

/// `SetDefaults_Service`.
pub fn default_service(svc: &mut Value) {
    let Some(s) = svc.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    set_default_str(s, "sessionAffinity", "None");
    match str_of(s, "sessionAffinity") {
        "None" => remove(s, "sessionAffinityConfig"),
        "ClientIP" => {
            let has_timeout = s
                .pointer("/sessionAffinityConfig/clientIP/timeoutSeconds")
                .is_some_and(|t| !t.is_null());
            if !has_timeout {
                s["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": 10800}});
            }
        }
        _ => {}
    }
    set_default_str(s, "type", "ClusterIP");
    each_mut(s, "ports", |p| {
        set_default_str(p, "protocol", "TCP");
        let unset = match p.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::String(t)) => t.is_empty(),
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            _ => false,
        };
        if unset {
            if let Some(port) = p.get("port").cloned() {
                p["targetPort"] = port;
            }
        }
    });
    let t = str_of(s, "type").to_string();
    let external = match t.as_str() {
        "LoadBalancer" | "NodePort" => true,
        "ClusterIP" => !arr_of(s, "externalIPs").is_empty(),
        _ => false,
    };
    if external {
        set_default_str(s, "externalTrafficPolicy", "Cluster");
    }
    if matches!(t.as_str(), "NodePort" | "LoadBalancer" | "ClusterIP") {
        set_default(s, "internalTrafficPolicy", json!("Cluster"));
    }
    if t == "LoadBalancer" {
        set_default(s, "allocateLoadBalancerNodePorts", json!(true));
    }
}

/// Keeps `clusterIP` and `clusterIPs` in step (upstream's `NormalizeClusterIPs`).
fn normalize_cluster_ips(new: &mut Value, old: Option<&Value>) {
    let new_ip = str_of(spec(new), "clusterIP").to_string();
    let new_ips = cluster_ips(new);
    let Some(s) = new.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    let Some(old) = old else {
        if !new_ip.is_empty() && new_ips.is_empty() {
            s["clusterIPs"] = json!([new_ip]);
        }
        return;
    };
    let old_ip = str_of(spec(old), "clusterIP");
    let old_ips = cluster_ips(old);
    let mut ips = new_ips;
    if !old_ips.is_empty() && ips.is_empty() && old_ip == new_ip {
        ips = old_ips.clone();
        s["clusterIPs"] = json!(ips);
    }
    if old_ip != new_ip {
        if !old_ip.is_empty() && new_ip.is_empty() {
            if ips == old_ips {
                remove(s, "clusterIPs");
            }
        } else if ips == old_ips {
            s["clusterIPs"] = json!([new_ip]);
        }
    }
}

/// IP family fields of a service that gets a cluster IP: single stack, in the family of its
/// cluster IP (IPv4 when none is chosen yet).
fn default_ip_families(svc: &mut Value) {
    if !needs_cluster_ip(svc) {
        return;
    }
    let first = cluster_ips(svc).into_iter().next().unwrap_or_default();
    let family = if is_valid_ipv6(&first) {
        "IPv6"
    } else {
        "IPv4"
    };
    if let Some(s) = svc.get_mut("spec").filter(|s| s.is_object()) {
        set_default(s, "ipFamilyPolicy", json!("SingleStack"));
        if arr_of(s, "ipFamilies").is_empty() {
            s["ipFamilies"] = json!([family]);
        }
    }
}

/// Values the server allocated that an update body left out (upstream's
/// `patchAllocatedValues`), then fields the new type no longer uses (`dropTypeDependentFields`).
fn patch_allocated_values(new: &mut Value, old: &Value) {
    let keep_ip = needs_cluster_ip(old) && needs_cluster_ip(new);
    let keep_ports = needs_node_port(old) && needs_node_port(new);
    let keep_hc = needs_health_check(old) && needs_health_check(new);
    let os = spec(old).clone();
    let Some(s) = new.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    if keep_ip {
        set_default_str(s, "clusterIP", str_of(&os, "clusterIP"));
        if arr_of(s, "clusterIPs").is_empty() && !arr_of(&os, "clusterIPs").is_empty() {
            s["clusterIPs"] = os["clusterIPs"].clone();
        }
        for f in ["ipFamilyPolicy", "ipFamilies"] {
            if get(s, f).is_none() {
                if let Some(v) = get(&os, f) {
                    s[f] = v.clone();
                }
            }
        }
    }
    if keep_ports {
        let node_port = |p: &Value| int_of(p, "nodePort").unwrap_or(0);
        let new_used: BTreeSet<i64> = arr_of(s, "ports").iter().map(node_port).collect();
        let used: BTreeSet<i64> = arr_of(&os, "ports")
            .iter()
            .map(node_port)
            .filter(|p| new_used.contains(p))
            .collect();
        let by_name: Vec<(String, i64)> = arr_of(&os, "ports")
            .iter()
            .map(|p| (str_of(p, "name").to_string(), node_port(p)))
            .collect();
        each_mut(s, "ports", |p| {
            if node_port(p) == 0 {
                let name = str_of(p, "name").to_string();
                if let Some((_, v)) = by_name.iter().find(|(n, _)| *n == name) {
                    if *v != 0 && !used.contains(v) {
                        set_field(p, "nodePort", json!(v));
                    }
                }
            }
        });
    }
    if keep_hc && int_of(s, "healthCheckNodePort").unwrap_or(0) == 0 {
        if let Some(v) = get(&os, "healthCheckNodePort") {
            s["healthCheckNodePort"] = v.clone();
        }
    }
}

fn drop_type_dependent_fields(new: &mut Value, old: &Value) {
    let drop_ip = needs_cluster_ip(old) && !needs_cluster_ip(new);
    let drop_ports = needs_node_port(old) && !needs_node_port(new);
    let drop_hc = needs_health_check(old) && !needs_health_check(new);
    let drop_etp = externally_accessible(old) && !externally_accessible(new);
    let was_lb = ty(old) == "LoadBalancer" && ty(new) != "LoadBalancer";
    let is_lb = ty(new) == "LoadBalancer";
    let os = spec(old).clone();
    let Some(s) = new.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    let same = |s: &Value, f: &str| semantic_eq(s.get(f), os.get(f));
    if drop_ip {
        if same(s, "clusterIP") && same(s, "clusterIPs") {
            remove(s, "clusterIP");
            remove(s, "clusterIPs");
        }
        for f in ["ipFamilies", "ipFamilyPolicy"] {
            if same(s, f) {
                remove(s, f);
            }
        }
    }
    if drop_ports {
        let old_ports: Vec<i64> = arr_of(&os, "ports")
            .iter()
            .map(|p| int_of(p, "nodePort").unwrap_or(0))
            .collect();
        let new_ports: Vec<i64> = arr_of(s, "ports")
            .iter()
            .map(|p| int_of(p, "nodePort").unwrap_or(0))
            .collect();
        if old_ports == new_ports {
            each_mut(s, "ports", |p| remove(p, "nodePort"));
        }
    }
    if drop_hc && same(s, "healthCheckNodePort") {
        remove(s, "healthCheckNodePort");
    }
    if was_lb {
        for f in ["allocateLoadBalancerNodePorts", "loadBalancerClass"] {
            if same(s, f) {
                remove(s, f);
            }
        }
    }
    if drop_etp && same(s, "externalTrafficPolicy") {
        remove(s, "externalTrafficPolicy");
    }
    if !is_lb {
        if let Some(st) = new.get_mut("status").filter(|st| st.is_object()) {
            st["loadBalancer"] = json!({});
        }
    }
}

fn validate_service_port(
    p: &Value,
    require_name: bool,
    names: &mut BTreeSet<String>,
    path: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = str_of(p, "name");
    if require_name && name.is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    } else if !name.is_empty() {
        errs.extend(validate_dns1123_label(name, &format!("{path}.name")));
        if !names.insert(name.to_string()) {
            errs.push(FieldError::duplicate(format!("{path}.name"), json!(name)));
        }
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
    errs.extend(validate_port_num_or_name(
        get(p, "targetPort"),
        &format!("{path}.targetPort"),
    ));
    if let Some(a) = get(p, "appProtocol").and_then(Value::as_str) {
        errs.extend(validate_qualified_name(a, &format!("{path}.appProtocol")));
    }
    errs
}

fn validate_cluster_ips(svc: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if ty(svc) == "ExternalName" {
        return errs;
    }
    let s = spec(svc);
    let ip = str_of(s, "clusterIP");
    let ips = cluster_ips(svc);
    let ips_json = json!(ips);
    if !ip.is_empty() {
        if ips.is_empty() {
            errs.push(FieldError::required("spec.clusterIPs", ""));
        } else if ips[0] != ip {
            errs.push(FieldError::invalid(
                "spec.clusterIPs",
                ips_json.clone(),
                "first value must match `clusterIP`",
            ));
        }
    } else if !ips.is_empty() {
        errs.push(FieldError::invalid(
            "spec.clusterIPs",
            ips_json.clone(),
            "must be empty when `clusterIP` is not specified",
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, f) in arr_of(s, "ipFamilies").iter().enumerate() {
        let f = f.as_str().unwrap_or("");
        if !FAMILIES.contains(&f) {
            errs.push(FieldError::not_supported(
                format!("spec.ipFamilies[{i}]"),
                json!(f),
                FAMILIES,
            ));
        }
        if !seen.insert(f.to_string()) {
            errs.push(FieldError::duplicate(
                format!("spec.ipFamilies[{i}]"),
                json!(f),
            ));
        }
    }
    if let Some(p) = get(s, "ipFamilyPolicy") {
        let p = p.as_str().unwrap_or("");
        if !FAMILY_POLICIES.contains(&p) {
            errs.push(FieldError::not_supported(
                "spec.ipFamilyPolicy",
                json!(p),
                FAMILY_POLICIES,
            ));
        }
    }
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && ip == "None" {
            if ips.len() > 1 {
                errs.push(FieldError::invalid(
                    "spec.clusterIPs",
                    ips_json.clone(),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        if !is_valid_ip(ip) {
            errs.push(FieldError::invalid(
                format!("spec.clusterIPs[{i}]"),
                json!(ip),
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
    if ips.len() > 2 {
        errs.push(FieldError::invalid(
            "spec.clusterIPs",
            ips_json.clone(),
            "may only hold up to 2 values",
        ));
    }
    if !errs.is_empty() {
        return errs;
    }
    if ips.len() == 2 && is_valid_ipv6(&ips[0]) == is_valid_ipv6(&ips[1]) {
        errs.push(FieldError::invalid(
            "spec.clusterIPs",
            ips_json,
            "may specify no more than one IP for each IP family",
        ));
    }
    if !is_headless(svc) {
        for (i, (ip, f)) in ips.iter().zip(arr_of(s, "ipFamilies")).enumerate() {
            let v6 = is_valid_ipv6(ip);
            match f.as_str() {
                Some("IPv4") if v6 => errs.push(FieldError::invalid(
                    format!("spec.clusterIPs[{i}]"),
                    json!(ip),
                    format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                )),
                Some("IPv6") if !v6 => errs.push(FieldError::invalid(
                    format!("spec.clusterIPs[{i}]"),
                    json!(ip),
                    format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                )),
                _ => {}
            }
        }
    }
    errs
}

/// Upstream's `ValidateService`.
pub fn validate_service(svc: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(svc, Some(true), name_is_dns1035_label);
    let s = spec(svc);
    let t = str_of(s, "type");
    let headless = is_headless(svc);
    let ports = arr_of(s, "ports");
    if ports.is_empty() && !headless && t != "ExternalName" {
        errs.push(FieldError::required("spec.ports", ""));
    }
    let first_ip = cluster_ips(svc).into_iter().next().unwrap_or_default();
    match t {
        "LoadBalancer" | "NodePort" if headless => errs.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            json!(first_ip),
            format!("may not be set to 'None' for {t} services"),
        )),
        "ExternalName" => {
            if !cluster_ips(svc).is_empty() || !str_of(s, "clusterIP").is_empty() {
                errs.push(FieldError::forbidden(
                    "spec.clusterIPs",
                    "may not be set for ExternalName services",
                ));
            }
            if !arr_of(s, "ipFamilies").is_empty() {
                errs.push(FieldError::forbidden(
                    "spec.ipFamilies",
                    "may not be set for ExternalName services",
                ));
            }
            if get(s, "ipFamilyPolicy").is_some() {
                errs.push(FieldError::forbidden(
                    "spec.ipFamilyPolicy",
                    "may not be set for ExternalName services",
                ));
            }
            let cname = str_of(s, "externalName");
            let cname = cname.strip_suffix('.').unwrap_or(cname);
            if cname.is_empty() {
                errs.push(FieldError::required("spec.externalName", ""));
            } else {
                errs.extend(validate_dns1123_subdomain(cname, "spec.externalName"));
            }
        }
        _ => {}
    }
    let mut names = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        errs.extend(validate_service_port(
            p,
            ports.len() > 1,
            &mut names,
            &format!("spec.ports[{i}]"),
        ));
    }
    if let Some(sel) = get(s, "selector") {
        errs.extend(validate_labels(Some(sel), "spec.selector"));
    }
    let affinity = str_of(s, "sessionAffinity");
    if affinity.is_empty() {
        errs.push(FieldError::required("spec.sessionAffinity", ""));
    } else if !AFFINITIES.contains(&affinity) {
        errs.push(FieldError::not_supported(
            "spec.sessionAffinity",
            json!(affinity),
            AFFINITIES,
        ));
    }
    if affinity == "ClientIP" {
        let timeout = s
            .pointer("/sessionAffinityConfig/clientIP/timeoutSeconds")
            .and_then(Value::as_i64);
        match timeout {
            None => errs.push(FieldError::required(
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                "",
            )),
            Some(t) if !(1..=86400).contains(&t) => errs.push(FieldError::invalid(
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                json!(t),
                "must be greater than 0 and less than 86400",
            )),
            _ => {}
        }
    } else if affinity == "None" && get(s, "sessionAffinityConfig").is_some() {
        errs.push(FieldError::forbidden(
            "spec.sessionAffinityConfig",
            "must not be set when session affinity is None",
        ));
    }
    errs.extend(validate_cluster_ips(svc));
    for (i, ip) in arr_of(s, "externalIPs").iter().enumerate() {
        let ip = ip.as_str().unwrap_or("");
        if !is_valid_ip(ip) {
            errs.push(FieldError::invalid(
                format!("spec.externalIPs[{i}]"),
                json!(ip),
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
    if t.is_empty() {
        errs.push(FieldError::required("spec.type", ""));
    } else if !TYPES.contains(&t) {
        errs.push(FieldError::not_supported("spec.type", json!(t), TYPES));
    }
    if t == "ClusterIP" {
        for (i, p) in ports.iter().enumerate() {
            if int_of(p, "nodePort").unwrap_or(0) != 0 {
                errs.push(FieldError::forbidden(
                    format!("spec.ports[{i}].nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    let mut node_ports = BTreeSet::new();
    let mut port_keys = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let proto = str_of(p, "protocol").to_string();
        let np = int_of(p, "nodePort").unwrap_or(0);
        if np != 0 && !node_ports.insert((proto.clone(), np)) {
            errs.push(FieldError::duplicate(
                format!("spec.ports[{i}].nodePort"),
                json!(np),
            ));
        }
        let port = int_of(p, "port").unwrap_or(0);
        if !port_keys.insert((proto.clone(), port)) {
            errs.push(FieldError::duplicate(
                format!("spec.ports[{i}]"),
                json!({"port": port, "protocol": proto}),
            ));
        }
    }
    let etp = str_of(s, "externalTrafficPolicy");
    if !externally_accessible(svc) {
        if !etp.is_empty() {
            errs.push(FieldError::invalid(
                "spec.externalTrafficPolicy",
                json!(etp),
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        errs.push(FieldError::required("spec.externalTrafficPolicy", ""));
    } else if !TRAFFIC_POLICIES.contains(&etp) {
        errs.push(FieldError::not_supported(
            "spec.externalTrafficPolicy",
            json!(etp),
            TRAFFIC_POLICIES,
        ));
    }
    if !needs_health_check(svc) {
        if let Some(hc) = int_of(s, "healthCheckNodePort").filter(|h| *h != 0) {
            errs.push(FieldError::invalid(
                "spec.healthCheckNodePort",
                json!(hc),
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        }
    }
    match get(s, "internalTrafficPolicy").and_then(Value::as_str) {
        None if matches!(t, "NodePort" | "LoadBalancer" | "ClusterIP") => {
            errs.push(FieldError::required("spec.internalTrafficPolicy", ""));
        }
        Some(p) if !TRAFFIC_POLICIES.contains(&p) => {
            errs.push(FieldError::not_supported(
                "spec.internalTrafficPolicy",
                json!(p),
                TRAFFIC_POLICIES,
            ));
        }
        _ => {}
    }
    errs
}

/// Cluster IPs and families may not change once set, unless the service is or becomes an
/// ExternalName service (upstream's `validateUpgradeDowngradeClusterIPs`/`IPFamilies`).
fn validate_ip_updates(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if ty(new) == "ExternalName"
        || ty(old) == "ExternalName"
        || (is_headless(new) && is_headless(old))
    {
        return errs;
    }
    let (n, o) = (cluster_ips(new), cluster_ips(old));
    let n_json = json!(n);
    if n.len() == o.len() {
        for (i, ip) in o.iter().enumerate() {
            if *ip != n[i] {
                errs.push(FieldError::invalid(
                    format!("spec.clusterIPs[{i}]"),
                    n_json.clone(),
                    "may not change once set",
                ));
            }
        }
    } else if o.len() > n.len() {
        if n.is_empty() {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                n_json.clone(),
                "primary clusterIP can not be unset",
            ));
        } else if n[0] != o[0] {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                n_json.clone(),
                "may not change once set",
            ));
        }
    } else if !o.is_empty() && n[0] != o[0] {
        errs.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            n_json,
            "may not change once set",
        ));
    }
    let nf: Vec<&Value> = arr_of(spec(new), "ipFamilies").iter().collect();
    let of: Vec<&Value> = arr_of(spec(old), "ipFamilies").iter().collect();
    let nf_json = json!(nf);
    for (i, f) in of.iter().enumerate() {
        if let Some(g) = nf.get(i) {
            if g != f {
                errs.push(FieldError::invalid(
                    format!("spec.ipFamilies[{i}]"),
                    nf_json.clone(),
                    "may not change once set",
                ));
            }
        }
    }
    errs
}

/// `services`.
pub struct ServiceStrategy;

impl Strategy for ServiceStrategy {
    fn default(&self, obj: &mut Value) {
        default_service(obj);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        normalize_cluster_ips(obj, None);
        default_ip_families(obj);
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), json!({"loadBalancer": {}}));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_service(obj)
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        patch_allocated_values(new, old);
        normalize_cluster_ips(new, Some(old));
        drop_type_dependent_fields(new, old);
        default_ip_families(new);
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta_update(new, old);
        errs.extend(validate_ip_updates(new, old));
        errs.extend(validate_service(new));
        errs
    }

    fn allow_unconditional_update(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    fn create(spec: Value) -> Value {
        let mut s = svc(spec);
        ServiceStrategy.default(&mut s);
        ServiceStrategy.prepare_for_create(&mut s);
        s
    }

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    #[test]
    fn services_get_v1_defaults() {
        struct Case {
            name: &'static str,
            spec: Value,
            want: Value,
        }
        let cases = [
            Case {
                name: "cluster ip",
                spec: json!({"ports": [{"port": 80}], "selector": {"app": "web"}}),
                want: json!({"ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}], "selector": {"app": "web"},
                    "type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
                    "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}),
            },
            Case {
                name: "node port",
                spec: json!({"type": "NodePort", "ports": [{"port": 80, "targetPort": "http"}]}),
                want: json!({"ports": [{"port": 80, "protocol": "TCP", "targetPort": "http"}], "type": "NodePort",
                    "sessionAffinity": "None", "internalTrafficPolicy": "Cluster", "externalTrafficPolicy": "Cluster",
                    "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}),
            },
            Case {
                name: "external name",
                spec: json!({"type": "ExternalName", "externalName": "example.com"}),
                want: json!({"type": "ExternalName", "externalName": "example.com", "sessionAffinity": "None"}),
            },
            Case {
                name: "client ip affinity",
                spec: json!({"ports": [{"port": 80}], "sessionAffinity": "ClientIP", "clusterIP": "fd00::10"}),
                want: json!({"ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}], "type": "ClusterIP",
                    "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
                    "internalTrafficPolicy": "Cluster", "clusterIP": "fd00::10", "clusterIPs": ["fd00::10"],
                    "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv6"]}),
            },
        ];
        for c in cases {
            let s = create(c.spec);
            assert_eq!(s["spec"], c.want, "{}", c.name);
            assert_eq!(s["status"], json!({"loadBalancer": {}}), "{}", c.name);
        }
    }

    #[test]
    fn service_validation_mirrors_upstream() {
        struct Case {
            name: &'static str,
            spec: Value,
            want: Vec<&'static str>,
        }
        let cases = [
            Case { name: "valid", spec: json!({"ports": [{"port": 80}]}), want: vec![] },
            Case { name: "no ports", spec: json!({}), want: vec!["spec.ports: Required value"] },
            Case { name: "headless without ports", spec: json!({"clusterIP": "None"}), want: vec![] },
            Case { name: "external name without ports", spec: json!({"type": "ExternalName", "externalName": "db.example.com."}), want: vec![] },
            Case { name: "unnamed ports", spec: json!({"ports": [{"port": 80}, {"port": 81}]}),
                want: vec!["spec.ports[0].name: Required value", "spec.ports[1].name: Required value"] },
            Case { name: "duplicate port names", spec: json!({"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]}),
                want: vec!["spec.ports[1].name: Duplicate value: \"a\""] },
            Case { name: "bad type", spec: json!({"type": "Magic", "ports": [{"port": 80}]}),
                want: vec!["spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""] },
            Case { name: "bad selector", spec: json!({"ports": [{"port": 80}], "selector": {"app": "a b"}}),
                want: vec!["spec.selector: Invalid value: \"a b\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"] },
            Case { name: "node port on cluster ip", spec: json!({"ports": [{"port": 80, "nodePort": 30000}]}),
                want: vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"] },
            Case { name: "bad port", spec: json!({"ports": [{"port": 0, "targetPort": 80}]}),
                want: vec!["spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"] },
        ];
        for c in cases {
            let s = create(c.spec);
            assert_eq!(
                messages(&ServiceStrategy.validate(&s)),
                c.want,
                "{}",
                c.name
            );
        }
        let mut bad_name = svc(json!({"ports": [{"port": 80}]}));
        bad_name["metadata"]["name"] = json!("1web");
        ServiceStrategy.default(&mut bad_name);
        ServiceStrategy.prepare_for_create(&mut bad_name);
        assert_eq!(
            ServiceStrategy.validate(&bad_name)[0].field,
            "metadata.name"
        );
    }

    #[test]
    fn cluster_ips_are_kept_or_immutable_on_update() {
        struct Case {
            name: &'static str,
            new_spec: Value,
            want: Vec<&'static str>,
            cluster_ip: Value,
        }
        let cases = [
            Case {
                name: "omitted is kept",
                new_spec: json!({"ports": [{"port": 80}]}),
                want: vec![],
                cluster_ip: json!("10.0.0.5"),
            },
            Case {
                name: "changed is rejected",
                new_spec: json!({"ports": [{"port": 80}], "clusterIP": "10.0.0.6", "clusterIPs": ["10.0.0.6"]}),
                want: vec![
                    "spec.clusterIPs[0]: Invalid value: [\"10.0.0.6\"]: may not change once set",
                ],
                cluster_ip: json!("10.0.0.6"),
            },
            Case {
                name: "to external name drops it",
                new_spec: json!({"type": "ExternalName", "externalName": "x.example.com"}),
                want: vec![],
                cluster_ip: Value::Null,
            },
        ];
        for c in cases {
            let mut old = create(json!({"ports": [{"port": 80}], "clusterIP": "10.0.0.5"}));
            old["metadata"]["uid"] = json!("u");
            let mut new = svc(c.new_spec);
            new["metadata"]["uid"] = json!("u");
            ServiceStrategy.default(&mut new);
            ServiceStrategy.prepare_for_update(&mut new, &old);
            assert_eq!(
                messages(&ServiceStrategy.validate_update(&new, &old)),
                c.want,
                "{}",
                c.name
            );
            assert_eq!(
                new["spec"].get("clusterIP").cloned().unwrap_or(Value::Null),
                c.cluster_ip,
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn node_ports_survive_updates_that_omit_them() {
        let mut old = create(json!({"type": "NodePort", "ports": [{"name": "http", "port": 80}]}));
        old["spec"]["ports"][0]["nodePort"] = json!(30080);
        old["spec"]["clusterIP"] = json!("10.0.0.9");
        old["spec"]["clusterIPs"] = json!(["10.0.0.9"]);
        let mut new = svc(json!({"type": "NodePort", "ports": [{"name": "http", "port": 80}]}));
        ServiceStrategy.default(&mut new);
        ServiceStrategy.prepare_for_update(&mut new, &old);
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30080);
        assert_eq!(new["spec"]["clusterIP"], "10.0.0.9");
        let mut back = new.clone();
        back["spec"]["type"] = json!("ClusterIP");
        ServiceStrategy.prepare_for_update(&mut back, &new);
        assert!(back["spec"]["ports"][0].get("nodePort").is_none());
        assert!(back["spec"].get("externalTrafficPolicy").is_none());
    }
}
