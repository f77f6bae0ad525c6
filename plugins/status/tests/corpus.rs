//! The parser against the shared BMAD corpus (`tests/corpus`, a vendored copy of the shared corpus, read-only): every
//! status-variants file must parse to its `expected.json` entry, every malformed story file as
//! `MANIFEST.tsv` says, and no input (arbitrary bytes, mutated corpus files) may panic.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bmad_status::{MissingReason, Parse, Source, StatusValue, StoryState, parse, parse_bytes};
use proptest::prelude::*;
use serde_json::Value;

/// The corpus root: `../../tests/corpus` from this crate.
fn corpus_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus");
    assert!(
        dir.join("README.md").is_file(),
        "the BMAD corpus is missing: expected it at {} (tests/corpus in the repository)",
        dir.display()
    );
    dir
}

fn read(rel: &str) -> Vec<u8> {
    let path = corpus_dir().join(rel);
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("cannot read corpus file {}: {e}", path.display()))
}

fn parse_file(rel: &str) -> Parse {
    parse_bytes(&read(rel))
}

/// The corpus's canonical names mapped onto our states (v4 names, then v6 names).
fn canonical(name: &str) -> StoryState {
    match name {
        "Draft" => StoryState::Drafted,
        "Approved" => StoryState::ReadyForDev,
        "InProgress" => StoryState::InProgress,
        "Review" | "ReadyForDone" => StoryState::Review,
        "Done" => StoryState::Done,
        "Blocked" => StoryState::Blocked,
        other => {
            StoryState::from_name(other).unwrap_or_else(|| panic!("unknown canonical {other:?}"))
        }
    }
}

/// Checks one `expected.json` entry; `Err` describes the mismatch.
fn check_variant(dir: &str, entry: &Value) -> Result<(), String> {
    let file = entry["file"].as_str().ok_or("entry without a file")?;
    let raw = entry["raw"].as_str().ok_or("entry without raw")?;
    let want_state = entry["canonical"].as_str().map(canonical);
    let ambiguous = entry["ambiguous"].as_bool().unwrap_or(false);
    let source = entry["source"].as_str();
    let got = parse_file(&format!("{dir}/{file}"));
    let mismatch = |why: &str| Err(format!("{file}: {why}; got {got:?}"));
    let source_ok = |v: &StatusValue| match source {
        Some("frontmatter") => v.source == Source::Frontmatter,
        Some("body") => v.source != Source::Frontmatter,
        _ => true,
    };
    match (&got, ambiguous) {
        (Parse::Conflict(values), true) if source == Some("both") => {
            let joined: Vec<&str> = values.iter().map(|v| v.raw.as_str()).collect();
            if joined.join(" / ") != raw {
                return mismatch(&format!("conflict values should read {raw:?}"));
            }
            Ok(())
        }
        (Parse::Found(v), false) | (Parse::Doubtful(v), true) if source != Some("both") => {
            if v.raw != raw {
                return mismatch(&format!("raw should be {raw:?}"));
            }
            if v.state != want_state {
                return mismatch(&format!("state should be {want_state:?}"));
            }
            if !source_ok(v) {
                return mismatch(&format!("source should be {source:?}"));
            }
            Ok(())
        }
        _ if want_state.is_none() && ambiguous => mismatch("expected doubtful with no state"),
        _ if ambiguous => mismatch("expected doubtful (or conflict)"),
        _ => mismatch("expected found"),
    }
}

fn check_variants_folder(dir: &str) {
    let expected: Value = serde_json::from_slice(&read(&format!("{dir}/expected.json")))
        .unwrap_or_else(|e| panic!("{dir}/expected.json is not JSON: {e}"));
    let entries = expected["files"]
        .as_array()
        .expect("expected.json has a files array");
    let listed: Vec<&str> = entries.iter().filter_map(|e| e["file"].as_str()).collect();
    let mut on_disk: Vec<String> = std::fs::read_dir(corpus_dir().join(dir))
        .expect("status-variants folder is readable")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".md"))
        .collect();
    on_disk.sort();
    let mut errors: Vec<String> = on_disk
        .iter()
        .filter(|f| !listed.contains(&f.as_str()))
        .map(|f| format!("{f}: not listed in expected.json"))
        .collect();
    errors.extend(entries.iter().filter_map(|e| check_variant(dir, e).err()));
    assert!(
        errors.is_empty(),
        "{} of {} files in {dir} mismatch:\n{}",
        errors.len(),
        entries.len(),
        errors.join("\n")
    );
    assert!(
        entries.len() >= 20,
        "{dir}: suspiciously few entries ({})",
        entries.len()
    );
}

#[test]
fn v4_status_variants_match_expected_json() {
    check_variants_folder("v4/status-variants");
}

#[test]
fn v6_status_variants_match_expected_json() {
    check_variants_folder("v6/status-variants");
}

// ---- malformed/: one test per story file of MANIFEST.tsv ------------------------------------

const MALFORMED_STORIES: [&str; 21] = [
    "no-status-section.md",
    "no-status-line-v6.md",
    "two-status-sections.md",
    "two-status-nested-dev-agent-record.md",
    "two-status-lines-v6.md",
    "empty.md",
    "whitespace-only.md",
    "binary-junk.md",
    "binary-tail.md",
    "huge-5mb.md",
    "very-long-line-no-eol.md",
    "status-heading-empty.md",
    "status-only-in-code-fence.md",
    "truncated-mid-value.md",
    "frontmatter-unclosed.md",
    "status-unicode-whitespace.md",
    "status-is-story-key-v6.md",
    "invalid-utf8.md",
    "bom-crlf.md",
    "crlf-v6.md",
    "cr-only.md",
];

fn malformed(file: &str) -> Parse {
    parse_file(&format!("malformed/{file}"))
}

/// Asserts a found value with this raw text, state and line.
fn assert_found(got: &Parse, raw: &str, state: StoryState, line: u32) {
    match got {
        Parse::Found(v) => {
            assert_eq!(
                (v.raw.as_str(), v.state, v.line),
                (raw, Some(state), line),
                "{got:?}"
            )
        }
        other => panic!("expected found {raw:?}, got {other:?}"),
    }
}

fn conflict_raws(got: &Parse) -> Vec<(&str, u32)> {
    match got {
        Parse::Conflict(values) => values.iter().map(|v| (v.raw.as_str(), v.line)).collect(),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[test]
fn manifest_story_files_are_all_tested() {
    let manifest =
        String::from_utf8(read("malformed/MANIFEST.tsv")).expect("MANIFEST.tsv is UTF-8");
    let mut stories: Vec<&str> = manifest
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut cols = l.split('\t');
            let file = cols.next()?;
            cols.next()?.starts_with("story").then_some(file)
        })
        .collect();
    stories.sort_unstable();
    let mut tested = MALFORMED_STORIES.to_vec();
    tested.sort_unstable();
    assert_eq!(
        stories, tested,
        "MANIFEST.tsv story files and the tests below differ"
    );
}

#[test]
fn malformed_no_status_section() {
    assert_eq!(
        malformed("no-status-section.md"),
        Parse::Missing(MissingReason::NoStatus)
    );
}

#[test]
fn malformed_no_status_line_v6() {
    assert_eq!(
        malformed("no-status-line-v6.md"),
        Parse::Missing(MissingReason::NoStatus)
    );
}

#[test]
fn malformed_two_status_sections_conflict() {
    assert_eq!(
        conflict_raws(&malformed("two-status-sections.md")),
        [("Draft", 5), ("Done", 50)]
    );
}

/// Documented choice: the top-level `## Status` wins over the Dev Agent Record's `### Status`.
#[test]
fn malformed_nested_dev_agent_record_status_yields_to_top_level() {
    assert_found(
        &malformed("two-status-nested-dev-agent-record.md"),
        "InProgress",
        StoryState::InProgress,
        5,
    );
    let all = bmad_status::candidates(
        &String::from_utf8(read("malformed/two-status-nested-dev-agent-record.md")).expect("UTF-8"),
    );
    assert_eq!(
        all.len(),
        2,
        "candidates() lists the nested value too: {all:?}"
    );
}

#[test]
fn malformed_two_status_lines_v6_conflict() {
    assert_eq!(
        conflict_raws(&malformed("two-status-lines-v6.md")),
        [("review", 3), ("done", 46)]
    );
}

#[test]
fn malformed_empty_file() {
    assert_eq!(
        malformed("empty.md"),
        Parse::Missing(MissingReason::EmptyFile)
    );
}

#[test]
fn malformed_whitespace_only() {
    assert_eq!(
        malformed("whitespace-only.md"),
        Parse::Missing(MissingReason::EmptyFile)
    );
}

#[test]
fn malformed_binary_junk_is_not_text() {
    assert_eq!(
        malformed("binary-junk.md"),
        Parse::Missing(MissingReason::NotText)
    );
    let lossy = String::from_utf8_lossy(&read("malformed/binary-junk.md")).into_owned();
    assert_eq!(parse(&lossy), Parse::Missing(MissingReason::NotText));
}

/// Choice: a NUL byte anywhere makes the file not text (the manifest allows either answer).
#[test]
fn malformed_binary_tail_is_rejected_without_panic() {
    assert_eq!(
        malformed("binary-tail.md"),
        Parse::Missing(MissingReason::NotText)
    );
}

/// Parses in linear time: a generous bound that any quadratic behaviour would blow by far.
fn assert_fast(file: &str, raw: &str, state: StoryState, line: u32) {
    let bytes = read(&format!("malformed/{file}"));
    let started = Instant::now();
    let got = parse_bytes(&bytes);
    let took = started.elapsed();
    assert_found(&got, raw, state, line);
    assert!(
        took < Duration::from_secs(5),
        "{file}: {} bytes took {took:?}",
        bytes.len()
    );
}

#[test]
fn malformed_huge_5mb_parses_fast() {
    assert_fast("huge-5mb.md", "Done", StoryState::Done, 5);
}

#[test]
fn malformed_very_long_line_no_eol_parses_fast() {
    assert_fast(
        "very-long-line-no-eol.md",
        "Approved",
        StoryState::ReadyForDev,
        5,
    );
}

#[test]
fn malformed_status_heading_empty() {
    assert_eq!(
        malformed("status-heading-empty.md"),
        Parse::Missing(MissingReason::EmptyValue(3))
    );
}

#[test]
fn malformed_status_only_in_code_fence_is_not_read() {
    assert_eq!(
        malformed("status-only-in-code-fence.md"),
        Parse::Missing(MissingReason::NoStatus)
    );
}

#[test]
fn malformed_truncated_mid_value_is_not_prefix_matched() {
    match malformed("truncated-mid-value.md") {
        Parse::Doubtful(v) => assert_eq!((v.raw.as_str(), v.state, v.line), ("Rev", None, 5)),
        other => panic!("expected doubtful Rev, got {other:?}"),
    }
}

/// Choice: an unclosed frontmatter is not read; the body's `Status: review` is the status.
#[test]
fn malformed_frontmatter_unclosed_reads_the_body() {
    match malformed("frontmatter-unclosed.md") {
        Parse::Found(v) => {
            assert_eq!(
                (v.raw.as_str(), v.state, v.line),
                ("review", Some(StoryState::Review), 7)
            );
            assert_eq!(v.source, Source::Line);
        }
        other => panic!("expected found review, got {other:?}"),
    }
}

#[test]
fn malformed_status_unicode_whitespace_is_normalised() {
    assert_found(
        &malformed("status-unicode-whitespace.md"),
        "Done",
        StoryState::Done,
        5,
    );
}

#[test]
fn malformed_status_is_story_key_is_unknown() {
    match malformed("status-is-story-key-v6.md") {
        Parse::Doubtful(v) => {
            assert_eq!(
                (v.raw.as_str(), v.state, v.line),
                ("1-2-user-registration", None, 3)
            )
        }
        other => panic!("expected doubtful, got {other:?}"),
    }
}

#[test]
fn malformed_invalid_utf8_is_decoded_lossily() {
    assert_found(&malformed("invalid-utf8.md"), "Done", StoryState::Done, 5);
}

#[test]
fn malformed_bom_crlf() {
    assert_found(&malformed("bom-crlf.md"), "Review", StoryState::Review, 5);
}

#[test]
fn malformed_crlf_v6() {
    assert_found(&malformed("crlf-v6.md"), "done", StoryState::Done, 3);
}

#[test]
fn malformed_cr_only() {
    assert_found(
        &malformed("cr-only.md"),
        "Approved",
        StoryState::ReadyForDev,
        5,
    );
}

// ---- no panic, whatever the input -------------------------------------------------------------

/// Small corpus story files (under 64 KiB), for mutation.
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut out = Vec::new();
        for dir in [
            "v4/status-variants",
            "v6/status-variants",
            "malformed",
            "v4/docs/stories",
        ] {
            let Ok(entries) = std::fs::read_dir(corpus_dir().join(dir)) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let small = entry.metadata().is_ok_and(|m| m.len() < 64 * 1024);
                if small && path.extension().is_some_and(|e| e == "md") {
                    out.push(std::fs::read(&path).unwrap_or_default());
                }
            }
        }
        assert!(out.len() > 40, "too few corpus seeds: {}", out.len());
        out
    })
}

/// Fragments that steer mutations into the parser's interesting paths.
const TOKENS: [&str; 18] = [
    "## Status",
    "### Status\n",
    "Status:",
    "**Status:**",
    "\n",
    "\r",
    "\r\n",
    "<!--",
    "-->",
    "```",
    "~~~",
    "---\n",
    "\u{a0}",
    "\u{200b}",
    "\u{feff}",
    "**",
    "Done",
    "é",
];

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Flip(usize, u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), proptest::sample::select(TOKENS.to_vec()))
            .prop_map(|(at, t)| Edit::Insert(at, t.as_bytes().to_vec())),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, b)| Edit::Insert(at, b)),
        (any::<usize>(), 1usize..64).prop_map(|(at, n)| Edit::Delete(at, n)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Flip(at, b)),
    ]
}

fn apply(mut doc: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = doc.len();
        match e {
            Edit::Insert(at, bytes) => {
                let at = at % (len + 1);
                doc.splice(at..at, bytes.iter().copied());
            }
            Edit::Delete(at, n) if len > 0 => {
                let at = at % len;
                doc.drain(at..(at + n).min(len));
            }
            Edit::Flip(at, b) if len > 0 => doc[at % len] = *b,
            _ => {}
        }
    }
    doc
}

/// `text` with each HTML comment (`<!--` up to the next `-->` after it, or the end) replaced by
/// as many spaces as it has bytes: what the scanner reads of a line.
fn blank_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("<!--") {
        out.push_str(&rest[..open]);
        let end = rest[open + 4..]
            .find("-->")
            .map_or(rest.len(), |i| open + 4 + i + 3);
        out.extend(std::iter::repeat_n(' ', end - open));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Invariants of every outcome: values point at their own text in the parsed document.
fn check_invariants(text: &str, got: &Parse) -> Result<(), TestCaseError> {
    let values: Vec<&StatusValue> = match got {
        Parse::Found(v) | Parse::Doubtful(v) => vec![v],
        Parse::Conflict(vs) => {
            prop_assert!(vs.len() >= 2 && vs.len() <= bmad_status::MAX_CONFLICT_VALUES);
            vs.iter().collect()
        }
        Parse::Missing(_) => vec![],
    };
    for v in values {
        let Some(at) = text.get(v.span.clone()) else {
            return Err(TestCaseError::fail(format!(
                "span {:?} not in the text",
                v.span
            )));
        };
        prop_assert!(!v.raw.is_empty() && v.line >= 1);
        // `raw` is the value's text; in Markdown its HTML comments read as spaces, byte for byte
        // (in YAML frontmatter `<!--` is text like any other).
        prop_assert!(
            at == v.raw || blank_comments(at) == v.raw || v.raw.ends_with('…'),
            "span {at:?} vs raw {:?}",
            v.raw
        );
        if let Parse::Found(_) = got {
            prop_assert!(v.state.is_some());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let got = parse_bytes(&bytes);
        check_invariants(&String::from_utf8_lossy(&bytes), &got)?;
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        let got = parse(&text);
        check_invariants(&text, &got)?;
        prop_assert_eq!(parse_bytes(text.as_bytes()), got);
    }

    #[test]
    fn mutated_corpus_files_never_panic(
        seed in any::<prop::sample::Index>(),
        edits in proptest::collection::vec(edit(), 1..12),
    ) {
        let seeds = seeds();
        let doc = apply(seeds[seed.index(seeds.len())].clone(), &edits);
        let got = parse_bytes(&doc);
        check_invariants(&String::from_utf8_lossy(&doc), &got)?;
    }
}
