//! Flux's rules on which matched events a provider type receives (Flux
//! v1.9.3, `getNotificationParams` in `internal/server/event_handlers.go`;
//! DESIGN §3.3). They apply after an event has matched an Alert.

use crate::api::{FluxEvent, ProviderType, Severity};
use crate::providers::registry::{self, Class};

use super::metadata::{EVENT_GROUP, in_group};

/// Why a matched event is not sent to a provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Withheld {
    /// A commit-status update (`<group>/commit_status: update`) is only for
    /// Git commit-status providers and `generic`/`generic-hmac`.
    CommitStatusUpdate,
    /// A commit-status provider gets commit-status updates, events carrying
    /// the commit key, and errors; nothing else.
    NoCommitForCommitStatus,
    /// A change-request provider needs the change-request key.
    NoChangeRequest,
}

impl Withheld {
    /// A sentence for logs and `herald route --explain`.
    pub fn describe(self) -> &'static str {
        match self {
            Withheld::CommitStatusUpdate => {
                "a commit status update (metadata commit_status: update) is sent only to \
                 Git commit-status providers and generic/generic-hmac, as in Flux"
            }
            Withheld::NoCommitForCommitStatus => {
                "a commit-status provider gets only commit status updates, events with the \
                 event.toolkit.fluxcd.io/commit key, and errors, as in Flux"
            }
            Withheld::NoChangeRequest => {
                "a change-request provider gets only events with the \
                 event.toolkit.fluxcd.io/change_request key, as in Flux"
            }
        }
    }
}

/// Whether `kind` sets Git commit statuses (Flux's `isCommitStatusProvider`).
pub fn is_commit_status_provider(kind: ProviderType) -> bool {
    registry::entry(kind).class == Class::CommitStatus
}

/// Whether `kind` comments on pull or merge requests (Flux's `isChangeRequestProvider`).
pub fn is_change_request_provider(kind: ProviderType) -> bool {
    registry::entry(kind).class == Class::ChangeRequest
}

fn is_generic(kind: ProviderType) -> bool {
    registry::entry(kind).class == Class::Generic
}

/// `<object group>/commit_status` is `update` (Flux's `isCommitStatusUpdate`).
pub fn is_commit_status_update(event: &FluxEvent) -> bool {
    let group = event.involved_object.group();
    event
        .metadata
        .iter()
        .any(|(key, value)| in_group(key, group) == Some("commit_status") && value == "update")
}

fn has_event_key(event: &FluxEvent, name: &str) -> bool {
    event
        .metadata
        .iter()
        .any(|(key, value)| in_group(key, EVENT_GROUP) == Some(name) && !value.is_empty())
}

/// Whether a provider of type `kind` receives `event`, in Flux's order of checks.
pub fn check(kind: ProviderType, event: &FluxEvent) -> Result<(), Withheld> {
    let commit_status = is_commit_status_provider(kind);
    let update = is_commit_status_update(event);
    if !commit_status && !is_generic(kind) && update {
        return Err(Withheld::CommitStatusUpdate);
    }
    if commit_status
        && !has_event_key(event, "commit")
        && !update
        && event.severity != Severity::Error
    {
        return Err(Withheld::NoCommitForCommitStatus);
    }
    if is_change_request_provider(kind) && !has_event_key(event, "change_request") {
        return Err(Withheld::NoChangeRequest);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(severity: Severity, metadata: &[(&str, &str)]) -> FluxEvent {
        crate::api::event::sample("Kustomization", "app", severity, "m", metadata)
    }

    fn finished() -> FluxEvent {
        event(
            Severity::Info,
            &[
                ("kustomize.toolkit.fluxcd.io/commit_status", "update"),
                ("kustomize.toolkit.fluxcd.io/revision", "main@sha1:abc"),
            ],
        )
    }

    /// Flux v1.9.3: kustomize-controller's "Reconciliation finished" event
    /// (commit_status: update) never reaches a chat provider.
    #[test]
    fn flux_withholds_commit_status_updates_from_chat_providers() {
        for kind in [
            ProviderType::Slack,
            ProviderType::Msteams,
            ProviderType::Discord,
        ] {
            assert_eq!(
                check(kind, &finished()),
                Err(Withheld::CommitStatusUpdate),
                "{kind:?}"
            );
        }
        // Another value, or the key under another group, is not an update.
        let other = event(
            Severity::Info,
            &[("kustomize.toolkit.fluxcd.io/commit_status", "other")],
        );
        assert_eq!(check(ProviderType::Slack, &other), Ok(()));
        let wrong_group = event(
            Severity::Info,
            &[("source.toolkit.fluxcd.io/commit_status", "update")],
        );
        assert_eq!(check(ProviderType::Slack, &wrong_group), Ok(()));
    }

    /// Flux v1.9.3: generic and generic-hmac forward commit-status updates as they are.
    #[test]
    fn flux_forwards_commit_status_updates_to_generic_providers() {
        assert_eq!(check(ProviderType::Generic, &finished()), Ok(()));
        assert_eq!(check(ProviderType::GenericHmac, &finished()), Ok(()));
    }

    /// Flux v1.9.3: a commit-status provider gets updates, events with the
    /// commit key, and errors; an info event without the key is dropped.
    #[test]
    fn flux_commit_status_providers_get_updates_commits_and_errors() {
        assert_eq!(check(ProviderType::Github, &finished()), Ok(()));
        let with_commit = event(Severity::Info, &[("event.toolkit.fluxcd.io/commit", "abc")]);
        assert_eq!(check(ProviderType::Gitlab, &with_commit), Ok(()));
        assert_eq!(
            check(ProviderType::Gitea, &event(Severity::Error, &[])),
            Ok(())
        );
        assert_eq!(
            check(ProviderType::Bitbucket, &event(Severity::Info, &[])),
            Err(Withheld::NoCommitForCommitStatus)
        );
        let empty_commit = event(Severity::Warn, &[("event.toolkit.fluxcd.io/commit", "")]);
        assert_eq!(
            check(ProviderType::Azuredevops, &empty_commit),
            Err(Withheld::NoCommitForCommitStatus)
        );
    }

    /// Flux v1.9.3: change-request providers need event.toolkit.fluxcd.io/change_request.
    #[test]
    fn flux_change_request_providers_need_the_change_request_key() {
        let plain = event(Severity::Error, &[]);
        assert_eq!(
            check(ProviderType::Githubpullrequestcomment, &plain),
            Err(Withheld::NoChangeRequest)
        );
        let with_key = event(
            Severity::Info,
            &[("event.toolkit.fluxcd.io/change_request", "42")],
        );
        assert_eq!(
            check(ProviderType::Gitlabmergerequestcomment, &with_key),
            Ok(())
        );
        assert_eq!(check(ProviderType::Slack, &plain), Ok(()));
    }
}
