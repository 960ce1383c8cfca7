//! Audit policy (`--audit-policy-file`): parsing, validation and the first-match rule checker.

use std::path::Path;

use serde::Deserialize;

use super::{Error, Level, RequestAttrs, Stage};
use crate::authn::UserInfo;

const API_VERSION: &str = "audit.k8s.io/v1";
const KIND: &str = "Policy";

/// How one request is audited, as decided by the first matching rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestAuditConfig {
    /// Detail recorded; [`Level::None`] means the request is not audited.
    pub level: Level,
    /// Stages for which no event is written (policy-wide stages included).
    pub omit_stages: Vec<Stage>,
    /// Whether `metadata.managedFields` is stripped from request and response objects.
    pub omit_managed_fields: bool,
}

/// A validated audit policy, as upstream's `audit.k8s.io/v1` `Policy`.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    rules: Vec<Rule>,
    omit_stages: Vec<Stage>,
    omit_managed_fields: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct Rule {
    level: Level,
    users: Vec<String>,
    user_groups: Vec<String>,
    verbs: Vec<String>,
    resources: Vec<GroupResources>,
    namespaces: Vec<String>,
    non_resource_urls: Vec<String>,
    /// Already unioned with the policy's stages.
    omit_stages: Vec<Stage>,
    omit_managed_fields: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupResources {
    #[serde(default)]
    group: String,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    resource_names: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FilePolicy {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    rules: Vec<FileRule>,
    #[serde(default)]
    omit_stages: Vec<String>,
    #[serde(default)]
    omit_managed_fields: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileRule {
    #[serde(default)]
    level: String,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    user_groups: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    resources: Vec<GroupResources>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    non_resource_urls: Vec<String>,
    #[serde(default)]
    omit_stages: Vec<String>,
    #[serde(default)]
    omit_managed_fields: Option<bool>,
}

impl Policy {
    /// Reads and validates a policy file (YAML or JSON).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let data = std::fs::read(path).map_err(|source| Error::ReadPolicy {
            path: shown.clone(),
            source,
        })?;
        Self::from_slice(&data).map_err(|e| match e {
            Error::ParsePolicy { source, .. } => Error::ParsePolicy {
                path: shown,
                source,
            },
            Error::InvalidPolicy { errors, .. } => Error::InvalidPolicy {
                path: shown,
                errors,
            },
            other => other,
        })
    }

    /// Parses and validates a policy given as YAML or JSON text.
    pub fn from_slice(data: &[u8]) -> Result<Self, Error> {
        let file: FilePolicy =
            serde_yaml_ng::from_slice(data).map_err(|source| Error::ParsePolicy {
                path: String::new(),
                source,
            })?;
        Self::build(file).map_err(|errors| Error::InvalidPolicy {
            path: String::new(),
            errors,
        })
    }

    /// A policy with one rule auditing everything at `level`.
    pub fn uniform(level: Level) -> Self {
        Self {
            rules: vec![Rule {
                level,
                users: Vec::new(),
                user_groups: Vec::new(),
                verbs: Vec::new(),
                resources: Vec::new(),
                namespaces: Vec::new(),
                non_resource_urls: Vec::new(),
                omit_stages: Vec::new(),
                omit_managed_fields: None,
            }],
            omit_stages: Vec::new(),
            omit_managed_fields: false,
        }
    }

    /// The level and omitted stages for a request: the first matching rule wins, and a request
    /// no rule matches is not audited.
    pub fn level_for(&self, attrs: &RequestAttrs, user: &UserInfo) -> RequestAuditConfig {
        match self.rules.iter().find(|r| r.matches(attrs, user)) {
            Some(rule) => RequestAuditConfig {
                level: rule.level,
                omit_stages: rule.omit_stages.clone(),
                omit_managed_fields: rule.omit_managed_fields.unwrap_or(self.omit_managed_fields),
            },
            None => RequestAuditConfig {
                level: Level::None,
                omit_stages: self.omit_stages.clone(),
                omit_managed_fields: self.omit_managed_fields,
            },
        }
    }

    fn build(file: FilePolicy) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        if file.api_version != API_VERSION {
            errors.push(format!(
                "apiVersion: Unsupported value: {:?}: supported values: {API_VERSION:?}",
                file.api_version
            ));
        }
        if file.kind != KIND {
            errors.push(format!(
                "kind: Unsupported value: {:?}: supported values: {KIND:?}",
                file.kind
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        if file.rules.is_empty() {
            return Err(vec!["loaded illegal policy with 0 rules".into()]);
        }
        let omit_stages = parse_stages(&file.omit_stages, "omitStages", &mut errors);
        let mut rules = Vec::with_capacity(file.rules.len());
        for (i, r) in file.rules.into_iter().enumerate() {
            let field = format!("rules[{i}]");
            let level = match r.level.as_str() {
                "" => {
                    errors.push(format!("{field}.level: Required value"));
                    Level::None
                }
                s => Level::parse(s).unwrap_or_else(|| {
                    errors.push(format!(
                        "{field}.level: Unsupported value: {s:?}: supported values: \"None\", \"Metadata\", \"Request\", \"RequestResponse\""
                    ));
                    Level::None
                }),
            };
            for (j, url) in r.non_resource_urls.iter().enumerate() {
                if url == "*" {
                    continue;
                }
                if !url.starts_with('/') {
                    errors.push(format!(
                        "{field}.nonResourceURLs[{j}]: Invalid value: {url:?}: non-resource URL rules must begin with a '/' character"
                    ));
                }
                if url.len() > 1 && url[..url.len() - 1].contains('*') {
                    errors.push(format!(
                        "{field}.nonResourceURLs[{j}]: Invalid value: {url:?}: non-resource URL wildcards '*' must be the final character of the rule"
                    ));
                }
            }
            if !r.non_resource_urls.is_empty()
                && (!r.resources.is_empty() || !r.namespaces.is_empty())
            {
                errors.push(format!(
                    "{field}.nonResourceURLs: Invalid value: {:?}: rules cannot apply to both regular resources and non-resource URLs",
                    r.non_resource_urls
                ));
            }
            for gr in &r.resources {
                if !gr.group.is_empty() && !is_dns_subdomain(&gr.group) {
                    errors.push(format!(
                        "{field}.resources.group: Invalid value: {:?}: must be a lowercase RFC 1123 subdomain",
                        gr.group
                    ));
                }
                if !gr.resource_names.is_empty() && gr.resources.is_empty() {
                    errors.push(format!(
                        "{field}.resources.resourceNames: Invalid value: {:?}: using resourceNames requires at least one resource",
                        gr.resource_names
                    ));
                }
            }
            let mut stages =
                parse_stages(&r.omit_stages, &format!("{field}.omitStages"), &mut errors);
            for s in &omit_stages {
                if !stages.contains(s) {
                    stages.push(*s);
                }
            }
            rules.push(Rule {
                level,
                users: r.users,
                user_groups: r.user_groups,
                verbs: r.verbs,
                resources: r.resources,
                namespaces: r.namespaces,
                non_resource_urls: r.non_resource_urls,
                omit_stages: stages,
                omit_managed_fields: r.omit_managed_fields,
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            rules,
            omit_stages,
            omit_managed_fields: file.omit_managed_fields,
        })
    }
}

fn parse_stages(names: &[String], field: &str, errors: &mut Vec<String>) -> Vec<Stage> {
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match Stage::parse(name) {
            Some(s) if !out.contains(&s) => out.push(s),
            Some(_) => {}
            None => errors.push(format!(
                "{field}[{i}]: Invalid value: {name:?}: allowed stages are RequestReceived,ResponseStarted,ResponseComplete,Panic"
            )),
        }
    }
    out
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn has(list: &[String], value: &str) -> bool {
    list.iter().any(|s| s == value)
}

impl Rule {
    fn matches(&self, attrs: &RequestAttrs, user: &UserInfo) -> bool {
        if !self.users.is_empty() && !has(&self.users, &user.name) {
            return false;
        }
        if !self.user_groups.is_empty() && !user.groups.iter().any(|g| has(&self.user_groups, g)) {
            return false;
        }
        if !self.verbs.is_empty() && !has(&self.verbs, &attrs.verb) {
            return false;
        }
        if !self.namespaces.is_empty() || !self.resources.is_empty() {
            return self.matches_resource(attrs);
        }
        if !self.non_resource_urls.is_empty() {
            return !attrs.is_resource_request()
                && self
                    .non_resource_urls
                    .iter()
                    .any(|spec| path_matches(&attrs.path, spec));
        }
        true
    }

    fn matches_resource(&self, attrs: &RequestAttrs) -> bool {
        let Some(res) = &attrs.resource else {
            return false;
        };
        // Cluster-scoped resources have the empty namespace.
        if !self.namespaces.is_empty() && !has(&self.namespaces, &res.namespace) {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        let combined = if res.subresource.is_empty() {
            res.resource.clone()
        } else {
            format!("{}/{}", res.resource, res.subresource)
        };
        self.resources
            .iter()
            .filter(|gr| gr.group == res.group)
            .any(|gr| {
                if gr.resources.is_empty() {
                    return true;
                }
                if !gr.resource_names.is_empty() && !has(&gr.resource_names, &res.name) {
                    return false;
                }
                gr.resources.iter().any(|spec| {
                    spec == "*"
                        || *spec == combined
                        || (!res.subresource.is_empty()
                            && spec.strip_prefix("*/") == Some(res.subresource.as_str()))
                        || spec.strip_suffix("/*") == Some(res.resource.as_str())
                })
            })
    }
}

fn path_matches(path: &str, spec: &str) -> bool {
    if spec == "*" || spec == path {
        return true;
    }
    match spec.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix.trim_end_matches('*')),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::ResourceAttrs;

    const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  users: ["system:kube-proxy"]
  verbs: [watch]
  resources:
  - group: ""
    resources: [endpoints, services]
- level: None
  userGroups: ["system:nodes"]
  verbs: [get]
- level: RequestResponse
  resources:
  - group: ""
    resources: ["pods/log", "*/status"]
  omitStages: [ResponseStarted]
- level: Request
  resources:
  - group: apps
    resources: ["*"]
  namespaces: [prod]
  omitManagedFields: true
- level: Metadata
  resources:
  - group: ""
    resources: [secrets, configmaps]
    resourceNames: [special]
- level: Metadata
  resources:
  - group: "batch"
    resources: ["jobs/*"]
- level: None
  nonResourceURLs: ["/healthz*", /version]
- level: Metadata
  nonResourceURLs: ["/api*"]
"#;

    fn res(
        verb: &str,
        group: &str,
        resource: &str,
        sub: &str,
        ns: &str,
        name: &str,
    ) -> RequestAttrs {
        RequestAttrs::resource(
            verb,
            ResourceAttrs {
                group: group.into(),
                version: "v1".into(),
                resource: resource.into(),
                subresource: sub.into(),
                namespace: ns.into(),
                name: name.into(),
            },
            "/x",
        )
    }

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo::new(name, groups.iter().map(|g| g.to_string()).collect())
    }

    #[test]
    fn first_matching_rule_decides_the_level() {
        let p = Policy::from_slice(POLICY.as_bytes()).unwrap();
        let admin = user("admin", &["system:masters"]);
        let cases = [
            (
                "proxy watch of services",
                res("watch", "", "services", "", "", ""),
                user("system:kube-proxy", &[]),
                Level::None,
            ),
            (
                "proxy list of services",
                res("list", "", "services", "", "", ""),
                user("system:kube-proxy", &[]),
                Level::None,
            ),
            (
                "node get",
                res("get", "", "pods", "", "a", "p"),
                user("n1", &["system:nodes"]),
                Level::None,
            ),
            (
                "pod log",
                res("get", "", "pods", "log", "a", "p"),
                admin.clone(),
                Level::RequestResponse,
            ),
            (
                "any status",
                res("update", "apps", "deployments", "status", "a", "d"),
                admin.clone(),
                Level::None,
            ),
            (
                "core status",
                res("update", "", "nodes", "status", "", "n"),
                admin.clone(),
                Level::RequestResponse,
            ),
            (
                "apps in prod",
                res("create", "apps", "deployments", "", "prod", ""),
                admin.clone(),
                Level::Request,
            ),
            (
                "apps elsewhere",
                res("create", "apps", "deployments", "", "dev", ""),
                admin.clone(),
                Level::None,
            ),
            (
                "named secret",
                res("get", "", "secrets", "", "a", "special"),
                admin.clone(),
                Level::Metadata,
            ),
            (
                "other secret",
                res("get", "", "secrets", "", "a", "plain"),
                admin.clone(),
                Level::None,
            ),
            (
                "job subresource wildcard",
                res("get", "batch", "jobs", "status", "a", "j"),
                admin.clone(),
                Level::Metadata,
            ),
            (
                "job itself",
                res("get", "batch", "jobs", "", "a", "j"),
                admin.clone(),
                Level::Metadata,
            ),
            (
                "healthz prefix",
                RequestAttrs::non_resource("GET", "/healthz/etcd"),
                admin.clone(),
                Level::None,
            ),
            (
                "version exact",
                RequestAttrs::non_resource("GET", "/version"),
                admin.clone(),
                Level::None,
            ),
            (
                "api discovery",
                RequestAttrs::non_resource("GET", "/apis"),
                admin.clone(),
                Level::Metadata,
            ),
            (
                "unmatched path",
                RequestAttrs::non_resource("GET", "/metrics"),
                admin.clone(),
                Level::None,
            ),
        ];
        for (name, attrs, u, want) in cases {
            assert_eq!(p.level_for(&attrs, &u).level, want, "{name}");
        }
    }

    #[test]
    fn omit_stages_and_managed_fields_combine_policy_and_rule() {
        let p = Policy::from_slice(POLICY.as_bytes()).unwrap();
        let admin = user("admin", &[]);
        let c = p.level_for(&res("get", "", "pods", "log", "a", "p"), &admin);
        assert!(c.omit_stages.contains(&Stage::RequestReceived));
        assert!(c.omit_stages.contains(&Stage::ResponseStarted));
        assert!(!c.omit_managed_fields);
        let c = p.level_for(
            &res("create", "apps", "deployments", "", "prod", ""),
            &admin,
        );
        assert_eq!(c.omit_stages, vec![Stage::RequestReceived]);
        assert!(c.omit_managed_fields);
        let c = p.level_for(&RequestAttrs::non_resource("GET", "/nothing"), &admin);
        assert_eq!(c.level, Level::None);
    }

    #[test]
    fn json_policies_parse_too() {
        let p = Policy::from_slice(
            br#"{"apiVersion":"audit.k8s.io/v1","kind":"Policy","rules":[{"level":"Metadata"}]}"#,
        )
        .unwrap();
        let c = p.level_for(&RequestAttrs::non_resource("POST", "/x"), &user("u", &[]));
        assert_eq!(c.level, Level::Metadata);
    }

    #[test]
    fn invalid_policies_are_rejected_with_clear_errors() {
        let cases = [
            ("unknown level", "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: Everything}]\n", "rules[0].level: Unsupported value: \"Everything\""),
            ("missing level", "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{verbs: [get]}]\n", "rules[0].level: Required value"),
            ("wrong kind", "apiVersion: audit.k8s.io/v1\nkind: Config\nrules: [{level: None}]\n", "kind: Unsupported value: \"Config\""),
            ("wrong apiVersion", "apiVersion: audit.k8s.io/v1beta1\nkind: Policy\nrules: [{level: None}]\n", "apiVersion: Unsupported value: \"audit.k8s.io/v1beta1\""),
            ("no rules", "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []\n", "0 rules"),
            ("bad stage", "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: None, omitStages: [Later]}]\n", "allowed stages are"),
            ("bad policy stage", "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [Later]\nrules: [{level: None}]\n", "omitStages[0]"),
            ("relative url", "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: None, nonResourceURLs: [healthz]}]\n", "must begin with a '/'"),
            ("inner star", "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: None, nonResourceURLs: ['/a*/b']}]\n", "must be the final character"),
            ("both kinds", "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: None, nonResourceURLs: [/a], namespaces: [x]}]\n", "cannot apply to both"),
            ("group with version", "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: None, resources: [{group: apps/v1}]}]\n", "resources.group"),
            ("names without resources", "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: None, resources: [{resourceNames: [a]}]}]\n", "requires at least one resource"),
            ("not yaml", "rules: {", "error parsing audit policy"),
        ];
        for (name, text, want) in cases {
            let got = Policy::from_slice(text.as_bytes()).unwrap_err().to_string();
            assert!(got.contains(want), "{name}: got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn load_names_the_file_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(
            &path,
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: Loud}]\n",
        )
        .unwrap();
        let e = Policy::load(&path).unwrap_err().to_string();
        assert!(e.contains("policy.yaml") && e.contains("Loud"), "{e}");
        let e = Policy::load(dir.path().join("missing.yaml")).unwrap_err();
        assert!(matches!(e, Error::ReadPolicy { .. }));
        std::fs::write(&path, POLICY).unwrap();
        assert!(Policy::load(&path).is_ok());
    }
}
