//! Text checks before scanning: empty or whitespace-only documents and non-text input.

use crate::MissingReason;

/// Characters that count as blank around values and in "whitespace-only" files: Unicode
/// whitespace (NBSP included) plus the zero-width characters and the BOM.
pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}'
        )
}

/// Trims [`is_space`] characters from both ends.
pub(crate) fn trim(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// Whether the bytes contain a NUL (never in a text file).
pub(crate) fn has_nul(bytes: &[u8]) -> bool {
    bytes.contains(&0)
}

/// `Some(reason)` when `doc` cannot carry a status: empty / whitespace-only, or not text (a NUL,
/// or more than 1 in 20 characters being U+FFFD or control characters other than tab, line
/// feed, carriage return and form feed). One linear pass.
pub(crate) fn check_text(doc: &str) -> Option<MissingReason> {
    let mut total = 0usize;
    let mut bad = 0usize;
    let mut blank = true;
    for c in doc.chars() {
        total += 1;
        if c == '\0' {
            return Some(MissingReason::NotText);
        }
        if c == '\u{FFFD}' || (c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\x0C')) {
            bad += 1;
        }
        if blank && !is_space(c) {
            blank = false;
        }
    }
    if blank {
        return Some(MissingReason::EmptyFile);
    }
    if bad >= 4 && bad.saturating_mul(20) > total {
        return Some(MissingReason::NotText);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

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
