//! kube-store's command line: etcd's flag names and defaults, validated into a server Config.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::server::{AutoCompaction, Config, Error, TlsFiles, Url};

/// kube-store: a Raft-replicated MVCC key-value store speaking the etcd v3 API.
#[derive(Debug, Clone, Parser)]
#[command(name = "kube-store", version, about)]
pub struct Options {
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Path to the data directory (default: ${name}.etcd).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// List of URLs to listen on for client traffic.
    #[arg(long, default_value = "http://localhost:2379")]
    pub listen_client_urls: String,
    /// List of this member's client URLs to advertise to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2379")]
    pub advertise_client_urls: String,
    /// List of URLs to listen on for peer traffic.
    #[arg(long, default_value = "http://localhost:2380")]
    pub listen_peer_urls: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Initial cluster configuration for bootstrapping (name=peerURL,...).
    #[arg(long, default_value = "default=http://localhost:2380")]
    pub initial_cluster: String,
    /// Initial cluster state ('new' or 'existing').
    #[arg(long, default_value = "new")]
    pub initial_cluster_state: String,
    /// Initial cluster token for the etcd cluster during bootstrap.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// List of URLs to listen on for the metrics and health endpoints.
    #[arg(long, default_value = "http://localhost:2381")]
    pub listen_metrics_urls: String,
    /// Path to the client server TLS cert file.
    #[arg(long)]
    pub cert_file: Option<PathBuf>,
    /// Path to the client server TLS key file.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Path to the client server TLS trusted CA cert file.
    #[arg(long)]
    pub trusted_ca_file: Option<PathBuf>,
    /// Enable client cert authentication.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub client_cert_auth: bool,
    /// Path to the peer server TLS cert file.
    #[arg(long)]
    pub peer_cert_file: Option<PathBuf>,
    /// Path to the peer server TLS key file.
    #[arg(long)]
    pub peer_key_file: Option<PathBuf>,
    /// Path to the peer server TLS trusted CA file.
    #[arg(long)]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Enable peer client cert authentication.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub peer_client_cert_auth: bool,
    /// Raise alarms when backend size exceeds the given quota (0 defaults to 2 GiB).
    #[arg(long, default_value_t = 0)]
    pub quota_backend_bytes: u64,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, default_value_t = 1536 * 1024)]
    pub max_request_bytes: usize,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long, default_value_t = 128)]
    pub max_txn_ops: usize,
    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_count: u64,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, default_value_t = 1000)]
    pub election_timeout: u64,
    /// Interpret 'auto-compaction-retention' as 'periodic' (hours or a duration) or 'revision'.
    #[arg(long, default_value = "periodic")]
    pub auto_compaction_mode: String,
    /// Auto compaction retention ('0' disables; periodic: hours or e.g. '30m'; revision: count).
    #[arg(long, default_value = "0")]
    pub auto_compaction_retention: String,
    /// Duration of periodic watch progress notifications.
    #[arg(
        long = "experimental-watch-progress-notify-interval",
        default_value = "10m"
    )]
    pub watch_progress_notify_interval: String,
    /// Log level (error, warn, info, debug).
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

fn urls(flag: &str, s: &str) -> Result<Vec<Url>, Error> {
    let v: Vec<Url> = list(s)
        .iter()
        .map(|u| Url::parse(u))
        .collect::<Result<_, _>>()?;
    if v.is_empty() {
        return Err(Error::Config(format!("--{flag} is empty")));
    }
    Ok(v)
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

/// Parses Go-style durations as etcd does: "10m", "1h", "30s", "500ms", or a bare number of `unit`.
pub fn parse_duration(s: &str, unit: Duration) -> Result<Duration, Error> {
    let bad = || Error::Config(format!("invalid duration {s:?}"));
    if let Ok(n) = s.parse::<f64>() {
        if n < 0.0 || !n.is_finite() {
            return Err(bad());
        }
        return Ok(unit.mul_f64(n));
    }
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, Duration::from_millis(1))
    } else if let Some(n) = s.strip_suffix('s') {
        (n, Duration::from_secs(1))
    } else if let Some(n) = s.strip_suffix('m') {
        (n, Duration::from_secs(60))
    } else if let Some(n) = s.strip_suffix('h') {
        (n, Duration::from_secs(3600))
    } else {
        return Err(bad());
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    if n < 0.0 || !n.is_finite() {
        return Err(bad());
    }
    Ok(mult.mul_f64(n))
}

fn tls(
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    ca: &Option<PathBuf>,
    auth: bool,
    side: &str,
) -> Result<Option<TlsFiles>, Error> {
    match (cert, key) {
        (Some(c), Some(k)) => Ok(Some(TlsFiles {
            cert_file: c.clone(),
            key_file: k.clone(),
            trusted_ca_file: ca.clone(),
            client_cert_auth: auth,
        })),
        (None, None) if !auth => Ok(None),
        _ => Err(Error::Config(format!(
            "{side} TLS needs both a cert file and a key file"
        ))),
    }
}

impl Options {
    /// Validates the flags into a member configuration.
    pub fn into_config(self) -> Result<Config, Error> {
        let state_new = match self.initial_cluster_state.as_str() {
            "new" => true,
            "existing" => false,
            other => {
                return Err(Error::Config(format!(
                    "--initial-cluster-state must be 'new' or 'existing', not {other:?}"
                )))
            }
        };
        let mut initial_cluster: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for part in list(&self.initial_cluster) {
            let (name, url) = part.split_once('=').ok_or_else(|| {
                Error::Config(format!("--initial-cluster entry {part:?} is not name=url"))
            })?;
            Url::parse(url)?;
            initial_cluster
                .entry(name.to_string())
                .or_default()
                .push(url.to_string());
        }
        let peer_urls = list(&self.initial_advertise_peer_urls);
        for u in &peer_urls {
            Url::parse(u)?;
        }
        let retention = self.auto_compaction_retention.trim();
        let auto_compaction = match self.auto_compaction_mode.as_str() {
            _ if retention == "0" || retention.is_empty() => None,
            "periodic" => Some(AutoCompaction::Periodic(parse_duration(
                retention,
                Duration::from_secs(3600),
            )?)),
            "revision" => Some(AutoCompaction::Revision(retention.parse().map_err(
                |_| Error::Config(format!("invalid revision retention {retention:?}")),
            )?)),
            other => {
                return Err(Error::Config(format!(
                    "--auto-compaction-mode must be 'periodic' or 'revision', not {other:?}"
                )))
            }
        };
        if self.heartbeat_interval == 0 || self.election_timeout < 5 * self.heartbeat_interval {
            return Err(Error::Config(
                "--election-timeout must be at least 5 times --heartbeat-interval".into(),
            ));
        }
        let metrics = if self.listen_metrics_urls.trim().is_empty() {
            vec![]
        } else {
            urls("listen-metrics-urls", &self.listen_metrics_urls)?
        };
        Ok(Config {
            data_dir: self
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", self.name))),
            name: self.name,
            listen_client_urls: urls("listen-client-urls", &self.listen_client_urls)?,
            advertise_client_urls: list(&self.advertise_client_urls),
            listen_peer_urls: urls("listen-peer-urls", &self.listen_peer_urls)?,
            initial_advertise_peer_urls: peer_urls,
            initial_cluster,
            initial_cluster_new: state_new,
            initial_cluster_token: self.initial_cluster_token,
            listen_metrics_urls: metrics,
            client_tls: tls(
                &self.cert_file,
                &self.key_file,
                &self.trusted_ca_file,
                self.client_cert_auth,
                "client",
            )?,
            peer_tls: tls(
                &self.peer_cert_file,
                &self.peer_key_file,
                &self.peer_trusted_ca_file,
                self.peer_client_cert_auth,
                "peer",
            )?,
            quota_backend_bytes: if self.quota_backend_bytes == 0 {
                2 * 1024 * 1024 * 1024
            } else {
                self.quota_backend_bytes
            },
            max_request_bytes: self.max_request_bytes,
            max_txn_ops: self.max_txn_ops,
            snapshot_count: self.snapshot_count.max(1),
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval),
            election_timeout: Duration::from_millis(self.election_timeout),
            auto_compaction,
            watch_progress_notify_interval: parse_duration(
                &self.watch_progress_notify_interval,
                Duration::from_secs(1),
            )?
            .max(Duration::from_millis(100)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_etcd() {
        let c = Options::parse_from(["kube-store"]).into_config().unwrap();
        assert_eq!(c.data_dir, PathBuf::from("default.etcd"));
        assert_eq!(c.listen_client_urls[0].port, 2379);
        assert_eq!(
            c.initial_cluster["default"],
            vec!["http://localhost:2380".to_string()]
        );
        assert_eq!(c.max_request_bytes, 1536 * 1024);
        assert_eq!(c.max_txn_ops, 128);
        assert!(c.initial_cluster_new);
        assert_eq!(c.auto_compaction, None);
    }

    #[test]
    fn localhost_binds_ipv4_loopback() {
        let u = Url::parse("http://localhost:2379").unwrap();
        assert_eq!(u.socket_addr().unwrap(), "127.0.0.1:2379".parse().unwrap());
    }

    #[test]
    fn durations_parse_like_go() {
        let h = Duration::from_secs(3600);
        assert_eq!(parse_duration("1", h).unwrap(), h);
        assert_eq!(parse_duration("30m", h).unwrap(), Duration::from_secs(1800));
        assert_eq!(
            parse_duration("500ms", h).unwrap(),
            Duration::from_millis(500)
        );
        assert!(parse_duration("-1", h).is_err());
        assert!(parse_duration("abc", h).is_err());
    }

    #[test]
    fn bad_flags_are_rejected_with_a_reason() {
        let cases: &[(&str, &[&str])] = &[
            ("bad cluster state", &["--initial-cluster-state=weird"]),
            ("bad url", &["--listen-client-urls=localhost:2379"]),
            ("cert without key", &["--cert-file=/x"]),
            ("election too short", &["--election-timeout=100"]),
            ("bad initial cluster", &["--initial-cluster=nourl"]),
        ];
        for (name, args) in cases {
            let argv: Vec<&str> = std::iter::once("kube-store")
                .chain(args.iter().copied())
                .collect();
            assert!(Options::parse_from(argv).into_config().is_err(), "{name}");
        }
    }
}
