//! The Git forges: commit statuses (`github`, `gitlab`, `gitea`,
//! `bitbucket`, `bitbucketserver`, `azuredevops`), change-request comments
//! (`githubpullrequestcomment`, `gitlabmergerequestcomment`,
//! `giteapullrequestcomment`) and `githubdispatch`, as Flux v1.9.3 sends
//! them through each forge's Go client. Each delivery is a
//! [`Conversation`](super::Conversation): read what is there (the commit's
//! statuses, the pull request's comments), then write only what changed.
//!
//! This module holds what the forges share: the repository address, the
//! revision, the status name and description, the commit status id (with
//! `spec.commitStatusExpr`), the comment marker, and sending JSON.

pub mod azuredevops;
pub mod bitbucket;
pub mod bitbucketserver;
pub mod forge;
pub mod gitea;
pub mod github;
pub mod gitlab;

use std::fmt::Write;

use reqwest::Method;
use serde::Serialize;
use serde_json::Value;

use super::{Auth, Body, Invalid, Reply, Request, Sender, Settings, Verdict, message_text};
use crate::api::Reason;
use crate::api::Severity;
use crate::mask::SecretString;
use crate::notification::Notification;
use crate::template::Rendered;

/// A repository address split as Flux's `parseGitAddress` splits it:
/// `<scheme>://<host[:port]>` (SSH becomes https) and the path without its
/// leading slashes and `.git`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoAddress {
    pub host: String,
    pub id: String,
}

/// Parses a clone URL as `chainguard-dev/git-urls` does: a URL with a
/// scheme, or the scp-like `[user@]host:path`.
pub fn parse_address(address: &str) -> Result<RepoAddress, String> {
    let (scheme, host, path) = if address.contains("://") {
        parse_url(address)?
    } else {
        parse_scp_like(address)?
    };
    if host.is_empty() {
        return Err("the address has no host".into());
    }
    let scheme = if scheme == "ssh" { "https" } else { &scheme };
    let id = path.trim_start_matches('/');
    let id = id.strip_suffix(".git").unwrap_or(id);
    Ok(RepoAddress {
        host: format!("{scheme}://{host}"),
        id: id.to_owned(),
    })
}

/// Scheme, `host[:port]` and path of a URL.
fn parse_url(address: &str) -> Result<(String, String, String), String> {
    let parsed =
        url::Url::parse(address).map_err(|e| format!("the address is not a valid URL ({e})"))?;
    let host = parsed.host_str().unwrap_or_default();
    let host = match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    Ok((parsed.scheme().to_owned(), host, parsed.path().to_owned()))
}

/// The scp-like `[user@]host:path`, which Git reads as SSH.
fn parse_scp_like(address: &str) -> Result<(String, String, String), String> {
    let not_one = || "the address is neither a URL nor user@host:path".to_owned();
    let (authority, path) = address.split_once(':').ok_or_else(not_one)?;
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(not_one());
    }
    Ok(("ssh".to_owned(), host.to_owned(), path.to_owned()))
}

impl RepoAddress {
    /// `owner` and `repo` of an `owner/repo` id (GitHub, Gitea, Bitbucket).
    pub fn owner_and_repo(&self) -> Result<(String, String), String> {
        match self.id.split('/').collect::<Vec<_>>().as_slice() {
            [owner, repo] => Ok(((*owner).to_owned(), (*repo).to_owned())),
            _ => Err(format!(
                "invalid repository id '{}': expected <owner>/<repository>",
                self.id
            )),
        }
    }
}

/// A Provider setting that cannot work: `Ready=False` with `reason`.
pub fn invalid(reason: Reason, message: impl Into<String>) -> Invalid {
    Invalid::Setting {
        reason,
        message: message.into(),
    }
}

/// The address, parsed; a problem names the provider type and never
/// quotes the address (it may hold credentials).
pub fn repo_address(settings: &Settings, kind: &str) -> Result<RepoAddress, Invalid> {
    let address = settings.address()?;
    parse_address(address.expose())
        .map_err(|e| invalid(Reason::InvalidAddress, format!("{kind}: {e}")))
}

/// The token, else the password (Flux's `token == "" && password != ""`).
pub fn token_or_password(settings: &Settings) -> Option<SecretString> {
    settings
        .token
        .clone()
        .filter(|t| !t.expose().is_empty())
        .or_else(|| settings.password.clone())
        .filter(|t| !t.expose().is_empty())
}

/// The commit the event is about: the `revision` metadata, in any of the
/// forms Flux's sources write (`main@sha1:<hash>`, `sha1:<hash>`, the legacy
/// `main/<hash>`, a bare hash). As in Flux v1.9.3, only a 40-character
/// hash (SHA-1) is taken.
pub fn parse_revision(revision: &str) -> Result<String, String> {
    let transformed = transform_revision(revision);
    let hash = extract_hash(&transformed);
    if hash.len() != 40 {
        return Err(format!(
            "failed to extract commit hash from '{revision}' revision"
        ));
    }
    Ok(hash.to_owned())
}

/// Flux's `TransformRevision`: a legacy `<pointer>/<hash>` becomes
/// `<pointer>@<algorithm>:<hash>`.
fn transform_revision(rev: &str) -> String {
    if rev.is_empty() || rev.contains(':') {
        return rev.to_owned();
    }
    let hash = extract_hash(rev);
    let digest = if hash.is_empty() {
        String::new()
    } else {
        let algorithm = if hash.len() == 40 { "sha1" } else { "unknown" };
        format!("{algorithm}:{hash}")
    };
    let pointer = match rev.rfind('@') {
        Some(i) => &rev[..i],
        None => match rev.rfind('/') {
            Some(i) if &rev[..i] != "HEAD" => &rev[..i],
            _ => "",
        },
    };
    if pointer.is_empty() {
        digest
    } else {
        format!("{pointer}@{digest}")
    }
}

/// Flux's `ExtractHashFromRevision`.
fn extract_hash(rev: &str) -> &str {
    if let Some(i) = rev.rfind(':') {
        return &rev[i + 1..];
    }
    rev.rsplit('/').next().unwrap_or(rev)
}

/// The commit of a notification, or why there is none.
pub fn revision(n: &Notification) -> Result<String, String> {
    let revision = n
        .metadata
        .get("revision")
        .ok_or_else(|| "missing revision metadata".to_owned())?;
    parse_revision(revision)
}

/// Flux's `formatNameAndDescription`: `kind/name` lower-cased, and the
/// reason split into lower-case words (`reconciliation succeeded`).
pub fn name_and_description(n: &Notification) -> (String, String) {
    let object = &n.event.involved_object;
    let name = format!("{}/{}", object.kind, object.name).to_lowercase();
    let description = super::pagerduty::split_camel_case(&n.event.reason)
        .join(" ")
        .to_lowercase();
    (name, description)
}

/// Whether the event is a `Progressing` one (most forges skip them).
pub fn progressing(n: &Notification) -> bool {
    n.event.reason == "Progressing"
}

/// The commit status id: `spec.commitStatusExpr` evaluated, else Flux's
/// default `<kind>/<name>/<first part of the Provider UID>`, lower-cased.
pub fn commit_status_id(settings: &Settings, n: &Notification) -> Result<String, String> {
    let Some(expr) = &settings.commit_status_expr else {
        let object = &n.event.involved_object;
        let uid = settings.provider_uid.split('-').next().unwrap_or_default();
        return Ok(format!("{}/{}/{uid}", object.kind, object.name).to_lowercase());
    };
    let failed = |e: String| {
        format!(
            "failed to create commit status: failed to evaluate the spec.commitStatusExpr CEL expression for the event: {e}"
        )
    };
    let mut event = serde_json::to_value(&*n.event).map_err(|e| failed(e.to_string()))?;
    event["metadata"] = serde_json::to_value(&n.metadata).unwrap_or(Value::Null);
    let alert = n
        .route
        .alert_object
        .as_deref()
        .cloned()
        .unwrap_or(Value::Null);
    use crate::cel::{Value as Cel, value};
    let result = expr
        .expression
        .evaluate(&[
            ("event", value(&event)),
            ("alert", value(&alert)),
            ("provider", value(&expr.provider)),
        ])
        .map_err(failed)?;
    match result {
        Cel::String(s) => Ok(s.to_string()),
        _ => Err(failed(format!(
            "failed to evaluate CEL expression as string: '{}'",
            expr.expression.source()
        ))),
    }
}

/// The marker Flux writes at the top of its change-request comments, which
/// finds the comment again: `<!-- <prefix>:<provider UID>/<kind>/<namespace>/<name> -->`.
pub fn comment_marker(prefix: &str, settings: &Settings, n: &Notification) -> String {
    let object = &n.event.involved_object;
    format!(
        "<!-- {prefix}:{}/{}/{}/{} -->",
        settings.provider_uid, object.kind, object.namespace, object.name
    )
}

/// The comment: the marker, then Flux's markdown post (`## Flux Status`,
/// the object, the message and the metadata but `change_request`).
pub fn comment_body(marker: &str, n: &Notification, rendered: Option<&Rendered>) -> String {
    let emoji = match n.event.severity {
        Severity::Error => "⚠️",
        _ => "ℹ️",
    };
    let object = &n.event.involved_object;
    let mut metadata = String::new();
    for (key, value) in super::listed_metadata(n, rendered).filter(|(k, _)| *k != "change_request")
    {
        let _ = writeln!(metadata, "* `{key}`: {value}");
    }
    format!(
        "{marker}\n\n## Flux Status\n\n{emoji} {}/{}/{}\n\n{}\n\nMetadata:\n{metadata}",
        object.kind,
        object.namespace,
        object.name,
        message_text(n, rendered)
    )
}

/// The change request number (`change_request` metadata).
pub fn change_request(n: &Notification) -> Result<u64, String> {
    let value = n
        .metadata
        .get("change_request")
        .ok_or_else(|| "missing \"change_request\" metadata key".to_owned())?;
    value
        .parse()
        .map_err(|_| format!("invalid \"change_request\" metadata value {value:?}"))
}

/// Go's `url.PathEscape`: a path segment, `/` escaped, and `,` and `;`
/// too (Go keeps them for meaning within a segment, so it escapes them).
pub fn path_escape(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for &b in segment.as_bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b'$'
            | b'&'
            | b'+'
            | b':'
            | b'='
            | b'@' => out.push(b as char),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Go's `url.QueryEscape`.
pub fn query_escape(value: &str) -> String {
    super::zulip::query_escape(value)
}

/// A request with a JSON body (`Body::json`), or without a body (a read:
/// no `Content-Type`, as the Go clients send it).
pub fn json_request(
    method: Method,
    url: String,
    body: Option<&impl Serialize>,
    auth: Auth,
) -> Result<Request, String> {
    let body = match body {
        Some(body) => Body::json(body)?,
        None => Body {
            content_type: "",
            bytes: bytes::Bytes::new(),
        },
    };
    Ok(Request {
        method,
        url: SecretString::new(url),
        headers: Vec::new(),
        final_headers: Vec::new(),
        body,
        auth,
    })
}

/// Sends a request; a 2xx answer is returned, anything else becomes the
/// verdict (retried or failed, as a single request's would be), its
/// reason prefixed with what was being done.
pub async fn exchange(
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
    Err(prefix(reply.verdict(), doing))
}

/// A verdict whose reason says what was being done.
pub fn prefix(verdict: Verdict, doing: &str) -> Verdict {
    match verdict {
        Verdict::Retry { reason, after } => Verdict::Retry {
            reason: format!("{doing}: {reason}"),
            after,
        },
        Verdict::Fail(reason) => Verdict::Fail(format!("{doing}: {reason}")),
        Verdict::Delivered => Verdict::Delivered,
    }
}

/// What `herald route` shows for a conversation: the write request's
/// method, path (the host is masked) and body.
pub fn show_write(request: &Request) -> Value {
    let path = url::Url::parse(request.url.expose())
        .map(|u| u.path().to_owned())
        .unwrap_or_default();
    serde_json::json!({
        "method": request.method.as_str(),
        "path": path,
        "body": request.body.show(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(address: &str) -> (String, String) {
        let a = parse_address(address).expect(address);
        (a.host, a.id)
    }

    /// The inputs of Flux's `TestParseGitAddress*` cases, and a few more.
    #[test]
    fn addresses_split_like_flux() {
        let table = [
            (
                "ssh://git@github.com/foo/bar",
                "https://github.com",
                "foo/bar",
            ),
            (
                "git@github.com:foo/bar.git",
                "https://github.com",
                "foo/bar",
            ),
            (
                "https://github.com/foo/bar",
                "https://github.com",
                "foo/bar",
            ),
            (
                "https://github.com/foo/bar.git",
                "https://github.com",
                "foo/bar",
            ),
            (
                "http://example.com:8080/foo/bar",
                "http://example.com:8080",
                "foo/bar",
            ),
            (
                "https://gitlab.com/foo/sub/bar",
                "https://gitlab.com",
                "foo/sub/bar",
            ),
            (
                "https://dev.azure.com/org/proj/_git/repo",
                "https://dev.azure.com",
                "org/proj/_git/repo",
            ),
            (
                "ssh://git@example.com:2222/foo/bar.git",
                "https://example.com:2222",
                "foo/bar",
            ),
        ];
        for (address, host, id) in table {
            assert_eq!(
                parsed(address),
                (host.to_owned(), id.to_owned()),
                "{address}"
            );
        }
        assert!(parse_address("not an address").is_err());
        assert!(parse_address("https://").is_err());
    }

    #[test]
    fn owner_and_repo_need_two_parts() {
        let a = parse_address("https://github.com/foo/bar").expect("address");
        assert_eq!(a.owner_and_repo(), Ok(("foo".into(), "bar".into())));
        let a = parse_address("https://github.com/foo/bar/baz").expect("address");
        assert!(a.owner_and_repo().unwrap_err().contains("foo/bar/baz"));
    }

    /// The revision forms of Flux's `TestParseRevision` and
    /// `TestTransformRevision` cases.
    #[test]
    fn revisions_parse_like_flux() {
        let sha = "a1afe267b54f38b46b487f6e938a6fd508278c07";
        for rev in [
            format!("main@sha1:{sha}"),
            format!("sha1:{sha}"),
            format!("main/{sha}"),
            format!("feature/branch/{sha}"),
            format!("HEAD/{sha}"),
            format!("v1.0.0@sha1:{sha}"),
            sha.to_owned(),
        ] {
            assert_eq!(parse_revision(&rev).as_deref(), Ok(sha), "{rev}");
        }
        let sha256 = "d52bde83c5b2bd0fa7910264e0afc3ac9cfe9b6636ca29c05c09742f01d5a4bd";
        for rev in [
            format!("main@sha256:{sha256}"),
            sha256.to_owned(),
            "main@sha1:abc".to_owned(),
            "v1.0.0".to_owned(),
            String::new(),
        ] {
            assert_eq!(
                parse_revision(&rev),
                Err(format!(
                    "failed to extract commit hash from '{rev}' revision"
                )),
                "{rev}"
            );
        }
    }

    #[test]
    fn transform_keeps_the_pointer() {
        let sha = "5394cb7f48332b2de7c17dd8b8384bbc84b7e738";
        assert_eq!(
            transform_revision(&format!("main/{sha}")),
            format!("main@sha1:{sha}")
        );
        assert_eq!(
            transform_revision(&format!("HEAD/{sha}")),
            format!("sha1:{sha}")
        );
        assert_eq!(
            transform_revision(&format!("feature/branch/{sha}")),
            format!("feature/branch@sha1:{sha}")
        );
    }

    #[test]
    fn escapes_like_go() {
        assert_eq!(path_escape("org/repo.x"), "org%2Frepo.x");
        assert_eq!(path_escape("a b@c"), "a%20b@c");
        // As Go: `,` `;` `?` escaped in a segment; `$ & + : = @` kept.
        assert_eq!(path_escape("a,b;c?d"), "a%2Cb%3Bc%3Fd");
        assert_eq!(path_escape("$&+:=@"), "$&+:=@");
        assert_eq!(
            query_escape("kustomization/app/1"),
            "kustomization%2Fapp%2F1"
        );
    }

    #[test]
    fn the_default_id_takes_the_first_part_of_the_uid() {
        let n = super::super::testing::notification(Severity::Info, &[]);
        let settings = Settings {
            provider_uid: "0c9c2e41-d2f9-4f9b-9c41-2131e1b4a8a1".into(),
            ..Settings::default()
        };
        assert_eq!(
            commit_status_id(&settings, &n).as_deref(),
            Ok("kustomization/app/0c9c2e41")
        );
    }

    fn with_expr(source: &str) -> Settings {
        let expression = crate::cel::compile(
            source,
            &["event", "alert", "provider"],
            crate::cel::Output::Any,
        )
        .expect("compiles");
        Settings {
            provider_uid: "0c9c2e41-d2f9".into(),
            commit_status_expr: Some(super::super::CommitStatusExpr {
                expression: std::sync::Arc::new(expression),
                provider: std::sync::Arc::new(serde_json::json!({"metadata": {"name": "forge"}})),
            }),
            ..Settings::default()
        }
    }

    #[test]
    fn the_expression_reads_event_metadata_alert_and_provider() {
        let mut n =
            super::super::testing::notification(Severity::Info, &[("revision", "main@sha1:abc")]);
        let mut route = (*n.route).clone();
        route.alert_object = Some(std::sync::Arc::new(
            serde_json::json!({"metadata": {"name": "commits"}}),
        ));
        n.route = std::sync::Arc::new(route);
        let settings = with_expr(
            "event.involvedObject.name + '/' + event.metadata.revision + '/' + alert.metadata.name + '/' + provider.metadata.name",
        );
        assert_eq!(
            commit_status_id(&settings, &n).as_deref(),
            Ok("app/main@sha1:abc/commits/forge")
        );
        let not_a_string = with_expr("1 + 1");
        assert_eq!(
            commit_status_id(&not_a_string, &n),
            Err("failed to create commit status: failed to evaluate the spec.commitStatusExpr CEL expression for the event: failed to evaluate CEL expression as string: '1 + 1'".into())
        );
        let missing = with_expr("event.metadata.absent");
        let e = commit_status_id(&missing, &n).expect_err("no such key");
        assert!(e.starts_with("failed to create commit status: failed to evaluate the spec.commitStatusExpr CEL expression for the event: failed to evaluate the CEL expression 'event.metadata.absent'"), "{e}");
    }

    #[test]
    fn comments_carry_the_marker_and_flux_markdown() {
        let n = super::super::testing::notification(
            Severity::Error,
            &[("change_request", "42"), ("revision", "main@sha1:abc")],
        );
        let settings = Settings {
            provider_uid: "uid-1".into(),
            ..Settings::default()
        };
        let marker = comment_marker("flux-pr-comment-key", &settings, &n);
        assert_eq!(
            marker,
            "<!-- flux-pr-comment-key:uid-1/Kustomization/flux-system/app -->"
        );
        assert_eq!(
            comment_body(&marker, &n, None),
            format!(
                "{marker}\n\n## Flux Status\n\n⚠️ Kustomization/flux-system/app\n\nHealth check failed\n\nMetadata:\n* `revision`: main@sha1:abc\n"
            )
        );
        assert_eq!(change_request(&n), Ok(42));
        let bad = super::super::testing::notification(Severity::Error, &[("change_request", "x")]);
        assert_eq!(
            change_request(&bad),
            Err("invalid \"change_request\" metadata value \"x\"".into())
        );
    }
}
