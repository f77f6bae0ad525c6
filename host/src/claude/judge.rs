//! Judging a call: the outcome of a `result` line, usage-limit / quota messages (with the reset
//! time when stated), and which outcomes are transient enough to retry. Pure; no I/O.

use std::time::{Duration, UNIX_EPOCH};

use super::Outcome;
use super::stream::ResultLine;

/// The outcome a `result` line states on its own terms.
pub(crate) fn judge_result(r: &ResultLine) -> Outcome {
    let text = r.text.as_deref().unwrap_or("");
    // The CLI names the error itself (2.1.330 and later): its text may be any wording.
    if r.is_error && r.api_error.as_deref() == Some(USAGE_LIMIT_REACHED) {
        let message = first_line(text);
        return Outcome::UsageLimit {
            resets: reset_time(text),
            message: if message.is_empty() {
                USAGE_LIMIT_REACHED.to_owned()
            } else {
                message
            },
        };
    }
    if let Some(limit) = usage_limit(text).filter(|_| r.is_error || looks_like_bare_limit(text)) {
        return limit;
    }
    for e in &r.errors {
        if let Some(limit) = usage_limit(e) {
            return limit;
        }
    }
    match r.subtype.as_str() {
        "success" if !r.is_error => Outcome::Success,
        "error_max_turns" => Outcome::MaxTurns,
        "error_max_budget_usd" => Outcome::MaxBudget,
        "error_during_execution" => Outcome::DuringExecution,
        "success" => Outcome::ApiError {
            status: r.api_error_status,
            message: text.to_owned(),
        },
        _ if !r.is_error && !r.subtype.starts_with("error") => Outcome::Success,
        other => {
            let mut message = other.to_owned();
            for part in r.errors.iter().map(String::as_str).chain(r.text.as_deref()) {
                message.push_str(": ");
                message.push_str(part);
            }
            Outcome::ApiError {
                status: r.api_error_status,
                message,
            }
        }
    }
}

/// The `api_error` of a `result` (and of the synthetic assistant message) when the account's
/// usage limit refused the request.
const USAGE_LIMIT_REACHED: &str = "usage_limit_reached";

fn first_line(text: &str) -> String {
    text.trim().lines().next().unwrap_or("").trim().to_owned()
}

/// A usage-limit message that stands alone as the whole result (some CLI versions report it with
/// `is_error: false`).
fn looks_like_bare_limit(text: &str) -> bool {
    let t = text.trim();
    t.len() < 300
        && (t.starts_with("Claude AI usage limit reached") || t.starts_with("You've hit your"))
}

/// Recognises a usage-limit or quota message and extracts the reset time when it is stated:
/// `You've hit your session limit · resets 3pm (Europe/Paris)`, `Session limit reached ∙ resets
/// 10am`, `Claude AI usage limit reached|1750000000` (epoch seconds, given back as RFC 3339),
/// `... usage limit ... reset at 5pm`, `Your credit balance is too low ...`, and the texts of
/// Claude Code 2.1.330+: `You've hit your 5-hour limit · resets 6am (UTC)`, `You've hit your
/// weekly limit · resets Dec 5, 9am (UTC)`, `You're out of usage credits · resets 6am (UTC)`,
/// `You've hit your individual spend limit · ... · your 5-hour limit resets 6am (UTC)`. Rate
/// limits that a retry fixes (`Request rejected (429) · ... rate limit`, `Server is temporarily
/// limiting requests (not your usage limit)`) are not usage limits.
pub fn usage_limit(text: &str) -> Option<Outcome> {
    let lower = text.to_lowercase();
    if lower.contains("not your usage limit") || lower.contains("temporarily limiting requests") {
        return None;
    }
    let is_limit = lower.contains("usage limit")
        || lower.contains("out of usage credits")
        || lower.contains("session limit")
        || lower.contains("weekly limit")
        || lower.contains("hour limit")
        || (lower.contains("you've hit your") && lower.contains("limit"))
        || (lower.contains("limit reached") && lower.contains("reset"))
        || lower.contains("exceeded your current quota")
        || lower.contains("credit balance is too low");
    if !is_limit {
        return None;
    }
    Some(Outcome::UsageLimit {
        resets: reset_time(text),
        message: first_line(text),
    })
}

fn reset_time(text: &str) -> Option<String> {
    // `Claude AI usage limit reached|<epoch>`
    if let Some((_, tail)) = text.split_once('|') {
        let digits: String = tail
            .trim()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(secs) = digits.parse::<u64>() {
            let at = UNIX_EPOCH + Duration::from_secs(secs);
            return Some(humantime::format_rfc3339_seconds(at).to_string());
        }
    }
    for key in ["resets at ", "reset at ", "resets: ", "resets ", "reset: "] {
        if let Some(i) = find_ascii_ci(text, key) {
            let line = text[i + key.len()..].lines().next().unwrap_or("");
            let value = line.split(['·', '∙']).next().unwrap_or("");
            let value = value.trim().trim_end_matches(['.', ',', ';']).trim();
            if !value.is_empty() {
                return Some(value.to_owned());
            }
        }
    }
    None
}

/// Byte offset of an ASCII `needle` in `hay`, ignoring ASCII case (always a char boundary).
fn find_ascii_ci(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    (0..=h.len().checked_sub(n.len())?).find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

/// Whether a fresh attempt may fix this outcome.
pub(crate) fn is_transient(o: &Outcome) -> bool {
    match o {
        Outcome::ApiError {
            status: Some(s), ..
        } => *s == 408 || *s == 429 || (500..=599).contains(s),
        Outcome::ApiError {
            status: None,
            message,
        } => {
            let m = message.to_lowercase();
            [
                "overloaded",
                "connection",
                "econnreset",
                "econnrefused",
                "etimedout",
                "socket hang up",
                "timed out",
                "unable to connect",
                "stream",
                "internal server error",
            ]
            .iter()
            .any(|k| m.contains(k))
        }
        Outcome::NoResult { .. } => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::ExitInfo;
    use super::super::stream::{Line, parse};
    use super::*;

    fn result(line: &str) -> ResultLine {
        match parse(line.as_bytes()) {
            Line::Result(r) => r,
            other => panic!("not a result line: {other:?}"),
        }
    }

    #[test]
    fn subtypes_from_protocol() {
        let success = r#"{"type":"result","subtype":"success","is_error":false,"api_error_status":null,"num_turns":2,"result":"Created hello.txt.","total_cost_usd":0.100212}"#;
        assert_eq!(judge_result(&result(success)), Outcome::Success);
        let max_turns = r#"{"type":"result","subtype":"error_max_turns","is_error":true,"num_turns":2,"errors":["Reached maximum number of turns (1)"],"terminal_reason":"max_turns"}"#;
        assert_eq!(judge_result(&result(max_turns)), Outcome::MaxTurns);
        let budget = r#"{"type":"result","subtype":"error_max_budget_usd","is_error":true,"errors":["Reached maximum budget ($0.01)"],"terminal_reason":"budget_exhausted"}"#;
        assert_eq!(judge_result(&result(budget)), Outcome::MaxBudget);
        let aborted = r#"{"type":"result","subtype":"error_during_execution","duration_ms":2676,"is_error":true,"num_turns":3,"terminal_reason":"aborted_tools","errors":["[ede_diagnostic] result_type=user last_content_type=n/a stop_reason=tool_use"]}"#;
        assert_eq!(judge_result(&result(aborted)), Outcome::DuringExecution);
    }

    #[test]
    fn api_errors_from_protocol_and_their_retry_class() {
        let cases = [
            (
                r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":529,"result":"API Error: 529 Overloaded. This is a server-side issue, usually temporary."}"#,
                Some(529),
                true,
            ),
            (
                r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":429,"result":"API Error: Request rejected (429) · This request would exceed your account's rate limit."}"#,
                Some(429),
                true,
            ),
            (
                r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":500,"result":"API Error: 500 boom. This is a server-side issue"}"#,
                Some(500),
                true,
            ),
            (
                r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":401,"result":"Failed to authenticate. API Error: 401 authentication_error"}"#,
                Some(401),
                false,
            ),
            (
                r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":400,"result":"API Error: 400 bad request"}"#,
                Some(400),
                false,
            ),
            (
                r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":null,"result":"API Error: Connection dropped (ECONNRESET). Check the gateway set in ANTHROPIC_BASE_URL, then try again."}"#,
                None,
                true,
            ),
            (
                r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":null,"result":"Request timed out. If the API is slow to answer, set API_TIMEOUT_MS above 4000."}"#,
                None,
                true,
            ),
            (
                r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":null,"result":"API Error: Claude's response exceeded the 128000 output token maximum."}"#,
                None,
                false,
            ),
        ];
        for (line, status, transient) in cases {
            let o = judge_result(&result(line));
            let Outcome::ApiError { status: got, .. } = &o else {
                panic!("{line}: {o:?}")
            };
            assert_eq!(*got, status, "{line}");
            assert_eq!(is_transient(&o), transient, "{line}");
        }
    }

    #[test]
    fn usage_limits_are_recognised_with_their_reset_time() {
        let real = r#"{"is_error":true,"duration_api_ms":0,"num_turns":1,"stop_reason":"stop_sequence","total_cost_usd":0,"subtype":"success","api_error_status":429,"result":"You've hit your session limit · resets 8:30am (America/Los_Angeles)","type":"result","duration_ms":390}"#;
        assert_eq!(
            judge_result(&result(real)),
            Outcome::UsageLimit {
                message: "You've hit your session limit · resets 8:30am (America/Los_Angeles)"
                    .into(),
                resets: Some("8:30am (America/Los_Angeles)".into())
            }
        );
        let bullet = r#"{"type":"result","subtype":"success","is_error":true,"result":"Session limit reached ∙ resets 10am"}"#;
        let Outcome::UsageLimit { resets, .. } = judge_result(&result(bullet)) else {
            panic!()
        };
        assert_eq!(resets.as_deref(), Some("10am"));
        let epoch = usage_limit("Claude AI usage limit reached|1750000000");
        let Some(Outcome::UsageLimit { resets, .. }) = epoch else {
            panic!()
        };
        assert_eq!(resets.as_deref(), Some("2025-06-15T15:06:40Z"));
        // Reported as a plain success by some versions: still a limit.
        let bare = r#"{"type":"result","subtype":"success","is_error":false,"result":"Claude AI usage limit reached|1750000000"}"#;
        assert!(matches!(
            judge_result(&result(bare)),
            Outcome::UsageLimit { .. }
        ));
        let weekly = usage_limit(
            "You've hit your weekly limit · resets Jul 18 at 4am (Europe/Vienna)\n/upgrade to increase your usage limit.",
        );
        let Some(Outcome::UsageLimit { resets, message }) = weekly else {
            panic!()
        };
        assert_eq!(resets.as_deref(), Some("Jul 18 at 4am (Europe/Vienna)"));
        assert_eq!(
            message,
            "You've hit your weekly limit · resets Jul 18 at 4am (Europe/Vienna)"
        );
        assert_eq!(
            usage_limit("Your credit balance is too low to access the Anthropic API."),
            Some(Outcome::UsageLimit {
                message: "Your credit balance is too low to access the Anthropic API.".into(),
                resets: None
            })
        );
        assert!(!is_transient(&Outcome::UsageLimit {
            message: String::new(),
            resets: None
        }));
    }

    #[test]
    fn ordinary_text_and_rate_limits_are_not_usage_limits() {
        assert_eq!(
            usage_limit(
                "API Error: Request rejected (429) · This request would exceed your account's rate limit."
            ),
            None
        );
        assert_eq!(usage_limit("Created hello.txt."), None);
        // A successful answer that merely talks about limits stays a success.
        let talk = r#"{"type":"result","subtype":"success","is_error":false,"result":"I documented the usage limit handling; it resets at midnight."}"#;
        assert_eq!(judge_result(&result(talk)), Outcome::Success);
    }

    #[test]
    fn unknown_subtypes() {
        let unknown_ok = r#"{"type":"result","subtype":"success_partial","is_error":false}"#;
        assert_eq!(judge_result(&result(unknown_ok)), Outcome::Success);
        let unknown_err =
            r#"{"type":"result","subtype":"error_something_new","is_error":true,"errors":["x"]}"#;
        assert_eq!(
            judge_result(&result(unknown_err)),
            Outcome::ApiError {
                status: None,
                message: "error_something_new: x".into()
            }
        );
    }

    #[test]
    fn retry_classes() {
        assert!(is_transient(&Outcome::NoResult {
            exit: ExitInfo {
                code: Some(0),
                signal: None
            }
        }));
        for o in [
            Outcome::Success,
            Outcome::MaxTurns,
            Outcome::TimedOut,
            Outcome::IdleTimeout,
            Outcome::Cancelled,
            Outcome::StoppedByPolicy,
            Outcome::SpawnFailed("x".into()),
        ] {
            assert!(!is_transient(&o), "{o:?}");
        }
    }
}
