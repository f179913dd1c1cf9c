//! The routing table: an immutable value built once per snapshot that answers
//! "which Alerts does this event match?" without touching the network.
//!
//! Alerts are indexed by (namespace, kind) of their event sources, so routing
//! costs O(alerts that could match). Regexes are compiled and providers
//! resolved when the table is built; a new snapshot builds a new table,
//! swapped in atomically by the caller.

mod build;
pub mod explain;
pub mod metadata;
pub mod provider_rules;
pub mod replay;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::goregex::matcher::LazyMatcher;
pub use build::build;

use crate::api::{FluxEvent, Severity, SeverityMask};
use crate::notification::{Notification, Route};
pub use crate::providers::resolve::Destination;
use crate::source::{LabelIndex, ObjectKey};
use crate::template::{CompiledTemplate, Rendered};

/// Choices that change how a snapshot becomes a table.
#[derive(Clone, Debug)]
pub struct TableOptions {
    /// Severity threshold of Alerts without `eventSeverity`.
    pub default_severity: Severity,
    /// Alerts may only route events of objects in their own namespace.
    pub no_cross_namespace_refs: bool,
    /// `--cluster-name`: added to every notification's metadata as
    /// `cluster`, below each Alert's own `eventMetadata`.
    pub cluster_name: Option<String>,
}

impl Default for TableOptions {
    fn default() -> Self {
        Self {
            default_severity: Severity::Error,
            no_cross_namespace_refs: false,
            cluster_name: None,
        }
    }
}

/// An Alert's `spec.digest`, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DigestPolicy {
    pub window: Duration,
    pub max_items: usize,
}

/// An Alert ready to match events.
pub struct CompiledAlert {
    pub key: ObjectKey,
    pub destination: Arc<Destination>,
    /// The Alert and Provider as templates and providers see them.
    pub route: Arc<Route>,
    pub event_metadata: BTreeMap<String, String>,
    pub summary: Option<String>,
    /// The Alert's message template, when it has one that compiled.
    pub template: Option<CompiledTemplate>,
    /// How its notifications are grouped (`spec.digest`), when they are.
    pub digest: Option<DigestPolicy>,
    severities: SeverityMask,
    inclusion: Option<Arc<PatternList>>,
    exclusion: Option<Arc<PatternList>>,
}

/// A compiled `inclusionList` or `exclusionList` (Go regular expressions,
/// see [`goregex`]): matches a message when any of its patterns does.
enum PatternList {
    /// All patterns in one automaton: one pass over the message.
    Set(LazyMatcher),
    /// Patterns too big to be one automaton, matched one by one.
    Each(Vec<LazyMatcher>),
}

impl PatternList {
    fn is_match(&self, message: &str) -> bool {
        match self {
            Self::Set(set) => set.is_match(message),
            Self::Each(patterns) => patterns.iter().any(|p| p.is_match(message)),
        }
    }

    /// Literals one of which every match contains (see
    /// [`goregex::matcher::required_literals`]); `None` when some pattern
    /// has none. An empty list matches nothing: no literal, `Some([])`.
    fn required_literals(&self) -> Option<Vec<Vec<u8>>> {
        match self {
            Self::Set(set) => set.required_literals(),
            Self::Each(patterns) => {
                let mut all = Vec::new();
                for pattern in patterns {
                    all.extend(pattern.required_literals()?);
                }
                Some(all)
            }
        }
    }
}

impl CompiledAlert {
    /// Whether the message passes the Alert's inclusion and exclusion
    /// lists; a [`Screen`] may have found that the exclusion list cannot
    /// match, and then it is not run (and the Alert reached this only when
    /// its inclusion list may match).
    fn matches_screened(&self, message: &str, screened: Screened) -> bool {
        let included = self
            .inclusion
            .as_ref()
            .is_none_or(|list| list.is_match(message));
        let excluded = self
            .exclusion
            .as_ref()
            .is_some_and(|list| !screened.exclusion_absent && list.is_match(message));
        included && !excluded
    }
}

#[cfg(test)]
impl CompiledAlert {
    /// A copy of this Alert (without its template) sending to another
    /// destination, for other modules' unit tests.
    pub(crate) fn with_destination(&self, destination: Arc<Destination>) -> Self {
        Self {
            key: self.key.clone(),
            destination,
            route: self.route.clone(),
            event_metadata: self.event_metadata.clone(),
            summary: self.summary.clone(),
            template: None,
            digest: self.digest,
            severities: self.severities,
            inclusion: self.inclusion.clone(),
            exclusion: self.exclusion.clone(),
        }
    }
}

/// One notification to deliver: what it says and whom it is for, with the
/// Alert it came through (its destination and template).
pub struct Delivery {
    pub alert: Arc<CompiledAlert>,
    pub notification: Notification,
    /// Its records in the spool (`--spool-dir`; several for a digest),
    /// forgotten when it finishes.
    pub spooled: Vec<u64>,
}

impl std::ops::Deref for Delivery {
    type Target = Notification;

    fn deref(&self) -> &Notification {
        &self.notification
    }
}

impl Delivery {
    /// Renders the Alert's template for this notification: `Ok(None)` when
    /// the Alert has none, `Err` when rendering failed (the caller then
    /// sends the default format).
    pub fn render(&self) -> Result<Option<Rendered>, String> {
        match &self.alert.template {
            Some(template) => template.render(&self.notification).map(Some),
            None => Ok(None),
        }
    }
}

/// The routes of one (namespace, kind): wildcard sources, and exact-name
/// sources indexed by name, so an event meets only routes that can match.
#[derive(Default)]
struct KindRoutes {
    any_name: Vec<SourceRoute>,
    by_name: HashMap<String, Vec<SourceRoute>>,
    /// With many wildcard routes: one pass over a message that rules out
    /// the pattern lists that cannot match it.
    screen: Option<Screen>,
}

/// One pass over a message for all the wildcard routes' pattern lists of a
/// (namespace, kind) with many of them (issue: ten thousand Alerts on the
/// same sources, each with its own pattern, cost every event ten thousand
/// automaton runs). Every match of a pattern starts with one of its
/// required literals; an Aho-Corasick automaton over all of them finds
/// which occur in the message. A route whose inclusion list has required
/// literals is a candidate only when one of them occurs, found through the
/// literal; an exclusion list none of whose literals occurs is not run.
/// The answer is the same as running every list, and the cost of an event
/// follows the routes its message can reach, not the routes there are.
struct Screen {
    automaton: aho_corasick::AhoCorasick,
    /// Routes whose inclusion list is not screened (none, or a pattern
    /// without required literals): always candidates.
    always: Box<[u32]>,
    /// Per literal: the routes whose inclusion list requires it.
    by_literal: Box<[Box<[u32]>]>,
    /// Per route, in order: the literal ids of its exclusion list.
    exclusions: Box<[LiteralIds]>,
}

/// A list's literal ids in a [`Screen`]; `None`: not screened, always run.
type LiteralIds = Option<Box<[u32]>>;

/// What a [`Screen`] found about one route's lists.
#[derive(Clone, Copy, Default)]
struct Screened {
    /// The exclusion list cannot match: the event is not excluded.
    exclusion_absent: bool,
}

/// Wildcard routes from which a (namespace, kind) gets a [`Screen`].
const SCREEN_FROM: usize = 32;

impl Screen {
    /// The screen of these routes, when enough of their inclusion lists
    /// have required literals to be worth it.
    fn build(routes: &[SourceRoute]) -> Option<Self> {
        let mut ids: HashMap<Vec<u8>, u32> = HashMap::new();
        let mut literals: Vec<Vec<u8>> = Vec::new();
        let mut id_of = |list: Option<&Arc<PatternList>>| -> LiteralIds {
            let found = list?.required_literals()?;
            let mut list_ids: Vec<u32> = found
                .into_iter()
                .map(|literal| {
                    *ids.entry(literal.clone()).or_insert_with(|| {
                        literals.push(literal);
                        u32::try_from(literals.len() - 1).unwrap_or(u32::MAX)
                    })
                })
                .collect();
            list_ids.sort_unstable();
            list_ids.dedup();
            Some(list_ids.into_boxed_slice())
        };
        let mut always = Vec::new();
        let mut inclusions = Vec::with_capacity(routes.len());
        let mut exclusions = Vec::with_capacity(routes.len());
        for (index, route) in routes.iter().enumerate() {
            let inclusion = id_of(route.alert.inclusion.as_ref());
            if inclusion.is_none() {
                always.push(u32::try_from(index).ok()?);
            }
            inclusions.push(inclusion);
            exclusions.push(id_of(route.alert.exclusion.as_ref()));
        }
        if routes.len() - always.len() < SCREEN_FROM {
            return None;
        }
        let mut by_literal: Vec<Vec<u32>> = vec![Vec::new(); literals.len()];
        for (index, inclusion) in inclusions.iter().enumerate() {
            for id in inclusion.iter().flatten() {
                by_literal[*id as usize].push(u32::try_from(index).ok()?);
            }
        }
        let automaton = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::Standard)
            .build(&literals)
            .ok()?;
        Some(Self {
            automaton,
            always: always.into_boxed_slice(),
            by_literal: by_literal.into_iter().map(Vec::into_boxed_slice).collect(),
            exclusions: exclusions.into_boxed_slice(),
        })
    }

    /// The routes `message` can reach, in route order, each with what the
    /// screen found about its exclusion list.
    fn candidates(&self, message: &str) -> Vec<(usize, Screened)> {
        let mut present: Vec<u32> = self
            .automaton
            .find_overlapping_iter(message)
            .map(|found| found.pattern().as_u32())
            .collect();
        present.sort_unstable();
        present.dedup();
        let mut routes: Vec<u32> = self.always.to_vec();
        for id in &present {
            if let Some(reached) = self.by_literal.get(*id as usize) {
                routes.extend_from_slice(reached);
            }
        }
        routes.sort_unstable();
        routes.dedup();
        routes
            .into_iter()
            .map(|index| {
                let index = index as usize;
                let exclusion_absent = self
                    .exclusions
                    .get(index)
                    .and_then(Option::as_ref)
                    .is_some_and(|ids| !ids.iter().any(|id| present.binary_search(id).is_ok()));
                (index, Screened { exclusion_absent })
            })
            .collect()
    }
}

/// One event source of one Alert.
struct SourceRoute {
    match_labels: Option<BTreeMap<String, String>>,
    alert: Arc<CompiledAlert>,
}

/// The immutable routing table.
#[derive(Default)]
pub struct RoutingTable {
    /// namespace → kind → routes.
    index: HashMap<String, HashMap<String, KindRoutes>>,
    /// Labels of objects known to the source, for `matchLabels`.
    labels: LabelIndex,
    alert_count: usize,
}

impl RoutingTable {
    /// Alerts this table routes to (ready, not suspended).
    pub fn alert_count(&self) -> usize {
        self.alert_count
    }

    /// Every Alert this table routes to, by key: what a notification read
    /// back from the spool is delivered through.
    pub fn alerts_by_key(&self) -> HashMap<ObjectKey, Arc<CompiledAlert>> {
        let mut alerts = HashMap::with_capacity(self.alert_count);
        for routes in self.index.values().flat_map(HashMap::values) {
            let by_name = routes.by_name.values().flatten();
            for route in routes.any_name.iter().chain(by_name) {
                alerts
                    .entry(route.alert.key.clone())
                    .or_insert_with(|| route.alert.clone());
            }
        }
        alerts
    }

    /// The Alerts an event matches, each once, with labels from the snapshot.
    pub fn route(&self, event: &FluxEvent) -> Vec<Arc<CompiledAlert>> {
        self.route_with(event, Labels::Snapshot).alerts
    }

    /// Whether routing this event needs the involved object's labels (some
    /// candidate Alert has `matchLabels`): only then are they fetched.
    pub fn needs_labels(&self, event: &FluxEvent) -> bool {
        self.candidates(event).any(|route| {
            route.match_labels.as_ref().is_some_and(|m| !m.is_empty())
                && route.alert.severities.contains(event.severity)
                && provider_rules::check(route.alert.destination.kind, event).is_ok()
        })
    }

    /// Routes with labels from `labels`. Alerts whose `matchLabels` could
    /// not be evaluated (labels unavailable) do not match and are listed in
    /// [`Routed::unresolved`].
    pub fn route_with(&self, event: &FluxEvent, labels: Labels<'_>) -> Routed {
        let mut routed = Routed::default();
        let routes = self.kind_routes(event);
        // With a screen, only the wildcard routes the message can reach
        // (collected: few); without, every wildcard route (no allocation).
        let reached: Vec<(&SourceRoute, Screened)> = match routes {
            Some(KindRoutes {
                any_name,
                screen: Some(screen),
                ..
            }) => screen
                .candidates(&event.message)
                .into_iter()
                .filter_map(|(i, screened)| any_name.get(i).map(|route| (route, screened)))
                .collect(),
            _ => Vec::new(),
        };
        let unscreened = routes
            .filter(|r| r.screen.is_none())
            .into_iter()
            .flat_map(|r| r.any_name.iter())
            .map(|route| (route, Screened::default()));
        let by_name = routes
            .and_then(|r| r.by_name.get(event.involved_object.name.as_str()))
            .into_iter()
            .flatten()
            .map(|route| (route, Screened::default()));
        for (route, screened) in reached.into_iter().chain(unscreened).chain(by_name) {
            let alert = &route.alert;
            if !alert.severities.contains(event.severity)
                || routed.alerts.iter().any(|a| Arc::ptr_eq(a, alert))
                || !alert.matches_screened(&event.message, screened)
            {
                continue;
            }
            if let Err(withheld) = provider_rules::check(alert.destination.kind, event) {
                tracing::debug!(alert = %alert.key, event = %event.object_ref(),
                    reason = withheld.describe(), "event not sent to this provider");
                continue;
            }
            match self.labels_match(route, event, &labels) {
                Some(true) => routed.alerts.push(alert.clone()),
                Some(false) => {}
                None => {
                    if !routed.unresolved.contains(&alert.key) {
                        routed.unresolved.push(alert.key.clone());
                    }
                }
            }
        }
        routed
    }

    /// Routes of the event's namespace and kind whose name matches.
    fn candidates<'a>(
        &'a self,
        event: &'a FluxEvent,
    ) -> impl Iterator<Item = &'a SourceRoute> + 'a {
        let routes = self.kind_routes(event);
        let any_name = routes.into_iter().flat_map(|r| r.any_name.iter());
        let by_name = routes
            .and_then(|r| r.by_name.get(event.involved_object.name.as_str()))
            .into_iter()
            .flatten();
        any_name.chain(by_name)
    }

    /// The routes of the event's namespace and kind.
    fn kind_routes(&self, event: &FluxEvent) -> Option<&KindRoutes> {
        let object = &event.involved_object;
        self.index
            .get(object.namespace.as_str())
            .and_then(|by_kind| by_kind.get(object.kind.as_str()))
    }

    /// Routes an event and builds its notifications: the one call the
    /// receiver and `herald route` make. Cleans the event's metadata.
    pub fn notifications(&self, event: FluxEvent) -> Vec<Delivery> {
        let alerts = self.route(&event);
        notifications_for(event, alerts)
    }

    /// Whether `route` matches the event's labels; `None` when the labels
    /// are not available, so the answer is unknown.
    fn labels_match(
        &self,
        route: &SourceRoute,
        event: &FluxEvent,
        labels: &Labels<'_>,
    ) -> Option<bool> {
        let Some(wanted) = route.match_labels.as_ref().filter(|m| !m.is_empty()) else {
            return Some(true);
        };
        let object = &event.involved_object;
        let labels = match labels {
            Labels::Fetched(labels) => Some(*labels),
            Labels::Unavailable => None,
            Labels::Snapshot => {
                let key = (
                    object.kind.clone(),
                    ObjectKey::new(object.namespace.as_str(), object.name.as_str()),
                );
                let found = self.labels.get(&key);
                if found.is_none() {
                    tracing::warn!(
                        alert = %route.alert.key,
                        object = %event.object_ref(),
                        "matchLabels: the involved object is not among the manifests, so its labels cannot match"
                    );
                }
                found
            }
        }?;
        Some(wanted.iter().all(|(k, v)| labels.get(k) == Some(v)))
    }
}

/// Where `matchLabels` reads the involved object's labels from.
pub enum Labels<'a> {
    /// The objects of the snapshot (standalone mode).
    Snapshot,
    /// Fetched from the cluster for this event.
    Fetched(&'a BTreeMap<String, String>),
    /// The lookup failed: Alerts with `matchLabels` do not match.
    Unavailable,
}

/// The outcome of [`RoutingTable::route_with`].
#[derive(Default)]
pub struct Routed {
    pub alerts: Vec<Arc<CompiledAlert>>,
    /// Alerts whose `matchLabels` could not be evaluated.
    pub unresolved: Vec<ObjectKey>,
}

/// The notifications of one event for the Alerts it matched. Cleans the
/// event's metadata (§3.5) once, then merges it per Alert.
pub fn notifications_for(mut event: FluxEvent, alerts: Vec<Arc<CompiledAlert>>) -> Vec<Delivery> {
    if alerts.is_empty() {
        return Vec::new();
    }
    metadata::clean(&mut event);
    let event = Arc::new(event);
    alerts
        .into_iter()
        .map(|alert| Delivery {
            notification: Notification {
                metadata: metadata::merge(&event, &alert.event_metadata, alert.summary.as_deref()),
                event: event.clone(),
                route: alert.route.clone(),
                digest: None,
            },
            alert,
            spooled: Vec::new(),
        })
        .collect()
}
