//! The one way text reaches the page: every character that could open markup is replaced by
//! its character reference, in element content and in attribute values alike (the page is
//! well-formed XML as well as HTML, so it can be checked by an XML parser). Control characters,
//! which XML forbids, become U+FFFD.

use std::fmt::{self, Write};

/// `text` escaped for element content or a quoted attribute value.
#[derive(Debug, Clone, Copy)]
pub(super) struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                '\t' | '\n' | '\r' => f.write_char(c)?,
                c if c.is_control() => f.write_char('\u{FFFD}')?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// `text` cut to at most `max` characters, with `…` when cut.
pub(super) fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((at, _)) => format!("{}…", &text[..at]),
    }
}

/// A path for an `href`: each byte outside the unreserved set and `/` percent-encoded, so no
/// character of a file name can end the attribute or start a scheme.
pub(super) fn url_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_cannot_get_through() {
        let hostile = "<script>alert(1)</script>\"' onload=x &amp; \u{1}";
        let shown = Esc(hostile).to_string();
        assert_eq!(
            shown,
            "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39; onload=x &amp;amp; \u{FFFD}"
        );
        assert!(!shown.contains(['<', '>', '"', '\'']));
    }

    #[test]
    fn cutting_keeps_characters_whole() {
        assert_eq!(cut("héllo", 10), "héllo");
        assert_eq!(cut("héllo", 2), "hé…");
    }

    #[test]
    fn paths_are_percent_encoded() {
        assert_eq!(
            url_path("../runs/a b/1.1-c1-dev.jsonl"),
            "../runs/a%20b/1.1-c1-dev.jsonl"
        );
        assert_eq!(url_path("x\"<>:?#"), "x%22%3C%3E%3A%3F%23");
    }
}
