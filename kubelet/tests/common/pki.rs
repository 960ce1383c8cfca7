//! A throwaway CA for the tests that need their own certificates (the kubelet's client CA, a
//! kubelet serving pair, a node identity), with rcgen.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A self-signed CA and what it issues.
pub struct TestCa {
    /// The CA certificate, PEM.
    pub pem: String,
    /// The CA certificate, DER (for a client's root store).
    #[allow(dead_code)]
    pub der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(cn: &str) -> Self {
        let key = KeyPair::generate().expect("key");
        let mut ca = CertificateParams::new(Vec::new()).expect("params");
        ca.distinguished_name.push(DnType::CommonName, cn);
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = ca.self_signed(&key).expect("ca");
        TestCa {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            issuer: Issuer::new(ca, key),
        }
    }

    /// (certificate PEM, key PEM) for `cn` in groups `orgs`: a serving certificate for `sans`,
    /// or a client certificate when there are none.
    pub fn issue(&self, cn: &str, orgs: &[&str], sans: &[&str]) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let server = !sans.is_empty();
        let mut params = CertificateParams::new(sans).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        for org in orgs {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *org);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }

    /// Writes the CA certificate to `path`.
    #[allow(dead_code)]
    pub fn write_ca(&self, path: &Path) -> PathBuf {
        fs::write(path, &self.pem).expect("write ca");
        path.to_path_buf()
    }

    /// Like [`issue`](Self::issue), written to `<dir>/<name>.crt` and `<dir>/<name>.key`.
    #[allow(dead_code)]
    pub fn write(
        &self,
        dir: &Path,
        name: &str,
        cn: &str,
        orgs: &[&str],
        sans: &[&str],
    ) -> (PathBuf, PathBuf) {
        let (cert, key) = self.issue(cn, orgs, sans);
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        fs::write(&c, cert).expect("write cert");
        fs::write(&k, key).expect("write key");
        (c, k)
    }
}
