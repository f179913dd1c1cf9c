//! Secret masking: webhook URLs and tokens never reach logs, metrics,
//! Events, status or CLI output. Every secret value lives in a
//! [`SecretString`], whose `Debug` and `Display` print the masked form.

use std::fmt;

/// A secret value. Read it with [`SecretString::expose`] only where it goes on the wire.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A URL with everything but scheme and host masked:
/// `https://hooks.slack.com/services/T0/B0/XX` → `https://hooks.slack.com/***`.
/// Paths and queries of webhook URLs are the credential; user info too.
pub fn url(address: &str) -> String {
    match url::Url::parse(address) {
        Ok(parsed) => match parsed.host_str() {
            Some(host) => {
                let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
                format!("{}://{host}{port}/***", parsed.scheme())
            }
            None => "***".to_owned(),
        },
        Err(_) => "***".to_owned(),
    }
}

/// `text` with every occurrence of each secret replaced by `***`: the last
/// line of defence for error messages that might quote a URL or token.
pub fn redact(text: &str, secrets: &[&SecretString]) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        let value = secret.expose();
        if value.len() >= 4 {
            out = out.replace(value, "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_paths_queries_and_credentials() {
        assert_eq!(
            url("https://hooks.slack.com/services/T00/B00/XXXX"),
            "https://hooks.slack.com/***"
        );
        assert_eq!(
            url("http://user:pw@127.0.0.1:8080/hook?k=v"),
            "http://127.0.0.1:8080/***"
        );
        assert_eq!(url("not a url"), "***");
    }

    #[test]
    fn secret_string_never_prints() {
        let secret = SecretString::new("xoxb-123");
        assert_eq!(format!("{secret} {secret:?}"), "*** ***");
        assert_eq!(
            redact("posting to xoxb-123 failed", &[&secret]),
            "posting to *** failed"
        );
    }
}
