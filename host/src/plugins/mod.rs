//! Plugins: the wasmtime engine, the compiled-component cache, manifests, capabilities, limits.

pub mod bindings;
