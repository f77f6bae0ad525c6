//! How figures read on the page: instants (as `log --json` shows them), durations, USD and token
//! counts.

use std::time::{Duration, SystemTime};

/// An instant as the journal's `log --json` shows it: RFC 3339, UTC, milliseconds.
pub(super) fn stamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// A duration for people: `850 ms`, `12.3 s`, `4m 05s`, `2h 03m`.
pub(super) fn clock(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", d.as_secs_f64())
    } else if ms < 3_600_000 {
        format!("{}m {:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h {:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

/// USD: `$0.42`.
pub(super) fn money(usd: f64) -> String {
    format!("${usd:.2}")
}

/// A token count for people: `950`, `12.3k`, `4.1M`.
pub(super) fn count(n: u64) -> String {
    // A rounded figure for people: precision is not the point.
    let f = n as f64;
    if n < 1000 {
        n.to_string()
    } else if n < 1_000_000 {
        format!("{:.1}k", f / 1000.0)
    } else {
        format!("{:.1}M", f / 1_000_000.0)
    }
}

/// `12.3k in / 4.1k out`, or `–` when no token is recorded.
pub(super) fn tokens_text(input: u64, output: u64) -> String {
    if input == 0 && output == 0 {
        "–".to_owned()
    } else {
        format!("{} in / {} out", count(input), count(output))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(clock(Duration::from_millis(850)), "850 ms");
        assert_eq!(clock(Duration::from_millis(12_340)), "12.3 s");
        assert_eq!(clock(Duration::from_secs(245)), "4m 05s");
        assert_eq!(clock(Duration::from_secs(7380)), "2h 03m");
        assert_eq!(count(12_345), "12.3k");
        assert_eq!(tokens_text(0, 0), "–");
    }
}
