//! Leader election settings: the `--leader-elect*` flags over the configuration file's
//! `leaderElection` section over upstream's defaults (true, 15s/10s/2s, leases,
//! kube-system/kube-scheduler), validated as upstream's LeaderElectionConfiguration.

use std::time::Duration;

use component_base::leaderelection::Timings;

use crate::config::{ConfigError, LeaderElection};
use crate::options::Options;

/// Upstream's default lease name for kube-scheduler.
pub const DEFAULT_RESOURCE_NAME: &str = "kube-scheduler";
/// Upstream's default lease namespace.
pub const DEFAULT_RESOURCE_NAMESPACE: &str = "kube-system";
/// How stale the leader's last renewal may be beyond the lease duration before `/healthz`
/// fails (upstream's `NewLeaderHealthzAdaptor(20 * time.Second)`).
pub const HEALTHZ_TOLERANCE: Duration = Duration::from_secs(20);

/// Resolved leader election settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Lease namespace.
    pub namespace: String,
    /// Lease name.
    pub name: String,
    /// Lease duration, renew deadline and retry period.
    pub timings: Timings,
}

/// Parses Go durations: `15s`, `1m30s`, `500ms`, `1.5s`, `0`.
pub fn parse_duration(value: &str) -> Option<Duration> {
    component_base::duration::parse_go_duration(value.trim()).ok()
}

fn pick<'a>(
    flag: &'a Option<String>,
    file: Option<&'a Option<String>>,
    default: &'a str,
) -> &'a str {
    flag.as_deref()
        .or_else(|| file.and_then(|f| f.as_deref()))
        .unwrap_or(default)
}

fn duration(field: &str, value: &str) -> Result<Duration, ConfigError> {
    parse_duration(value).ok_or_else(|| {
        ConfigError::Invalid(format!(
            "leaderElection.{field}: Invalid value: {value:?}: must be a duration such as 15s"
        ))
    })
}

/// The settings to run with, or `None` when leader election is disabled.
pub fn resolve(
    o: &Options,
    file: Option<&LeaderElection>,
) -> Result<Option<Settings>, ConfigError> {
    let enabled = o
        .leader_elect
        .or_else(|| file.and_then(|f| f.leader_elect))
        .unwrap_or(true);
    let lease = duration(
        "leaseDuration",
        pick(
            &o.leader_elect_lease_duration,
            file.map(|f| &f.lease_duration),
            "15s",
        ),
    )?;
    let renew = duration(
        "renewDeadline",
        pick(
            &o.leader_elect_renew_deadline,
            file.map(|f| &f.renew_deadline),
            "10s",
        ),
    )?;
    let retry = duration(
        "retryPeriod",
        pick(
            &o.leader_elect_retry_period,
            file.map(|f| &f.retry_period),
            "2s",
        ),
    )?;
    let lock = pick(
        &o.leader_elect_resource_lock,
        file.map(|f| &f.resource_lock),
        "leases",
    );
    let name = pick(
        &o.leader_elect_resource_name,
        file.map(|f| &f.resource_name),
        DEFAULT_RESOURCE_NAME,
    );
    let namespace = pick(
        &o.leader_elect_resource_namespace,
        file.map(|f| &f.resource_namespace),
        DEFAULT_RESOURCE_NAMESPACE,
    );
    if !enabled {
        return Ok(None);
    }
    let invalid = |m: String| Err(ConfigError::Invalid(m));
    if lease.is_zero() || renew.is_zero() || retry.is_zero() {
        return invalid(
            "leaderElection: Invalid value: leaseDuration, renewDeadline and retryPeriod \
             must be greater than zero"
                .into(),
        );
    }
    if lease <= renew {
        return invalid(format!(
            "leaderElection.leaseDuration: Invalid value: {lease:?}: LeaseDuration must be \
             greater than RenewDeadline"
        ));
    }
    if renew <= retry.mul_f64(1.2) {
        return invalid(format!(
            "leaderElection.renewDeadline: Invalid value: {renew:?}: RenewDeadline must be \
             greater than retryPeriod*JitterFactor"
        ));
    }
    if lock != "leases" {
        return invalid(format!(
            "leaderElection.resourceLock: Unsupported value: {lock:?}: supported values: \"leases\""
        ));
    }
    if name.is_empty() || namespace.is_empty() {
        return invalid(
            "leaderElection: Required value: resourceName and resourceNamespace".into(),
        );
    }
    Ok(Some(Settings {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        timings: Timings {
            lease_duration: lease,
            renew_deadline: renew,
            retry_period: retry,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn opts(args: &[&str]) -> Options {
        Options::parse_from(std::iter::once("kube-scheduler").chain(args.iter().copied()))
    }

    #[test]
    fn go_durations_parse() {
        let cases = [
            ("15s", Some(Duration::from_secs(15))),
            ("1m30s", Some(Duration::from_secs(90))),
            ("500ms", Some(Duration::from_millis(500))),
            ("0", Some(Duration::ZERO)),
            ("15", None),
            ("abc", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input), want, "{input}");
        }
    }

    #[test]
    fn defaults_are_upstreams() {
        let s = resolve(&opts(&[]), None).expect("valid").expect("enabled");
        assert_eq!(s.namespace, "kube-system");
        assert_eq!(s.name, "kube-scheduler");
        assert_eq!(s.timings, Timings::default());
    }

    #[test]
    fn explicit_flags_override_the_file_and_the_file_overrides_defaults() {
        let file = LeaderElection {
            leader_elect: Some(true),
            lease_duration: Some("30s".into()),
            resource_name: Some("from-file".into()),
            ..LeaderElection::default()
        };
        let s = resolve(
            &opts(&["--leader-elect-resource-name=from-flag"]),
            Some(&file),
        )
        .expect("valid")
        .expect("enabled");
        assert_eq!(s.name, "from-flag");
        assert_eq!(s.timings.lease_duration, Duration::from_secs(30));
        assert_eq!(s.timings.renew_deadline, Duration::from_secs(10));

        let off = LeaderElection {
            leader_elect: Some(false),
            ..LeaderElection::default()
        };
        assert_eq!(resolve(&opts(&[]), Some(&off)).expect("valid"), None);
        assert!(resolve(&opts(&["--leader-elect=true"]), Some(&off))
            .expect("valid")
            .is_some());
        assert_eq!(
            resolve(&opts(&["--leader-elect=false"]), None).expect("valid"),
            None
        );
    }

    #[test]
    fn invalid_settings_are_rejected_with_the_field() {
        let cases = [
            (
                "renew not below lease",
                vec!["--leader-elect-renew-deadline=15s"],
                "leaseDuration",
            ),
            (
                "retry too close to renew",
                vec!["--leader-elect-retry-period=9s"],
                "renewDeadline",
            ),
            (
                "bad duration",
                vec!["--leader-elect-lease-duration=soon"],
                "leaseDuration",
            ),
            (
                "configmaps lock",
                vec!["--leader-elect-resource-lock=configmaps"],
                "resourceLock",
            ),
            (
                "zero retry",
                vec!["--leader-elect-retry-period=0"],
                "greater than zero",
            ),
        ];
        for (name, args, want) in cases {
            let err = resolve(&opts(&args), None).expect_err(name).to_string();
            assert!(err.contains(want), "{name}: {err}");
        }
    }
}
