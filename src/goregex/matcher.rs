//! The engine that matches messages against compiled Go patterns: a
//! Thompson NFA searched by a PikeVM, with a substring prefilter when an
//! unanchored pattern starts with one literal.
//!
//! Why not `regex::Regex`: it builds, per pattern, a forward and a
//! reverse NFA, literal prefilters and lazy DFAs, and keeps a search cache
//! per pattern per thread that grows with use: about 9 KiB per pattern
//! once compiled and 20–30 KiB once used from two threads. With ten
//! thousand Alerts each with its own pattern that is hundreds of MiB. Here
//! a pattern keeps only its NFA (1–2 KiB for an ordinary pattern) and every
//! search on a thread shares one scratch cache, reset for the pattern at
//! hand. The PikeVM gives the same answers (it is the `regex` crate's own
//! engine, from the same parser): only whether a message matches is asked.
//! It is slower per byte than a lazy DFA, but linear in the message, and
//! routing runs it only for the Alerts an event could match.

use std::cell::RefCell;
use std::sync::OnceLock;

use regex_automata::nfa::thompson::pikevm::{self, PikeVM};
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::prefilter::Prefilter;
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind};
use regex_syntax::hir::literal::Extractor;
use regex_syntax::hir::{Class, Hir, HirKind, Look};

/// One pattern, or several matched at once (a list).
#[derive(Clone, Debug)]
pub struct Matcher {
    vm: PikeVM,
}

/// Why patterns cannot be compiled, in the `regex` crate's words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildError(pub String);

/// Heap an NFA takes at most per unit of [`estimate`]: a state (24 bytes),
/// its transitions and the compiler's bookkeeping, with room to spare
/// (a test holds every pattern of the Go table under it).
const BYTES_PER_UNIT: usize = 96;
/// An NFA's fixed part (byte classes, start states, group info).
const BYTES_FIXED: usize = 4096;

/// Checks that `patterns` parse and that their automaton fits `size_limit`
/// bytes, without building it when the parsed patterns are certainly far
/// below the limit (the usual case: building is a third of the cost of
/// loading ten thousand patterns, and [`LazyMatcher`] builds them again on
/// first use anyway). Larger ones are built to be sure.
pub fn check(patterns: &[&str], size_limit: usize, nest_limit: u32) -> Result<(), BuildError> {
    let hirs = parse(patterns, nest_limit)?;
    let units = hirs
        .iter()
        .fold(0usize, |sum, hir| sum.saturating_add(estimate(hir)));
    let bytes = units
        .saturating_mul(BYTES_PER_UNIT)
        .saturating_add(BYTES_FIXED);
    if bytes <= size_limit / 4 {
        return Ok(());
    }
    Matcher::from_hirs(&hirs, size_limit).map(drop)
}

/// An upper estimate of the states and transitions `hir` compiles to: a
/// literal byte or a look-around one each, a Unicode class up to sixteen
/// per range (its UTF-8 encodings), a counted repetition its copies.
fn estimate(hir: &Hir) -> usize {
    let sum = |subs: &[Hir]| {
        subs.iter()
            .fold(subs.len(), |sum, sub| sum.saturating_add(estimate(sub)))
    };
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => 1,
        HirKind::Literal(literal) => literal.0.len().max(1),
        HirKind::Class(Class::Unicode(class)) => {
            class.ranges().len().saturating_mul(16).saturating_add(4)
        }
        HirKind::Class(Class::Bytes(class)) => class.ranges().len().saturating_add(4),
        HirKind::Repetition(repetition) => {
            let copies = repetition.max.unwrap_or(repetition.min).max(repetition.min);
            let copies = usize::try_from(copies)
                .unwrap_or(usize::MAX)
                .saturating_add(1);
            copies
                .saturating_mul(estimate(&repetition.sub))
                .saturating_add(2)
        }
        HirKind::Capture(capture) => estimate(&capture.sub).saturating_add(2),
        HirKind::Concat(subs) | HirKind::Alternation(subs) => sum(subs),
    }
}

/// [`check`]'s estimate for one pattern, in bytes (for its test).
#[cfg(test)]
pub fn estimated_bytes(pattern: &str, nest_limit: u32) -> usize {
    let hirs = parse(&[pattern], nest_limit).expect("parses");
    estimate(&hirs[0])
        .saturating_mul(BYTES_PER_UNIT)
        .saturating_add(BYTES_FIXED)
}

/// Parses patterns in the `regex` crate's syntax.
fn parse(patterns: &[&str], nest_limit: u32) -> Result<Vec<Hir>, BuildError> {
    let config = syntax::Config::new().nest_limit(nest_limit);
    patterns
        .iter()
        .map(|p| syntax::parse_with(p, &config).map_err(|e| BuildError(last_line(&e.to_string()))))
        .collect()
}

impl Matcher {
    /// Compiles `patterns` (in the `regex` crate's syntax) into one matcher
    /// that matches when any of them does; its NFA may take `size_limit`
    /// bytes, and patterns may nest `nest_limit` deep.
    pub fn new(patterns: &[&str], size_limit: usize, nest_limit: u32) -> Result<Self, BuildError> {
        Self::from_hirs(&parse(patterns, nest_limit)?, size_limit)
    }

    fn from_hirs(hirs: &[Hir], size_limit: usize) -> Result<Self, BuildError> {
        let nfa = thompson::Compiler::new()
            .configure(
                thompson::Config::new()
                    .which_captures(WhichCaptures::None)
                    .nfa_size_limit(Some(size_limit)),
            )
            .build_many_from_hir(hirs)
            .map_err(|e| match e.size_limit() {
                Some(limit) => BuildError(format!(
                    "the compiled pattern exceeds the size limit of {limit} bytes"
                )),
                None => BuildError(last_line(&e.to_string())),
            })?;
        let prefilter = match hirs {
            [hir] => prefilter(hir),
            _ => None,
        };
        let vm = PikeVM::builder()
            .configure(PikeVM::config().prefilter(prefilter))
            .build_from_nfa(nfa)
            .map_err(|e| BuildError(last_line(&e.to_string())))?;
        Ok(Self { vm })
    }

    /// The automaton's heap, in bytes (for the test of [`estimate`]).
    #[cfg(test)]
    pub fn memory_usage(&self) -> usize {
        self.vm.get_nfa().memory_usage()
    }

    /// Whether any of the patterns matches somewhere in `text`.
    pub fn is_match(&self, text: &str) -> bool {
        thread_local! {
            static SCRATCH: RefCell<Option<pikevm::Cache>> = const { RefCell::new(None) };
        }
        SCRATCH.with(|scratch| {
            // A search never re-enters this (nothing in it calls back), but
            // should it, a fresh cache keeps it correct.
            let Ok(mut scratch) = scratch.try_borrow_mut() else {
                return self
                    .vm
                    .is_match(&mut self.vm.create_cache(), Input::new(text));
            };
            let cache = scratch.get_or_insert_with(|| self.vm.create_cache());
            cache.reset(&self.vm);
            self.vm.is_match(cache, Input::new(text))
        })
    }
}

/// A matcher compiled when it is first asked, from patterns already
/// checked ([`check`]).
///
/// Why: with ten thousand Alerts each with its own pattern, the compiled
/// automata are the largest part of the routing table (1–2 KiB each), and
/// most Alerts see few events: an Alert never asked costs only its
/// patterns' text. A pattern that cannot be compiled is still reported
/// when the table is built ([`check`]); the first event that reaches the
/// Alert pays one compilation (tens of microseconds).
#[derive(Debug)]
pub struct LazyMatcher {
    patterns: Box<[Box<str>]>,
    size_limit: usize,
    nest_limit: u32,
    compiled: OnceLock<Option<Compiled>>,
}

/// What a list compiles to: plain text comparisons when every pattern is
/// one literal (the usual `^Reconciliation finished`, `.*no changes.*`),
/// which need no automaton at all, else the NFA.
#[derive(Debug)]
enum Compiled {
    Plain(Box<[Plain]>),
    Automaton(Matcher),
}

/// A pattern that is one literal: it matches when the text starts with it
/// (`^literal`) or contains it (`literal`, with any `x*` before or after,
/// which can match nothing and so change nothing).
#[derive(Debug, PartialEq, Eq)]
enum Plain {
    Prefix(Box<str>),
    Contains(Box<str>),
}

impl Plain {
    /// The plain form of a parsed pattern, if it has one.
    fn of(hir: &Hir) -> Option<Self> {
        let subs: &[Hir] = match hir.kind() {
            HirKind::Concat(subs) => subs,
            _ => std::slice::from_ref(hir),
        };
        let (anchored, mut rest) = match subs.split_first() {
            Some((first, rest)) if matches!(first.kind(), HirKind::Look(Look::Start)) => {
                (true, rest)
            }
            _ => (false, subs),
        };
        let may_be_empty = |h: &Hir| matches!(h.kind(), HirKind::Repetition(r) if r.min == 0);
        if !anchored {
            while let Some((first, tail)) = rest.split_first() {
                if !may_be_empty(first) {
                    break;
                }
                rest = tail;
            }
        }
        while let Some((last, head)) = rest.split_last() {
            if !may_be_empty(last) {
                break;
            }
            rest = head;
        }
        let [one] = rest else { return None };
        let HirKind::Literal(literal) = one.kind() else {
            return None;
        };
        let text: Box<str> = std::str::from_utf8(&literal.0).ok()?.into();
        Some(if anchored {
            Self::Prefix(text)
        } else {
            Self::Contains(text)
        })
    }

    fn is_match(&self, text: &str) -> bool {
        match self {
            Self::Prefix(literal) => text.starts_with(&**literal),
            Self::Contains(literal) => text.contains(&**literal),
        }
    }
}

impl Compiled {
    fn new(patterns: &[&str], size_limit: usize, nest_limit: u32) -> Result<Self, BuildError> {
        let hirs = parse(patterns, nest_limit)?;
        let plain: Option<Box<[Plain]>> = hirs.iter().map(Plain::of).collect();
        match plain {
            Some(plain) if !plain.is_empty() => Ok(Self::Plain(plain)),
            _ => Matcher::from_hirs(&hirs, size_limit).map(Self::Automaton),
        }
    }

    fn is_match(&self, text: &str) -> bool {
        match self {
            Self::Plain(plain) => plain.iter().any(|p| p.is_match(text)),
            Self::Automaton(matcher) => matcher.is_match(text),
        }
    }
}

impl LazyMatcher {
    /// Checks that `patterns` compile (see [`Matcher::new`]) and keeps
    /// them to compile again on first use.
    pub fn checked(
        patterns: &[&str],
        size_limit: usize,
        nest_limit: u32,
    ) -> Result<Self, BuildError> {
        Matcher::new(patterns, size_limit, nest_limit)?;
        Ok(Self::unchecked(patterns, size_limit, nest_limit))
    }

    /// Patterns known to compile within these limits (each was checked
    /// alone with the same limits).
    pub fn unchecked(patterns: &[&str], size_limit: usize, nest_limit: u32) -> Self {
        Self {
            patterns: patterns.iter().map(|p| Box::from(*p)).collect(),
            size_limit,
            nest_limit,
            compiled: OnceLock::new(),
        }
    }

    /// Literals one of which every match of any of the patterns starts
    /// with (see [`required_literals`]); `None` when a pattern has none.
    pub fn required_literals(&self) -> Option<Vec<Vec<u8>>> {
        let mut all = Vec::new();
        for pattern in &self.patterns {
            all.extend(required_literals(pattern, self.nest_limit)?);
        }
        Some(all)
    }

    /// Whether any of the patterns matches somewhere in `text`.
    pub fn is_match(&self, text: &str) -> bool {
        let compiled = self.compiled.get_or_init(|| {
            let patterns: Vec<&str> = self.patterns.iter().map(|p| &**p).collect();
            // Checked when built, and compiling is deterministic; should it
            // fail anyway, the list matches nothing and says so once.
            Compiled::new(&patterns, self.size_limit, self.nest_limit)
                .inspect_err(
                    |e| tracing::error!(error = %e.0, "a checked pattern list no longer compiles"),
                )
                .ok()
        });
        compiled.as_ref().is_some_and(|m| m.is_match(text))
    }

    /// Whether the automaton has been built (for tests of the laziness).
    #[cfg(test)]
    pub fn is_compiled(&self) -> bool {
        self.compiled.get().is_some()
    }

    /// Whether the list was compiled to plain comparisons (for tests).
    #[cfg(test)]
    pub fn is_plain(&self) -> bool {
        matches!(self.compiled.get(), Some(Some(Compiled::Plain(_))))
    }
}

/// A prefilter for a pattern every match of which starts with one literal,
/// unless the pattern is anchored at the start (the search then looks at
/// the start only). Prefilters for several literals (Teddy, Aho-Corasick)
/// cost hundreds of thousands of instructions to build and kilobytes to
/// keep: more than the NFA they would speed up.
fn prefilter(hir: &Hir) -> Option<Prefilter> {
    if hir.properties().look_set_prefix().contains(Look::Start) {
        return None;
    }
    let prefixes = Extractor::new().extract(hir);
    match prefixes.literals()? {
        [literal] if !literal.as_bytes().is_empty() => {
            Prefilter::new(MatchKind::LeftmostFirst, &[literal.as_bytes()])
                .filter(Prefilter::is_fast)
        }
        _ => None,
    }
}

/// Literals one of which every match of `pattern` (in the `regex` crate's
/// syntax) starts with, when there are finitely many and none is empty: a
/// text that contains none of them cannot match. `None` when the pattern
/// has no such set (a leading class, a repetition that may be empty…).
pub fn required_literals(pattern: &str, nest_limit: u32) -> Option<Vec<Vec<u8>>> {
    let hir = parse(&[pattern], nest_limit).ok()?.pop()?;
    let prefixes = Extractor::new().extract(&hir);
    let literals = prefixes.literals()?;
    if literals.is_empty() || literals.iter().any(|l| l.as_bytes().is_empty()) {
        return None;
    }
    Some(literals.iter().map(|l| l.as_bytes().to_vec()).collect())
}

/// The gist of an error: its last line, without `error: `.
fn last_line(text: &str) -> String {
    let last = text.lines().last().unwrap_or("").trim();
    last.strip_prefix("error: ").unwrap_or(last).to_owned()
}
