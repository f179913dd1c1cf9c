//! How a Provider's requests travel: a custom CA, a client certificate
//! (mTLS) and a proxy (`certSecretRef`, `spec.proxy`, `proxySecretRef`).
//!
//! Routing reads these from the Provider and its Secrets and checks them
//! (an unusable certificate or proxy makes the Provider `Ready=False`); the
//! dispatcher builds one HTTP client per distinct [`Transport`] and shares
//! it between every Provider with the same settings.

use std::time::Duration;

use crate::mask::SecretString;

/// Longest proxy URL Flux accepts.
const MAX_PROXY_URL: usize = 2048;

/// A Provider's transport settings. The default (no CA, no client
/// certificate, no proxy) is the dispatcher's shared client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Transport {
    /// PEM CA certificates, trusted instead of the built-in roots (as in
    /// Flux, where `ca.crt` replaces the system pool).
    pub ca: Option<String>,
    /// PEM client certificate chain and its private key.
    pub identity: Option<Identity>,
    /// The proxy URL, credentials included.
    pub proxy: Option<SecretString>,
}

/// A client certificate and key for mutual TLS.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    pub cert: String,
    pub key: SecretString,
}

impl Transport {
    pub fn is_default(&self) -> bool {
        self == &Self::default()
    }

    /// Values that must never be printed: the proxy URL (it may carry a
    /// password) and the private key.
    pub fn secrets(&self) -> Vec<&SecretString> {
        self.proxy
            .iter()
            .chain(self.identity.as_ref().map(|i| &i.key))
            .collect()
    }

    /// An HTTP client with these settings. The error names what is wrong
    /// without quoting a secret.
    pub fn client(&self) -> Result<reqwest::Client, String> {
        let mut builder = base_builder();
        if let Some(ca) = &self.ca {
            let certificates = reqwest::Certificate::from_pem_bundle(ca.as_bytes())
                .map_err(|_| "ca.crt is not a PEM certificate bundle".to_owned())?;
            if certificates.is_empty() {
                return Err("ca.crt holds no PEM certificate".into());
            }
            builder = builder.tls_built_in_root_certs(false);
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        if let Some(identity) = &self.identity {
            let pem = format!("{}\n{}\n", identity.cert, identity.key.expose());
            let identity = reqwest::Identity::from_pem(pem.as_bytes()).map_err(|_| {
                "tls.crt and tls.key are not a PEM certificate and private key".to_owned()
            })?;
            builder = builder.identity(identity);
        }
        if let Some(proxy) = &self.proxy {
            let proxy = reqwest::Proxy::all(proxy.expose())
                .map_err(|_| "the proxy address is not a usable proxy URL".to_owned())?;
            builder = builder.proxy(proxy);
        }
        builder.build().map_err(|e| {
            // Builder errors describe TLS material, never the proxy URL or key;
            // still, show only the innermost cause.
            let mut cause: &dyn std::error::Error = &e;
            while let Some(next) = cause.source() {
                cause = next;
            }
            format!("cannot use these TLS settings: {cause}")
        })
    }
}

/// The settings every delivery client shares.
/// Idle connections kept per host, per client.
const MAX_IDLE_PER_HOST: usize = 256;

pub fn base_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(90))
        // Thousands of destinations often share one host (every Slack
        // webhook is on hooks.slack.com): after a burst, keep enough idle
        // connections to reuse, not one per destination that was busy.
        .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
}

/// A proxy URL from an address and optional credentials, checked as Flux
/// checks `proxySecretRef` (http or https, a host, at most 2048
/// characters). socks5, which Flux also accepts, is refused: herald cannot
/// use it yet. The error never quotes the address.
pub fn proxy_url(
    address: &str,
    username: Option<&str>,
    password: Option<&str>,
) -> Result<SecretString, String> {
    if address.len() > MAX_PROXY_URL {
        return Err(format!("is longer than {MAX_PROXY_URL} characters"));
    }
    let mut url = url::Url::parse(address).map_err(|e| format!("is not a valid URL ({e})"))?;
    match url.scheme() {
        "http" | "https" => {}
        "socks5" => return Err("is a socks5 proxy, which herald does not support yet".into()),
        other => {
            return Err(format!(
                "must use one of the supported schemes (http, https), got '{other}'"
            ));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    if let Some(username) = username {
        url.set_username(username)
            .map_err(|()| "cannot carry a username".to_owned())?;
        url.set_password(password)
            .map_err(|()| "cannot carry a password".to_owned())?;
    }
    Ok(SecretString::new(url.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_are_checked_and_carry_credentials() {
        let url = proxy_url("http://proxy.example:3128", Some("me"), Some("p@ss")).expect("ok");
        assert_eq!(url.expose(), "http://me:p%40ss@proxy.example:3128/");
        assert!(proxy_url("socks5://proxy:1080", None, None).is_err());
        assert!(proxy_url("ftp://proxy", None, None).is_err());
        assert!(proxy_url("not a url", None, None).is_err());
        let long = format!("http://proxy/{}", "x".repeat(MAX_PROXY_URL));
        assert!(proxy_url(&long, None, None).is_err());
    }

    #[test]
    fn unusable_tls_material_is_an_error() {
        let transport = Transport {
            ca: Some("not a certificate".into()),
            ..Transport::default()
        };
        assert!(transport.client().is_err());
        assert!(Transport::default().client().is_ok());
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_an_error() {
        let cert_key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["herald".to_owned()]).expect("params");
        let cert = params.self_signed(&cert_key).expect("cert");
        let identity = |key: &rcgen::KeyPair| Transport {
            identity: Some(Identity {
                cert: cert.pem(),
                key: SecretString::new(key.serialize_pem()),
            }),
            ..Transport::default()
        };
        assert!(identity(&cert_key).client().is_ok());
        let other = rcgen::KeyPair::generate().expect("other key");
        assert!(identity(&other).client().is_err());
    }
}
