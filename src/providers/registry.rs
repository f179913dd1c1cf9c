//! The registry: one row per provider type, holding everything herald
//! knows of the type — how to build it, which of Flux's classes of events
//! it receives, what its address is, which credentials it reads. Every
//! other module asks here, so a new type is its own file, one row below
//! and one [`ProviderType`] variant.

use super::{Constructor, git};
use super::{
    alertmanager, azureeventhub, datadog, discord, generic, googlechat, googlepubsub, grafana,
    incidentio, lark, mastodon, matrix, msteams, nats, opsgenie, otel, pagerduty, rocket, sentry,
    slack, telegram, webex, zoom, zulip,
};
use crate::api::ProviderType;

/// Which events Flux sends a type (`getNotificationParams`; see
/// [`crate::routing::provider_rules`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// A chat, incident or bus service: every matched event.
    Message,
    /// `generic`/`generic-hmac`: every matched event, commit-status updates
    /// included.
    Generic,
    /// Sets Git commit statuses (Flux's `isCommitStatusProvider`).
    CommitStatus,
    /// Comments on pull or merge requests (Flux's `isChangeRequestProvider`).
    ChangeRequest,
}

/// What a type's address is, and so how routing checks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Address {
    /// An http(s) URL.
    Url,
    /// A repository's clone URL, any scheme Git takes (SSH included).
    CloneUrl,
    /// The service's own form (a NATS server, a GCP project, an Event Hubs
    /// connection string): its provider checks it.
    Own,
}

/// One provider type's row.
#[derive(Clone, Copy)]
pub struct Entry {
    /// Builds the type's notifier from its settings.
    pub new: Constructor,
    pub class: Class,
    pub address: Address,
    /// Reads GitHub App keys (`githubAppID`, …) from its Secret.
    pub github_app: bool,
    /// Authenticates as `spec.serviceAccountName` (workload identity).
    pub workload_identity: bool,
}

impl Entry {
    /// A row for a message service at an http(s) URL.
    const fn message(new: Constructor) -> Self {
        Self {
            new,
            class: Class::Message,
            address: Address::Url,
            github_app: false,
            workload_identity: false,
        }
    }

    const fn class(self, class: Class) -> Self {
        Self { class, ..self }
    }

    const fn address(self, address: Address) -> Self {
        Self { address, ..self }
    }

    const fn github_app(self) -> Self {
        Self {
            github_app: true,
            ..self
        }
    }

    const fn workload_identity(self) -> Self {
        Self {
            workload_identity: true,
            ..self
        }
    }
}

/// The row of `kind`.
pub fn entry(kind: ProviderType) -> Entry {
    use Address::{CloneUrl, Own};
    use Class::{ChangeRequest, CommitStatus, Generic};
    use ProviderType as T;
    let row = Entry::message;
    match kind {
        T::Slack => row(slack::new),
        T::Generic => row(generic::new).class(Generic),
        T::GenericHmac => row(generic::new_hmac).class(Generic),
        T::Msteams => row(msteams::new),
        T::Discord => row(discord::new),
        T::Rocket => row(rocket::new),
        T::Googlechat => row(googlechat::new),
        T::Webex => row(webex::new),
        T::Telegram => row(telegram::new),
        T::Lark => row(lark::new),
        T::Matrix => row(matrix::new),
        T::Zulip => row(zulip::new),
        T::Zoom => row(zoom::new),
        T::Mastodon => row(mastodon::new),
        T::Opsgenie => row(opsgenie::new),
        T::Pagerduty => row(pagerduty::new),
        T::Alertmanager => row(alertmanager::new),
        T::Grafana => row(grafana::new),
        T::Datadog => row(datadog::new),
        T::IncidentIo => row(incidentio::new),
        T::Sentry => row(sentry::new),
        T::Otel => row(otel::new),
        T::Nats => row(nats::new).address(Own),
        T::Googlepubsub => row(googlepubsub::new).address(Own).workload_identity(),
        T::Azureeventhub => row(azureeventhub::new).address(Own).workload_identity(),
        T::Github => row(git::github::new_status)
            .class(CommitStatus)
            .address(CloneUrl)
            .github_app(),
        T::Githubdispatch => row(git::github::new_dispatch)
            .address(CloneUrl)
            .github_app(),
        T::Githubpullrequestcomment => row(git::github::new_comment)
            .class(ChangeRequest)
            .address(CloneUrl)
            .github_app(),
        T::Gitlab => row(git::gitlab::new_status)
            .class(CommitStatus)
            .address(CloneUrl),
        T::Gitlabmergerequestcomment => row(git::gitlab::new_comment)
            .class(ChangeRequest)
            .address(CloneUrl),
        T::Gitea => row(git::gitea::new_status)
            .class(CommitStatus)
            .address(CloneUrl),
        T::Giteapullrequestcomment => row(git::gitea::new_comment)
            .class(ChangeRequest)
            .address(CloneUrl),
        T::Bitbucket => row(git::bitbucket::new)
            .class(CommitStatus)
            .address(CloneUrl),
        // Flux parses a Bitbucket Server address as an http(s) URL.
        T::Bitbucketserver => row(git::bitbucketserver::new).class(CommitStatus),
        T::Azuredevops => row(git::azuredevops::new)
            .class(CommitStatus)
            .address(CloneUrl)
            .workload_identity(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every type, in the CRD's order: read from the schema the CRD is
    /// generated from, so a new variant is in the list without editing it.
    fn all_types() -> Vec<ProviderType> {
        fn names(schema: &serde_json::Value, out: &mut Vec<String>) {
            match schema {
                serde_json::Value::Object(fields) => {
                    for (key, value) in fields {
                        match (key.as_str(), value) {
                            ("enum", serde_json::Value::Array(items)) => out
                                .extend(items.iter().filter_map(|i| i.as_str().map(str::to_owned))),
                            ("const", serde_json::Value::String(name)) => out.push(name.clone()),
                            _ => names(value, out),
                        }
                    }
                }
                serde_json::Value::Array(items) => items.iter().for_each(|i| names(i, out)),
                _ => {}
            }
        }
        let schema = serde_json::to_value(schemars::schema_for!(ProviderType)).expect("schema");
        let mut found = Vec::new();
        names(&schema, &mut found);
        assert!(found.len() > 30, "the schema lists the types: {schema}");
        found
            .into_iter()
            .map(|name| serde_json::from_value(name.into()).expect("a type"))
            .collect()
    }

    /// `as_str` is the name a manifest gives each type.
    #[test]
    fn every_type_is_named_as_in_manifests() {
        for kind in all_types() {
            assert_eq!(serde_json::to_value(kind).expect("name"), kind.as_str());
        }
    }

    /// The rows agree with Flux's lists (`isCommitStatusProvider`,
    /// `isChangeRequestProvider`) and with the types whose Secret may hold
    /// GitHub App keys.
    #[test]
    fn the_rows_hold_fluxs_classes() {
        let of = |class| {
            all_types()
                .into_iter()
                .filter(|kind| entry(*kind).class == class)
                .map(|kind| kind.as_str())
                .collect::<std::collections::BTreeSet<_>>()
        };
        assert_eq!(
            of(Class::CommitStatus),
            std::collections::BTreeSet::from([
                "github",
                "gitlab",
                "gitea",
                "bitbucketserver",
                "bitbucket",
                "azuredevops"
            ])
        );
        assert_eq!(
            of(Class::ChangeRequest),
            std::collections::BTreeSet::from([
                "githubpullrequestcomment",
                "gitlabmergerequestcomment",
                "giteapullrequestcomment"
            ])
        );
        assert_eq!(
            of(Class::Generic),
            std::collections::BTreeSet::from(["generic", "generic-hmac"])
        );
        let mut github_app: Vec<_> = all_types()
            .into_iter()
            .filter(|kind| entry(*kind).github_app)
            .map(|kind| kind.as_str())
            .collect();
        github_app.sort();
        assert_eq!(
            github_app,
            ["github", "githubdispatch", "githubpullrequestcomment"]
        );
    }
}
