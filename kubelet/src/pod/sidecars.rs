//! Sidecars: init containers with `restartPolicy: Always` (upstream's restartable init
//! containers). They start in order with the other init containers (the next one starts once
//! the sidecar has started, i.e. runs and passed its startupProbe), keep running beside the
//! main containers, restart with back-off whenever they exit, are not waited for to complete,
//! count for the pod's readiness, and stop after the main containers, in reverse order.

use k8s_openapi::api::core::v1::{Container, Pod};

pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// The pod's sidecars in spec order.
pub fn sidecars(pod: &Pod) -> Vec<Container> {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| is_sidecar(c))
        .cloned()
        .collect()
}

/// Names to stop on termination: first all main containers together, then the sidecars one
/// at a time in reverse spec order.
pub fn stop_order(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let main = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    let mut side: Vec<String> = sidecars(pod).into_iter().map(|c| c.name).collect();
    side.reverse();
    (main, side)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn c(name: &str, policy: Option<&str>) -> Container {
        Container {
            name: name.into(),
            restart_policy: policy.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn sidecars_stop_after_the_main_containers_in_reverse_order() {
        let pod = Pod {
            spec: Some(PodSpec {
                init_containers: Some(vec![
                    c("setup", None),
                    c("proxy", Some("Always")),
                    c("migrate", None),
                    c("logs", Some("Always")),
                ]),
                containers: vec![c("app", None), c("worker", None)],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            sidecars(&pod)
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            ["proxy", "logs"]
        );
        assert_eq!(
            stop_order(&pod),
            (
                vec!["app".to_string(), "worker".to_string()],
                vec!["logs".to_string(), "proxy".to_string()]
            )
        );
    }
}
