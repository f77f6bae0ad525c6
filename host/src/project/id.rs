//! Story ids (`1.2`, `1-2`, `4.4a`): parsing, numeric ordering and display.

use std::fmt;
use std::str::FromStr;

/// A story id: epic number, story number and an optional lowercase letter suffix (`4.4a`).
///
/// Ordering is numeric (`1.2 < 1.10`); a suffixed story sorts after its base (`4.4 < 4.4a < 4.5`).
/// Parsed from `1.2` (v4 and PRD headings) or `1-2` (v6 sprint-status keys and file names);
/// displayed as `1.2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoryId {
    /// The epic number.
    pub epic: u32,
    /// The story number within the epic.
    pub story: u32,
    /// An optional letter suffix for split stories (`4.4a`), always lowercase.
    pub suffix: Option<char>,
}

impl StoryId {
    /// A story id without suffix.
    pub const fn new(epic: u32, story: u32) -> Self {
        Self {
            epic,
            story,
            suffix: None,
        }
    }

    /// The id in sprint-status key form: `1-2`, `4-4a`.
    pub fn key_prefix(&self) -> String {
        match self.suffix {
            Some(c) => format!("{}-{}{c}", self.epic, self.story),
            None => format!("{}-{}", self.epic, self.story),
        }
    }

    /// Parses the start of `s` as an id (`1.2`, `1-2`, `4.4a`) and returns it with the number of
    /// bytes consumed. A letter suffix is taken only when no further letter or digit follows it.
    pub(crate) fn parse_prefix(s: &str) -> Option<(StoryId, usize)> {
        let bytes = s.as_bytes();
        let (epic, mut i) = parse_u32(bytes, 0)?;
        match bytes.get(i) {
            Some(b'.') | Some(b'-') => i += 1,
            _ => return None,
        }
        let (story, j) = parse_u32(bytes, i)?;
        i = j;
        let mut suffix = None;
        if let Some(&c) = bytes.get(i)
            && c.is_ascii_alphabetic()
            && !bytes.get(i + 1).is_some_and(|n| n.is_ascii_alphanumeric())
        {
            suffix = Some(c.to_ascii_lowercase() as char);
            i += 1;
        }
        Some((
            StoryId {
                epic,
                story,
                suffix,
            },
            i,
        ))
    }
}

/// Parses a run of ASCII digits at `start` (at least one, no overflow).
fn parse_u32(bytes: &[u8], start: usize) -> Option<(u32, usize)> {
    let mut end = start;
    while bytes.get(end).is_some_and(u8::is_ascii_digit) {
        end += 1;
    }
    if end == start {
        return None;
    }
    let digits = std::str::from_utf8(&bytes[start..end]).ok()?;
    digits.parse().ok().map(|n| (n, end))
}

impl fmt::Display for StoryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.epic, self.story)?;
        if let Some(c) = self.suffix {
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// Why a story id did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid story id `{input}`: expected EPIC.STORY such as `1.2` (or `1-2`, `4.4a`)")]
pub struct ParseStoryIdError {
    /// The text that did not parse.
    pub input: String,
}

impl FromStr for StoryId {
    type Err = ParseStoryIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        match StoryId::parse_prefix(t) {
            Some((id, used)) if used == t.len() => Ok(id),
            _ => Err(ParseStoryIdError {
                input: s.to_owned(),
            }),
        }
    }
}

impl serde::Serialize for StoryId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for StoryId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> StoryId {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parses_dot_dash_and_suffix() {
        assert_eq!(id("1.2"), StoryId::new(1, 2));
        assert_eq!(id("1-2"), StoryId::new(1, 2));
        assert_eq!(id(" 10.11 "), StoryId::new(10, 11));
        assert_eq!(
            id("4.4a"),
            StoryId {
                epic: 4,
                story: 4,
                suffix: Some('a')
            }
        );
        assert_eq!(id("4-4B").suffix, Some('b'));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "1",
            "1.",
            ".2",
            "a.b",
            "1.2.3",
            "1.2ab",
            "1.2 x",
            "99999999999.1",
            "1:2",
        ] {
            let err = bad.parse::<StoryId>().expect_err(bad);
            assert!(err.to_string().contains("expected EPIC.STORY"), "{err}");
        }
    }

    #[test]
    fn displays_with_dot_and_key_with_dash() {
        assert_eq!(id("1-10").to_string(), "1.10");
        assert_eq!(id("4.4a").to_string(), "4.4a");
        assert_eq!(id("4.4a").key_prefix(), "4-4a");
        assert_eq!(id("2.3").key_prefix(), "2-3");
    }

    #[test]
    fn orders_numerically() {
        let mut ids: Vec<StoryId> = [
            "1.10", "1.2", "2.1", "1.1", "10.1", "4.4a", "4.4", "4.5", "1.9",
        ]
        .iter()
        .map(|s| id(s))
        .collect();
        ids.sort();
        let shown: Vec<String> = ids.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "1.1", "1.2", "1.9", "1.10", "2.1", "4.4", "4.4a", "4.5", "10.1"
            ]
        );
    }

    #[test]
    fn prefix_parse_stops_at_title() {
        assert_eq!(
            StoryId::parse_prefix("1.2: Title"),
            Some((StoryId::new(1, 2), 3))
        );
        assert_eq!(
            StoryId::parse_prefix("4-5 Dash"),
            Some((StoryId::new(4, 5), 3))
        );
        assert_eq!(
            StoryId::parse_prefix("1-1-project-setup").map(|p| p.1),
            Some(3)
        );
        assert_eq!(
            StoryId::parse_prefix("1-10-late").map(|p| p.0),
            Some(StoryId::new(1, 10))
        );
    }
}
