//! A bare test component: only the `agent-policy` world of `bmad:policy@0.1.0`, no
//! `status-parser`, so the plugin host's tests can prove a component missing its role's exports
//! is refused at load.
#![allow(unsafe_code)] // wit-bindgen's generated glue (exports, canonical ABI) is unsafe code.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "agent-policy",
});

struct Bare;

impl Guest for Bare {
    fn begin(_story: Story, _document: String) -> Decision {
        Decision::Complete
    }

    fn on_event(_story: Story, _event: AgentEvent) -> Directive {
        Directive::Continue
    }

    fn end(_story: Story, _report: StepReport) -> Decision {
        Decision::Complete
    }
}

export!(Bare);
