//! Room patterns, as the `rooms` claim of a connection token and `HUB_PUBLIC_ROOMS` write
//! them: exact room names (`support-42`) and prefixes ending in `*` (`team-7-*`; `*` alone is
//! every room). See `docs/security.md#room-access`.

use super::*;

/// One pattern: an exact room name, or every room starting with a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoomPattern {
    /// Exactly this room.
    Exact(Box<str>),
    /// Every room whose name starts with this (possibly empty) prefix.
    Prefix(Box<str>),
}

impl RoomPattern {
    /// Parses `name` or `prefix*`.
    pub fn parse(s: &str) -> Result<RoomPattern, String> {
        let valid_prefix = |p: &str| {
            p.len() < 64
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'.' | b'-'))
        };
        match s.strip_suffix('*') {
            Some(prefix) if valid_prefix(prefix) => Ok(RoomPattern::Prefix(prefix.into())),
            None if is_valid_room(s) => Ok(RoomPattern::Exact(s.into())),
            _ => Err(format!(
                "`{}` is neither a room name nor a prefix ending in `*`",
                clip(s)
            )),
        }
    }

    /// True when `room` is this room or starts with this prefix.
    pub fn matches(&self, room: &str) -> bool {
        match self {
            RoomPattern::Exact(name) => **name == *room,
            RoomPattern::Prefix(prefix) => room.starts_with(&**prefix),
        }
    }
}

/// A list of patterns; a room matches when any of them does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomPatterns(Box<[RoomPattern]>);

impl RoomPatterns {
    /// Parses each entry (all must be valid).
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<RoomPatterns, String> {
        entries
            .into_iter()
            .map(RoomPattern::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(|v| RoomPatterns(v.into()))
    }

    /// Parses a comma-separated list (`HUB_PUBLIC_ROOMS`); blanks are skipped.
    pub fn parse_list(list: &str) -> Result<RoomPatterns, String> {
        RoomPatterns::parse(list.split(',').map(str::trim).filter(|s| !s.is_empty()))
    }

    /// True when any pattern matches `room`.
    pub fn matches(&self, room: &str) -> bool {
        self.0.iter().any(|p| p.matches(room))
    }

    /// True for an empty list.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when the list matches every room (`*`).
    pub fn is_everything(&self) -> bool {
        self.0
            .iter()
            .any(|p| matches!(p, RoomPattern::Prefix(prefix) if prefix.is_empty()))
    }
}

impl fmt::Display for RoomPatterns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match p {
                RoomPattern::Exact(name) => f.write_str(name)?,
                RoomPattern::Prefix(prefix) => write!(f, "{prefix}*")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_names_and_prefixes() {
        let p = RoomPatterns::parse(["support-42", "team-7-*"]).unwrap();
        assert!(p.matches("support-42") && p.matches("team-7-") && p.matches("team-7-dev"));
        assert!(!p.matches("support-420") && !p.matches("team-70") && !p.matches("support-4"));
        assert!(!p.is_everything());
        let all = RoomPatterns::parse_list(" * ").unwrap();
        assert!(all.is_everything() && all.matches("anything"));
        assert!(RoomPatterns::parse_list("").unwrap().is_empty());
        assert_eq!(p.to_string(), "support-42, team-7-*");
        for bad in ["a b", "x*y", "**", "", &"r".repeat(65)] {
            assert!(RoomPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
