//! clusterrole-aggregation: a ClusterRole with an `aggregationRule` gets as its rules the union of
//! the rules of every ClusterRole its selectors pick (roles in name order, each rule once), so
//! labelling a role `rbac.authorization.k8s.io/aggregate-to-view: "true"` extends `view`.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

use super::util::selector_matches;
use super::{drain, error_policy, is_status, Error};
use crate::context::ControllerContext;

struct Ctx {
    client: kube::Client,
    roles: Store<ClusterRole>,
}

/// Builds the controller.
pub fn start(ctx: &ControllerContext) -> Result<BoxFuture<'static, ()>, crate::Error> {
    let roles = ctx.informers.get::<ClusterRole>();
    let state = Arc::new(Ctx {
        client: ctx.client.clone(),
        roles: roles.store(),
    });
    let store = roles.store();
    let controller = Controller::for_shared_stream(roles.subscribe(), roles.store())
        // Any role may be picked by any aggregating role: recheck all of them.
        .watches_shared_stream(roles.subscribe(), move |_: Arc<ClusterRole>| {
            store
                .state()
                .into_iter()
                .filter(|r| r.aggregation_rule.is_some())
                .map(|r| ObjectRef::from_obj(&*r))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(super::stopped(&ctx.shutdown))
        .with_config(super::workers(1));
    Ok(drain(
        "clusterrole-aggregation",
        controller.run(reconcile, error_policy, state),
    )
    .boxed())
}

/// The rules `role` aggregates from `all`, or `None` when it has no aggregation rule.
pub fn aggregated_rules(role: &ClusterRole, all: &[Arc<ClusterRole>]) -> Option<Vec<PolicyRule>> {
    let rule = role.aggregation_rule.as_ref()?;
    let own = role.metadata.name.as_deref();
    let mut picked: Vec<&Arc<ClusterRole>> = Vec::new();
    for selector in rule.cluster_role_selectors.iter().flatten() {
        for candidate in all {
            let already = picked
                .iter()
                .any(|p| p.metadata.name == candidate.metadata.name);
            if !already
                && candidate.metadata.name.as_deref() != own
                && selector_matches(selector, candidate.labels())
            {
                picked.push(candidate);
            }
        }
    }
    picked.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut rules: Vec<PolicyRule> = Vec::new();
    for r in picked {
        for rule in r.rules.iter().flatten() {
            if !rules.contains(rule) {
                rules.push(rule.clone());
            }
        }
    }
    Some(rules)
}

async fn reconcile(role: Arc<ClusterRole>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Some(rules) = aggregated_rules(&role, &ctx.roles.state()) else {
        return Ok(Action::await_change());
    };
    if role.rules.clone().unwrap_or_default() == rules {
        return Ok(Action::await_change());
    }
    let mut updated = (*role).clone();
    updated.rules = Some(rules);
    let api: Api<ClusterRole> = Api::all(ctx.client.clone());
    match api
        .replace(&role.name_any(), &PostParams::default(), &updated)
        .await
    {
        Ok(_) => {
            tracing::info!(clusterrole = %role.name_any(), "aggregated rules updated");
            Ok(Action::await_change())
        }
        Err(e) if is_status(&e, 409) || is_status(&e, 404) => Ok(
            crate::controllers::requeue_after(Duration::from_millis(500)),
        ),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::AggregationRule;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
    use std::collections::BTreeMap;

    fn rule(verb: &str, resource: &str) -> PolicyRule {
        PolicyRule {
            verbs: vec![verb.into()],
            api_groups: Some(vec!["".into()]),
            resources: Some(vec![resource.into()]),
            ..PolicyRule::default()
        }
    }

    fn role(name: &str, label: Option<&str>, rules: Vec<PolicyRule>) -> Arc<ClusterRole> {
        Arc::new(ClusterRole {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: label.map(|l| BTreeMap::from([(l.to_owned(), "true".to_owned())])),
                ..ObjectMeta::default()
            },
            rules: Some(rules),
            aggregation_rule: None,
        })
    }

    fn aggregator(name: &str, labels: &[&str]) -> ClusterRole {
        ClusterRole {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(BTreeMap::from([("agg".to_owned(), "true".to_owned())])),
                ..ObjectMeta::default()
            },
            rules: None,
            aggregation_rule: Some(AggregationRule {
                cluster_role_selectors: Some(
                    labels
                        .iter()
                        .map(|l| LabelSelector {
                            match_labels: Some(BTreeMap::from([(
                                l.to_string(),
                                "true".to_owned(),
                            )])),
                            ..LabelSelector::default()
                        })
                        .collect(),
                ),
            }),
        }
    }

    #[test]
    fn union_is_name_ordered_deduplicated_and_skips_self() {
        let all = vec![
            role(
                "zeta",
                Some("a"),
                vec![rule("get", "pods"), rule("list", "pods")],
            ),
            role(
                "alpha",
                Some("b"),
                vec![rule("get", "pods"), rule("get", "secrets")],
            ),
            role("other", None, vec![rule("delete", "pods")]),
            Arc::new(aggregator("agg", &["a", "b", "agg"])),
        ];
        let rules = aggregated_rules(&aggregator("agg", &["a", "b", "agg"]), &all).expect("rule");
        assert_eq!(
            rules,
            vec![
                rule("get", "pods"),
                rule("get", "secrets"),
                rule("list", "pods")
            ]
        );
        assert!(aggregated_rules(&role("plain", None, vec![]), &all).is_none());
        assert_eq!(
            aggregated_rules(&aggregator("none", &["c"]), &all),
            Some(vec![])
        );
    }
}
