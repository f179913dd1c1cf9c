//! Building a routing table from a snapshot, and every validation the
//! controller applies to Alerts and Providers (what `herald check` reports).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{
    CompiledAlert, Destination, DigestPolicy, PatternList, RoutingTable, SourceRoute, TableOptions,
};
use crate::api::Reason;
use crate::api::{Alert, MessageTemplate};
use crate::goregex::matcher::LazyMatcher;
use crate::goregex::{self, CompileError};
use crate::notification::Route;
use crate::providers::resolve;
use crate::source::{Kind, Level, ObjectKey, Origin, Problem, Snapshot};
use crate::template::CompiledTemplate;

/// The kinds Flux's controllers send events about (Flux's Alert CRD enum).
const FLUX_KINDS: [&str; 12] = [
    "Bucket",
    "GitRepository",
    "Kustomization",
    "HelmRelease",
    "HelmChart",
    "HelmRepository",
    "ImageRepository",
    "ImagePolicy",
    "ImageUpdateAutomation",
    "OCIRepository",
    "ArtifactGenerator",
    "ExternalArtifact",
];

/// Builds the table and lists every problem found on the way. Broken objects
/// are left out of the table; everything else still routes.
pub fn build(snapshot: &Snapshot, options: &TableOptions) -> (RoutingTable, Vec<Problem>) {
    build_with(snapshot, options, RegexCache::default())
}

/// [`build`], compiling lists with `regexes`.
pub(super) fn build_with(
    snapshot: &Snapshot,
    options: &TableOptions,
    mut regexes: RegexCache,
) -> (RoutingTable, Vec<Problem>) {
    let mut problems = snapshot.undecodable.clone();
    let destinations = resolve_providers(snapshot, &mut problems);
    regexes.prepare(snapshot.alerts.iter().flat_map(|loaded| {
        let spec = &loaded.object.spec;
        [
            spec.inclusion_list.as_deref(),
            spec.exclusion_list.as_deref(),
        ]
        .into_iter()
        .flatten()
    }));
    let mut table = RoutingTable {
        labels: snapshot.labels.clone(),
        ..Default::default()
    };
    for loaded in &snapshot.alerts {
        let mut report = |level, reason, message: String| {
            problems.push(problem(
                &loaded.origin,
                Kind::Alert,
                &*loaded.object,
                level,
                reason,
                message,
            ));
        };
        let Some(alert) = compile_alert(
            &loaded.object,
            &destinations,
            options,
            &mut regexes,
            &mut report,
        ) else {
            continue;
        };
        table.alert_count += 1;
        for (i, source) in loaded.object.spec.event_sources.iter().enumerate() {
            if !FLUX_KINDS.contains(&source.kind.as_str()) {
                report(
                    Level::Warning,
                    Reason::UnknownKind,
                    format!(
                        "spec.eventSources[{i}].kind: '{}' is not a kind Flux sends events about \
                         (expected one of {}); it will match nothing unless something else sends such events",
                        source.kind,
                        FLUX_KINDS.join(", ")
                    ),
                );
            }
            let namespace = source
                .namespace
                .clone()
                .unwrap_or_else(|| alert.key.namespace.clone());
            if options.no_cross_namespace_refs && namespace != alert.key.namespace {
                report(
                    Level::Error,
                    Reason::AccessDenied,
                    format!(
                        "spec.eventSources[{i}].namespace: '{namespace}' is another namespace, \
                         and cross-namespace references are disabled (--no-cross-namespace-refs)"
                    ),
                );
                continue;
            }
            let routes = table
                .index
                .entry(namespace)
                .or_default()
                .entry(source.kind.clone())
                .or_default();
            let route = SourceRoute {
                match_labels: source.match_labels.clone(),
                alert: alert.clone(),
            };
            match source.name.as_str() {
                "*" => routes.any_name.push(route),
                exact => routes
                    .by_name
                    .entry(exact.to_owned())
                    .or_default()
                    .push(route),
            }
        }
    }
    for routes in table.index.values_mut().flat_map(HashMap::values_mut) {
        if routes.any_name.len() >= super::SCREEN_FROM {
            routes.screen = super::Screen::build(&routes.any_name);
        }
    }
    (table, problems)
}

/// What became of each Provider.
enum ProviderState {
    Ready(Arc<Destination>),
    Suspended,
    /// Why, as its own status says it.
    Broken(String),
}

/// Providers from which resolving is worth a thread each share.
const PARALLEL_PROVIDERS_FROM: usize = 64;

/// Resolves every Provider (its Secret, address, TLS settings, notifier),
/// on all cores: each is independent, and with thousands of Providers this
/// was the largest sequential part of a build.
fn resolve_providers(
    snapshot: &Snapshot,
    problems: &mut Vec<Problem>,
) -> HashMap<ObjectKey, ProviderState> {
    // A fixed hasher: a destination keeps its queue across table rebuilds,
    // so notifications accepted before and after a reload stay in order.
    let hasher =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
    let resolved = crate::parallel::map(
        &snapshot.providers,
        PARALLEL_PROVIDERS_FROM,
        |loaded| resolve_provider(loaded, snapshot, &hasher),
        || None,
    );
    // A Provider that does not decode is known, and broken: its Alerts say
    // "not ready" (its own status says why), not "not found".
    let undecodable = snapshot.undecodable.iter().filter_map(|p| match &p.target {
        Some((Kind::Provider, key)) => {
            Some((key.clone(), ProviderState::Broken(p.message.clone())))
        }
        _ => None,
    });
    snapshot
        .providers
        .iter()
        .zip(resolved)
        .map(|(loaded, resolved)| {
            let provider = &*loaded.object;
            let key = object_key(
                provider.metadata.namespace.as_deref(),
                provider.metadata.name.as_deref(),
            );
            let (state, found) = resolved.unwrap_or_else(|| {
                let why = "internal error while resolving this provider".to_owned();
                (
                    ProviderState::Broken(why.clone()),
                    vec![(Level::Error, Reason::InternalError, why)],
                )
            });
            for (level, reason, message) in found {
                problems.push(problem(
                    &loaded.origin,
                    Kind::Provider,
                    provider,
                    level,
                    reason,
                    message,
                ));
            }
            (key, state)
        })
        .chain(undecodable)
        .collect()
}

/// What to report about a Provider: level, reason, message.
type Finding = (Level, Reason, String);

/// One Provider's state and what to report about it.
fn resolve_provider(
    loaded: &crate::source::Loaded<crate::api::Provider>,
    snapshot: &Snapshot,
    hasher: &impl std::hash::BuildHasher,
) -> Option<(ProviderState, Vec<Finding>)> {
    let provider = &*loaded.object;
    if provider.spec.suspend == Some(true) {
        let why = "spec.suspend is true: nothing is delivered through this provider";
        return Some((
            ProviderState::Suspended,
            vec![(Level::Note, Reason::Suspended, why.into())],
        ));
    }
    let key = object_key(
        provider.metadata.namespace.as_deref(),
        provider.metadata.name.as_deref(),
    );
    Some(match resolve::resolve(provider, &key, snapshot, hasher) {
        Ok(resolve::Resolved {
            destination,
            warnings,
        }) => (
            ProviderState::Ready(Arc::new(destination)),
            warnings
                .into_iter()
                .map(|w| (Level::Warning, Reason::Warning, w))
                .collect(),
        ),
        Err(failures) => (
            ProviderState::Broken(
                failures
                    .iter()
                    .map(|(_, message)| message.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            failures
                .into_iter()
                .map(|(reason, message)| (Level::Error, reason, message))
                .collect(),
        ),
    })
}

/// Validates an Alert and, when its Provider is ready, compiles it. The
/// Alert's own fields are checked first, so `herald check` and the status
/// report every problem in one run even when the Provider is broken too.
fn compile_alert(
    alert: &Alert,
    destinations: &HashMap<ObjectKey, ProviderState>,
    options: &TableOptions,
    regexes: &mut RegexCache,
    report: &mut impl FnMut(Level, Reason, String),
) -> Option<Arc<CompiledAlert>> {
    let key = object_key(
        alert.metadata.namespace.as_deref(),
        alert.metadata.name.as_deref(),
    );
    let spec = &alert.spec;
    if spec.event_sources.is_empty() {
        report(
            Level::Error,
            Reason::InvalidSpec,
            "spec.eventSources is empty: the Alert can never match".into(),
        );
    }
    let inclusion = regexes.compile("spec.inclusionList", spec.inclusion_list.as_deref(), report);
    let exclusion = regexes.compile("spec.exclusionList", spec.exclusion_list.as_deref(), report);
    let provider_key = ObjectKey::new(key.namespace.as_str(), spec.provider_ref.name.as_str());
    let destination = match destinations.get(&provider_key) {
        Some(ProviderState::Ready(destination)) => Some(destination.clone()),
        Some(ProviderState::Suspended) => {
            report(
                Level::Note,
                Reason::ProviderSuspended,
                format!("spec.providerRef: provider {provider_key} is suspended"),
            );
            None
        }
        Some(ProviderState::Broken(why)) => {
            report(
                Level::Note,
                Reason::ProviderNotReady,
                format!("spec.providerRef: provider {provider_key} is not ready: {why}"),
            );
            None
        }
        None => {
            report(
                Level::Error,
                Reason::ProviderNotFound,
                format!("spec.providerRef: provider {provider_key} not found"),
            );
            None
        }
    };
    let template = compile_template(spec.template.as_ref(), destination.as_deref(), report);
    let digest = digest_policy(spec.digest.as_ref(), destination.as_deref(), report);
    let destination = destination?;
    if spec.suspend == Some(true) {
        report(
            Level::Note,
            Reason::Suspended,
            "spec.suspend is true: events are not routed".into(),
        );
        return None;
    }
    let severities = spec
        .event_severity
        .clone()
        .unwrap_or(crate::api::SeverityFilter::AtLeast(
            options.default_severity,
        ))
        .mask();
    let channel = spec.channel.clone().filter(|c| !c.is_empty());
    Some(Arc::new(CompiledAlert {
        template,
        digest,
        inclusion,
        exclusion,
        route: Arc::new(route(alert, key.clone(), channel, &destination)),
        key,
        destination,
        event_metadata: event_metadata(spec.event_metadata.as_ref(), options),
        summary: spec.summary.clone(),
        severities,
    }))
}

/// The Alert's `eventMetadata`, over the cluster's name (`--cluster-name`,
/// as key `cluster`) when herald has one: the Alert's own value wins.
fn event_metadata(
    own: Option<&std::collections::BTreeMap<String, String>>,
    options: &TableOptions,
) -> std::collections::BTreeMap<String, String> {
    let mut metadata = std::collections::BTreeMap::new();
    if let Some(cluster) = options.cluster_name.as_deref().filter(|c| !c.is_empty()) {
        metadata.insert(CLUSTER_KEY.to_owned(), cluster.to_owned());
    }
    metadata.extend(
        own.into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    metadata
}

/// The metadata key `--cluster-name` fills.
pub const CLUSTER_KEY: &str = "cluster";

/// The compiled size limit of the set that matches a whole list at once, in
/// bytes: a few times one pattern's ([`goregex::SIZE_LIMIT`]), so that long
/// lists of ordinary patterns fit.
pub(super) const SET_SIZE_LIMIT: usize = 4 * goregex::SIZE_LIMIT;

/// Compiled lists, shared between Alerts with the same list: Alerts are
/// often copies of each other, and a compiled list costs kilobytes.
pub(super) struct RegexCache {
    /// Each pattern's translation when it compiles alone, or why it does not.
    patterns: HashMap<String, Result<String, CompileError>>,
    /// Each list of valid patterns, compiled, and why it is not one set.
    lists: HashMap<Vec<String>, CompiledList>,
    set_size_limit: usize,
}

/// A list's matcher, and why its patterns are not one automaton.
type CompiledList = (Arc<PatternList>, Option<String>);

impl Default for RegexCache {
    fn default() -> Self {
        Self::with_set_size_limit(SET_SIZE_LIMIT)
    }
}

/// Items below which checking patterns is not worth a thread.
const PARALLEL_FROM: usize = 32;

impl RegexCache {
    pub(super) fn with_set_size_limit(set_size_limit: usize) -> Self {
        Self {
            patterns: HashMap::new(),
            lists: HashMap::new(),
            set_size_limit,
        }
    }

    /// Checks every pattern and list of `lists` not seen before, on all
    /// cores: with thousands of Alerts each with its own patterns this is
    /// a large part of building the table, and each is independent.
    /// [`RegexCache::compile`] then only looks them up.
    pub(super) fn prepare<'a>(&mut self, lists: impl Iterator<Item = &'a [String]>) {
        let lists: Vec<&[String]> = lists.filter(|l| !l.is_empty()).collect();
        let mut fresh: Vec<&String> = lists
            .iter()
            .flat_map(|l| l.iter())
            .filter(|p| !self.patterns.contains_key(*p))
            .collect();
        fresh.sort_unstable();
        fresh.dedup();
        let checked = crate::parallel::map(
            &fresh,
            PARALLEL_FROM,
            |p| check(p),
            || {
                Err(CompileError::Herald(
                    "the regex compiler failed on this pattern".to_owned(),
                ))
            },
        );
        self.patterns
            .extend(fresh.into_iter().cloned().zip(checked));

        let mut sets: Vec<Vec<String>> = lists
            .iter()
            .map(|list| self.valid(list))
            .filter(|valid| valid.len() > 1 && !self.lists.contains_key(valid))
            .collect();
        sets.sort_unstable();
        sets.dedup();
        let compiled = crate::parallel::map(
            &sets,
            PARALLEL_FROM,
            |valid| self.compile_list(valid),
            || {
                (
                    Arc::new(PatternList::Each(Vec::new())),
                    Some("the regex compiler failed on this list".to_owned()),
                )
            },
        );
        self.lists.extend(sets.into_iter().zip(compiled));
    }

    /// The patterns of `list` that compile, in order.
    fn valid(&self, list: &[String]) -> Vec<String> {
        list.iter()
            .filter(|p| self.patterns.get(*p).is_some_and(Result::is_ok))
            .cloned()
            .collect()
    }

    /// One automaton for a list of valid patterns, or, when they do not fit
    /// in one, each pattern's own.
    fn compile_list(&self, valid: &[String]) -> CompiledList {
        let translated: Vec<&str> = valid
            .iter()
            .filter_map(|p| self.patterns.get(p).and_then(|c| c.as_ref().ok()))
            .map(String::as_str)
            .collect();
        // A list of one pattern (the usual case) was checked alone: each
        // pattern fits its own limit, so it fits the set's.
        if let [only] = translated.as_slice() {
            return (Arc::new(PatternList::Set(alone(only))), None);
        }
        match LazyMatcher::checked(&translated, self.set_size_limit, goregex::NEST_LIMIT) {
            Ok(set) => (Arc::new(PatternList::Set(set)), None),
            Err(e) => (
                Arc::new(PatternList::Each(
                    translated.iter().map(|t| alone(t)).collect(),
                )),
                Some(e.0),
            ),
        }
    }

    /// Compiles a list of Go patterns (see [`goregex`]). As in Flux, a
    /// pattern Go rejects is reported and skipped (an inclusion list of
    /// only invalid patterns matches nothing); so is one Go accepts but
    /// that is beyond herald's limits, reported as such.
    ///
    /// The valid patterns are matched as one automaton ([`LazyMatcher`]),
    /// in one pass over the message. When they do not fit in one set
    /// ([`SET_SIZE_LIMIT`]), the list is never dropped: it is reported as an
    /// error, and matched pattern by pattern with the regexes compiled one
    /// by one, which gives the same answers (each pattern fits its own
    /// limit), only slower. Flux itself matches pattern by pattern.
    pub(super) fn compile(
        &mut self,
        field: &str,
        patterns: Option<&[String]>,
        report: &mut impl FnMut(Level, Reason, String),
    ) -> Option<Arc<PatternList>> {
        let patterns = patterns.filter(|p| !p.is_empty())?;
        for (i, pattern) in patterns.iter().enumerate() {
            let checked = self
                .patterns
                .entry(pattern.clone())
                .or_insert_with(|| check(pattern));
            if let Err(e) = checked {
                report(
                    Level::Error,
                    Reason::InvalidRegex,
                    format!("{field}[{i}]: invalid regular expression {pattern:?}: {e}"),
                );
            }
        }
        let valid = self.valid(patterns);
        let count = valid.len();
        if !self.lists.contains_key(&valid) {
            let compiled = self.compile_list(&valid);
            self.lists.insert(valid.clone(), compiled);
        }
        let (list, error) = &self.lists[&valid];
        if let Some(why) = error {
            report(
                Level::Error,
                Reason::InvalidRegex,
                format!(
                    "{field}: the {count} valid patterns cannot be compiled together ({why}); \
                     herald matches them one by one instead, which is slower: \
                     shorten the list or simplify its patterns"
                ),
            );
        }
        Some(list.clone())
    }
}

/// A Go pattern's translation when it compiles within herald's limits
/// (built on first use: see [`LazyMatcher`]).
fn check(pattern: &str) -> Result<String, CompileError> {
    goregex::check(pattern)
}

/// The matcher of one pattern already checked alone.
fn alone(translated: &str) -> LazyMatcher {
    LazyMatcher::unchecked(&[translated], goregex::SIZE_LIMIT, goregex::NEST_LIMIT)
}

/// Longest and shortest `spec.digest.window`: a day-long window would hold
/// notifications past any max delivery age; sub-second windows group nothing.
const DIGEST_WINDOW_MAX: Duration = Duration::from_secs(24 * 3600);
const DIGEST_WINDOW_MIN: Duration = Duration::from_secs(1);
/// `spec.digest.maxItems` when not given, and its bound.
const DIGEST_ITEMS_DEFAULT: u32 = 20;
const DIGEST_ITEMS_MAX: u32 = 100;

/// Checks an Alert's `spec.digest`. A bad one is reported and the Alert
/// sends every notification on its own (nothing is lost to a typo).
/// Commit-status and change-request providers act per commit, so they
/// never group.
fn digest_policy(
    spec: Option<&crate::api::DigestSpec>,
    destination: Option<&Destination>,
    report: &mut impl FnMut(Level, Reason, String),
) -> Option<DigestPolicy> {
    let spec = spec?;
    let mut invalid = |field: &str, what: String| {
        report(
            Level::Error,
            Reason::InvalidDigest,
            format!("spec.digest.{field}: {what}; notifications are sent one by one"),
        );
    };
    let window = match crate::duration::parse(&spec.window) {
        Ok(window) if (DIGEST_WINDOW_MIN..=DIGEST_WINDOW_MAX).contains(&window) => window,
        Ok(_) => {
            invalid("window", format!("{:?} is outside 1s..24h", spec.window));
            return None;
        }
        Err(e) => {
            invalid("window", e);
            return None;
        }
    };
    let max_items = spec.max_items.unwrap_or(DIGEST_ITEMS_DEFAULT);
    if !(1..=DIGEST_ITEMS_MAX).contains(&max_items) {
        invalid(
            "maxItems",
            format!("{max_items} is outside 1..{DIGEST_ITEMS_MAX}"),
        );
        return None;
    }
    if let Some(kind) = destination.map(|d| d.kind)
        && (super::provider_rules::is_commit_status_provider(kind)
            || super::provider_rules::is_change_request_provider(kind))
    {
        report(
            Level::Warning,
            Reason::DigestNotSupported,
            format!(
                "spec.digest: provider type '{}' reports per commit; notifications are sent one by one",
                kind.as_str()
            ),
        );
        return None;
    }
    Some(DigestPolicy {
        window,
        max_items: max_items as usize,
    })
}

/// Compiles an Alert's template. A syntax error is reported and the Alert
/// keeps routing with the default format.
fn compile_template(
    spec: Option<&MessageTemplate>,
    destination: Option<&Destination>,
    report: &mut impl FnMut(Level, Reason, String),
) -> Option<CompiledTemplate> {
    let template = match CompiledTemplate::compile(spec?) {
        Ok(template) => template,
        Err(errors) => {
            for error in errors {
                report(
                    Level::Error,
                    Reason::InvalidTemplate,
                    format!(
                        "{}: {} (the default format is sent instead)",
                        error.field, error.message
                    ),
                );
            }
            return None;
        }
    };
    let kind = destination.map(|d| d.kind);
    let slack = kind.is_none_or(|k| k == crate::api::ProviderType::Slack);
    if template.has_thread_key() && !slack {
        report(
            Level::Warning,
            Reason::ThreadsNotSupported,
            "spec.template.threadKey: only Slack groups notifications into threads; \
             the key is ignored for this provider type"
                .into(),
        );
    } else if template.has_thread_key()
        && destination.is_some_and(|d| !d.notifier.supports_threads())
    {
        report(
            Level::Warning,
            Reason::ThreadsNeedBotToken,
            "spec.template.threadKey: threads need a Slack bot token (chat.postMessage); \
             with an incoming webhook the key is ignored"
                .into(),
        );
    }
    if template.has_blocks() && !slack {
        report(
            Level::Warning,
            Reason::BlocksNotSupported,
            "spec.template.blocks: Block Kit is Slack's; the blocks are ignored for this provider type \
             (spec.template.text is sent)"
                .into(),
        );
    }
    Some(template)
}

fn object_key(namespace: Option<&str>, name: Option<&str>) -> ObjectKey {
    ObjectKey::new(namespace.unwrap_or("default"), name.unwrap_or(""))
}

fn problem<K: kube::Resource>(
    origin: &Origin,
    kind: Kind,
    object: &K,
    level: Level,
    reason: Reason,
    message: String,
) -> Problem {
    let meta = object.meta();
    let key = object_key(meta.namespace.as_deref(), meta.name.as_deref());
    Problem {
        level,
        origin: origin.clone(),
        object: format!("{kind:?} {key}"),
        target: Some((kind, key)),
        reason,
        message,
    }
}

/// The route (Alert and Provider names) of an Alert through a destination;
/// with the Alert itself when the Provider's `commitStatusExpr` reads it.
fn route(
    alert: &crate::api::Alert,
    key: ObjectKey,
    channel: Option<String>,
    destination: &Destination,
) -> Route {
    let reads_alert = destination.notifier.settings().commit_status_expr.is_some();
    Route {
        alert: key,
        alert_uid: alert.metadata.uid.clone().unwrap_or_default(),
        alert_channel: channel,
        provider: destination.key.clone(),
        provider_type: destination.kind,
        provider_channel: destination.channel.clone(),
        alert_object: reads_alert
            .then(|| serde_json::to_value(alert).ok().map(Arc::new))
            .flatten(),
    }
}
