//! Service environment variables (`<NAME>_SERVICE_HOST`, `<NAME>_PORT_<n>_TCP`, ...) as upstream
//! gives every container: the `kubernetes` Service of `default` always, and with
//! enableServiceLinks the Services of the pod's namespace.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;

fn env_name(name: &str) -> String {
    name.to_uppercase().replace('-', "_")
}

fn has_cluster_ip(s: &Service) -> bool {
    s.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_some_and(|ip| !ip.is_empty() && ip != "None")
}

/// The Services whose variables a pod in `namespace` gets, by name.
pub fn visible<'a>(
    services: &'a [Service],
    namespace: &str,
    enable_service_links: bool,
) -> BTreeMap<String, &'a Service> {
    let mut map = BTreeMap::new();
    for s in services.iter().filter(|s| has_cluster_ip(s)) {
        let name = s.metadata.name.clone().unwrap_or_default();
        let ns = s.metadata.namespace.as_deref().unwrap_or_default();
        if ns == "default" && name == "kubernetes" {
            map.entry(name).or_insert(s);
        } else if ns == namespace && enable_service_links {
            map.insert(name, s);
        }
    }
    map
}

/// Upstream's FromServices: the variables of each Service, in name order.
pub fn service_env(services: &BTreeMap<String, &Service>) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for (name, s) in services {
        let Some(spec) = s.spec.as_ref() else {
            continue;
        };
        let ip = spec.cluster_ip.clone().unwrap_or_default();
        let prefix = env_name(name);
        let ports = spec.ports.as_deref().unwrap_or_default();
        env.push((format!("{prefix}_SERVICE_HOST"), ip.clone()));
        let Some(first) = ports.first() else {
            continue;
        };
        env.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        for p in ports {
            if let Some(port_name) = p.name.as_deref().filter(|n| !n.is_empty()) {
                env.push((
                    format!("{prefix}_SERVICE_PORT_{}", env_name(port_name)),
                    p.port.to_string(),
                ));
            }
        }
        // Docker-link style variables.
        let proto = |p: &k8s_openapi::api::core::v1::ServicePort| {
            p.protocol.clone().unwrap_or_else(|| "TCP".into())
        };
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.clone()
        };
        env.push((
            format!("{prefix}_PORT"),
            format!("{}://{host}:{}", proto(first).to_lowercase(), first.port),
        ));
        for p in ports {
            let pr = proto(p);
            let base = format!("{prefix}_PORT_{}_{}", p.port, pr.to_uppercase());
            env.push((
                base.clone(),
                format!("{}://{host}:{}", pr.to_lowercase(), p.port),
            ));
            env.push((format!("{base}_PROTO"), pr.to_lowercase()));
            env.push((format!("{base}_PORT"), p.port.to_string()));
            env.push((format!("{base}_ADDR"), ip.clone()));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn svc(ns: &str, name: &str, ip: &str, ports: &[(Option<&str>, i32)]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p)| ServicePort {
                            name: n.map(str::to_string),
                            port: *p,
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_kubernetes_service_is_always_visible_and_others_only_with_links() {
        let services = vec![
            svc(
                "default",
                "kubernetes",
                "10.96.0.1",
                &[(Some("https"), 443)],
            ),
            svc("app", "my-db", "10.96.0.7", &[(None, 5432)]),
            svc("app", "headless", "None", &[(None, 80)]),
            svc("other", "x", "10.96.0.9", &[(None, 80)]),
        ];
        let without = visible(&services, "app", false);
        assert_eq!(without.keys().collect::<Vec<_>>(), vec!["kubernetes"]);
        let with = visible(&services, "app", true);
        assert_eq!(with.keys().collect::<Vec<_>>(), vec!["kubernetes", "my-db"]);

        let env: BTreeMap<String, String> = service_env(&with).into_iter().collect();
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.96.0.1");
        assert_eq!(env["KUBERNETES_SERVICE_PORT"], "443");
        assert_eq!(env["KUBERNETES_SERVICE_PORT_HTTPS"], "443");
        assert_eq!(env["KUBERNETES_PORT"], "tcp://10.96.0.1:443");
        assert_eq!(env["KUBERNETES_PORT_443_TCP"], "tcp://10.96.0.1:443");
        assert_eq!(env["KUBERNETES_PORT_443_TCP_PROTO"], "tcp");
        assert_eq!(env["KUBERNETES_PORT_443_TCP_PORT"], "443");
        assert_eq!(env["KUBERNETES_PORT_443_TCP_ADDR"], "10.96.0.1");
        assert_eq!(env["MY_DB_SERVICE_HOST"], "10.96.0.7");
        assert_eq!(env["MY_DB_PORT_5432_TCP"], "tcp://10.96.0.7:5432");
    }
}
