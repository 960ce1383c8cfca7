//! Printers of services, nodes, namespaces, config, endpoints, events, storage and the rest.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::{
    age, col, format_labels, int, list, map_len, name, since, text, wide, Def, Printer, RowFn, AGE,
    NAME,
};
use crate::object;

const SERVICE: &[Def] = &[
    NAME,
    col("Type", "string", "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer."),
    col("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly."),
    col("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
    col("Port(s)", "string", "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies"),
    AGE,
    wide("Selector", "string", "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify."),
];

const NODE: &[Def] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", "Kubelet Version reported by the node."),
    wide("Internal-IP", "string", "List of addresses reachable to the node."),
    wide("External-IP", "string", "List of addresses reachable to the node."),
    wide("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
    wide("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
    wide("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
];

const NAMESPACE: &[Def] = &[
    NAME,
    col("Status", "string", "The status of the namespace"),
    AGE,
];
const CONFIG_MAP: &[Def] = &[
    NAME,
    col("Data", "string", "Data contains the configuration data."),
    AGE,
];
const SECRET: &[Def] = &[
    NAME,
    col(
        "Type",
        "string",
        "Used to facilitate programmatic handling of secret data.",
    ),
    col("Data", "string", "Data contains the secret data."),
    AGE,
];
const SERVICE_ACCOUNT: &[Def] = &[
    NAME,
    col("Secrets", "string", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."),
    AGE,
];
const ENDPOINTS: &[Def] = &[
    NAME,
    col(
        "Endpoints",
        "string",
        "The set of all endpoints is the union of all subsets.",
    ),
    AGE,
];
const ENDPOINT_SLICE: &[Def] = &[
    NAME,
    col(
        "AddressType",
        "string",
        "addressType specifies the type of address carried by this EndpointSlice.",
    ),
    col(
        "Ports",
        "string",
        "ports specifies the list of network ports exposed by each endpoint in this slice.",
    ),
    col(
        "Endpoints",
        "string",
        "endpoints is a list of unique endpoints in this slice.",
    ),
    AGE,
];

const EVENT: &[Def] = &[
    col("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
    col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
    col("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
    col("Object", "string", "The object that this event is about."),
    wide("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]."),
    wide("Source", "string", "The component reporting this event. Should be a short machine understandable string."),
    col("Message", "string", "A human-readable description of the status of this operation."),
    wide("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
    wide("Count", "string", "The number of times this event has occurred."),
    Def {
        name: "Name",
        type_: "string",
        format: "name",
        priority: 1,
        description: super::NAME_DESC,
    },
];

const PERSISTENT_VOLUME: &[Def] = &[
    NAME,
    col("Capacity", "string", "capacity is the description of the persistent volume's resources and capacity."),
    col("Access Modes", "string", "accessModes contains all ways the volume can be mounted."),
    col("Reclaim Policy", "string", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim."),
    col("Status", "string", "phase indicates if a volume is available, bound to a claim, or released by a claim."),
    col("Claim", "string", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
    col("StorageClass", "string", "StorageClass of the pv"),
    col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
    col("Reason", "string", "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
    AGE,
    wide("VolumeMode", "string", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state."),
];

const PERSISTENT_VOLUME_CLAIM: &[Def] = &[
    NAME,
    col(
        "Status",
        "string",
        "phase represents the current phase of PersistentVolumeClaim.",
    ),
    col(
        "Volume",
        "string",
        "volumeName is the binding reference to the PersistentVolume backing this claim.",
    ),
    col(
        "Capacity",
        "string",
        "capacity represents the actual resources of the underlying volume.",
    ),
    col(
        "Access Modes",
        "string",
        "accessModes contains the actual access modes the volume backing the PVC has.",
    ),
    col("StorageClass", "string", "StorageClass of the pvc"),
    col(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pvc",
    ),
    AGE,
    wide(
        "VolumeMode",
        "string",
        "volumeMode defines what type of volume is required by the claim.",
    ),
];

const RESOURCE_QUOTA: &[Def] = &[
    NAME,
    col("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume."),
    col("Limit", "string", "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
    AGE,
];

const LEASE: &[Def] = &[
    NAME,
    col(
        "Holder",
        "string",
        "holderIdentity contains the identity of the holder of a current lease.",
    ),
    AGE,
];

const PRIORITY_CLASS: &[Def] = &[
    NAME,
    col("Value", "integer", "value represents the integer value of this priority class."),
    col("Global-Default", "boolean", "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class."),
    AGE,
    wide("PreemptionPolicy", "string", "preemptionPolicy is the Policy for preempting pods with lower priority."),
];

const COMPONENT_STATUS: &[Def] = &[
    NAME,
    col("Status", "string", "Status of the component conditions"),
    col("Message", "string", "Message of the component conditions"),
    col("Error", "string", "Error of the component conditions"),
];

pub(super) fn printer(group: &str, resource: &str) -> Option<Printer> {
    let (columns, row): (&'static [Def], RowFn) = match (group, resource) {
        ("", "services") => (SERVICE, service),
        ("", "nodes") => (NODE, node),
        ("", "namespaces") => (NAMESPACE, namespace),
        ("", "configmaps") => (CONFIG_MAP, config_map),
        ("", "secrets") => (SECRET, secret),
        ("", "serviceaccounts") => (SERVICE_ACCOUNT, service_account),
        ("", "endpoints") => (ENDPOINTS, endpoints),
        ("discovery.k8s.io", "endpointslices") => (ENDPOINT_SLICE, endpoint_slice),
        ("", "events") | ("events.k8s.io", "events") => (EVENT, event),
        ("", "persistentvolumes") => (PERSISTENT_VOLUME, persistent_volume),
        ("", "persistentvolumeclaims") => (PERSISTENT_VOLUME_CLAIM, persistent_volume_claim),
        ("", "resourcequotas") => (RESOURCE_QUOTA, resource_quota),
        ("coordination.k8s.io", "leases") => (LEASE, lease),
        ("scheduling.k8s.io", "priorityclasses") => (PRIORITY_CLASS, priority_class),
        ("", "componentstatuses") => (COMPONENT_STATUS, component_status),
        _ => return None,
    };
    Some(Printer { columns, row })
}

fn strings(obj: &Value, path: &str) -> Vec<String> {
    list(obj, path)
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

fn or_none(s: String) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s
    }
}

fn service(svc: &Value) -> Vec<Value> {
    let type_ = object::path_str(svc, "spec.type").unwrap_or_else(|| "ClusterIP".into());
    let cluster_ip = strings(svc, "spec.clusterIPs")
        .into_iter()
        .next()
        .unwrap_or_else(|| text(svc, "spec.clusterIP"));
    let ports: Vec<String> = list(svc, "spec.ports")
        .iter()
        .map(|p| {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(node_port) if node_port > 0 => format!("{port}:{node_port}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    vec![
        name(svc),
        json!(type_),
        json!(or_none(cluster_ip)),
        json!(external_ip(svc, &type_)),
        json!(or_none(ports.join(","))),
        age(svc),
        json!(format_labels(svc.pointer("/spec/selector"))),
    ]
}

/// EXTERNAL-IP as upstream prints it wide: load balancer addresses are never clipped here
/// because the server always prints wide.
fn external_ip(svc: &Value, type_: &str) -> String {
    let external = strings(svc, "spec.externalIPs");
    match type_ {
        "ClusterIP" | "NodePort" => or_none(external.join(",")),
        "LoadBalancer" => {
            let ingress: BTreeSet<String> = list(svc, "status.loadBalancer.ingress")
                .iter()
                .filter_map(|i| {
                    [i.get("ip"), i.get("hostname")]
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .find(|s| !s.is_empty())
                        .map(str::to_string)
                })
                .collect();
            let mut all: Vec<String> = ingress.into_iter().collect();
            all.extend(external);
            if all.is_empty() {
                "<pending>".into()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => text(svc, "spec.externalName"),
        _ => "<unknown>".into(),
    }
}

fn node(n: &Value) -> Vec<Value> {
    // The last Ready condition wins, as upstream indexes conditions by type.
    let ready = list(n, "status.conditions")
        .iter()
        .rev()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"));
    let mut status = vec![match ready {
        Some(c) if c.get("status").and_then(Value::as_str) == Some("True") => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if object::path(n, "spec.unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }
    let roles: BTreeSet<&str> = object::labels(n)
        .filter_map(|(k, v)| match k.strip_prefix("node-role.kubernetes.io/") {
            Some(role) => Some(role),
            None if k == "kubernetes.io/role" => Some(v),
            None => None,
        })
        .filter(|r| !r.is_empty())
        .collect();
    let address = |type_: &str| {
        list(n, "status.addresses")
            .iter()
            .find(|a| a.get("type").and_then(Value::as_str) == Some(type_))
            .and_then(|a| a.get("address").and_then(Value::as_str))
            .unwrap_or("<none>")
            .to_string()
    };
    let info = |field: &str| match text(n, &format!("status.nodeInfo.{field}")) {
        s if s.is_empty() => "<unknown>".to_string(),
        s => s,
    };
    vec![
        name(n),
        json!(status.join(",")),
        json!(or_none(roles.into_iter().collect::<Vec<_>>().join(","))),
        age(n),
        json!(text(n, "status.nodeInfo.kubeletVersion")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

fn namespace(ns: &Value) -> Vec<Value> {
    vec![name(ns), json!(text(ns, "status.phase")), age(ns)]
}

fn config_map(cm: &Value) -> Vec<Value> {
    vec![
        name(cm),
        json!(map_len(cm, "data") + map_len(cm, "binaryData")),
        age(cm),
    ]
}

fn secret(s: &Value) -> Vec<Value> {
    vec![
        name(s),
        json!(text(s, "type")),
        json!(map_len(s, "data")),
        age(s),
    ]
}

fn service_account(sa: &Value) -> Vec<Value> {
    vec![name(sa), json!(list(sa, "secrets").len()), age(sa)]
}

/// `host:port` with IPv6 hosts bracketed, as `net.JoinHostPort` writes it.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The first three addresses of a list and how many more there are.
fn first_three(list: Vec<String>, count: usize) -> String {
    let shown = list.join(",");
    if count > 3 {
        format!("{shown} + {} more...", count - 3)
    } else {
        shown
    }
}

fn endpoints(ep: &Value) -> Vec<Value> {
    let subsets = list(ep, "subsets");
    let cell = if subsets.is_empty() {
        "<none>".to_string()
    } else {
        let mut shown = Vec::new();
        let mut count = 0;
        for ss in subsets {
            let ips: Vec<&str> = list(ss, "addresses")
                .iter()
                .map(|a| a.get("ip").and_then(Value::as_str).unwrap_or(""))
                .collect();
            let ports = list(ss, "ports");
            if ports.is_empty() {
                // Headless services can have addresses without ports.
                count += ips.len();
                shown.extend(ips.iter().map(|ip| ip.to_string()));
                continue;
            }
            for p in ports {
                let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                count += ips.len();
                shown.extend(ips.iter().map(|ip| join_host_port(ip, port)));
            }
        }
        shown.truncate(3);
        first_three(shown, count)
    };
    vec![name(ep), json!(cell), age(ep)]
}

fn endpoint_slice(es: &Value) -> Vec<Value> {
    let unset = |s: String| {
        if s.is_empty() {
            "<unset>".to_string()
        } else {
            s
        }
    };
    let ports: Vec<String> = list(es, "ports")
        .iter()
        .map(|p| {
            match (
                p.get("port").and_then(Value::as_i64),
                p.get("name").and_then(Value::as_str),
            ) {
                (Some(n), _) => n.to_string(),
                (None, Some(name)) => name.to_string(),
                (None, None) => "*".to_string(),
            }
        })
        .collect();
    let port_count = ports.len();
    let addresses: Vec<String> = list(es, "endpoints")
        .iter()
        .flat_map(|e| strings(e, "addresses"))
        .collect();
    let address_count = addresses.len();
    vec![
        name(es),
        json!(text(es, "addressType")),
        json!(unset(first_three(
            ports.into_iter().take(3).collect(),
            port_count
        ))),
        json!(unset(first_three(
            addresses.into_iter().take(3).collect(),
            address_count
        ))),
        age(es),
    ]
}

/// Events are stored once and served as core/v1 and events.k8s.io/v1; the printer reads
/// either shape's field names.
fn event(ev: &Value) -> Vec<Value> {
    let pick = |paths: &[&str]| {
        paths
            .iter()
            .find_map(|p| object::path_str(ev, p).filter(|s| !s.is_empty()))
            .unwrap_or_default()
    };
    let stamp = |paths: &[&str]| Some(pick(paths)).filter(|s| !s.is_empty());
    let first_seen = match stamp(&["firstTimestamp", "deprecatedFirstTimestamp"]) {
        Some(ts) => since(Some(&ts)),
        None => since(stamp(&["eventTime"]).as_deref()),
    };
    let mut last_seen = match stamp(&["lastTimestamp", "deprecatedLastTimestamp"]) {
        Some(ts) => since(Some(&ts)),
        None => first_seen.clone(),
    };
    let mut count = [int(ev, "count"), int(ev, "deprecatedCount")]
        .into_iter()
        .max()
        .unwrap_or(0);
    if let Some(series) = ev.get("series").filter(|s| s.is_object()) {
        last_seen = since(series.get("lastObservedTime").and_then(Value::as_str));
        count = series.get("count").and_then(Value::as_i64).unwrap_or(0);
    } else if count == 0 {
        // Singleton events of the new API carry no count.
        count = 1;
    }
    let kind = pick(&["involvedObject.kind", "regarding.kind"]).to_lowercase();
    let obj_name = pick(&["involvedObject.name", "regarding.name"]);
    let target = if obj_name.is_empty() {
        kind
    } else {
        format!("{kind}/{obj_name}")
    };
    let component = pick(&[
        "source.component",
        "deprecatedSource.component",
        "reportingComponent",
        "reportingController",
    ]);
    let instance = pick(&["source.host", "deprecatedSource.host", "reportingInstance"]);
    let source = if instance.is_empty() {
        component
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last_seen),
        json!(pick(&["type"])),
        json!(pick(&["reason"])),
        json!(target),
        json!(pick(&["involvedObject.fieldPath", "regarding.fieldPath"])),
        json!(source),
        json!(pick(&["message", "note"]).trim()),
        json!(first_seen),
        json!(count),
        name(ev),
    ]
}

/// Access modes abbreviated in upstream's fixed order.
fn access_modes(obj: &Value, path: &str) -> String {
    let modes = strings(obj, path);
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| modes.iter().any(|m| m == mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The beta annotation wins over `spec.storageClassName`, as upstream's helpers read it.
fn storage_class(obj: &Value) -> String {
    obj.pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| text(obj, "spec.storageClassName"))
}

fn phase_or_terminating(obj: &Value) -> String {
    if object::meta_str(obj, "deletionTimestamp").is_some() {
        "Terminating".into()
    } else {
        text(obj, "status.phase")
    }
}

fn unset_if_missing(obj: &Value, path: &str) -> String {
    object::path_str(obj, path).unwrap_or_else(|| "<unset>".into())
}

/// A quantity as stored; absent is the zero quantity.
fn quantity(obj: &Value, path: &str) -> String {
    object::path_str(obj, path).unwrap_or_else(|| "0".into())
}

fn persistent_volume(pv: &Value) -> Vec<Value> {
    let claim = match pv.pointer("/spec/claimRef") {
        Some(r) if r.is_object() => format!("{}/{}", text(r, "namespace"), text(r, "name")),
        _ => String::new(),
    };
    vec![
        name(pv),
        json!(quantity(pv, "spec.capacity.storage")),
        json!(access_modes(pv, "spec.accessModes")),
        json!(text(pv, "spec.persistentVolumeReclaimPolicy")),
        json!(phase_or_terminating(pv)),
        json!(claim),
        json!(storage_class(pv)),
        json!(unset_if_missing(pv, "spec.volumeAttributesClassName")),
        json!(text(pv, "status.reason")),
        age(pv),
        json!(unset_if_missing(pv, "spec.volumeMode")),
    ]
}

fn persistent_volume_claim(pvc: &Value) -> Vec<Value> {
    let volume = text(pvc, "spec.volumeName");
    // Capacity and modes are the bound volume's, so they show only once bound.
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(pvc, "status.capacity.storage"),
            access_modes(pvc, "status.accessModes"),
        )
    };
    vec![
        name(pvc),
        json!(phase_or_terminating(pvc)),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(storage_class(pvc)),
        json!(unset_if_missing(pvc, "spec.volumeAttributesClassName")),
        age(pvc),
        json!(unset_if_missing(pvc, "spec.volumeMode")),
    ]
}

fn resource_quota(rq: &Value) -> Vec<Value> {
    let mut names: Vec<&String> = object::path(rq, "status.hard")
        .and_then(Value::as_object)
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    names.sort();
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for resource in names {
        let used = rq
            .pointer("/status/used")
            .and_then(|u| u.get(resource.as_str()))
            .map_or_else(|| "0".to_string(), super::int_or_string);
        let hard = rq
            .pointer("/status/hard")
            .and_then(|h| h.get(resource.as_str()))
            .map_or_else(|| "0".to_string(), super::int_or_string);
        let entry = format!("{resource}: {used}/{hard}");
        let is_limit = resource
            .split_once('.')
            .is_some_and(|(prefix, _)| prefix == "limits");
        if is_limit {
            limits.push(entry);
        } else {
            requests.push(entry);
        }
    }
    vec![
        name(rq),
        json!(requests.join(", ")),
        json!(limits.join(", ")),
        age(rq),
    ]
}

fn lease(l: &Value) -> Vec<Value> {
    vec![name(l), json!(text(l, "spec.holderIdentity")), age(l)]
}

fn priority_class(pc: &Value) -> Vec<Value> {
    vec![
        name(pc),
        json!(int(pc, "value")),
        json!(pc
            .get("globalDefault")
            .and_then(Value::as_bool)
            .unwrap_or(false)),
        age(pc),
        json!(text(pc, "preemptionPolicy")),
    ]
}

fn component_status(cs: &Value) -> Vec<Value> {
    let healthy = list(cs, "conditions")
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Healthy"));
    let (status, message, error) = match healthy {
        Some(c) => (
            if text(c, "status") == "True" {
                "Healthy"
            } else {
                "Unhealthy"
            },
            text(c, "message"),
            text(c, "error"),
        ),
        None => ("Unknown", String::new(), String::new()),
    };
    vec![name(cs), json!(status), json!(message), json!(error)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row_of(group: &str, resource: &str, obj: &Value) -> Vec<Value> {
        let p = printer(group, resource).expect("printer");
        (p.row)(obj)
    }

    #[test]
    fn service_cells_follow_upstream() {
        let cases = [
            (
                "cluster ip",
                json!({"spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                    "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}], "selector": {"k8s-app": "kube-dns"}}}),
                ["ClusterIP", "10.96.0.10", "<none>", "53/UDP,53/TCP"],
            ),
            (
                "node port",
                json!({"spec": {"type": "NodePort", "clusterIPs": ["10.0.0.5"], "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}}),
                ["NodePort", "10.0.0.5", "<none>", "80:30080/TCP"],
            ),
            (
                "load balancer pending",
                json!({"spec": {"type": "LoadBalancer", "clusterIPs": ["10.0.0.6"], "ports": [{"port": 443, "nodePort": 31443}]}}),
                ["LoadBalancer", "10.0.0.6", "<pending>", "443:31443/TCP"],
            ),
            (
                "load balancer with ingress and external ips",
                json!({"spec": {"type": "LoadBalancer", "clusterIPs": ["10.0.0.7"], "externalIPs": ["9.9.9.9"], "ports": [{"port": 80, "protocol": "TCP"}]},
                    "status": {"loadBalancer": {"ingress": [{"ip": "5.5.5.5"}, {"hostname": "lb.example.com"}]}}}),
                [
                    "LoadBalancer",
                    "10.0.0.7",
                    "5.5.5.5,lb.example.com,9.9.9.9",
                    "80/TCP",
                ],
            ),
            (
                "external ips on cluster ip",
                json!({"spec": {"clusterIPs": ["10.0.0.8"], "externalIPs": ["1.2.3.4", "1.2.3.5"], "ports": [{"port": 80}]}}),
                ["ClusterIP", "10.0.0.8", "1.2.3.4,1.2.3.5", "80/TCP"],
            ),
            (
                "headless without ports",
                json!({"spec": {"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"]}}),
                ["ClusterIP", "None", "<none>", "<none>"],
            ),
            (
                "external name",
                json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}}),
                ["ExternalName", "<none>", "db.example.com", "<none>"],
            ),
        ];
        for (name, svc, want) in cases {
            let cells = row_of("", "services", &svc);
            assert_eq!(cells[1..5], want.map(|s| json!(s)), "{name}");
        }
        let dns = json!({"spec": {"selector": {"k8s-app": "kube-dns"}}});
        assert_eq!(row_of("", "services", &dns)[6], json!("k8s-app=kube-dns"));
        assert_eq!(row_of("", "services", &json!({}))[6], json!("<none>"));
    }

    #[test]
    fn node_status_and_roles_follow_upstream() {
        let cases = [
            (
                "ready control plane",
                json!({"metadata": {"labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/hostname": "n1"}},
                    "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}]}}),
                ["Ready", "control-plane"],
            ),
            (
                "cordoned worker",
                json!({"metadata": {"labels": {"node-role.kubernetes.io/worker": "x", "node-role.kubernetes.io/infra": ""}},
                    "spec": {"unschedulable": true}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
                ["Ready,SchedulingDisabled", "infra,worker"],
            ),
            (
                "not ready with legacy role label",
                json!({"metadata": {"labels": {"kubernetes.io/role": "master"}}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
                ["NotReady", "master"],
            ),
            (
                "no conditions",
                json!({"spec": {"unschedulable": true}}),
                ["Unknown,SchedulingDisabled", "<none>"],
            ),
            (
                "empty role names are ignored",
                json!({"metadata": {"labels": {"node-role.kubernetes.io/": "", "kubernetes.io/role": ""}}}),
                ["Unknown", "<none>"],
            ),
        ];
        for (name, node, want) in cases {
            let cells = row_of("", "nodes", &node);
            assert_eq!(cells[1..3], want.map(|s| json!(s)), "{name}");
        }
        let n = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "192.168.1.10"}],
            "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian GNU/Linux 12 (bookworm)"}}});
        let cells = row_of("", "nodes", &n);
        assert_eq!(
            cells[4..],
            [
                json!("v1.33.0"),
                json!("192.168.1.10"),
                json!("<none>"),
                json!("Debian GNU/Linux 12 (bookworm)"),
                json!("<unknown>"),
                json!("<unknown>"),
            ]
        );
    }

    #[test]
    fn endpoints_list_three_addresses_and_count_the_rest() {
        let cases = [
            ("no subsets", json!({}), "<none>"),
            (
                "addresses times ports",
                json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]}]}),
                "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more...",
            ),
            (
                "headless without ports and ipv6",
                json!({"subsets": [{"addresses": [{"ip": "fd00::1"}]}, {"addresses": [{"ip": "fd00::2"}], "ports": [{"port": 53}]}]}),
                "fd00::1,[fd00::2]:53",
            ),
        ];
        for (name, ep, want) in cases {
            assert_eq!(row_of("", "endpoints", &ep)[1], json!(want), "{name}");
        }
        let slice = json!({"addressType": "IPv4", "ports": [{"port": 80}, {"name": "http"}, {}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2", "10.0.0.3", "10.0.0.4"]}]});
        let cells = row_of("discovery.k8s.io", "endpointslices", &slice);
        assert_eq!(
            cells[1..4],
            [
                json!("IPv4"),
                json!("80,http,*"),
                json!("10.0.0.1,10.0.0.2,10.0.0.3 + 1 more...")
            ]
        );
        let empty = row_of(
            "discovery.k8s.io",
            "endpointslices",
            &json!({"addressType": "IPv6"}),
        );
        assert_eq!(empty[2..4], [json!("<unset>"), json!("<unset>")]);
    }

    #[test]
    fn events_print_in_either_shape() {
        let core = json!({"metadata": {"name": "p.1"}, "type": "Warning", "reason": "BackOff", "message": " Back-off restarting \n",
            "involvedObject": {"kind": "Pod", "name": "p", "fieldPath": "spec.containers{a}"},
            "source": {"component": "kubelet", "host": "n1"}, "count": 5,
            "firstTimestamp": "2020-01-01T00:00:00Z", "lastTimestamp": "2020-01-01T00:00:00Z"});
        let v1 = json!({"metadata": {"name": "p.1"}, "type": "Warning", "reason": "BackOff", "note": "Back-off restarting",
            "regarding": {"kind": "Pod", "name": "p", "fieldPath": "spec.containers{a}"},
            "reportingController": "kubelet", "reportingInstance": "n1", "deprecatedCount": 5,
            "deprecatedFirstTimestamp": "2020-01-01T00:00:00Z", "deprecatedLastTimestamp": "2020-01-01T00:00:00Z"});
        for (group, ev) in [("", &core), ("events.k8s.io", &v1)] {
            let cells = row_of(group, "events", ev);
            assert_eq!(
                cells[1..],
                [
                    json!("Warning"),
                    json!("BackOff"),
                    json!("pod/p"),
                    json!("spec.containers{a}"),
                    json!("kubelet, n1"),
                    json!("Back-off restarting"),
                    cells[0].clone(),
                    json!(5),
                    json!("p.1"),
                ],
                "{group}"
            );
        }
        let singleton = json!({"involvedObject": {"kind": "Node"}, "series": {"count": 3, "lastObservedTime": "2020-01-01T00:00:00.000000Z"}});
        let cells = row_of("", "events", &singleton);
        assert_eq!(cells[3], json!("node"));
        assert_eq!(cells[7], json!("<unknown>"));
        assert_eq!(cells[8], json!(3));
        assert_eq!(row_of("", "events", &json!({}))[8], json!(1));
    }

    #[test]
    fn storage_and_config_cells_follow_upstream() {
        let pv = json!({"spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain", "claimRef": {"namespace": "ns", "name": "data"}, "storageClassName": "fast"},
            "status": {"phase": "Bound"}});
        let cells = row_of("", "persistentvolumes", &pv);
        assert_eq!(
            cells[1..9],
            ["10Gi", "RWO,RWX", "Retain", "Bound", "ns/data", "fast", "<unset>", ""]
                .map(|s| json!(s))
        );
        assert_eq!(cells[10], json!("<unset>"));
        let pending = json!({"metadata": {"annotations": {"volume.beta.kubernetes.io/storage-class": "slow"}},
            "spec": {"storageClassName": "fast", "volumeMode": "Filesystem"}, "status": {"phase": "Pending", "capacity": {"storage": "1Gi"}}});
        let cells = row_of("", "persistentvolumeclaims", &pending);
        assert_eq!(
            cells[1..7],
            ["Pending", "", "", "", "slow", "<unset>"].map(|s| json!(s))
        );
        assert_eq!(cells[8], json!("Filesystem"));
        let bound = json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}, "spec": {"volumeName": "pv1"},
            "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOncePod"]}});
        assert_eq!(
            row_of("", "persistentvolumeclaims", &bound)[1..5],
            ["Terminating", "pv1", "1Gi", "RWOP"].map(|s| json!(s))
        );

        let rq = json!({"status": {"hard": {"pods": "10", "limits.cpu": "4", "requests.memory": "1Gi"}, "used": {"pods": "2", "limits.cpu": "500m"}}});
        assert_eq!(
            row_of("", "resourcequotas", &rq)[1..3],
            [
                json!("pods: 2/10, requests.memory: 0/1Gi"),
                json!("limits.cpu: 500m/4")
            ]
        );
        let cm = json!({"data": {"a": "1"}, "binaryData": {"b": "AA=="}});
        assert_eq!(row_of("", "configmaps", &cm)[1], json!(2));
        let secret = json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(
            row_of("", "secrets", &secret)[1..3],
            [json!("kubernetes.io/tls"), json!(2)]
        );
        let sa = json!({"secrets": [{"name": "t"}]});
        assert_eq!(row_of("", "serviceaccounts", &sa)[1], json!(1));
        let pc = json!({"value": 1000, "globalDefault": true, "preemptionPolicy": "Never"});
        let cells = row_of("scheduling.k8s.io", "priorityclasses", &pc);
        assert_eq!(
            (cells[1].clone(), cells[2].clone(), cells[4].clone()),
            (json!(1000), json!(true), json!("Never"))
        );
        let cs = json!({"conditions": [{"type": "Healthy", "status": "True", "message": "ok"}]});
        assert_eq!(
            row_of("", "componentstatuses", &cs)[1..],
            [json!("Healthy"), json!("ok"), json!("")]
        );
        let lease = json!({"spec": {"holderIdentity": "node-1"}});
        assert_eq!(
            row_of("coordination.k8s.io", "leases", &lease)[1],
            json!("node-1")
        );
        let ns = json!({"status": {"phase": "Terminating"}});
        assert_eq!(row_of("", "namespaces", &ns)[1], json!("Terminating"));
    }
}
