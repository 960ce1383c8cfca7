//! Pod status from what the runtime reports: container states, phase and conditions as upstream.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::chrono::{DateTime, Utc};

use crate::cri::api;
use crate::pod::resources;

/// A waiting reason the kubelet decided on (image errors, back-off, config errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

/// What the worker observed of one pod in the runtime.
#[derive(Debug, Default)]
pub struct Observed {
    /// A sandbox exists and is ready.
    pub sandbox_ready: bool,
    pub pod_ip: Option<String>,
    /// Instances per container name, newest (highest attempt) first.
    pub instances: HashMap<String, Vec<api::ContainerStatus>>,
    /// Waiting reasons per container name, overriding what the instances say.
    pub waiting: HashMap<String, Waiting>,
    /// Prefix of container IDs, e.g. `containerd`.
    pub runtime_name: String,
    /// Running containers that are not ready (readiness probe, or startup not yet passed).
    pub unready: std::collections::HashSet<String>,
    /// Running containers whose startup probe has not succeeded yet.
    pub not_started: std::collections::HashSet<String>,
}

fn time(ns: i64) -> Option<Time> {
    (ns > 0).then(|| Time(DateTime::<Utc>::from_timestamp_nanos(ns)))
}

fn terminated(c: &api::ContainerStatus, runtime: &str) -> ContainerStateTerminated {
    let reason = if !c.reason.is_empty() {
        c.reason.clone()
    } else if c.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
    ContainerStateTerminated {
        exit_code: c.exit_code,
        reason: Some(reason),
        message: (!c.message.is_empty()).then(|| c.message.clone()),
        started_at: time(c.started_at),
        finished_at: time(c.finished_at),
        container_id: Some(format!("{runtime}://{}", c.id)),
        signal: None,
    }
}

pub fn is_running(c: &api::ContainerStatus) -> bool {
    c.state == api::ContainerState::ContainerRunning as i32
}

pub fn is_exited(c: &api::ContainerStatus) -> bool {
    c.state == api::ContainerState::ContainerExited as i32
}

fn waiting_state(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message,
        }),
        ..Default::default()
    }
}

/// One container's status; `default_waiting` is the reason shown before it first runs
/// (ContainerCreating, or PodInitializing while init containers run).
pub fn container_status(
    spec: &Container,
    instances: &[api::ContainerStatus],
    waiting: Option<&Waiting>,
    runtime: &str,
    default_waiting: &str,
) -> ContainerStatus {
    let latest = instances.first();
    let previous = instances.get(1);
    let last_terminated = |c: Option<&api::ContainerStatus>| {
        c.filter(|c| is_exited(c)).map(|c| ContainerState {
            terminated: Some(terminated(c, runtime)),
            ..Default::default()
        })
    };
    let (state, last_state) = match (latest, waiting) {
        (Some(c), Some(w)) if is_exited(c) => (
            waiting_state(&w.reason, Some(w.message.clone())),
            last_terminated(Some(c)),
        ),
        (Some(c), _) if is_running(c) => (
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: time(c.started_at),
                }),
                ..Default::default()
            },
            last_terminated(previous),
        ),
        (Some(c), _) if is_exited(c) => (
            ContainerState {
                terminated: Some(terminated(c, runtime)),
                ..Default::default()
            },
            last_terminated(previous),
        ),
        (_, Some(w)) => (
            waiting_state(&w.reason, Some(w.message.clone())),
            last_terminated(previous),
        ),
        _ => (
            waiting_state(default_waiting, None),
            last_terminated(previous),
        ),
    };
    let running = latest.is_some_and(is_running);
    ContainerStatus {
        name: spec.name.clone(),
        image: spec.image.clone().unwrap_or_default(),
        image_id: latest.map(|c| c.image_ref.clone()).unwrap_or_default(),
        container_id: latest.map(|c| format!("{runtime}://{}", c.id)),
        restart_count: latest.map_or(0, |c| c.metadata.as_ref().map_or(0, |m| m.attempt) as i32),
        ready: running,
        started: Some(running),
        state: Some(state),
        last_state: Some(last_state.unwrap_or_default()),
        ..Default::default()
    }
}

/// Whether a container has run at all (running now, or terminated now or before).
fn has_run(s: &ContainerStatus) -> bool {
    let state = s.state.as_ref();
    state.is_some_and(|st| st.running.is_some() || st.terminated.is_some())
        || s.last_state
            .as_ref()
            .is_some_and(|st| st.terminated.is_some())
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// Upstream's getPhase over the containers' statuses.
pub fn phase(pod: &Pod, init: &[ContainerStatus], main: &[ContainerStatus]) -> &'static str {
    let policy = restart_policy(pod);
    let terminated = |s: &ContainerStatus| {
        s.state
            .as_ref()
            .and_then(|st| st.terminated.as_ref())
            .map(|t| t.exit_code)
    };
    let last_terminated = |s: &ContainerStatus| {
        s.last_state
            .as_ref()
            .and_then(|st| st.terminated.as_ref())
            .map(|t| t.exit_code)
    };
    let sidecar = |name: &str| {
        pod.spec
            .as_ref()
            .and_then(|s| s.init_containers.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.name == name && crate::pod::sidecars::is_sidecar(c))
    };
    let main_ran = main.iter().any(has_run);
    for s in init {
        if sidecar(&s.name) {
            // Sidecars never decide the phase; the pod waits only until they have started.
            if main_ran || s.started == Some(true) {
                continue;
            }
            return "Pending";
        }
        match terminated(s) {
            Some(0) => continue,
            Some(_) if policy == "Never" => return "Failed",
            _ => return "Pending",
        }
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in main {
        let st = s.state.as_ref();
        if st.and_then(|st| st.running.as_ref()).is_some() {
            running += 1;
        } else if let Some(code) = terminated(s) {
            stopped += 1;
            if code == 0 {
                succeeded += 1;
            }
        } else if last_terminated(s).is_some() {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        return match policy {
            "Always" => "Running",
            "OnFailure" if stopped == succeeded => "Succeeded",
            "OnFailure" => "Running",
            _ if stopped == succeeded => "Succeeded",
            _ => "Failed",
        };
    }
    "Pending"
}

fn condition(
    old: &[PodCondition],
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: &Time,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let transition = old
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    PodCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.map(str::to_string),
        message,
        last_transition_time: Some(transition),
        last_probe_time: None,
        observed_generation: None,
    }
}

/// The full status the kubelet reports for `pod`.
pub fn pod_status(
    pod: &Pod,
    obs: &Observed,
    host_ip: &str,
    start_time: &Time,
    now: &Time,
) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let empty = Vec::new();
    let instances = |name: &str| obs.instances.get(name).unwrap_or(&empty).as_slice();
    let sidecar_names: Vec<&str> = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| crate::pod::sidecars::is_sidecar(c))
        .map(|c| c.name.as_str())
        .collect();
    let probed = |mut s: ContainerStatus| {
        if obs.unready.contains(&s.name) {
            s.ready = false;
        }
        if obs.not_started.contains(&s.name) {
            s.started = Some(false);
        }
        s
    };
    let init: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            let s = container_status(
                c,
                instances(&c.name),
                obs.waiting.get(&c.name),
                &obs.runtime_name,
                "PodInitializing",
            );
            if sidecar_names.contains(&c.name.as_str()) {
                probed(s)
            } else {
                s
            }
        })
        .collect();
    let incomplete_init: Vec<&str> = init
        .iter()
        .filter(|s| {
            if sidecar_names.contains(&s.name.as_str()) {
                return s.started != Some(true);
            }
            s.state
                .as_ref()
                .and_then(|st| st.terminated.as_ref())
                .is_none_or(|t| t.exit_code != 0)
        })
        .map(|s| s.name.as_str())
        .collect();
    // A pod whose main containers have run stays initialized (a restarting sidecar does not
    // undo it).
    let main_ran = spec
        .containers
        .iter()
        .any(|c| !instances(&c.name).is_empty());
    let initialized = incomplete_init.is_empty() || main_ran;
    let main: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| {
            let default = if initialized {
                "ContainerCreating"
            } else {
                "PodInitializing"
            };
            container_status(
                c,
                instances(&c.name),
                obs.waiting.get(&c.name),
                &obs.runtime_name,
                default,
            )
        })
        .map(probed)
        .collect();
    let phase = phase(pod, &init, &main);
    let old_conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let unready: Vec<&str> = init
        .iter()
        .filter(|s| sidecar_names.contains(&s.name.as_str()))
        .chain(&main)
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let completed = phase == "Succeeded";
    let (ready, ready_reason, ready_message) = if completed {
        (false, Some("PodCompleted"), None)
    } else if unready.is_empty() {
        (true, None, None)
    } else {
        (
            false,
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    let mut conditions = vec![
        condition(
            &old_conditions,
            "PodReadyToStartContainers",
            obs.sandbox_ready,
            None,
            None,
            now,
        ),
        condition(
            &old_conditions,
            "Initialized",
            initialized || completed,
            (!(initialized || completed)).then_some("ContainersNotInitialized"),
            (!initialized).then(|| {
                format!(
                    "containers with incomplete status: [{}]",
                    incomplete_init.join(" ")
                )
            }),
            now,
        ),
        condition(
            &old_conditions,
            "Ready",
            ready,
            ready_reason,
            ready_message.clone(),
            now,
        ),
        condition(
            &old_conditions,
            "ContainersReady",
            ready,
            ready_reason,
            ready_message,
            now,
        ),
    ];
    if let Some(scheduled) = old_conditions.iter().find(|c| c.type_ == "PodScheduled") {
        conditions.push(scheduled.clone());
    }
    let host_network = spec.host_network.unwrap_or(false);
    let pod_ip = if host_network {
        Some(host_ip.to_string())
    } else {
        obs.pod_ip.clone().filter(|ip| !ip.is_empty())
    };
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: Some(host_ip.to_string()),
        host_ips: Some(vec![HostIP {
            ip: host_ip.to_string(),
        }]),
        pod_ip: pod_ip.clone(),
        pod_ips: pod_ip.map(|ip| vec![PodIP { ip }]),
        start_time: Some(start_time.clone()),
        qos_class: Some(resources::qos_class(pod).to_string()),
        init_container_statuses: (!init.is_empty()).then_some(init),
        container_statuses: Some(main),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn instance(
        name: &str,
        attempt: u32,
        state: api::ContainerState,
        exit: i32,
    ) -> api::ContainerStatus {
        api::ContainerStatus {
            id: format!("{name}-{attempt}"),
            metadata: Some(api::ContainerMetadata {
                name: name.into(),
                attempt,
            }),
            state: state as i32,
            exit_code: exit,
            started_at: 1_700_000_000_000_000_000,
            finished_at: if state == api::ContainerState::ContainerExited {
                1_700_000_001_000_000_000
            } else {
                0
            },
            image_ref: "sha256:abc".into(),
            ..Default::default()
        }
    }

    fn pod(policy: &str, containers: &[&str], init: &[&str]) -> Pod {
        let c = |n: &&str| Container {
            name: n.to_string(),
            image: Some("busybox".into()),
            ..Default::default()
        };
        Pod {
            spec: Some(PodSpec {
                restart_policy: Some(policy.into()),
                containers: containers.iter().map(c).collect(),
                init_containers: (!init.is_empty()).then(|| init.iter().map(c).collect()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn now() -> Time {
        Time(DateTime::<Utc>::from_timestamp_nanos(
            1_700_000_002_000_000_000,
        ))
    }

    fn observed(instances: Vec<api::ContainerStatus>) -> Observed {
        let mut obs = Observed {
            sandbox_ready: true,
            pod_ip: Some("10.88.0.5".into()),
            runtime_name: "containerd".into(),
            ..Default::default()
        };
        for i in instances {
            let name = i.metadata.as_ref().expect("metadata").name.clone();
            obs.instances.entry(name).or_default().push(i);
        }
        for list in obs.instances.values_mut() {
            list.sort_by_key(|c| std::cmp::Reverse(c.metadata.as_ref().map(|m| m.attempt)));
        }
        obs
    }

    use api::ContainerState::{ContainerExited as Exited, ContainerRunning as Running};

    #[test]
    fn phases() {
        let cases: Vec<(&str, Pod, Vec<api::ContainerStatus>, &str)> = vec![
            (
                "nothing started",
                pod("Always", &["a"], &[]),
                vec![],
                "Pending",
            ),
            (
                "running",
                pod("Always", &["a"], &[]),
                vec![instance("a", 0, Running, 0)],
                "Running",
            ),
            (
                "exited, Always restarts",
                pod("Always", &["a"], &[]),
                vec![instance("a", 0, Exited, 1)],
                "Running",
            ),
            (
                "exited 0, Never",
                pod("Never", &["a"], &[]),
                vec![instance("a", 0, Exited, 0)],
                "Succeeded",
            ),
            (
                "exited 1, Never",
                pod("Never", &["a"], &[]),
                vec![instance("a", 0, Exited, 1)],
                "Failed",
            ),
            (
                "exited 1, OnFailure restarts",
                pod("OnFailure", &["a"], &[]),
                vec![instance("a", 0, Exited, 1)],
                "Running",
            ),
            (
                "init running",
                pod("Always", &["a"], &["i"]),
                vec![instance("i", 0, Running, 0)],
                "Pending",
            ),
            (
                "init failed, Never",
                pod("Never", &["a"], &["i"]),
                vec![instance("i", 0, Exited, 2)],
                "Failed",
            ),
            (
                "init done, main running",
                pod("Always", &["a"], &["i"]),
                vec![instance("i", 0, Exited, 0), instance("a", 0, Running, 0)],
                "Running",
            ),
        ];
        for (name, pod, instances, want) in cases {
            let s = pod_status(&pod, &observed(instances), "10.0.0.1", &now(), &now());
            assert_eq!(s.phase.as_deref(), Some(want), "{name}");
        }
    }

    #[test]
    fn crash_loop_shows_waiting_with_last_state_and_restart_count() {
        let p = pod("Always", &["a"], &[]);
        let mut obs = observed(vec![
            instance("a", 3, Exited, 1),
            instance("a", 2, Exited, 1),
        ]);
        obs.waiting.insert(
            "a".into(),
            Waiting {
                reason: "CrashLoopBackOff".into(),
                message: "back-off 40s restarting failed container=a".into(),
            },
        );
        let s = pod_status(&p, &obs, "10.0.0.1", &now(), &now());
        let c = &s.container_statuses.expect("statuses")[0];
        assert_eq!(c.restart_count, 3);
        let waiting = c
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .expect("waiting");
        assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
        let last = c
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .expect("last terminated");
        assert_eq!(last.exit_code, 1);
        assert_eq!(last.reason.as_deref(), Some("Error"));
        assert_eq!(last.container_id.as_deref(), Some("containerd://a-3"));
        assert_eq!(s.phase.as_deref(), Some("Running"));
        let ready = s
            .conditions
            .expect("conditions")
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .expect("Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [a]")
        );
    }

    #[test]
    fn running_pod_reports_ips_conditions_and_qos() {
        let p = pod("Always", &["a"], &[]);
        let s = pod_status(
            &p,
            &observed(vec![instance("a", 0, Running, 0)]),
            "10.0.0.1",
            &now(),
            &now(),
        );
        assert_eq!(s.pod_ip.as_deref(), Some("10.88.0.5"));
        assert_eq!(s.host_ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
        let conditions = s.conditions.expect("conditions");
        for t in [
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
        ] {
            let c = conditions.iter().find(|c| c.type_ == t).expect(t);
            assert_eq!(c.status, "True", "{t}");
        }
        let c = &s.container_statuses.expect("statuses")[0];
        assert!(c.ready);
        assert_eq!(c.started, Some(true));
        assert_eq!(c.container_id.as_deref(), Some("containerd://a-0"));
        assert_eq!(c.image_id, "sha256:abc");
    }
}

#[cfg(test)]
mod sidecar_tests {
    use super::*;
    use api::ContainerState::{ContainerExited as Exited, ContainerRunning as Running};
    use k8s_openapi::api::core::v1::PodSpec;

    fn instance(name: &str, state: api::ContainerState, exit: i32) -> api::ContainerStatus {
        api::ContainerStatus {
            id: format!("{name}-0"),
            metadata: Some(api::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            state: state as i32,
            exit_code: exit,
            started_at: 1_700_000_000_000_000_000,
            finished_at: if state == Exited {
                1_700_000_001_000_000_000
            } else {
                0
            },
            ..Default::default()
        }
    }

    /// Init containers `setup` (regular) and `proxy` (sidecar), main container `app`.
    fn pod(policy: &str) -> Pod {
        let c = |n: &str, restart: Option<&str>| Container {
            name: n.into(),
            image: Some("busybox".into()),
            restart_policy: restart.map(str::to_string),
            ..Default::default()
        };
        Pod {
            spec: Some(PodSpec {
                restart_policy: Some(policy.into()),
                init_containers: Some(vec![c("setup", None), c("proxy", Some("Always"))]),
                containers: vec![c("app", None)],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn status(policy: &str, instances: Vec<api::ContainerStatus>, unready: &[&str]) -> PodStatus {
        let mut obs = Observed {
            sandbox_ready: true,
            runtime_name: "containerd".into(),
            unready: unready.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        for i in instances {
            let name = i.metadata.as_ref().expect("metadata").name.clone();
            obs.instances.entry(name).or_default().push(i);
        }
        let t = Time(DateTime::<Utc>::from_timestamp_nanos(
            1_700_000_002_000_000_000,
        ));
        pod_status(&pod(policy), &obs, "10.0.0.1", &t, &t)
    }

    fn cond(s: &PodStatus, t: &str) -> (String, Option<String>) {
        let c = s
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == t)
            .expect("condition");
        (c.status.clone(), c.message.clone())
    }

    #[test]
    fn a_started_sidecar_counts_as_initialized_and_its_readiness_for_the_pod() {
        let s = status(
            "Always",
            vec![
                instance("setup", Exited, 0),
                instance("proxy", Running, 0),
                instance("app", Running, 0),
            ],
            &["proxy"],
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&s, "Initialized").0, "True");
        assert_eq!(
            cond(&s, "Ready"),
            (
                "False".into(),
                Some("containers with unready status: [proxy]".into())
            )
        );
        let proxy = &s.init_container_statuses.as_ref().expect("init")[1];
        assert_eq!((proxy.started, proxy.ready), (Some(true), false));
        let s = status(
            "Always",
            vec![
                instance("setup", Exited, 0),
                instance("proxy", Running, 0),
                instance("app", Running, 0),
            ],
            &[],
        );
        assert_eq!(cond(&s, "Ready").0, "True");
    }

    #[test]
    fn a_sidecar_not_started_keeps_the_pod_initializing() {
        let s = status("Always", vec![instance("setup", Exited, 0)], &[]);
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        assert_eq!(
            cond(&s, "Initialized"),
            (
                "False".into(),
                Some("containers with incomplete status: [proxy]".into())
            )
        );
        let app = &s.container_statuses.as_ref().expect("main")[0];
        assert_eq!(
            app.state
                .as_ref()
                .and_then(|st| st.waiting.as_ref())
                .and_then(|w| w.reason.as_deref()),
            Some("PodInitializing")
        );
    }

    #[test]
    fn a_killed_sidecar_does_not_fail_a_completed_pod() {
        let s = status(
            "Never",
            vec![
                instance("setup", Exited, 0),
                instance("proxy", Exited, 137),
                instance("app", Exited, 0),
            ],
            &[],
        );
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
        let s = status(
            "Never",
            vec![
                instance("setup", Exited, 0),
                instance("proxy", Exited, 1),
                instance("app", Running, 0),
            ],
            &[],
        );
        assert_eq!(
            s.phase.as_deref(),
            Some("Running"),
            "a crashed sidecar restarts"
        );
        assert_eq!(cond(&s, "Initialized").0, "True");
    }
}
