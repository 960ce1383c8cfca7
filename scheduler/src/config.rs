//! KubeSchedulerConfiguration (kubescheduler.config.k8s.io/v1): parsing and building profiles.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Deserialize;

use crate::framework::{Framework, Plugin};
use crate::plugins::{in_tree_registry, PluginContext, DEFAULT_PLUGINS};

/// The default profile's scheduler name.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// What went wrong with a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("failed to read {path}")]
    Read {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid configuration.
    #[error("failed to parse scheduler configuration")]
    Parse(#[source] serde_yaml_ng::Error),
    /// Semantically invalid.
    #[error("invalid scheduler configuration: {0}")]
    Invalid(String),
}

/// `clientConnection`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientConnection {
    /// Path of a kubeconfig.
    #[serde(default)]
    pub kubeconfig: Option<String>,
    /// Client QPS.
    #[serde(default)]
    pub qps: Option<f32>,
    /// Client burst.
    #[serde(default)]
    pub burst: Option<i32>,
}

/// `leaderElection`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderElection {
    /// Whether to elect a leader.
    #[serde(default)]
    pub leader_elect: Option<bool>,
    /// Lease duration, a Go duration such as `15s`.
    #[serde(default)]
    pub lease_duration: Option<String>,
    /// Renew deadline.
    #[serde(default)]
    pub renew_deadline: Option<String>,
    /// Retry period.
    #[serde(default)]
    pub retry_period: Option<String>,
    /// Lock type; only `leases`.
    #[serde(default)]
    pub resource_lock: Option<String>,
    /// Lease name.
    #[serde(default)]
    pub resource_name: Option<String>,
    /// Lease namespace.
    #[serde(default)]
    pub resource_namespace: Option<String>,
}

/// The configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeSchedulerConfiguration {
    /// Must be kubescheduler.config.k8s.io/v1 when set.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Must be KubeSchedulerConfiguration when set.
    #[serde(default)]
    pub kind: Option<String>,
    /// Global percentage of nodes to score.
    #[serde(default)]
    pub percentage_of_nodes_to_score: Option<i32>,
    /// Workers for per-node plugin work (upstream default 16; capped at the CPUs here).
    #[serde(default)]
    pub parallelism: Option<i32>,
    /// Profiles; one default profile when empty.
    #[serde(default)]
    pub profiles: Vec<Profile>,
    /// Client settings.
    #[serde(default)]
    pub client_connection: Option<ClientConnection>,
    /// Leader election settings.
    #[serde(default)]
    pub leader_election: Option<LeaderElection>,
}

/// One profile.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// The scheduler name pods select it with.
    #[serde(default)]
    pub scheduler_name: Option<String>,
    /// Per-profile percentage of nodes to score.
    #[serde(default)]
    pub percentage_of_nodes_to_score: Option<i32>,
    /// Plugin enable/disable per extension point.
    #[serde(default)]
    pub plugins: Option<Plugins>,
    /// Plugin args.
    #[serde(default)]
    pub plugin_config: Vec<PluginConfig>,
}

/// A plugin's args.
#[derive(Clone, Debug, Deserialize)]
pub struct PluginConfig {
    /// The plugin.
    pub name: String,
    /// Its args object.
    #[serde(default)]
    pub args: serde_json::Value,
}

/// A plugin named in a set, with a weight for score.
#[derive(Clone, Debug, Deserialize)]
pub struct PluginRef {
    /// Plugin name or `*`.
    pub name: String,
    /// Score weight.
    #[serde(default)]
    pub weight: Option<i64>,
}

/// Enabled and disabled plugins of one extension point.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PluginSet {
    /// Added after the defaults.
    #[serde(default)]
    pub enabled: Vec<PluginRef>,
    /// Removed from the defaults; `*` removes all.
    #[serde(default)]
    pub disabled: Vec<PluginRef>,
}

/// `plugins` of a profile.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plugins {
    #[serde(default)]
    multi_point: PluginSet,
    #[serde(default)]
    pre_enqueue: PluginSet,
    #[serde(default)]
    queue_sort: PluginSet,
    #[serde(default)]
    pre_filter: PluginSet,
    #[serde(default)]
    filter: PluginSet,
    #[serde(default)]
    post_filter: PluginSet,
    #[serde(default)]
    pre_score: PluginSet,
    #[serde(default)]
    score: PluginSet,
    #[serde(default)]
    reserve: PluginSet,
    #[serde(default)]
    pre_bind: PluginSet,
    #[serde(default)]
    bind: PluginSet,
}

/// Parses a configuration file's text.
pub fn parse(text: &str) -> Result<KubeSchedulerConfiguration, ConfigError> {
    let cfg: KubeSchedulerConfiguration =
        serde_yaml_ng::from_str(text).map_err(ConfigError::Parse)?;
    if let Some(v) = cfg.api_version.as_deref() {
        if v != "kubescheduler.config.k8s.io/v1" {
            return Err(ConfigError::Invalid(format!(
                "apiVersion {v} is not supported (want kubescheduler.config.k8s.io/v1)"
            )));
        }
    }
    if let Some(p) = cfg.percentage_of_nodes_to_score {
        if !(0..=100).contains(&p) {
            return Err(ConfigError::Invalid(
                "percentageOfNodesToScore must be in 0..=100".into(),
            ));
        }
    }
    Ok(cfg)
}

/// Reads and parses a configuration file.
pub fn load(path: &str) -> Result<KubeSchedulerConfiguration, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_string(),
        source,
    })?;
    parse(&text)
}

type Point = fn(&dyn Plugin) -> bool;
type Weighted = Vec<(Arc<dyn Plugin>, i64)>;

/// Builds one Framework per profile (the default profile when there are none).
pub fn build_frameworks(
    cfg: &KubeSchedulerConfiguration,
    client: Option<kube::Client>,
    volumes: Arc<crate::volumes::VolumeStore>,
) -> Result<Vec<Arc<Framework>>, ConfigError> {
    let mut profiles = cfg.profiles.clone();
    if profiles.is_empty() {
        profiles.push(Profile::default());
    }
    let registry = in_tree_registry();
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for profile in &profiles {
        let scheduler_name = profile
            .scheduler_name
            .clone()
            .unwrap_or_else(|| DEFAULT_SCHEDULER_NAME.to_string());
        if !seen.insert(scheduler_name.clone()) {
            return Err(ConfigError::Invalid(format!(
                "duplicate profile {scheduler_name}"
            )));
        }
        let plugins = profile.plugins.clone().unwrap_or_default();
        let args: HashMap<&str, &serde_json::Value> = profile
            .plugin_config
            .iter()
            .map(|c| (c.name.as_str(), &c.args))
            .collect();
        let mut instances: BTreeMap<String, Arc<dyn Plugin>> = BTreeMap::new();
        let mut instance = |name: &str| -> Result<Arc<dyn Plugin>, ConfigError> {
            if let Some(p) = instances.get(name) {
                return Ok(p.clone());
            }
            let factory = registry
                .get(name)
                .ok_or_else(|| ConfigError::Invalid(format!("plugin {name:?} does not exist")))?;
            let ctx = PluginContext {
                args: args.get(name).map(|v| (*v).clone()).unwrap_or_default(),
                client: client.clone(),
                volumes: volumes.clone(),
            };
            let p = factory(&ctx).map_err(|e| ConfigError::Invalid(format!("{name}: {e}")))?;
            instances.insert(name.to_string(), p.clone());
            Ok(p)
        };
        let disabled = |set: &PluginSet, name: &str| {
            set.disabled.iter().any(|d| d.name == "*" || d.name == name)
        };
        let mut chain = |set: &PluginSet, has: Point| -> Result<Weighted, ConfigError> {
            let mut list: Weighted = Vec::new();
            for (name, weight) in DEFAULT_PLUGINS {
                if disabled(set, name) || disabled(&plugins.multi_point, name) {
                    continue;
                }
                let p = instance(name)?;
                if has(p.as_ref()) {
                    list.push((p, (*weight).max(1)));
                }
            }
            for r in plugins.multi_point.enabled.iter().chain(&set.enabled) {
                let p = instance(&r.name)?;
                if !has(p.as_ref()) {
                    if set.enabled.iter().any(|e| e.name == r.name) {
                        return Err(ConfigError::Invalid(format!(
                            "plugin {} does not implement this extension point",
                            r.name
                        )));
                    }
                    continue;
                }
                let weight = r.weight.unwrap_or(1).max(1);
                match list.iter_mut().find(|(q, _)| q.name() == p.name()) {
                    Some(entry) => {
                        if r.weight.is_some() {
                            entry.1 = weight;
                        }
                    }
                    None => list.push((p, weight)),
                }
            }
            Ok(list)
        };
        let names = |v: Weighted| v.into_iter().map(|(p, _)| p).collect();
        let fw = Framework {
            scheduler_name,
            percentage_of_nodes_to_score: profile
                .percentage_of_nodes_to_score
                .or(cfg.percentage_of_nodes_to_score),
            pre_enqueue: names(chain(&plugins.pre_enqueue, |p| {
                p.as_pre_enqueue().is_some()
            })?),
            queue_sort: names(chain(&plugins.queue_sort, |p| p.as_queue_sort().is_some())?),
            pre_filter: names(chain(&plugins.pre_filter, |p| p.as_pre_filter().is_some())?),
            filter: names(chain(&plugins.filter, |p| p.as_filter().is_some())?),
            post_filter: names(chain(&plugins.post_filter, |p| {
                p.as_post_filter().is_some()
            })?),
            pre_score: names(chain(&plugins.pre_score, |p| p.as_pre_score().is_some())?),
            score: chain(&plugins.score, |p| p.as_score().is_some())?,
            reserve: names(chain(&plugins.reserve, |p| p.as_reserve().is_some())?),
            pre_bind: names(chain(&plugins.pre_bind, |p| p.as_pre_bind().is_some())?),
            bind: names(chain(&plugins.bind, |p| p.as_bind().is_some())?),
        };
        if fw.queue_sort.len() != 1 {
            return Err(ConfigError::Invalid(
                "exactly one queueSort plugin must be enabled".into(),
            ));
        }
        if fw.bind.is_empty() {
            return Err(ConfigError::Invalid(
                "at least one bind plugin is required".into(),
            ));
        }
        out.push(Arc::new(fw));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(yaml: &str) -> Result<Vec<Arc<Framework>>, ConfigError> {
        build_frameworks(&parse(yaml)?, None, Default::default())
    }

    #[test]
    fn default_profile_has_upstream_plugins_and_weights() {
        let fws = build("{}").expect("default profile");
        assert_eq!(fws.len(), 1);
        let fw = &fws[0];
        assert_eq!(fw.scheduler_name, "default-scheduler");
        let score: Vec<(&str, i64)> = fw.score.iter().map(|(p, w)| (p.name(), *w)).collect();
        assert_eq!(
            score,
            [
                ("TaintToleration", 3),
                ("NodeAffinity", 2),
                ("NodeResourcesFit", 1),
                ("PodTopologySpread", 2),
                ("InterPodAffinity", 2),
                ("NodeResourcesBalancedAllocation", 1),
                ("ImageLocality", 1)
            ]
        );
        let filters: Vec<&str> = fw.filter.iter().map(|p| p.name()).collect();
        assert_eq!(filters.len(), 9);
        assert_eq!(
            filters[6], "VolumeBinding",
            "after NodeResourcesFit as upstream"
        );
        assert!(fw.pre_filter.iter().any(|p| p.name() == "VolumeBinding"));
        let names = |v: &[Arc<dyn Plugin>]| v.iter().map(|p| p.name()).collect::<Vec<_>>();
        assert_eq!(names(&fw.reserve), ["VolumeBinding"]);
        assert_eq!(names(&fw.pre_bind), ["VolumeBinding"]);
        assert_eq!(fw.post_filter.len(), 1);
    }

    #[test]
    fn profiles_enable_disable_and_weigh_plugins() {
        let yaml = r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
percentageOfNodesToScore: 50
profiles:
- schedulerName: custom
  plugins:
    bind:
      disabled: [{name: DefaultBinder}]
      enabled: [{name: DefaultPreemption}]
    score:
      disabled: [{name: "*"}]
      enabled: [{name: NodeResourcesFit, weight: 5}]
    filter:
      disabled: [{name: TaintToleration}]
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
"#;
        // DefaultPreemption is not a bind plugin.
        assert!(build(yaml).is_err());
        let no_binder = yaml.replace("enabled: [{name: DefaultPreemption}]", "enabled: []");
        let err = build(&no_binder)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("bind plugin"), "{err}");
        let ok = yaml.replace(
            "enabled: [{name: DefaultPreemption}]",
            "enabled: [{name: DefaultBinder}]",
        );
        let fws = build(&ok).expect("custom profile");
        let fw = &fws[0];
        assert_eq!(fw.scheduler_name, "custom");
        assert_eq!(fw.percentage_of_nodes_to_score, Some(50));
        let score: Vec<(&str, i64)> = fw.score.iter().map(|(p, w)| (p.name(), *w)).collect();
        assert_eq!(score, [("NodeResourcesFit", 5)]);
        assert!(fw.filter.iter().all(|p| p.name() != "TaintToleration"));
        assert!(build(&ok.replace("MostAllocated", "Bogus")).is_err());
    }

    #[test]
    fn volume_binding_args_are_validated() {
        let yaml = |t: &str| {
            format!(
                "profiles:\n- pluginConfig:\n  - name: VolumeBinding\n    args: {{bindTimeoutSeconds: {t}}}\n"
            )
        };
        assert!(build(&yaml("30")).is_ok());
        let err = build(&yaml("-5"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("bindTimeoutSeconds"), "{err}");
    }

    #[test]
    fn bad_versions_and_percentages_are_rejected() {
        assert!(parse("apiVersion: kubescheduler.config.k8s.io/v1beta1").is_err());
        assert!(parse("percentageOfNodesToScore: 101").is_err());
        let cfg = parse("profiles: [{schedulerName: a}, {schedulerName: b}]").expect("parse");
        assert_eq!(cfg.profiles.len(), 2);
    }
}
