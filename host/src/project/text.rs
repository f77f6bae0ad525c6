//! Small text helpers shared by the project readers: line spans, slugs, YAML key lines.

/// Byte ranges (start, end-without-terminator) of the lines of `bytes`.
///
/// With `universal`, a lone `\r` also ends a line (old Mac files); otherwise only `\n` does and a
/// `\r` before it belongs to the terminator. The last line is included even without a final
/// newline; an empty input has no lines.
pub(crate) fn line_spans(bytes: &[u8], universal: bool) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                let end = if i > start && bytes[i - 1] == b'\r' {
                    i - 1
                } else {
                    i
                };
                spans.push((start, end));
                start = i + 1;
            }
            b'\r' if universal && bytes.get(i + 1) != Some(&b'\n') => {
                spans.push((start, i));
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < bytes.len() {
        spans.push((start, bytes.len()));
    }
    spans
}

/// Lines of `text` split on `\n`, `\r\n` or a lone `\r`, each with its 1-based number.
pub(crate) fn numbered_lines(text: &str) -> impl Iterator<Item = (u32, &str)> {
    line_spans(text.as_bytes(), true)
        .into_iter()
        .enumerate()
        // Spans end at ASCII terminators, so they are char boundaries.
        .map(move |(i, (s, e))| (u32::try_from(i + 1).unwrap_or(u32::MAX), &text[s..e]))
}

/// The kebab-case slug BMAD derives from a title (`sprint_plan.py` `_slug`): lowercase, every run
/// of characters other than `a-z0-9` becomes one `-`, no `-` at either end, `untitled` if empty.
pub fn slug(title: &str) -> String {
    let mut out = String::with_capacity(title.len());
    let mut pending_dash = false;
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if pending_dash && !out.is_empty() {
                out.push('-');
            }
            pending_dash = false;
            out.push(c);
        } else {
            pending_dash = true;
        }
    }
    if out.is_empty() {
        "untitled".to_owned()
    } else {
        out
    }
}

/// The 1-based line of a YAML block-mapping key given as a path (`["prd", "prdSharded"]`), found by
/// indentation alone (good enough to point a person at the right line of a config file).
pub(crate) fn yaml_key_line(text: &str, path: &[&str]) -> Option<u32> {
    let mut depth = 0;
    let mut parent_indent: Option<usize> = None;
    for (no, line) in numbered_lines(text) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if let Some(p) = parent_indent
            && indent <= p
        {
            // Left the parent's block before finding the child.
            return None;
        }
        let key = path.get(depth)?;
        let unquoted = trimmed.trim_start_matches(['"', '\'']);
        if let Some(rest) = unquoted.strip_prefix(key) {
            let rest = rest.trim_start_matches(['"', '\'']).trim_start();
            if rest.starts_with(':') && (depth == 0) == (indent == 0) {
                if depth + 1 == path.len() {
                    return Some(no);
                }
                depth += 1;
                parent_indent = Some(indent);
            }
        }
    }
    None
}

/// `text` shortened to at most `max` characters, with `…` when cut.
pub(crate) fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_handle_crlf_cr_and_no_final_newline() {
        assert_eq!(
            line_spans(b"a\r\nbb\nc", false),
            vec![(0, 1), (3, 5), (6, 7)]
        );
        assert_eq!(line_spans(b"a\rb\rc", false), vec![(0, 5)]);
        assert_eq!(
            line_spans(b"a\rb\r\nc\r", true),
            vec![(0, 1), (2, 3), (5, 6)]
        );
        assert_eq!(line_spans(b"", true), Vec::<(usize, usize)>::new());
        assert_eq!(line_spans(b"\n\n", false), vec![(0, 0), (1, 1)]);
    }

    #[test]
    fn slug_matches_sprint_plan() {
        assert_eq!(
            slug("Project Setup and Health Check"),
            "project-setup-and-health-check"
        );
        assert_eq!(
            slug("User Accounts & Plant Catalogue"),
            "user-accounts-plant-catalogue"
        );
        assert_eq!(slug("  --Sign-In (v2)!  "), "sign-in-v2");
        assert_eq!(slug("Café crème"), "caf-cr-me");
        assert_eq!(slug(""), "untitled");
        assert_eq!(slug("!!!"), "untitled");
    }

    #[test]
    fn finds_nested_yaml_keys() {
        let text = "a: 1\nprd:\n  prdFile: x\n  prdSharded: true\nqa:\n  qaLocation: docs/qa\n";
        assert_eq!(yaml_key_line(text, &["prd"]), Some(2));
        assert_eq!(yaml_key_line(text, &["prd", "prdSharded"]), Some(4));
        assert_eq!(yaml_key_line(text, &["qa", "qaLocation"]), Some(6));
        assert_eq!(yaml_key_line(text, &["qa", "prdFile"]), None);
        assert_eq!(yaml_key_line(text, &["devStoryLocation"]), None);
    }

    #[test]
    fn clip_cuts_on_char_boundaries() {
        assert_eq!(clip("héllo", 2), "hé…");
        assert_eq!(clip("hi", 5), "hi");
    }
}
