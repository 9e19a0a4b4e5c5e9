//! Fuzzes the scenario parser and the simulator: any input must give a scenario or an
//! error, and any scenario a run (or a budget error) with its reports, without a panic
//! and in bounded time and memory.
//!
//! `cargo +nightly fuzz run scenario_sim -- -dict=fuzz/scenario.dict`; the bundled
//! scenarios make a good seed corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modkit_sim::{report, timeline, Sim};

/// Steps per run: enough for every bundled example, small enough for a fast fuzzer.
const STEPS: u64 = 200_000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `tree` reads the file system; the fuzzer stays away from it.
    if text.contains("tree") {
        return;
    }
    let Ok(sc) = modkit_sim::parse("fuzz.toml", text) else {
        return;
    };
    let mut policies = vec![sc.policy];
    for e in &sc.expects {
        if !policies.contains(&e.policy) {
            policies.push(e.policy);
        }
    }
    for p in policies.into_iter().take(3) {
        let Ok(run) = Sim::new(&sc, p, sc.seed)
            .with_history()
            .with_max_steps(STEPS)
            .run()
        else {
            continue;
        };
        let _ = report::text("fuzz", p, sc.seed, &run);
        let _ = report::json("fuzz", p, sc.seed, &run).to_string();
        let _ = timeline::svg(&sc, "fuzz", &run);
    }
});
