//! GitLab, as Flux v1.9.3 drives it through `gitlab-org/api/client-go`:
//! `gitlab` (commit status) and `gitlabmergerequestcomment`. The API is
//! `<host>/api/v4/`, the project is the address's whole path (groups and
//! subgroups), escaped as one segment; the token (else the password) goes
//! in `PRIVATE-TOKEN`.

use std::sync::Arc;

use futures::future::BoxFuture;
use reqwest::Method;
use reqwest::header::HeaderName;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::forge::{Comments, CommitStatuses, Forge, listed, set_commit_status, upsert_comment};
use super::{
    change_request, comment_body, comment_marker, commit_status_id, exchange, invalid,
    json_request, name_and_description, path_escape, progressing, query_escape, repo_address,
    revision, show_write, token_or_password,
};
use crate::api::Reason;
use crate::api::Severity;
use crate::mask::SecretString;
use crate::notification::Notification;
use crate::providers::{
    Auth, Conversation, Invalid, Notifier, Request, Sender, Settings, ThreadAnchor, Verdict,
};
use crate::template::Rendered;

pub struct GitLab {
    settings: Settings,
    comment: bool,
    api: String,
    /// The project id as it appears in paths (`group%2Fsub%2Frepo`).
    project: String,
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
            "gitlab: the Secret of spec.secretRef has no 'token' (or 'password')",
        )
    })?;
    let address = repo_address(&settings, "gitlab")?;
    if address.id.is_empty() {
        return Err(invalid(
            Reason::InvalidAddress,
            "gitlab: the address names no project",
        ));
    }
    Ok(Arc::new(GitLab {
        api: format!("{}/api/v4/", address.host),
        project: project_path(&address.id),
        token,
        comment,
        settings,
    }))
}

/// A request as client-go sends it: `Accept: application/json` on every one.
fn gitlab_request(
    method: Method,
    url: String,
    body: Option<&impl Serialize>,
    auth: Auth,
) -> Result<Request, String> {
    let mut request = json_request(method, url, body, auth)?;
    request.headers.push((
        reqwest::header::ACCEPT,
        reqwest::header::HeaderValue::from_static("application/json"),
    ));
    Ok(request)
}

/// client-go's `PathEscape`: `url.PathEscape` with `.` escaped too.
fn project_path(id: &str) -> String {
    path_escape(id).replace('.', "%2E")
}

/// `gitlab.CommitStatus` as read.
#[derive(Deserialize)]
struct CommitStatus {
    #[serde(default)]
    sha: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: Option<String>,
}

/// `gitlab.SetCommitStatusOptions` as sent.
#[derive(Serialize)]
pub struct SetCommitStatus {
    state: &'static str,
    name: String,
    description: String,
}

fn state(severity: Severity) -> Result<&'static str, String> {
    match severity {
        Severity::Info => Ok("success"),
        Severity::Error => Ok("failed"),
        _ => Err("can't convert to gitlab state".into()),
    }
}

/// Flux's `duplicateGitlabStatus`: any status of this commit with the same
/// state, description and name.
fn duplicate(statuses: &[CommitStatus], sha: &str, status: &SetCommitStatus) -> bool {
    statuses.iter().any(|s| {
        s.sha == sha
            && s.status == status.state
            && s.description.as_deref().unwrap_or_default() == status.description
            && s.name == status.name
    })
}

#[derive(Deserialize)]
struct Author {
    #[serde(default)]
    username: String,
}

impl GitLab {
    fn auth(&self) -> Auth {
        Auth::Header(HeaderName::from_static("private-token"), self.token.clone())
    }

    fn project_url(&self, rest: &str) -> String {
        format!("{}projects/{}/{rest}", self.api, self.project)
    }

    fn status(&self, n: &Notification) -> Result<(String, SetCommitStatus), String> {
        let sha = revision(n)?;
        let state = state(n.event.severity)?;
        let (_, description) = name_and_description(n);
        let name = commit_status_id(&self.settings, n)?;
        Ok((
            sha,
            SetCommitStatus {
                state,
                name,
                description,
            },
        ))
    }

    fn write(&self, n: &Notification, rendered: Option<&Rendered>) -> Result<Request, String> {
        if self.comment {
            let iid = change_request(n)?;
            let marker = comment_marker("flux-mr-comment-key", &self.settings, n);
            let body = serde_json::json!({ "body": comment_body(&marker, n, rendered) });
            let url = self.project_url(&format!("merge_requests/{iid}/notes"));
            return gitlab_request(Method::POST, url, Some(&body), self.auth());
        }
        let (sha, status) = self.status(n)?;
        gitlab_request(
            Method::POST,
            self.write_url(&sha),
            Some(&status),
            self.auth(),
        )
    }

    async fn set_status(&self, n: &Notification, sender: &dyn Sender) -> Result<(), Verdict> {
        let (sha, status) = self.status(n).map_err(Verdict::Fail)?;
        set_commit_status(self, sender, &sha, &status).await
    }

    async fn comment(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        sender: &dyn Sender,
    ) -> Result<(), Verdict> {
        let iid = change_request(n).map_err(Verdict::Fail)?;
        let user = self.read(format!("{}user", self.api))?;
        let reply = exchange(sender, &user, "failed to get authenticated user info").await?;
        let me: Author = reply.json("the authenticated user")?;
        let marker = comment_marker("flux-mr-comment-key", &self.settings, n);
        let body = serde_json::json!({ "body": comment_body(&marker, n, rendered) });
        upsert_comment(self, sender, iid, &me.username, &marker, &body).await
    }
}

impl Forge for GitLab {
    fn request<S: Serialize>(
        &self,
        method: Method,
        url: String,
        body: Option<&S>,
    ) -> Result<Request, String> {
        gitlab_request(method, url, body, self.auth())
    }
}

impl CommitStatuses for GitLab {
    type Status = SetCommitStatus;
    const WRITE_DOING: &'static str = "unable to set commit status";

    fn write_url(&self, sha: &str) -> String {
        self.project_url(&format!("statuses/{}", path_escape(sha)))
    }

    async fn has(
        &self,
        sender: &dyn Sender,
        sha: &str,
        status: &SetCommitStatus,
    ) -> Result<bool, Verdict> {
        let url = self.project_url(&format!(
            "repository/commits/{}/statuses?name={}",
            path_escape(sha),
            query_escape(&status.name)
        ));
        let statuses: Vec<CommitStatus> =
            listed(self, sender, url, "unable to list commit status").await?;
        Ok(duplicate(&statuses, sha, status))
    }
}

impl Comments for GitLab {
    const NOUN: &'static str = "merge request note";
    const UPDATE: Method = Method::PUT;

    fn list_url(&self, iid: u64) -> String {
        self.project_url(&format!(
            "merge_requests/{iid}/notes?order_by=created_at&per_page=100&sort=asc"
        ))
    }

    fn create_url(&self, iid: u64) -> String {
        self.project_url(&format!("merge_requests/{iid}/notes"))
    }

    fn comment_url(&self, iid: u64, id: u64) -> String {
        self.project_url(&format!("merge_requests/{iid}/notes/{id}"))
    }
}

impl Notifier for GitLab {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn skips(&self, n: &Notification) -> Option<&'static str> {
        (!self.comment && progressing(n))
            .then_some("GitLab commit statuses are not set for Progressing events")
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
        if self.skips(n).is_some() {
            return Ok(Value::Null);
        }
        Ok(show_write(&self.write(n, rendered)?))
    }

    fn masked_address(&self) -> String {
        self.api.clone()
    }
}

impl Conversation for GitLab {
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

    #[test]
    fn projects_are_one_escaped_segment() {
        assert_eq!(project_path("group/sub/repo"), "group%2Fsub%2Frepo");
        assert_eq!(project_path("group/my.repo"), "group%2Fmy%2Erepo");
    }

    #[test]
    fn a_status_is_a_duplicate_only_when_all_fields_match() {
        let set = SetCommitStatus {
            state: "success",
            name: "kustomization/app/0c9c2e41".into(),
            description: "reconciliation succeeded".into(),
        };
        let seen = |sha: &str, status: &str| CommitStatus {
            sha: sha.into(),
            status: status.into(),
            name: "kustomization/app/0c9c2e41".into(),
            description: Some("reconciliation succeeded".into()),
        };
        assert!(duplicate(
            &[seen("abc", "failed"), seen("abc", "success")],
            "abc",
            &set
        ));
        assert!(!duplicate(&[seen("abc", "failed")], "abc", &set));
        assert!(!duplicate(&[seen("def", "success")], "abc", &set));
    }
}
