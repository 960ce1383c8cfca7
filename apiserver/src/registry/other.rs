//! Leases, EndpointSlices, PodDisruptionBudgets, PriorityClasses and CRDs.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::error::FieldError;
use crate::registry::apps::{not_more_than_100_percent, validate_int_or_percent};
use crate::registry::core::misc::{validate_endpoint_port, validate_non_special_ip};
use crate::registry::core::pod::{nonnegative, system_priority};
use crate::registry::validation::{
    arr_of, each_mut, get, int_of, invalid_each, is_valid_ipv4, is_valid_ipv6,
    name_is_dns_subdomain, set_default, set_field, str_of, validate_dns1123_label,
    validate_immutable_field, validate_label_selector, validate_labels, validate_object_meta,
    validate_object_meta_update, validate_path_segment_name,
};
use crate::registry::Strategy;

// ---------------------------------------------------------------------------------------------
// coordination.k8s.io Lease

fn validate_lease(obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(obj, Some(true), name_is_dns_subdomain);
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    if let Some(d) = int_of(spec, "leaseDurationSeconds").filter(|d| *d <= 0) {
        errs.push(FieldError::invalid(
            "spec.leaseDurationSeconds",
            json!(d),
            "must be greater than 0",
        ));
    }
    errs.extend(nonnegative(
        int_of(spec, "leaseTransitions"),
        "spec.leaseTransitions",
    ));
    errs
}

/// `leases`.
pub struct LeaseStrategy;

impl Strategy for LeaseStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_lease(obj)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta_update(new, old);
        errs.extend(validate_lease(new));
        errs
    }

    fn allow_create_on_update(&self) -> bool {
        true
    }
}

// ---------------------------------------------------------------------------------------------
// discovery.k8s.io EndpointSlice

const ADDRESS_TYPES: &[&str] = &["FQDN", "IPv4", "IPv6"];
const MAX_ENDPOINTS: usize = 1000;
const MAX_ADDRESSES: usize = 100;
const MAX_PORTS: usize = 20000;

fn too_many(path: &str, actual: usize, max: usize) -> FieldError {
    FieldError::new(
        crate::error::FieldErrorType::TooMany,
        path,
        format!("must have at most {max} items"),
    )
    .with_value(json!(actual))
}

fn validate_fqdn(value: &str, path: &str) -> Vec<FieldError> {
    let name = value.strip_suffix('.').unwrap_or(value);
    let errs = invalid_each(
        path,
        name,
        crate::registry::validation::is_dns1123_subdomain(name),
    );
    if !errs.is_empty() {
        return errs;
    }
    if name.split('.').count() < 2 {
        return vec![FieldError::invalid(
            path,
            json!(name),
            "should be a domain with at least two segments separated by dots",
        )];
    }
    Vec::new()
}

fn validate_endpoint_slice(obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(obj, Some(true), name_is_dns_subdomain);
    let address_type = str_of(obj, "addressType");
    if address_type.is_empty() {
        errs.push(FieldError::required("addressType", ""));
    } else if !ADDRESS_TYPES.contains(&address_type) {
        errs.push(FieldError::not_supported(
            "addressType",
            json!(address_type),
            ADDRESS_TYPES,
        ));
    }
    let endpoints = arr_of(obj, "endpoints");
    if endpoints.len() > MAX_ENDPOINTS {
        errs.push(too_many("endpoints", endpoints.len(), MAX_ENDPOINTS));
    } else {
        for (i, ep) in endpoints.iter().enumerate() {
            let p = format!("endpoints[{i}]");
            let addresses = arr_of(ep, "addresses");
            if addresses.is_empty() {
                errs.push(FieldError::required(
                    format!("{p}.addresses"),
                    "must contain at least 1 address",
                ));
            } else if addresses.len() > MAX_ADDRESSES {
                errs.push(too_many(
                    &format!("{p}.addresses"),
                    addresses.len(),
                    MAX_ADDRESSES,
                ));
            }
            for (j, a) in addresses.iter().enumerate() {
                let a = a.as_str().unwrap_or("");
                let ap = format!("{p}.addresses[{j}]");
                match address_type {
                    "IPv4" if !is_valid_ipv4(a) => errs.push(FieldError::invalid(
                        ap,
                        json!(a),
                        "must be a valid IPv4 address",
                    )),
                    "IPv6" if !is_valid_ipv6(a) => errs.push(FieldError::invalid(
                        ap,
                        json!(a),
                        "must be a valid IPv6 address",
                    )),
                    "IPv4" | "IPv6" => errs.extend(validate_non_special_ip(a, &ap)),
                    "FQDN" => errs.extend(validate_fqdn(a, &ap)),
                    _ => {}
                }
            }
            if let Some(n) = get(ep, "nodeName").and_then(Value::as_str) {
                errs.extend(invalid_each(
                    &format!("{p}.nodeName"),
                    n,
                    name_is_dns_subdomain(n, false),
                ));
            }
            if let Some(h) = get(ep, "hostname").and_then(Value::as_str) {
                errs.extend(validate_dns1123_label(h, &format!("{p}.hostname")));
            }
            if let Some(t) = get(ep, "deprecatedTopology") {
                errs.extend(validate_labels(Some(t), &format!("{p}.deprecatedTopology")));
            }
        }
    }
    let ports = arr_of(obj, "ports");
    if ports.len() > MAX_PORTS {
        errs.push(too_many("ports", ports.len(), MAX_PORTS));
        return errs;
    }
    let mut names = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = format!("ports[{i}]");
        let mut port = p.clone();
        // The port number is optional on slices.
        if get(p, "port").is_none() {
            port["port"] = json!(1);
        }
        errs.extend(validate_endpoint_port(&port, false, &pp));
        let name = str_of(p, "name");
        if !names.insert(name.to_string()) {
            errs.push(FieldError::duplicate(format!("{pp}.name"), json!(name)));
        }
    }
    errs
}

/// `endpointslices`.
pub struct EndpointSliceStrategy;

impl Strategy for EndpointSliceStrategy {
    fn default(&self, obj: &mut Value) {
        each_mut(obj, "ports", |p| {
            set_default(p, "name", json!(""));
            set_default(p, "protocol", json!("TCP"));
        });
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_endpoint_slice(obj)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta_update(new, old);
        errs.extend(validate_endpoint_slice(new));
        errs.extend(validate_immutable_field(
            new.get("addressType"),
            old.get("addressType"),
            "addressType",
        ));
        errs
    }
}

// ---------------------------------------------------------------------------------------------
// policy PodDisruptionBudget

fn validate_pdb(obj: &Value) -> Vec<FieldError> {
    // Upstream checks PDB names only as path segments.
    let mut errs = validate_object_meta(obj, Some(true), validate_path_segment_name);
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    let (min, max) = (get(spec, "minAvailable"), get(spec, "maxUnavailable"));
    if min.is_some() && max.is_some() {
        errs.push(FieldError::invalid(
            "spec",
            spec.clone(),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    for (v, f) in [(min, "spec.minAvailable"), (max, "spec.maxUnavailable")] {
        errs.extend(validate_int_or_percent(v, f));
        errs.extend(not_more_than_100_percent(v, f));
    }
    errs.extend(validate_label_selector(
        get(spec, "selector"),
        "spec.selector",
    ));
    if let Some(p) = get(spec, "unhealthyPodEvictionPolicy").and_then(Value::as_str) {
        if p != "AlwaysAllow" && p != "IfHealthyBudget" {
            errs.push(FieldError::not_supported(
                "spec.unhealthyPodEvictionPolicy",
                json!(p),
                &["AlwaysAllow", "IfHealthyBudget"],
            ));
        }
    }
    errs
}

/// `poddisruptionbudgets`.
pub struct PodDisruptionBudgetStrategy;

impl Strategy for PodDisruptionBudgetStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        set_field(
            obj,
            "status",
            json!({"currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0, "expectedPods": 0}),
        );
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_pdb(obj)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta_update(new, old);
        errs.extend(validate_pdb(new));
        errs
    }

    fn tracks_generation(&self) -> bool {
        true
    }
}

// ---------------------------------------------------------------------------------------------
// scheduling.k8s.io PriorityClass

/// Upstream's `HighestUserDefinablePriority`.
pub const HIGHEST_USER_PRIORITY: i64 = 1_000_000_000;
const PREEMPTION_POLICIES: &[&str] = &["PreemptLowerPriority", "Never"];

fn validate_priority_class(obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(obj, Some(false), name_is_dns_subdomain);
    let name = crate::object::name(obj);
    let value = int_of(obj, "value").unwrap_or(0);
    if name.starts_with("system-") {
        let problem = match system_priority(name) {
            None => Some(format!("{name} is not a known system priority class")),
            Some(v) if v != value => Some(format!("value of {name} PriorityClass must be {v}")),
            Some(_) if obj.get("globalDefault").and_then(Value::as_bool) == Some(true) => Some(
                format!("globalDefault of {name} PriorityClass must be false"),
            ),
            Some(_) => None,
        };
        if let Some(p) = problem {
            errs.push(FieldError::forbidden(
                "metadata.name",
                format!("priority class names with 'system-' prefix are reserved for system use only. error: {p}"),
            ));
        }
    } else if value > HIGHEST_USER_PRIORITY {
        errs.push(FieldError::forbidden(
            "value",
            format!("maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}"),
        ));
    }
    if let Some(p) = get(obj, "preemptionPolicy").and_then(Value::as_str) {
        if !PREEMPTION_POLICIES.contains(&p) {
            errs.push(FieldError::not_supported(
                "preemptionPolicy",
                json!(p),
                PREEMPTION_POLICIES,
            ));
        }
    }
    errs
}

const RECLAIM_POLICIES: &[&str] = &["Delete", "Retain"];
const BINDING_MODES: &[&str] = &["Immediate", "WaitForFirstConsumer"];

fn validate_storage_class(obj: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(obj, Some(false), name_is_dns_subdomain);
    match get(obj, "provisioner").and_then(Value::as_str) {
        None | Some("") => errs.push(FieldError::required("provisioner", "")),
        Some(_) => {}
    }
    if let Some(p) = get(obj, "reclaimPolicy").and_then(Value::as_str) {
        if !RECLAIM_POLICIES.contains(&p) {
            errs.push(FieldError::not_supported(
                "reclaimPolicy",
                json!(p),
                RECLAIM_POLICIES,
            ));
        }
    }
    if let Some(m) = get(obj, "volumeBindingMode").and_then(Value::as_str) {
        if !BINDING_MODES.contains(&m) {
            errs.push(FieldError::not_supported(
                "volumeBindingMode",
                json!(m),
                BINDING_MODES,
            ));
        }
    }
    errs
}

/// `storageclasses` (storage.k8s.io): upstream's defaults, so the scheduler's VolumeBinding
/// always finds a binding mode; provisioner, parameters, reclaimPolicy and volumeBindingMode are
/// immutable.
pub struct StorageClassStrategy;

impl Strategy for StorageClassStrategy {
    fn default(&self, obj: &mut Value) {
        set_default(obj, "reclaimPolicy", json!("Delete"));
        set_default(obj, "volumeBindingMode", json!("Immediate"));
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_storage_class(obj)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta_update(new, old);
        errs.extend(validate_storage_class(new));
        for field in [
            "provisioner",
            "parameters",
            "reclaimPolicy",
            "volumeBindingMode",
        ] {
            if new.get(field) != old.get(field) {
                errs.push(FieldError::forbidden(
                    field,
                    "updates to this field are forbidden.",
                ));
            }
        }
        errs
    }
}

/// `priorityclasses`.
pub struct PriorityClassStrategy;

impl Strategy for PriorityClassStrategy {
    fn default(&self, obj: &mut Value) {
        set_default(obj, "preemptionPolicy", json!("PreemptLowerPriority"));
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_priority_class(obj)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta_update(new, old);
        errs.extend(validate_priority_class(new));
        if int_of(new, "value") != int_of(old, "value") {
            errs.push(FieldError::forbidden(
                "value",
                "may not be changed in an update.",
            ));
        }
        errs.extend(validate_immutable_field(
            new.get("preemptionPolicy"),
            old.get("preemptionPolicy"),
            "preemptionPolicy",
        ));
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    #[test]
    fn leases_need_positive_durations() {
        let ok = json!({"metadata": {"name": "l", "namespace": "kube-node-lease"}, "spec": {"leaseDurationSeconds": 40, "holderIdentity": "n1"}});
        assert!(LeaseStrategy.validate(&ok).is_empty());
        let bad = json!({"metadata": {"name": "l", "namespace": "d"}, "spec": {"leaseDurationSeconds": 0}});
        assert_eq!(
            messages(&LeaseStrategy.validate(&bad)),
            vec!["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
        );
    }

    #[test]
    fn endpoint_slices_check_address_types() {
        struct Case {
            name: &'static str,
            slice: Value,
            want: Vec<&'static str>,
        }
        let cases = [
            Case { name: "valid", slice: json!({"addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"port": 80}]}), want: vec![] },
            Case { name: "missing type", slice: json!({"endpoints": []}), want: vec!["addressType: Required value"] },
            Case { name: "unknown type", slice: json!({"addressType": "IPX"}),
                want: vec!["addressType: Unsupported value: \"IPX\": supported values: \"FQDN\", \"IPv4\", \"IPv6\""] },
            Case { name: "wrong family", slice: json!({"addressType": "IPv4", "endpoints": [{"addresses": ["fd00::1"]}]}),
                want: vec!["endpoints[0].addresses[0]: Invalid value: \"fd00::1\": must be a valid IPv4 address"] },
            Case { name: "no addresses", slice: json!({"addressType": "IPv6", "endpoints": [{}]}),
                want: vec!["endpoints[0].addresses: Required value: must contain at least 1 address"] },
            Case { name: "duplicate port names", slice: json!({"addressType": "IPv4", "ports": [{"name": "a", "port": 1}, {"name": "a", "port": 2}]}),
                want: vec!["ports[1].name: Duplicate value: \"a\""] },
        ];
        for c in cases {
            let mut s = c.slice;
            s["metadata"] = json!({"name": "s", "namespace": "d"});
            EndpointSliceStrategy.default(&mut s);
            assert_eq!(
                messages(&EndpointSliceStrategy.validate(&s)),
                c.want,
                "{}",
                c.name
            );
        }
        let old = json!({"metadata": {"name": "s", "namespace": "d"}, "addressType": "IPv4"});
        let mut new = old.clone();
        new["addressType"] = json!("IPv6");
        assert_eq!(
            messages(&EndpointSliceStrategy.validate_update(&new, &old)),
            vec!["addressType: Invalid value: \"IPv6\": field is immutable"]
        );
    }

    #[test]
    fn disruption_budgets_take_one_bound() {
        struct Case {
            name: &'static str,
            spec: Value,
            want: Vec<&'static str>,
        }
        let cases = [
            Case { name: "min", spec: json!({"minAvailable": 2, "selector": {"matchLabels": {"a": "b"}}}), want: vec![] },
            Case { name: "percent", spec: json!({"maxUnavailable": "50%"}), want: vec![] },
            Case { name: "both", spec: json!({"minAvailable": 1, "maxUnavailable": 1}),
                want: vec!["spec: Invalid value: {\"maxUnavailable\":1,\"minAvailable\":1}: minAvailable and maxUnavailable cannot be both set"] },
            Case { name: "over 100", spec: json!({"minAvailable": "120%"}), want: vec!["spec.minAvailable: Invalid value: \"120%\": must not be greater than 100%"] },
        ];
        for c in cases {
            let mut pdb = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": c.spec});
            PodDisruptionBudgetStrategy.prepare_for_create(&mut pdb);
            assert_eq!(
                messages(&PodDisruptionBudgetStrategy.validate(&pdb)),
                c.want,
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn storage_classes_get_upstream_defaults_and_keep_their_behaviour() {
        let s = StorageClassStrategy;
        let mut sc = json!({"metadata": {"name": "fast"}, "provisioner": "example.com/x"});
        s.default(&mut sc);
        assert_eq!(sc["reclaimPolicy"], "Delete");
        assert_eq!(sc["volumeBindingMode"], "Immediate");
        assert!(s.validate(&sc).is_empty());
        let mut bad = sc.clone();
        bad["volumeBindingMode"] = json!("Later");
        bad["provisioner"] = json!("");
        assert_eq!(messages(&s.validate(&bad)).len(), 2);
        let mut changed = sc.clone();
        changed["volumeBindingMode"] = json!("WaitForFirstConsumer");
        assert_eq!(messages(&s.validate_update(&changed, &sc)).len(), 1);
    }

    #[test]
    fn priority_classes_reserve_system_names_and_values() {
        struct Case {
            name: &'static str,
            pc: Value,
            want: Vec<&'static str>,
        }
        let cases = [
            Case { name: "user", pc: json!({"metadata": {"name": "high"}, "value": 1000}), want: vec![] },
            Case { name: "too high", pc: json!({"metadata": {"name": "high"}, "value": 2_000_000_000}),
                want: vec!["value: Forbidden: maximum allowed value of a user defined priority is 1000000000"] },
            Case { name: "builtin", pc: json!({"metadata": {"name": "system-node-critical"}, "value": 2_000_001_000}), want: vec![] },
            Case { name: "fake system", pc: json!({"metadata": {"name": "system-mine"}, "value": 1}),
                want: vec!["metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class"] },
        ];
        for c in cases {
            let mut pc = c.pc;
            PriorityClassStrategy.default(&mut pc);
            assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority", "{}", c.name);
            assert_eq!(
                messages(&PriorityClassStrategy.validate(&pc)),
                c.want,
                "{}",
                c.name
            );
        }
        let old = json!({"metadata": {"name": "high"}, "value": 1, "preemptionPolicy": "Never"});
        let mut new = old.clone();
        new["value"] = json!(2);
        assert_eq!(
            messages(&PriorityClassStrategy.validate_update(&new, &old)),
            vec!["value: Forbidden: may not be changed in an update."]
        );
    }
}
