//! Test certificates, made fresh by each test: a CA, a server certificate
//! for 127.0.0.1 (and a few cloud-like names) signed by it, a client certificate signed by it, and a
//! second CA that signed nothing herald meets.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub struct Pki {
    pub ca: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
    /// A CA unrelated to the server's certificate.
    pub other_ca: String,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key")).expect("ca")
}

fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(names).expect("leaf params");
    params
        .distinguished_name
        .push(DnType::CommonName, "herald test");
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, issuer).expect("leaf");
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    pub fn new() -> Self {
        let ca = ca("herald test CA");
        let (server_cert, server_key) = leaf(
            &ca,
            // Cloud-like names too, for tests that reach a lookalike
            // through a proxy forwarding every host to it.
            &[
                "127.0.0.1",
                "localhost",
                "*.servicebus.windows.net",
                "login.example-cloud.test",
                "sts.googleapis.com",
                "iamcredentials.googleapis.com",
                "pubsub.googleapis.com",
            ],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = leaf(&ca, &["herald"], ExtendedKeyUsagePurpose::ClientAuth);
        Self {
            ca: ca.pem(),
            server_cert,
            server_key,
            client_cert,
            client_key,
            other_ca: self::ca("another CA").pem(),
        }
    }

    /// A server config presenting the server certificate; with
    /// `require_client_cert`, clients must present one signed by the CA.
    pub fn server_config(&self, require_client_cert: bool) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(self.ca.as_bytes()) {
                roots.add(cert.expect("ca pem")).expect("add ca");
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.server_cert.as_bytes())
                .map(|c| c.expect("server cert pem"))
                .collect();
        let key = PrivateKeyDer::from_pem_slice(self.server_key.as_bytes()).expect("server key");
        let mut config = builder.with_single_cert(chain, key).expect("server config");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}
