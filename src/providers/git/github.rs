//! GitHub, as Flux v1.9.3 drives it through go-github v64: `github`
//! (commit status), `githubdispatch` (`repository_dispatch`) and
//! `githubpullrequestcomment`. The API is `https://api.github.com/` for
//! `github.com`, else GitHub Enterprise's `<host>/api/v3/` (go-github's
//! `WithEnterpriseURLs`). Authentication is the Secret's `token` (else
//! `password`) as a bearer token, or a GitHub App: a JWT signed with
//! `githubAppPrivateKey` exchanged for an installation token, which is
//! kept until five minutes before it expires.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::forge::{Comments, CommitStatuses, Forge, listed, set_commit_status, upsert_comment};
use super::{
    RepoAddress, change_request, comment_body, comment_marker, commit_status_id, invalid,
    json_request, name_and_description, path_escape, prefix, progressing, repo_address, revision,
    show_write, token_or_password,
};
use crate::api::Reason;
use crate::api::Severity;
use crate::mask::SecretString;
use crate::notification::Notification;
use crate::providers::{
    Auth, Body, Conversation, Invalid, Notifier, Reply, Request, Sender, Settings, ThreadAnchor,
    Verdict,
};
use crate::template::Rendered;

/// What a GitHub provider writes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Status,
    Dispatch,
    Comment,
}

pub struct GitHub {
    settings: Settings,
    kind: Kind,
    api: String,
    owner: String,
    repo: String,
    auth: Credentials,
}

enum Credentials {
    Token(SecretString),
    App(Box<App>),
}

pub fn new_status(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    build(settings, Kind::Status)
}

pub fn new_dispatch(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    build(settings, Kind::Dispatch)
}

pub fn new_comment(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    build(settings, Kind::Comment)
}

fn build(settings: Settings, kind: Kind) -> Result<Arc<dyn Notifier>, Invalid> {
    let address = repo_address(&settings, "github")?;
    let (owner, repo) = address
        .owner_and_repo()
        .map_err(|e| invalid(Reason::InvalidAddress, format!("github: {e}")))?;
    let auth = match token_or_password(&settings) {
        Some(token) => Credentials::Token(token),
        None if settings.secret_data.contains_key("githubAppID") => {
            Credentials::App(Box::new(App::new(&settings)?))
        }
        None => {
            return Err(invalid(
                Reason::SecretKeyMissing,
                "github: the Secret of spec.secretRef has neither 'token' (or 'password') nor GitHub App keys ('githubAppID', …)",
            ));
        }
    };
    Ok(Arc::new(GitHub {
        api: api_base(&address),
        owner,
        repo,
        auth,
        kind,
        settings,
    }))
}

/// go-github's base URL: `https://api.github.com/` for `github.com`; else
/// `<host>/api/v3/` unless the host is already an API host (`api.…`).
fn api_base(address: &RepoAddress) -> String {
    let host = address.host.split_once("://").map_or("", |(_, h)| h);
    if host == "github.com" {
        return "https://api.github.com/".into();
    }
    if host.starts_with("api.") || host.contains(".api.") {
        return format!("{}/", address.host);
    }
    format!("{}/api/v3/", address.host)
}

/// The headers go-github sends with every request, and its bodies as its
/// `json.Encoder` writes them (HTML not escaped, a final newline).
fn github_request(
    method: Method,
    url: String,
    body: Option<&impl Serialize>,
    auth: Auth,
) -> Result<Request, String> {
    let mut request = json_request(method, url, None::<&()>, auth)?;
    if let Some(body) = body {
        let mut bytes = serde_json::to_vec(body).map_err(|e| format!("cannot encode JSON: {e}"))?;
        bytes.push(b'\n');
        request.body = Body {
            content_type: "application/json",
            bytes: bytes.into(),
        };
    }
    request.headers.push((
        reqwest::header::ACCEPT,
        HeaderValue::from_static("application/vnd.github.v3+json"),
    ));
    request.headers.push((
        HeaderName::from_static("x-github-api-version"),
        HeaderValue::from_static("2022-11-28"),
    ));
    Ok(request)
}

/// `repository_dispatch`'s body: `event_type` `<Kind>/<name>.<namespace>`
/// and the event, as `json.Marshal` wrote it (HTML escaped), as the raw
/// `client_payload`; go-github's encoder adds the final newline.
fn dispatch_body(n: &Notification, rendered: Option<&Rendered>) -> Result<Body, String> {
    let object = &n.event.involved_object;
    let event_type = format!("{}/{}.{}", object.kind, object.name, object.namespace);
    let event_type = serde_json::to_string(&event_type).map_err(|e| e.to_string())?;
    let payload = crate::providers::generic::go_event_json(n, rendered)?;
    let mut bytes = format!("{{\"event_type\":{event_type},\"client_payload\":").into_bytes();
    bytes.extend_from_slice(&payload.bytes);
    bytes.extend_from_slice(b"}\n");
    Ok(Body {
        content_type: "application/json",
        bytes: bytes.into(),
    })
}

/// Sends a request to GitHub; a 2xx answer is returned. A rate limit
/// (403 or 429 with `Retry-After`, or `X-RateLimit-Remaining: 0`) is
/// retried when GitHub says it ends, where go-github gives up; any other
/// answer is judged as usual.
async fn github_exchange(
    sender: &dyn Sender,
    request: &Request,
    doing: &str,
) -> Result<Reply, Verdict> {
    let reply = sender
        .send(request)
        .await
        .map_err(|e| prefix(e.into(), doing))?;
    if reply.status.is_success() {
        return Ok(reply);
    }
    if let Some(after) = rate_limited(&reply) {
        let reason = format!("HTTP {}: GitHub rate limit", reply.status);
        return Err(prefix(
            Verdict::Retry {
                reason,
                after: Some(after),
            },
            doing,
        ));
    }
    Err(prefix(reply.verdict(), doing))
}

/// How long GitHub asks to wait when an answer is a rate limit.
fn rate_limited(reply: &Reply) -> Option<Duration> {
    if !matches!(reply.status.as_u16(), 403 | 429) {
        return None;
    }
    if let Some(after) = reply.retry_after {
        return Some(after);
    }
    let header = |name: &str| reply.headers.get(name).and_then(|v| v.to_str().ok());
    if header("x-ratelimit-remaining") != Some("0") {
        return None;
    }
    let reset: i64 = header("x-ratelimit-reset")?.trim().parse().ok()?;
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    Some(Duration::from_secs(u64::try_from(reset - now).unwrap_or(0)))
}

/// `github.RepoStatus` as go-github sends and reads it.
#[derive(Serialize, Deserialize)]
pub struct RepoStatus {
    state: Option<String>,
    description: Option<String>,
    context: Option<String>,
}

/// The `state` of a severity: Flux sets `success` and `failure` only.
fn state(severity: Severity) -> Result<&'static str, String> {
    match severity {
        Severity::Info => Ok("success"),
        Severity::Error => Ok("failure"),
        _ => Err("can't convert to github state".into()),
    }
}

/// Flux's `duplicateGithubStatus`: the newest status of this context has
/// the same state and description.
fn duplicate(statuses: &[RepoStatus], status: &RepoStatus) -> bool {
    statuses
        .iter()
        .find(|s| {
            s.state.is_some()
                && s.description.is_some()
                && s.context == status.context
                && s.context.is_some()
        })
        .is_some_and(|s| s.state == status.state && s.description == status.description)
}

impl GitHub {
    fn repo_url(&self, rest: &str) -> String {
        format!(
            "{}repos/{}/{}/{rest}",
            self.api,
            path_escape(&self.owner),
            path_escape(&self.repo)
        )
    }

    /// The commit status to set, and its commit.
    fn status(&self, n: &Notification) -> Result<(String, RepoStatus), String> {
        let sha = revision(n)?;
        let state = state(n.event.severity)?;
        let (_, description) = name_and_description(n);
        let context = commit_status_id(&self.settings, n)?;
        Ok((
            sha,
            RepoStatus {
                state: Some(state.into()),
                description: Some(description),
                context: Some(context),
            },
        ))
    }

    fn auth_with(&self, token: Option<&SecretString>) -> Auth {
        token.map_or(Auth::None, |t| Auth::Bearer(t.clone()))
    }

    /// The write request, with `token` (none: as `herald route` shows it).
    fn write(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        token: Option<&SecretString>,
    ) -> Result<Request, String> {
        let auth = self.auth_with(token);
        match self.kind {
            Kind::Status => {
                let (sha, status) = self.status(n)?;
                let url = self.repo_url(&format!("statuses/{}", path_escape(&sha)));
                github_request(Method::POST, url, Some(&status), auth)
            }
            Kind::Dispatch => {
                let mut request =
                    github_request(Method::POST, self.repo_url("dispatches"), None::<&()>, auth)?;
                request.body = dispatch_body(n, rendered)?;
                Ok(request)
            }
            Kind::Comment => {
                let number = change_request(n)?;
                let marker = comment_marker("flux-pr-comment-key", &self.settings, n);
                let body = serde_json::json!({ "body": comment_body(&marker, n, rendered) });
                let url = self.repo_url(&format!("issues/{number}/comments"));
                github_request(Method::POST, url, Some(&body), auth)
            }
        }
    }

    /// The token to send, and with a GitHub App, the app's slug when asked.
    async fn token(
        &self,
        sender: &dyn Sender,
        slug: bool,
    ) -> Result<(SecretString, Option<String>), Verdict> {
        match &self.auth {
            Credentials::Token(token) => Ok((token.clone(), None)),
            Credentials::App(app) => app.token(sender, slug).await,
        }
    }

    /// Sets the commit's status unless it is the newest of its context
    /// already.
    async fn set_status(&self, n: &Notification, sender: &dyn Sender) -> Result<(), Verdict> {
        let (sha, status) = self.status(n).map_err(Verdict::Fail)?;
        let (token, _) = self.token(sender, false).await?;
        let session = Session {
            github: self,
            token,
        };
        set_commit_status(&session, sender, &sha, &status).await
    }

    async fn dispatch(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        sender: &dyn Sender,
    ) -> Result<(), Verdict> {
        let (token, _) = self.token(sender, false).await?;
        let write = self
            .write(n, rendered, Some(&token))
            .map_err(Verdict::Fail)?;
        github_exchange(
            sender,
            &write,
            "could not send github repository dispatch webhook",
        )
        .await?;
        Ok(())
    }

    /// Updates the comment this Provider wrote on the pull request (its
    /// author and marker), else creates one.
    async fn comment(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        sender: &dyn Sender,
    ) -> Result<(), Verdict> {
        let number = change_request(n).map_err(Verdict::Fail)?;
        let (token, slug) = self.token(sender, true).await?;
        let session = Session {
            github: self,
            token,
        };
        let login = match slug {
            Some(slug) => format!("{slug}[bot]"),
            None => self.login(&session, sender).await?,
        };
        let marker = comment_marker("flux-pr-comment-key", &self.settings, n);
        let body = serde_json::json!({ "body": comment_body(&marker, n, rendered) });
        upsert_comment(&session, sender, number, &login, &marker, &body).await
    }

    /// The login of the token's user (`GET /user`).
    async fn login(&self, session: &Session<'_>, sender: &dyn Sender) -> Result<String, Verdict> {
        let request = session.read(format!("{}user", self.api))?;
        let reply =
            github_exchange(sender, &request, "failed to get authenticated user info").await?;
        let user: User = reply.json("the authenticated user")?;
        Ok(user.login.unwrap_or_default())
    }
}

#[derive(Deserialize)]
struct User {
    login: Option<String>,
}

/// GitHub asked with one delivery's token (a GitHub App's is fetched per
/// delivery).
struct Session<'a> {
    github: &'a GitHub,
    token: SecretString,
}

impl Forge for Session<'_> {
    fn request<S: Serialize>(
        &self,
        method: Method,
        url: String,
        body: Option<&S>,
    ) -> Result<Request, String> {
        github_request(method, url, body, Auth::Bearer(self.token.clone()))
    }

    fn exchange<'a>(
        &'a self,
        sender: &'a dyn Sender,
        request: &'a Request,
        doing: &'a str,
    ) -> impl Future<Output = Result<Reply, Verdict>> + Send + 'a {
        github_exchange(sender, request, doing)
    }
}

impl CommitStatuses for Session<'_> {
    type Status = RepoStatus;
    const WRITE_DOING: &'static str = "could not create commit status";

    fn write_url(&self, sha: &str) -> String {
        self.github
            .repo_url(&format!("statuses/{}", path_escape(sha)))
    }

    async fn has(
        &self,
        sender: &dyn Sender,
        sha: &str,
        status: &RepoStatus,
    ) -> Result<bool, Verdict> {
        let url = self.github.repo_url(&format!(
            "commits/{}/statuses?per_page=50",
            path_escape(sha)
        ));
        let statuses: Vec<RepoStatus> =
            listed(self, sender, url, "could not list commit statuses").await?;
        Ok(duplicate(&statuses, status))
    }
}

impl Comments for Session<'_> {
    const NOUN: &'static str = "pull request comment";
    const UPDATE: Method = Method::PATCH;

    fn list_url(&self, number: u64) -> String {
        self.github.repo_url(&format!(
            "issues/{number}/comments?direction=asc&per_page=100&sort=created"
        ))
    }

    fn create_url(&self, number: u64) -> String {
        self.github.repo_url(&format!("issues/{number}/comments"))
    }

    fn comment_url(&self, _number: u64, id: u64) -> String {
        self.github.repo_url(&format!("issues/comments/{id}"))
    }

    /// Flux's go-github lists issue comments with the reactions preview
    /// media type.
    fn list(&self, number: u64) -> Result<Request, Verdict> {
        let mut list = self.read(self.list_url(number))?;
        for (name, value) in &mut list.headers {
            if *name == reqwest::header::ACCEPT {
                *value = HeaderValue::from_static("application/vnd.github.squirrel-girl-preview");
            }
        }
        Ok(list)
    }
}

impl Notifier for GitHub {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn skips(&self, n: &Notification) -> Option<&'static str> {
        (self.kind == Kind::Status && progressing(n))
            .then_some("GitHub commit statuses are not set for Progressing events")
    }

    fn request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        _thread: Option<&ThreadAnchor>,
    ) -> Result<Request, String> {
        let token = match &self.auth {
            Credentials::Token(token) => Some(token),
            Credentials::App(_) => None,
        };
        self.write(n, rendered, token)
    }

    fn conversation(&self) -> Option<&dyn Conversation> {
        Some(self)
    }

    fn payload(&self, n: &Notification, rendered: Option<&Rendered>) -> Result<Value, String> {
        if self.skips(n).is_some() {
            return Ok(Value::Null);
        }
        Ok(show_write(&self.write(n, rendered, None)?))
    }

    fn masked_address(&self) -> String {
        self.api.clone()
    }
}

impl Conversation for GitHub {
    fn deliver<'a>(
        &'a self,
        n: &'a Notification,
        rendered: Option<&'a Rendered>,
        sender: &'a dyn Sender,
    ) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            let done = match self.kind {
                Kind::Status => self.set_status(n, sender).await,
                Kind::Dispatch => self.dispatch(n, rendered, sender).await,
                Kind::Comment => self.comment(n, rendered, sender).await,
            };
            done.err().unwrap_or(Verdict::Delivered)
        })
    }
}

/// A GitHub App: its id, installation, key and API, and the installation
/// token while it is fresh.
struct App {
    id: u64,
    installation: Installation,
    key: ring::rsa::KeyPair,
    api: String,
    cached: Mutex<Option<Cached>>,
}

enum Installation {
    Id(u64),
    Owner(String),
}

#[derive(Clone)]
struct Cached {
    token: SecretString,
    slug: Option<String>,
    expires: i64,
}

/// A token is renewed this many seconds before it expires.
const RENEW_BEFORE: i64 = 300;

impl App {
    /// Reads the App keys Flux reads (`fluxcd/pkg/auth/githubapp`).
    fn new(settings: &Settings) -> Result<Self, Invalid> {
        let get = |key: &str| {
            settings
                .secret_data
                .get(key)
                .map(|v| v.expose().trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let bad = |message: String| invalid(Reason::InvalidGitHubApp, message);
        let id = get("githubAppID")
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|id| *id != 0)
            .ok_or_else(|| bad("github: 'githubAppID' must be a number (the App's id)".into()))?;
        let installation_id = get("githubAppInstallationID").and_then(|v| v.parse::<u64>().ok());
        let owner = get("githubAppInstallationOwner");
        let installation = match (installation_id, owner) {
            (Some(id), None) if id != 0 => Installation::Id(id),
            (None, Some(owner)) => Installation::Owner(owner),
            (Some(_), Some(_)) => {
                return Err(bad("github: set only one of 'githubAppInstallationID' and 'githubAppInstallationOwner'".into()));
            }
            _ => {
                return Err(bad("github: 'githubAppInstallationID' (a number) or 'githubAppInstallationOwner' is required with 'githubAppID'".into()));
            }
        };
        let pem = settings
            .secret_data
            .get("githubAppPrivateKey")
            .ok_or_else(|| {
                bad("github: 'githubAppPrivateKey' is required with 'githubAppID'".into())
            })?;
        let key = crate::providers::pem::rsa_key(pem.expose())
            .map_err(|why| bad(format!("github: 'githubAppPrivateKey' {why}")))?;
        let api = match get("githubAppBaseURL") {
            Some(base) if base.ends_with('/') => base,
            Some(base) => format!("{base}/"),
            None => "https://api.github.com/".into(),
        };
        Ok(Self {
            id,
            installation,
            key,
            api,
            cached: Mutex::new(None),
        })
    }

    fn fresh(&self, slug: bool) -> Option<Cached> {
        let cached = self.cached.lock().ok()?.clone()?;
        let now = k8s_openapi::jiff::Timestamp::now().as_second();
        (cached.expires - now > RENEW_BEFORE && (!slug || cached.slug.is_some())).then_some(cached)
    }

    /// The installation token (cached), and the app's slug when asked.
    async fn token(
        &self,
        sender: &dyn Sender,
        slug: bool,
    ) -> Result<(SecretString, Option<String>), Verdict> {
        if let Some(cached) = self.fresh(slug) {
            return Ok((cached.token, cached.slug));
        }
        let jwt = SecretString::new(self.jwt().map_err(Verdict::Fail)?);
        let slug = match slug {
            true => Some(self.slug(&jwt, sender).await?),
            false => None,
        };
        let installation = self.installation_id(&jwt, sender).await?;
        let url = format!("{}app/installations/{installation}/access_tokens", self.api);
        let request = github_request(Method::POST, url, Some(&()), Auth::Bearer(jwt))
            .map_err(Verdict::Fail)?;
        let reply = github_exchange(
            sender,
            &request,
            "cannot get a GitHub App installation token",
        )
        .await?;
        let token: InstallationToken = reply.json("the installation token")?;
        let cached = Cached {
            token: SecretString::new(token.token),
            slug: slug.clone(),
            expires: super::super::go_time::unix(&token.expires_at),
        };
        if let Ok(mut slot) = self.cached.lock() {
            *slot = Some(cached.clone());
        }
        Ok((cached.token, slug))
    }

    /// The app's slug (`GET /app`), which names its comments' author.
    async fn slug(&self, jwt: &SecretString, sender: &dyn Sender) -> Result<String, Verdict> {
        let request = github_request(
            Method::GET,
            format!("{}app", self.api),
            None::<&()>,
            Auth::Bearer(jwt.clone()),
        )
        .map_err(Verdict::Fail)?;
        let reply = github_exchange(sender, &request, "failed to get app information").await?;
        let app: AppInfo = reply.json("the app")?;
        Ok(app.slug.unwrap_or_default())
    }

    /// The installation id: given, or found by owner (organization, then user).
    async fn installation_id(
        &self,
        jwt: &SecretString,
        sender: &dyn Sender,
    ) -> Result<u64, Verdict> {
        let owner = match &self.installation {
            Installation::Id(id) => return Ok(*id),
            Installation::Owner(owner) => owner,
        };
        let mut last = Verdict::Fail(String::new());
        for kind in ["orgs", "users"] {
            let url = format!("{}{kind}/{}/installation", self.api, path_escape(owner));
            let request = github_request(Method::GET, url, None::<&()>, Auth::Bearer(jwt.clone()))
                .map_err(Verdict::Fail)?;
            match github_exchange(sender, &request, "failed to find the installation").await {
                Ok(reply) => {
                    let found: InstallationInfo = reply.json("the installation")?;
                    return Ok(found.id);
                }
                Err(verdict @ Verdict::Retry { .. }) => return Err(verdict),
                Err(verdict) => last = verdict,
            }
        }
        Err(last)
    }

    /// The JWT the App authenticates with: RS256, issued 30 s ago (clock
    /// drift), valid two minutes, issuer the App id (as Flux makes it).
    fn jwt(&self) -> Result<String, String> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let iat = k8s_openapi::jiff::Timestamp::now().as_second() - 30;
        let header = b64.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = b64.encode(format!(
            r#"{{"iss":"{}","exp":{},"iat":{iat}}}"#,
            self.id,
            iat + 120
        ));
        let signing_input = format!("{header}.{claims}");
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "cannot sign the GitHub App JWT".to_owned())?;
        Ok(format!("{signing_input}.{}", b64.encode(signature)))
    }
}

#[derive(Deserialize)]
struct InstallationToken {
    token: String,
    #[serde(default)]
    expires_at: String,
}

#[derive(Deserialize)]
struct AppInfo {
    slug: Option<String>,
}

#[derive(Deserialize)]
struct InstallationInfo {
    id: u64,
}

/// An RSA private key in PEM, PKCS#1 (`RSA PRIVATE KEY`, what GitHub hands
/// out) or PKCS#8 (`PRIVATE KEY`); the error never quotes the key.
#[cfg(test)]
mod tests {
    use super::*;

    fn base(address: &str) -> String {
        api_base(&super::super::parse_address(address).expect("address"))
    }

    #[test]
    fn the_api_is_found_as_go_github_finds_it() {
        assert_eq!(
            base("https://github.com/org/repo"),
            "https://api.github.com/"
        );
        assert_eq!(
            base("git@github.com:org/repo.git"),
            "https://api.github.com/"
        );
        assert_eq!(
            base("https://ghe.example.com/org/repo"),
            "https://ghe.example.com/api/v3/"
        );
        assert_eq!(
            base("https://api.ghe.example.com/org/repo"),
            "https://api.ghe.example.com/"
        );
        assert_eq!(
            base("https://github.com:8443/org/repo"),
            "https://github.com:8443/api/v3/"
        );
    }

    fn status(context: &str, state: &str, description: &str) -> RepoStatus {
        RepoStatus {
            state: Some(state.into()),
            description: Some(description.into()),
            context: Some(context.into()),
        }
    }

    #[test]
    fn only_the_newest_status_of_the_context_counts() {
        let new = status(
            "kustomization/app/0c9c2e41",
            "success",
            "reconciliation succeeded",
        );
        let same = status(
            "kustomization/app/0c9c2e41",
            "success",
            "reconciliation succeeded",
        );
        let older_failure = status(
            "kustomization/app/0c9c2e41",
            "failure",
            "health check failed",
        );
        let other = status("other", "success", "reconciliation succeeded");
        assert!(duplicate(&[same, older_failure], &new));
        let same = status(
            "kustomization/app/0c9c2e41",
            "success",
            "reconciliation succeeded",
        );
        let older_failure = status(
            "kustomization/app/0c9c2e41",
            "failure",
            "health check failed",
        );
        assert!(!duplicate(&[older_failure, same], &new));
        assert!(!duplicate(&[other], &new));
        assert!(!duplicate(&[], &new));
    }
}
