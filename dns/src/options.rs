//! Command-line flags and their validation into a [`Config`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// The port upstream nameservers listen on when a flag or resolv.conf gives no port.
const DNS_PORT: u16 = 53;

/// kube-dns flags. The names follow CoreDNS's kubernetes/health/ready/prometheus/forward
/// plugins where those have a setting, spelled as Kubernetes component flags.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "kube-dns",
    about = "Serves cluster DNS for Services and pods and forwards other names",
    version
)]
pub struct Options {
    /// Path to a kubeconfig with the apiserver location and credentials (unset: in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The cluster's DNS domain (the zone served from the apiserver's Services and pods).
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Address the DNS server listens on (UDP and TCP).
    #[arg(long, default_value = "0.0.0.0")]
    pub dns_bind_address: IpAddr,
    /// Port the DNS server listens on (UDP and TCP).
    #[arg(long, default_value_t = 53)]
    pub dns_port: u16,
    /// resolv.conf whose nameservers receive every query outside the cluster zone; ignored
    /// when --upstream-nameserver is given.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// Upstream nameserver as IP or IP:port (repeatable); replaces --resolv-conf.
    #[arg(long)]
    pub upstream_nameserver: Vec<String>,
    /// Port of GET /health (CoreDNS's health plugin); 0 disables.
    #[arg(long, default_value_t = 8080)]
    pub health_port: u16,
    /// Port of GET /ready, 200 once Services, EndpointSlices and Namespaces are listed; 0
    /// disables.
    #[arg(long, default_value_t = 8181)]
    pub ready_port: u16,
    /// Address of /metrics (CoreDNS's metric names); empty disables.
    #[arg(long, default_value = "0.0.0.0:9153")]
    pub metrics_bind_address: String,
    /// TTL in seconds of cluster answers (kubeadm's Corefile sets `ttl 30`).
    #[arg(long, default_value_t = 30)]
    pub ttl: u32,
    /// How long one forwarded query waits for an upstream before trying the next.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,
    /// Log level (an env-filter directive; RUST_LOG wins when set).
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    component_base::duration::parse_go_duration(s)
}

/// A flag value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid value {value:?} for {flag}: {reason}")]
    Invalid {
        flag: &'static str,
        value: String,
        reason: String,
    },
}

/// Validated settings of one kube-dns.
#[derive(Clone, Debug)]
pub struct Config {
    pub kubeconfig: Option<PathBuf>,
    /// The cluster zone, lowercase, without a trailing dot.
    pub cluster_domain: String,
    pub dns_addr: SocketAddr,
    /// Explicit upstreams (`None`: read --resolv-conf at start).
    pub upstreams: Option<Vec<SocketAddr>>,
    pub resolv_conf: PathBuf,
    pub health_addr: Option<SocketAddr>,
    pub ready_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    pub ttl: u32,
    pub upstream_timeout: Duration,
}

impl Config {
    pub fn from_options(o: &Options) -> Result<Self, Error> {
        let invalid = |flag, value: &str, reason: &str| Error::Invalid {
            flag,
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let domain = o.cluster_domain.trim_end_matches('.').to_ascii_lowercase();
        if domain.is_empty()
            || domain
                .split('.')
                .any(|l| l.is_empty() || l.len() > 63 || !l.bytes().all(is_label_byte))
        {
            return Err(invalid(
                "--cluster-domain",
                &o.cluster_domain,
                "must be a DNS domain such as cluster.local",
            ));
        }
        let upstreams = if o.upstream_nameserver.is_empty() {
            None
        } else {
            let parsed: Result<Vec<_>, _> = o
                .upstream_nameserver
                .iter()
                .map(|s| {
                    parse_nameserver(s).ok_or_else(|| {
                        invalid("--upstream-nameserver", s, "must be an IP or IP:port")
                    })
                })
                .collect();
            Some(parsed?)
        };
        let metrics_addr = match o.metrics_bind_address.as_str() {
            "" => None,
            s => Some(s.parse().map_err(|_| {
                invalid(
                    "--metrics-bind-address",
                    s,
                    "must be an IP:port such as 0.0.0.0:9153",
                )
            })?),
        };
        let side = |port: u16| (port != 0).then(|| SocketAddr::new(o.dns_bind_address, port));
        Ok(Self {
            kubeconfig: o.kubeconfig.clone(),
            cluster_domain: domain,
            dns_addr: SocketAddr::new(o.dns_bind_address, o.dns_port),
            upstreams,
            resolv_conf: o.resolv_conf.clone(),
            health_addr: side(o.health_port),
            ready_addr: side(o.ready_port),
            metrics_addr,
            ttl: o.ttl,
            upstream_timeout: o.upstream_timeout,
        })
    }
}

impl Options {
    pub fn log_level(&self) -> &str {
        &self.log_level
    }
}

fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// `IP`, `IP:port` or `[IPv6]:port`.
pub fn parse_nameserver(s: &str) -> Option<SocketAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, DNS_PORT));
    }
    s.parse().ok()
}

/// The `nameserver` lines of a resolv.conf, on port 53, leaving out `own` (the address this
/// server listens on) so that a node whose resolv.conf points at the cluster DNS cannot loop.
pub fn parse_resolv_conf(text: &str, own: SocketAddr) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
                .and_then(|ip| ip.split('%').next())
                .and_then(|ip| ip.parse::<IpAddr>().ok())
        })
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
        .filter(|addr| !is_self(*addr, own))
        .collect()
}

fn is_self(upstream: SocketAddr, own: SocketAddr) -> bool {
    if upstream.port() != own.port() {
        return false;
    }
    upstream.ip() == own.ip() || (own.ip().is_unspecified() && upstream.ip().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(args: &[&str]) -> Options {
        let mut argv = vec!["kube-dns"];
        argv.extend_from_slice(args);
        Options::try_parse_from(argv).expect("flags parse")
    }

    #[test]
    fn defaults_match_the_kubeadm_addon() {
        let c = Config::from_options(&options(&[])).expect("valid");
        assert_eq!(c.cluster_domain, "cluster.local");
        assert_eq!(c.dns_addr, "0.0.0.0:53".parse().expect("addr"));
        assert_eq!(c.health_addr, Some("0.0.0.0:8080".parse().expect("addr")));
        assert_eq!(c.ready_addr, Some("0.0.0.0:8181".parse().expect("addr")));
        assert_eq!(c.metrics_addr, Some("0.0.0.0:9153".parse().expect("addr")));
        assert_eq!(c.ttl, 30);
        assert_eq!(c.upstreams, None);
        assert_eq!(c.resolv_conf, PathBuf::from("/etc/resolv.conf"));
    }

    #[test]
    fn cluster_domain_is_normalised_and_checked() {
        let c =
            Config::from_options(&options(&["--cluster-domain=Cluster.Local."])).expect("valid");
        assert_eq!(c.cluster_domain, "cluster.local");
        for bad in ["", ".", "a..b", "bad domain"] {
            let flag = format!("--cluster-domain={bad}");
            assert!(Config::from_options(&options(&[&flag])).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn upstream_nameservers_take_ip_or_ip_and_port() {
        let c = Config::from_options(&options(&[
            "--upstream-nameserver=10.0.0.1",
            "--upstream-nameserver=127.0.0.1:5353",
            "--upstream-nameserver=[::1]:54",
        ]))
        .expect("valid");
        let want: Vec<SocketAddr> = ["10.0.0.1:53", "127.0.0.1:5353", "[::1]:54"]
            .iter()
            .map(|s| s.parse().expect("addr"))
            .collect();
        assert_eq!(c.upstreams, Some(want));
        let err = Config::from_options(&options(&["--upstream-nameserver=dns.example"]))
            .expect_err("a name is not an address");
        assert!(err.to_string().contains("--upstream-nameserver"), "{err}");
    }

    #[test]
    fn resolv_conf_nameservers_skip_comments_options_and_this_server() {
        let text = "# generated\nsearch svc.cluster.local\nnameserver 10.0.0.2 # primary\n\
                    nameserver fe80::1%eth0\noptions ndots:5\nnameserver 127.0.0.53\n\
                    ;nameserver 9.9.9.9\nnameserver not-an-ip\n";
        let own: SocketAddr = "0.0.0.0:53".parse().expect("addr");
        let got = parse_resolv_conf(text, own);
        let want: Vec<SocketAddr> = ["10.0.0.2:53", "[fe80::1]:53"]
            .iter()
            .map(|s| s.parse().expect("addr"))
            .collect();
        assert_eq!(got, want, "loopback is this server when it listens on :53");
        let elsewhere: SocketAddr = "0.0.0.0:1053".parse().expect("addr");
        assert_eq!(parse_resolv_conf(text, elsewhere).len(), 3);
    }
}
