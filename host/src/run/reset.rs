//! Waiting out an account's usage limit (`--wait-on-limit`) until it resets (the instant from
//! `limit.rs`), with the time left on the progress line and in `waiting_for_reset` events; Ctrl-C
//! ends the wait.

use std::time::Duration;

use jiff::Timestamp;

use super::driver::Driver;
use super::halt::Halt;
use super::limit::Reset;
use crate::process::Interrupt;
use crate::ui::Event;

/// How often the remaining time is refreshed on the progress line (and the wall clock checked,
/// so a suspended machine does not oversleep the reset).
const TICK: Duration = Duration::from_secs(1);
/// How often a `waiting_for_reset` event repeats.
const EVENT_EVERY: Duration = Duration::from_secs(60);

impl Driver<'_> {
    /// A usage limit stopped the run's work (`limit`, a [`Halt::UsageLimit`]): it is reported
    /// (`usage_limit` event), then, with `wait_on_limit` and a reset time the CLI stated,
    /// waited out (`Ok`: drive again; the limited step has no result in the journal, so it is
    /// redone and its cycle not charged). A limit that still refuses after the reset it stated
    /// (`waited`: the last reset waited for) is not waited for again. `Err`: the halt to stop
    /// with.
    pub(super) async fn on_usage_limit(
        &mut self,
        limit: Halt,
        wait_on_limit: bool,
        waited: &mut Option<Timestamp>,
    ) -> Result<(), Halt> {
        let Halt::UsageLimit {
            story,
            role,
            message,
            reset,
        } = limit
        else {
            return Err(limit);
        };
        let wait = reset.filter(|r| wait_on_limit && waited.is_none_or(|before| r.at > before));
        self.emit(Event::UsageLimit {
            story: story.clone(),
            role: role.into(),
            message: message.clone(),
            resets_at: reset.map(|r| r.at.to_string()),
            wait: wait.is_some(),
        });
        let Some(wait) = wait else {
            if wait_on_limit {
                self.say(match reset {
                    None => "  --wait-on-limit: the CLI did not say when the limit resets",
                    Some(_) => {
                        "  --wait-on-limit: the limit still refuses after the reset it stated"
                    }
                });
            }
            return Err(Halt::UsageLimit {
                story,
                role,
                message,
                reset,
            });
        };
        self.say(&format!(
            "  waiting {} for the reset (--wait-on-limit)",
            humantime::format_duration(Duration::from_secs(
                wait.wait_from(Timestamp::now()).as_secs()
            ))
        ));
        *waited = Some(wait.at);
        if self.wait_for_reset(&story, wait).await {
            Ok(())
        } else {
            Err(Halt::Interrupted)
        }
    }

    /// Waits until the usage limit that stopped `story` resets, showing the time left on the
    /// progress line and in `waiting_for_reset` events; false if the operator interrupted the
    /// wait.
    pub(super) async fn wait_for_reset(&mut self, story: &str, reset: Reset) -> bool {
        let until = reset.at.checked_add(reset.margin()).unwrap_or(reset.at);
        let mut last_event: Option<tokio::time::Instant> = None;
        loop {
            let left =
                Duration::try_from(until.duration_since(Timestamp::now())).unwrap_or_default();
            if left.is_zero() {
                return true;
            }
            if last_event.is_none_or(|t| t.elapsed() >= EVENT_EVERY) {
                last_event = Some(tokio::time::Instant::now());
                self.emit(Event::WaitingForReset {
                    story: story.to_string(),
                    resets_at: reset.at.to_string(),
                    remaining_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
                });
            }
            self.ui().wait_progress(story, reset.at, left);
            // The one deliberate wait besides the retry backoff: the account cannot work before
            // the reset. It wakes every tick to refresh the time left and to read the wall clock
            // again (a monotonic sleep stops while the machine is suspended), and at once on Ctrl-C.
            let tick = tokio::time::sleep(left.min(TICK)); // until the usage limit resets
            tokio::pin!(tick);
            loop {
                tokio::select! {
                    () = &mut tick => break,
                    changed = self.interrupts.changed() => match changed {
                        Ok(()) if *self.interrupts.borrow() != Interrupt::None => return false,
                        Ok(()) => {}
                        // No Ctrl-C watcher any more: nothing can interrupt; wait on.
                        Err(_) => {
                            (&mut tick).await;
                            break;
                        }
                    },
                }
            }
        }
    }
}
