//! The two flows the forges share, written once. A commit status is read
//! first and written only when the commit does not have it already (Flux's
//! duplicate checks); a change request's comment by this Provider is found
//! by its author and marker and updated, else created. Each forge supplies
//! its URLs, JSON shapes and auth through [`Forge`], [`CommitStatuses`] and
//! [`Comments`].

use std::future::Future;

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::exchange;
use crate::providers::{Reply, Request, Sender, Verdict};

/// How one forge's API is asked.
pub trait Forge: Sync {
    /// A request as the forge's Go client sends it (its auth, its headers,
    /// its JSON encoding): a write with `body`, a read without.
    fn request<S: Serialize>(
        &self,
        method: Method,
        url: String,
        body: Option<&S>,
    ) -> Result<Request, String>;

    /// Sends one request; a 2xx answer is returned, anything else is the
    /// verdict, its reason prefixed with what was being done.
    fn exchange<'a>(
        &'a self,
        sender: &'a dyn Sender,
        request: &'a Request,
        doing: &'a str,
    ) -> impl Future<Output = Result<Reply, Verdict>> + Send + 'a {
        exchange(sender, request, doing)
    }

    /// A read: the request without a body.
    fn read(&self, url: String) -> Result<Request, Verdict> {
        self.request(Method::GET, url, None::<&()>)
            .map_err(Verdict::Fail)
    }
}

/// A forge's commit statuses.
pub trait CommitStatuses: Forge {
    /// A status as herald writes it.
    type Status: Serialize + Sync;
    /// What the write is called in errors, as Flux says it.
    const WRITE_DOING: &'static str;

    /// Where a status of commit `sha` is written.
    fn write_url(&self, sha: &str) -> String;

    /// Whether commit `sha` has `status` already: each forge's Flux
    /// notifier reads and compares in its own way (most with [`listed`]).
    fn has<'a>(
        &'a self,
        sender: &'a dyn Sender,
        sha: &'a str,
        status: &'a Self::Status,
    ) -> impl Future<Output = Result<bool, Verdict>> + Send + 'a;
}

/// Sets `status` on commit `sha` unless the commit has it already.
pub async fn set_commit_status<F: CommitStatuses>(
    forge: &F,
    sender: &dyn Sender,
    sha: &str,
    status: &F::Status,
) -> Result<(), Verdict> {
    if forge.has(sender, sha, status).await? {
        return Ok(());
    }
    let write = forge
        .request(Method::POST, forge.write_url(sha), Some(status))
        .map_err(Verdict::Fail)?;
    forge.exchange(sender, &write, F::WRITE_DOING).await?;
    Ok(())
}

/// The read most forges make before writing a status: the commit's
/// statuses, as listed at `url`.
pub async fn listed<F: Forge, L: DeserializeOwned>(
    forge: &F,
    sender: &dyn Sender,
    url: String,
    doing: &str,
) -> Result<L, Verdict> {
    let list = forge.read(url)?;
    let reply = forge.exchange(sender, &list, doing).await?;
    reply.json("the commit statuses")
}

/// A forge's comments on its change requests (pull or merge requests).
pub trait Comments: Forge {
    /// "pull request comment" or "merge request note": the requests are
    /// named with it in errors, as Flux's Go clients name them.
    const NOUN: &'static str;
    /// The method that updates a comment.
    const UPDATE: Method;

    /// The change request's comments, oldest first.
    fn list_url(&self, number: u64) -> String;
    /// Where a new comment is posted.
    fn create_url(&self, number: u64) -> String;
    /// An existing comment.
    fn comment_url(&self, number: u64, id: u64) -> String;

    /// The request that lists the comments (a forge may add headers).
    fn list(&self, number: u64) -> Result<Request, Verdict> {
        self.read(self.list_url(number))
    }
}

/// A comment as the forges list it: GitHub's and Gitea's name their author
/// `user.login`, GitLab's notes `author.username`.
#[derive(serde::Deserialize)]
struct Listed {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    #[serde(default, alias = "author")]
    user: Option<Author>,
}

#[derive(serde::Deserialize)]
struct Author {
    #[serde(default, alias = "username")]
    login: Option<String>,
}

/// Updates the comment `author` wrote on change request `number` holding
/// `marker`, else creates one; `body` is the comment as sent.
pub async fn upsert_comment<F: Comments>(
    forge: &F,
    sender: &dyn Sender,
    number: u64,
    author: &str,
    marker: &str,
    body: &(impl Serialize + Sync),
) -> Result<(), Verdict> {
    let list = forge.list(number)?;
    let doing = format!("failed to list {}s", F::NOUN);
    let reply = forge.exchange(sender, &list, &doing).await?;
    let comments: Vec<Listed> = reply.json(&format!("the {}s", F::NOUN))?;
    let existing = comments.iter().find(|c| {
        c.user.as_ref().and_then(|u| u.login.as_deref()) == Some(author)
            && c.body.as_deref().unwrap_or_default().contains(marker)
    });
    let (method, url, doing) = match existing {
        Some(comment) => (
            F::UPDATE,
            forge.comment_url(number, comment.id),
            format!("failed to update {}", F::NOUN),
        ),
        None => (
            Method::POST,
            forge.create_url(number),
            format!("failed to create {}", F::NOUN),
        ),
    };
    let write = forge
        .request(method, url, Some(body))
        .map_err(Verdict::Fail)?;
    forge.exchange(sender, &write, &doing).await?;
    Ok(())
}
