//! RSA private keys in PEM (a GitHub App's key, a Google service-account
//! key), read with `rustls-pki-types`' PEM reader: any text around the
//! block, CRLF or LF line endings, PKCS#1 (`RSA PRIVATE KEY`) or PKCS#8
//! (`PRIVATE KEY`), as Go's `crypto/x509` parsers Flux's SDKs use take
//! them. Errors say what is wrong and never quote the key.

use ring::rsa::KeyPair;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::{self, PemObject};

/// The RSA key pair of the first private key in `text`.
pub fn rsa_key(text: &str) -> Result<KeyPair, String> {
    let key = PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|e| match e {
        pem::Error::NoItemsFound => {
            "is not a PEM private key (no 'RSA PRIVATE KEY' or 'PRIVATE KEY' block)".to_owned()
        }
        _ => "is not valid PEM (a block without its END line, or bad base64)".to_owned(),
    })?;
    let pair = match &key {
        PrivateKeyDer::Pkcs1(der) => KeyPair::from_der(der.secret_pkcs1_der()),
        PrivateKeyDer::Pkcs8(der) => KeyPair::from_pkcs8(der.secret_pkcs8_der()),
        PrivateKeyDer::Sec1(_) => {
            return Err("is a PEM 'EC PRIVATE KEY', not an RSA private key".to_owned());
        }
        _ => return Err("is not an RSA private key".to_owned()),
    };
    pair.map_err(|e| format!("is not a usable RSA private key ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2048-bit RSA key, made once for these tests.
    fn pkcs8() -> String {
        // ring cannot make RSA keys: openssl makes one.
        let output = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .output()
            .expect("openssl (the tests need it)");
        assert!(output.status.success(), "openssl genpkey failed");
        String::from_utf8(output.stdout).expect("PEM")
    }

    #[test]
    fn keys_are_read_with_text_around_and_either_line_ending() {
        let key = pkcs8();
        assert!(rsa_key(&key).is_ok());
        let crlf = key.replace('\n', "\r\n");
        assert!(rsa_key(&crlf).is_ok(), "CRLF line endings");
        let with_text = format!("Bag Attributes\n    friendlyName: app\n{key}trailing words\n");
        assert!(
            rsa_key(&with_text).is_ok(),
            "text before and after the block"
        );
    }

    #[test]
    fn other_blocks_and_garbage_are_refused_without_quoting_them() {
        let body = "c2VjcmV0LWJvZHk="; // base64 of "secret-body"
        for (text, expected) in [
            (
                format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"),
                "not a PEM private key",
            ),
            (
                format!("-----BEGIN EC PRIVATE KEY-----\n{body}\n-----END EC PRIVATE KEY-----\n"),
                "EC PRIVATE KEY",
            ),
            (
                format!("-----BEGIN PRIVATE KEY-----\n{body}\n"),
                "not valid PEM",
            ),
            (
                format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"),
                "not a usable RSA private key",
            ),
            ("s3cret-value".to_owned(), "not a PEM private key"),
        ] {
            let error = rsa_key(&text).expect_err("refused");
            assert!(error.contains(expected), "{error}");
            assert!(
                !error.contains("s3cret") && !error.contains(body),
                "{error}"
            );
        }
    }
}
