//! Every bundled scenario passes its expectations, and runs are reproducible byte for byte.

use std::path::PathBuf;

use modkit_sim::{check, report, Sim};

fn scenario_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/scenarios exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 6,
        "expected the bundled scenarios in {}",
        dir.display()
    );
    files
}

#[test]
fn every_example_passes_its_expectations() {
    for f in scenario_files() {
        let sc = modkit_sim::load(&f).unwrap_or_else(|e| panic!("{e}"));
        assert!(!sc.expects.is_empty(), "{} has no [[expect]]", f.display());
        for b in check::check(&sc, None).expect("runs") {
            assert!(
                b.passed(),
                "{} expect #{} ({}): {:?}",
                f.display(),
                b.index,
                b.policy,
                b.failures
            );
        }
    }
}

#[test]
fn same_file_and_seed_same_run() {
    for f in scenario_files() {
        let sc = modkit_sim::load(&f).unwrap();
        for seed in [0, 7] {
            let a = Sim::new(&sc, sc.policy, seed).run().unwrap();
            let b = Sim::new(&sc, sc.policy, seed).run().unwrap();
            let ja = report::json("x", sc.policy, seed, &a).to_string();
            let jb = report::json("x", sc.policy, seed, &b).to_string();
            assert_eq!(ja, jb, "{} seed {seed} is not reproducible", f.display());
            assert_eq!(
                report::text("x", sc.policy, seed, &a),
                report::text("x", sc.policy, seed, &b)
            );
        }
    }
}

#[test]
fn examples_keep_the_invariants_under_every_era() {
    let policies = [
        "modkit",
        "linux-4.12",
        "linux-5.2",
        "linux-5.15",
        "linux-6.2",
        "linux-6.4",
        "linux-6.6",
        "linux-6.12",
    ];
    for f in scenario_files() {
        let sc = modkit_sim::load(&f).unwrap();
        for p in policies {
            let run = Sim::new(&sc, p.parse().unwrap(), 3).run().unwrap();
            assert!(
                run.kernel.violations.is_empty(),
                "{} under {p}: {:?}",
                f.display(),
                run.kernel.violations
            );
        }
    }
}

#[test]
fn a_seed_shuffles_ties_but_keeps_the_storm_outcome() {
    let f = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/scenarios/cpufreq-storm.toml");
    let sc = modkit_sim::load(&f).unwrap();
    for seed in [1, 2, 99] {
        for b in check::check(&sc, Some(seed)).unwrap() {
            assert!(
                b.passed(),
                "seed {seed} expect #{}: {:?}",
                b.index,
                b.failures
            );
        }
    }
}
