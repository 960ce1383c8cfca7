//! Registry credentials from the pod's imagePullSecrets (`kubernetes.io/dockerconfigjson` and
//! `kubernetes.io/dockercfg`), matched to an image as upstream's credential provider keyring
//! does: keys without scheme, `/v1/` and `/v2/` trimmed, the most specific key first, host
//! labels matched by glob (`*.example.com`), ports equal, the key's path a prefix of the
//! image's; `index.docker.io` serves images on the default registry.

use base64::Engine;
use serde::Deserialize;
use std::collections::BTreeMap;

use crate::cri::api;

const DEFAULT_REGISTRY_HOST: &str = "index.docker.io";

/// The data key of a `kubernetes.io/dockerconfigjson` Secret.
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
/// The data key of a `kubernetes.io/dockercfg` Secret.
pub const DOCKER_CONFIG_KEY: &str = ".dockercfg";

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
struct Entry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
}

#[derive(Debug, Deserialize)]
struct ConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

/// One credential: what the runtime gets as CRI `AuthConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

impl Credential {
    /// As upstream, without a server address: runtimes drop credentials whose address differs
    /// from the host they pull from (Docker Hub's key `index.docker.io` is not its pull host).
    pub fn to_cri(&self) -> api::AuthConfig {
        api::AuthConfig {
            username: self.username.clone(),
            password: self.password.clone(),
            ..Default::default()
        }
    }
}

fn credential(e: Entry) -> Credential {
    if e.username.is_empty() && e.password.is_empty() && !e.auth.is_empty() {
        // `auth` is base64 of user:password.
        if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(e.auth.trim()) {
            let text = String::from_utf8_lossy(&raw).into_owned();
            if let Some((user, pass)) = text.split_once(':') {
                return Credential {
                    username: user.to_string(),
                    password: pass.to_string(),
                };
            }
        }
    }
    Credential {
        username: e.username,
        password: e.password,
    }
}

/// Credentials by registry key, most specific key first.
#[derive(Debug, Default, Clone)]
pub struct Keyring {
    entries: Vec<(String, Credential)>,
}

impl Keyring {
    /// Adds the credentials of one Secret's data (either key); errors name what did not parse.
    pub fn add_secret_data(&mut self, data: &BTreeMap<String, Vec<u8>>) -> Result<(), String> {
        if let Some(raw) = data.get(DOCKER_CONFIG_JSON_KEY) {
            let config: ConfigJson = serde_json::from_slice(raw)
                .map_err(|e| format!("invalid {DOCKER_CONFIG_JSON_KEY}: {e}"))?;
            for (key, entry) in config.auths {
                self.add(&key, credential(entry));
            }
        } else if let Some(raw) = data.get(DOCKER_CONFIG_KEY) {
            let config: BTreeMap<String, Entry> = serde_json::from_slice(raw)
                .map_err(|e| format!("invalid {DOCKER_CONFIG_KEY}: {e}"))?;
            for (key, entry) in config {
                self.add(&key, credential(entry));
            }
        }
        Ok(())
    }

    /// Adds a credential under a registry key (`https://host/v1/`, `host:5000/path`, ...).
    pub fn add(&mut self, location: &str, cred: Credential) {
        let Some((host, path)) = split_location(location) else {
            return;
        };
        let path = path
            .strip_prefix("/v2/")
            .or_else(|| path.strip_prefix("/v1/"))
            .map(|p| format!("/{p}"))
            .unwrap_or(path);
        let key = if path.is_empty() || path == "/" {
            host
        } else {
            format!("{host}{path}")
        };
        self.entries.push((key, cred));
        // Reverse order: a longer key (more specific) sorts before its prefix.
        self.entries.sort_by(|a, b| b.0.cmp(&a.0));
    }

    /// Credentials for `image`, best match first, with the key each came from; empty when
    /// none applies (pull anonymously).
    pub fn lookup(&self, image: &str) -> Vec<(String, Credential)> {
        let found: Vec<(String, Credential)> = self
            .entries
            .iter()
            .filter(|(key, _)| urls_match(key, image))
            .cloned()
            .collect();
        if !found.is_empty() || !is_default_registry(image) {
            return found;
        }
        self.entries
            .iter()
            .filter(|(key, _)| key == DEFAULT_REGISTRY_HOST)
            .cloned()
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// host[:port] and path of a schemeless or http(s) location.
fn split_location(location: &str) -> Option<(String, String)> {
    let rest = location
        .strip_prefix("https://")
        .or_else(|| location.strip_prefix("http://"))
        .unwrap_or(location);
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    (!host.is_empty()).then(|| (host.to_ascii_lowercase(), path.to_string()))
}

/// Whether the image lives on Docker Hub (no registry host in its name).
fn is_default_registry(image: &str) -> bool {
    let Some((first, _)) = image.split_once('/') else {
        return !image.is_empty();
    };
    if first.is_empty() {
        return false;
    }
    first == "docker.io" || first == DEFAULT_REGISTRY_HOST || !first.contains(['.', ':'])
}

/// Upstream's URLsMatchStr: `glob` (a key) against `target` (an image), both schemeless.
fn urls_match(glob: &str, target: &str) -> bool {
    let (Some((glob_host, glob_path)), Some((target_host, target_path))) =
        (split_location(glob), split_location(target))
    else {
        return false;
    };
    let split = |h: &str| -> (Vec<String>, String) {
        let (name, port) = match h.rsplit_once(':') {
            Some((n, p)) if !n.contains(']') || n.ends_with(']') => (n.to_string(), p.to_string()),
            _ => (h.to_string(), String::new()),
        };
        (name.split('.').map(str::to_string).collect(), port)
    };
    let (glob_parts, glob_port) = split(&glob_host);
    let (target_parts, target_port) = split(&target_host);
    glob_port == target_port
        && glob_parts.len() == target_parts.len()
        && target_path.starts_with(&glob_path)
        && glob_parts
            .iter()
            .zip(&target_parts)
            .all(|(g, t)| glob_label(g, t))
}

/// filepath.Match for one host label: `*` any run, `?` one character, the rest literal.
fn glob_label(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some(('?', rest)) => !t.is_empty() && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    go(&p, &t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(user: &str) -> Credential {
        Credential {
            username: user.into(),
            password: "pw".into(),
        }
    }

    fn users(k: &Keyring, image: &str) -> Vec<String> {
        k.lookup(image)
            .into_iter()
            .map(|(_, c)| c.username)
            .collect()
    }

    #[test]
    fn keys_match_images_like_upstreams_keyring() {
        let mut k = Keyring::default();
        k.add("https://registry.example.com/v1/", cred("host"));
        k.add("registry.example.com/team", cred("team"));
        k.add("*.gcr.io", cred("glob"));
        k.add("127.0.0.1:5000", cred("local"));
        k.add("https://index.docker.io/v1/", cred("hub"));
        let cases = [
            ("registry.example.com/team/app:1", vec!["team", "host"]),
            ("registry.example.com/other/app", vec!["host"]),
            ("registry.example.com:443/app", vec![]),
            ("eu.gcr.io/p/app", vec!["glob"]),
            ("gcr.io/p/app", vec![]),
            ("a.b.gcr.io/p/app", vec![]),
            ("127.0.0.1:5000/app:1", vec!["local"]),
            ("127.0.0.1:5001/app:1", vec![]),
            ("busybox", vec!["hub"]),
            ("library/busybox:1.36", vec!["hub"]),
            ("docker.io/library/busybox", vec!["hub"]),
            ("quay.io/app", vec![]),
            ("localhost/app", vec!["hub"]),
        ];
        for (image, want) in cases {
            assert_eq!(users(&k, image), want, "{image}");
        }
    }

    #[test]
    fn secrets_of_both_types_parse_with_auth_or_user_and_password() {
        let mut k = Keyring::default();
        let mut json = BTreeMap::new();
        json.insert(
            DOCKER_CONFIG_JSON_KEY.to_string(),
            br#"{"auths":{"r1.example.com":{"auth":"dXNlcjE6cGFzczE="}}}"#.to_vec(),
        );
        k.add_secret_data(&json).expect("dockerconfigjson");
        let mut cfg = BTreeMap::new();
        cfg.insert(
            DOCKER_CONFIG_KEY.to_string(),
            br#"{"https://r2.example.com":{"username":"user2","password":"pass2","email":"x@y"}}"#
                .to_vec(),
        );
        k.add_secret_data(&cfg).expect("dockercfg");
        assert_eq!(
            k.lookup("r1.example.com/a"),
            vec![(
                "r1.example.com".to_string(),
                Credential {
                    username: "user1".into(),
                    password: "pass1".into()
                }
            )]
        );
        assert_eq!(users(&k, "r2.example.com/b:1"), vec!["user2"]);
        let mut bad = BTreeMap::new();
        bad.insert(DOCKER_CONFIG_JSON_KEY.to_string(), b"{nope".to_vec());
        assert!(k.add_secret_data(&bad).is_err());
    }

    #[test]
    fn globs_follow_filepath_match() {
        assert!(glob_label("*", "eu"));
        assert!(glob_label("e?", "eu"));
        assert!(glob_label("*-docker", "us-docker"));
        assert!(!glob_label("e?", "eur"));
        assert!(!glob_label("eu", "us"));
    }
}
