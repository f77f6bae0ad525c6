//! Waiting out an account's usage limit (`--wait-on-limit`): when the limit resets, from the
//! time the CLI stated, and the wait itself, which Ctrl-C ends.

use std::time::{Duration, SystemTime};

use super::driver::Driver;
use crate::process::Interrupt;

/// How long until a usage limit resets, from the reset time the CLI stated: an RFC 3339 time
/// (what the `...|<epoch>` form becomes) or a clock time in UTC (`3pm (UTC)`, `10:30am UTC`,
/// `15:00 (UTC)`). `None` when the time is in another zone or cannot be read: bmad-host has no
/// time-zone database, so it stops rather than guess.
pub(super) fn until_reset(resets: &str, now: SystemTime) -> Option<Duration> {
    let text = resets.trim();
    if let Ok(at) = humantime::parse_rfc3339_weak(text) {
        // An exact instant (the CLI's epoch form): a small margin is enough.
        return Some(at.duration_since(now).unwrap_or_default() + EXACT_RESET_MARGIN);
    }
    let lower = text.to_ascii_lowercase();
    let clock = lower
        .strip_suffix("(utc)")
        .or_else(|| lower.strip_suffix("utc"))?
        .trim();
    let (clock, pm) = match (clock.strip_suffix("pm"), clock.strip_suffix("am")) {
        (Some(c), _) => (c.trim(), Some(true)),
        (_, Some(c)) => (c.trim(), Some(false)),
        _ => (clock, None),
    };
    let (h, m) = match clock.split_once(':') {
        Some((h, m)) => (h.parse::<u64>().ok()?, m.parse::<u64>().ok()?),
        None => (clock.parse::<u64>().ok()?, 0),
    };
    let hour = match pm {
        Some(true) if h < 12 => h + 12,
        Some(false) if h == 12 => 0,
        Some(_) if h > 12 => return None,
        _ => h,
    };
    if hour > 23 || m > 59 {
        return None;
    }
    let since_midnight = now.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs() % 86_400;
    let target = hour * 3600 + m * 60;
    let wait = (target + 86_400 - since_midnight) % 86_400;
    Some(Duration::from_secs(wait) + RESET_MARGIN)
}

/// Waiting a little past a stated clock time (minute precision), so the first call after it is
/// not refused again.
const RESET_MARGIN: Duration = Duration::from_secs(30);
/// The margin past an exact reset instant.
const EXACT_RESET_MARGIN: Duration = Duration::from_secs(2);

impl Driver<'_> {
    /// Waits until a usage limit resets; false if the operator interrupted the wait.
    pub(super) async fn wait_for_reset(&mut self, wait: Duration) -> bool {
        // The one deliberate wait besides the retry backoff: the account cannot work before
        // the reset, and the wait ends early on Ctrl-C.
        let reset = tokio::time::sleep(wait); // backoff until the usage limit resets
        tokio::pin!(reset);
        loop {
            tokio::select! {
                () = &mut reset => return true,
                changed = self.interrupts.changed() => match changed {
                    Ok(()) if *self.interrupts.borrow() != Interrupt::None => return false,
                    Ok(()) => {}
                    Err(_) => {
                        (&mut reset).await;
                        return true;
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> SystemTime {
        humantime::parse_rfc3339(rfc3339).expect("time")
    }

    #[test]
    fn reset_times_in_utc_are_understood() {
        let now = at("2026-11-23T14:00:00Z");
        let m = RESET_MARGIN;
        assert_eq!(
            until_reset("3pm (UTC)", now),
            Some(Duration::from_secs(3600) + m)
        );
        assert_eq!(
            until_reset("2:30pm UTC", now),
            Some(Duration::from_secs(1800) + m)
        );
        assert_eq!(
            until_reset("15:00 (UTC)", now),
            Some(Duration::from_secs(3600) + m)
        );
        // Earlier in the day means tomorrow.
        assert_eq!(
            until_reset("10am (UTC)", now),
            Some(Duration::from_secs(20 * 3600) + m)
        );
        assert_eq!(
            until_reset("12am (UTC)", now),
            Some(Duration::from_secs(10 * 3600) + m)
        );
        let exact = EXACT_RESET_MARGIN;
        assert_eq!(
            until_reset("2026-11-23T14:10:00Z", now),
            Some(Duration::from_secs(600) + exact)
        );
        // Already past: go now (after the margin).
        assert_eq!(until_reset("2026-11-23T13:00:00Z", now), Some(exact));
    }

    #[test]
    fn other_zones_and_nonsense_are_not_guessed() {
        let now = at("2026-11-23T14:00:00Z");
        assert_eq!(until_reset("3pm (Europe/Paris)", now), None);
        assert_eq!(until_reset("3pm", now), None);
        assert_eq!(until_reset("soon", now), None);
        assert_eq!(until_reset("25:00 UTC", now), None);
        assert_eq!(until_reset("13pm UTC", now), None);
    }
}
