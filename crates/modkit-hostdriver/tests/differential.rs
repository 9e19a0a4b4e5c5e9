//! The differential check: every example scenario gives the same final states, results
//! and diagnostics on the host driver (real threads) as in the simulator.

use std::path::PathBuf;

use modkit_hostdriver::run_scenario;

mod common;
use common::summary;
use modkit_sim::{check, Sim};

fn scenario_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn host_driver_meets_every_expectation() {
    for f in scenario_files() {
        let sc = modkit_sim::load(&f).unwrap();
        for ex in &sc.expects {
            let run = run_scenario(&sc, ex.policy, sc.seed);
            let failures = check::compare(ex, &run);
            assert!(
                failures.is_empty(),
                "{} expect #{} ({}) on the host: {failures:?}",
                f.display(),
                ex.index,
                ex.policy
            );
        }
    }
}

/// Where the simulator's outcome does not depend on how same-instant ties are ordered
/// (checked over several seeds), the host must give exactly that outcome. Where it does
/// (a real race, such as 100 simultaneous requests for 50 slots), the expectations above
/// are the contract.
#[test]
fn host_and_simulator_agree() {
    let mut strict = 0;
    for f in scenario_files() {
        let sc = modkit_sim::load(&f).unwrap();
        let mut policies: Vec<_> = sc.expects.iter().map(|e| e.policy).collect();
        policies.dedup();
        for p in policies {
            let sims: Vec<String> = (0..6)
                .map(|seed| summary(&Sim::new(&sc, p, seed).run().unwrap()))
                .collect();
            let host = run_scenario(&sc, p, sc.seed);
            assert!(
                host.kernel.violations.is_empty(),
                "{:?}",
                host.kernel.violations
            );
            if sims.iter().all(|s| *s == sims[0]) {
                strict += 1;
                assert_eq!(
                    sims[0],
                    summary(&host),
                    "{} under {p}: host and simulator differ",
                    f.display()
                );
            }
        }
    }
    assert!(
        strict >= 15,
        "only {strict} scenario/policy pairs were tie-order independent"
    );
}
