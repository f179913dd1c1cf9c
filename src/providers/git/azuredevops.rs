//! Azure DevOps, as Flux v1.9.3 drives it through `azure-devops-go-api` v6:
//! the address is `https://dev.azure.com/<org>/<project>/_git/<repo>`; the
//! statuses are read from and posted to
//! `<host>/<org>/<project>/_apis/git/repositories/<repo>/commits/<sha>/statuses`
//! with API version `6.0` in `Accept` (and `Content-Type:
//! application/json;charset=utf-8` on the write), the token as a personal
//! access token (Basic auth, empty user name). The status genre is
//! `fluxcd`, or `fluxcd:<summary>` when the Alert sets a summary.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use reqwest::Method;
use reqwest::header::{ACCEPT, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::forge::{CommitStatuses, Forge, listed, set_commit_status};
use super::{
    commit_status_id, exchange, invalid, json_request, name_and_description, path_escape,
    progressing, repo_address, revision, show_write,
};
use crate::api::Reason;
use crate::api::Severity;
use crate::mask::SecretString;
use crate::notification::Notification;
use crate::providers::identity::{SCOPE_DEVOPS, WorkloadIdentity};
use crate::providers::{
    Auth, Body, Conversation, Invalid, Notifier, Reply, Request, Sender, Settings, ThreadAnchor,
    Verdict,
};
use crate::template::Rendered;

/// The API version the Go client asks for.
const API_VERSION: &str = "application/json;api-version=6.0";

pub struct AzureDevOps {
    settings: Settings,
    /// `<host>/<org>/<project>/_apis/git/repositories/<repo>/commits/`.
    commits: String,
    host: String,
    credential: Credential,
    /// `X-TFS-Session`: one id per client, as Flux's Azure DevOps client
    /// makes one per connection.
    session: HeaderValue,
}

/// The personal access token, or (as Flux does when the Secret has no
/// token) an Azure AD token for `spec.serviceAccountName`, sent the same
/// way: Flux hands either to the Go client's PAT connection.
enum Credential {
    Token(SecretString),
    Identity(Arc<WorkloadIdentity>),
}

pub fn new(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    let token = settings.token.clone().filter(|t| !t.expose().is_empty());
    let credential = match (token, settings.workload_identity.clone()) {
        (Some(token), _) => Credential::Token(token),
        (None, Some(identity)) => Credential::Identity(identity),
        (None, None) => {
            return Err(invalid(
                Reason::SecretKeyMissing,
                "azuredevops: the Secret of spec.secretRef has no 'token', and there is no \
                 spec.serviceAccountName (workload identity); herald does not use the \
                 controller's own managed identity",
            ));
        }
    };
    let address = repo_address(&settings, "azuredevops")?;
    let [org, project, _, repo] = address.id.split('/').collect::<Vec<_>>()[..] else {
        return Err(invalid(
            Reason::InvalidAddress,
            format!(
                "azuredevops: invalid repository id '{}': expected <organization>/<project>/_git/<repository>",
                address.id
            ),
        ));
    };
    Ok(Arc::new(AzureDevOps {
        commits: format!(
            "{}/{}/{}/_apis/git/repositories/{}/commits/",
            address.host,
            path_escape(org),
            path_escape(project),
            path_escape(repo)
        ),
        host: address.host.clone(),
        credential,
        settings,
        session: HeaderValue::from_str(&session_id())
            .unwrap_or_else(|_| HeaderValue::from_static("00000000-0000-4000-8000-000000000000")),
    }))
}

/// A random (version 4) UUID.
fn session_id() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = crate::hex::encode(&bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// One exchange with Azure DevOps. An expired or foreign token is not
/// answered 401 there but 203 with an HTML sign-in page (without
/// `X-TFS-FedAuthRedirect: Suppress`), or another 2xx that is not JSON:
/// either is an authentication failure, never a delivery.
async fn devops_exchange(
    sender: &dyn Sender,
    request: &Request,
    doing: &str,
) -> Result<Reply, Verdict> {
    let reply = exchange(sender, request, doing).await?;
    let json = serde_json::from_slice::<serde::de::IgnoredAny>(&reply.body).is_ok();
    if reply.status.as_u16() == 203 || !json {
        return Err(Verdict::Fail(format!(
            "{doing}: Azure DevOps answered {} without JSON (its sign-in page): the token is \
             not valid for this organization, or has expired",
            reply.status.as_u16()
        )));
    }
    Ok(reply)
}

/// `git.GitStatus`, as sent and read.
#[derive(Serialize, Deserialize)]
pub struct GitStatus {
    context: Option<Context>,
    description: Option<String>,
    state: Option<String>,
}

#[derive(Serialize, Deserialize, PartialEq, Eq)]
pub struct Context {
    genre: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct Statuses {
    #[serde(default)]
    value: Vec<GitStatus>,
}

fn state(severity: Severity) -> Result<&'static str, String> {
    match severity {
        Severity::Info => Ok("succeeded"),
        Severity::Error => Ok("error"),
        _ => Err("can't convert to azure devops state".into()),
    }
}

/// Flux's `duplicateAzureDevOpsStatus`: the first complete status of this
/// name and genre decides.
fn duplicate(statuses: &[GitStatus], status: &GitStatus) -> bool {
    statuses
        .iter()
        .find(|s| {
            s.state.is_some()
                && s.description.is_some()
                && s.context.as_ref().is_some_and(|c| {
                    c.name.is_some() && c.genre.is_some() && Some(c) == status.context.as_ref()
                })
        })
        .is_some_and(|s| s.state == status.state && s.description == status.description)
}

impl AzureDevOps {
    fn request_to(
        &self,
        method: Method,
        url: String,
        body: Option<&impl Serialize>,
        token: &SecretString,
    ) -> Result<Request, String> {
        let auth = Auth::Basic {
            username: String::new(),
            password: token.clone(),
        };
        let mut request = json_request(method, url, None::<&()>, auth)?;
        if let Some(body) = body {
            // The Go client adds the charset to every body's media type.
            request.body = Body::json_as("application/json;charset=utf-8", body)?;
        }
        request
            .headers
            .push((ACCEPT, HeaderValue::from_static(API_VERSION)));
        // As Flux's client: no redirect to a sign-in page, and its session.
        request.headers.push((
            HeaderName::from_static("x-tfs-fedauthredirect"),
            HeaderValue::from_static("Suppress"),
        ));
        request.headers.push((
            HeaderName::from_static("x-tfs-session"),
            self.session.clone(),
        ));
        Ok(request)
    }

    fn status(&self, n: &Notification) -> Result<(String, GitStatus), String> {
        let sha = revision(n)?;
        let state = state(n.event.severity)?;
        let (_, description) = name_and_description(n);
        let name = commit_status_id(&self.settings, n)?;
        let genre = match n.metadata.get("summary") {
            Some(summary) => format!("fluxcd:{summary}"),
            None => "fluxcd".to_owned(),
        };
        Ok((
            sha,
            GitStatus {
                context: Some(Context {
                    genre: Some(genre),
                    name: Some(name),
                }),
                description: Some(description),
                state: Some(state.into()),
            },
        ))
    }

    /// The status write `herald route` shows: with workload identity there
    /// is no cluster to get a token from, so a placeholder stands for it.
    fn write(&self, n: &Notification) -> Result<Request, String> {
        let (sha, status) = self.status(n)?;
        let url = self.statuses_url(&sha);
        let token = match &self.credential {
            Credential::Token(token) => token.clone(),
            Credential::Identity(_) => SecretString::new("<workload identity token>".to_owned()),
        };
        self.request_to(Method::POST, url, Some(&status), &token)
    }

    /// The commit's statuses: listed and written at the same URL.
    fn statuses_url(&self, sha: &str) -> String {
        format!("{}{}/statuses", self.commits, path_escape(sha))
    }

    async fn set_status(&self, n: &Notification, sender: &dyn Sender) -> Result<(), Verdict> {
        let (sha, status) = self.status(n).map_err(Verdict::Fail)?;
        let token = match &self.credential {
            Credential::Token(token) => token.clone(),
            Credential::Identity(identity) => identity.azure_token(SCOPE_DEVOPS, sender).await?,
        };
        let session = Session {
            devops: self,
            token,
        };
        set_commit_status(&session, sender, &sha, &status).await
    }
}

/// Azure DevOps asked with one delivery's token (workload identity's is
/// exchanged per delivery).
struct Session<'a> {
    devops: &'a AzureDevOps,
    token: SecretString,
}

impl Forge for Session<'_> {
    fn request<S: Serialize>(
        &self,
        method: Method,
        url: String,
        body: Option<&S>,
    ) -> Result<Request, String> {
        self.devops.request_to(method, url, body, &self.token)
    }

    fn exchange<'a>(
        &'a self,
        sender: &'a dyn Sender,
        request: &'a Request,
        doing: &'a str,
    ) -> impl Future<Output = Result<Reply, Verdict>> + Send + 'a {
        devops_exchange(sender, request, doing)
    }
}

impl CommitStatuses for Session<'_> {
    type Status = GitStatus;
    const WRITE_DOING: &'static str = "could not create commit status";

    fn write_url(&self, sha: &str) -> String {
        self.devops.statuses_url(sha)
    }

    async fn has(
        &self,
        sender: &dyn Sender,
        sha: &str,
        status: &GitStatus,
    ) -> Result<bool, Verdict> {
        let url = self.devops.statuses_url(sha);
        let statuses: Statuses =
            listed(self, sender, url, "could not list commit statuses").await?;
        Ok(duplicate(&statuses.value, status))
    }
}

impl Notifier for AzureDevOps {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn skips(&self, n: &Notification) -> Option<&'static str> {
        progressing(n).then_some("Azure DevOps commit statuses are not set for Progressing events")
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
        self.host.clone()
    }
}

impl Conversation for AzureDevOps {
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

    fn status(name: &str, genre: &str, state: &str) -> GitStatus {
        GitStatus {
            context: Some(Context {
                genre: Some(genre.into()),
                name: Some(name.into()),
            }),
            description: Some("reconciliation succeeded".into()),
            state: Some(state.into()),
        }
    }

    #[test]
    fn name_and_genre_pick_the_status_that_decides() {
        let new = status("n", "fluxcd", "succeeded");
        assert!(duplicate(&[status("n", "fluxcd", "succeeded")], &new));
        assert!(!duplicate(
            &[
                status("n", "fluxcd", "error"),
                status("n", "fluxcd", "succeeded")
            ],
            &new
        ));
        assert!(!duplicate(
            &[status("n", "fluxcd:other", "succeeded")],
            &new
        ));
    }
}
