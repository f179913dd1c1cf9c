//! Go's regular expressions (package `regexp`, RE2 syntax) for the `regex`
//! crate.
//!
//! Flux compiles an Alert's `inclusionList`/`exclusionList` with Go's
//! `regexp.Compile`. [`translate`] parses a pattern the way Go's parser does
//! (`regexp/syntax/parse.go`, Perl flags) and either rejects it with Go's
//! error, or writes an equivalent pattern in the `regex` crate's syntax,
//! with every construct spelt out so that the two syntaxes' differences
//! cannot leak through:
//!
//! * `\d \w \s` and POSIX classes are ASCII (written as explicit ranges),
//!   `\b \B` are ASCII word boundaries (`(?-u:\b)`);
//! * `\Q…\E` is a literal, a `{` that starts no valid repetition is a
//!   literal; in a class, `&&`, `~~` and `[` are plain characters and `-`
//!   only makes ranges (Go has no set operations nor nested classes);
//! * `\p{…}` knows only Go's names (general categories, their long
//!   aliases, scripts, `Any`, `Assigned`, `ASCII`), written as `gc=`/`sc=`;
//! * flags (`i m s U`) are resolved per node, as Go does, and written on
//!   each node that depends on them;
//! * Go's limits: counted repetition up to 1000 (also nested, as
//!   `repeatIsValid`), parse tree height 1000, program size.
//!
//! Captures are written as plain groups: only whether a message matches is
//! asked, and Go allows duplicate capture names where `regex` does not.
//!
//! Differences that remain: Go 1.26 uses Unicode 15.0 tables and `regex`
//! Unicode 16.0, so characters assigned in 16.0 fall in different classes;
//! Go's size and height limits are measured on Go's own (factored) parse
//! tree, here on an unfactored one, which can only count more, and only
//! near Go's limits (millions of instructions, depth 1000); Go's limit on
//! the number of runes in classes (tens of thousands of `\pL`) is not
//! checked, `regex`'s compiled size limit rejects such patterns first.

mod unicode_names;

#[cfg(test)]
mod go_cases;
#[cfg(test)]
mod tests;

use std::fmt::{self, Write as _};

/// Go's limit on `{n,m}` counts, also the product of nested counts.
const MAX_REPEAT: u32 = 1000;
/// Go's limit on the height of the parse tree (`maxHeight`).
const MAX_HEIGHT: u32 = 1000;
/// Go's limit on the compiled program, in instructions (`maxSize`: 128 MiB
/// of 40-byte instructions).
const MAX_SIZE: i64 = (128 << 20) / 40;

/// Why Go rejects a pattern: Go's error code and the part of the pattern it
/// quotes. Displays as Go's message without its `error parsing regexp: `
/// prefix, e.g. ``missing closing ): `(abc` ``.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub code: ErrorCode,
    pub expr: String,
}

/// Go's `regexp/syntax.ErrorCode`s that a valid UTF-8 pattern can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidCharRange,
    InvalidEscape,
    InvalidNamedCapture,
    InvalidPerlOp,
    InvalidRepeatOp,
    InvalidRepeatSize,
    MissingBracket,
    MissingParen,
    MissingRepeatArgument,
    TrailingBackslash,
    UnexpectedParen,
    NestingDepth,
    Large,
}

impl ErrorCode {
    /// Go's text for the code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidCharRange => "invalid character class range",
            Self::InvalidEscape => "invalid escape sequence",
            Self::InvalidNamedCapture => "invalid named capture",
            Self::InvalidPerlOp => "invalid or unsupported Perl syntax",
            Self::InvalidRepeatOp => "invalid nested repetition operator",
            Self::InvalidRepeatSize => "invalid repeat count",
            Self::MissingBracket => "missing closing ]",
            Self::MissingParen => "missing closing )",
            Self::MissingRepeatArgument => "missing argument to repetition operator",
            Self::TrailingBackslash => "trailing backslash at end of expression",
            Self::UnexpectedParen => "unexpected )",
            Self::NestingDepth => "expression nests too deeply",
            Self::Large => "expression too large",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: `{}`", self.code.as_str(), self.expr)
    }
}

impl std::error::Error for Error {}

/// Translates a Go regular expression into the `regex` crate's syntax, with
/// the same meaning, or returns the error Go's `regexp.Compile` reports.
pub fn translate(pattern: &str) -> Result<String, Error> {
    let tree = Parser::new(pattern).parse()?;
    let mut out = String::with_capacity(pattern.len() + 16);
    emit(&tree, &mut out);
    Ok(out)
}

/// The compiled size limit of one pattern, in bytes: the `regex` crate's
/// default. Go's limit is on its own program (about 3.3 million
/// instructions); the `regex` crate compiles to a byte automaton, where a
/// Unicode class costs far more than one instruction: `\pL{1000}` (Go:
/// 1000 instructions) needs 42 MiB and seconds to compile. A Go-valid
/// pattern beyond this limit is rejected ([`CompileError::Herald`]).
pub const SIZE_LIMIT: usize = 10 << 20;

/// Nesting depth of the translated pattern that the `regex` crate accepts:
/// its default, which keeps its recursive compiler within a thread's stack.
/// Go allows a parse tree 1000 deep; a Go-valid pattern nesting deeper
/// than this is rejected ([`CompileError::Herald`]).
pub const NEST_LIMIT: u32 = 250;

/// Why a pattern cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompileError {
    /// Go rejects it: Flux would too.
    Go(Error),
    /// Go accepts it, but it is beyond what herald compiles (size or
    /// nesting limits); the `regex` crate's reason.
    Herald(String),
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Go(e) => e.fmt(f),
            Self::Herald(why) => {
                write!(f, "Go accepts it, but it is beyond herald's limits ({why})")
            }
        }
    }
}

/// A Go pattern, compiled: its translation and the regex.
pub struct Compiled {
    pub translated: String,
    pub regex: regex::Regex,
}

/// Translates and compiles a Go pattern within [`SIZE_LIMIT`] and
/// [`NEST_LIMIT`].
pub fn compile(pattern: &str) -> Result<Compiled, CompileError> {
    let translated = translate(pattern).map_err(CompileError::Go)?;
    let regex = regex::RegexBuilder::new(&translated)
        .size_limit(SIZE_LIMIT)
        .nest_limit(NEST_LIMIT)
        .build()
        .map_err(|e| CompileError::Herald(regex_error(&e)))?;
    Ok(Compiled { translated, regex })
}

/// The gist of a `regex` crate error: its last line, without `error: `.
pub fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text.lines().last().unwrap_or("").trim();
    last.strip_prefix("error: ").unwrap_or(last).to_owned()
}

/// The flags a Go pattern can change with `(?flags)`; all off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Flags {
    /// `i`: case-insensitive (simple case folding).
    fold: bool,
    /// `m`: `^` and `$` match at line boundaries.
    multi_line: bool,
    /// `s`: `.` matches `\n`.
    dot_nl: bool,
    /// `U`: repetitions are lazy unless followed by `?`.
    ungreedy: bool,
}

/// A table `\p{…}` can name (Go's `unicodeTable`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Table {
    Any,
    Assigned,
    Ascii,
    /// A general category, by its short name (`Lu`, `L`, `LC`, …).
    Category(&'static str),
    /// A script (property Script, not Script_Extensions).
    Script(&'static str),
}

/// One item of a bracketed class, or a class escape.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ClassItem {
    /// Code points, not chars: Go allows surrogates in ranges.
    Range(u32, u32),
    /// An ASCII class (`\d`, `[:alpha:]`, …), negated or not.
    Ascii {
        negated: bool,
        ranges: &'static [(u8, u8)],
    },
    Unicode {
        negated: bool,
        table: Table,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RepeatOp {
    Star,
    Plus,
    Quest,
    /// `{min}`, `{min,}` (max `None`), `{min,max}`.
    Counted(u32, Option<u32>),
}

#[derive(Debug)]
enum Node {
    Empty,
    Literal {
        c: char,
        fold: bool,
    },
    Class {
        negated: bool,
        items: Vec<ClassItem>,
        fold: bool,
    },
    /// `.`; `dot_nl` when it also matches `\n`.
    Dot {
        dot_nl: bool,
    },
    /// `^` with `m` (start of text or after `\n`).
    BeginLine,
    /// `$` with `m` (end of text or before `\n`).
    EndLine,
    /// `\A`, or `^` without `m`.
    BeginText,
    /// `\z`, or `$` without `m`.
    EndText,
    WordBoundary,
    NoWordBoundary,
    Capture(Box<Tree>),
    Repeat {
        sub: Box<Tree>,
        op: RepeatOp,
        greedy: bool,
    },
    /// At least two items.
    Concat(Vec<Tree>),
    /// At least two alternatives.
    Alternate(Vec<Tree>),
}

/// A node with Go's measures of it: height of the parse tree and size of
/// the compiled program (`calcHeight`, `calcSize`).
#[derive(Debug)]
struct Tree {
    node: Node,
    height: u32,
    size: i64,
}

impl Tree {
    fn leaf(node: Node) -> Self {
        Self {
            node,
            height: 1,
            size: 1,
        }
    }

    fn is_literal(&self, fold: bool) -> bool {
        matches!(self.node, Node::Literal { fold: f, .. } if f == fold)
    }
}

/// Whether the counted repetitions in `tree` stay within `n` copies of the
/// innermost thing (Go's `repeatIsValid`).
fn repeat_is_valid(tree: &Tree, mut n: u32) -> bool {
    if let Node::Repeat {
        op: RepeatOp::Counted(min, max),
        ..
    } = tree.node
    {
        let m = max.unwrap_or(min);
        if max == Some(0) {
            return true;
        }
        if m > n {
            return false;
        }
        // `{0,}`: m is 0 and n stays.
        n = n.checked_div(m).unwrap_or(n);
    }
    match &tree.node {
        Node::Capture(sub) | Node::Repeat { sub, .. } => repeat_is_valid(sub, n),
        Node::Concat(subs) | Node::Alternate(subs) => subs.iter().all(|s| repeat_is_valid(s, n)),
        _ => true,
    }
}

/// An open group on the parser's stack, with what was parsed in it so far.
struct Frame {
    /// Alternatives before the last `|`.
    alternatives: Vec<Tree>,
    /// Items of the current alternative.
    items: Vec<Tree>,
    /// `None` for the whole pattern; else whether the group captures, and
    /// the flags to restore at its `)`.
    group: Option<(bool, Flags)>,
}

impl Frame {
    fn new(group: Option<(bool, Flags)>) -> Self {
        Self {
            alternatives: Vec::new(),
            items: Vec::new(),
            group,
        }
    }
}

struct Parser<'a> {
    whole: &'a str,
    flags: Flags,
    frames: Vec<Frame>,
}

/// Go's `isalnum`: ASCII letters and digits.
fn is_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

fn unhex(c: char) -> Option<u32> {
    c.to_digit(16)
}

fn is_octal(c: Option<char>) -> bool {
    matches!(c, Some('0'..='7'))
}

impl<'a> Parser<'a> {
    fn new(whole: &'a str) -> Self {
        Self {
            whole,
            flags: Flags::default(),
            frames: vec![Frame::new(None)],
        }
    }

    fn error(&self, code: ErrorCode, from: usize, to: usize) -> Error {
        Error {
            code,
            expr: self.whole[from..to].to_owned(),
        }
    }

    fn whole_error(&self, code: ErrorCode) -> Error {
        self.error(code, 0, self.whole.len())
    }

    fn char_at(&self, at: usize) -> Option<char> {
        self.whole[at..].chars().next()
    }

    fn byte_at(&self, at: usize) -> Option<u8> {
        self.whole.as_bytes().get(at).copied()
    }

    fn frame(&mut self) -> &mut Frame {
        self.frames.last_mut().expect("the pattern's own frame")
    }

    /// Go's `checkLimits` on a node just built.
    fn check(&self, tree: &Tree) -> Result<(), Error> {
        if tree.size > MAX_SIZE {
            return Err(self.whole_error(ErrorCode::Large));
        }
        if tree.height > MAX_HEIGHT {
            return Err(self.whole_error(ErrorCode::NestingDepth));
        }
        Ok(())
    }

    fn push(&mut self, node: Node) {
        self.frame().items.push(Tree::leaf(node));
    }

    fn literal(&mut self, c: char) {
        let fold = self.flags.fold;
        self.push(Node::Literal { c, fold });
    }

    fn parse(mut self) -> Result<Tree, Error> {
        let s = self.whole;
        let mut t = 0;
        // Where the repetition operator just before starts, if the last
        // thing parsed was one (Go's `lastRepeat`).
        let mut last_repeat: Option<usize> = None;
        while t < s.len() {
            let mut repeat = None;
            match s.as_bytes()[t] {
                b'(' => {
                    if self.byte_at(t + 1) == Some(b'?') {
                        t = self.parse_perl_flags(t)?;
                    } else {
                        let flags = self.flags;
                        self.frames.push(Frame::new(Some((true, flags))));
                        t += 1;
                    }
                }
                b'|' => {
                    let frame = self.frame();
                    let items = std::mem::take(&mut frame.items);
                    let branch = self.concat(items)?;
                    self.frame().alternatives.push(branch);
                    t += 1;
                }
                b')' => {
                    self.parse_right_paren()?;
                    t += 1;
                }
                b'^' => {
                    self.push(if self.flags.multi_line {
                        Node::BeginLine
                    } else {
                        Node::BeginText
                    });
                    t += 1;
                }
                b'$' => {
                    self.push(if self.flags.multi_line {
                        Node::EndLine
                    } else {
                        Node::EndText
                    });
                    t += 1;
                }
                b'.' => {
                    let dot_nl = self.flags.dot_nl;
                    self.push(Node::Dot { dot_nl });
                    t += 1;
                }
                b'[' => t = self.parse_class(t)?,
                op @ (b'*' | b'+' | b'?') => {
                    let op = match op {
                        b'*' => RepeatOp::Star,
                        b'+' => RepeatOp::Plus,
                        _ => RepeatOp::Quest,
                    };
                    let before = t;
                    t = self.repeat(op, before, before + 1, last_repeat)?;
                    repeat = Some(before);
                }
                b'{' => match self.parse_repeat(t) {
                    None => {
                        // A `{` that starts no repetition is a literal.
                        self.literal('{');
                        t += 1;
                    }
                    Some((min, max, after)) => {
                        let (Some(min), Some(max)) = (min, max) else {
                            return Err(self.error(ErrorCode::InvalidRepeatSize, t, after));
                        };
                        if min > MAX_REPEAT || max.is_some_and(|max| max > MAX_REPEAT || min > max)
                        {
                            return Err(self.error(ErrorCode::InvalidRepeatSize, t, after));
                        }
                        let before = t;
                        t = self.repeat(RepeatOp::Counted(min, max), before, after, last_repeat)?;
                        repeat = Some(before);
                    }
                },
                b'\\' => t = self.parse_backslash(t)?,
                _ => {
                    let c = self.char_at(t).expect("t is a char boundary");
                    self.literal(c);
                    t += c.len_utf8();
                }
            }
            last_repeat = repeat;
        }
        if self.frames.len() != 1 {
            return Err(self.whole_error(ErrorCode::MissingParen));
        }
        let frame = self.frames.pop().expect("the pattern's own frame");
        self.alternate(frame)
    }

    /// Applies a repetition operator to the last item parsed. `before` is
    /// where the operator starts, `after` where it ends; returns where the
    /// parse continues (past a lazy `?`).
    fn repeat(
        &mut self,
        op: RepeatOp,
        before: usize,
        mut after: usize,
        last_repeat: Option<usize>,
    ) -> Result<usize, Error> {
        let mut greedy = !self.flags.ungreedy;
        if self.byte_at(after) == Some(b'?') {
            after += 1;
            greedy = !greedy;
        }
        if let Some(last) = last_repeat {
            // `a**`, `a+*`, `a{2}{3}`: Perl rejects stacked operators.
            return Err(self.error(ErrorCode::InvalidRepeatOp, last, after));
        }
        let Some(sub) = self.frame().items.pop() else {
            return Err(self.error(ErrorCode::MissingRepeatArgument, before, after));
        };
        let size = match op {
            RepeatOp::Star => 2 + sub.size,
            RepeatOp::Plus | RepeatOp::Quest => 1 + sub.size,
            RepeatOp::Counted(0, None) => 2 + sub.size,
            RepeatOp::Counted(min, None) => 1 + i64::from(min) * sub.size,
            RepeatOp::Counted(min, Some(max)) => {
                i64::from(max) * sub.size + i64::from(max) - i64::from(min)
            }
        }
        .max(1);
        let tree = Tree {
            height: sub.height + 1,
            size,
            node: Node::Repeat {
                sub: Box::new(sub),
                op,
                greedy,
            },
        };
        self.check(&tree)?;
        if let RepeatOp::Counted(min, max) = op
            && (min >= 2 || max.is_some_and(|m| m >= 2))
            && !repeat_is_valid(&tree, MAX_REPEAT)
        {
            return Err(self.error(ErrorCode::InvalidRepeatSize, before, after));
        }
        self.frame().items.push(tree);
        Ok(after)
    }

    /// The concatenation of `items` (Go's `concat`).
    fn concat(&self, items: Vec<Tree>) -> Result<Tree, Error> {
        let mut flat = Vec::with_capacity(items.len());
        for item in items {
            match item.node {
                Node::Concat(subs) => flat.extend(subs),
                _ => flat.push(item),
            }
        }
        if flat.len() <= 1 {
            return Ok(flat.pop().unwrap_or_else(|| Tree::leaf(Node::Empty)));
        }
        // Go merges a run of literals into one string node: a concatenation
        // of only literals is one node.
        let height = if flat.iter().all(|t| t.is_literal(false))
            || flat.iter().all(|t| t.is_literal(true))
        {
            1
        } else {
            1 + flat.iter().map(|t| t.height).max().unwrap_or(0)
        };
        let tree = Tree {
            height,
            size: flat.iter().map(|t| t.size).sum::<i64>().max(1),
            node: Node::Concat(flat),
        };
        self.check(&tree)?;
        Ok(tree)
    }

    /// Closes `frame`: the alternation of its branches (Go's `alternate`).
    fn alternate(&self, mut frame: Frame) -> Result<Tree, Error> {
        let last = self.concat(frame.items)?;
        frame.alternatives.push(last);
        let mut flat = Vec::with_capacity(frame.alternatives.len());
        for branch in frame.alternatives {
            match branch.node {
                Node::Alternate(subs) => flat.extend(subs),
                _ => flat.push(branch),
            }
        }
        if flat.len() == 1 {
            return Ok(flat.pop().expect("one branch"));
        }
        let count = flat.len() as i64;
        let tree = Tree {
            height: 1 + flat.iter().map(|t| t.height).max().unwrap_or(0),
            size: flat.iter().map(|t| t.size).sum::<i64>() + count - 1,
            node: Node::Alternate(flat),
        };
        self.check(&tree)?;
        Ok(tree)
    }

    fn parse_right_paren(&mut self) -> Result<(), Error> {
        if self.frames.len() < 2 {
            return Err(self.whole_error(ErrorCode::UnexpectedParen));
        }
        let frame = self.frames.pop().expect("an open group");
        let (capture, flags) = frame.group.expect("a group frame");
        let inner = self.alternate(frame)?;
        self.flags = flags;
        let tree = if capture {
            Tree {
                height: inner.height + 1,
                size: inner.size + 2,
                node: Node::Capture(Box::new(inner)),
            }
        } else {
            inner
        };
        self.check(&tree)?;
        self.frame().items.push(tree);
        Ok(())
    }

    /// Parses `{min}`, `{min,}` or `{min,max}` at `t`: `None` when the text
    /// is not of that form (the `{` is then a literal); else the counts
    /// (`Some(None)` for a max of `{min,}`; `None` counts when a number is
    /// too big) and where the repetition ends.
    #[allow(clippy::type_complexity)]
    fn parse_repeat(&self, t: usize) -> Option<(Option<u32>, Option<Option<u32>>, usize)> {
        let mut at = t + 1;
        let (min, next) = self.parse_int(at)?;
        at = next;
        let max;
        match self.byte_at(at)? {
            b',' => {
                at += 1;
                if self.byte_at(at)? == b'}' {
                    max = Some(None);
                } else {
                    let (n, next) = self.parse_int(at)?;
                    at = next;
                    max = n.map(Some);
                }
            }
            _ => max = Some(min),
        }
        if self.byte_at(at)? != b'}' {
            return None;
        }
        Some((min, max, at + 1))
    }

    /// A decimal number without leading zeros at `at`: its value (`None`
    /// when 10^8 or more, as Go) and where it ends; `None` if there is none.
    fn parse_int(&self, at: usize) -> Option<(Option<u32>, usize)> {
        let bytes = &self.whole.as_bytes()[at..];
        let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || (digits >= 2 && bytes[0] == b'0') {
            return None;
        }
        let mut n: u32 = 0;
        for &b in &bytes[..digits] {
            if n >= 100_000_000 {
                return Some((None, at + digits));
            }
            n = n * 10 + u32::from(b - b'0');
        }
        Some((Some(n), at + digits))
    }

    /// `(?` at `t`: a named capture, flags, or a non-capturing group.
    fn parse_perl_flags(&mut self, t: usize) -> Result<usize, Error> {
        let rest = &self.whole[t..];
        let bytes = rest.as_bytes();
        let starts_with_p = bytes.len() > 4 && bytes[2] == b'P' && bytes[3] == b'<';
        let starts_with_name = bytes.len() > 3 && bytes[2] == b'<';
        if starts_with_p || starts_with_name {
            let name_start = if starts_with_p { 4 } else { 3 };
            let Some(end) = rest.find('>') else {
                return Err(self.error(ErrorCode::InvalidNamedCapture, t, self.whole.len()));
            };
            let name = &rest[name_start..end];
            if name.is_empty() || !name.chars().all(|c| c == '_' || is_alnum(c)) {
                return Err(self.error(ErrorCode::InvalidNamedCapture, t, t + end + 1));
            }
            let flags = self.flags;
            self.frames.push(Frame::new(Some((true, flags))));
            return Ok(t + end + 1);
        }
        let mut flags = self.flags;
        let mut negated = false;
        let mut saw_flag = false;
        let mut at = t + 2;
        while let Some(c) = self.char_at(at) {
            at += c.len_utf8();
            let flag = match c {
                'i' => &mut flags.fold,
                'm' => &mut flags.multi_line,
                's' => &mut flags.dot_nl,
                'U' => &mut flags.ungreedy,
                '-' if !negated => {
                    negated = true;
                    saw_flag = false;
                    continue;
                }
                ':' | ')' => {
                    if negated && !saw_flag {
                        break;
                    }
                    if c == ':' {
                        let old = self.flags;
                        self.frames.push(Frame::new(Some((false, old))));
                    }
                    self.flags = flags;
                    return Ok(at);
                }
                _ => break,
            };
            *flag = !negated;
            saw_flag = true;
        }
        Err(self.error(ErrorCode::InvalidPerlOp, t, at))
    }

    /// A `\` at `t` outside a class.
    fn parse_backslash(&mut self, t: usize) -> Result<usize, Error> {
        match self.byte_at(t + 1) {
            Some(b'A') => {
                self.push(Node::BeginText);
                return Ok(t + 2);
            }
            Some(b'b') => {
                self.push(Node::WordBoundary);
                return Ok(t + 2);
            }
            Some(b'B') => {
                self.push(Node::NoWordBoundary);
                return Ok(t + 2);
            }
            Some(b'C') => {
                // Any byte: Go does not support it.
                return Err(self.error(ErrorCode::InvalidEscape, t, t + 2));
            }
            Some(b'Q') => {
                // \Q...\E: literal text, up to \E or the end.
                let rest = &self.whole[t + 2..];
                let (literal, next) = match rest.find("\\E") {
                    Some(end) => (&rest[..end], t + 2 + end + 2),
                    None => (rest, self.whole.len()),
                };
                for c in literal.chars() {
                    self.literal(c);
                }
                return Ok(next);
            }
            Some(b'z') => {
                self.push(Node::EndText);
                return Ok(t + 2);
            }
            _ => {}
        }
        let fold = self.flags.fold;
        if let Some((item, next)) = self.parse_unicode_class(t)? {
            self.push(Node::Class {
                negated: false,
                items: vec![item],
                fold,
            });
            return Ok(next);
        }
        if let Some(item) = perl_class(&self.whole[t..]) {
            self.push(Node::Class {
                negated: false,
                items: vec![item],
                fold,
            });
            return Ok(t + 2);
        }
        let (c, next) = self.parse_escape(t)?;
        match char::from_u32(c) {
            Some(c) => self.literal(c),
            // A surrogate (`\x{D800}`) is never in a string: Go's matcher
            // never sees one either.
            None => self.push(Node::Class {
                negated: false,
                items: Vec::new(),
                fold,
            }),
        }
        Ok(next)
    }

    /// A single-character escape at `t` (Go's `parseEscape`).
    fn parse_escape(&self, t: usize) -> Result<(u32, usize), Error> {
        let mut at = t + 1;
        let Some(c) = self.char_at(at) else {
            return Err(Error {
                code: ErrorCode::TrailingBackslash,
                expr: String::new(),
            });
        };
        at += c.len_utf8();
        let invalid = |at: usize| Err(self.error(ErrorCode::InvalidEscape, t, at));
        match c {
            // A single non-zero digit is a backreference: not supported.
            '1'..='7' if !is_octal(self.char_at(at)) => invalid(at),
            '0'..='7' => {
                // Up to three octal digits.
                let mut r = c as u32 - '0' as u32;
                for _ in 1..3 {
                    match self.char_at(at) {
                        Some(d @ '0'..='7') => {
                            r = r * 8 + (d as u32 - '0' as u32);
                            at += 1;
                        }
                        _ => break,
                    }
                }
                Ok((r, at))
            }
            'x' => {
                let Some(c) = self.char_at(at) else {
                    return invalid(at);
                };
                at += c.len_utf8();
                if c == '{' {
                    // Any number of hex digits in braces, at least one.
                    let mut r: u32 = 0;
                    let mut digits = 0;
                    loop {
                        let Some(c) = self.char_at(at) else {
                            return invalid(at);
                        };
                        at += c.len_utf8();
                        if c == '}' {
                            break;
                        }
                        let Some(v) = unhex(c) else {
                            return invalid(at);
                        };
                        r = r * 16 + v;
                        if r > char::MAX as u32 {
                            return invalid(at);
                        }
                        digits += 1;
                    }
                    return if digits > 0 { Ok((r, at)) } else { invalid(at) };
                }
                // Exactly two hex digits.
                let x = unhex(c);
                let second = self.char_at(at);
                if let Some(d) = second {
                    at += d.len_utf8();
                }
                match (x, second.and_then(unhex)) {
                    (Some(x), Some(y)) => Ok((x * 16 + y, at)),
                    _ => invalid(at),
                }
            }
            'a' => Ok((0x07, at)),
            'f' => Ok((0x0c, at)),
            'n' => Ok((0x0a, at)),
            'r' => Ok((0x0d, at)),
            't' => Ok((0x09, at)),
            'v' => Ok((0x0b, at)),
            // Escaped ASCII punctuation is itself.
            c if c.is_ascii() && !is_alnum(c) => Ok((c as u32, at)),
            _ => invalid(at),
        }
    }

    /// `\p{…}`, `\pX`, `\P…` at `t` (Go's `parseUnicodeClass`): `None` when
    /// there is none.
    fn parse_unicode_class(&self, t: usize) -> Result<Option<(ClassItem, usize)>, Error> {
        let bytes = self.whole.as_bytes();
        if bytes.get(t) != Some(&b'\\') || !matches!(bytes.get(t + 1), Some(b'p' | b'P')) {
            return Ok(None);
        }
        let mut negated = bytes[t + 1] == b'P';
        let (seq_end, name) = match self.char_at(t + 2) {
            Some('{') => {
                let Some(end) = self.whole[t..].find('}') else {
                    return Err(self.error(ErrorCode::InvalidCharRange, t, self.whole.len()));
                };
                (t + end + 1, &self.whole[t + 3..t + end])
            }
            Some(c) => (
                t + 2 + c.len_utf8(),
                &self.whole[t + 2..t + 2 + c.len_utf8()],
            ),
            None => (t + 2, ""),
        };
        let name = match name.strip_prefix('^') {
            Some(name) => {
                negated = !negated;
                name
            }
            None => name,
        };
        let Some(table) = unicode_table(name) else {
            return Err(self.error(ErrorCode::InvalidCharRange, t, seq_end));
        };
        Ok(Some((ClassItem::Unicode { negated, table }, seq_end)))
    }

    /// A bracketed class at `t` (Go's `parseClass`).
    fn parse_class(&mut self, start: usize) -> Result<usize, Error> {
        let mut t = start + 1;
        let mut negated = false;
        if self.byte_at(t) == Some(b'^') {
            negated = true;
            t += 1;
        }
        let mut items = Vec::new();
        // `]` is a literal as the first character.
        let mut first = true;
        while first || self.byte_at(t) != Some(b']') {
            first = false;
            let rest = &self.whole[t..];
            if rest.len() > 2
                && rest.starts_with("[:")
                && let Some((item, next)) = self.parse_named_class(t)?
            {
                items.push(item);
                t = next;
                continue;
            }
            if let Some((item, next)) = self.parse_unicode_class(t)? {
                items.push(item);
                t = next;
                continue;
            }
            if let Some(item) = perl_class(rest) {
                items.push(item);
                t += 2;
                continue;
            }
            let range_start = t;
            let (lo, next) = self.parse_class_char(t, start)?;
            t = next;
            let mut hi = lo;
            // `[a-]` is `a` and `-`.
            if self.byte_at(t) == Some(b'-') && self.byte_at(t + 1).is_some_and(|b| b != b']') {
                let (c, next) = self.parse_class_char(t + 1, start)?;
                t = next;
                hi = c;
                if hi < lo {
                    return Err(self.error(ErrorCode::InvalidCharRange, range_start, t));
                }
            }
            items.push(ClassItem::Range(lo, hi));
        }
        let fold = self.flags.fold;
        self.push(Node::Class {
            negated,
            items,
            fold,
        });
        Ok(t + 1)
    }

    fn parse_class_char(&self, t: usize, class_start: usize) -> Result<(u32, usize), Error> {
        match self.char_at(t) {
            None => Err(self.error(ErrorCode::MissingBracket, class_start, self.whole.len())),
            Some('\\') => self.parse_escape(t),
            Some(c) => Ok((c as u32, t + c.len_utf8())),
        }
    }

    /// `[:alpha:]` at `t` (Go's `parseNamedClass`): `None` when no `:]`
    /// follows.
    fn parse_named_class(&self, t: usize) -> Result<Option<(ClassItem, usize)>, Error> {
        let Some(i) = self.whole[t + 2..].find(":]") else {
            return Ok(None);
        };
        let end = t + 2 + i + 2;
        let name = &self.whole[t..end];
        let (negated, bare) = match name.strip_prefix("[:^") {
            Some(bare) => (true, bare),
            None => (false, &name[2..]),
        };
        let bare = &bare[..bare.len() - 2];
        let Some(ranges) = posix_class(bare) else {
            return Err(self.error(ErrorCode::InvalidCharRange, t, end));
        };
        Ok(Some((ClassItem::Ascii { negated, ranges }, end)))
    }
}

const DIGIT: &[(u8, u8)] = &[(b'0', b'9')];
const SPACE: &[(u8, u8)] = &[(b'\t', b'\n'), (0x0c, b'\r'), (b' ', b' ')];
const WORD: &[(u8, u8)] = &[(b'0', b'9'), (b'A', b'Z'), (b'_', b'_'), (b'a', b'z')];

/// `\d \D \s \S \w \W` at the start of `s` (Go's `perlGroup`: ASCII).
fn perl_class(s: &str) -> Option<ClassItem> {
    let b = s.as_bytes();
    if b.len() < 2 || b[0] != b'\\' {
        return None;
    }
    let ranges = match b[1].to_ascii_lowercase() {
        b'd' => DIGIT,
        b's' => SPACE,
        b'w' => WORD,
        _ => return None,
    };
    Some(ClassItem::Ascii {
        negated: b[1].is_ascii_uppercase(),
        ranges,
    })
}

/// The ASCII ranges of a POSIX class name (Go's `posixGroup`).
fn posix_class(name: &str) -> Option<&'static [(u8, u8)]> {
    Some(match name {
        "alnum" => &[(b'0', b'9'), (b'A', b'Z'), (b'a', b'z')],
        "alpha" => &[(b'A', b'Z'), (b'a', b'z')],
        "ascii" => &[(0, 0x7f)],
        "blank" => &[(b'\t', b'\t'), (b' ', b' ')],
        "cntrl" => &[(0, 0x1f), (0x7f, 0x7f)],
        "digit" => DIGIT,
        "graph" => &[(0x21, 0x7e)],
        "lower" => &[(b'a', b'z')],
        "print" => &[(0x20, 0x7e)],
        "punct" => &[(0x21, 0x2f), (0x3a, 0x40), (0x5b, 0x60), (0x7b, 0x7e)],
        "space" => &[(b'\t', b'\r'), (b' ', b' ')],
        "upper" => &[(b'A', b'Z')],
        "word" => WORD,
        "xdigit" => &[(b'0', b'9'), (b'A', b'F'), (b'a', b'f')],
        _ => return None,
    })
}

/// Go's `canonicalName`: separators (`_`, `-`, space) dropped, the first
/// letter upper case and the others lower case (ASCII only).
fn canonical_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut first = true;
    for c in name.chars() {
        match c {
            '_' | '-' | ' ' => continue,
            c if first => {
                out.push(c.to_ascii_uppercase());
                first = false;
            }
            c => out.push(c.to_ascii_lowercase()),
        }
    }
    out
}

/// The table a `\p{name}` names, as Go resolves it (`unicodeTable`).
fn unicode_table(name: &str) -> Option<Table> {
    let name = canonical_name(name);
    let names = unicode_names::NAMES;
    names
        .binary_search_by(|(n, _)| n.cmp(&name.as_str()))
        .ok()
        .map(|i| names[i].1)
}

/// Writes `tree` in the `regex` crate's syntax. Every node is written so
/// that it means the same whatever surrounds it (no flag is left set).
fn emit(tree: &Tree, out: &mut String) {
    match &tree.node {
        Node::Empty => out.push_str("(?:)"),
        Node::Literal { c, fold } => emit_literals(&[*c], *fold, out),
        Node::Class {
            negated,
            items,
            fold,
        } => {
            if *fold {
                out.push_str("(?i:");
            }
            emit_class(*negated, items, out);
            if *fold {
                out.push(')');
            }
        }
        Node::Dot { dot_nl: false } => out.push('.'),
        Node::Dot { dot_nl: true } => out.push_str("(?s:.)"),
        Node::BeginLine => out.push_str("(?m:^)"),
        Node::EndLine => out.push_str("(?m:$)"),
        Node::BeginText => out.push_str(r"\A"),
        Node::EndText => out.push_str(r"\z"),
        Node::WordBoundary => out.push_str(r"(?-u:\b)"),
        Node::NoWordBoundary => out.push_str(r"(?-u:\B)"),
        // Only whether a pattern matches is asked: a capture is a group.
        Node::Capture(sub) => emit(sub, out),
        Node::Repeat { sub, op, greedy } => {
            emit_grouped(sub, Precedence::Atom, out);
            match op {
                RepeatOp::Star => out.push('*'),
                RepeatOp::Plus => out.push('+'),
                RepeatOp::Quest => out.push('?'),
                RepeatOp::Counted(min, None) => {
                    let _ = write!(out, "{{{min},}}");
                }
                RepeatOp::Counted(min, Some(max)) if min == max => {
                    let _ = write!(out, "{{{min}}}");
                }
                RepeatOp::Counted(min, Some(max)) => {
                    let _ = write!(out, "{{{min},{max}}}");
                }
            }
            if !greedy {
                out.push('?');
            }
        }
        Node::Concat(items) => {
            let mut i = 0;
            while i < items.len() {
                if let Node::Literal { fold, .. } = items[i].node {
                    // A run of literals with the same case folding.
                    let run: Vec<char> = items[i..]
                        .iter()
                        .map_while(|t| match t.node {
                            Node::Literal { c, fold: f } if f == fold => Some(c),
                            _ => None,
                        })
                        .collect();
                    emit_literals(&run, fold, out);
                    i += run.len();
                } else {
                    emit_grouped(&items[i], Precedence::Concat, out);
                    i += 1;
                }
            }
        }
        Node::Alternate(branches) => {
            for (i, branch) in branches.iter().enumerate() {
                if i > 0 {
                    out.push('|');
                }
                emit(branch, out);
            }
        }
    }
}

/// How tightly a written node binds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Precedence {
    Alternate,
    Concat,
    /// Takes a repetition operator.
    Atom,
}

fn precedence(tree: &Tree) -> Precedence {
    match &tree.node {
        Node::Capture(sub) => precedence(sub),
        Node::Alternate(_) => Precedence::Alternate,
        // Several literals without folding are written side by side.
        Node::Concat(_) | Node::Repeat { .. } => Precedence::Concat,
        _ => Precedence::Atom,
    }
}

/// Writes `tree`, in a group unless it binds at least as tightly as `need`.
fn emit_grouped(tree: &Tree, need: Precedence, out: &mut String) {
    if precedence(tree) >= need {
        emit(tree, out);
    } else {
        out.push_str("(?:");
        emit(tree, out);
        out.push(')');
    }
}

/// Literals: a run of several is only ever written inside a concatenation.
fn emit_literals(chars: &[char], fold: bool, out: &mut String) {
    if fold {
        out.push_str("(?i:");
    }
    for &c in chars {
        push_char(c, out);
    }
    if fold {
        out.push(')');
    }
}

/// Writes one character so that it is literal anywhere, in a class too.
fn push_char(c: char, out: &mut String) {
    if c.is_ascii_alphanumeric() || c == ' ' {
        out.push(c);
    } else if c.is_ascii_punctuation() {
        // `regex` gives meaning to some escaped punctuation (`\<`, `\>`):
        // escape only what `regex::escape` escapes, the others are plain.
        let mut buf = [0; 4];
        out.push_str(&regex::escape(c.encode_utf8(&mut buf)));
    } else if c.is_control() || c.is_whitespace() || !c.is_ascii() && is_invisible(c) {
        let _ = write!(out, r"\x{{{:X}}}", c as u32);
    } else {
        out.push(c);
    }
}

/// Characters better written as an escape in a message.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}' | '\u{fffd}')
        || ('\u{300}'..='\u{36f}').contains(&c)
}

/// The class of no character, written to be placed inside a class.
const NOTHING: &str = r"[^\x{0}-\x{10FFFF}]";

fn emit_class(negated: bool, items: &[ClassItem], out: &mut String) {
    out.push('[');
    if negated {
        out.push('^');
    }
    let start = out.len();
    for item in items {
        match item {
            ClassItem::Range(lo, hi) => {
                // Surrogates are never in a string: leave them out.
                let lo = if (0xD800..=0xDFFF).contains(lo) {
                    0xE000
                } else {
                    *lo
                };
                let hi = if (0xD800..=0xDFFF).contains(hi) {
                    0xD7FF
                } else {
                    *hi
                };
                if lo > hi {
                    continue;
                }
                let (lo, hi) = (char_of(lo), char_of(hi));
                push_char(lo, out);
                if lo != hi {
                    out.push('-');
                    push_char(hi, out);
                }
            }
            ClassItem::Ascii { negated, ranges } => {
                if *negated {
                    out.push_str("[^");
                }
                for &(lo, hi) in *ranges {
                    push_char(char::from(lo), out);
                    if lo != hi {
                        out.push('-');
                        push_char(char::from(hi), out);
                    }
                }
                if *negated {
                    out.push(']');
                }
            }
            ClassItem::Unicode { negated, table } => emit_table(*negated, *table, out),
        }
    }
    if out.len() == start {
        // Only surrogates: a class of nothing.
        out.push_str(NOTHING);
    }
    out.push(']');
}

fn char_of(c: u32) -> char {
    char::from_u32(c).expect("not a surrogate, at most U+10FFFF")
}

/// A Unicode table, written to be placed inside a bracketed class.
fn emit_table(negated: bool, table: Table, out: &mut String) {
    const ALL: &str = r"\x{0}-\x{10FFFF}";
    match (table, negated) {
        (Table::Any, false) => out.push_str(ALL),
        // The empty class: a nested class with nothing in it.
        (Table::Any, true) | (Table::Category("Cs"), false) => out.push_str(NOTHING),
        // Surrogates are never in a string: `\P{Cs}` is any character.
        (Table::Category("Cs"), true) => out.push_str(ALL),
        (Table::Assigned, false) => out.push_str(r"\P{gc=Cn}"),
        (Table::Assigned, true) => out.push_str(r"\p{gc=Cn}"),
        (Table::Ascii, false) => out.push_str(r"\x{0}-\x{7F}"),
        (Table::Ascii, true) => out.push_str(r"[^\x{0}-\x{7F}]"),
        (Table::Category(name), negated) => {
            let _ = write!(out, r"\{}{{gc={name}}}", if negated { 'P' } else { 'p' });
        }
        (Table::Script(name), negated) => {
            let _ = write!(out, r"\{}{{sc={name}}}", if negated { 'P' } else { 'p' });
        }
    }
}
