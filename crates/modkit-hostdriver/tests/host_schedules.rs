//! The host driver under shuttle's scheduler against the simulator over tie-break seeds
//! (issue 9 item 8; the contract is docs/host-contract.md). On real threads the host
//! rarely shows its overlaps (a zero-time init or exit that another operation runs into);
//! shuttle runs the host's real code (`--features shuttle` puts its Mutex, Condvar and
//! threads under shuttle's control) and switches threads at every lock and wait, so
//! those overlaps come out in a few dozen schedules. Every outcome the host gives under
//! any schedule must be one the simulator gives under some seed.
//!
//! Run with `cargo test -p modkit-hostdriver --release --features shuttle --test host_schedules`.
//! `MODKIT_DIFF_CASES` (default 200) sets the number of random zero-time scenarios,
//! `MODKIT_DIFF_SEED` the generator's seed (default 1).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use modkit_core::Policy;
use modkit_hostdriver::run_scenario;
use modkit_sim::Sim;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod common;
use common::{device_summary, summary, FIRST_SEEDS, MAX_SEEDS};

/// What a run's outcome is (`summary`, or `device_summary` for device scenarios).
type Outcome = fn(&modkit_sim::Run) -> String;
#[path = "common/zero_time.rs"]
mod zero_time;

/// The distinct outcomes of the host over `iterations` random shuttle schedules.
fn host_outcomes(text: &str, p: Policy, iterations: usize, outcome: Outcome) -> BTreeSet<String> {
    let sc = Arc::new(modkit_sim::parse("t.toml", text).expect("parses"));
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let (sc2, seen2) = (sc.clone(), seen.clone());
    shuttle::check_random(
        move || {
            let run = run_scenario(&sc2, p, 0).expect("the host runs it");
            assert!(
                run.kernel.violations.is_empty(),
                "{:?}",
                run.kernel.violations
            );
            seen2.lock().unwrap().insert(outcome(&run));
        },
        iterations,
    );
    let set = seen.lock().unwrap().clone();
    set
}

/// The simulator's distinct outcomes over seeds `0..FIRST_SEEDS`, then more (up to [`MAX_SEEDS`])
/// while some of `host` are not among them.
fn sim_outcomes(
    text: &str,
    p: Policy,
    host: &BTreeSet<String>,
    outcome: Outcome,
) -> BTreeSet<String> {
    let sc = modkit_sim::parse("t.toml", text).expect("parses");
    let mut sims = BTreeSet::new();
    for seed in 0..MAX_SEEDS {
        let run = Sim::new(&sc, p, seed)
            .run()
            .expect("the simulator finishes");
        assert!(
            run.kernel.violations.is_empty(),
            "{:?}",
            run.kernel.violations
        );
        sims.insert(outcome(&run));
        if seed + 1 >= FIRST_SEEDS && host.is_subset(&sims) {
            break;
        }
    }
    sims
}

/// Checks the contract for one scenario; returns (host outcomes, simulator outcomes).
fn agree(what: &str, text: &str, policy: &str, iterations: usize) -> (usize, usize) {
    agree_by(what, text, policy, iterations, summary)
}

/// [`agree`] with another outcome function.
fn agree_by(
    what: &str,
    text: &str,
    policy: &str,
    iterations: usize,
    outcome: Outcome,
) -> (usize, usize) {
    let p: Policy = policy.parse().unwrap();
    let host = host_outcomes(text, p, iterations, outcome);
    let sims = sim_outcomes(text, p, &host, outcome);
    let missing: Vec<&String> = host.difference(&sims).collect();
    assert!(
        missing.is_empty(),
        "{what} under {policy}: the host gave outcomes no simulator seed gives\n--- host only\n{}\n--- simulator\n{}\n--- scenario\n{text}",
        missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n  or\n"),
        sims.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n  or\n"),
    );
    (host.len(), sims.len())
}

const TWO_FAILING_MODPROBES: &str = r#"
[[module]]
name = "m"
[[module.init]]
step = "s"
run = [{ fail = "ENODEV" }]
[[event]]
id = "a"
threads = 2
modprobe = "m"
"#;

const RMMOD_RACES: &str = r#"
[[module]]
name = "m"
[[module.init]]
step = "s"
run = []
undo = true
[[event]]
id = "load"
modprobe = "m"
[[event]]
id = "a"
at = "10ms"
rmmod = "m"
[[event]]
id = "b"
at = "10ms"
rmmod = "m"
[[event]]
id = "pin"
at = "10ms"
run = [{ get_module = "m" }, { put_module = "m" }]
"#;

const NOWAIT_RACE: &str = r#"
[[module]]
name = "m"
[[module.init]]
step = "s"
run = [{ register = "misc:m" }, { fail = "ENODEV" }]
undo = [{ unregister = "misc:m" }]
[[event]]
id = "a"
modprobe = "m"
[[event]]
id = "b"
request_module = "m"
wait = false
[[event]]
id = "c"
threads = 2
request_module = "m"
"#;

/// The cases the earlier sessions saw the host and the simulator disagree on: each is a
/// real race under the host's schedules, and the simulator shows every outcome the host
/// gives (before zero-time code was preemptible, the simulator gave one outcome for each
/// under every seed and the host others).
#[test]
fn zero_time_races_are_explored_by_the_simulator() {
    // (what, scenario, policy, whether the simulator shows a race there)
    for (what, text, policy, racy) in [
        (
            "two modprobes of a zero-time failing init",
            TWO_FAILING_MODPROBES,
            "linux-6.2",
            true,
        ),
        (
            "two modprobes of a zero-time failing init",
            TWO_FAILING_MODPROBES,
            "linux-6.1.176",
            true,
        ),
        (
            "two modprobes of a zero-time failing init",
            TWO_FAILING_MODPROBES,
            "modkit",
            true,
        ),
        (
            "two rmmods and a pin at one instant",
            RMMOD_RACES,
            "linux-4.12",
            true,
        ),
        (
            "two rmmods and a pin at one instant",
            RMMOD_RACES,
            "linux-6.2",
            true,
        ),
        (
            "two rmmods and a pin at one instant",
            RMMOD_RACES,
            "modkit",
            true,
        ),
        (
            "a zero-time failing init raced by wait = false requests",
            NOWAIT_RACE,
            "linux-6.1",
            true,
        ),
        (
            "a zero-time failing init raced by wait = false requests",
            NOWAIT_RACE,
            "modkit",
            true,
        ),
    ] {
        let (host, sims) = agree(what, text, policy, 200);
        eprintln!("{what} under {policy}: host {host} outcome(s), simulator {sims}");
        assert_eq!(
            sims > 1,
            racy,
            "{what} under {policy}: {sims} simulator outcome(s)"
        );
    }
}

/// Random zero-time scenarios: every host outcome under shuttle's schedules is one of the
/// simulator's.
#[test]
fn random_zero_time_scenarios_under_host_schedules() {
    let cases: u64 = std::env::var("MODKIT_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let seed: u64 = std::env::var("MODKIT_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let policies = [
        "modkit",
        "linux-4.12",
        "linux-5.10",
        "linux-6.1",
        "linux-6.1.176",
        "linux-6.12",
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut racy_host, mut racy_sim) = (0, 0);
    for _ in 0..cases {
        let text = zero_time::zero_time_scenario(&mut rng);
        let policy = policies[rng.gen_range(0..policies.len())];
        let (host, sims) = agree("random scenario", &text, policy, 30);
        racy_host += usize::from(host > 1);
        racy_sim += usize::from(sims > 1);
    }
    eprintln!("host schedules: {cases} scenarios, {racy_host} with several host outcomes, {racy_sim} with several simulator outcomes, none outside the simulator's");
}

/// The device examples the host runs (all but those it refuses, and the CPU storm,
/// whose 576 devices are too many for shuttle's schedules), under each policy they have
/// blocks for: the host's driver core (the `modkit` library's, with this driver's probe
/// bodies and udevd threads) under 10 random shuttle schedules each must give only
/// outcomes, device table and log lines included, that the simulator gives.
#[test]
fn device_examples_under_host_schedules() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut checked = 0;
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let sc = modkit_sim::parse("t.toml", &text).unwrap();
        if !sc.devices.used || sc.devices.devices.len() > 20 {
            continue;
        }
        let mut policies: Vec<String> = sc.expects.iter().map(|e| e.policy.to_string()).collect();
        policies.sort();
        policies.dedup();
        for p in policies {
            agree_by(&f.display().to_string(), &text, &p, 10, device_summary);
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} device file/policy pairs");
}
