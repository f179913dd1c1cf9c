//! Bitbucket Server and Data Center, as Flux v1.9.3 sends it (its own HTTP
//! code): the address is the repository's http(s) clone URL,
//! `<base>[/<context>]/scm/<project>/<repo>.git`; the build status goes to
//! `<base>[/<context>]/rest/api/latest/projects/<project>/repos/<repo>/commits/<sha>/builds`,
//! keyed by the SHA-1 of the commit status id, after a `GET …?key=<key>`
//! shows it is not already there. `token` is sent as a bearer token, else
//! `username`/`password` as Basic auth.

use std::sync::Arc;

use futures::future::BoxFuture;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::bitbucket::sha1_hex;
use super::forge::{CommitStatuses, Forge, set_commit_status};
use super::{
    commit_status_id, invalid, json_request, name_and_description, progressing, query_escape,
    revision, show_write,
};
use crate::api::Reason;
use crate::api::Severity;
use crate::mask::SecretString;
use crate::notification::Notification;
use crate::providers::{
    Auth, Body, Conversation, Invalid, Notifier, Request, Sender, Settings, ThreadAnchor, Verdict,
};
use crate::template::Rendered;

pub struct BitbucketServer {
    settings: Settings,
    /// `…/rest/api/latest/projects/<project>/repos/<repo>/commits`.
    commits: String,
    auth: Auth,
}

pub fn new(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    let commits = commits_url(settings.address()?.expose())
        .map_err(|e| invalid(Reason::InvalidAddress, format!("bitbucketserver: {e}")))?;
    let auth = match (&settings.token, &settings.username, &settings.password) {
        (Some(token), _, _) if !token.expose().is_empty() => Auth::Bearer(token.clone()),
        (_, Some(username), Some(password)) if !username.is_empty() => Auth::Basic {
            username: username.clone(),
            password: password.clone(),
        },
        _ => {
            return Err(invalid(
                Reason::SecretKeyMissing,
                "bitbucketserver: invalid credentials, expected to be one of username/password or API Token",
            ));
        }
    };
    Ok(Arc::new(BitbucketServer {
        commits,
        auth,
        settings,
    }))
}

/// Flux's `parseBitbucketServerGitAddress`: the REST commits URL of a
/// `…/scm/<project>/<repo>[.git]` clone URL (the last `/scm/` splits the
/// context path from the repository).
fn commits_url(address: &str) -> Result<String, String> {
    let mut url =
        url::Url::parse(address).map_err(|e| format!("could not parse git address: {e}"))?;
    let path = url.path().to_owned();
    let path = path.strip_suffix(".git").unwrap_or(&path);
    let at = path.rfind("/scm/").ok_or(
        "could not parse git address: supplied provider address is not http(s) git clone url",
    )?;
    let context = &path[..at];
    let id = &path[at + "/scm/".len()..];
    let [project, repo] = id.split('/').collect::<Vec<_>>()[..] else {
        return Err(format!(
            "could not parse git address: invalid repository id {id:?}"
        ));
    };
    url.set_path(&format!(
        "{context}/rest/api/latest/projects/{project}/repos/{repo}/commits"
    ));
    url.set_query(None);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Ok(url.to_string())
}

/// Flux's `bbServerBuildStatus`, as read.
#[derive(Deserialize)]
struct BuildStatus {
    #[serde(default)]
    key: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
}

/// Flux's `bbServerBuildStatusSetRequest`, as sent.
#[derive(Serialize)]
pub struct SetBuildStatus {
    #[serde(skip_serializing_if = "String::is_empty")]
    description: String,
    key: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    state: &'static str,
    url: String,
}

fn state(severity: Severity) -> Result<&'static str, String> {
    match severity {
        Severity::Info => Ok("SUCCESSFUL"),
        Severity::Error => Ok("FAILED"),
        _ => Err(
            "couldn't convert to bitbucket server state: bitbucket server state generated on info or error events only"
                .into(),
        ),
    }
}

impl BitbucketServer {
    fn status(&self, n: &Notification) -> Result<(String, SetBuildStatus), String> {
        let sha = revision(n).map_err(|e| format!("could not parse revision: {e}"))?;
        let state = state(n.event.severity)?;
        let (name, description) = name_and_description(n);
        let id = commit_status_id(&self.settings, n)?;
        let address = self
            .settings
            .address
            .as_ref()
            .map_or("", SecretString::expose);
        Ok((
            sha,
            SetBuildStatus {
                // Bitbucket Server shows the name: Flux adds the description.
                name: format!("{name} [{description}]"),
                description,
                key: sha1_hex(&id),
                state,
                url: address.to_owned(),
            },
        ))
    }

    /// A request with the headers Flux adds to every call.
    fn request_to(
        &self,
        method: Method,
        url: String,
        body: Option<&impl Serialize>,
    ) -> Result<Request, String> {
        let mut request = json_request(method, url, None::<&()>, self.auth.clone())?;
        if let Some(body) = body {
            // Go's json.Encoder ends the document with a newline.
            let mut bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
            bytes.push(b'\n');
            request.body = Body {
                content_type: "application/json",
                bytes: bytes.into(),
            };
        }
        request.headers.push((
            HeaderName::from_static("x-atlassian-token"),
            HeaderValue::from_static("no-check"),
        ));
        request.headers.push((
            HeaderName::from_static("x-requested-with"),
            HeaderValue::from_static("XMLHttpRequest"),
        ));
        Ok(request)
    }

    fn write(&self, n: &Notification) -> Result<Request, String> {
        let (sha, status) = self.status(n)?;
        self.request_to(Method::POST, self.builds_url(&sha), Some(&status))
    }

    /// The commit's build statuses.
    fn builds_url(&self, sha: &str) -> String {
        format!("{}/{sha}/builds", self.commits)
    }

    async fn set_status(&self, n: &Notification, sender: &dyn Sender) -> Result<(), Verdict> {
        let (sha, status) = self.status(n).map_err(Verdict::Fail)?;
        set_commit_status(self, sender, &sha, &status).await
    }
}

impl Forge for BitbucketServer {
    fn request<S: Serialize>(
        &self,
        method: Method,
        url: String,
        body: Option<&S>,
    ) -> Result<Request, String> {
        self.request_to(method, url, body)
    }
}

impl CommitStatuses for BitbucketServer {
    type Status = SetBuildStatus;
    const WRITE_DOING: &'static str = "could not post build status";

    fn write_url(&self, sha: &str) -> String {
        self.builds_url(sha)
    }

    /// Reads the build status of this key; none yet is a 404.
    async fn has(
        &self,
        sender: &dyn Sender,
        sha: &str,
        status: &SetBuildStatus,
    ) -> Result<bool, Verdict> {
        let doing = "could not get existing commit status";
        let url = format!("{}?key={}", self.builds_url(sha), query_escape(&status.key));
        let get = self.read(url)?;
        let reply = sender
            .send(&get)
            .await
            .map_err(|e| super::prefix(e.into(), doing))?;
        if reply.status == StatusCode::OK {
            let existing: BuildStatus = reply.json("the build status")?;
            return Ok(existing.key == status.key
                && existing.state == status.state
                && existing.description == status.description
                && existing.name == status.name);
        }
        if reply.status.as_u16() > 399 && reply.status != StatusCode::NOT_FOUND {
            return Err(super::prefix(reply.verdict(), doing));
        }
        Ok(false)
    }
}

impl Notifier for BitbucketServer {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn skips(&self, n: &Notification) -> Option<&'static str> {
        progressing(n)
            .then_some("Bitbucket Server build statuses are not set for Progressing events")
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
        let mut shown = show_write(&self.write(n)?);
        // The body's `url` is the address, which is never printed.
        if let Some(body) = shown.get_mut("body").and_then(Value::as_object_mut) {
            body.insert("url".into(), Value::String("***".into()));
        }
        Ok(shown)
    }
}

impl Conversation for BitbucketServer {
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

    /// The inputs of Flux's `TestBitbucketServerNew*` address cases.
    #[test]
    fn clone_urls_become_the_commits_api() {
        assert_eq!(
            commits_url("https://example.com:7990/scm/projectfoo/repobar.git").as_deref(),
            Ok(
                "https://example.com:7990/rest/api/latest/projects/projectfoo/repos/repobar/commits"
            )
        );
        assert_eq!(
            commits_url("https://example.com/context/scm/projectfoo/repobar").as_deref(),
            Ok(
                "https://example.com/context/rest/api/latest/projects/projectfoo/repos/repobar/commits"
            )
        );
        assert_eq!(
            commits_url("https://example.com/scm/scm/projectfoo/repobar.git").as_deref(),
            Ok("https://example.com/scm/rest/api/latest/projects/projectfoo/repos/repobar/commits")
        );
        assert!(commits_url("https://example.com/projectfoo/repobar.git").is_err());
        assert!(commits_url("https://example.com/scm/projectfoo/sub/repobar.git").is_err());
    }
}
