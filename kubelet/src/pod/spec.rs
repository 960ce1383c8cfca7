//! Turns a Pod into the CRI's sandbox and container configurations (DNS, env, labels, logs).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};

use crate::cri::api;
use crate::pod::resources;

pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";
pub const RESTART_COUNT_ANNOTATION: &str = "io.kubernetes.container.restartCount";
pub const GRACE_PERIOD_ANNOTATION: &str = "io.kubernetes.pod.terminationGracePeriod";

/// Why a container's configuration could not be built (upstream's CreateContainerConfigError).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("configmap {0:?} not found")]
    ConfigMapNotFound(String),
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    KeyNotFound {
        kind: &'static str,
        namespace: String,
        name: String,
        key: String,
    },
    #[error("unsupported fieldPath {0:?}")]
    FieldPath(String),
    #[error("unsupported resourceFieldRef {0:?}")]
    ResourceField(String),
}

/// The parts of the host resolver configuration pods may inherit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl ResolvConf {
    pub fn parse(text: &str) -> Self {
        let mut conf = Self::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => conf.servers.extend(words.next().map(str::to_string)),
                Some("search") | Some("domain") => {
                    conf.searches = words.map(str::to_string).collect()
                }
                Some("options") => conf.options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
        conf
    }
}

/// What the kubelet knows about its node that pod configs depend on.
#[derive(Debug, Clone)]
pub struct NodeContext {
    pub node_name: String,
    pub node_ip: IpAddr,
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    pub host_dns: ResolvConf,
    pub pod_logs_dir: PathBuf,
    pub cgroup_root: String,
    pub memory_capacity: i64,
    /// --root-dir: pod directories (volumes) live under `<root>/pods/<uid>`.
    pub root_dir: PathBuf,
    /// --sync-frequency: how often volume contents are refreshed from the API.
    pub sync_frequency: std::time::Duration,
}

/// `/var/log/pods/<ns>_<name>_<uid>`.
pub fn pod_log_dir(root: &Path, pod: &Pod) -> PathBuf {
    let m = &pod.metadata;
    root.join(format!(
        "{}_{}_{}",
        m.namespace.as_deref().unwrap_or_default(),
        m.name.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default()
    ))
}

/// The sandbox's DNS: upstream's dnsPolicy rules (ClusterFirst, ClusterFirstWithHostNet,
/// Default, None) merged with the pod's dnsConfig.
pub fn dns_config(pod: &Pod, node: &NodeContext) -> api::DnsConfig {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let cluster_first = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    } && !node.cluster_dns.is_empty();
    let mut config = match policy {
        "None" => api::DnsConfig::default(),
        _ if cluster_first => {
            let d = node.cluster_domain.trim_end_matches('.');
            let mut searches = if d.is_empty() {
                Vec::new()
            } else {
                vec![
                    format!("{namespace}.svc.{d}"),
                    format!("svc.{d}"),
                    d.to_string(),
                ]
            };
            searches.extend(node.host_dns.searches.iter().cloned());
            api::DnsConfig {
                servers: node.cluster_dns.iter().map(|ip| ip.to_string()).collect(),
                searches,
                options: vec!["ndots:5".into()],
            }
        }
        _ => api::DnsConfig {
            servers: node.host_dns.servers.clone(),
            searches: node.host_dns.searches.clone(),
            options: node.host_dns.options.clone(),
        },
    };
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        for server in extra.nameservers.iter().flatten() {
            if !config.servers.contains(server) {
                config.servers.push(server.clone());
            }
        }
        for search in extra.searches.iter().flatten() {
            if !config.searches.contains(search) {
                config.searches.push(search.clone());
            }
        }
        for option in extra.options.iter().flatten() {
            let rendered = match &option.value {
                Some(v) => format!("{}:{v}", option.name.as_deref().unwrap_or_default()),
                None => option.name.clone().unwrap_or_default(),
            };
            let name = option.name.as_deref().unwrap_or_default();
            config.options.retain(|o| o.split(':').next() != Some(name));
            config.options.push(rendered);
        }
    }
    config.searches.truncate(32);
    config
}

fn pod_labels(pod: &Pod) -> HashMap<String, String> {
    let m = &pod.metadata;
    let mut labels: HashMap<String, String> = m
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(POD_NAME_LABEL.into(), m.name.clone().unwrap_or_default());
    labels.insert(
        POD_NAMESPACE_LABEL.into(),
        m.namespace.clone().unwrap_or_default(),
    );
    labels.insert(POD_UID_LABEL.into(), m.uid.clone().unwrap_or_default());
    labels
}

/// The hostname a pod's sandbox gets: spec.hostname or the pod name, at most 63 characters.
/// Host-network pods get none: they share the node's UTS namespace, where runc refuses to set one.
fn hostname(pod: &Pod) -> String {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.host_network).unwrap_or(false) {
        return String::new();
    }
    let name = spec
        .and_then(|s| s.hostname.clone())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    name.chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches(['-', '.'])
        .to_string()
}

pub fn sandbox_config(pod: &Pod, attempt: u32, node: &NodeContext) -> api::PodSandboxConfig {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let host_pid = spec.and_then(|s| s.host_pid).unwrap_or(false);
    let host_ipc = spec.and_then(|s| s.host_ipc).unwrap_or(false);
    let port_mappings = spec
        .into_iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .map(|p| api::PortMapping {
            protocol: match p.protocol.as_deref() {
                Some("UDP") => api::Protocol::Udp,
                Some("SCTP") => api::Protocol::Sctp,
                _ => api::Protocol::Tcp,
            } as i32,
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();
    let qos = resources::qos_class(pod);
    let mode = |host: bool| {
        if host {
            api::NamespaceMode::Node as i32
        } else {
            api::NamespaceMode::Pod as i32
        }
    };
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: m.name.clone().unwrap_or_default(),
            uid: m.uid.clone().unwrap_or_default(),
            namespace: m.namespace.clone().unwrap_or_default(),
            attempt,
        }),
        hostname: hostname(pod),
        log_directory: pod_log_dir(&node.pod_logs_dir, pod)
            .to_string_lossy()
            .into_owned(),
        dns_config: Some(dns_config(pod, node)),
        port_mappings,
        labels: pod_labels(pod),
        annotations: m
            .annotations
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        linux: Some(api::LinuxPodSandboxConfig {
            cgroup_parent: resources::pod_cgroup_parent(
                &node.cgroup_root,
                qos,
                m.uid.as_deref().unwrap_or_default(),
            ),
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(api::NamespaceOption {
                    network: mode(host_network),
                    pid: if host_pid {
                        api::NamespaceMode::Node as i32
                    } else {
                        api::NamespaceMode::Container as i32
                    },
                    ipc: mode(host_ipc),
                    ..Default::default()
                }),
                // The runtime refuses privileged containers in an unprivileged sandbox; the
                // sandbox is privileged when any container is, as upstream decides it.
                privileged: any_privileged(pod),
                ..Default::default()
            }),
            ..Default::default()
        }),
        windows: None,
    }
}

/// Whether any (init, sidecar or main) container of the pod asks for privileged mode.
fn any_privileged(pod: &Pod) -> bool {
    pod.spec.as_ref().is_some_and(|spec| {
        spec.init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
            .any(|c| {
                c.security_context
                    .as_ref()
                    .and_then(|sc| sc.privileged)
                    .unwrap_or(false)
            })
    })
}

/// Data of the ConfigMaps and Secrets a container's env refers to, fetched by the caller.
#[derive(Debug, Default, Clone)]
pub struct EnvSources {
    pub config_maps: HashMap<String, Option<BTreeMap<String, String>>>,
    pub secrets: HashMap<String, Option<BTreeMap<String, String>>>,
}

/// Names of the ConfigMaps and Secrets `container`'s env and envFrom refer to.
pub fn env_references(container: &Container) -> (Vec<String>, Vec<String>) {
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    for from in container.env_from.iter().flatten() {
        if let Some(r) = &from.config_map_ref {
            cms.push(r.name.clone());
        }
        if let Some(r) = &from.secret_ref {
            secrets.push(r.name.clone());
        }
    }
    for var in container.env.iter().flatten() {
        if let Some(from) = &var.value_from {
            if let Some(r) = &from.config_map_key_ref {
                cms.push(r.name.clone());
            }
            if let Some(r) = &from.secret_key_ref {
                secrets.push(r.name.clone());
            }
        }
    }
    cms.sort();
    cms.dedup();
    secrets.sort();
    secrets.dedup();
    (cms, secrets)
}

/// Expands `$(VAR)` references from `env` as upstream does: `$$` escapes a `$`, unknown
/// references are kept verbatim.
pub fn expand(input: &str, env: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let bytes = input.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                b'(' => {
                    if let Some(end) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + end];
                        match env.get(name) {
                            Some(v) => out.push_str(v),
                            None => out.push_str(&input[i..i + 3 + end]),
                        }
                        i += 3 + end;
                        continue;
                    }
                }
                _ => {}
            }
        }
        let ch = input[i..].chars().next().expect("i is on a char boundary");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

pub(crate) fn field_value(
    pod: &Pod,
    path: &str,
    pod_ip: &str,
    host_ip: &str,
) -> Result<String, ConfigError> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let keyed = |prefix: &str, map: Option<&BTreeMap<String, String>>| {
        path.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix("']"))
            .map(|key| map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    if let Some(v) = keyed("metadata.labels['", m.labels.as_ref()) {
        return Ok(v);
    }
    if let Some(v) = keyed("metadata.annotations['", m.annotations.as_ref()) {
        return Ok(v);
    }
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        other => return Err(ConfigError::FieldPath(other.to_string())),
    })
}

pub(crate) fn resource_value(
    container: &Container,
    resource: &str,
    divisor: Option<&str>,
) -> Result<String, ConfigError> {
    let res = container.resources.as_ref();
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| ConfigError::ResourceField(resource.to_string()))?;
    let map = match kind {
        "limits" => res.and_then(|r| r.limits.as_ref()),
        "requests" => res.and_then(|r| r.requests.as_ref()),
        _ => return Err(ConfigError::ResourceField(resource.to_string())),
    };
    let scale = 1000.0;
    let value = map
        .and_then(|m| m.get(name))
        .and_then(|q| resources::parse_quantity(&q.0, scale));
    let divisor = divisor
        .and_then(|d| resources::parse_quantity(d, scale))
        .filter(|d| *d > 0)
        .unwrap_or(1000);
    // An unset limit resolves to 0 here (upstream uses the node's allocatable).
    let value = value.unwrap_or(0);
    Ok(((value + divisor - 1) / divisor).to_string())
}

/// The container's environment in order (envFrom first, then env), with `$(VAR)` expanded.
pub fn build_env(
    pod: &Pod,
    container: &Container,
    sources: &EnvSources,
    pod_ip: &str,
    host_ip: &str,
) -> Result<Vec<(String, String)>, ConfigError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut order: Vec<String> = Vec::new();
    let mut values: HashMap<String, String> = HashMap::new();
    fn set(
        (order, values): (&mut Vec<String>, &mut HashMap<String, String>),
        k: String,
        v: String,
    ) {
        if !values.contains_key(&k) {
            order.push(k.clone());
        }
        values.insert(k, v);
    }
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match sources.config_maps.get(&r.name).cloned().flatten() {
                Some(data) => data
                    .into_iter()
                    .for_each(|(k, v)| set((&mut order, &mut values), format!("{prefix}{k}"), v)),
                None if r.optional.unwrap_or(false) => {}
                None => return Err(ConfigError::ConfigMapNotFound(r.name.clone())),
            }
        }
        if let Some(r) = &from.secret_ref {
            match sources.secrets.get(&r.name).cloned().flatten() {
                Some(data) => data
                    .into_iter()
                    .for_each(|(k, v)| set((&mut order, &mut values), format!("{prefix}{k}"), v)),
                None if r.optional.unwrap_or(false) => {}
                None => return Err(ConfigError::SecretNotFound(r.name.clone())),
            }
        }
    }
    for EnvVar {
        name,
        value,
        value_from,
    } in container.env.iter().flatten()
    {
        let resolved = if let Some(from) = value_from {
            if let Some(f) = &from.field_ref {
                Some(field_value(pod, &f.field_path, pod_ip, host_ip)?)
            } else if let Some(r) = &from.resource_field_ref {
                Some(resource_value(
                    container,
                    &r.resource,
                    r.divisor.as_ref().map(|d| d.0.as_str()),
                )?)
            } else if let Some(r) = &from.config_map_key_ref {
                key_ref(
                    "ConfigMap",
                    &namespace,
                    &r.name,
                    &r.key,
                    r.optional,
                    sources.config_maps.get(&r.name),
                    ConfigError::ConfigMapNotFound,
                )?
            } else if let Some(r) = &from.secret_key_ref {
                key_ref(
                    "Secret",
                    &namespace,
                    &r.name,
                    &r.key,
                    r.optional,
                    sources.secrets.get(&r.name),
                    ConfigError::SecretNotFound,
                )?
            } else {
                None
            }
        } else {
            Some(expand(value.as_deref().unwrap_or_default(), &values))
        };
        if let Some(v) = resolved {
            set((&mut order, &mut values), name.clone(), v);
        }
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let v = values.get(&k).cloned().unwrap_or_default();
            (k, v)
        })
        .collect())
}

fn key_ref(
    kind: &'static str,
    namespace: &str,
    name: &str,
    key: &str,
    optional: Option<bool>,
    data: Option<&Option<BTreeMap<String, String>>>,
    not_found: fn(String) -> ConfigError,
) -> Result<Option<String>, ConfigError> {
    let optional = optional.unwrap_or(false);
    match data.cloned().flatten() {
        None if optional => Ok(None),
        None => Err(not_found(name.to_string())),
        Some(map) => match map.get(key) {
            Some(v) => Ok(Some(v.clone())),
            None if optional => Ok(None),
            None => Err(ConfigError::KeyNotFound {
                kind,
                namespace: namespace.to_string(),
                name: name.to_string(),
                key: key.to_string(),
            }),
        },
    }
}

/// The CRI container configuration; `env` comes from [`build_env`].
pub fn container_config(
    pod: &Pod,
    container: &Container,
    attempt: u32,
    env: Vec<(String, String)>,
    image: &str,
    node: &NodeContext,
) -> api::ContainerConfig {
    let m = &pod.metadata;
    let map: HashMap<String, String> = env.iter().cloned().collect();
    let qos = resources::qos_class(pod);
    let mut labels = HashMap::new();
    labels.insert(POD_NAME_LABEL.into(), m.name.clone().unwrap_or_default());
    labels.insert(
        POD_NAMESPACE_LABEL.into(),
        m.namespace.clone().unwrap_or_default(),
    );
    labels.insert(POD_UID_LABEL.into(), m.uid.clone().unwrap_or_default());
    labels.insert(CONTAINER_NAME_LABEL.into(), container.name.clone());
    let mut annotations = HashMap::new();
    annotations.insert(RESTART_COUNT_ANNOTATION.into(), attempt.to_string());
    let grace = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    annotations.insert(GRACE_PERIOD_ANNOTATION.into(), grace.to_string());
    let sc = container.security_context.as_ref();
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let run_as_user = sc
        .and_then(|s| s.run_as_user)
        .or_else(|| pod_sc.and_then(|s| s.run_as_user));
    let run_as_group = sc
        .and_then(|s| s.run_as_group)
        .or_else(|| pod_sc.and_then(|s| s.run_as_group));
    let capabilities = sc
        .and_then(|s| s.capabilities.as_ref())
        .map(|c| api::Capability {
            add_capabilities: c.add.clone().unwrap_or_default(),
            drop_capabilities: c.drop.clone().unwrap_or_default(),
            ..Default::default()
        });
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: container.name.clone(),
            attempt,
        }),
        image: Some(api::ImageSpec {
            image: image.to_string(),
            user_specified_image: container.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command: container
            .command
            .iter()
            .flatten()
            .map(|s| expand(s, &map))
            .collect(),
        args: container
            .args
            .iter()
            .flatten()
            .map(|s| expand(s, &map))
            .collect(),
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs: env
            .into_iter()
            .map(|(key, value)| api::KeyValue { key, value })
            .collect(),
        labels,
        annotations,
        log_path: format!("{}/{attempt}.log", container.name),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        linux: Some(api::LinuxContainerConfig {
            resources: Some(resources::linux_resources(
                container,
                qos,
                node.memory_capacity,
            )),
            security_context: Some(api::LinuxContainerSecurityContext {
                capabilities,
                privileged: sc.and_then(|s| s.privileged).unwrap_or(false),
                run_as_user: run_as_user.map(|value| api::Int64Value { value }),
                run_as_group: run_as_group.map(|value| api::Int64Value { value }),
                readonly_rootfs: sc
                    .and_then(|s| s.read_only_root_filesystem)
                    .unwrap_or(false),
                no_new_privs: sc
                    .and_then(|s| s.allow_privilege_escalation)
                    .map(|allow| !allow)
                    .unwrap_or(false),
                namespace_options: Some(api::NamespaceOption {
                    network: if host_network {
                        api::NamespaceMode::Node as i32
                    } else {
                        api::NamespaceMode::Pod as i32
                    },
                    pid: api::NamespaceMode::Container as i32,
                    ipc: api::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMapKeySelector, EnvVarSource, ObjectFieldSelector, PodDNSConfig, PodSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node() -> NodeContext {
        NodeContext {
            node_name: "n1".into(),
            node_ip: IpAddr::from([10, 0, 0, 5]),
            cluster_dns: vec![IpAddr::from([10, 96, 0, 10])],
            cluster_domain: "cluster.local".into(),
            host_dns: ResolvConf::parse("nameserver 1.1.1.1\nsearch corp.example\noptions edns0\n"),
            pod_logs_dir: PathBuf::from("/var/log/pods"),
            cgroup_root: String::new(),
            memory_capacity: 1 << 30,
            root_dir: PathBuf::from("/var/lib/kubelet"),
            sync_frequency: std::time::Duration::from_secs(60),
        }
    }

    fn pod(spec: PodSpec) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("app".into()),
                uid: Some("u1".into()),
                labels: Some([("tier".to_string(), "front".to_string())].into()),
                ..Default::default()
            },
            spec: Some(spec),
            ..Default::default()
        }
    }

    #[test]
    fn dns_policies() {
        let cases: Vec<(&str, PodSpec, Vec<&str>, Vec<&str>)> = vec![
            (
                "cluster first",
                PodSpec::default(),
                vec!["10.96.0.10"],
                vec![
                    "app.svc.cluster.local",
                    "svc.cluster.local",
                    "cluster.local",
                    "corp.example",
                ],
            ),
            (
                "host network falls back to the host",
                PodSpec {
                    host_network: Some(true),
                    ..Default::default()
                },
                vec!["1.1.1.1"],
                vec!["corp.example"],
            ),
            (
                "default",
                PodSpec {
                    dns_policy: Some("Default".into()),
                    ..Default::default()
                },
                vec!["1.1.1.1"],
                vec!["corp.example"],
            ),
            (
                "none with dnsConfig",
                PodSpec {
                    dns_policy: Some("None".into()),
                    dns_config: Some(PodDNSConfig {
                        nameservers: Some(vec!["9.9.9.9".into()]),
                        searches: Some(vec!["x.y".into()]),
                        options: None,
                    }),
                    ..Default::default()
                },
                vec!["9.9.9.9"],
                vec!["x.y"],
            ),
        ];
        for (name, spec, servers, searches) in cases {
            let d = dns_config(&pod(spec), &node());
            assert_eq!(d.servers, servers, "{name}");
            assert_eq!(d.searches, searches, "{name}");
        }
        let cf = dns_config(&pod(PodSpec::default()), &node());
        assert_eq!(cf.options, vec!["ndots:5"]);
    }

    #[test]
    fn expansion_follows_upstream_rules() {
        let env: HashMap<String, String> = [("A".to_string(), "1".to_string())].into();
        assert_eq!(expand("x$(A)y", &env), "x1y");
        assert_eq!(expand("$$(A)", &env), "$(A)");
        assert_eq!(expand("$(B)", &env), "$(B)");
        assert_eq!(expand("$(A", &env), "$(A");
        assert_eq!(expand("ünï$(A)", &env), "ünï1");
    }

    #[test]
    fn env_resolves_fields_refs_and_earlier_vars() {
        let container = Container {
            name: "c".into(),
            env: Some(vec![
                EnvVar {
                    name: "POD".into(),
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.name".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                EnvVar {
                    name: "GREETING".into(),
                    value: Some("hi $(POD) on $(NODE_IP)".into()),
                    ..Default::default()
                },
                EnvVar {
                    name: "COLOR".into(),
                    value_from: Some(EnvVarSource {
                        config_map_key_ref: Some(ConfigMapKeySelector {
                            name: "cfg".into(),
                            key: "color".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let p = pod(PodSpec::default());
        let mut sources = EnvSources::default();
        sources.config_maps.insert(
            "cfg".into(),
            Some([("color".to_string(), "blue".to_string())].into()),
        );
        let env = build_env(&p, &container, &sources, "10.1.0.2", "10.0.0.5").expect("env");
        assert_eq!(
            env,
            vec![
                ("POD".to_string(), "web".to_string()),
                ("GREETING".to_string(), "hi web on $(NODE_IP)".to_string()),
                ("COLOR".to_string(), "blue".to_string()),
            ]
        );
        sources.config_maps.insert("cfg".into(), None);
        assert_eq!(
            build_env(&p, &container, &sources, "", ""),
            Err(ConfigError::ConfigMapNotFound("cfg".into()))
        );
        sources
            .config_maps
            .insert("cfg".into(), Some(BTreeMap::new()));
        assert!(matches!(
            build_env(&p, &container, &sources, "", ""),
            Err(ConfigError::KeyNotFound { .. })
        ));
    }

    #[test]
    fn sandbox_carries_upstream_labels_and_log_dir() {
        let p = pod(PodSpec::default());
        let s = sandbox_config(&p, 2, &node());
        assert_eq!(s.labels[POD_NAME_LABEL], "web");
        assert_eq!(s.labels[POD_NAMESPACE_LABEL], "app");
        assert_eq!(s.labels[POD_UID_LABEL], "u1");
        assert_eq!(s.labels["tier"], "front");
        assert_eq!(s.log_directory, "/var/log/pods/app_web_u1");
        assert_eq!(s.hostname, "web");
        assert_eq!(s.metadata.expect("metadata").attempt, 2);
        let linux = s.linux.expect("linux");
        assert_eq!(linux.cgroup_parent, "/kubepods/besteffort/podu1");
        assert!(!linux.security_context.expect("security context").privileged);
    }

    #[test]
    fn a_privileged_container_makes_the_sandbox_privileged() {
        let p = pod(PodSpec {
            containers: vec![Container {
                name: "proxy".into(),
                security_context: Some(k8s_openapi::api::core::v1::SecurityContext {
                    privileged: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        });
        let s = sandbox_config(&p, 0, &node());
        let sc = s
            .linux
            .and_then(|l| l.security_context)
            .expect("security context");
        assert!(sc.privileged);
    }
}
