//! Bitbucket Cloud, as Flux v1.9.3 drives it through `ktrysmt/go-bitbucket`:
//! a build status keyed by the SHA-1 of the commit status id. The address
//! gives only `<workspace>/<repository>`: the API is
//! `https://api.bitbucket.org/2.0`, or `BITBUCKET_API_BASE_URL` when set
//! in herald's environment (go-bitbucket reads the same variable). The
//! token is `<username>:<app password>`, sent as Basic auth.

use std::sync::Arc;

use futures::future::BoxFuture;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::forge::{CommitStatuses, Forge, set_commit_status};
use super::{
    commit_status_id, invalid, json_request, name_and_description, progressing, repo_address,
    revision, show_write,
};
use crate::api::Reason;
use crate::api::Severity;
use crate::mask::SecretString;
use crate::notification::Notification;
use crate::providers::{
    Auth, Conversation, Invalid, Notifier, Request, Sender, Settings, ThreadAnchor, Verdict,
};
use crate::template::Rendered;

/// go-bitbucket's default API.
const DEFAULT_API: &str = "https://api.bitbucket.org/2.0";

pub struct Bitbucket {
    settings: Settings,
    api: String,
    /// The address's host, which Flux ignores: `check` warns when it is not
    /// Bitbucket Cloud's and the API is the default one.
    host: String,
    owner: String,
    repo: String,
    username: String,
    password: SecretString,
}

pub fn new(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    let token = settings
        .token
        .clone()
        .filter(|t| !t.expose().is_empty())
        .ok_or_else(|| {
            invalid(
                Reason::SecretKeyMissing,
                "bitbucket: the Secret of spec.secretRef has no 'token' (<username>:<app password>)",
            )
        })?;
    let (username, password) = match token.expose().split(':').collect::<Vec<_>>().as_slice() {
        [username, password] => ((*username).to_owned(), SecretString::new(*password)),
        _ => {
            return Err(invalid(
                Reason::InvalidToken,
                "bitbucket: invalid token format, expected to be <user>:<password>",
            ));
        }
    };
    let address = repo_address(&settings, "bitbucket")?;
    let (owner, repo) = address
        .owner_and_repo()
        .map_err(|e| invalid(Reason::InvalidAddress, format!("bitbucket: {e}")))?;
    let api = std::env::var("BITBUCKET_API_BASE_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_API.to_owned());
    Ok(Arc::new(Bitbucket {
        host: address.host.clone(),
        api: api.trim_end_matches('/').to_owned(),
        owner,
        repo,
        username,
        password,
        settings,
    }))
}

/// `bitbucket.CommitStatusOptions`.
#[derive(Serialize, Deserialize)]
pub struct CommitStatus {
    #[serde(default)]
    key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    url: String,
    #[serde(default)]
    state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    description: String,
}

fn state(severity: Severity) -> Result<&'static str, String> {
    match severity {
        Severity::Info => Ok("SUCCESSFUL"),
        Severity::Error => Ok("FAILED"),
        _ => Err("can't convert to bitbucket state".into()),
    }
}

/// The hex SHA-1 of a string (Flux's `sha1String`): the status key.
pub fn sha1_hex(s: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, s.as_bytes());
    crate::hex::encode(digest.as_ref())
}

impl Bitbucket {
    fn auth(&self) -> Auth {
        Auth::Basic {
            username: self.username.clone(),
            password: self.password.clone(),
        }
    }

    fn build_url(&self, sha: &str) -> String {
        format!(
            "{}/repositories/{}/{}/commit/{sha}/statuses/build",
            self.api, self.owner, self.repo
        )
    }

    fn status(&self, n: &Notification) -> Result<(String, CommitStatus), String> {
        let sha = revision(n)?;
        let state = state(n.event.severity)?;
        let (name, description) = name_and_description(n);
        let id = commit_status_id(&self.settings, n)?;
        Ok((
            sha,
            CommitStatus {
                key: sha1_hex(&id),
                url: "https://bitbucket.org".into(),
                state: state.into(),
                name,
                description,
            },
        ))
    }

    fn write(&self, n: &Notification) -> Result<Request, String> {
        let (sha, status) = self.status(n)?;
        json_request(
            Method::POST,
            self.build_url(&sha),
            Some(&status),
            self.auth(),
        )
    }

    async fn set_status(&self, n: &Notification, sender: &dyn Sender) -> Result<(), Verdict> {
        let (sha, status) = self.status(n).map_err(Verdict::Fail)?;
        set_commit_status(self, sender, &sha, &status).await
    }
}

impl Forge for Bitbucket {
    fn request<S: Serialize>(
        &self,
        method: Method,
        url: String,
        body: Option<&S>,
    ) -> Result<Request, String> {
        json_request(method, url, body, self.auth())
    }
}

impl CommitStatuses for Bitbucket {
    type Status = CommitStatus;
    const WRITE_DOING: &'static str = "could not create commit status";

    fn write_url(&self, sha: &str) -> String {
        self.build_url(sha)
    }

    /// Reads the status of this key; none yet is a 404.
    async fn has(
        &self,
        sender: &dyn Sender,
        sha: &str,
        status: &CommitStatus,
    ) -> Result<bool, Verdict> {
        let doing = "could not get commit status";
        let get = self.read(format!("{}/{}", self.build_url(sha), status.key))?;
        let reply = sender
            .send(&get)
            .await
            .map_err(|e| super::prefix(e.into(), doing))?;
        if reply.status.is_success() {
            let existing: CommitStatus = reply.json("the commit status")?;
            return Ok(existing.state == status.state && existing.description == status.description);
        }
        if reply.status != StatusCode::NOT_FOUND {
            return Err(super::prefix(reply.verdict(), doing));
        }
        Ok(false)
    }
}

impl Notifier for Bitbucket {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn skips(&self, n: &Notification) -> Option<&'static str> {
        progressing(n).then_some("Bitbucket build statuses are not set for Progressing events")
    }

    fn request(
        &self,
        n: &Notification,
        _rendered: Option<&Rendered>,
        _thread: Option<&ThreadAnchor>,
    ) -> Result<Request, String> {
        self.write(n)
    }

    fn conversation(&self) -> Option<&dyn Conversation> {
        Some(self)
    }

    fn payload(&self, n: &Notification, _rendered: Option<&Rendered>) -> Result<Value, String> {
        if self.skips(n).is_some() {
            return Ok(Value::Null);
        }
        Ok(show_write(&self.write(n)?))
    }

    fn masked_address(&self) -> String {
        crate::mask::url(&self.api)
    }

    fn warnings(&self) -> Vec<String> {
        ignored_host_warning(&self.host, &self.api)
            .into_iter()
            .collect()
    }
}

/// A warning when the address points elsewhere than Bitbucket Cloud while
/// statuses go to its API: Flux, and herald, use only the address's path.
fn ignored_host_warning(host: &str, api: &str) -> Option<String> {
    let cloud = matches!(
        host,
        "https://bitbucket.org" | "https://www.bitbucket.org" | "http://bitbucket.org"
    );
    (!cloud && api == DEFAULT_API).then(|| {
        format!(
            "bitbucket: the address's host is ignored (as in Flux): build statuses go to {DEFAULT_API}; use type bitbucketserver for Bitbucket Server"
        )
    })
}

impl Conversation for Bitbucket {
    fn deliver<'a>(
        &'a self,
        n: &'a Notification,
        _rendered: Option<&'a Rendered>,
        sender: &'a dyn Sender,
    ) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            self.set_status(n, sender)
                .await
                .err()
                .unwrap_or(Verdict::Delivered)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_host_than_bitbucket_cloud_is_warned_about() {
        assert_eq!(
            ignored_host_warning("https://bitbucket.org", DEFAULT_API),
            None
        );
        assert!(
            ignored_host_warning("https://git.example.com", DEFAULT_API)
                .is_some_and(|w| w.contains("bitbucketserver"))
        );
        assert_eq!(
            ignored_host_warning("https://git.example.com", "https://127.0.0.1:8443/2.0"),
            None
        );
    }

    #[test]
    fn the_key_is_the_sha1_of_the_id() {
        assert_eq!(sha1_hex("abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }
}
