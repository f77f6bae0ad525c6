//! A test component built against `bmad:policy@9.0.0` (a copy of the SDK's WIT, `sdk/wit/`, with another
//! version), so the plugin host's tests can prove it refuses a WIT version it does not support.
#![allow(unsafe_code)] // wit-bindgen's generated glue (exports, canonical ABI) is unsafe code.

wit_bindgen::generate!({
    path: "wit",
    world: "agent-policy",
});

use bmad::policy::host::{self, Level};

struct Wit9;

impl Guest for Wit9 {
    fn begin(story: Story, _document: String) -> Decision {
        host::log(Level::Info, &story.id);
        Decision::Complete
    }

    fn on_event(_story: Story, _event: AgentEvent) -> Directive {
        Directive::Continue
    }

    fn end(_story: Story, _report: StepReport) -> Decision {
        Decision::Complete
    }
}

export!(Wit9);
