//! When an account's usage limit resets ([`Reset`]), for the stop message and the wait
//! (`reset.rs`).
//!
//! The instant comes from the CLI's `rate_limit_event` (`resetsAt`, epoch seconds) when it sent
//! one; that is the authority. The message's text is the fallback: Claude Code states the reset
//! in the time zone of its process (`TZ`, the host's own), to the minute, with a date when it is
//! more than a day away: `6am (UTC)`, `6:07am (UTC)`, `Dec 5, 4:30am (America/New_York)`;
//! older versions wrote `Jul 18 at 4am (Europe/Vienna)`, `10am` (no zone: the local one) or an
//! epoch (`...|1750000000`, which the judge turns into RFC 3339). Any IANA zone is understood.

use std::time::Duration;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan as _, Zoned};

/// When a usage limit resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Reset {
    /// The instant.
    pub at: Timestamp,
    /// True when the CLI gave the exact instant (`resetsAt`, an epoch); false when it was read
    /// from a clock time stated to the minute.
    pub exact: bool,
}

/// Waiting a little past an exact reset instant, so the first call after it is not refused
/// again.
const EXACT_RESET_MARGIN: Duration = Duration::from_secs(2);
/// The margin past a clock time stated to the minute (the CLI drops the seconds).
const STATED_RESET_MARGIN: Duration = Duration::from_secs(60);

impl Reset {
    /// The reset of a usage limit: `resets_at` (the `rate_limit_event`'s instant) when given,
    /// else the time the message `stated`, read at `now`. `None` when neither says.
    pub fn find(
        resets_at: Option<Timestamp>,
        stated: Option<&str>,
        now: Timestamp,
    ) -> Option<Self> {
        if let Some(at) = resets_at {
            return Some(Reset { at, exact: true });
        }
        parse_stated(stated?, now, &TimeZone::system())
    }

    /// How long to wait from `now`: until the instant, plus a margin.
    pub fn wait_from(&self, now: Timestamp) -> Duration {
        let left = Duration::try_from(self.at.duration_since(now)).unwrap_or_default();
        left + self.margin()
    }

    /// The margin past the instant before the limited step is redone.
    pub fn margin(&self) -> Duration {
        if self.exact {
            EXACT_RESET_MARGIN
        } else {
            STATED_RESET_MARGIN
        }
    }
}

/// Reads a reset time as the CLI states it, at `now`; a time without a zone is in `local`.
fn parse_stated(text: &str, now: Timestamp, local: &TimeZone) -> Option<Reset> {
    let text = text.trim();
    if let Ok(at) = text.parse::<Timestamp>() {
        return Some(Reset { at, exact: true });
    }
    let (rest, zone) = split_zone(text, local)?;
    let (date, clock) = split_date(rest.trim());
    let time = parse_clock(clock.trim())?;
    let today = now.to_zoned(zone.clone());
    let at = match date {
        Some(text) => {
            let (month, day) = parse_month_day(text)?;
            // No year: the one that puts the date nearest after now (a reset a day behind is
            // one just missed, not one a year ahead).
            let this_year = at_zoned(&zone, today.year(), month, day, time)?;
            if this_year.timestamp() < now - SignedDuration::from_hours(24) {
                at_zoned(&zone, today.year() + 1, month, day, time)?
            } else {
                this_year
            }
        }
        None => {
            let same_day = today.date().to_datetime(time).to_zoned(zone.clone()).ok()?;
            // A time already passed (by more than the minute the CLI rounds away) is tomorrow's.
            if same_day.timestamp() + SignedDuration::from_mins(2) < now {
                same_day.checked_add(1.day()).ok()?
            } else {
                same_day
            }
        }
    };
    Some(Reset {
        at: at.timestamp(),
        exact: false,
    })
}

/// A civil date and time in `zone` (the earlier instant when a clock change makes it
/// ambiguous, the later one when it skips it).
fn at_zoned(zone: &TimeZone, year: i16, month: i8, day: i8, time: Time) -> Option<Zoned> {
    Date::new(year, month, day)
        .ok()?
        .to_datetime(time)
        .to_zoned(zone.clone())
        .ok()
}

/// Splits off the zone: `... (America/New_York)`, `... (UTC)`, `... UTC`; none is `local`.
fn split_zone<'a>(text: &'a str, local: &TimeZone) -> Option<(&'a str, TimeZone)> {
    if let Some(open) = text.rfind('(')
        && let Some(name) = text[open + 1..].strip_suffix(')')
    {
        let name = name.trim();
        let zone = if name.eq_ignore_ascii_case("utc") {
            TimeZone::UTC
        } else {
            TimeZone::get(name).ok()?
        };
        return Some((&text[..open], zone));
    }
    let lower = text.to_ascii_lowercase();
    if let Some(rest) = lower.strip_suffix("utc") {
        return Some((&text[..rest.len()], TimeZone::UTC));
    }
    Some((text, local.clone()))
}

/// Splits `Dec 5, 9am` / `Jul 18 at 4am` / `9am` into the date part (if any) and the clock.
fn split_date(text: &str) -> (Option<&str>, &str) {
    if !text.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return (None, text);
    }
    if let Some((date, clock)) = text.split_once(',') {
        return (Some(date), clock.trim_start().trim_start_matches("at "));
    }
    if let Some((date, clock)) = text.split_once(" at ") {
        return (Some(date), clock);
    }
    match text.rsplit_once(' ') {
        Some((date, clock)) => (Some(date), clock),
        None => (None, text),
    }
}

/// `Dec 5`, `December 5`, `5 Dec`.
fn parse_month_day(text: &str) -> Option<(i8, i8)> {
    let mut month = None;
    let mut day = None;
    for word in text.split_whitespace() {
        let word = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
        if let Ok(d) = word.parse::<i8>() {
            day = Some(d);
        } else if word.len() >= 3 {
            let prefix = word[..3].to_ascii_lowercase();
            let names = [
                "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
            ];
            month = names
                .iter()
                .position(|n| *n == prefix)
                .and_then(|i| i8::try_from(i + 1).ok());
        }
    }
    Some((month?, day?))
}

/// `6am`, `4:30am`, `12pm`, `15:00`, `6 am`.
fn parse_clock(text: &str) -> Option<Time> {
    let lower = text.trim().to_ascii_lowercase();
    let (clock, pm) = match (lower.strip_suffix("pm"), lower.strip_suffix("am")) {
        (Some(c), _) => (c.trim(), Some(true)),
        (_, Some(c)) => (c.trim(), Some(false)),
        _ => (lower.as_str(), None),
    };
    let (h, m) = match clock.split_once(':') {
        Some((h, m)) => (h.parse::<i8>().ok()?, m.parse::<i8>().ok()?),
        None => (clock.parse::<i8>().ok()?, 0),
    };
    let hour = match pm {
        Some(_) if !(1..=12).contains(&h) => return None,
        Some(true) if h < 12 => h + 12,
        Some(false) if h == 12 => 0,
        _ => h,
    };
    Time::new(hour, m, 0, 0).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("an RFC 3339 instant")
    }

    fn stated(text: &str, now: &str) -> Option<Timestamp> {
        let local = TimeZone::get("Europe/Berlin").expect("zone");
        let r = parse_stated(text, at(now), &local)?;
        assert!(!r.exact || text.contains('T'), "{text}");
        Some(r.at)
    }

    #[test]
    fn the_captured_texts_are_understood_in_their_zone() {
        // From ../shared/claude-mock/captures (2.1.330 / 2.1.332), read shortly before the reset.
        let now = "2026-12-02T04:37:12Z";
        assert_eq!(stated("6am (UTC)", now), Some(at("2026-12-02T06:00:00Z")));
        assert_eq!(
            stated("6:07am (UTC)", now),
            Some(at("2026-12-02T06:07:00Z"))
        );
        assert_eq!(
            stated("1am (America/New_York)", now),
            Some(at("2026-12-02T06:00:00Z"))
        );
        assert_eq!(
            stated("Dec 5, 9am (UTC)", now),
            Some(at("2026-12-05T09:00:00Z"))
        );
        assert_eq!(
            stated("Dec 5, 9:30am (UTC)", now),
            Some(at("2026-12-05T09:30:00Z"))
        );
        assert_eq!(
            stated("Dec 5, 4:30am (America/New_York)", now),
            Some(at("2026-12-05T09:30:00Z"))
        );
    }

    #[test]
    fn other_zones_and_older_forms() {
        let now = "2026-11-23T14:00:00Z";
        assert_eq!(
            stated("8:30am (America/Los_Angeles)", now),
            Some(at("2026-11-23T16:30:00Z"))
        );
        assert_eq!(
            stated("3pm (Europe/Paris)", now),
            Some(at("2026-11-23T14:00:00Z"))
        );
        assert_eq!(
            stated("Jul 18 at 4am (Europe/Vienna)", now),
            Some(at("2027-07-18T02:00:00Z"))
        );
        assert_eq!(stated("2:30pm UTC", now), Some(at("2026-11-23T14:30:00Z")));
        assert_eq!(stated("15:00 (UTC)", now), Some(at("2026-11-23T15:00:00Z")));
        // Earlier in the day means tomorrow; midnight is 12am.
        assert_eq!(stated("10am (UTC)", now), Some(at("2026-11-24T10:00:00Z")));
        assert_eq!(stated("12am (UTC)", now), Some(at("2026-11-24T00:00:00Z")));
        // No zone: the local one (the CLI runs with the host's TZ).
        assert_eq!(stated("10am", now), Some(at("2026-11-24T09:00:00Z")));
        // Half-hour and DST zones.
        assert_eq!(
            stated("9am (Asia/Kolkata)", now),
            Some(at("2026-11-24T03:30:00Z"))
        );
        // The epoch form, as the judge gives it.
        assert_eq!(
            stated("2026-11-23T14:10:00Z", now),
            Some(at("2026-11-23T14:10:00Z"))
        );
        // A date just passed is not a year ahead.
        assert_eq!(
            stated("Nov 23, 1pm (UTC)", now),
            Some(at("2026-11-23T13:00:00Z"))
        );
        // Across the new year.
        assert_eq!(
            stated("Jan 2, 9am (UTC)", "2026-12-30T12:00:00Z"),
            Some(at("2027-01-02T09:00:00Z"))
        );
    }

    #[test]
    fn nonsense_and_unknown_zones_are_not_guessed() {
        let now = "2026-11-23T14:00:00Z";
        for text in [
            "soon",
            "25:00 UTC",
            "13pm UTC",
            "0am (UTC)",
            "3pm (Mars/Olympus_Mons)",
            "Foo 5, 9am (UTC)",
            "Dec 32, 9am (UTC)",
            "",
        ] {
            assert_eq!(stated(text, now), None, "{text}");
        }
    }

    #[test]
    fn the_event_instant_wins_and_the_wait_has_a_margin() {
        let now = at("2026-11-23T14:00:00Z");
        let exact =
            Reset::find(Some(at("2026-11-23T14:10:00Z")), Some("3pm (UTC)"), now).expect("a reset");
        assert_eq!(exact.at, at("2026-11-23T14:10:00Z"));
        assert_eq!(
            exact.wait_from(now),
            Duration::from_secs(600) + EXACT_RESET_MARGIN
        );
        // Already past: go now (after the margin).
        assert_eq!(
            exact.wait_from(at("2026-11-23T15:00:00Z")),
            EXACT_RESET_MARGIN
        );
        let text = Reset::find(None, Some("3pm (UTC)"), now).expect("a reset");
        assert!(!text.exact);
        assert_eq!(
            text.wait_from(now),
            Duration::from_secs(3600) + STATED_RESET_MARGIN
        );
        assert_eq!(Reset::find(None, None, now), None);
    }
}
