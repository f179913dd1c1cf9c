//! Gitea (and Forgejo), as Flux v1.9.3 drives it through the Gitea SDK:
//! `gitea` (commit status) and `giteapullrequestcomment`. The API is
//! `<host>/api/v1/`; the token (else the password) is sent as
//! `Authorization: token <token>`. Unlike the other forges, a
//! `Progressing` event sets a `pending` status. As the SDK's client does
//! when Flux makes it for each event, every delivery first asks the
//! server's version (`GET /api/v1/version`) and refuses one older than
//! 1.11.

use std::sync::Arc;

use futures::future::BoxFuture;
use reqwest::Method;
use reqwest::header::AUTHORIZATION;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::forge::{Comments, CommitStatuses, Forge, set_commit_status, upsert_comment};
use super::{
    change_request, comment_body, comment_marker, commit_status_id, exchange, invalid,
    json_request, name_and_description, path_escape, progressing, repo_address, revision,
    show_write, token_or_password,
};
use crate::api::Reason;
use crate::api::Severity;
use crate::mask::SecretString;
use crate::notification::Notification;
use crate::providers::{
    Auth, Conversation, Invalid, Notifier, Request, Sender, Settings, ThreadAnchor, Verdict,
};
use crate::template::Rendered;

pub struct Gitea {
    settings: Settings,
    comment: bool,
    api: String,
    owner: String,
    repo: String,
    token: SecretString,
}

pub fn new_status(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    build(settings, false)
}

pub fn new_comment(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    build(settings, true)
}

fn build(settings: Settings, comment: bool) -> Result<Arc<dyn Notifier>, Invalid> {
    let token = token_or_password(&settings).ok_or_else(|| {
        invalid(
            Reason::SecretKeyMissing,
            "gitea: the Secret of spec.secretRef has no 'token' (or 'password')",
        )
    })?;
    let address = repo_address(&settings, "gitea")?;
    let (owner, repo) = address
        .owner_and_repo()
        .map_err(|e| invalid(Reason::InvalidAddress, format!("gitea: {e}")))?;
    Ok(Arc::new(Gitea {
        api: format!("{}/api/v1/", address.host),
        owner,
        repo,
        token: SecretString::new(format!("token {}", token.expose())),
        comment,
        settings,
    }))
}

/// `gitea.CreateStatusOption`.
#[derive(Serialize)]
pub struct CreateStatus {
    state: &'static str,
    target_url: &'static str,
    description: String,
    context: String,
}

/// `gitea.Status` as read.
#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    status: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    context: String,
}

/// Flux's `toGiteaState`.
fn state(n: &Notification) -> Result<&'static str, String> {
    if progressing(n) {
        return Ok("pending");
    }
    match n.event.severity {
        Severity::Info => Ok("success"),
        Severity::Error => Ok("failure"),
        _ => Err("can't convert to gitea state".into()),
    }
}

/// Flux's `duplicateGiteaStatus`: the first complete status of this
/// context decides.
fn duplicate(statuses: &[Status], status: &CreateStatus) -> bool {
    statuses
        .iter()
        .find(|s| {
            !s.context.is_empty()
                && !s.status.is_empty()
                && !s.description.is_empty()
                && s.context == status.context
        })
        .is_some_and(|s| s.status == status.state && s.description == status.description)
}

#[derive(Deserialize)]
struct ServerVersion {
    #[serde(default)]
    version: String,
}

/// Major and minor of a version as go-version reads it (`1.21.0`,
/// `v1.22.0+dev-12-gabc`, Forgejo's `7.0.0+gitea-1.21.0`).
fn parse_version(version: &str) -> Option<(u64, u64)> {
    let core = version.trim().trim_start_matches('v');
    let core = core.split(['+', '-']).next()?;
    let mut parts = core.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = match parts.next() {
        Some(minor) => minor.parse().ok()?,
        None => 0,
    };
    Some((major, minor))
}

#[derive(Deserialize)]
struct User {
    #[serde(default)]
    login: String,
}

impl Gitea {
    fn auth(&self) -> Auth {
        Auth::Header(AUTHORIZATION, self.token.clone())
    }

    fn repo_url(&self, rest: &str) -> String {
        format!(
            "{}repos/{}/{}/{rest}",
            self.api,
            path_escape(&self.owner),
            path_escape(&self.repo)
        )
    }

    fn status(&self, n: &Notification) -> Result<(String, CreateStatus), String> {
        let sha = revision(n)?;
        let state = state(n)?;
        let (_, description) = name_and_description(n);
        let context = commit_status_id(&self.settings, n)?;
        Ok((
            sha,
            CreateStatus {
                state,
                target_url: "",
                description,
                context,
            },
        ))
    }

    fn write(&self, n: &Notification, rendered: Option<&Rendered>) -> Result<Request, String> {
        if self.comment {
            let number = change_request(n)?;
            let marker = comment_marker("flux-pr-comment-key", &self.settings, n);
            let body = serde_json::json!({ "body": comment_body(&marker, n, rendered) });
            let url = self.repo_url(&format!("issues/{number}/comments"));
            return json_request(Method::POST, url, Some(&body), self.auth());
        }
        let (sha, status) = self.status(n)?;
        json_request(
            Method::POST,
            self.write_url(&sha),
            Some(&status),
            self.auth(),
        )
    }

    /// The SDK's `checkServerVersionGreaterThanOrEqual(1.11)`.
    async fn check_version(&self, sender: &dyn Sender) -> Result<(), Verdict> {
        let doing = "failed creating Gitea client";
        let request = self.read(format!("{}version", self.api))?;
        let reply = exchange(sender, &request, doing).await?;
        let version: ServerVersion = reply.json("the Gitea version")?;
        match parse_version(&version.version) {
            Some(found) if found >= (1, 11) => Ok(()),
            Some(_) => Err(Verdict::Fail(format!(
                "{doing}: gitea server at version {} does not satisfy >= 1.11",
                version.version
            ))),
            None => Err(Verdict::Fail(format!(
                "{doing}: unknown gitea server version {:?}",
                version.version
            ))),
        }
    }

    async fn set_status(&self, n: &Notification, sender: &dyn Sender) -> Result<(), Verdict> {
        // Flux makes its client (which asks the version) before it looks
        // at the revision: a revision that is not a SHA still asks.
        self.check_version(sender).await?;
        let (sha, status) = self.status(n).map_err(Verdict::Fail)?;
        set_commit_status(self, sender, &sha, &status).await
    }

    async fn comment(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        sender: &dyn Sender,
    ) -> Result<(), Verdict> {
        self.check_version(sender).await?;
        let number = change_request(n).map_err(Verdict::Fail)?;
        let user = self.read(format!("{}user", self.api))?;
        let reply = exchange(sender, &user, "failed to get authenticated user info").await?;
        let me: User = reply.json("the authenticated user")?;
        let marker = comment_marker("flux-pr-comment-key", &self.settings, n);
        let body = serde_json::json!({ "body": comment_body(&marker, n, rendered) });
        upsert_comment(self, sender, number, &me.login, &marker, &body).await
    }
}

impl Forge for Gitea {
    fn request<S: Serialize>(
        &self,
        method: Method,
        url: String,
        body: Option<&S>,
    ) -> Result<Request, String> {
        json_request(method, url, body, self.auth())
    }
}

impl CommitStatuses for Gitea {
    type Status = CreateStatus;
    const WRITE_DOING: &'static str = "could not create commit status";

    fn write_url(&self, sha: &str) -> String {
        self.repo_url(&format!("statuses/{}", path_escape(sha)))
    }

    async fn has(
        &self,
        sender: &dyn Sender,
        sha: &str,
        status: &CreateStatus,
    ) -> Result<bool, Verdict> {
        // The SDK's ListStatuses path; the SDK sends this GET (and only
        // this one of those herald makes) with `Content-Type: application/json`.
        let url = self.repo_url(&format!(
            "commits/{}/statuses?limit=50&page=1",
            path_escape(sha)
        ));
        let mut list = self.read(url)?;
        list.body.content_type = "application/json";
        let reply = exchange(sender, &list, "could not list commit statuses").await?;
        let statuses: Vec<Status> = reply.json("the commit statuses")?;
        Ok(duplicate(&statuses, status))
    }
}

impl Comments for Gitea {
    const NOUN: &'static str = "pull request comment";
    const UPDATE: Method = Method::PATCH;

    fn list_url(&self, number: u64) -> String {
        self.repo_url(&format!("issues/{number}/comments?limit=100&page=1"))
    }

    fn create_url(&self, number: u64) -> String {
        self.repo_url(&format!("issues/{number}/comments"))
    }

    fn comment_url(&self, _number: u64, id: u64) -> String {
        self.repo_url(&format!("issues/comments/{id}"))
    }
}

impl Notifier for Gitea {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        _thread: Option<&ThreadAnchor>,
    ) -> Result<Request, String> {
        self.write(n, rendered)
    }

    fn conversation(&self) -> Option<&dyn Conversation> {
        Some(self)
    }

    fn payload(&self, n: &Notification, rendered: Option<&Rendered>) -> Result<Value, String> {
        Ok(show_write(&self.write(n, rendered)?))
    }

    fn masked_address(&self) -> String {
        self.api.clone()
    }

    fn secrets(&self) -> Vec<&SecretString> {
        let mut secrets = self.settings.secrets();
        secrets.push(&self.token);
        secrets
    }
}

impl Conversation for Gitea {
    fn deliver<'a>(
        &'a self,
        n: &'a Notification,
        rendered: Option<&'a Rendered>,
        sender: &'a dyn Sender,
    ) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            let done = match self.comment {
                true => self.comment(n, rendered, sender).await,
                false => self.set_status(n, sender).await,
            };
            done.err().unwrap_or(Verdict::Delivered)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testing::notification;

    #[test]
    fn progressing_is_pending() {
        let mut n = notification(Severity::Info, &[]);
        assert_eq!(state(&n), Ok("success"));
        let mut event = (*n.event).clone();
        event.reason = "Progressing".into();
        n.event = Arc::new(event);
        assert_eq!(state(&n), Ok("pending"));
    }

    #[test]
    fn versions_compare_as_go_version_reads_them() {
        assert_eq!(parse_version("1.21.0"), Some((1, 21)));
        assert_eq!(parse_version("v1.22.0+dev-12-gabc"), Some((1, 22)));
        assert_eq!(parse_version("7.0.0+gitea-1.21.0"), Some((7, 0)));
        assert_eq!(parse_version("1.10.6"), Some((1, 10)));
        assert_eq!(parse_version("development"), None);
        assert!(parse_version("1.10.6") < Some((1, 11)));
    }

    #[test]
    fn the_first_status_of_the_context_decides() {
        let create = CreateStatus {
            state: "success",
            target_url: "",
            description: "reconciliation succeeded".into(),
            context: "c".into(),
        };
        let seen = |status: &str| Status {
            status: status.into(),
            description: "reconciliation succeeded".into(),
            context: "c".into(),
        };
        assert!(duplicate(&[seen("success"), seen("failure")], &create));
        assert!(!duplicate(&[seen("failure"), seen("success")], &create));
    }
}
