//! Static Pod manifests of the control plane: kube-store (the `etcd local` phase),
//! kube-apiserver, kube-controller-manager and kube-scheduler, with kubeadm's flags and probes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    Container, HTTPGetAction, HostPathVolumeSource, Pod, PodSecurityContext, PodSpec, Probe,
    ResourceRequirements, SeccompProfile, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::config::{join_host_port, Config};
use crate::kubeconfig;
use crate::Error;

pub const KUBE_STORE: &str = "kube-store";
pub const KUBE_APISERVER: &str = "kube-apiserver";
pub const KUBE_CONTROLLER_MANAGER: &str = "kube-controller-manager";
pub const KUBE_SCHEDULER: &str = "kube-scheduler";

pub const STORE_CLIENT_PORT: u16 = 2379;
pub const STORE_PEER_PORT: u16 = 2380;
pub const STORE_METRICS_PORT: u16 = 2381;
pub const CONTROLLER_MANAGER_PORT: u16 = 10257;
pub const SCHEDULER_PORT: u16 = 10259;

/// Where the system's CA bundle lives; a host path kubeadm does not own, so not under the root.
const SYSTEM_CA_CERTS: &str = "/etc/ssl/certs";

/// Defaults, then extraArgs: a flag given in extraArgs replaces every default of that name;
/// the result is sorted by flag name as upstream does.
pub fn build_args(defaults: BTreeMap<&str, String>, extra: &[(String, String)]) -> Vec<String> {
    let mut args: Vec<(String, String)> = defaults
        .into_iter()
        .filter(|(k, _)| !extra.iter().any(|(n, _)| n == k))
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    args.extend(extra.iter().cloned());
    args.sort_by(|a, b| a.0.cmp(&b.0));
    args.into_iter()
        .map(|(k, v)| format!("--{k}={v}"))
        .collect()
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

fn arg<'a>(extra: &'a [(String, String)], name: &str) -> Option<&'a str> {
    extra
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn url(scheme: &str, ip: IpAddr, port: u16) -> String {
    format!("{scheme}://{}", join_host_port(&ip.to_string(), port))
}

/// The store's command line (`etcd local`): etcd's flags against the etcd PKI.
pub fn store_command(cfg: &Config) -> Vec<String> {
    let etcd = cfg.cert_dir.join("etcd");
    let adv = cfg.advertise_address;
    let local = IpAddr::from([127, 0, 0, 1]);
    let mut listen_client = vec![url("https", local, STORE_CLIENT_PORT)];
    if adv != local {
        listen_client.push(url("https", adv, STORE_CLIENT_PORT));
    }
    let peer = url("https", adv, STORE_PEER_PORT);
    let mut d = BTreeMap::new();
    d.insert("name", cfg.node_name.clone());
    d.insert("data-dir", p(&cfg.etcd_data_dir));
    d.insert(
        "advertise-client-urls",
        url("https", adv, STORE_CLIENT_PORT),
    );
    d.insert("listen-client-urls", listen_client.join(","));
    d.insert("listen-peer-urls", peer.clone());
    d.insert("initial-advertise-peer-urls", peer.clone());
    d.insert("initial-cluster", format!("{}={peer}", cfg.node_name));
    d.insert(
        "listen-metrics-urls",
        url("http", local, STORE_METRICS_PORT),
    );
    d.insert("cert-file", p(&etcd.join("server.crt")));
    d.insert("key-file", p(&etcd.join("server.key")));
    d.insert("trusted-ca-file", p(&etcd.join("ca.crt")));
    d.insert("client-cert-auth", "true".into());
    d.insert("peer-cert-file", p(&etcd.join("peer.crt")));
    d.insert("peer-key-file", p(&etcd.join("peer.key")));
    d.insert("peer-trusted-ca-file", p(&etcd.join("ca.crt")));
    d.insert("peer-client-cert-auth", "true".into());
    d.insert("snapshot-count", "10000".into());
    d.insert("experimental-watch-progress-notify-interval", "5s".into());
    let mut cmd = vec![KUBE_STORE.to_string()];
    cmd.extend(build_args(d, &cfg.etcd_extra_args));
    cmd
}

pub fn apiserver_command(cfg: &Config) -> Vec<String> {
    let c = |f: &str| p(&cfg.cert_dir.join(f));
    let mut d = BTreeMap::new();
    d.insert("advertise-address", cfg.advertise_address.to_string());
    d.insert("allow-privileged", "true".into());
    d.insert("authorization-mode", "Node,RBAC".into());
    d.insert("client-ca-file", c("ca.crt"));
    d.insert("enable-admission-plugins", "NodeRestriction".into());
    d.insert("enable-bootstrap-token-auth", "true".into());
    d.insert("etcd-cafile", c("etcd/ca.crt"));
    d.insert("etcd-certfile", c("apiserver-etcd-client.crt"));
    d.insert("etcd-keyfile", c("apiserver-etcd-client.key"));
    d.insert(
        "etcd-servers",
        url("https", IpAddr::from([127, 0, 0, 1]), STORE_CLIENT_PORT),
    );
    d.insert(
        "kubelet-client-certificate",
        c("apiserver-kubelet-client.crt"),
    );
    d.insert("kubelet-client-key", c("apiserver-kubelet-client.key"));
    d.insert(
        "kubelet-preferred-address-types",
        "InternalIP,ExternalIP,Hostname".into(),
    );
    d.insert("proxy-client-cert-file", c("front-proxy-client.crt"));
    d.insert("proxy-client-key-file", c("front-proxy-client.key"));
    d.insert("requestheader-allowed-names", "front-proxy-client".into());
    d.insert("requestheader-client-ca-file", c("front-proxy-ca.crt"));
    d.insert(
        "requestheader-extra-headers-prefix",
        "X-Remote-Extra-".into(),
    );
    d.insert("requestheader-group-headers", "X-Remote-Group".into());
    d.insert("requestheader-username-headers", "X-Remote-User".into());
    d.insert("secure-port", cfg.bind_port.to_string());
    d.insert(
        "service-account-issuer",
        format!("https://kubernetes.default.svc.{}", cfg.dns_domain),
    );
    d.insert("service-account-key-file", c("sa.pub"));
    d.insert("service-account-signing-key-file", c("sa.key"));
    d.insert("service-cluster-ip-range", cfg.service_subnet.clone());
    d.insert("tls-cert-file", c("apiserver.crt"));
    d.insert("tls-private-key-file", c("apiserver.key"));
    let mut cmd = vec![KUBE_APISERVER.to_string()];
    cmd.extend(build_args(d, &cfg.apiserver_extra_args));
    cmd
}

/// kube-controller-manager's flags, as upstream kubeadm passes them.
pub fn controller_manager_command(cfg: &Config) -> Vec<String> {
    let c = |f: &str| p(&cfg.cert_dir.join(f));
    let kc = p(&kubeconfig::path(cfg, kubeconfig::CONTROLLER_MANAGER));
    let mut d = BTreeMap::new();
    d.insert("authentication-kubeconfig", kc.clone());
    d.insert("authorization-kubeconfig", kc.clone());
    d.insert("bind-address", "127.0.0.1".into());
    d.insert("client-ca-file", c("ca.crt"));
    d.insert("cluster-name", cfg.cluster_name.clone());
    d.insert("cluster-signing-cert-file", c("ca.crt"));
    d.insert("cluster-signing-key-file", c("ca.key"));
    d.insert("controllers", "*,bootstrapsigner,tokencleaner".into());
    d.insert("kubeconfig", kc);
    d.insert("leader-elect", "true".into());
    d.insert("requestheader-client-ca-file", c("front-proxy-ca.crt"));
    d.insert("root-ca-file", c("ca.crt"));
    d.insert("service-account-private-key-file", c("sa.key"));
    d.insert("service-cluster-ip-range", cfg.service_subnet.clone());
    d.insert("use-service-account-credentials", "true".into());
    if let Some(pods) = &cfg.pod_subnet {
        d.insert("allocate-node-cidrs", "true".into());
        d.insert("cluster-cidr", pods.clone());
    }
    let mut cmd = vec![KUBE_CONTROLLER_MANAGER.to_string()];
    cmd.extend(build_args(d, &cfg.controller_manager_extra_args));
    cmd
}

pub fn scheduler_command(cfg: &Config) -> Vec<String> {
    let kc = p(&kubeconfig::path(cfg, kubeconfig::SCHEDULER));
    let mut d = BTreeMap::new();
    d.insert("authentication-kubeconfig", kc.clone());
    d.insert("authorization-kubeconfig", kc.clone());
    d.insert("bind-address", "127.0.0.1".into());
    // The client CAs come from the apiserver's extension-apiserver-authentication ConfigMap.
    d.insert("kubeconfig", kc);
    d.insert("leader-elect", "true".into());
    let mut cmd = vec![KUBE_SCHEDULER.to_string()];
    cmd.extend(build_args(d, &cfg.scheduler_extra_args));
    cmd
}

/// Where a probe connects: upstream's rule is "the bind address unless it is a wildcard".
fn probe_host(bind: Option<&str>, fallback: &str) -> String {
    match bind {
        Some(b) if !b.is_empty() && b != "0.0.0.0" && b != "::" => b.to_string(),
        _ => fallback.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub scheme: String,
}

/// The store's probe endpoint, from the first --listen-metrics-urls entry.
pub fn store_probe_endpoint(cfg: &Config) -> Endpoint {
    let fallback = Endpoint {
        host: "127.0.0.1".into(),
        port: STORE_METRICS_PORT,
        scheme: "HTTP".into(),
    };
    let Some(urls) = cfg.etcd_arg("listen-metrics-urls") else {
        return fallback;
    };
    let first = urls.split(',').next().unwrap_or_default().trim();
    let Some((scheme, rest)) = first.split_once("://") else {
        return fallback;
    };
    let hostport = rest.split('/').next().unwrap_or_default();
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, port)) => (h.trim_matches(|c| c == '[' || c == ']'), port.parse().ok()),
        None => (hostport, None),
    };
    Endpoint {
        host: probe_host(Some(host), "127.0.0.1"),
        port: port.unwrap_or(STORE_METRICS_PORT),
        scheme: if scheme.eq_ignore_ascii_case("https") {
            "HTTPS".into()
        } else {
            "HTTP".into()
        },
    }
}

pub fn apiserver_probe_endpoint(cfg: &Config) -> Endpoint {
    let adv = cfg.advertise_address.to_string();
    let fallback = if adv == "0.0.0.0" || adv == "::" {
        "127.0.0.1".to_string()
    } else {
        adv
    };
    Endpoint {
        host: probe_host(arg(&cfg.apiserver_extra_args, "bind-address"), &fallback),
        port: arg(&cfg.apiserver_extra_args, "secure-port")
            .and_then(|p| p.parse().ok())
            .unwrap_or(cfg.bind_port),
        scheme: "HTTPS".into(),
    }
}

fn component_endpoint(extra: &[(String, String)], default_port: u16) -> Endpoint {
    Endpoint {
        host: probe_host(arg(extra, "bind-address"), "127.0.0.1"),
        port: arg(extra, "secure-port")
            .and_then(|p| p.parse().ok())
            .unwrap_or(default_port),
        scheme: "HTTPS".into(),
    }
}

pub fn controller_manager_probe_endpoint(cfg: &Config) -> Endpoint {
    component_endpoint(&cfg.controller_manager_extra_args, CONTROLLER_MANAGER_PORT)
}

pub fn scheduler_probe_endpoint(cfg: &Config) -> Endpoint {
    component_endpoint(&cfg.scheduler_extra_args, SCHEDULER_PORT)
}

fn probe(ep: &Endpoint, path: &str, failure: i32, initial: Option<i32>, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            host: Some(ep.host.clone()),
            path: Some(path.to_string()),
            port: IntOrString::Int(i32::from(ep.port)),
            scheme: Some(ep.scheme.clone()),
            ..Default::default()
        }),
        failure_threshold: Some(failure),
        initial_delay_seconds: initial,
        period_seconds: Some(period),
        timeout_seconds: Some(15),
        ..Default::default()
    }
}

fn liveness(ep: &Endpoint, path: &str) -> Probe {
    probe(ep, path, 8, Some(10), 10)
}

fn readiness(ep: &Endpoint, path: &str) -> Probe {
    probe(ep, path, 3, None, 1)
}

fn startup(ep: &Endpoint, path: &str) -> Probe {
    probe(ep, path, 24, Some(10), 10)
}

/// A hostPath volume mounted at the same path in the container, so flags work on both sides.
struct Mount {
    name: &'static str,
    path: PathBuf,
    kind: &'static str,
    read_only: bool,
}

fn mount(name: &'static str, path: PathBuf, kind: &'static str, read_only: bool) -> Mount {
    Mount {
        name,
        path,
        kind,
        read_only,
    }
}

struct Component {
    name: &'static str,
    image: String,
    command: Vec<String>,
    cpu: &'static str,
    memory: Option<&'static str>,
    liveness: Probe,
    readiness: Option<Probe>,
    startup: Probe,
    mounts: Vec<Mount>,
    annotations: BTreeMap<String, String>,
}

fn pod(c: Component) -> Pod {
    let mut requests = BTreeMap::from([("cpu".to_string(), Quantity(c.cpu.to_string()))]);
    if let Some(m) = c.memory {
        requests.insert("memory".to_string(), Quantity(m.to_string()));
    }
    let labels = BTreeMap::from([
        ("component".to_string(), c.name.to_string()),
        ("tier".to_string(), "control-plane".to_string()),
    ]);
    Pod {
        metadata: ObjectMeta {
            name: Some(c.name.to_string()),
            namespace: Some("kube-system".to_string()),
            labels: Some(labels),
            annotations: (!c.annotations.is_empty()).then_some(c.annotations),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: c.name.to_string(),
                image: Some(c.image),
                image_pull_policy: Some("IfNotPresent".to_string()),
                command: Some(c.command),
                liveness_probe: Some(c.liveness),
                readiness_probe: c.readiness,
                startup_probe: Some(c.startup),
                resources: Some(ResourceRequirements {
                    requests: Some(requests),
                    ..Default::default()
                }),
                volume_mounts: Some(
                    c.mounts
                        .iter()
                        .map(|m| VolumeMount {
                            name: m.name.to_string(),
                            mount_path: p(&m.path),
                            read_only: m.read_only.then_some(true),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }],
            host_network: Some(true),
            priority: Some(2_000_001_000),
            priority_class_name: Some("system-node-critical".to_string()),
            security_context: Some(PodSecurityContext {
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".to_string(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            volumes: Some(
                c.mounts
                    .iter()
                    .map(|m| Volume {
                        name: m.name.to_string(),
                        host_path: Some(HostPathVolumeSource {
                            path: p(&m.path),
                            type_: Some(m.kind.to_string()),
                        }),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

fn image(cfg: &Config, name: &str) -> String {
    format!("{}/{name}:{}", cfg.image_repository, cfg.kubernetes_version)
}

pub fn store_pod(cfg: &Config) -> Pod {
    let ep = store_probe_endpoint(cfg);
    let adv_url = cfg
        .etcd_arg("advertise-client-urls")
        .map(String::from)
        .unwrap_or_else(|| url("https", cfg.advertise_address, STORE_CLIENT_PORT));
    pod(Component {
        name: KUBE_STORE,
        image: image(cfg, KUBE_STORE),
        command: store_command(cfg),
        cpu: "100m",
        memory: Some("100Mi"),
        liveness: liveness(&ep, "/livez"),
        readiness: Some(readiness(&ep, "/readyz")),
        startup: startup(&ep, "/livez"),
        mounts: vec![
            mount(
                "etcd-data",
                cfg.etcd_data_dir.clone(),
                "DirectoryOrCreate",
                false,
            ),
            mount(
                "etcd-certs",
                cfg.cert_dir.join("etcd"),
                "DirectoryOrCreate",
                true,
            ),
        ],
        annotations: BTreeMap::from([(
            "kubeadm.kubernetes.io/etcd.advertise-client-urls".to_string(),
            adv_url,
        )]),
    })
}

pub fn apiserver_pod(cfg: &Config) -> Pod {
    let ep = apiserver_probe_endpoint(cfg);
    pod(Component {
        name: KUBE_APISERVER,
        image: image(cfg, KUBE_APISERVER),
        command: apiserver_command(cfg),
        cpu: "250m",
        memory: None,
        liveness: liveness(&ep, "/livez"),
        readiness: Some(readiness(&ep, "/readyz")),
        startup: startup(&ep, "/livez"),
        mounts: vec![
            mount(
                "ca-certs",
                SYSTEM_CA_CERTS.into(),
                "DirectoryOrCreate",
                true,
            ),
            mount("k8s-certs", cfg.cert_dir.clone(), "DirectoryOrCreate", true),
        ],
        annotations: BTreeMap::from([(
            "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint".to_string(),
            join_host_port(&cfg.advertise_address.to_string(), cfg.bind_port),
        )]),
    })
}

pub fn controller_manager_pod(cfg: &Config) -> Pod {
    let ep = controller_manager_probe_endpoint(cfg);
    pod(Component {
        name: KUBE_CONTROLLER_MANAGER,
        image: image(cfg, KUBE_CONTROLLER_MANAGER),
        command: controller_manager_command(cfg),
        cpu: "200m",
        memory: None,
        liveness: liveness(&ep, "/healthz"),
        readiness: None,
        startup: startup(&ep, "/healthz"),
        mounts: vec![
            mount(
                "ca-certs",
                SYSTEM_CA_CERTS.into(),
                "DirectoryOrCreate",
                true,
            ),
            mount("k8s-certs", cfg.cert_dir.clone(), "DirectoryOrCreate", true),
            mount(
                "kubeconfig",
                kubeconfig::path(cfg, kubeconfig::CONTROLLER_MANAGER),
                "FileOrCreate",
                true,
            ),
        ],
        annotations: BTreeMap::new(),
    })
}

pub fn scheduler_pod(cfg: &Config) -> Pod {
    let ep = scheduler_probe_endpoint(cfg);
    pod(Component {
        name: KUBE_SCHEDULER,
        image: image(cfg, KUBE_SCHEDULER),
        command: scheduler_command(cfg),
        cpu: "100m",
        memory: None,
        liveness: liveness(&ep, "/livez"),
        readiness: Some(readiness(&ep, "/readyz")),
        startup: startup(&ep, "/livez"),
        mounts: vec![mount(
            "kubeconfig",
            kubeconfig::path(cfg, kubeconfig::SCHEDULER),
            "FileOrCreate",
            true,
        )],
        annotations: BTreeMap::new(),
    })
}

pub fn manifest_path(cfg: &Config, component: &str) -> PathBuf {
    cfg.manifests_dir.join(format!("{component}.yaml"))
}

/// Writes one manifest (always rewritten, as upstream does).
pub fn write(cfg: &Config, component: &str, pod: &Pod) -> Result<(), Error> {
    let text = serde_yaml_ng::to_string(pod)
        .map_err(|e| Error::Manifest(format!("failed to serialize {component} manifest: {e}")))?;
    crate::pki::write_file(&manifest_path(cfg, component), text.as_bytes(), 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Overrides, Root};

    fn cfg(extra: impl FnOnce(&mut Config)) -> Config {
        let mut c = Config::load(
            Root::new(Some(Path::new("/r"))),
            Overrides {
                advertise_address: Some("10.0.0.5".parse().expect("ip")),
                node_name: Some("n1".into()),
                ..Default::default()
            },
        )
        .expect("config");
        extra(&mut c);
        c
    }

    #[test]
    fn extra_args_replace_defaults_and_sort() {
        let d = BTreeMap::from([("b", "1".to_string()), ("a", "2".to_string())]);
        let got = build_args(d, &[("b".into(), "9".into()), ("c".into(), "3".into())]);
        assert_eq!(got, vec!["--a=2", "--b=9", "--c=3"]);
    }

    #[test]
    fn apiserver_flags_point_into_the_root() {
        let cmd = apiserver_command(&cfg(|_| {}));
        assert_eq!(cmd[0], "kube-apiserver");
        for want in [
            "--client-ca-file=/r/etc/kubernetes/pki/ca.crt",
            "--etcd-servers=https://127.0.0.1:2379",
            "--etcd-certfile=/r/etc/kubernetes/pki/apiserver-etcd-client.crt",
            "--secure-port=6443",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
        ] {
            assert!(cmd.iter().any(|a| a == want), "missing {want} in {cmd:?}");
        }
    }

    #[test]
    fn pod_subnet_turns_on_node_cidr_allocation() {
        let without = controller_manager_command(&cfg(|_| {}));
        assert!(!without
            .iter()
            .any(|a| a.starts_with("--allocate-node-cidrs")));
        let with =
            controller_manager_command(&cfg(|c| c.pod_subnet = Some("10.244.0.0/16".into())));
        assert!(with.iter().any(|a| a == "--allocate-node-cidrs=true"));
        assert!(with.iter().any(|a| a == "--cluster-cidr=10.244.0.0/16"));
    }

    #[test]
    fn store_listens_on_loopback_and_advertise_address_once_each() {
        let cmd = store_command(&cfg(|_| {}));
        assert!(cmd
            .iter()
            .any(|a| a == "--listen-client-urls=https://127.0.0.1:2379,https://10.0.0.5:2379"));
        let lo = store_command(&cfg(|c| {
            c.advertise_address = "127.0.0.1".parse().expect("ip")
        }));
        assert!(lo
            .iter()
            .any(|a| a == "--listen-client-urls=https://127.0.0.1:2379"));
    }

    #[test]
    fn probes_follow_ports_from_extra_args() {
        let c = cfg(|c| {
            c.etcd_extra_args =
                vec![("listen-metrics-urls".into(), "http://127.0.0.1:3381".into())];
            c.scheduler_extra_args = vec![("secure-port".into(), "11259".into())];
        });
        assert_eq!(store_probe_endpoint(&c).port, 3381);
        assert_eq!(scheduler_probe_endpoint(&c).port, 11259);
        assert_eq!(controller_manager_probe_endpoint(&c).port, 10257);
        let api = apiserver_probe_endpoint(&c);
        assert_eq!((api.host.as_str(), api.port), ("10.0.0.5", 6443));
        let yaml = serde_yaml_ng::to_string(&scheduler_pod(&c)).expect("yaml");
        assert!(yaml.contains("port: 11259"), "{yaml}");
        assert!(yaml.contains("scheme: HTTPS"), "{yaml}");
        assert!(
            yaml.contains("priorityClassName: system-node-critical"),
            "{yaml}"
        );
    }
}
