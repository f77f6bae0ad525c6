//! `bmad-policy`: the SDK for bmad-host policies, the WebAssembly components that make
//! bmad-host's decisions (parse a story's status; for SM, Dev and QA: what to ask the agent,
//! and what happens after it answered).
//!
//! - The crate owns the `bmad:policy` WIT (`wit/policy.wit`, the host reads the same file) and
//!   runs wit-bindgen over it once ([`bindings`]); [`types`] re-exports the generated types
//!   ([`types::Story`], [`types::Decision`], ...) for both the component boundary and tests.
//! - A role policy is a type implementing [`Policy`], a status parser one implementing
//!   [`StatusParser`], a scheduler (which stories of a parallel run start) one implementing
//!   [`Scheduler`]; [`export_policy!`], [`export_status_parser!`] and [`export_scheduler!`] turn
//!   it into the component's exports. The decision logic is plain Rust over plain types: unit-test it with
//!   `cargo test` on the host target, where the macros expand to a trait check only.
//! - [`host`]: the host's log and `read-file`.
//! - What the default policies are made of, for a team's own: [`prompt`] (every role's prompt
//!   for BMAD v4 and v6), [`findings`] and [`markdown`] (review results out of gate files and
//!   stories), [`converge`] (finding fingerprints, the rounds history and the convergence
//!   rule), [`qa`] (the QA rules of the default and strict QA policies), [`schedule`] (the
//!   default scheduler's rule and its glob-overlap test).
//!
//! A plugin crate is a `cdylib` that depends on this crate and nothing else:
//!
//! ```
//! use bmad_policy::Policy;
//! use bmad_policy::types::{AgentRequest, Decision, StepReport, Story};
//!
//! pub struct MyQa;
//!
//! impl Policy for MyQa {
//!     fn begin(story: &Story, _document: &str) -> Decision {
//!         Decision::InvokeAgent(AgentRequest {
//!             prompt: format!("Review story {} at {}", story.id, story.path),
//!             ..AgentRequest::default()
//!         })
//!     }
//!
//!     fn end(_story: &Story, report: &StepReport) -> Decision {
//!         match report.status.state() {
//!             Some(bmad_policy::types::StoryState::Done) => Decision::Complete,
//!             _ => Decision::SendBack(vec!["see the QA Results".into()]),
//!         }
//!     }
//! }
//!
//! bmad_policy::export_policy!(MyQa);
//! ```
//!
//! Built with `cargo build --release --target wasm32-wasip2`, it is a component bmad-host loads
//! from a plugin folder (`plugin.toml` next to the `.wasm`).

pub mod bindings;
pub mod converge;
pub mod findings;
#[doc(hidden)]
pub mod guest;
pub mod host;
pub mod markdown;
pub mod prompt;
pub mod qa;
pub mod schedule;
pub mod types;

use types::{AgentEvent, Candidate, Decision, Directive, ParseOutcome, Running, StepReport, Story};

/// The `bmad:policy` WIT package this crate is built on (the `wit` field of `plugin.toml`).
pub const WIT_VERSION: &str = "0.2.0";

/// The `bmad:policy` WIT text, as the bindings were generated from it.
pub const WIT: &str = include_str!("../wit/policy.wit");

/// A role policy (SM, Dev, QA or a team's own): the `agent-policy` world. Each call gets a
/// fresh instance, so no state is kept between calls: everything a decision needs is in its
/// arguments.
pub trait Policy {
    /// The step starts: what should happen?
    fn begin(story: &Story, document: &str) -> Decision;

    /// A line of the agent's stream arrived: keep going or stop? The host already enforces its
    /// limits, so the default is to continue.
    fn on_event(_story: &Story, _event: &AgentEvent) -> Directive {
        Directive::Continue
    }

    /// The agent call (or the gates) ended: what now?
    fn end(story: &Story, report: &StepReport) -> Decision;
}

/// A status parser: the `status-parser` world, turning a story document into a canonical
/// state.
pub trait StatusParser {
    /// The status of this story document.
    fn parse(document: &str) -> ParseOutcome;
}

/// A scheduler: the `scheduler` world (new in `bmad:policy@0.2.0`), choosing which candidate
/// stories of a parallel run start now. Each call gets a fresh instance.
pub trait Scheduler {
    /// The ids of the candidates to start now, in order, at most `slots` of them. Candidates
    /// come in story order; `running` are the stories in flight.
    fn admit(candidates: &[Candidate], running: &[Running], slots: u32) -> Vec<String>;
}

/// A one-line summary of a decision, for the debug log.
pub fn summary(decision: &Decision) -> String {
    match decision {
        Decision::InvokeAgent(req) => format!("invoke-agent ({} byte prompt)", req.prompt.len()),
        Decision::RunGates => "run-gates".to_owned(),
        Decision::SetState(s) => format!("set-state({})", s.as_str()),
        Decision::SendBack(f) => format!("send-back({} findings)", f.len()),
        Decision::Complete => "complete".to_owned(),
        Decision::Fail(r) => format!("fail({r})"),
        Decision::Escalate(r) => format!("escalate({r})"),
    }
}

/// Exports a [`Policy`] as the component's `agent-policy` world (`begin`, `on-event`, `end`).
/// Use it once, in a `cdylib` crate: `bmad_policy::export_policy!(MyPolicy);`. On `wasm32` it
/// generates the exports; on other targets it only checks that the type is a [`Policy`].
/// It can be combined with [`export_status_parser!`] in one component.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct BmadPolicyGuest;

            impl $crate::bindings::agent_policy::Guest for BmadPolicyGuest {
                fn begin(
                    story: $crate::types::Story,
                    document: ::std::string::String,
                ) -> $crate::types::Decision {
                    $crate::guest::begin::<$policy>(story, document)
                }

                fn on_event(
                    story: $crate::types::Story,
                    event: $crate::types::AgentEvent,
                ) -> $crate::types::Directive {
                    $crate::guest::on_event::<$policy>(story, event)
                }

                fn end(
                    story: $crate::types::Story,
                    report: $crate::types::StepReport,
                ) -> $crate::types::Decision {
                    $crate::guest::end::<$policy>(story, report)
                }
            }

            $crate::bindings::agent_policy::export!(
                BmadPolicyGuest with_types_in $crate::bindings::agent_policy
            );
        };

        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            const fn is_policy<P: $crate::Policy>() {}
            is_policy::<$policy>();
        };
    };
}

/// Exports a [`StatusParser`] as the component's `status-parser` world (`parse`). Use it once,
/// in a `cdylib` crate: `bmad_policy::export_status_parser!(MyParser);`. On `wasm32` it
/// generates the export; on other targets it only checks that the type is a [`StatusParser`].
#[macro_export]
macro_rules! export_status_parser {
    ($parser:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct BmadStatusGuest;

            impl $crate::bindings::status_parser::Guest for BmadStatusGuest {
                fn parse(document: ::std::string::String) -> $crate::types::ParseOutcome {
                    $crate::guest::parse::<$parser>(document)
                }
            }

            $crate::bindings::status_parser::export!(
                BmadStatusGuest with_types_in $crate::bindings::status_parser
            );
        };

        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            const fn is_status_parser<S: $crate::StatusParser>() {}
            is_status_parser::<$parser>();
        };
    };
}

/// Exports a [`Scheduler`] as the component's `scheduler` world (`admit`). Use it once, in a
/// `cdylib` crate: `bmad_policy::export_scheduler!(MyScheduler);`. On `wasm32` it generates the
/// export; on other targets it only checks that the type is a [`Scheduler`].
#[macro_export]
macro_rules! export_scheduler {
    ($scheduler:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct BmadSchedulerGuest;

            impl $crate::bindings::scheduler::Guest for BmadSchedulerGuest {
                fn admit(
                    candidates: ::std::vec::Vec<$crate::types::Candidate>,
                    running: ::std::vec::Vec<$crate::types::Running>,
                    slots: u32,
                ) -> ::std::vec::Vec<::std::string::String> {
                    $crate::guest::admit::<$scheduler>(candidates, running, slots)
                }
            }

            $crate::bindings::scheduler::export!(
                BmadSchedulerGuest with_types_in $crate::bindings::scheduler
            );
        };

        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            const fn is_scheduler<S: $crate::Scheduler>() {}
            is_scheduler::<$scheduler>();
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wit_is_the_version_this_crate_names() {
        assert!(
            WIT.contains(&format!("package bmad:policy@{WIT_VERSION};")),
            "wit/policy.wit and WIT_VERSION disagree"
        );
    }
}
