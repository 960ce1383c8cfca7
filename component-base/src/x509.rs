//! The identity a client certificate names, as upstream's x509 request authenticator reads it.

use x509_parser::prelude::{FromDer, X509Certificate};

/// The user (subject CommonName) and groups (each Organization) of a DER client certificate
/// whose chain the TLS handshake already verified. `None` for an unparsable certificate, one
/// without a CommonName, or one outside its validity period: the period is checked on every
/// request, so a long-lived connection stops authenticating once its certificate expires.
/// With several CommonNames the last one wins, as in Go's `pkix.Name`.
pub fn client_identity(der: &[u8]) -> Option<(String, Vec<String>)> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    if !cert.validity().is_valid() {
        return None;
    }
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .filter_map(|a| a.as_str().ok())
        .last()?;
    if name.is_empty() {
        return None;
    }
    let groups = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok())
        .map(str::to_owned)
        .collect();
    Some((name.to_owned(), groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &str, orgs: &[&str], expired: bool) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if !cn.is_empty() {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        for org in orgs {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, *org);
        }
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("signs").der().to_vec()
    }

    #[test]
    fn names_the_user_and_groups_of_a_valid_certificate_only() {
        assert_eq!(
            client_identity(&cert("system:node:a", &["system:nodes"], false)),
            Some(("system:node:a".into(), vec!["system:nodes".into()]))
        );
        assert_eq!(client_identity(&cert("system:node:a", &[], true)), None);
        assert_eq!(client_identity(&cert("", &["x"], false)), None);
        assert_eq!(client_identity(b"not der"), None);
    }
}
