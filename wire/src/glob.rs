//! Glob patterns of `cache:invalidate` payloads.
//!
//! The syntax is the one Redis uses for `KEYS` and `PSUBSCRIBE`, made strict:
//! - `*` matches any run of characters (also none, also `:`), `?` exactly one character;
//! - `[abc]` one of the listed characters, `[a-z]` a range, `[!x]` or `[^x]` anything but;
//!   a `]` right after `[` (or `[!`) is a literal member, as is a `-` first or last;
//! - `\` makes the next character literal, outside and inside classes (`\*`, `\[`, `\\`);
//! - everything else matches itself. Matching is per Unicode character, case-sensitive.
//!
//! Where Redis guesses (an unclosed `[`, a trailing `\`, a range written backwards) this
//! module refuses the pattern with a [`GlobError`], so that a typo is reported to whoever
//! sent it instead of silently matching something unexpected.
//!
//! Matching is iterative with backtracking to the last `*` only: O(pattern x key) in the worst
//! case, never exponential.

use std::fmt;

/// Why a pattern was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GlobError {
    /// The pattern is empty.
    Empty,
    /// A `[` without its closing `]`.
    UnclosedClass,
    /// A `\` at the very end, with nothing to escape.
    TrailingBackslash,
    /// A range whose start comes after its end, like `[z-a]`.
    ReversedRange(char, char),
    /// More than [`MAX_PATTERN_CHARS`] characters.
    TooLong(usize),
}

/// Longest pattern accepted, in characters: bounds the matching cost per key.
pub const MAX_PATTERN_CHARS: usize = 256;

impl fmt::Display for GlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GlobError::Empty => f.write_str("the pattern is empty"),
            GlobError::UnclosedClass => f.write_str("`[` without a closing `]`"),
            GlobError::TrailingBackslash => f.write_str("`\\` at the end escapes nothing"),
            GlobError::ReversedRange(a, b) => write!(f, "range `{a}-{b}` is reversed"),
            GlobError::TooLong(n) => write!(
                f,
                "the pattern has {n} characters, more than the {MAX_PATTERN_CHARS} allowed"
            ),
        }
    }
}

impl std::error::Error for GlobError {}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ClassItem {
    One(char),
    Range(char, char),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyOne,
    AnyRun,
    Class {
        negated: bool,
        items: Vec<ClassItem>,
    },
}

impl Token {
    /// Whether a single-character token accepts `c` (never called for `AnyRun`).
    fn accepts(&self, c: char) -> bool {
        match self {
            Token::Literal(l) => *l == c,
            Token::AnyOne => true,
            Token::AnyRun => true,
            Token::Class { negated, items } => {
                let hit = items.iter().any(|item| match item {
                    ClassItem::One(x) => *x == c,
                    ClassItem::Range(lo, hi) => (*lo..=*hi).contains(&c),
                });
                hit != *negated
            }
        }
    }
}

/// A parsed glob pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    tokens: Vec<Token>,
    /// The one key the pattern matches, when it has no wildcard (escapes resolved).
    literal: Option<String>,
}

impl Pattern {
    /// Parses a pattern.
    pub fn new(pattern: &str) -> Result<Pattern, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        let chars = pattern.chars().count();
        if chars > MAX_PATTERN_CHARS {
            return Err(GlobError::TooLong(chars));
        }
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            let token = match c {
                '*' => {
                    if tokens.last() == Some(&Token::AnyRun) {
                        continue; // `**` is `*`
                    }
                    Token::AnyRun
                }
                '?' => Token::AnyOne,
                '\\' => Token::Literal(chars.next().ok_or(GlobError::TrailingBackslash)?),
                '[' => parse_class(&mut chars)?,
                c => Token::Literal(c),
            };
            tokens.push(token);
        }
        let literal = tokens
            .iter()
            .map(|t| match t {
                Token::Literal(c) => Some(*c),
                _ => None,
            })
            .collect::<Option<String>>();
        Ok(Pattern {
            source: pattern.to_string(),
            tokens,
            literal,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The single key this pattern matches when it has no wildcard, escapes resolved
    /// (`user\*1` -> `user*1`); lets a cache evict it without scanning.
    pub fn as_literal(&self) -> Option<&str> {
        self.literal.as_deref()
    }

    /// Whether `key` matches the whole pattern.
    pub fn matches(&self, key: &str) -> bool {
        if let Some(literal) = &self.literal {
            return literal == key;
        }
        let tokens = &self.tokens;
        let (mut t, mut k) = (0usize, 0usize);
        // After a mismatch, resume at the token after the last `*`, with that `*` taking one
        // more character of the key.
        let mut resume: Option<(usize, usize)> = None;
        loop {
            if let Some(token) = tokens.get(t) {
                if *token == Token::AnyRun {
                    resume = Some((t + 1, k));
                    t += 1;
                    continue;
                }
                if let Some(c) = key[k..].chars().next() {
                    if token.accepts(c) {
                        t += 1;
                        k += c.len_utf8();
                        continue;
                    }
                }
            } else if k == key.len() {
                return true;
            }
            match resume {
                Some((rt, rk)) if rk < key.len() => {
                    let step = key[rk..].chars().next().map_or(1, char::len_utf8);
                    resume = Some((rt, rk + step));
                    t = rt;
                    k = rk + step;
                }
                _ => return false,
            }
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for Pattern {
    type Err = GlobError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::new(s)
    }
}

/// Parses a class after its `[`, up to and including its `]`.
fn parse_class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<Token, GlobError> {
    let negated = matches!(chars.peek(), Some('!' | '^'));
    if negated {
        chars.next();
    }
    let mut items = Vec::new();
    let mut first = true;
    loop {
        let c = match chars.next().ok_or(GlobError::UnclosedClass)? {
            ']' if !first => break,
            '\\' => chars.next().ok_or(GlobError::UnclosedClass)?,
            c => c,
        };
        first = false;
        // `c-d` is a range unless the `-` is the last member (`[a-]`).
        let mut ahead = chars.clone();
        if ahead.next() == Some('-') && !matches!(ahead.peek(), Some(']') | None) {
            chars.next();
            let end = match chars.next().ok_or(GlobError::UnclosedClass)? {
                '\\' => chars.next().ok_or(GlobError::UnclosedClass)?,
                e => e,
            };
            if end < c {
                return Err(GlobError::ReversedRange(c, end));
            }
            items.push(ClassItem::Range(c, end));
        } else {
            items.push(ClassItem::One(c));
        }
    }
    Ok(Token::Class { negated, items })
}

/// Parses `pattern` and matches `key` against it.
pub fn matches(pattern: &str, key: &str) -> Result<bool, GlobError> {
    Ok(Pattern::new(pattern)?.matches(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_patterns_are_refused() {
        let at_limit = "a*".repeat(MAX_PATTERN_CHARS / 2);
        assert!(Pattern::new(&at_limit).is_ok());
        let over = format!("{at_limit}b");
        assert_eq!(
            Pattern::new(&over).unwrap_err(),
            GlobError::TooLong(MAX_PATTERN_CHARS + 1)
        );
    }

    /// (pattern, key, expected)
    const TABLE: &[(&str, &str, bool)] = &[
        // no wildcard: exact match only
        ("user:42", "user:42", true),
        ("user:42", "user:420", false),
        ("user:42", "user:4", false),
        ("user:42", "User:42", false),
        // `*`
        ("user:*", "user:42", true),
        ("user:*", "user:", true),
        ("user:*", "user:42:profile", true),
        ("user:*", "users:42", false),
        ("*", "", true),
        ("*", "anything:at:all", true),
        ("*:profile", "user:42:profile", true),
        ("*:profile", "user:42:profiles", false),
        ("a*b*c", "abc", true),
        ("a*b*c", "aXXbYYc", true),
        ("a*b*c", "aXXbYY", false),
        ("a**b", "ab", true),
        (
            "*a*a*a*a*b",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            false,
        ),
        // `?`
        ("user:?", "user:7", true),
        ("user:?", "user:", false),
        ("user:?", "user:77", false),
        ("user:??", "user:77", true),
        ("?", "é", true),
        // classes
        ("user:[abc]", "user:b", true),
        ("user:[abc]", "user:d", false),
        ("user:[a-z]1", "user:q1", true),
        ("user:[a-z]1", "user:Q1", false),
        ("user:[0-9a-f]", "user:c", true),
        ("user:[!x]", "user:y", true),
        ("user:[!x]", "user:x", false),
        ("user:[^x]", "user:x", false),
        ("user:[!a-c]", "user:d", true),
        ("user:[!a-c]", "user:b", false),
        ("[]]", "]", true),
        ("[!]]", "]", false),
        ("[!]]", "a", true),
        ("[a-]", "-", true),
        ("[-a]", "-", true),
        ("[a-]", "b", false),
        ("[é-ë]", "ê", true),
        // escapes
        ("user\\*", "user*", true),
        ("user\\*", "user:42", false),
        ("what\\?", "what?", true),
        ("what\\?", "whatX", false),
        ("\\[literal\\]", "[literal]", true),
        ("\\[literal\\]", "l", false),
        ("back\\\\slash", "back\\slash", true),
        ("\\a", "a", true),
        ("[\\]]", "]", true),
        ("[a\\-z]", "-", true),
        ("[a\\-z]", "b", false),
        ("*\\*", "ends with *", true),
        ("*\\*", "ends without", false),
    ];

    #[test]
    fn glob_table() {
        for (pattern, key, expected) in TABLE {
            assert_eq!(
                matches(pattern, key).unwrap(),
                *expected,
                "pattern {pattern:?} on key {key:?}"
            );
        }
    }

    #[test]
    fn literal_patterns_resolve_escapes() {
        assert_eq!(Pattern::new("user:1").unwrap().as_literal(), Some("user:1"));
        assert_eq!(Pattern::new("a\\*b").unwrap().as_literal(), Some("a*b"));
        assert_eq!(Pattern::new("a*b").unwrap().as_literal(), None);
        assert_eq!(Pattern::new("a[b]").unwrap().as_literal(), None);
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert_eq!(Pattern::new(""), Err(GlobError::Empty));
        assert_eq!(Pattern::new("user:["), Err(GlobError::UnclosedClass));
        assert_eq!(Pattern::new("user:[abc"), Err(GlobError::UnclosedClass));
        assert_eq!(Pattern::new("[]"), Err(GlobError::UnclosedClass));
        assert_eq!(Pattern::new("[a-"), Err(GlobError::UnclosedClass));
        assert_eq!(Pattern::new("user\\"), Err(GlobError::TrailingBackslash));
        assert_eq!(
            Pattern::new("[z-a]"),
            Err(GlobError::ReversedRange('z', 'a'))
        );
    }
}
