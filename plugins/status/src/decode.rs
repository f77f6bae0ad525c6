//! Text checks before scanning: empty or whitespace-only documents and non-text input.

use crate::{MissingReason, swar};

/// Characters that count as blank around values and in "whitespace-only" files: Unicode
/// whitespace (NBSP included) plus the zero-width characters and the BOM.
pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}'
        )
}

/// The ASCII characters of [`is_space`]: tab, line feed, vertical tab, form feed, carriage
/// return and space.
#[inline]
pub(crate) fn is_ascii_space(b: u8) -> bool {
    matches!(b, b'\t'..=b'\r' | b' ')
}

/// Whether `doc` is only [`is_space`] characters; stops at the first other one.
fn is_blank(doc: &str) -> bool {
    match doc.bytes().position(|b| !is_ascii_space(b)) {
        None => true,
        Some(i) => doc[i..].trim_start_matches(is_space).is_empty(),
    }
}

/// Trims [`is_space`] characters from both ends, ASCII spaces byte-wise.
pub(crate) fn trim(s: &str) -> &str {
    let b = s.as_bytes();
    let start = b
        .iter()
        .position(|c| !is_ascii_space(*c))
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !is_ascii_space(*c))
        .map_or(start, |i| i + 1);
    let inner = &s[start..end.max(start)];
    match (inner.as_bytes().first(), inner.as_bytes().last()) {
        (Some(f), Some(l)) if *f < 0x80 && *l < 0x80 => inner,
        _ => inner.trim_matches(is_space),
    }
}

/// Whether the bytes contain a NUL (never in a text file).
pub(crate) fn has_nul(bytes: &[u8]) -> bool {
    bytes.contains(&0)
}

/// How much of a document the binary check looks at (like git's and file(1)'s heuristics, a
/// prefix: binary files show it at once, and the check stays cheap for 5 MB stories).
pub(crate) const BINARY_CHECK_BYTES: usize = 64 * 1024;

/// `Some(reason)` when `doc` cannot carry a status: empty / whitespace-only, or not text: in
/// its first [`BINARY_CHECK_BYTES`], a NUL, or more than 1 in 20 bytes starting a U+FFFD or a
/// control character other than tab, line feed, carriage return and form feed.
pub(crate) fn check_text(doc: &str) -> Option<MissingReason> {
    let window = &doc.as_bytes()[..doc.len().min(BINARY_CHECK_BYTES)];
    let stats = swar::stats(window);
    if stats.nul {
        return Some(MissingReason::NotText);
    }
    if is_blank(doc) {
        return Some(MissingReason::EmptyFile);
    }
    if stats.bad >= 4 && stats.bad.saturating_mul(20) > window.len() {
        return Some(MissingReason::NotText);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_matches_the_unicode_definition() {
        for s in [
            "",
            " ",
            "a",
            " a ",
            "\u{a0}a\u{200b}",
            "\u{b}a\u{c}",
            " é ",
            "\u{3000}",
            "a b",
        ] {
            assert_eq!(trim(s), s.trim_matches(is_space), "{s:?}");
        }
    }

    #[test]
    fn blank_and_binary_inputs_are_classified() {
        assert_eq!(check_text(""), Some(MissingReason::EmptyFile));
        assert_eq!(
            check_text(" \n\t\u{a0}\u{200b}\r\n"),
            Some(MissingReason::EmptyFile)
        );
        assert_eq!(check_text("## Status\0"), Some(MissingReason::NotText));
        assert_eq!(
            check_text("\u{1}\u{2}\u{3}\u{4}ab"),
            Some(MissingReason::NotText)
        );
        assert_eq!(
            check_text("caf\u{FFFD} na\u{FFFD}ve ## Status\nDone\n"),
            None
        );
    }
}
