//! The pod printer: READY, the aggregate STATUS and RESTARTS as upstream's printPod computes them.

use serde_json::{json, Value};

use super::{age, col, list, name, since, text, wide, Printer, AGE, NAME};
use crate::object;

const COLUMNS: &[super::Def] = &[
    NAME,
    col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
    col("Status", "string", "The aggregate status of the containers in this pod."),
    col(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    wide("IP", "string", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
    wide("Node", "string", "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod."),
    wide("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node."),
    wide("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\""),
];

pub(super) fn printer(group: &str, resource: &str) -> Option<Printer> {
    (group.is_empty() && resource == "pods").then_some(Printer {
        columns: COLUMNS,
        row,
    })
}

fn str_of<'a>(v: &'a Value, path: &str) -> &'a str {
    object::path(v, path).and_then(Value::as_str).unwrap_or("")
}

fn has_condition(pod: &Value, type_: &str) -> bool {
    list(pod, "status.conditions")
        .iter()
        .any(|c| str_of(c, "type") == type_ && str_of(c, "status") == "True")
}

/// When the container last terminated, in seconds since the epoch.
fn last_termination(status: &Value) -> Option<i64> {
    object::path(status, "lastState.terminated.finishedAt")
        .and_then(Value::as_str)
        .and_then(object::parse_rfc3339)
}

/// `Init:Signal:9`, `ExitCode:1`: a terminated container without a reason, named by how it ended.
fn exit_reason(terminated: &Value, prefix: &str) -> String {
    let signal = terminated
        .get("signal")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if signal != 0 {
        format!("{prefix}Signal:{signal}")
    } else {
        let code = terminated
            .get("exitCode")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        format!("{prefix}ExitCode:{code}")
    }
}

fn row(pod: &Value) -> Vec<Value> {
    let init_specs = list(pod, "spec.initContainers");
    // Sidecars (init containers that restart always) count as regular containers once started.
    let is_sidecar = |n: &str| {
        init_specs
            .iter()
            .any(|c| str_of(c, "name") == n && str_of(c, "restartPolicy") == "Always")
    };
    let total = list(pod, "spec.containers").len()
        + init_specs
            .iter()
            .filter(|c| str_of(c, "restartPolicy") == "Always")
            .count();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut last_restart: Option<i64> = None;
    let mut last_sidecar_restart: Option<i64> = None;

    let phase = text(pod, "status.phase");
    let mut reason = match text(pod, "status.reason") {
        r if r.is_empty() => phase.clone(),
        r => r,
    };
    if list(pod, "status.conditions")
        .iter()
        .any(|c| str_of(c, "type") == "PodScheduled" && str_of(c, "reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }

    let mut initializing = false;
    for (i, cs) in list(pod, "status.initContainerStatuses").iter().enumerate() {
        let count = cs.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
        restarts += count;
        let finished = last_termination(cs);
        last_restart = last_restart.max(finished);
        let sidecar = is_sidecar(str_of(cs, "name"));
        if sidecar {
            sidecar_restarts += count;
            last_sidecar_restart = last_sidecar_restart.max(finished);
        }
        let terminated = object::path(cs, "state.terminated");
        let waiting_reason = str_of(cs, "state.waiting.reason");
        match terminated {
            Some(t) if t.get("exitCode").and_then(Value::as_i64).unwrap_or(0) == 0 => continue,
            _ if sidecar && cs.get("started").and_then(Value::as_bool) == Some(true) => {
                if cs.get("ready").and_then(Value::as_bool) == Some(true) {
                    ready += 1;
                }
                continue;
            }
            Some(t) => {
                reason = match t.get("reason").and_then(Value::as_str).unwrap_or("") {
                    "" => exit_reason(t, "Init:"),
                    r => format!("Init:{r}"),
                };
            }
            None if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" => {
                reason = format!("Init:{waiting_reason}");
            }
            None => reason = format!("Init:{i}/{}", init_specs.len()),
        }
        initializing = true;
        break;
    }

    if !initializing || has_condition(pod, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        // Walked backwards so the first container's state wins, as upstream does.
        for cs in list(pod, "status.containerStatuses").iter().rev() {
            restarts += cs.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
            last_restart = last_restart.max(last_termination(cs));
            let waiting_reason = str_of(cs, "state.waiting.reason");
            let terminated = object::path(cs, "state.terminated");
            let terminated_reason = terminated.map(|t| str_of(t, "reason")).unwrap_or("");
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if !terminated_reason.is_empty() {
                reason = terminated_reason.to_string();
            } else if let Some(t) = terminated {
                reason = exit_reason(t, "");
            } else if cs.get("ready").and_then(Value::as_bool) == Some(true)
                && object::path(cs, "state.running").is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose completed container still has a running sibling is not done.
        if reason == "Completed" && has_running {
            reason = if has_condition(pod, "Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .into();
        }
    }

    if object::meta_str(pod, "deletionTimestamp").is_some() {
        if text(pod, "status.reason") == "NodeLost" {
            reason = "Unknown".into();
        } else if phase != "Failed" && phase != "Succeeded" {
            reason = "Terminating".into();
        }
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => {
            format!(
                "{restarts} ({} ago)",
                since(Some(&object::format_rfc3339(epoch(t))))
            )
        }
        _ => restarts.to_string(),
    };

    let none_if_empty = |s: String| {
        if s.is_empty() {
            "<none>".to_string()
        } else {
            s
        }
    };
    let ip = list(pod, "status.podIPs")
        .first()
        .map(|ip| str_of(ip, "ip").to_string())
        .unwrap_or_else(|| text(pod, "status.podIP"));
    let gates = list(pod, "spec.readinessGates");
    let gates_cell = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = list(pod, "status.conditions");
        let passing = gates
            .iter()
            .filter(|g| {
                conditions
                    .iter()
                    .find(|c| str_of(c, "type") == str_of(g, "conditionType"))
                    .is_some_and(|c| str_of(c, "status") == "True")
            })
            .count();
        format!("{passing}/{}", gates.len())
    };

    vec![
        name(pod),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        age(pod),
        json!(none_if_empty(ip)),
        json!(none_if_empty(text(pod, "spec.nodeName"))),
        json!(none_if_empty(text(pod, "status.nominatedNodeName"))),
        json!(gates_cell),
    ]
}

fn epoch(secs: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ago(secs: u64) -> String {
        object::format_rfc3339(std::time::SystemTime::now() - std::time::Duration::from_secs(secs))
    }

    fn pod(spec: Value, status: Value) -> Value {
        json!({"metadata": {"name": "p", "creationTimestamp": ago(3 * 86_400)}, "spec": spec, "status": status})
    }

    fn one(name: &str) -> Value {
        json!({"containers": [{"name": name}]})
    }

    #[test]
    fn pod_status_is_computed_like_upstream() {
        let cases: Vec<(&str, Value, &str, &str)> = vec![
            // (name, pod, READY, STATUS)
            (
                "pending without statuses shows the phase",
                pod(one("a"), json!({"phase": "Pending"})),
                "0/1",
                "Pending",
            ),
            (
                "running and ready",
                pod(
                    one("a"),
                    json!({"phase": "Running", "containerStatuses": [
                    {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}}]}),
                ),
                "1/1",
                "Running",
            ),
            (
                "waiting reason wins",
                pod(
                    one("a"),
                    json!({"phase": "Pending", "containerStatuses": [
                    {"name": "a", "ready": false, "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
                ),
                "0/1",
                "ContainerCreating",
            ),
            (
                "crash loop",
                pod(
                    one("a"),
                    json!({"phase": "Running", "containerStatuses": [
                    {"name": "a", "ready": false, "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
                ),
                "0/1",
                "CrashLoopBackOff",
            ),
            (
                "terminated reason",
                pod(
                    one("a"),
                    json!({"phase": "Failed", "containerStatuses": [
                    {"name": "a", "state": {"terminated": {"reason": "Error", "exitCode": 1}}}]}),
                ),
                "0/1",
                "Error",
            ),
            (
                "terminated without reason shows the exit code",
                pod(
                    one("a"),
                    json!({"phase": "Failed", "containerStatuses": [
                    {"name": "a", "state": {"terminated": {"exitCode": 2}}}]}),
                ),
                "0/1",
                "ExitCode:2",
            ),
            (
                "terminated by signal",
                pod(
                    one("a"),
                    json!({"phase": "Failed", "containerStatuses": [
                    {"name": "a", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}),
                ),
                "0/1",
                "Signal:9",
            ),
            (
                "completed",
                pod(
                    one("a"),
                    json!({"phase": "Succeeded", "containerStatuses": [
                    {"name": "a", "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]}),
                ),
                "0/1",
                "Completed",
            ),
            (
                "completed with a running sibling and ready condition is running",
                pod(
                    json!({"containers": [{"name": "a"}, {"name": "b"}]}),
                    json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}], "containerStatuses": [
                        {"name": "a", "state": {"terminated": {"reason": "Completed", "exitCode": 0}}},
                        {"name": "b", "ready": true, "state": {"running": {}}}]}),
                ),
                "1/2",
                "Running",
            ),
            (
                "completed with a running sibling and no ready condition is not ready",
                pod(
                    json!({"containers": [{"name": "a"}, {"name": "b"}]}),
                    json!({"phase": "Running", "containerStatuses": [
                        {"name": "a", "state": {"terminated": {"reason": "Completed", "exitCode": 0}}},
                        {"name": "b", "ready": true, "state": {"running": {}}}]}),
                ),
                "1/2",
                "NotReady",
            ),
            (
                "first init container pending",
                pod(
                    json!({"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]}),
                    json!({"phase": "Pending", "initContainerStatuses": [
                        {"name": "i", "state": {"waiting": {"reason": "PodInitializing"}}}]}),
                ),
                "0/1",
                "Init:0/1",
            ),
            (
                "second init container running",
                pod(
                    json!({"initContainers": [{"name": "i"}, {"name": "j"}], "containers": [{"name": "a"}]}),
                    json!({"phase": "Pending", "initContainerStatuses": [
                        {"name": "i", "state": {"terminated": {"exitCode": 0}}},
                        {"name": "j", "state": {"running": {}}}]}),
                ),
                "0/1",
                "Init:1/2",
            ),
            (
                "init container waiting with a reason",
                pod(
                    json!({"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]}),
                    json!({"phase": "Pending", "initContainerStatuses": [
                        {"name": "i", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}),
                ),
                "0/1",
                "Init:ImagePullBackOff",
            ),
            (
                "init container failed",
                pod(
                    json!({"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]}),
                    json!({"phase": "Pending", "initContainerStatuses": [
                        {"name": "i", "state": {"terminated": {"exitCode": 3}}}]}),
                ),
                "0/1",
                "Init:ExitCode:3",
            ),
            (
                "started sidecar counts as a ready container",
                pod(
                    json!({"initContainers": [{"name": "s", "restartPolicy": "Always"}], "containers": [{"name": "a"}]}),
                    json!({"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
                        "initContainerStatuses": [{"name": "s", "started": true, "ready": true, "state": {"running": {}}}],
                        "containerStatuses": [{"name": "a", "ready": true, "state": {"running": {}}}]}),
                ),
                "2/2",
                "Running",
            ),
            (
                "scheduling gated",
                pod(
                    one("a"),
                    json!({"phase": "Pending", "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
                ),
                "0/1",
                "SchedulingGated",
            ),
            (
                "status reason replaces the phase",
                pod(one("a"), json!({"phase": "Failed", "reason": "Evicted"})),
                "0/1",
                "Evicted",
            ),
        ];
        for (name, p, want_ready, want_status) in cases {
            let cells = row(&p);
            assert_eq!(cells[1], json!(want_ready), "{name}: READY");
            assert_eq!(cells[2], json!(want_status), "{name}: STATUS");
        }
    }

    #[test]
    fn deletion_marks_running_pods_terminating_but_not_finished_ones() {
        let cases = [
            ("Running", None, "Terminating"),
            ("Succeeded", None, "Succeeded"),
            ("Running", Some("NodeLost"), "Unknown"),
        ];
        for (phase, reason, want) in cases {
            let mut p = pod(one("a"), json!({"phase": phase}));
            p["metadata"]["deletionTimestamp"] = json!(ago(5));
            if let Some(r) = reason {
                p["status"]["reason"] = json!(r);
            }
            assert_eq!(row(&p)[2], json!(want), "{phase} {reason:?}");
        }
    }

    #[test]
    fn restarts_show_when_the_last_one_happened() {
        let p = pod(
            one("a"),
            json!({"phase": "Running", "containerStatuses": [{"name": "a", "ready": true, "restartCount": 3,
                "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(20 * 60 + 5)}}}]}),
        );
        assert_eq!(row(&p)[3], json!("3 (20m ago)"));
        let fresh = pod(
            one("a"),
            json!({"phase": "Running", "containerStatuses": [{"name": "a", "restartCount": 0}]}),
        );
        assert_eq!(row(&fresh)[3], json!("0"));
        let unknown_time = pod(
            one("a"),
            json!({"phase": "Running", "containerStatuses": [{"name": "a", "restartCount": 2}]}),
        );
        assert_eq!(row(&unknown_time)[3], json!("2"));
    }

    #[test]
    fn wide_cells_show_ip_node_and_readiness_gates() {
        let p = pod(
            json!({"containers": [{"name": "a"}], "nodeName": "n1",
                "readinessGates": [{"conditionType": "g1"}, {"conditionType": "g2"}]}),
            json!({"phase": "Running", "podIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}],
                "conditions": [{"type": "g1", "status": "True"}, {"type": "g2", "status": "False"}]}),
        );
        let cells = row(&p);
        assert_eq!(cells[4], json!("3d"));
        assert_eq!(
            cells[5..],
            [
                json!("10.0.0.1"),
                json!("n1"),
                json!("<none>"),
                json!("1/2")
            ]
        );
        let bare = row(&pod(one("a"), json!({})));
        assert_eq!(
            bare[5..],
            [
                json!("<none>"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>")
            ]
        );
    }
}
