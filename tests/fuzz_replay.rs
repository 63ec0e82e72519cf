//! Replays every fuzz seed and every saved crash input (`fuzz/seeds/<target>/`,
//! `fuzz/regressions/<target>/`) through the functions the fuzz targets call, in an ordinary
//! `cargo test`: a fixed crash stays fixed.

use std::path::PathBuf;

use charging_gateway::fuzzing;

fn files(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"))
        .collect();
    out.sort();
    out
}

fn replay(target: &str, run: fn(&[u8])) {
    let seeds = files("seeds", target);
    assert!(
        !seeds.is_empty(),
        "no seeds in fuzz/seeds/{target}: run REGENERATE_FUZZ_SEEDS=1 cargo test --test fuzz_seeds"
    );
    for path in seeds.iter().chain(&files("regressions", target)) {
        let data = std::fs::read(path).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{} panics", path.display());
    }
}

#[test]
fn decode_seeds_and_regressions() {
    replay("decode", fuzzing::decode_message);
}

#[test]
fn round_trip_seeds_and_regressions() {
    replay("round_trip", fuzzing::round_trip);
}

#[test]
fn dictionary_seeds_and_regressions() {
    replay("dictionary", fuzzing::load_dictionary);
}
