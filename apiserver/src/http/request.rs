//! What a request asks for, parsed from its path and method as upstream's RequestInfo does.

use std::collections::HashMap;

/// A parsed `/api/...` or `/apis/...` request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestInfo {
    /// get, list, watch, create, update, patch, delete, deletecollection, connect.
    pub verb: String,
    pub group: String,
    pub version: String,
    pub namespace: String,
    pub resource: String,
    pub name: String,
    pub subresource: String,
    /// Anything after the subresource (proxy paths).
    pub rest: Vec<String>,
}

impl RequestInfo {
    /// Parses a resource path; None when the path is not a resource request (discovery).
    pub fn parse(method: &http::Method, path: &str, query: &Query) -> Option<Self> {
        let parts: Vec<&str> = path
            .trim_matches('/')
            .split('/')
            .filter(|p| !p.is_empty())
            .collect();
        let (group, version, rest) = match parts.as_slice() {
            ["api", v, rest @ ..] if !rest.is_empty() => (String::new(), v.to_string(), rest),
            ["apis", g, v, rest @ ..] if !rest.is_empty() => (g.to_string(), v.to_string(), rest),
            _ => return None,
        };
        let mut rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
        let mut watch_path = false;
        if rest.first().map(String::as_str) == Some("watch") {
            watch_path = true;
            rest.remove(0);
        }
        let mut info = RequestInfo {
            group,
            version,
            ..Default::default()
        };
        // namespaces/{ns}/{resource}/..., except the namespace's own subresources.
        if rest.len() >= 3
            && rest[0] == "namespaces"
            && !(rest.len() == 3 && matches!(rest[2].as_str(), "status" | "finalize"))
        {
            info.namespace = rest[1].clone();
            rest.drain(..2);
        }
        let mut it = rest.into_iter();
        info.resource = it.next()?;
        info.name = it.next().unwrap_or_default();
        info.subresource = it.next().unwrap_or_default();
        info.rest = it.collect();
        let watch = watch_path || query.flag("watch");
        info.verb = match *method {
            http::Method::GET | http::Method::HEAD => {
                if watch {
                    "watch"
                } else if info.name.is_empty() {
                    "list"
                } else {
                    "get"
                }
            }
            http::Method::POST => "create",
            http::Method::PUT => "update",
            http::Method::PATCH => "patch",
            http::Method::DELETE => {
                if info.name.is_empty() {
                    "deletecollection"
                } else {
                    "delete"
                }
            }
            _ => "",
        }
        .to_string();
        if matches!(
            info.subresource.as_str(),
            "exec" | "attach" | "portforward" | "proxy"
        ) {
            info.verb = "connect".into();
        }
        Some(info)
    }
}

/// The decoded query string; `get` returns the first value, as Go's `url.Values.Get` does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pairs: HashMap<String, Vec<String>>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let mut pairs: HashMap<String, Vec<String>> = HashMap::new();
        for part in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            pairs
                .entry(percent_decode(k))
                .or_default()
                .push(percent_decode(v));
        }
        Self { pairs }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.get(key)?.first().map(String::as_str)
    }

    pub fn all(&self, key: &str) -> &[String] {
        self.pairs.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// `?watch=true`, `?watch=1`, `?watch` all count.
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1" | "" | "True"))
    }

    pub fn has(&self, key: &str) -> bool {
        self.pairs.contains_key(key)
    }

    /// Every key with its values (decoded), in no particular order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

/// Decodes `%XX` escapes and `+` as space.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn parse(m: Method, p: &str, q: &str) -> RequestInfo {
        RequestInfo::parse(&m, p, &Query::parse(Some(q))).expect("resource request")
    }

    #[test]
    fn namespaced_paths_split_into_namespace_resource_name_subresource() {
        let i = parse(
            Method::GET,
            "/apis/apps/v1/namespaces/default/deployments/web/scale",
            "",
        );
        assert_eq!(
            (
                i.group.as_str(),
                i.namespace.as_str(),
                i.resource.as_str(),
                i.name.as_str(),
                i.subresource.as_str(),
                i.verb.as_str()
            ),
            ("apps", "default", "deployments", "web", "scale", "get")
        );
    }

    #[test]
    fn namespaces_themselves_are_cluster_scoped_resources() {
        let i = parse(Method::GET, "/api/v1/namespaces/kube-system", "");
        assert_eq!(
            (i.resource.as_str(), i.name.as_str(), i.namespace.as_str()),
            ("namespaces", "kube-system", "")
        );
        let i = parse(Method::PUT, "/api/v1/namespaces/x/finalize", "");
        assert_eq!(
            (i.resource.as_str(), i.name.as_str(), i.subresource.as_str()),
            ("namespaces", "x", "finalize")
        );
        let i = parse(Method::GET, "/api/v1/namespaces", "watch=true");
        assert_eq!(
            (i.resource.as_str(), i.verb.as_str()),
            ("namespaces", "watch")
        );
    }

    #[test]
    fn verbs_follow_method_name_and_watch() {
        assert_eq!(parse(Method::GET, "/api/v1/pods", "").verb, "list");
        assert_eq!(
            parse(Method::GET, "/api/v1/watch/namespaces/a/pods", "").verb,
            "watch"
        );
        assert_eq!(
            parse(Method::DELETE, "/api/v1/namespaces/a/pods", "").verb,
            "deletecollection"
        );
        assert_eq!(
            parse(Method::POST, "/api/v1/namespaces/a/pods/p/exec", "").verb,
            "connect"
        );
    }

    #[test]
    fn query_values_are_percent_decoded() {
        let q = Query::parse(Some("labelSelector=app%3Dweb%2Ctier+in+(a)&limit=500"));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert_eq!(q.get("limit"), Some("500"));
    }
}
