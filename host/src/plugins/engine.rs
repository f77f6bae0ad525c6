//! The one wasmtime engine of the process and its linker: pooling allocator, fuel, a fixed wasm
//! stack, memory slots no larger than the host's memory limit; and the checks a component
//! passes before it is used (the `bmad:policy` version it was built for, the exports its role
//! needs, imports the sandbox can satisfy).

use std::sync::OnceLock;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use super::error::PluginError;
use super::limits::{Limits, MAX_WASM_STACK};
use super::manifest::PluginRole;
use super::sandbox::{self, State};

/// Instances that may be alive at once in the process (each needs a pool slot).
pub const POOL_INSTANCES: u32 = 256;

/// The engine, the linker with the sandbox's imports, and the engine's cache key.
pub struct Runtime {
    pub engine: Engine,
    pub linker: Linker<State>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// The process-wide runtime, created on first use.
pub fn runtime() -> Result<&'static Runtime, PluginError> {
    RUNTIME
        .get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| PluginError::Engine(e.clone()))
}

/// The process-wide engine.
#[cfg(test)]
pub fn engine() -> Result<&'static Engine, PluginError> {
    runtime().map(|r| &r.engine)
}

fn build() -> wasmtime::Result<Runtime> {
    let memory = Limits::HOST.memory_bytes;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOL_INSTANCES)
        .total_core_instances(POOL_INSTANCES * 8)
        .total_memories(POOL_INSTANCES * 2)
        .total_tables(POOL_INSTANCES * 8)
        .max_core_instances_per_component(32)
        .max_memories_per_component(4)
        .max_tables_per_component(16)
        .max_memory_size(usize::try_from(memory).unwrap_or(usize::MAX));

    let mut config = Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .consume_fuel(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .cranelift_opt_level(OptLevel::Speed)
        .parallel_compilation(true)
        // Each memory slot reserves only the host's memory cap (plus a guard), not 4 GiB of
        // address space: bounds checks are explicit, which costs little for policy code.
        .memory_reservation(memory)
        .memory_guard_size(2 << 20)
        .memory_reservation_for_growth(0)
        .memory_may_move(false);
    let engine = Engine::new(&config)?;
    let mut linker = Linker::new(&engine);
    sandbox::add_to_linker(&mut linker)?;
    Ok(Runtime { engine, linker })
}

/// The `bmad:policy` versions a component's imports and exports name (`bmad:policy/host@0.1.0`
/// gives `0.1.0`), sorted and deduplicated; empty when it does not use the package at all.
pub fn policy_versions(engine: &Engine, component: &Component) -> Vec<String> {
    let ty = component.component_type();
    let names = ty
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .chain(ty.exports(engine).map(|(name, _)| name.to_string()));
    let mut versions: Vec<String> = names
        .filter_map(|name| {
            let rest = name.strip_prefix("bmad:policy/")?;
            Some(
                rest.split_once('@')
                    .map_or(String::new(), |(_, v)| v.to_string()),
            )
        })
        .collect();
    versions.sort();
    versions.dedup();
    versions
}

/// The exports `role` needs that the component lacks.
pub fn missing_exports(
    engine: &Engine,
    component: &Component,
    role: PluginRole,
) -> Vec<&'static str> {
    let ty = component.component_type();
    let exported: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    role.exports()
        .iter()
        .copied()
        .filter(|want| !exported.iter().any(|e| e == want))
        .collect()
}
