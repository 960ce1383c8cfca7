//! Nodes: names, taints, pod CIDRs and what an update may change.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::error::FieldError;
use crate::registry::core::pod::validate_taint_effect;
use crate::registry::quantity;
use crate::registry::validation::{
    arr_of, get, is_label_value, is_valid_cidr, is_valid_ipv6, name_is_dns_subdomain, obj_of,
    remove, semantic_eq, str_of, validate_object_meta, validate_object_meta_update,
    validate_qualified_name,
};
use crate::registry::Strategy;

/// Upstream's `validateNodeTaints`.
pub fn validate_taints(taints: &[Value], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, t) in taints.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let key = str_of(t, "key");
        errs.extend(validate_qualified_name(key, &format!("{p}.key")));
        let value = str_of(t, "value");
        let msgs = is_label_value(value);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(
                format!("{p}.value"),
                json!(value),
                msgs.join(";"),
            ));
        }
        let effect = str_of(t, "effect");
        errs.extend(validate_taint_effect(effect, false, &format!("{p}.effect")));
        if !seen.insert((effect.to_string(), key.to_string())) {
            let mut e = FieldError::duplicate(p.as_str(), t.clone());
            e.detail = "taints must be unique by key and effect pair".into();
            errs.push(e);
        }
    }
    errs
}

fn validate_node(node: &Value) -> Vec<FieldError> {
    let mut errs = validate_object_meta(node, Some(false), name_is_dns_subdomain);
    let empty = json!({});
    let spec = node.get("spec").unwrap_or(&empty);
    errs.extend(validate_taints(arr_of(spec, "taints"), "spec.taints"));
    let cidrs = arr_of(spec, "podCIDRs");
    for (i, c) in cidrs.iter().enumerate() {
        let c = c.as_str().unwrap_or("");
        if !is_valid_cidr(c) {
            errs.push(FieldError::invalid(
                format!("spec.podCIDRs[{i}]"),
                json!(c),
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            ));
        }
    }
    if cidrs.len() > 1 {
        let families: BTreeSet<bool> = cidrs
            .iter()
            .filter_map(Value::as_str)
            .map(|c| is_valid_ipv6(c.split('/').next().unwrap_or("")))
            .collect();
        if cidrs.len() > 2 || families.len() != 2 {
            errs.push(FieldError::invalid(
                "spec.podCIDRs",
                Value::Array(cidrs.to_vec()),
                "may specify no more than one CIDR for each IP family",
            ));
        }
    }
    let status = node.get("status").unwrap_or(&empty);
    for f in ["capacity", "allocatable"] {
        // Upstream checks only the quantities here, at `status.capacity.<name>`.
        for (k, v) in obj_of(status, f).into_iter().flatten() {
            errs.extend(quantity::validate_quantity_value(
                k,
                v,
                &format!("status.{f}.{k}"),
            ));
        }
    }
    errs
}

/// `nodes`.
pub struct NodeStrategy;

impl Strategy for NodeStrategy {
    fn default(&self, obj: &mut Value) {
        // podCIDR and podCIDRs mirror each other, as the v1 conversion does.
        if let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) {
            let single = str_of(spec, "podCIDR").to_string();
            if arr_of(spec, "podCIDRs").is_empty() && !single.is_empty() {
                spec["podCIDRs"] = json!([single]);
            } else if let Some(first) = arr_of(spec, "podCIDRs").first().cloned() {
                spec["podCIDR"] = first;
            }
        }
        if let Some(status) = obj.get_mut("status").filter(|s| s.is_object()) {
            quantity::canonicalize_list(status.get_mut("capacity"));
            quantity::canonicalize_list(status.get_mut("allocatable"));
            if get(status, "allocatable").is_none() {
                if let Some(c) = get(status, "capacity").cloned() {
                    status["allocatable"] = c;
                }
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_node(obj)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = validate_object_meta_update(new, old);
        errs.extend(validate_node(new));
        let empty = json!({});
        let ns = new.get("spec").unwrap_or(&empty);
        let os = old.get("spec").unwrap_or(&empty);
        let old_cidrs = arr_of(os, "podCIDRs");
        if !old_cidrs.is_empty() && old_cidrs != arr_of(ns, "podCIDRs") {
            errs.push(FieldError::forbidden(
                "spec.podCIDRs",
                "node updates may not change podCIDR except from \"\" to valid",
            ));
        }
        let old_provider = str_of(os, "providerID");
        if !old_provider.is_empty() && old_provider != str_of(ns, "providerID") {
            errs.push(FieldError::forbidden(
                "spec.providerID",
                "node updates may not change providerID except from \"\" to valid",
            ));
        }
        // Everything else in spec is fixed apart from taints, unschedulable and the fields
        // controllers fill in once.
        let mut a = ns.clone();
        let mut b = os.clone();
        for f in [
            "taints",
            "unschedulable",
            "podCIDR",
            "podCIDRs",
            "providerID",
            "configSource",
        ] {
            remove(&mut a, f);
            remove(&mut b, f);
        }
        if !semantic_eq(Some(&a), Some(&b)) {
            errs.push(FieldError::forbidden(
                "",
                "node updates may only change labels, taints, or capacity (or configSource, if the DynamicKubeletConfig feature gate is enabled)",
            ));
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_need_a_known_effect_and_unique_key() {
        struct Case {
            name: &'static str,
            taints: Value,
            want: Vec<&'static str>,
        }
        let cases = [
            Case { name: "valid", taints: json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]), want: vec![] },
            Case { name: "missing effect", taints: json!([{"key": "a"}]), want: vec!["spec.taints[0].effect: Required value"] },
            Case { name: "bad effect", taints: json!([{"key": "a", "effect": "Never"}]),
                want: vec!["spec.taints[0].effect: Unsupported value: \"Never\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""] },
            Case { name: "duplicate", taints: json!([{"key": "a", "effect": "NoSchedule"}, {"key": "a", "value": "x", "effect": "NoSchedule"}]),
                want: vec!["spec.taints[1]: Duplicate value: {\"effect\":\"NoSchedule\",\"key\":\"a\",\"value\":\"x\"}: taints must be unique by key and effect pair"] },
        ];
        for c in cases {
            let node = json!({"metadata": {"name": "n1"}, "spec": {"taints": c.taints}});
            let got: Vec<String> = NodeStrategy
                .validate(&node)
                .iter()
                .map(FieldError::message)
                .collect();
            assert_eq!(got, c.want, "{}", c.name);
        }
    }

    #[test]
    fn node_updates_protect_pod_cidrs() {
        let old = json!({"metadata": {"name": "n1"}, "spec": {"podCIDR": "10.0.1.0/24", "podCIDRs": ["10.0.1.0/24"]}});
        let mut ok = old.clone();
        ok["spec"]["unschedulable"] = json!(true);
        assert!(NodeStrategy.validate_update(&ok, &old).is_empty());
        let mut bad = old.clone();
        bad["spec"]["podCIDRs"] = json!(["10.0.2.0/24"]);
        NodeStrategy.default(&mut bad);
        let errs = NodeStrategy.validate_update(&bad, &old);
        assert_eq!(errs[0].field, "spec.podCIDRs");
    }

    #[test]
    fn allocatable_defaults_to_capacity() {
        let mut node = json!({"metadata": {"name": "n1"}, "status": {"capacity": {"cpu": 4, "memory": "8Gi"}}});
        NodeStrategy.default(&mut node);
        assert_eq!(
            node["status"]["allocatable"],
            json!({"cpu": "4", "memory": "8Gi"})
        );
    }
}
