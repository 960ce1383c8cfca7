//! Printers of workload controllers, jobs, controller revisions, pod templates and PDBs.

use serde_json::{json, Value};

use super::{
    age, col, container_cells, format_label_selector, format_labels, human_duration, int,
    int_or_string, list, name, since, text, wide, Def, Printer, RowFn, AGE, CONTAINERS_DESC,
    IMAGES_DESC, NAME,
};
use crate::object;
use crate::selector::LabelSelector;

const CONTAINERS: Def = wide("Containers", "string", CONTAINERS_DESC);
const IMAGES: Def = wide("Images", "string", IMAGES_DESC);
const SELECTOR: Def = wide("Selector", "string", "A label query over pods that should match the replica count. Label keys and values that must match in order to be controlled by this controller. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors");

const DEPLOYMENT: &[Def] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
    col("Available", "string", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const REPLICA_SET: &[Def] = &[
    NAME,
    col("Desired", "integer", "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller"),
    col("Current", "integer", "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller"),
    col("Ready", "integer", "The number of ready replicas for this replica set."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const STATEFUL_SET: &[Def] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    AGE,
    CONTAINERS,
    IMAGES,
];

const DAEMON_SET: &[Def] = &[
    NAME,
    col("Desired", "integer", "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"),
    col("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"),
    col("Ready", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
    col("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
    col("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
    col("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/"),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const JOB: &[Def] = &[
    NAME,
    col("Status", "string", "Status of the job."),
    col(
        "Completions",
        "string",
        "The number of pods which reached phase Succeeded.",
    ),
    col("Duration", "string", "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const CRON_JOB: &[Def] = &[
    NAME,
    col("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
    col("Timezone", "string", "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones."),
    col("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions. Defaults to false."),
    col("Active", "integer", "A list of pointers to currently running jobs."),
    col("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const CONTROLLER_REVISION: &[Def] = &[
    NAME,
    col("Controller", "string", "Controller of the object"),
    col(
        "Revision",
        "string",
        "Revision indicates the revision of the state represented by Data.",
    ),
    AGE,
];

const POD_TEMPLATE: &[Def] = &[
    NAME,
    col("Containers", "string", CONTAINERS_DESC),
    col("Images", "string", IMAGES_DESC),
    col("Pod Labels", "string", "The labels for the pod template."),
];

const PDB: &[Def] = &[
    NAME,
    col(
        "Min Available",
        "string",
        "The minimum number of pods that must be available.",
    ),
    col(
        "Max Unavailable",
        "string",
        "The maximum number of pods that may be unavailable.",
    ),
    col(
        "Allowed Disruptions",
        "integer",
        "Calculated number of pods that may be disrupted at this time.",
    ),
    AGE,
];

pub(super) fn printer(group: &str, resource: &str) -> Option<Printer> {
    let (columns, row): (&'static [Def], RowFn) = match (group, resource) {
        ("apps", "deployments") => (DEPLOYMENT, deployment),
        ("apps", "replicasets") => (REPLICA_SET, replica_set),
        ("", "replicationcontrollers") => (REPLICA_SET, replication_controller),
        ("apps", "statefulsets") => (STATEFUL_SET, stateful_set),
        ("apps", "daemonsets") => (DAEMON_SET, daemon_set),
        ("batch", "jobs") => (JOB, job),
        ("batch", "cronjobs") => (CRON_JOB, cron_job),
        ("apps", "controllerrevisions") => (CONTROLLER_REVISION, controller_revision),
        ("", "podtemplates") => (POD_TEMPLATE, pod_template),
        ("policy", "poddisruptionbudgets") => (PDB, pdb),
        _ => return None,
    };
    Some(Printer { columns, row })
}

/// `spec.replicas`, which v1 defaulting sets to 1 when a client leaves it out.
fn desired(obj: &Value) -> i64 {
    object::path(obj, "spec.replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn template_spec<'a>(obj: &'a Value, template: &str) -> Option<&'a Value> {
    object::path(obj, template)?.get("spec")
}

fn deployment(d: &Value) -> Vec<Value> {
    let (containers, images) = container_cells(template_spec(d, "spec.template"));
    // Deployments print the bare selector string, empty rather than <none>.
    let selector =
        match LabelSelector::from_json(d.pointer("/spec/selector").unwrap_or(&Value::Null)) {
            Ok(s) => s.to_string(),
            Err(_) => "<invalid>".into(),
        };
    vec![
        name(d),
        json!(format!("{}/{}", int(d, "status.readyReplicas"), desired(d))),
        json!(int(d, "status.updatedReplicas")),
        json!(int(d, "status.availableReplicas")),
        age(d),
        containers,
        images,
        json!(selector),
    ]
}

fn replica_set(rs: &Value) -> Vec<Value> {
    let (containers, images) = container_cells(template_spec(rs, "spec.template"));
    vec![
        name(rs),
        json!(desired(rs)),
        json!(int(rs, "status.replicas")),
        json!(int(rs, "status.readyReplicas")),
        age(rs),
        containers,
        images,
        json!(format_label_selector(rs.pointer("/spec/selector"))),
    ]
}

fn replication_controller(rc: &Value) -> Vec<Value> {
    let (containers, images) = container_cells(template_spec(rc, "spec.template"));
    vec![
        name(rc),
        json!(desired(rc)),
        json!(int(rc, "status.replicas")),
        json!(int(rc, "status.readyReplicas")),
        age(rc),
        containers,
        images,
        json!(format_labels(rc.pointer("/spec/selector"))),
    ]
}

fn stateful_set(s: &Value) -> Vec<Value> {
    let (containers, images) = container_cells(template_spec(s, "spec.template"));
    vec![
        name(s),
        json!(format!("{}/{}", int(s, "status.readyReplicas"), desired(s))),
        age(s),
        containers,
        images,
    ]
}

fn daemon_set(ds: &Value) -> Vec<Value> {
    let spec = template_spec(ds, "spec.template");
    let (containers, images) = container_cells(spec);
    vec![
        name(ds),
        json!(int(ds, "status.desiredNumberScheduled")),
        json!(int(ds, "status.currentNumberScheduled")),
        json!(int(ds, "status.numberReady")),
        json!(int(ds, "status.updatedNumberScheduled")),
        json!(int(ds, "status.numberAvailable")),
        json!(format_labels(spec.and_then(|s| s.get("nodeSelector")))),
        age(ds),
        containers,
        images,
        json!(format_label_selector(ds.pointer("/spec/selector"))),
    ]
}

/// A condition of the given type, if present, is True (upstream looks at the first match only).
fn condition_true(obj: &Value, type_: &str) -> bool {
    list(obj, "status.conditions")
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
        .is_some_and(|c| c.get("status").and_then(Value::as_str) == Some("True"))
}

fn timestamp(obj: &Value, path: &str) -> Option<i64> {
    object::path(obj, path)
        .and_then(Value::as_str)
        .and_then(object::parse_rfc3339)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn job(j: &Value) -> Vec<Value> {
    let succeeded = int(j, "status.succeeded");
    let completions = match object::path(j, "spec.completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int(j, "spec.parallelism") {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (
        timestamp(j, "status.startTime"),
        timestamp(j, "status.completionTime"),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now() - start),
        (Some(start), Some(end)) => human_duration(end - start),
    };
    let status = if condition_true(j, "Complete") {
        "Complete"
    } else if condition_true(j, "Failed") {
        "Failed"
    } else if object::meta_str(j, "deletionTimestamp").is_some() {
        "Terminating"
    } else if condition_true(j, "Suspended") {
        "Suspended"
    } else if condition_true(j, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (containers, images) = container_cells(template_spec(j, "spec.template"));
    vec![
        name(j),
        json!(status),
        json!(completions),
        json!(duration),
        age(j),
        containers,
        images,
        json!(format_label_selector(j.pointer("/spec/selector"))),
    ]
}

fn cron_job(cj: &Value) -> Vec<Value> {
    let last_schedule = match object::path(cj, "status.lastScheduleTime").and_then(Value::as_str) {
        Some(ts) => since(Some(ts)),
        None => "<none>".into(),
    };
    let time_zone = object::path_str(cj, "spec.timeZone").unwrap_or_else(|| "<none>".into());
    let suspend = match object::path(cj, "spec.suspend").and_then(Value::as_bool) {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let job_template = object::path(cj, "spec.jobTemplate.spec");
    let (containers, images) = container_cells(
        job_template
            .and_then(|s| s.get("template"))
            .and_then(|t| t.get("spec")),
    );
    vec![
        name(cj),
        json!(text(cj, "spec.schedule")),
        json!(time_zone),
        json!(suspend),
        json!(list(cj, "status.active").len()),
        json!(last_schedule),
        age(cj),
        containers,
        images,
        json!(format_label_selector(
            job_template.and_then(|s| s.get("selector"))
        )),
    ]
}

fn controller_revision(cr: &Value) -> Vec<Value> {
    let owner = object::path(cr, "metadata.ownerReferences")
        .and_then(Value::as_array)
        .and_then(|refs| {
            refs.iter()
                .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        });
    let controller = match owner {
        None => "<none>".to_string(),
        Some(r) => {
            let api_version = r.get("apiVersion").and_then(Value::as_str).unwrap_or("");
            let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
            let kind = r.get("kind").and_then(Value::as_str).unwrap_or("");
            let owner_name = r.get("name").and_then(Value::as_str).unwrap_or("");
            let group_kind = if group.is_empty() {
                kind.to_string()
            } else {
                format!("{kind}.{group}")
            };
            if group_kind.is_empty() {
                owner_name.to_string()
            } else {
                format!("{}/{owner_name}", group_kind.to_lowercase())
            }
        }
    };
    vec![
        name(cr),
        json!(controller),
        json!(int(cr, "revision")),
        age(cr),
    ]
}

fn pod_template(pt: &Value) -> Vec<Value> {
    let (containers, images) = container_cells(template_spec(pt, "template"));
    vec![
        name(pt),
        containers,
        images,
        json!(format_labels(pt.pointer("/template/metadata/labels"))),
    ]
}

fn pdb(p: &Value) -> Vec<Value> {
    let bound = |path: &str| object::path(p, path).map_or_else(|| "N/A".to_string(), int_or_string);
    vec![
        name(p),
        json!(bound("spec.minAvailable")),
        json!(bound("spec.maxUnavailable")),
        json!(int(p, "status.disruptionsAllowed")),
        age(p),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ago(secs: u64) -> String {
        object::format_rfc3339(std::time::SystemTime::now() - std::time::Duration::from_secs(secs))
    }

    fn row_of(group: &str, resource: &str, obj: &Value) -> Vec<Value> {
        let p = printer(group, resource).expect("printer");
        (p.row)(obj)
    }

    #[test]
    fn deployment_ready_is_ready_over_desired() {
        let template = json!({"spec": {"containers": [{"name": "web", "image": "nginx:1"}, {"name": "log", "image": "busybox"}]}});
        let cases = [
            (
                "all ready",
                json!({"spec": {"replicas": 3, "template": template, "selector": {"matchLabels": {"app": "web"}}},
                    "status": {"readyReplicas": 3, "updatedReplicas": 3, "availableReplicas": 3}}),
                json!(["3/3", 3, 3]),
            ),
            (
                "rolling",
                json!({"spec": {"replicas": 3, "template": template}, "status": {"readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1}}),
                json!(["1/3", 2, 1]),
            ),
            (
                "no status yet",
                json!({"spec": {"replicas": 2}}),
                json!(["0/2", 0, 0]),
            ),
            (
                "replicas defaulted",
                json!({"spec": {}}),
                json!(["0/1", 0, 0]),
            ),
            (
                "scaled to zero",
                json!({"spec": {"replicas": 0}}),
                json!(["0/0", 0, 0]),
            ),
        ];
        for (name, d, want) in &cases {
            let cells = row_of("apps", "deployments", d);
            assert_eq!(json!(cells[1..4]), *want, "{name}");
        }
        let d = &cases[0].1;
        let cells = row_of("apps", "deployments", d);
        assert_eq!(
            cells[5..],
            [json!("web,log"), json!("nginx:1,busybox"), json!("app=web")]
        );
        assert_eq!(row_of("apps", "deployments", &cases[2].1)[7], json!(""));
    }

    #[test]
    fn job_status_completions_and_duration_follow_upstream() {
        let cases = [
            (
                "complete with completions",
                json!({"spec": {"completions": 3}, "status": {"succeeded": 3, "startTime": "2024-01-01T00:00:00Z",
                    "completionTime": "2024-01-01T00:02:05Z", "conditions": [{"type": "Complete", "status": "True"}]}}),
                ["Complete", "3/3", "2m5s"],
            ),
            (
                "parallel without completions",
                json!({"spec": {"parallelism": 4}, "status": {"succeeded": 1}}),
                ["Running", "1/1 of 4", ""],
            ),
            (
                "failed",
                json!({"spec": {}, "status": {"conditions": [{"type": "Failed", "status": "True"}]}}),
                ["Failed", "0/1", ""],
            ),
            (
                "suspended",
                json!({"spec": {"completions": 1}, "status": {"conditions": [{"type": "Suspended", "status": "True"}]}}),
                ["Suspended", "0/1", ""],
            ),
            (
                "terminating",
                json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}, "spec": {}}),
                ["Terminating", "0/1", ""],
            ),
        ];
        for (name, j, want) in cases {
            let cells = row_of("batch", "jobs", &j);
            assert_eq!(cells[1..4], want.map(|s| json!(s)), "{name}");
        }
    }

    #[test]
    fn cron_jobs_show_schedule_suspend_and_last_run() {
        let cj = json!({"spec": {"schedule": "*/5 * * * *", "suspend": false,
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}},
            "status": {"active": [{"name": "j1"}], "lastScheduleTime": ago(20 * 60 + 5)}});
        let cells = row_of("batch", "cronjobs", &cj);
        assert_eq!(
            cells[1..6],
            [
                json!("*/5 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("20m")
            ]
        );
        assert_eq!(cells[7..], [json!("c"), json!("i"), json!("<none>")]);
        let unset = row_of(
            "batch",
            "cronjobs",
            &json!({"spec": {"schedule": "@daily"}}),
        );
        assert_eq!(unset[3], json!("<unset>"));
        assert_eq!(unset[5], json!("<none>"));
    }

    #[test]
    fn sets_controllers_and_budgets_fill_their_cells() {
        let cases = [
            (
                "statefulset ready",
                ("apps", "statefulsets"),
                json!({"spec": {"replicas": 3}, "status": {"readyReplicas": 2}}),
                1,
                json!("2/3"),
            ),
            (
                "daemonset node selector",
                ("apps", "daemonsets"),
                json!({"spec": {"template": {"spec": {"nodeSelector": {"os": "linux"}}}}}),
                6,
                json!("os=linux"),
            ),
            (
                "replicaset selector",
                ("apps", "replicasets"),
                json!({"spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["b", "a"]}]}}}),
                7,
                json!("app in (a,b)"),
            ),
            (
                "rc selector map",
                ("", "replicationcontrollers"),
                json!({"spec": {"replicas": 2, "selector": {"app": "web"}}}),
                7,
                json!("app=web"),
            ),
            (
                "controller revision owner",
                ("apps", "controllerrevisions"),
                json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "controller": true}]}, "revision": 4}),
                1,
                json!("statefulset.apps/db"),
            ),
            (
                "pdb percentage",
                ("policy", "poddisruptionbudgets"),
                json!({"spec": {"maxUnavailable": "25%"}, "status": {"disruptionsAllowed": 1}}),
                2,
                json!("25%"),
            ),
            (
                "pdb unset bound",
                ("policy", "poddisruptionbudgets"),
                json!({"spec": {"maxUnavailable": 1}}),
                1,
                json!("N/A"),
            ),
            (
                "pod template labels",
                ("", "podtemplates"),
                json!({"template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}),
                3,
                json!("app=x"),
            ),
        ];
        for (name, (group, resource), obj, cell, want) in cases {
            assert_eq!(row_of(group, resource, &obj)[cell], want, "{name}");
        }
    }
}
