//! Impersonation (`kubectl --as`, `--as-group`, `--as-uid`): the `Impersonate-User`,
//! `Impersonate-Group`, `Impersonate-Uid` and `Impersonate-Extra-<key>` headers, each allowed
//! only when the requesting user may `impersonate` that user, group, uid or extra value, as
//! upstream's impersonation filter does. The request then runs as the impersonated user.

use std::collections::BTreeMap;

use http::HeaderMap;

use crate::authn::{UserInfo, ANONYMOUS_USER, SYSTEM_AUTHENTICATED, SYSTEM_UNAUTHENTICATED};
use crate::authz::Attributes;
use crate::error::ApiError;
use crate::server::ApiServer;

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";
const SA_PREFIX: &str = "system:serviceaccount:";

/// One thing the requester asks to act as, as the RBAC attributes that allow it.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    group: &'static str,
    resource: &'static str,
    subresource: String,
    namespace: String,
    name: String,
}

/// What the headers ask for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Request {
    user: Option<String>,
    groups: Vec<String>,
    uid: Option<String>,
    extra: BTreeMap<String, Vec<String>>,
}

fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect()
}

/// Percent-decodes an extra key as upstream does (`Impersonate-Extra-scopes%2Fx` -> `scopes/x`),
/// lowercased because HTTP header names are case-insensitive.
fn decode_key(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = raw
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_lowercase()
}

fn parse(headers: &HeaderMap) -> Result<Option<Request>, ApiError> {
    let mut req = Request {
        user: values(headers, USER).into_iter().next(),
        groups: values(headers, GROUP),
        uid: values(headers, UID).into_iter().next(),
        extra: BTreeMap::new(),
    };
    for name in headers.keys() {
        if let Some(key) = name.as_str().strip_prefix(EXTRA_PREFIX) {
            req.extra
                .insert(decode_key(key), values(headers, name.as_str()));
        }
    }
    if req == Request::default() {
        return Ok(None);
    }
    if req.user.as_deref().is_none_or(str::is_empty) {
        let mut asked = Vec::new();
        asked.extend(req.groups.iter().map(|g| format!("groups={g}")));
        asked.extend(req.uid.iter().map(|u| format!("uid={u}")));
        asked.extend(req.extra.keys().map(|k| format!("extra={k}")));
        return Err(ApiError::bad_request(format!(
            "requested [{}] without impersonating a user",
            asked.join(" ")
        )));
    }
    Ok(Some(req))
}

/// `system:serviceaccount:<ns>:<name>` split into namespace and name.
fn service_account(user: &str) -> Option<(&str, &str)> {
    user.strip_prefix(SA_PREFIX)
        .and_then(|rest| rest.split_once(':'))
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
}

fn target(group: &'static str, resource: &'static str, name: &str) -> Target {
    Target {
        group,
        resource,
        subresource: String::new(),
        namespace: String::new(),
        name: name.to_string(),
    }
}

fn targets(req: &Request) -> Vec<Target> {
    let user = req.user.as_deref().unwrap_or_default();
    let mut out = vec![match service_account(user) {
        Some((ns, name)) => Target {
            namespace: ns.to_string(),
            ..target("", "serviceaccounts", name)
        },
        None => target("", "users", user),
    }];
    out.extend(req.groups.iter().map(|g| target("", "groups", g)));
    out.extend(
        req.uid
            .iter()
            .map(|u| target("authentication.k8s.io", "uids", u)),
    );
    for (key, vals) in &req.extra {
        out.extend(vals.iter().map(|v| Target {
            subresource: key.clone(),
            ..target("authentication.k8s.io", "userextras", v)
        }));
    }
    out
}

/// The user the request runs as once every target is allowed.
fn impersonated(req: Request) -> UserInfo {
    let name = req.user.unwrap_or_default();
    let mut groups = Vec::new();
    if let Some((ns, _)) = service_account(&name) {
        groups.push("system:serviceaccounts".to_string());
        groups.push(format!("system:serviceaccounts:{ns}"));
    }
    groups.extend(req.groups);
    let has = |groups: &[String], g: &str| groups.iter().any(|x| x == g);
    if name == ANONYMOUS_USER {
        if !has(&groups, SYSTEM_UNAUTHENTICATED) {
            groups.push(SYSTEM_UNAUTHENTICATED.to_string());
        }
    } else if !has(&groups, SYSTEM_AUTHENTICATED) && !has(&groups, SYSTEM_UNAUTHENTICATED) {
        groups.push(SYSTEM_AUTHENTICATED.to_string());
    }
    UserInfo {
        name,
        uid: req.uid.unwrap_or_default(),
        groups,
        extra: req.extra,
    }
}

/// Applies the impersonation headers: `Ok(None)` when there are none, the impersonated user
/// when `requester` may act as it, else upstream's 400 or 403.
pub fn apply(
    api: &ApiServer,
    requester: &UserInfo,
    headers: &HeaderMap,
) -> Result<Option<UserInfo>, ApiError> {
    let Some(req) = parse(headers)? else {
        return Ok(None);
    };
    for t in targets(&req) {
        let attrs = Attributes {
            user: requester,
            verb: "impersonate",
            resource_request: true,
            namespace: &t.namespace,
            api_group: t.group,
            api_version: "",
            resource: t.resource,
            subresource: &t.subresource,
            name: &t.name,
            path: "",
        };
        if !api.authz.authorize(&attrs, &api.catalog).is_allowed() {
            let mut details = serde_json::json!({"name": t.name, "kind": t.resource});
            if !t.group.is_empty() {
                details["group"] = serde_json::json!(t.group);
            }
            return Err(ApiError::forbidden(crate::authn::forbidden_message(
                requester,
                "impersonate",
                t.group,
                t.resource,
                &t.subresource,
                &t.namespace,
                &t.name,
            ))
            .with_details(details));
        }
    }
    Ok(Some(impersonated(req)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn no_headers_is_no_impersonation() {
        assert_eq!(parse(&headers(&[("authorization", "x")])).unwrap(), None);
    }

    #[test]
    fn groups_without_a_user_are_a_bad_request() {
        let e = parse(&headers(&[("Impersonate-Group", "devs")])).unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "requested [groups=devs] without impersonating a user"
        );
    }

    #[test]
    fn service_accounts_are_checked_as_serviceaccounts_and_get_their_groups() {
        let req = parse(&headers(&[
            ("Impersonate-User", "system:serviceaccount:kube-system:dns"),
            ("Impersonate-Group", "extra-group"),
            ("Impersonate-Extra-Scopes%2Fwrite", "all"),
        ]))
        .unwrap()
        .unwrap();
        let t = targets(&req);
        assert_eq!(t[0].resource, "serviceaccounts");
        assert_eq!(
            (t[0].namespace.as_str(), t[0].name.as_str()),
            ("kube-system", "dns")
        );
        assert_eq!(t[1].resource, "groups");
        assert_eq!(t[2].resource, "userextras");
        assert_eq!(t[2].subresource, "scopes/write");
        let user = impersonated(req);
        assert_eq!(
            user.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:kube-system",
                "extra-group",
                "system:authenticated"
            ]
        );
        assert_eq!(user.extra["scopes/write"], ["all"]);
    }

    #[test]
    fn users_get_system_authenticated_unless_a_group_says_otherwise() {
        let plain = impersonated(
            parse(&headers(&[("Impersonate-User", "bob")]))
                .unwrap()
                .unwrap(),
        );
        assert_eq!(plain.groups, ["system:authenticated"]);
        let anon = impersonated(
            parse(&headers(&[("Impersonate-User", "system:anonymous")]))
                .unwrap()
                .unwrap(),
        );
        assert_eq!(anon.groups, ["system:unauthenticated"]);
    }
}
