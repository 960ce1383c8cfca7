//! RBAC policy rules: matching a request against a rule, and whether one set of rules covers
//! another (escalation checks, reconciliation), as upstream's rbac helpers and policy comparator.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::{json, Map, Value};

use super::Attributes;

/// `*`: every verb, group, resource or URL.
pub const ALL: &str = "*";

/// One rule of a Role or ClusterRole (`rbac.authorization.k8s.io/v1` `PolicyRule`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyRule {
    /// `verbs`; `*` is every verb.
    pub verbs: Vec<String>,
    /// `apiGroups`; "" is the core group, `*` every group.
    pub api_groups: Vec<String>,
    /// `resources`: `pods`, `pods/log`, `*/scale` or `*`.
    pub resources: Vec<String>,
    /// `resourceNames`; empty allows every name.
    pub resource_names: Vec<String>,
    /// `nonResourceURLs`: exact paths or prefixes ending in `*`.
    pub non_resource_urls: Vec<String>,
}

/// A resource rule as SelfSubjectRulesReview reports it (upstream `ResourceRuleInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceRule {
    /// `verbs`.
    pub verbs: Vec<String>,
    /// `apiGroups`.
    pub api_groups: Vec<String>,
    /// `resources`.
    pub resources: Vec<String>,
    /// `resourceNames`.
    pub resource_names: Vec<String>,
}

/// A non-resource rule as SelfSubjectRulesReview reports it (upstream `NonResourceRuleInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NonResourceRule {
    /// `verbs`.
    pub verbs: Vec<String>,
    /// `nonResourceURLs`.
    pub non_resource_urls: Vec<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn put_list(m: &mut Map<String, Value>, key: &str, list: &[String], always: bool) {
    if always || !list.is_empty() {
        m.insert(key.to_owned(), json!(list));
    }
}

impl PolicyRule {
    /// Reads a rule from its JSON form; missing lists are empty.
    pub fn from_value(v: &Value) -> Self {
        Self {
            verbs: strings(&v["verbs"]),
            api_groups: strings(&v["apiGroups"]),
            resources: strings(&v["resources"]),
            resource_names: strings(&v["resourceNames"]),
            non_resource_urls: strings(&v["nonResourceURLs"]),
        }
    }

    /// Every rule of a role object (`rules`), parsed.
    pub fn list_from(role: &Value) -> Vec<Self> {
        role["rules"]
            .as_array()
            .map(|a| a.iter().map(Self::from_value).collect())
            .unwrap_or_default()
    }

    /// The JSON form, with empty lists other than `verbs` left out as upstream does.
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        put_list(&mut m, "verbs", &self.verbs, true);
        put_list(&mut m, "apiGroups", &self.api_groups, false);
        put_list(&mut m, "resources", &self.resources, false);
        put_list(&mut m, "resourceNames", &self.resource_names, false);
        put_list(&mut m, "nonResourceURLs", &self.non_resource_urls, false);
        Value::Object(m)
    }

    /// Whether this rule allows the request (upstream `RuleAllows`).
    pub fn allows(&self, attrs: &Attributes<'_>) -> bool {
        let verb = verb_matches(self.verbs.iter().map(String::as_str), attrs.verb);
        if attrs.resource_request {
            verb && group_matches(self.api_groups.iter().map(String::as_str), attrs.api_group)
                && resource_matches(
                    self.resources.iter().map(String::as_str),
                    attrs.resource,
                    attrs.subresource,
                )
                && resource_name_matches(self.resource_names.iter().map(String::as_str), attrs.name)
        } else {
            verb && url_matches(
                self.non_resource_urls.iter().map(String::as_str),
                attrs.path,
            )
        }
    }

    /// Upstream's `CompactString`, used in escalation messages:
    /// `{APIGroups:[""], Resources:["pods"], Verbs:["get"]}`.
    pub fn compact_string(&self) -> String {
        let mut parts = Vec::new();
        for (name, list) in [
            ("APIGroups", &self.api_groups),
            ("Resources", &self.resources),
            ("NonResourceURLs", &self.non_resource_urls),
            ("ResourceNames", &self.resource_names),
            ("Verbs", &self.verbs),
        ] {
            if !list.is_empty() {
                parts.push(format!("{name}:{}", go_quote_list(list)));
            }
        }
        format!("{{{}}}", parts.join(", "))
    }
}

fn json_strs(v: &Value) -> impl Iterator<Item = &str> {
    v.as_array()
        .map(|a| a.as_slice())
        .unwrap_or(&[])
        .iter()
        .filter_map(Value::as_str)
}

/// Whether the rule in its stored JSON form allows the request; reads the rule in place, so the
/// per-request path allocates nothing.
pub fn rule_allows(attrs: &Attributes<'_>, rule: &Value) -> bool {
    if !verb_matches(json_strs(&rule["verbs"]), attrs.verb) {
        return false;
    }
    if attrs.resource_request {
        group_matches(json_strs(&rule["apiGroups"]), attrs.api_group)
            && resource_matches(
                json_strs(&rule["resources"]),
                attrs.resource,
                attrs.subresource,
            )
            && resource_name_matches(json_strs(&rule["resourceNames"]), attrs.name)
    } else {
        url_matches(json_strs(&rule["nonResourceURLs"]), attrs.path)
    }
}

/// Whether any rule of `rules` allows the request (upstream `RulesAllow`).
pub fn rules_allow(attrs: &Attributes<'_>, rules: &[PolicyRule]) -> bool {
    rules.iter().any(|r| r.allows(attrs))
}

fn verb_matches<'a>(mut verbs: impl Iterator<Item = &'a str>, verb: &str) -> bool {
    verbs.any(|v| v == ALL || v == verb)
}

fn group_matches<'a>(mut groups: impl Iterator<Item = &'a str>, group: &str) -> bool {
    groups.any(|g| g == ALL || g == group)
}

/// `*`, the exact `resource` or `resource/subresource`, or `*/subresource`. Upstream does not
/// treat `resource/*` as a wildcard, so neither do we.
fn resource_matches<'a>(
    mut resources: impl Iterator<Item = &'a str>,
    resource: &str,
    subresource: &str,
) -> bool {
    resources.any(|r| {
        if r == ALL {
            return true;
        }
        if subresource.is_empty() {
            return r == resource;
        }
        match r.split_once('/') {
            Some((res, sub)) => sub == subresource && (res == resource || res == ALL),
            None => false,
        }
    })
}

/// An empty list allows every name; otherwise the request must name one of them (so a list,
/// watch or create, which carry no name, do not match a rule with resourceNames).
fn resource_name_matches<'a>(names: impl Iterator<Item = &'a str>, name: &str) -> bool {
    let mut any = false;
    for n in names {
        if n == name {
            return true;
        }
        any = true;
    }
    !any
}

fn url_matches<'a>(mut urls: impl Iterator<Item = &'a str>, path: &str) -> bool {
    urls.any(|u| url_covers(u, path))
}

/// `*`, an exact path, or a prefix ending in `*`.
fn url_covers(owner: &str, path: &str) -> bool {
    if owner == ALL || owner == path {
        return true;
    }
    match owner.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix.trim_end_matches('*')),
        None => false,
    }
}

/// Splits a rule into rules of one group, resource, verb and (at most) one name, and one URL
/// per verb (upstream `BreakdownRule`).
pub fn breakdown_rule(rule: &PolicyRule) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    let one = |s: &String| vec![s.clone()];
    for group in &rule.api_groups {
        for resource in &rule.resources {
            for verb in &rule.verbs {
                if rule.resource_names.is_empty() {
                    out.push(PolicyRule {
                        verbs: one(verb),
                        api_groups: one(group),
                        resources: one(resource),
                        ..PolicyRule::default()
                    });
                } else {
                    for name in &rule.resource_names {
                        out.push(PolicyRule {
                            verbs: one(verb),
                            api_groups: one(group),
                            resources: one(resource),
                            resource_names: one(name),
                            ..PolicyRule::default()
                        });
                    }
                }
            }
        }
    }
    for url in &rule.non_resource_urls {
        for verb in &rule.verbs {
            out.push(PolicyRule {
                verbs: one(verb),
                non_resource_urls: one(url),
                ..PolicyRule::default()
            });
        }
    }
    out
}

fn has(set: &[String], s: &str) -> bool {
    set.iter().any(|x| x == s)
}

fn has_all(set: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|w| has(set, w))
}

fn resources_cover_all(owner: &[String], wanted: &[String]) -> bool {
    if has(owner, ALL) || has_all(owner, wanted) {
        return true;
    }
    wanted.iter().all(|path| {
        if has(owner, path) {
            return true;
        }
        match path.split_once('/') {
            Some((_, sub)) => owner.iter().any(|o| o.strip_prefix("*/") == Some(sub)),
            None => false,
        }
    })
}

fn urls_cover_all(owner: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|path| {
        owner
            .iter()
            .any(|o| o == path || url_prefix_covers(o, path))
    })
}

/// Upstream's `nonResourceURLCovers`: exact, or a `*`-suffixed prefix (no bare `*` special case
/// beyond that, which the prefix rule already handles).
fn url_prefix_covers(owner: &str, path: &str) -> bool {
    owner.ends_with('*') && path.starts_with(owner.trim_end_matches('*'))
}

/// Whether `owner` covers `sub`, a rule from [`breakdown_rule`] (upstream `ruleCovers`).
fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let verbs = has(&owner.verbs, ALL) || has_all(&owner.verbs, &sub.verbs);
    let groups = has(&owner.api_groups, ALL) || has_all(&owner.api_groups, &sub.api_groups);
    let resources = resources_cover_all(&owner.resources, &sub.resources);
    let urls = urls_cover_all(&owner.non_resource_urls, &sub.non_resource_urls);
    let names = if sub.resource_names.is_empty() {
        owner.resource_names.is_empty()
    } else {
        owner.resource_names.is_empty() || has_all(&owner.resource_names, &sub.resource_names)
    };
    verbs && groups && resources && names && urls
}

/// Whether `owner` rules grant everything `requested` rules do; the second value lists the
/// pieces (broken down to one verb/group/resource/name) that are not covered.
pub fn covers(owner: &[PolicyRule], requested: &[PolicyRule]) -> (bool, Vec<PolicyRule>) {
    let uncovered: Vec<PolicyRule> = requested
        .iter()
        .flat_map(breakdown_rule)
        .filter(|sub| !owner.iter().any(|o| rule_covers(o, sub)))
        .collect();
    (uncovered.is_empty(), uncovered)
}

/// Group, resource and (optional) name of a rule that [`compact_rules`] may merge.
type SimpleKey = (String, String, Option<String>);

/// Merges rules of a single group and resource (and at most one name) that differ only by
/// verb, as upstream's `CompactRules` does for the "missing rules" of an escalation message.
pub fn compact_rules(rules: Vec<PolicyRule>) -> Vec<PolicyRule> {
    let mut compacted = Vec::new();
    let mut simple: Vec<(SimpleKey, PolicyRule)> = Vec::new();
    for rule in rules {
        let is_simple = rule.resource_names.len() <= 1
            && rule.non_resource_urls.is_empty()
            && rule.api_groups.len() == 1
            && rule.resources.len() == 1;
        if !is_simple {
            compacted.push(rule);
            continue;
        }
        let key = (
            rule.api_groups[0].clone(),
            rule.resources[0].clone(),
            rule.resource_names.first().cloned(),
        );
        match simple.iter_mut().find(|(k, _)| *k == key) {
            Some((_, existing)) => {
                for verb in rule.verbs {
                    if !existing.verbs.contains(&verb) {
                        existing.verbs.push(verb);
                    }
                }
            }
            None => simple.push((key, rule)),
        }
    }
    compacted.extend(simple.into_iter().map(|(_, r)| r));
    compacted
}

/// The uncovered rules as upstream lists them: compacted, one `CompactString` per line, sorted
/// and without duplicates.
pub fn describe_missing(rules: Vec<PolicyRule>) -> String {
    let lines: BTreeSet<String> = compact_rules(rules)
        .iter()
        .map(PolicyRule::compact_string)
        .collect();
    lines.into_iter().collect::<Vec<_>>().join("\n")
}

/// A string quoted as Go's `%q` does.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A list of strings as Go's `%q` prints a `[]string`: `["a" "b"]`.
pub fn go_quote_list<S: AsRef<str>>(list: &[S]) -> String {
    let quoted: Vec<String> = list.iter().map(|s| go_quote(s.as_ref())).collect();
    format!("[{}]", quoted.join(" "))
}

impl ResourceRule {
    /// The SelfSubjectRulesReview JSON form (`verbs` always, other lists when non-empty).
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        put_list(&mut m, "verbs", &self.verbs, true);
        put_list(&mut m, "apiGroups", &self.api_groups, false);
        put_list(&mut m, "resources", &self.resources, false);
        put_list(&mut m, "resourceNames", &self.resource_names, false);
        Value::Object(m)
    }
}

impl NonResourceRule {
    /// The SelfSubjectRulesReview JSON form.
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        put_list(&mut m, "verbs", &self.verbs, true);
        put_list(&mut m, "nonResourceURLs", &self.non_resource_urls, false);
        Value::Object(m)
    }
}

/// Splits policy rules into the resource and non-resource rules a rules review reports; a rule
/// with both kinds of content appears in both lists, as upstream.
pub fn split_rules(rules: &[PolicyRule]) -> (Vec<ResourceRule>, Vec<NonResourceRule>) {
    let mut res = Vec::new();
    let mut non = Vec::new();
    for r in rules {
        if !r.resources.is_empty() {
            res.push(ResourceRule {
                verbs: r.verbs.clone(),
                api_groups: r.api_groups.clone(),
                resources: r.resources.clone(),
                resource_names: r.resource_names.clone(),
            });
        }
        if !r.non_resource_urls.is_empty() {
            non.push(NonResourceRule {
                verbs: r.verbs.clone(),
                non_resource_urls: r.non_resource_urls.clone(),
            });
        }
    }
    (res, non)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::UserInfo;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        PolicyRule {
            verbs: v(verbs),
            api_groups: v(groups),
            resources: v(resources),
            resource_names: v(names),
            non_resource_urls: vec![],
        }
    }

    fn url_rule(verbs: &[&str], urls: &[&str]) -> PolicyRule {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        PolicyRule {
            verbs: v(verbs),
            non_resource_urls: v(urls),
            ..PolicyRule::default()
        }
    }

    fn attrs<'a>(
        u: &'a UserInfo,
        verb: &'a str,
        group: &'a str,
        resource: &'a str,
        sub: &'a str,
        name: &'a str,
    ) -> Attributes<'a> {
        Attributes {
            user: u,
            verb,
            resource_request: true,
            namespace: "ns",
            api_group: group,
            api_version: "v1",
            resource,
            subresource: sub,
            name,
            path: "",
        }
    }

    #[test]
    fn resource_matching_follows_upstream_wildcards() {
        let u = UserInfo::new("u", vec![]);
        let cases: &[(&str, PolicyRule, Attributes<'_>, bool)] = &[
            (
                "star resource",
                rule(&["get"], &[""], &["*"], &[]),
                attrs(&u, "get", "", "pods", "log", ""),
                true,
            ),
            (
                "exact subresource",
                rule(&["get"], &[""], &["pods/log"], &[]),
                attrs(&u, "get", "", "pods", "log", ""),
                true,
            ),
            (
                "resource does not grant subresource",
                rule(&["get"], &[""], &["pods"], &[]),
                attrs(&u, "get", "", "pods", "log", ""),
                false,
            ),
            (
                "star slash subresource in another group",
                rule(&["get"], &[""], &["*/scale"], &[]),
                attrs(&u, "get", "apps", "deployments", "scale", ""),
                false,
            ),
            (
                "star slash subresource any group",
                rule(&["get"], &["*"], &["*/scale"], &[]),
                attrs(&u, "get", "apps", "deployments", "scale", ""),
                true,
            ),
            (
                "resource slash star is literal",
                rule(&["get"], &[""], &["pods/*"], &[]),
                attrs(&u, "get", "", "pods", "log", ""),
                false,
            ),
            (
                "verb star",
                rule(&["*"], &[""], &["pods"], &[]),
                attrs(&u, "delete", "", "pods", "", "x"),
                true,
            ),
            (
                "wrong group",
                rule(&["get"], &["apps"], &["pods"], &[]),
                attrs(&u, "get", "", "pods", "", ""),
                false,
            ),
            (
                "name matches",
                rule(&["get"], &[""], &["pods"], &["a"]),
                attrs(&u, "get", "", "pods", "", "a"),
                true,
            ),
            (
                "other name",
                rule(&["get"], &[""], &["pods"], &["a"]),
                attrs(&u, "get", "", "pods", "", "b"),
                false,
            ),
            (
                "list has no name",
                rule(&["list"], &[""], &["pods"], &["a"]),
                attrs(&u, "list", "", "pods", "", ""),
                false,
            ),
            (
                "create has no name",
                rule(&["create"], &[""], &["pods"], &["a"]),
                attrs(&u, "create", "", "pods", "", ""),
                false,
            ),
        ];
        for (name, r, a, want) in cases {
            assert_eq!(r.allows(a), *want, "{name}");
            assert_eq!(rule_allows(a, &r.to_value()), *want, "{name} (json)");
        }
    }

    #[test]
    fn non_resource_urls_match_exactly_or_by_star_prefix() {
        let u = UserInfo::new("u", vec![]);
        let r = url_rule(&["get"], &["/healthz", "/apis/*"]);
        let mut a = attrs(&u, "get", "", "", "", "");
        a.resource_request = false;
        for (path, want) in [
            ("/healthz", true),
            ("/healthz/etcd", false),
            ("/apis", false),
            ("/apis/apps", true),
            ("/api", false),
        ] {
            a.path = path;
            assert_eq!(r.allows(&a), want, "{path}");
        }
        a.verb = "post";
        a.path = "/healthz";
        assert!(!r.allows(&a));
        assert!(url_rule(&["*"], &["*"]).allows(&a));
    }

    #[test]
    fn covers_reports_uncovered_pieces() {
        let owner = vec![rule(&["get", "list"], &[""], &["pods"], &[])];
        let (ok, missing) = covers(
            &owner,
            &[rule(&["get", "delete"], &[""], &["pods", "secrets"], &[])],
        );
        assert!(!ok);
        assert_eq!(missing.len(), 3);
        assert!(covers(&owner, &[rule(&["get"], &[""], &["pods"], &["a"])]).0);
        // a named owner rule does not cover an unnamed request
        assert!(
            !covers(
                &[rule(&["get"], &[""], &["pods"], &["a"])],
                &[rule(&["get"], &[""], &["pods"], &[])]
            )
            .0
        );
        // */subresource covers any resource's subresource
        assert!(
            covers(
                &[rule(&["get"], &["*"], &["*/scale"], &[])],
                &[rule(&["get"], &["apps"], &["deployments/scale"], &[])]
            )
            .0
        );
        // URL prefixes
        assert!(
            covers(
                &[url_rule(&["get"], &["/api/*"])],
                &[url_rule(&["get"], &["/api/v1"])]
            )
            .0
        );
        assert!(
            !covers(
                &[url_rule(&["get"], &["/api"])],
                &[url_rule(&["get"], &["/api/v1"])]
            )
            .0
        );
        // cluster-admin covers everything
        let admin = vec![rule(&["*"], &["*"], &["*"], &[]), url_rule(&["*"], &["*"])];
        assert!(
            covers(
                &admin,
                &[
                    rule(
                        &["escalate"],
                        &["rbac.authorization.k8s.io"],
                        &["roles"],
                        &["x"]
                    ),
                    url_rule(&["get"], &["/x"])
                ]
            )
            .0
        );
    }

    #[test]
    fn missing_rules_are_compacted_and_described_as_upstream() {
        let (_, missing) = covers(
            &[],
            &[
                rule(&["get", "list"], &[""], &["pods"], &[]),
                url_rule(&["get"], &["/x"]),
            ],
        );
        assert_eq!(
            describe_missing(missing),
            "{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"get\" \"list\"]}\n{NonResourceURLs:[\"/x\"], Verbs:[\"get\"]}"
        );
    }

    #[test]
    fn rule_json_round_trips_and_omits_empty_lists() {
        let r = rule(&["get"], &[""], &["pods"], &[]);
        assert_eq!(
            r.to_value(),
            json!({"verbs":["get"],"apiGroups":[""],"resources":["pods"]})
        );
        assert_eq!(PolicyRule::from_value(&r.to_value()), r);
    }

    #[test]
    fn go_quoting_matches_percent_q() {
        assert_eq!(go_quote_list(&["a", "b\"c"]), "[\"a\" \"b\\\"c\"]");
        assert_eq!(go_quote_list::<&str>(&[]), "[]");
    }
}
