//! `kubeadm certs check-expiration` and `kubeadm certs renew`: the certificates kubeadm
//! manages (PKI files and the ones embedded in kubeconfigs), their expiry and reissue.

use std::path::PathBuf;

use time::OffsetDateTime;

use crate::config::Config;
use crate::kubeconfig;
use crate::pki::{self, CaSpec};
use crate::Error;

/// Where a renewable certificate lives.
#[derive(Debug, Clone)]
pub enum Location {
    Files { cert: PathBuf, key: PathBuf },
    Kubeconfig(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Renewable {
    /// The name `kubeadm certs renew <name>` takes.
    pub name: String,
    pub long_name: &'static str,
    pub ca: CaSpec,
    pub location: Location,
}

/// Every certificate kubeadm can renew, sorted by name as upstream lists them.
pub fn renewables(cfg: &Config) -> Result<Vec<Renewable>, Error> {
    let mut v = vec![];
    for leaf in pki::leaf_specs(cfg)? {
        v.push(Renewable {
            name: leaf.name.to_string(),
            long_name: leaf.long_name,
            ca: leaf.ca,
            location: Location::Files {
                cert: pki::cert_path(&cfg.cert_dir, leaf.base),
                key: pki::key_path(&cfg.cert_dir, leaf.base),
            },
        });
    }
    for spec in kubeconfig::ALL {
        if let Some(long_name) = spec.long_name {
            v.push(Renewable {
                name: spec.file.to_string(),
                long_name,
                ca: pki::CA,
                location: Location::Kubeconfig(kubeconfig::path(cfg, spec)),
            });
        }
    }
    v.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(v)
}

/// Upstream's ShortHumanDuration: the largest unit that fits, truncated.
pub fn short_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    let (m, h, d) = (60, 3600, 86400);
    if secs < m {
        format!("{secs}s")
    } else if secs < h {
        format!("{}m", secs / m)
    } else if secs < 48 * h {
        format!("{}h", secs / h)
    } else if secs < 365 * d {
        format!("{}d", secs / d)
    } else {
        format!("{}y", secs / (365 * d))
    }
}

/// Upstream's "Jan 02, 2006 15:04 MST" layout, in UTC.
fn format_expiry(t: OffsetDateTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = t.to_offset(time::UtcOffset::UTC);
    let month = MONTHS[usize::from(u8::from(t.month())) - 1];
    format!(
        "{month} {:02}, {} {:02}:{:02} UTC",
        t.day(),
        t.year(),
        t.hour(),
        t.minute()
    )
}

/// Table rows: name, expires, residual time, CA, externally managed.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, String::len))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn cert_expiry(r: &Renewable) -> Result<Option<OffsetDateTime>, Error> {
    let pem = match &r.location {
        Location::Files { cert, .. } => {
            if !cert.exists() {
                return Ok(None);
            }
            std::fs::read_to_string(cert)
                .map_err(|e| Error::Io(format!("reading {:?}", cert), e))?
        }
        Location::Kubeconfig(file) => {
            if !file.exists() {
                return Ok(None);
            }
            kubeconfig::client_cert_pem(&kubeconfig::load(file)?)?
        }
    };
    let der = pki::pem_to_der(&pem, &r.name)?;
    Ok(Some(
        pki::describe(&pki::parse_cert(&der, &r.name)?).not_after,
    ))
}

fn externally_managed(cfg: &Config, ca: CaSpec) -> &'static str {
    if pki::key_path(&cfg.cert_dir, ca.base).exists() {
        "no"
    } else {
        "yes"
    }
}

/// The output of `kubeadm certs check-expiration`.
pub fn check_expiration(cfg: &Config) -> Result<String, Error> {
    let now = OffsetDateTime::now_utc();
    let mut rows = vec![vec![
        "CERTIFICATE".to_string(),
        "EXPIRES".into(),
        "RESIDUAL TIME".into(),
        "CERTIFICATE AUTHORITY".into(),
        "EXTERNALLY MANAGED".into(),
    ]];
    for r in renewables(cfg)? {
        match cert_expiry(&r)? {
            Some(t) => rows.push(vec![
                r.name.clone(),
                format_expiry(t),
                short_duration((t - now).whole_seconds()),
                r.ca.name.to_string(),
                externally_managed(cfg, r.ca).into(),
            ]),
            None => rows.push(vec![format!("!MISSING! {}", r.name)]),
        }
    }
    let mut ca_rows = vec![vec![
        "CERTIFICATE AUTHORITY".to_string(),
        "EXPIRES".into(),
        "RESIDUAL TIME".into(),
        "EXTERNALLY MANAGED".into(),
    ]];
    for ca in pki::CAS {
        let crt = pki::cert_path(&cfg.cert_dir, ca.base);
        if !crt.exists() {
            ca_rows.push(vec![format!("!MISSING! {}", ca.name)]);
            continue;
        }
        let pem = std::fs::read_to_string(&crt)
            .map_err(|e| Error::Io(format!("reading {:?}", crt), e))?;
        let der = pki::pem_to_der(&pem, ca.name)?;
        let t = pki::describe(&pki::parse_cert(&der, ca.name)?).not_after;
        ca_rows.push(vec![
            ca.name.to_string(),
            format_expiry(t),
            short_duration((t - now).whole_seconds()),
            externally_managed(cfg, ca).into(),
        ]);
    }
    Ok(format!("{}\n{}", table(&rows), table(&ca_rows)))
}

/// `kubeadm certs renew <name>` (or `all`).
pub fn renew(cfg: &Config, which: &str) -> Result<(), Error> {
    let all = renewables(cfg)?;
    let chosen: Vec<&Renewable> = if which == "all" {
        all.iter().collect()
    } else {
        let one: Vec<&Renewable> = all.iter().filter(|r| r.name == which).collect();
        if one.is_empty() {
            let names: Vec<&str> = all.iter().map(|r| r.name.as_str()).collect();
            return Err(Error::Config(format!(
                "unknown certificate {which:?}, valid names are: all, {}",
                names.join(", ")
            )));
        }
        one
    };
    for r in chosen {
        let exists = match &r.location {
            Location::Files { cert, .. } => cert.exists(),
            Location::Kubeconfig(f) => f.exists(),
        };
        if !exists {
            println!("MISSING! {}", r.long_name);
            continue;
        }
        let ca = pki::load_ca(&cfg.cert_dir, r.ca)?.ok_or_else(|| {
            Error::Pki(format!(
                "certificate authority {} is missing: can't renew {}",
                r.ca.base, r.name
            ))
        })?;
        match &r.location {
            Location::Files { cert, key } => pki::renew_file(&ca, cert, key, cfg.key_algorithm)?,
            Location::Kubeconfig(file) => kubeconfig::renew(file, &ca, cfg.key_algorithm)?,
        }
        println!("{} renewed", r.long_name);
    }
    if which == "all" {
        println!(
            "\nDone renewing certificates. You must restart the kube-apiserver, kube-controller-manager, kube-scheduler and etcd, so that they can use the new certificates."
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_durations_match_upstream_units() {
        assert_eq!(short_duration(-5), "<invalid>");
        assert_eq!(short_duration(59), "59s");
        assert_eq!(short_duration(3599), "59m");
        assert_eq!(short_duration(47 * 3600), "47h");
        assert_eq!(short_duration(364 * 86400 + 5), "364d");
        assert_eq!(short_duration(3650 * 86400 - 600), "9y");
    }

    #[test]
    fn table_pads_columns_with_three_spaces() {
        let t = table(&[
            vec!["A".into(), "BB".into(), "C".into()],
            vec!["long".into(), "x".into(), "y".into()],
        ]);
        assert_eq!(t, "A      BB   C\nlong   x    y\n");
    }
}
