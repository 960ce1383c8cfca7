//! PodSecurity: the Pod Security Standards (pod-security-admission v0.33 checks) enforced,
//! warned about, or audited per namespace through `pod-security.kubernetes.io/*` labels.
//!
//! Without labels a namespace is `privileged` (upstream's default configuration, which exempts
//! nothing). Audit mode has no effect here because audit annotations are not recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{json, Map, Value};

use super::helpers::{arr_at, str_at};
use super::{forbidden_named, Attributes, Operation, Plugin};
use crate::error::{ApiError, FieldError};

const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";
/// Most pods checked when a namespace's enforce level is tightened.
const NAMESPACE_MAX_PODS_TO_CHECK: usize = 3000;

/// Pod subresources whose requests carry no pod spec worth checking.
const IGNORED_POD_SUBRESOURCES: &[&str] = &[
    "exec",
    "attach",
    "binding",
    "eviction",
    "log",
    "portforward",
    "proxy",
    "status",
];

/// Upstream `PodSecurity`, reading `namespaces` (labels) and, when a namespace's enforce level
/// is raised, its `pods`.
pub struct PodSecurity;

/// A Pod Security Standards level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    fn parse(s: &str) -> Result<Level, String> {
        match s {
            "privileged" => Ok(Level::Privileged),
            "baseline" => Ok(Level::Baseline),
            "restricted" => Ok(Level::Restricted),
            // Invalid enforce levels fail closed.
            _ => Err("must be one of privileged, baseline, restricted".into()),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// A policy version: `v1.<minor>` or latest (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Version(Option<u32>);

impl Version {
    const LATEST: Version = Version(None);

    fn parse(s: &str) -> Result<Version, String> {
        let bad = || "must be \"latest\" or \"v1.x\"".to_string();
        if s == "latest" {
            return Ok(Version::LATEST);
        }
        let minor = s.strip_prefix("v1.").ok_or_else(bad)?;
        let valid = !minor.is_empty()
            && minor.bytes().all(|b| b.is_ascii_digit())
            && (minor == "0" || !minor.starts_with('0'));
        if !valid {
            return Err(bad());
        }
        minor.parse().map(|m| Version(Some(m))).map_err(|_| bad())
    }

    /// The minor version checks are selected by; latest is newer than every release.
    fn minor(self) -> u32 {
        self.0.unwrap_or(u32::MAX)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("latest"),
            Some(m) => write!(f, "v1.{m}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct LevelVersion {
    level: Level,
    version: Version,
}

impl fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level.as_str(), self.version)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Policy {
    enforce: LevelVersion,
    audit: LevelVersion,
    warn: LevelVersion,
}

impl Policy {
    fn fully_privileged(&self) -> bool {
        [self.enforce, self.audit, self.warn]
            .iter()
            .all(|lv| lv.level == Level::Privileged)
    }
}

const DEFAULT_LEVEL: LevelVersion = LevelVersion {
    level: Level::Privileged,
    version: Version::LATEST,
};

/// Upstream `PolicyToEvaluate`: the namespace's labels over the default policy, with the
/// label errors (enforce fails closed, warn and audit fail open).
fn policy_to_evaluate(labels: Option<&Map<String, Value>>) -> (Policy, Vec<FieldError>) {
    let mut p = Policy {
        enforce: DEFAULT_LEVEL,
        audit: DEFAULT_LEVEL,
        warn: DEFAULT_LEVEL,
    };
    let mut errs = Vec::new();
    let Some(labels) = labels else {
        return (p, errs);
    };
    let label = |suffix: &str| {
        labels
            .get(&format!("{LABEL_PREFIX}{suffix}"))
            .map(|v| v.as_str().unwrap_or(""))
    };
    let mut record = |suffix: &str, value: &str, err: String| {
        errs.push(FieldError::invalid(
            format!("metadata.labels[{LABEL_PREFIX}{suffix}]"),
            json!(value),
            err,
        ));
    };
    let mut has_enforce_level = false;
    for (mode, lv) in [
        ("enforce", &mut p.enforce),
        ("audit", &mut p.audit),
        ("warn", &mut p.warn),
    ] {
        if let Some(v) = label(mode) {
            match Level::parse(v) {
                Ok(l) => {
                    lv.level = l;
                    has_enforce_level |= mode == "enforce";
                }
                Err(e) => {
                    // Enforce fails closed; audit and warn fail open.
                    lv.level = if mode == "enforce" {
                        Level::Restricted
                    } else {
                        Level::Privileged
                    };
                    record(mode, v, e);
                }
            }
        }
        let version_label = format!("{mode}-version");
        if let Some(v) = label(&version_label) {
            match Version::parse(v) {
                Ok(ver) => lv.version = ver,
                Err(e) => {
                    lv.version = Version::LATEST;
                    record(&version_label, v, e);
                }
            }
        }
    }
    // Without its own warn level, warn at least as strictly as enforce.
    if label("warn").is_none() && has_enforce_level && p.enforce.level > p.warn.level {
        p.warn.level = p.enforce.level;
        if label("warn-version").is_none() {
            p.warn.version = p.enforce.version;
        }
    }
    (p, errs)
}

// ---------------------------------------------------------------------------------------------
// Checks.

/// A failed check: the short reason and the detail naming what to fix.
type Failure = (String, String);

fn join_quote(items: &[String]) -> String {
    if items.is_empty() {
        return String::new();
    }
    format!("\"{}\"", items.join("\", \""))
}

fn pluralize<'a>(singular: &'a str, plural: &'a str, n: usize) -> &'a str {
    if n == 1 {
        singular
    } else {
        plural
    }
}

fn containers_phrase(names: &[String]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", names.len()),
        join_quote(names)
    )
}

/// Pod metadata, pod spec and the version checks are selected for.
struct Pod<'a> {
    meta: &'a Value,
    spec: &'a Value,
    minor: u32,
}

impl Pod<'_> {
    fn containers(&self) -> impl Iterator<Item = &Value> {
        arr_at(self.spec, "/initContainers")
            .iter()
            .chain(arr_at(self.spec, "/containers"))
            .chain(arr_at(self.spec, "/ephemeralContainers"))
    }

    /// Names of the containers for which `bad` holds.
    fn bad_containers(&self, bad: impl Fn(&Value) -> bool) -> Vec<String> {
        self.containers()
            .filter(|c| bad(c))
            .map(|c| str_at(c, "/name").to_string())
            .collect()
    }

    fn windows(&self) -> bool {
        str_at(self.spec, "/os/name") == "windows"
    }

    fn annotations(&self) -> BTreeMap<String, String> {
        self.meta
            .get("annotations")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn sc<'a>(v: &'a Value, field: &str) -> Option<&'a Value> {
    v.pointer(&format!("/securityContext/{field}"))
        .filter(|x| !x.is_null())
}

fn fail(reason: &str, detail: String) -> Option<Failure> {
    Some((reason.to_string(), detail))
}

fn app_armor_profile(p: &Pod<'_>) -> Option<Failure> {
    let allowed = |t: &str| matches!(t, "RuntimeDefault" | "Localhost");
    let mut setters = Vec::new();
    let mut bad_values = BTreeSet::new();
    if let Some(t) = sc(p.spec, "appArmorProfile/type").and_then(Value::as_str) {
        if !allowed(t) {
            setters.push("pod".to_string());
            bad_values.insert(t.to_string());
        }
    }
    let containers = p
        .bad_containers(|c| sc(c, "appArmorProfile").is_some_and(|a| !allowed(str_at(a, "/type"))));
    for c in p.containers() {
        if let Some(a) = sc(c, "appArmorProfile") {
            if !allowed(str_at(a, "/type")) {
                bad_values.insert(str_at(a, "/type").to_string());
            }
        }
    }
    if !containers.is_empty() {
        setters.push(containers_phrase(&containers));
    }
    let mut annotations: Vec<String> = p
        .annotations()
        .into_iter()
        .filter(|(k, v)| {
            k.starts_with("container.apparmor.security.beta.kubernetes.io/")
                && !(v.is_empty() || v == "runtime/default" || v.starts_with("localhost/"))
        })
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    let mut values: Vec<String> = bad_values.into_iter().collect();
    if !annotations.is_empty() {
        annotations.sort();
        setters.push(pluralize("annotation", "annotations", annotations.len()).to_string());
        values.extend(annotations);
    }
    if setters.is_empty() {
        return None;
    }
    fail(
        pluralize(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            values.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            setters.join(" and "),
            join_quote(&values)
        ),
    )
}

const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn added_capabilities(c: &Value) -> Vec<String> {
    sc(c, "capabilities/add")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn capabilities_baseline(p: &Pod<'_>) -> Option<Failure> {
    let mut caps = BTreeSet::new();
    let bad = p.bad_containers(|c| {
        added_capabilities(c)
            .iter()
            .any(|cap| !BASELINE_CAPABILITIES.contains(&cap.as_str()))
    });
    for c in p.containers() {
        for cap in added_capabilities(c) {
            if !BASELINE_CAPABILITIES.contains(&cap.as_str()) {
                caps.insert(cap);
            }
        }
    }
    if bad.is_empty() {
        return None;
    }
    let caps: Vec<String> = caps.into_iter().collect();
    fail(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&bad),
            join_quote(&caps)
        ),
    )
}

fn host_namespaces(p: &Pod<'_>) -> Option<Failure> {
    let set: Vec<&str> = ["hostNetwork", "hostPID", "hostIPC"]
        .into_iter()
        .filter(|k| p.spec[*k].as_bool() == Some(true))
        .collect();
    if set.is_empty() {
        return None;
    }
    let parts: Vec<String> = set.iter().map(|k| format!("{k}=true")).collect();
    fail("host namespaces", parts.join(", "))
}

fn host_path_volumes(p: &Pod<'_>) -> Option<Failure> {
    let names: Vec<String> = arr_at(p.spec, "/volumes")
        .iter()
        .filter(|v| v.get("hostPath").is_some_and(|h| !h.is_null()))
        .map(|v| str_at(v, "/name").to_string())
        .collect();
    if names.is_empty() {
        return None;
    }
    fail(
        "hostPath volumes",
        format!(
            "{} {}",
            pluralize("volume", "volumes", names.len()),
            join_quote(&names)
        ),
    )
}

fn host_ports(p: &Pod<'_>) -> Option<Failure> {
    let port_of = |port: &Value| port["hostPort"].as_i64().unwrap_or(0);
    let bad = p.bad_containers(|c| arr_at(c, "/ports").iter().any(|port| port_of(port) != 0));
    if bad.is_empty() {
        return None;
    }
    let ports: BTreeSet<String> = p
        .containers()
        .flat_map(|c| arr_at(c, "/ports"))
        .map(port_of)
        .filter(|hp| *hp != 0)
        .map(|hp| hp.to_string())
        .collect();
    let ports: Vec<String> = ports.into_iter().collect();
    fail(
        "hostPort",
        format!(
            "{} {} {} {}",
            containers_phrase(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.join(", ")
        ),
    )
}

fn privileged(p: &Pod<'_>) -> Option<Failure> {
    let bad = p.bad_containers(|c| sc(c, "privileged").and_then(Value::as_bool) == Some(true));
    if bad.is_empty() {
        return None;
    }
    fail(
        "privileged",
        format!(
            "{} must not set securityContext.privileged=true",
            containers_phrase(&bad)
        ),
    )
}

fn proc_mount(p: &Pod<'_>) -> Option<Failure> {
    let mount = |c: &Value| {
        sc(c, "procMount")
            .and_then(Value::as_str)
            .filter(|m| *m != "Default")
            .map(str::to_string)
    };
    let bad = p.bad_containers(|c| mount(c).is_some());
    if bad.is_empty() {
        return None;
    }
    let types: BTreeSet<String> = p.containers().filter_map(mount).collect();
    let types: Vec<String> = types.into_iter().collect();
    fail(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            containers_phrase(&bad),
            join_quote(&types)
        ),
    )
}

fn se_linux_options(p: &Pod<'_>) -> Option<Failure> {
    let mut allowed = vec!["", "container_t", "container_init_t", "container_kvm_t"];
    if p.minor >= 31 {
        allowed.push("container_engine_t");
    }
    let mut bad_types = BTreeSet::new();
    let (mut set_user, mut set_role) = (false, false);
    let mut check = |opts: &Value| -> bool {
        let mut valid = true;
        let t = str_at(opts, "/type");
        if !allowed.contains(&t) {
            valid = false;
            bad_types.insert(t.to_string());
        }
        if !str_at(opts, "/user").is_empty() {
            valid = false;
            set_user = true;
        }
        if !str_at(opts, "/role").is_empty() {
            valid = false;
            set_role = true;
        }
        valid
    };
    let mut setters = Vec::new();
    if let Some(opts) = sc(p.spec, "seLinuxOptions") {
        if !check(opts) {
            setters.push("pod".to_string());
        }
    }
    let mut bad = Vec::new();
    for c in p.containers() {
        if let Some(opts) = sc(c, "seLinuxOptions") {
            if !check(opts) {
                bad.push(str_at(c, "/name").to_string());
            }
        }
    }
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    if !bad_types.is_empty() {
        let types: Vec<String> = bad_types.into_iter().collect();
        data.push(format!(
            "{} {}",
            pluralize("type", "types", types.len()),
            join_quote(&types)
        ));
    }
    if set_user {
        data.push("user may not be set".to_string());
    }
    if set_role {
        data.push("role may not be set".to_string());
    }
    fail(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters.join(" and "),
            data.join("; ")
        ),
    )
}

fn valid_seccomp(t: &str) -> bool {
    matches!(t, "Localhost" | "RuntimeDefault")
}

fn seccomp_baseline(p: &Pod<'_>) -> Option<Failure> {
    if p.minor < 19 {
        // Before 1.19 seccomp was set through annotations.
        let valid = |v: &str| {
            v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/")
        };
        let annotations = p.annotations();
        let mut bad = BTreeSet::new();
        let pod_key = "seccomp.security.alpha.kubernetes.io/pod";
        if let Some(v) = annotations.get(pod_key) {
            if !valid(v) {
                bad.insert(format!("{pod_key}={v:?}"));
            }
        }
        for c in p.containers() {
            let key = format!(
                "container.seccomp.security.alpha.kubernetes.io/{}",
                str_at(c, "/name")
            );
            if let Some(v) = annotations.get(&key) {
                if !valid(v) {
                    bad.insert(format!("{key}={v:?}"));
                }
            }
        }
        if bad.is_empty() {
            return None;
        }
        let bad: Vec<String> = bad.into_iter().collect();
        return fail(
            "seccompProfile",
            format!(
                "forbidden {} {}",
                pluralize("annotation", "annotations", bad.len()),
                bad.join(", ")
            ),
        );
    }
    seccomp_fields(p, false)
}

fn seccomp_restricted(p: &Pod<'_>) -> Option<Failure> {
    if p.minor >= 25 && p.windows() {
        return None;
    }
    seccomp_fields(p, true)
}

/// The field-based seccomp checks; `required` makes an unset profile a violation.
fn seccomp_fields(p: &Pod<'_>, required: bool) -> Option<Failure> {
    let mut setters = Vec::new();
    let mut bad_values = BTreeSet::new();
    let mut pod_set = false;
    if let Some(profile) = sc(p.spec, "seccompProfile") {
        let t = str_at(profile, "/type");
        if valid_seccomp(t) {
            pod_set = true;
        } else {
            setters.push("pod".to_string());
            bad_values.insert(t.to_string());
        }
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in p.containers() {
        let name = str_at(c, "/name").to_string();
        match sc(c, "seccompProfile") {
            Some(profile) => {
                let t = str_at(profile, "/type");
                if !valid_seccomp(t) {
                    explicit.push(name);
                    bad_values.insert(t.to_string());
                }
            }
            None if !pod_set => implicit.push(name),
            None => {}
        }
    }
    if !explicit.is_empty() {
        setters.push(containers_phrase(&explicit));
    }
    if !setters.is_empty() {
        let values: Vec<String> = bad_values.into_iter().collect();
        return fail(
            "seccompProfile",
            format!(
                "{} must not set securityContext.seccompProfile.type to {}",
                setters.join(" and "),
                join_quote(&values)
            ),
        );
    }
    if required && !implicit.is_empty() {
        return fail(
            "seccompProfile",
            format!(
                "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                containers_phrase(&implicit)
            ),
        );
    }
    None
}

fn sysctls(p: &Pod<'_>) -> Option<Failure> {
    let mut allowed = vec![
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_unprivileged_port_start",
    ];
    if p.minor >= 27 {
        allowed.push("net.ipv4.ip_local_reserved_ports");
    }
    if p.minor >= 29 {
        allowed.extend([
            "net.ipv4.tcp_keepalive_time",
            "net.ipv4.tcp_fin_timeout",
            "net.ipv4.tcp_keepalive_intvl",
            "net.ipv4.tcp_keepalive_probes",
        ]);
    }
    if p.minor >= 32 {
        allowed.extend(["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"]);
    }
    let bad: Vec<&str> = sc(p.spec, "sysctls")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|s| str_at(s, "/name"))
                .filter(|n| !allowed.contains(n))
                .collect()
        })
        .unwrap_or_default();
    if bad.is_empty() {
        return None;
    }
    fail("forbidden sysctls", bad.join(", "))
}

fn windows_host_process(p: &Pod<'_>) -> Option<Failure> {
    let host_process =
        |v: &Value| sc(v, "windowsOptions/hostProcess").and_then(Value::as_bool) == Some(true);
    let mut setters = Vec::new();
    if host_process(p.spec) {
        setters.push("pod".to_string());
    }
    let bad = p.bad_containers(host_process);
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    fail(
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            setters.join(" and ")
        ),
    )
}

fn allow_privilege_escalation(p: &Pod<'_>) -> Option<Failure> {
    if p.minor < 8 || (p.minor >= 25 && p.windows()) {
        return None;
    }
    let bad = p.bad_containers(|c| {
        sc(c, "allowPrivilegeEscalation").and_then(Value::as_bool) != Some(false)
    });
    if bad.is_empty() {
        return None;
    }
    fail(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_phrase(&bad)
        ),
    )
}

fn capabilities_restricted(p: &Pod<'_>) -> Option<Failure> {
    if p.minor >= 25 && p.windows() {
        return None;
    }
    let mut missing_drop = Vec::new();
    let mut adding = Vec::new();
    let mut forbidden_caps = BTreeSet::new();
    for c in p.containers() {
        let name = str_at(c, "/name").to_string();
        let Some(caps) = sc(c, "capabilities") else {
            missing_drop.push(name);
            continue;
        };
        let dropped_all = arr_at(caps, "/drop")
            .iter()
            .any(|d| d.as_str() == Some("ALL"));
        if !dropped_all {
            missing_drop.push(name.clone());
        }
        let mut adds_forbidden = false;
        for cap in arr_at(caps, "/add").iter().filter_map(Value::as_str) {
            if cap != "NET_BIND_SERVICE" {
                adds_forbidden = true;
                forbidden_caps.insert(cap.to_string());
            }
        }
        if adds_forbidden {
            adding.push(name);
        }
    }
    let mut details = Vec::new();
    if !missing_drop.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_phrase(&missing_drop)
        ));
    }
    if !adding.is_empty() {
        let caps: Vec<String> = forbidden_caps.into_iter().collect();
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding),
            join_quote(&caps)
        ));
    }
    if details.is_empty() {
        return None;
    }
    fail("unrestricted capabilities", details.join("; "))
}

/// Volume sources the restricted level allows.
const ALLOWED_VOLUME_TYPES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Volume sources named in the restricted-volumes message, in upstream's precedence.
const RESTRICTED_VOLUME_TYPES: &[&str] = &[
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "nfs",
    "iscsi",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
];

fn restricted_volumes(p: &Pod<'_>) -> Option<Failure> {
    let has = |v: &Value, k: &str| v.get(k).is_some_and(|x| !x.is_null());
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for v in arr_at(p.spec, "/volumes") {
        if ALLOWED_VOLUME_TYPES.iter().any(|t| has(v, t)) {
            continue;
        }
        bad.push(str_at(v, "/name").to_string());
        let t = RESTRICTED_VOLUME_TYPES
            .iter()
            .find(|t| has(v, t))
            .copied()
            .unwrap_or("unknown");
        types.insert(t.to_string());
    }
    if bad.is_empty() {
        return None;
    }
    let types: Vec<String> = types.into_iter().collect();
    fail(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize(
                "restricted volume type",
                "restricted volume types",
                types.len()
            ),
            join_quote(&types)
        ),
    )
}

fn run_as_non_root(p: &Pod<'_>) -> Option<Failure> {
    let mut setters = Vec::new();
    let mut pod_non_root = false;
    match sc(p.spec, "runAsNonRoot").and_then(Value::as_bool) {
        Some(false) => setters.push("pod".to_string()),
        Some(true) => pod_non_root = true,
        None => {}
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in p.containers() {
        let name = str_at(c, "/name").to_string();
        match sc(c, "runAsNonRoot").and_then(Value::as_bool) {
            Some(false) => explicit.push(name),
            Some(true) => {}
            None if !pod_non_root => implicit.push(name),
            None => {}
        }
    }
    if !explicit.is_empty() {
        setters.push(containers_phrase(&explicit));
    }
    if !setters.is_empty() {
        return fail(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters.join(" and ")
            ),
        );
    }
    if !implicit.is_empty() {
        return fail(
            "runAsNonRoot != true",
            format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                containers_phrase(&implicit)
            ),
        );
    }
    None
}

fn run_as_user(p: &Pod<'_>) -> Option<Failure> {
    if p.minor < 23 {
        return None;
    }
    let root = |v: &Value| sc(v, "runAsUser").and_then(Value::as_i64) == Some(0);
    let mut setters = Vec::new();
    if root(p.spec) {
        setters.push("pod".to_string());
    }
    let bad = p.bad_containers(root);
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if setters.is_empty() {
        return None;
    }
    fail(
        "runAsUser=0",
        format!("{} must not set runAsUser=0", setters.join(" and ")),
    )
}

type CheckFn = fn(&Pod<'_>) -> Option<Failure>;

/// Baseline checks in upstream's order (check IDs sorted bytewise).
const BASELINE_CHECKS: &[(&str, CheckFn)] = &[
    ("appArmorProfile", app_armor_profile),
    ("capabilities_baseline", capabilities_baseline),
    ("hostNamespaces", host_namespaces),
    ("hostPathVolumes", host_path_volumes),
    ("hostPorts", host_ports),
    ("privileged", privileged),
    ("procMount", proc_mount),
    ("seLinuxOptions", se_linux_options),
    ("seccompProfile_baseline", seccomp_baseline),
    ("sysctls", sysctls),
    ("windowsHostProcess", windows_host_process),
];

/// Restricted-only checks, each with the first minor version it exists in and the baseline
/// check it replaces from then on.
const RESTRICTED_CHECKS: &[(&str, u32, Option<&str>, CheckFn)] = &[
    (
        "allowPrivilegeEscalation",
        8,
        None,
        allow_privilege_escalation,
    ),
    (
        "capabilities_restricted",
        22,
        Some("capabilities_baseline"),
        capabilities_restricted,
    ),
    (
        "restrictedVolumes",
        0,
        Some("hostPathVolumes"),
        restricted_volumes,
    ),
    ("runAsNonRoot", 0, None, run_as_non_root),
    ("runAsUser", 23, None, run_as_user),
    (
        "seccompProfile_restricted",
        19,
        Some("seccompProfile_baseline"),
        seccomp_restricted,
    ),
];

/// The failures of a pod against a level and version, in upstream's order.
fn evaluate(lv: LevelVersion, meta: &Value, spec: &Value) -> Vec<Failure> {
    if lv.level == Level::Privileged {
        return Vec::new();
    }
    let pod = Pod {
        meta,
        spec,
        minor: lv.version.minor(),
    };
    let restricted = lv.level == Level::Restricted;
    let overridden: Vec<&str> = RESTRICTED_CHECKS
        .iter()
        .filter(|(_, since, _, _)| restricted && pod.minor >= *since)
        .filter_map(|(_, _, replaces, _)| *replaces)
        .collect();
    let mut out: Vec<Failure> = BASELINE_CHECKS
        .iter()
        .filter(|(id, _)| !overridden.contains(id))
        .filter_map(|(_, check)| check(&pod))
        .collect();
    if restricted {
        out.extend(
            RESTRICTED_CHECKS
                .iter()
                .filter(|(_, since, _, _)| pod.minor >= *since)
                .filter_map(|(_, _, _, check)| check(&pod)),
        );
    }
    out
}

/// Upstream's `ForbiddenDetail`: `reason (detail), reason (detail)`.
fn forbidden_detail(failures: &[Failure]) -> String {
    failures
        .iter()
        .map(|(reason, detail)| {
            if detail.is_empty() {
                reason.clone()
            } else {
                format!("{reason} ({detail})")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// Admission.

/// Where workload resources keep their pod template.
fn template_pointer(group: &str, resource: &str) -> Option<&'static str> {
    match (group, resource) {
        ("", "podtemplates") => Some("/template"),
        ("", "replicationcontrollers")
        | ("apps", "replicasets")
        | ("apps", "deployments")
        | ("apps", "statefulsets")
        | ("apps", "daemonsets")
        | ("batch", "jobs") => Some("/spec/template"),
        ("batch", "cronjobs") => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

fn namespace_labels(ns: &Value) -> Option<&Map<String, Value>> {
    ns.pointer("/metadata/labels").and_then(Value::as_object)
}

/// Only image changes (and new ephemeral containers) can make a running pod violate policy.
fn is_significant_pod_update(new: &Value, old: &Value) -> bool {
    for list in ["/spec/containers", "/spec/initContainers"] {
        let (a, b) = (arr_at(new, list), arr_at(old, list));
        if a.len() != b.len() {
            return true;
        }
        if a.iter()
            .zip(b)
            .any(|(x, y)| str_at(x, "/image") != str_at(y, "/image"))
        {
            return true;
        }
    }
    let old_ephemeral = arr_at(old, "/spec/ephemeralContainers");
    arr_at(new, "/spec/ephemeralContainers").iter().any(|c| {
        match old_ephemeral
            .iter()
            .find(|o| str_at(o, "/name") == str_at(c, "/name"))
        {
            None => true,
            Some(o) => str_at(o, "/image") != str_at(c, "/image"),
        }
    })
}

impl PodSecurity {
    fn evaluate_pod(
        &self,
        attrs: &Attributes<'_>,
        policy: &Policy,
        meta: &Value,
        spec: &Value,
        enforce: bool,
        warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        let mut enforce_result = None;
        if enforce {
            let failures = evaluate(policy.enforce, meta, spec);
            if !failures.is_empty() {
                return Err(forbidden_named(
                    attrs.group,
                    attrs.resource,
                    &attrs.display_name(),
                    format_args!(
                        "violates PodSecurity \"{}\": {}",
                        policy.enforce,
                        forbidden_detail(&failures)
                    ),
                ));
            }
            enforce_result = Some(failures);
        }
        let failures = match enforce_result {
            Some(f) if policy.warn == policy.enforce => f,
            _ => evaluate(policy.warn, meta, spec),
        };
        if !failures.is_empty() {
            warnings.push(format!(
                "would violate PodSecurity \"{}\": {}",
                policy.warn,
                forbidden_detail(&failures)
            ));
        }
        Ok(())
    }

    fn validate_namespace(
        &self,
        attrs: &Attributes<'_>,
        warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        if !attrs.subresource.is_empty() {
            return Ok(());
        }
        let Some(ns) = attrs.obj() else {
            return Ok(());
        };
        let (policy, errs) = policy_to_evaluate(namespace_labels(ns));
        let invalid = |errs: &[FieldError]| ApiError::invalid("", "Namespace", attrs.name, errs);
        match attrs.operation {
            Operation::Create => {
                if !errs.is_empty() {
                    return Err(invalid(&errs));
                }
                Ok(())
            }
            Operation::Update => {
                let old = attrs.old_object.cloned().unwrap_or_default();
                let (old_policy, old_errs) = policy_to_evaluate(namespace_labels(&old));
                if !errs.is_empty() && (old_errs.is_empty() || old_errs != errs) {
                    return Err(invalid(&errs));
                }
                if policy.enforce == old_policy.enforce
                    || policy.enforce.level == Level::Privileged
                    || (policy.enforce.version == old_policy.enforce.version
                        && policy.enforce.level <= old_policy.enforce.level)
                {
                    return Ok(());
                }
                let name = str_at(ns, "/metadata/name");
                let name = if name.is_empty() { attrs.name } else { name };
                warnings.extend(self.check_existing_pods(attrs, name, policy.enforce));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Warnings about existing pods that a newly raised enforce level would refuse.
    fn check_existing_pods(
        &self,
        attrs: &Attributes<'_>,
        ns: &str,
        enforce: LevelVersion,
    ) -> Vec<String> {
        let mut pods: Vec<_> = attrs.source.list("", "pods", ns);
        pods.sort_by(|a, b| str_at(a, "/metadata/name").cmp(str_at(b, "/metadata/name")));
        // One pod per controller first, so the checked sample covers every workload.
        let mut seen_controllers = BTreeSet::new();
        let (mut first, mut rest) = (Vec::new(), Vec::new());
        for pod in pods {
            let controller = arr_at(&pod, "/metadata/ownerReferences")
                .iter()
                .find(|o| o["controller"].as_bool() == Some(true))
                .map(|o| str_at(o, "/uid").to_string());
            match controller {
                Some(uid) if seen_controllers.contains(&uid) => rest.push(pod),
                Some(uid) => {
                    seen_controllers.insert(uid);
                    first.push(pod);
                }
                _ => first.push(pod),
            }
        }
        first.extend(rest);
        let total = first.len();
        first.truncate(NAMESPACE_MAX_PODS_TO_CHECK);
        let mut by_reason: BTreeMap<String, (String, usize)> = BTreeMap::new();
        for pod in &first {
            let failures = evaluate(enforce, &pod["metadata"], &pod["spec"]);
            if failures.is_empty() {
                continue;
            }
            let reason = failures
                .iter()
                .map(|(r, _)| r.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let name = str_at(pod, "/metadata/name").to_string();
            let entry = by_reason.entry(reason).or_insert((name.clone(), 0));
            if name < entry.0 {
                entry.0 = name;
            }
            entry.1 += 1;
        }
        let mut warnings = Vec::new();
        if first.len() < total {
            warnings.push(format!(
                "new PodSecurity enforce level only checked against the first {} of {total} existing pods",
                first.len()
            ));
        }
        if !by_reason.is_empty() {
            warnings.push(format!(
                "existing pods in namespace {ns:?} violate the new PodSecurity enforce level \"{enforce}\""
            ));
        }
        let mut pod_warnings: Vec<String> = by_reason
            .into_iter()
            .map(|(reason, (name, n))| match n {
                1 => format!("{name}: {reason}"),
                2 => format!("{name} (and 1 other pod): {reason}"),
                n => format!("{name} (and {} other pods): {reason}", n - 1),
            })
            .collect();
        pod_warnings.sort();
        warnings.extend(pod_warnings);
        warnings
    }
}

impl Plugin for PodSecurity {
    fn name(&self) -> &'static str {
        "PodSecurity"
    }

    fn validate(&self, attrs: &Attributes<'_>, warnings: &mut Vec<String>) -> Result<(), ApiError> {
        if !matches!(attrs.operation, Operation::Create | Operation::Update) {
            return Ok(());
        }
        if attrs.is("", "namespaces") {
            return self.validate_namespace(attrs, warnings);
        }
        let is_pod = attrs.is("", "pods");
        let template = template_pointer(attrs.group, attrs.resource);
        if !is_pod && template.is_none() {
            return Ok(());
        }
        if is_pod && IGNORED_POD_SUBRESOURCES.contains(&attrs.subresource) {
            return Ok(());
        }
        if !is_pod && !attrs.subresource.is_empty() {
            return Ok(());
        }
        let ns = attrs.source.get("", "namespaces", "", attrs.namespace);
        let Some(obj) = attrs.obj() else {
            return Ok(());
        };
        if is_pod {
            let Some(ns) = ns else {
                return Err(ApiError::internal(format!(
                    "failed to lookup namespace {:?}",
                    attrs.namespace
                )));
            };
            let (policy, errs) = policy_to_evaluate(namespace_labels(&ns));
            if errs.is_empty() && policy.fully_privileged() {
                return Ok(());
            }
            if attrs.operation == Operation::Update {
                let old = attrs.old_object.cloned().unwrap_or_default();
                if !is_significant_pod_update(obj, &old) {
                    return Ok(());
                }
            }
            return self.evaluate_pod(
                attrs,
                &policy,
                &obj["metadata"],
                &obj["spec"],
                true,
                warnings,
            );
        }
        // Workloads are only warned about: their pods are enforced when created.
        let Some(ns) = ns else {
            return Ok(());
        };
        let (policy, errs) = policy_to_evaluate(namespace_labels(&ns));
        if errs.is_empty()
            && policy.warn.level == Level::Privileged
            && policy.audit.level == Level::Privileged
        {
            return Ok(());
        }
        let Some(tpl) = template
            .and_then(|p| obj.pointer(p))
            .filter(|t| !t.is_null())
        else {
            return Ok(());
        };
        let (meta, spec) = (&tpl["metadata"], &tpl["spec"]);
        if meta.is_null() && spec.is_null() {
            return Ok(());
        }
        self.evaluate_pod(attrs, &policy, meta, spec, false, warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    fn ns_with(labels: Value) -> Value {
        json!({"metadata": {"name": "ns", "labels": labels}, "status": {"phase": "Active"}})
    }

    fn check(labels: Value, pod: Value) -> Result<Vec<String>, ApiError> {
        Req::create_pod("ns", pod)
            .with("", "namespaces", ns_with(labels))
            .plugin(&PodSecurity)
    }

    fn restricted_pod() -> Value {
        json!({"metadata": {"name": "p"}, "spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "image": "i", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]
        }})
    }

    #[test]
    fn namespaces_without_labels_are_privileged() {
        let p = json!({"metadata": {"name": "p"}, "spec": {"hostNetwork": true,
            "containers": [{"name": "c", "securityContext": {"privileged": true}}]}});
        assert_eq!(check(json!({}), p).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn restricted_enforcement_lists_every_violation_in_upstream_order() {
        let err = check(
            json!({"pod-security.kubernetes.io/enforce": "restricted"}),
            pod("x", json!([{"name": "c", "image": "i"}])),
        )
        .unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            "pods \"x\" is forbidden: violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
        assert!(check(
            json!({"pod-security.kubernetes.io/enforce": "restricted"}),
            restricted_pod()
        )
        .is_ok());
    }

    #[test]
    fn generated_names_print_the_prefix() {
        let mut p = pod(
            "",
            json!([{"name": "c", "securityContext": {"privileged": true}}]),
        );
        p["metadata"]["generateName"] = json!("web-6d4b8f7c9-");
        let err = check(json!({"pod-security.kubernetes.io/enforce": "baseline"}), p).unwrap_err();
        assert!(
            err.message.starts_with(
                "pods \"web-6d4b8f7c9-\" is forbidden: violates PodSecurity \"baseline:latest\""
            ),
            "{}",
            err.message
        );
    }

    #[test]
    fn baseline_checks_host_access_and_privilege() {
        let p = json!({"metadata": {"name": "p"}, "spec": {
            "hostNetwork": true, "hostPID": true,
            "securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]},
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
            "containers": [{"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080}],
                "securityContext": {"privileged": true, "capabilities": {"add": ["NET_ADMIN", "CHOWN"]},
                    "seccompProfile": {"type": "Unconfined"}, "procMount": "Unmasked"}}]
        }});
        let err = check(json!({"pod-security.kubernetes.io/enforce": "baseline"}), p).unwrap_err();
        assert_eq!(
            err.message,
            "pods \"p\" is forbidden: violates PodSecurity \"baseline:latest\": non-default capabilities (container \"a\" must not include \"NET_ADMIN\" in securityContext.capabilities.add), host namespaces (hostNetwork=true, hostPID=true), hostPath volumes (volume \"root\"), hostPort (container \"a\" uses hostPort 8080), privileged (container \"a\" must not set securityContext.privileged=true), procMount (container \"a\" must not set securityContext.procMount to \"Unmasked\"), seccompProfile (container \"a\" must not set securityContext.seccompProfile.type to \"Unconfined\"), forbidden sysctls (kernel.msgmax)"
        );
    }

    #[test]
    fn warn_mode_returns_warnings_and_admits() {
        let w = check(
            json!({"pod-security.kubernetes.io/warn": "baseline"}),
            json!({"metadata": {"name": "p"}, "spec": {"hostIPC": true, "containers": [{"name": "c"}]}}),
        )
        .unwrap();
        assert_eq!(
            w,
            vec![
                "would violate PodSecurity \"baseline:latest\": host namespaces (hostIPC=true)"
                    .to_string()
            ]
        );
    }

    #[test]
    fn enforce_level_implies_warn_at_the_same_level() {
        let (p, errs) = policy_to_evaluate(
            ns_with(json!({"pod-security.kubernetes.io/enforce": "baseline",
                "pod-security.kubernetes.io/enforce-version": "v1.30"}))["metadata"]["labels"]
                .as_object(),
        );
        assert!(errs.is_empty());
        assert_eq!(p.warn.to_string(), "baseline:v1.30");
        assert_eq!(p.enforce.to_string(), "baseline:v1.30");
    }

    #[test]
    fn invalid_labels_fail_closed_for_enforce_and_invalidate_namespace_creation() {
        let (p, errs) =
            policy_to_evaluate(json!({"pod-security.kubernetes.io/enforce": "strict"}).as_object());
        assert_eq!(p.enforce.level, Level::Restricted);
        assert_eq!(errs.len(), 1);
        let mut req = Req::new(Operation::Create, "", "namespaces", "Namespace")
            .name("bad")
            .ns("bad")
            .object(json!({"metadata": {"name": "bad", "labels": {"pod-security.kubernetes.io/enforce": "strict"}}}));
        let err = req.plugin(&PodSecurity).unwrap_err();
        assert_eq!(err.code, 422);
        assert_eq!(
            err.message,
            "Namespace \"bad\" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: \"strict\": must be one of privileged, baseline, restricted"
        );
    }

    #[test]
    fn workloads_get_warnings_but_are_not_refused() {
        let deploy = json!({"metadata": {"name": "d"}, "spec": {"template": {
            "metadata": {"labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "securityContext": {"privileged": true}}]}}}});
        let mut req = Req::new(Operation::Create, "apps", "deployments", "Deployment")
            .ns("ns")
            .name("d")
            .object(deploy)
            .with(
                "",
                "namespaces",
                ns_with(json!({"pod-security.kubernetes.io/enforce": "baseline"})),
            );
        let w = req.plugin(&PodSecurity).unwrap();
        assert_eq!(
            w,
            vec!["would violate PodSecurity \"baseline:latest\": privileged (container \"c\" must not set securityContext.privileged=true)".to_string()]
        );
    }

    #[test]
    fn pod_updates_without_image_changes_are_not_rechecked() {
        let p = json!({"metadata": {"name": "p"}, "spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "a"}]}});
        let mut req = Req::new(Operation::Update, "", "pods", "Pod")
            .ns("ns")
            .name("p")
            .object(p.clone())
            .old(p.clone())
            .with(
                "",
                "namespaces",
                ns_with(json!({"pod-security.kubernetes.io/enforce": "baseline"})),
            );
        assert!(req.plugin(&PodSecurity).is_ok());
        let mut newer = p.clone();
        newer["spec"]["containers"][0]["image"] = json!("b");
        let mut req = Req::new(Operation::Update, "", "pods", "Pod")
            .ns("ns")
            .name("p")
            .object(newer)
            .old(p)
            .with(
                "",
                "namespaces",
                ns_with(json!({"pod-security.kubernetes.io/enforce": "baseline"})),
            );
        assert!(req.plugin(&PodSecurity).is_err());
    }

    #[test]
    fn raising_a_namespace_enforce_level_warns_about_existing_pods() {
        let bad = |name: &str| {
            json!({"metadata": {"name": name, "namespace": "ns"},
                "spec": {"hostNetwork": true, "containers": [{"name": "c"}]}})
        };
        let mut req = Req::new(Operation::Update, "", "namespaces", "Namespace")
            .ns("ns")
            .name("ns")
            .object(ns_with(
                json!({"pod-security.kubernetes.io/enforce": "baseline"}),
            ))
            .old(ns_with(json!({})))
            .with("", "pods", bad("b"))
            .with("", "pods", bad("a"));
        let w = req.plugin(&PodSecurity).unwrap();
        assert_eq!(
            w,
            vec![
                "existing pods in namespace \"ns\" violate the new PodSecurity enforce level \"baseline:latest\"".to_string(),
                "a (and 1 other pod): host namespaces".to_string(),
            ]
        );
    }

    #[test]
    fn versions_select_the_checks_of_that_release() {
        let p = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c",
            "securityContext": {"allowPrivilegeEscalation": false, "runAsNonRoot": true, "runAsUser": 0,
                "seccompProfile": {"type": "RuntimeDefault"}, "capabilities": {"drop": ["ALL"]}}}]}});
        let lv = |v: &str| LevelVersion {
            level: Level::Restricted,
            version: Version::parse(v).unwrap(),
        };
        assert_eq!(evaluate(lv("v1.22"), &p["metadata"], &p["spec"]), vec![]);
        assert_eq!(
            evaluate(lv("latest"), &p["metadata"], &p["spec"])[0].0,
            "runAsUser=0"
        );
        let s = json!({"securityContext": {"sysctls": [{"name": "net.ipv4.tcp_rmem"}]}});
        let base = |v: &str| LevelVersion {
            level: Level::Baseline,
            version: Version::parse(v).unwrap(),
        };
        assert_eq!(evaluate(base("v1.31"), &Value::Null, &s).len(), 1);
        assert!(evaluate(base("v1.32"), &Value::Null, &s).is_empty());
        assert!(Version::parse("v1.05").is_err());
        assert!(Version::parse("1.5").is_err());
    }

    #[test]
    fn restricted_volume_types_are_named() {
        let p = json!({"volumes": [{"name": "a", "nfs": {}}, {"name": "b", "emptyDir": {}}, {"name": "c", "hostPath": {}}],
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}}});
        let f = evaluate(
            LevelVersion {
                level: Level::Restricted,
                version: Version::LATEST,
            },
            &Value::Null,
            &p,
        );
        assert_eq!(
            forbidden_detail(&f),
            "restricted volume types (volumes \"a\", \"c\" use restricted volume types \"hostPath\", \"nfs\")"
        );
    }
}
