#![no_main]
//! Fuzz target: `charging_gateway::fuzzing::load_dictionary` (see src/fuzzing.rs for the invariants).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    charging_gateway::fuzzing::load_dictionary(data);
});
