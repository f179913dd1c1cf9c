//! The reasons herald gives: the `reason` of its `Ready` conditions, of
//! its Kubernetes Events and of `herald check`'s findings. One enum, so a
//! reason is spelled once, and what a reason implies (whether it may go
//! away by itself, whether it is a suspension) is decided here and not by
//! comparing strings. Reasons Flux also gives are spelled as Flux spells
//! them.

use std::fmt;

/// Why an object is or is not ready, or why an Event was recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    // Ready, or not acting on purpose.
    /// Ready: everything checked out.
    Succeeded,
    /// `spec.suspend: true`.
    Suspended,
    /// The Alert's Provider has `spec.suspend: true`.
    ProviderSuspended,

    // What is referenced is missing or not ready: may change without the
    // object changing.
    /// The Alert's Provider does not exist.
    ProviderNotFound,
    /// The Alert's Provider exists but is not ready.
    ProviderNotReady,
    /// A referenced Secret does not exist.
    SecretNotFound,
    /// A Receiver's Secret has no `token`.
    TokenNotFound,
    /// herald failed on its side; it tries again.
    InternalError,

    // The object itself is wrong.
    /// A cross-namespace reference with `--no-cross-namespace-refs`.
    AccessDenied,
    /// The object does not decode (a field of the wrong type or value).
    InvalidSpec,
    /// A referenced Secret lacks a key the type needs.
    SecretKeyMissing,
    /// A referenced Secret exists but cannot be read (a value not base64).
    InvalidSecret,
    InvalidAddress,
    InvalidToken,
    InvalidCredentials,
    InvalidChannel,
    /// The type needs a channel and there is none.
    ChannelMissing,
    InvalidHeaders,
    InvalidProxy,
    InvalidCertificate,
    InvalidGitHubApp,
    InvalidDSN,
    InvalidTimeout,
    InvalidCommitStatusExpr,
    InvalidCELExpression,
    InvalidRegex,
    InvalidTemplate,
    InvalidDigest,
    /// `spec.serviceAccountName` without workload identity enabled.
    WorkloadIdentityNotSupported,
    /// An Alert option the Provider's type does not support.
    DigestNotSupported,
    ThreadsNotSupported,
    ThreadsNeedBotToken,
    BlocksNotSupported,
    /// A Receiver's CEL validation refused its request.
    ValidationFailed,

    // Manifests (`serve`, `route`, `check`).
    /// A manifest file cannot be read.
    ManifestUnreadable,
    /// A manifest is not YAML.
    InvalidYAML,
    /// A document is not an object herald reads.
    InvalidManifest,
    /// A kind herald does not serve.
    UnknownKind,
    /// A field no version of the kind has (a warning).
    UnknownField,
    /// The same object twice.
    DuplicateObject,

    // `herald check` notes.
    /// Something to know about a usable object.
    Warning,
    /// An Alert that no event can reach.
    EventsIgnored,
    /// A herald-only field a Flux controller would refuse.
    FluxIncompatible,

    // Warning Events on Alerts, with Flux's reasons where Flux has one for
    // the same situation (tools that alert on Event reasons keep working).
    /// A notification was not delivered.
    NotificationDispatchFailed,
    /// The Alert's template failed; the default format was sent.
    TemplateRenderFailed,
    /// The labels of an event's object could not be read for `matchLabels`.
    SourceFetchFailed,
    /// The Alert is wrong (the Event names herald's reason in its message).
    InvalidConfig,
    /// A metadata key came from more than one source (Flux RFC 0008).
    MetadataAppendFailed,
}

impl Reason {
    /// The reason as written in conditions and Events.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "Succeeded",
            Self::Suspended => "Suspended",
            Self::ProviderSuspended => "ProviderSuspended",
            Self::ProviderNotFound => "ProviderNotFound",
            Self::ProviderNotReady => "ProviderNotReady",
            Self::SecretNotFound => "SecretNotFound",
            Self::TokenNotFound => "TokenNotFound",
            Self::InternalError => "InternalError",
            Self::AccessDenied => "AccessDenied",
            Self::InvalidSpec => "InvalidSpec",
            Self::SecretKeyMissing => "SecretKeyMissing",
            Self::InvalidSecret => "InvalidSecret",
            Self::InvalidAddress => "InvalidAddress",
            Self::InvalidToken => "InvalidToken",
            Self::InvalidCredentials => "InvalidCredentials",
            Self::InvalidChannel => "InvalidChannel",
            Self::ChannelMissing => "ChannelMissing",
            Self::InvalidHeaders => "InvalidHeaders",
            Self::InvalidProxy => "InvalidProxy",
            Self::InvalidCertificate => "InvalidCertificate",
            Self::InvalidGitHubApp => "InvalidGitHubApp",
            Self::InvalidDSN => "InvalidDSN",
            Self::InvalidTimeout => "InvalidTimeout",
            Self::InvalidCommitStatusExpr => "InvalidCommitStatusExpr",
            Self::InvalidCELExpression => "InvalidCELExpression",
            Self::InvalidRegex => "InvalidRegex",
            Self::InvalidTemplate => "InvalidTemplate",
            Self::InvalidDigest => "InvalidDigest",
            Self::WorkloadIdentityNotSupported => "WorkloadIdentityNotSupported",
            Self::DigestNotSupported => "DigestNotSupported",
            Self::ThreadsNotSupported => "ThreadsNotSupported",
            Self::ThreadsNeedBotToken => "ThreadsNeedBotToken",
            Self::BlocksNotSupported => "BlocksNotSupported",
            Self::ValidationFailed => "ValidationFailed",
            Self::ManifestUnreadable => "ManifestUnreadable",
            Self::InvalidYAML => "InvalidYAML",
            Self::InvalidManifest => "InvalidManifest",
            Self::UnknownKind => "UnknownKind",
            Self::UnknownField => "UnknownField",
            Self::DuplicateObject => "DuplicateObject",
            Self::Warning => "Warning",
            Self::EventsIgnored => "EventsIgnored",
            Self::FluxIncompatible => "FluxIncompatible",
            Self::NotificationDispatchFailed => "NotificationDispatchFailed",
            Self::TemplateRenderFailed => "TemplateRenderFailed",
            Self::SourceFetchFailed => "SourceFetchFailed",
            Self::InvalidConfig => "InvalidConfig",
            Self::MetadataAppendFailed => "MetadataAppendFailed",
        }
    }

    /// Whether the problem may go away without the object changing (a
    /// Secret or Provider created later, herald's own retry): kstatus then
    /// reads the object as in progress, not `Stalled`.
    pub const fn may_fix_itself(self) -> bool {
        matches!(
            self,
            Self::SecretNotFound | Self::ProviderNotFound | Self::InternalError
        )
    }

    /// The reason of the Warning Event recorded when an object turns not
    /// ready for this reason: Flux's `InvalidConfig` for an Alert that is
    /// wrong itself (Flux records it when such an Alert meets an event),
    /// else the condition's own reason.
    pub const fn event_reason(self, on_alert: bool) -> Self {
        if on_alert
            && !self.may_fix_itself()
            && !self.is_suspension()
            && !matches!(self, Self::ProviderNotFound | Self::ProviderNotReady)
        {
            Self::InvalidConfig
        } else {
            self
        }
    }

    /// Not acting on purpose: kstatus reads it as ready (`Ready=True`).
    pub const fn is_suspension(self) -> bool {
        matches!(self, Self::Suspended | Self::ProviderSuspended)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Reason> for String {
    fn from(reason: Reason) -> Self {
        reason.as_str().to_owned()
    }
}
