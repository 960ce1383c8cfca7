//! The `addon` phase: kube-proxy (DaemonSet) and cluster DNS (the project's `kube-dns` in
//! CoreDNS's place: Deployment and Service `kube-dns`), with upstream kubeadm's objects, names
//! and RBAC.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::Api;
use serde_json::json;

use crate::cluster::{self, create_or_update, meta, rule, subject};
use crate::config::{cidr_ip, Config};
use crate::images;
use crate::token;
use crate::Error;

fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, Error> {
    serde_json::from_value(v).map_err(|e| Error::Config(format!("building an addon object: {e}")))
}

/// KubeProxyConfiguration as kubeadm writes it into the kube-proxy ConfigMap.
pub fn kube_proxy_config(cfg: &Config) -> String {
    format!(
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nbindAddress: 0.0.0.0\nclientConnection:\n  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf\nclusterCIDR: {}\nkind: KubeProxyConfiguration\nmode: iptables\n",
        cfg.pod_subnet.as_deref().unwrap_or("")
    )
}

pub fn kube_proxy_kubeconfig(cfg: &Config) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt\n    server: {}\n  name: default\ncontexts:\n- context:\n    cluster: default\n    namespace: default\n    user: default\n  name: default\ncurrent-context: default\nusers:\n- name: default\n  user:\n    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token\n",
        cfg.control_plane_url()
    )
}

pub fn kube_proxy_daemonset(cfg: &Config) -> Result<DaemonSet, Error> {
    from_json(json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "kube-proxy", "namespace": "kube-system", "labels": {"k8s-app": "kube-proxy"}},
        "spec": {
            "selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": {"k8s-app": "kube-proxy"}},
                "spec": {
                    "containers": [{
                        "name": "kube-proxy",
                        "image": images::image(cfg, images::KUBE_PROXY),
                        "imagePullPolicy": "IfNotPresent",
                        "command": [
                            "/usr/local/bin/kube-proxy",
                            "--config=/var/lib/kube-proxy/config.conf",
                            "--hostname-override=$(NODE_NAME)",
                        ],
                        "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}}],
                        "securityContext": {"privileged": true},
                        "volumeMounts": [
                            {"mountPath": "/var/lib/kube-proxy", "name": "kube-proxy"},
                            {"mountPath": "/run/xtables.lock", "name": "xtables-lock"},
                            {"mountPath": "/lib/modules", "name": "lib-modules", "readOnly": true},
                        ],
                    }],
                    "hostNetwork": true,
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "priorityClassName": "system-node-critical",
                    "serviceAccountName": "kube-proxy",
                    "tolerations": [{"operator": "Exists"}],
                    "volumes": [
                        {"name": "kube-proxy", "configMap": {"name": "kube-proxy"}},
                        {"name": "xtables-lock", "hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"}},
                        {"name": "lib-modules", "hostPath": {"path": "/lib/modules"}},
                    ],
                },
            },
        },
    }))
}

/// kube-proxy: ServiceAccount, ClusterRoleBinding kubeadm:node-proxier, the ConfigMap, the
/// Role letting joining nodes read it, and the DaemonSet.
pub async fn kube_proxy(client: &kube::Client, cfg: &Config) -> Result<(), Error> {
    let ns = "kube-system";
    create_or_update(
        &Api::<ServiceAccount>::namespaced(client.clone(), ns),
        &ServiceAccount {
            metadata: meta("kube-proxy", Some(ns)),
            ..Default::default()
        },
    )
    .await?;
    cluster::cluster_role_binding(
        client,
        "kubeadm:node-proxier",
        "system:node-proxier",
        vec![subject("ServiceAccount", "kube-proxy", Some(ns))],
    )
    .await?;
    let mut cm = ConfigMap {
        metadata: meta("kube-proxy", Some(ns)),
        ..Default::default()
    };
    cm.metadata.labels = Some([("app".to_string(), "kube-proxy".to_string())].into());
    cm.data = Some(
        [
            ("config.conf".to_string(), kube_proxy_config(cfg)),
            ("kubeconfig.conf".to_string(), kube_proxy_kubeconfig(cfg)),
        ]
        .into(),
    );
    create_or_update(&Api::<ConfigMap>::namespaced(client.clone(), ns), &cm).await?;
    cluster::role(
        client,
        ns,
        "kube-proxy",
        vec![rule(&[""], &["configmaps"], &["get"], &["kube-proxy"])],
        vec![subject("Group", token::DEFAULT_GROUP, None)],
    )
    .await?;
    create_or_update(
        &Api::<DaemonSet>::namespaced(client.clone(), ns),
        &kube_proxy_daemonset(cfg)?,
    )
    .await?;
    println!("[addons] Applied essential addon: kube-proxy");
    Ok(())
}

pub fn dns_deployment(cfg: &Config) -> Result<Deployment, Error> {
    from_json(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"k8s-app": "kube-dns"}},
                "spec": {
                    "containers": [{
                        "name": "kube-dns",
                        "image": images::image(cfg, images::KUBE_DNS),
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["/usr/local/bin/kube-dns", format!("--cluster-domain={}", cfg.dns_domain)],
                        "ports": [
                            {"containerPort": 53, "name": "dns", "protocol": "UDP"},
                            {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
                            {"containerPort": 9153, "name": "metrics", "protocol": "TCP"},
                        ],
                        "livenessProbe": {
                            "httpGet": {"path": "/health", "port": 8080, "scheme": "HTTP"},
                            "initialDelaySeconds": 60, "timeoutSeconds": 5,
                            "successThreshold": 1, "failureThreshold": 5,
                        },
                        "readinessProbe": {
                            "httpGet": {"path": "/ready", "port": 8181, "scheme": "HTTP"},
                        },
                        "resources": {
                            "limits": {"memory": "170Mi"},
                            "requests": {"cpu": "100m", "memory": "70Mi"},
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
                            "readOnlyRootFilesystem": true,
                        },
                    }],
                    "dnsPolicy": "Default",
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "priorityClassName": "system-cluster-critical",
                    "serviceAccountName": "kube-dns",
                    "tolerations": [
                        {"key": "CriticalAddonsOnly", "operator": "Exists"},
                        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
                    ],
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {"matchExpressions": [{"key": "k8s-app", "operator": "In", "values": ["kube-dns"]}]},
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }]}},
                },
            },
        },
    }))
}

pub fn dns_service(cfg: &Config) -> Result<Service, Error> {
    let first = cfg
        .service_subnet
        .split(',')
        .next()
        .unwrap_or(&cfg.service_subnet);
    let ip = cidr_ip(first.trim(), 10)?;
    from_json(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kube-dns",
            "namespace": "kube-system",
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "KubeDNS"},
            "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"},
        },
        "spec": {
            "clusterIP": ip.to_string(),
            "selector": {"k8s-app": "kube-dns"},
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
            ],
        },
    }))
}

/// Cluster DNS: ClusterRole/Binding system:coredns, ServiceAccount, Deployment and Service kube-dns.
pub async fn dns(client: &kube::Client, cfg: &Config) -> Result<(), Error> {
    let ns = "kube-system";
    let roles: Api<ClusterRole> = Api::all(client.clone());
    create_or_update(
        &roles,
        &ClusterRole {
            metadata: meta("system:coredns", None),
            rules: Some(vec![
                rule(
                    &[""],
                    &["endpoints", "services", "pods", "namespaces"],
                    &["list", "watch"],
                    &[],
                ),
                rule(
                    &["discovery.k8s.io"],
                    &["endpointslices"],
                    &["list", "watch"],
                    &[],
                ),
            ]),
            ..Default::default()
        },
    )
    .await?;
    cluster::cluster_role_binding(
        client,
        "system:coredns",
        "system:coredns",
        vec![subject("ServiceAccount", "kube-dns", Some(ns))],
    )
    .await?;
    create_or_update(
        &Api::<ServiceAccount>::namespaced(client.clone(), ns),
        &ServiceAccount {
            metadata: meta("kube-dns", Some(ns)),
            ..Default::default()
        },
    )
    .await?;
    create_or_update(
        &Api::<Deployment>::namespaced(client.clone(), ns),
        &dns_deployment(cfg)?,
    )
    .await?;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let svc = dns_service(cfg)?;
    // A Service's clusterIP cannot change; create once.
    if services.get_opt("kube-dns").await.ok().flatten().is_none() {
        create_or_update(&services, &svc).await?;
    }
    println!("[addons] Applied essential addon: CoreDNS (kube-dns)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Overrides, Root};

    fn cfg() -> Config {
        Config::load(
            Root::new(Some(std::path::Path::new("/tmp/r"))),
            Overrides {
                advertise_address: Some("10.0.0.5".parse().expect("ip")),
                pod_network_cidr: Some("10.244.0.0/16".into()),
                ..Default::default()
            },
        )
        .expect("config")
    }

    #[test]
    fn dns_service_takes_the_tenth_service_ip() {
        let svc = dns_service(&cfg()).expect("service");
        let spec = svc.spec.expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
        let names: Vec<_> = spec
            .ports
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| p.name)
            .collect();
        assert_eq!(names, ["dns", "dns-tcp", "metrics"]);
    }

    #[test]
    fn kube_proxy_uses_the_pod_subnet_and_the_endpoint() {
        let c = cfg();
        assert!(kube_proxy_config(&c).contains("clusterCIDR: 10.244.0.0/16"));
        assert!(kube_proxy_kubeconfig(&c).contains("server: https://10.0.0.5:6443"));
        let ds = kube_proxy_daemonset(&c).expect("ds");
        let spec = ds.spec.expect("spec").template.spec.expect("pod spec");
        assert_eq!(spec.host_network, Some(true));
        assert_eq!(
            spec.priority_class_name.as_deref(),
            Some("system-node-critical")
        );
    }
}
