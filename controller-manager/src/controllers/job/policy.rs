//! The pure decisions of the job controller: completion indexes, pod failure policy, how many
//! pods should run, backoff and the conditions a Job moves through.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus, PodFailurePolicy};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::chrono::{DateTime, Utc};

/// Annotation (and label) carrying an Indexed Job pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// Finalizer that keeps a pod until the controller has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";

/// Condition types and reasons, as upstream.
pub const COMPLETE: &str = "Complete";
pub const FAILED: &str = "Failed";
pub const SUSPENDED: &str = "Suspended";
pub const FAILURE_TARGET: &str = "FailureTarget";
pub const SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";
pub const BACKOFF_LIMIT_EXCEEDED: &str = "BackoffLimitExceeded";
pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
pub const POD_FAILURE_POLICY: &str = "PodFailurePolicy";
pub const COMPLETIONS_REACHED: &str = "CompletionsReached";

/// Upstream's pod-recreation backoff: 10s doubling per failure, at most 6 minutes.
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(360);

/// Whether the Job is Indexed.
pub fn is_indexed(spec: &JobSpec) -> bool {
    spec.completion_mode.as_deref() == Some("Indexed")
}

/// The completion index of a pod (annotation first, then label), if valid.
pub fn completion_index(pod: &Pod) -> Option<i32> {
    let meta = &pod.metadata;
    let raw = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(COMPLETION_INDEX))
        .or_else(|| meta.labels.as_ref().and_then(|l| l.get(COMPLETION_INDEX)))?;
    raw.parse().ok().filter(|i: &i32| *i >= 0)
}

/// Parses `status.completedIndexes` ("1,3-5").
pub fn parse_indexes(s: &str) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(i) = part.parse() {
                    out.insert(i);
                }
            }
        }
    }
    out
}

/// Formats indexes as upstream's compressed intervals ("1,3-5").
pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut parts = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

/// What a matching pod failure policy rule says to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureAction {
    /// Fail the whole Job, with this message.
    FailJob(String),
    /// Do not count the failure.
    Ignore,
    /// Count it as usual.
    Count,
}

/// Evaluates `policy` against a Failed pod: the first matching rule wins; no match counts.
pub fn pod_failure_action(policy: &PodFailurePolicy, pod: &Pod) -> FailureAction {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let containers: Vec<_> = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .collect();
    for (i, rule) in policy.rules.iter().enumerate() {
        let mut matched = None;
        if let Some(req) = &rule.on_exit_codes {
            for cs in &containers {
                if req.container_name.as_ref().is_some_and(|n| *n != cs.name) {
                    continue;
                }
                let Some(code) = cs
                    .state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .map(|t| t.exit_code)
                else {
                    continue;
                };
                let listed = req.values.contains(&code);
                let hit = match req.operator.as_str() {
                    "In" => listed,
                    "NotIn" => !listed,
                    _ => false,
                };
                // Exit code 0 never counts as a failure, as upstream.
                if code != 0 && hit {
                    matched = Some(format!(
                        "Container {} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {i}",
                        cs.name, rule.action
                    ));
                    break;
                }
            }
        }
        for pattern in rule.on_pod_conditions.iter().flatten() {
            let hit = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == pattern.type_ && c.status == pattern.status);
            if hit {
                matched = Some(format!(
                    "Pod {ns}/{name} has condition {} matching {} rule at index {i}",
                    pattern.type_, rule.action
                ));
                break;
            }
        }
        if let Some(message) = matched {
            return match rule.action.as_str() {
                "FailJob" => FailureAction::FailJob(message),
                "Ignore" => FailureAction::Ignore,
                // FailIndex needs backoffLimitPerIndex (not implemented): count it.
                _ => FailureAction::Count,
            };
        }
    }
    FailureAction::Count
}

/// How many pods of a NonIndexed Job should be active.
pub fn wanted_active(spec: &JobSpec, succeeded: i32, active: i32) -> i32 {
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    match spec.completions {
        // A work queue: once one pod succeeded, no new ones; the running ones finish.
        None if succeeded > 0 => active.min(parallelism),
        None => parallelism,
        Some(c) => (c - succeeded).clamp(0, parallelism),
    }
}

/// The indexes (lowest first) an Indexed Job should start pods for, at most `room` of them.
pub fn indexes_to_start(
    completions: i32,
    completed: &BTreeSet<i32>,
    running: &BTreeSet<i32>,
    room: usize,
) -> Vec<i32> {
    (0..completions.max(0))
        .filter(|i| !completed.contains(i) && !running.contains(i))
        .take(room)
        .collect()
}

/// Whether a Job has reached its completions.
pub fn completions_reached(spec: &JobSpec, succeeded: i32, completed: usize, active: i32) -> bool {
    if is_indexed(spec) {
        let total = usize::try_from(spec.completions.unwrap_or(0)).unwrap_or(0);
        return completed >= total;
    }
    match spec.completions {
        Some(c) => succeeded >= c,
        None => succeeded > 0 && active == 0,
    }
}

/// Delay before the next pod may be created after `failures` failures in a row.
pub fn backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32 << (failures - 1).min(16);
    (BACKOFF_BASE * factor).min(BACKOFF_MAX)
}

/// The condition of `type_` that is True, if any.
pub fn true_condition<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// Whether the Job has finished (Complete or Failed).
pub fn is_finished(status: &JobStatus) -> bool {
    true_condition(status, COMPLETE).is_some() || true_condition(status, FAILED).is_some()
}

/// Sets a condition, keeping its transition time when the status does not change.
pub fn set_condition(
    status: &mut JobStatus,
    type_: &str,
    value: bool,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) {
    let value = if value { "True" } else { "False" };
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status != value {
            c.last_transition_time = Some(Time(now));
        }
        c.status = value.into();
        c.reason = Some(reason.into());
        c.message = Some(message.into());
        c.last_probe_time = Some(Time(now));
        return;
    }
    conditions.push(JobCondition {
        type_: type_.into(),
        status: value.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    });
}

/// The status as upstream serializes it: zero counters and empty strings omitted, so comparing
/// with what the apiserver returns never sees a difference that is not one.
pub fn normalize(mut status: JobStatus) -> JobStatus {
    for field in [
        &mut status.active,
        &mut status.succeeded,
        &mut status.failed,
    ] {
        if *field == Some(0) {
            *field = None;
        }
    }
    if status.completed_indexes.as_deref() == Some("") {
        status.completed_indexes = None;
    }
    let uncounted = status
        .uncounted_terminated_pods
        .get_or_insert_with(Default::default);
    for list in [&mut uncounted.succeeded, &mut uncounted.failed] {
        if list.as_ref().is_some_and(Vec::is_empty) {
            *list = None;
        }
    }
    if status.conditions.as_ref().is_some_and(Vec::is_empty) {
        status.conditions = None;
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{
        PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyOnPodConditionsPattern,
        PodFailurePolicyRule,
    };
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodCondition, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn failed_pod(exit_codes: &[(&str, i32)], conditions: &[&str]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some("Failed".into()),
                container_statuses: Some(
                    exit_codes
                        .iter()
                        .map(|(name, code)| ContainerStatus {
                            name: (*name).into(),
                            state: Some(ContainerState {
                                terminated: Some(ContainerStateTerminated {
                                    exit_code: *code,
                                    ..ContainerStateTerminated::default()
                                }),
                                ..ContainerState::default()
                            }),
                            ..ContainerStatus::default()
                        })
                        .collect(),
                ),
                conditions: Some(
                    conditions
                        .iter()
                        .map(|t| PodCondition {
                            type_: (*t).into(),
                            status: "True".into(),
                            ..PodCondition::default()
                        })
                        .collect(),
                ),
                ..PodStatus::default()
            }),
        }
    }

    fn policy() -> PodFailurePolicy {
        PodFailurePolicy {
            rules: vec![
                PodFailurePolicyRule {
                    action: "Ignore".into(),
                    on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                        type_: "DisruptionTarget".into(),
                        status: "True".into(),
                    }]),
                    on_exit_codes: None,
                },
                PodFailurePolicyRule {
                    action: "FailJob".into(),
                    on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                        container_name: Some("main".into()),
                        operator: "In".into(),
                        values: vec![42],
                    }),
                    on_pod_conditions: None,
                },
                PodFailurePolicyRule {
                    action: "Count".into(),
                    on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                        container_name: None,
                        operator: "NotIn".into(),
                        values: vec![1],
                    }),
                    on_pod_conditions: None,
                },
            ],
        }
    }

    #[test]
    fn pod_failure_policy_picks_the_first_matching_rule() {
        let cases = [
            ("disruption is ignored", failed_pod(&[("main", 42)], &["DisruptionTarget"]), FailureAction::Ignore),
            (
                "exit code 42 in main fails the job",
                failed_pod(&[("main", 42)], &[]),
                FailureAction::FailJob("Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1".into()),
            ),
            ("exit code 42 in a sidecar is counted", failed_pod(&[("side", 42)], &[]), FailureAction::Count),
            ("no rule matches exit code 1", failed_pod(&[("main", 1)], &[]), FailureAction::Count),
            ("exit code 0 never matches NotIn", failed_pod(&[("main", 0)], &[]), FailureAction::Count),
        ];
        for (name, pod, want) in cases {
            assert_eq!(pod_failure_action(&policy(), &pod), want, "{name}");
        }
    }

    #[test]
    fn completed_indexes_round_trip_as_intervals() {
        let set: BTreeSet<i32> = [0, 1, 2, 4, 6, 7].into_iter().collect();
        assert_eq!(format_indexes(&set), "0-2,4,6-7");
        assert_eq!(parse_indexes("0-2,4,6-7"), set);
        assert_eq!(format_indexes(&BTreeSet::new()), "");
        assert!(parse_indexes("").is_empty());
    }

    #[test]
    fn active_pods_never_exceed_parallelism_or_remaining_completions() {
        let spec = |completions: Option<i32>, parallelism: i32| JobSpec {
            completions,
            parallelism: Some(parallelism),
            ..JobSpec::default()
        };
        let cases = [
            ("fresh job runs parallelism pods", spec(Some(4), 2), 0, 0, 2),
            ("last completion needs one pod", spec(Some(4), 2), 3, 2, 1),
            ("all done needs none", spec(Some(4), 2), 4, 0, 0),
            ("work queue before success", spec(None, 3), 0, 1, 3),
            (
                "work queue after success lets pods finish",
                spec(None, 3),
                1,
                2,
                2,
            ),
            ("zero parallelism runs nothing", spec(Some(4), 0), 0, 0, 0),
        ];
        for (name, s, succeeded, active, want) in cases {
            assert_eq!(wanted_active(&s, succeeded, active), want, "{name}");
        }
    }

    #[test]
    fn indexed_jobs_start_the_lowest_missing_indexes() {
        let completed: BTreeSet<i32> = [0, 2].into_iter().collect();
        let running: BTreeSet<i32> = [1].into_iter().collect();
        assert_eq!(indexes_to_start(5, &completed, &running, 2), vec![3, 4]);
        assert_eq!(
            indexes_to_start(5, &completed, &running, 0),
            Vec::<i32>::new()
        );
    }

    #[test]
    fn backoff_doubles_up_to_six_minutes() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(3), Duration::from_secs(40));
        assert_eq!(backoff(30), Duration::from_secs(360));
    }

    #[test]
    fn conditions_keep_their_transition_time_while_unchanged() {
        let t0 = DateTime::from_timestamp(1_000, 0).expect("valid");
        let t1 = DateTime::from_timestamp(2_000, 0).expect("valid");
        let mut status = JobStatus::default();
        set_condition(
            &mut status,
            SUSPENDED,
            true,
            "JobSuspended",
            "Job suspended",
            t0,
        );
        set_condition(
            &mut status,
            SUSPENDED,
            true,
            "JobSuspended",
            "Job suspended",
            t1,
        );
        let c = true_condition(&status, SUSPENDED).expect("suspended");
        assert_eq!(c.last_transition_time, Some(Time(t0)));
        set_condition(
            &mut status,
            SUSPENDED,
            false,
            "JobResumed",
            "Job resumed",
            t1,
        );
        assert!(true_condition(&status, SUSPENDED).is_none());
        assert!(!is_finished(&status));
        set_condition(&mut status, COMPLETE, true, COMPLETIONS_REACHED, "", t1);
        assert!(is_finished(&status));
    }
}
