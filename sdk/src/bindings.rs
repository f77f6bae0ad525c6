//! The wit-bindgen bindings of `wit/policy.wit`, one module per world.
//!
//! The shared interfaces (`types`, `host`) are generated once, with the `agent-policy` world;
//! every other world maps them onto that module with `with`, so there is one [`StoryState`],
//! one [`Decision`], ... in the whole SDK. Each world module holds only its `Guest` trait and
//! its `export!` macro (made public with `pub_export_macro`: wit-bindgen then places the world's
//! exports in the macro's expansion, so a plugin that exports only one world carries only that
//! world's exports).
//!
//! Adding a world is one more module here in the same shape as [`status_parser`] and
//! [`scheduler`], a trait and an `export_*!` macro in the crate root.
//!
//! The generated code compiles on every target: on `wasm32` the imports call the host, elsewhere
//! they are unreachable stubs (the [`crate::host`] wrappers never reach them), so the types are
//! the same natively and a policy's decisions are unit-tested on the host target.
//!
//! [`StoryState`]: crate::types::StoryState
//! [`Decision`]: crate::types::Decision

/// The `agent-policy` world: `begin`, `on-event`, `end`; and the shared `types` and `host`.
pub mod agent_policy {
    wit_bindgen::generate!({
        world: "agent-policy",
        path: "wit",
        additional_derives: [PartialEq],
        pub_export_macro: true,
        default_bindings_module: "bmad_policy::bindings::agent_policy",
    });
}

/// The `status-parser` world: `parse`, over the `agent-policy` module's shared interfaces.
pub mod status_parser {
    wit_bindgen::generate!({
        world: "status-parser",
        path: "wit",
        with: {
            "bmad:policy/types@0.2.0": crate::bindings::agent_policy::bmad::policy::types,
            "bmad:policy/host@0.2.0": crate::bindings::agent_policy::bmad::policy::host,
        },
        pub_export_macro: true,
        default_bindings_module: "bmad_policy::bindings::status_parser",
    });
}

/// The `scheduler` world: `admit`, over the `agent-policy` module's shared interfaces.
pub mod scheduler {
    wit_bindgen::generate!({
        world: "scheduler",
        path: "wit",
        with: {
            "bmad:policy/types@0.2.0": crate::bindings::agent_policy::bmad::policy::types,
            "bmad:policy/host@0.2.0": crate::bindings::agent_policy::bmad::policy::host,
        },
        pub_export_macro: true,
        default_bindings_module: "bmad_policy::bindings::scheduler",
    });
}

pub use agent_policy::bmad::policy::{host, types};
