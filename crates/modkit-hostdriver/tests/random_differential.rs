//! Random differential testing: random scenarios run under random policies on the
//! simulator and on the host driver (real threads), held to the contract of
//! docs/host-contract.md: the host's outcome (final module table with init counts, sorted
//! results per event, diagnostic kinds, end time) must be one the simulator gives under
//! some tie-break seed (`common::judge`: seeds 0..16, then up to 1,024 while the host's
//! outcome is not among them).
//!
//! Two generators, alternating case by case:
//! - spaced: modules with imports, aliases and init tables whose steps sleep, fail and
//!   request modules (also without waiting); events at distinct instants;
//! - zero-time: init steps and undos that take no virtual time (no action, a registration,
//!   a failure, a request), events often at the same instant or with two threads, rmmods,
//!   `rmmod wait`, and pins taken and dropped. Here the host's threads overlap a zero-time
//!   body with other operations, and the simulator must show the same overlaps under some
//!   seed (issue 9 item 8).
//!
//! `MODKIT_DIFF_CASES` (default 150) sets the number of scenarios, `MODKIT_DIFF_SEED` the
//! generator's seed (default 1); `MODKIT_DIFF_TRACE=1` prints each scenario; a divergence
//! prints the scenario's text to reproduce it. A long run:
//! `MODKIT_DIFF_CASES=20000 cargo test --release -p modkit --test random_differential -- --nocapture`.

use std::fmt::Write as _;

use modkit_hostdriver::run_scenario;

mod common;
#[path = "common/zero_time.rs"]
mod zero_time;
use common::{judge, summary, Verdict, MAX_SEEDS};
use modkit_core::Policy;
use modkit_sim::Sim;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const POLICIES: [&str; 8] = [
    "modkit",
    "linux-4.4",
    "linux-4.12",
    "linux-5.10",
    "linux-6.1",
    "linux-6.1.176",
    "linux-6.6",
    "linux-6.12",
];

/// One random scenario's text and policy.
fn scenario(rng: &mut ChaCha8Rng) -> (String, &'static str) {
    let n = rng.gen_range(1..=5usize);
    let mut t = String::from("modprobe_time = \"1ms\"\n");
    for i in 0..n {
        let _ = writeln!(t, "\n[[module]]\nname = \"m{i}\"\nexports = [\"m{i}_sym\"]");
        let imports: Vec<String> = (0..i)
            .filter(|_| rng.gen_bool(0.4))
            .map(|j| format!("\"m{j}_sym\""))
            .collect();
        if !imports.is_empty() {
            let _ = writeln!(t, "imports = [{}]", imports.join(", "));
        }
        if rng.gen_bool(0.5) {
            let _ = writeln!(t, "aliases = [\"alias-m{i}\"]");
        }
        let steps = rng.gen_range(1..=3);
        for s in 0..steps {
            let mut acts = vec![format!("{{ sleep = \"{}ms\" }}", rng.gen_range(1..=30))];
            if rng.gen_bool(0.15) {
                let target = rng.gen_range(0..n);
                let name = if rng.gen_bool(0.5) {
                    format!("m{target}")
                } else {
                    format!("alias-m{target}")
                };
                let wait = if rng.gen_bool(0.7) {
                    ""
                } else {
                    ", wait = false"
                };
                acts.push(format!("{{ request_module = \"{name}\"{wait} }}"));
                acts.push(format!("{{ sleep = \"{}ms\" }}", rng.gen_range(1..=10)));
            }
            if s + 1 == steps && rng.gen_bool(0.2) {
                let e = ["ENODEV", "ENOMEM", "EINVAL"][rng.gen_range(0..3)];
                acts.push(format!("{{ fail = \"{e}\" }}"));
            }
            let undo = if rng.gen_bool(0.5) {
                format!("[{{ sleep = \"{}ms\" }}]", rng.gen_range(1..=10))
            } else {
                "true".to_string()
            };
            let _ = writeln!(
                t,
                "[[module.init]]\nstep = \"s{s}\"\nrun = [{}]\nundo = {undo}",
                acts.join(", ")
            );
        }
    }
    let events = rng.gen_range(1..=5);
    for e in 0..events {
        // Distinct instants well apart from each other; ties with completions inside a
        // run are what the seed check filters out.
        let at = e * 97 + rng.gen_range(0..40);
        let target = rng.gen_range(0..n);
        let (verb, name) = match rng.gen_range(0..10) {
            0..=4 => ("modprobe", format!("m{target}")),
            5 => ("insmod", format!("m{target}")),
            6 | 7 => ("rmmod", format!("m{target}")),
            _ => ("request_module", format!("alias-m{target}")),
        };
        let threads = if verb == "rmmod" {
            1
        } else {
            rng.gen_range(1..=3)
        };
        let _ = writeln!(
            t,
            "\n[[event]]\nid = \"e{e}\"\nat = \"{at}ms\"\nthreads = {threads}\n{verb} = \"{name}\""
        );
    }
    (t, POLICIES[rng.gen_range(0..POLICIES.len())])
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn random_scenarios_agree_on_host_and_simulator() {
    let cases = env_u64("MODKIT_DIFF_CASES", 150);
    let mut rng = ChaCha8Rng::seed_from_u64(env_u64("MODKIT_DIFF_SEED", 1));
    let (mut same, mut covered, mut zero_time_races, mut most_seeds) = (0u64, 0u64, 0u64, 0);
    let mut livelocks = 0u64;
    let mut divergences = Vec::new();
    for case in 0..cases {
        let zero_time = case % 2 == 1;
        let (text, policy) = if zero_time {
            let text = zero_time::zero_time_scenario(&mut rng);
            (text, POLICIES[rng.gen_range(0..POLICIES.len())])
        } else {
            scenario(&mut rng)
        };
        if std::env::var_os("MODKIT_DIFF_TRACE").is_some() {
            eprintln!("case {case} under {policy}\n{text}");
        }
        let sc = modkit_sim::parse("random.toml", &text).expect("generated scenario parses");
        let p: Policy = policy.parse().expect("policy");
        let host = run_scenario(&sc, p, 0).expect("the host runs the scenario");
        assert!(
            host.kernel.violations.is_empty(),
            "case {case} under {policy}: {:?}\n{text}",
            host.kernel.violations
        );
        livelocks += u64::from(
            host.kernel
                .diagnostics
                .iter()
                .any(|d| d.kind.name() == "livelock"),
        );
        match judge(&sc, p, &host) {
            Verdict::Same => same += 1,
            Verdict::Covered { seeds } => {
                covered += 1;
                most_seeds = most_seeds.max(seeds);
                zero_time_races += u64::from(zero_time);
            }
            Verdict::Diverged { sims, host } => divergences.push(format!(
                "case {case} under {policy}:\n--- simulator ({} outcomes over {MAX_SEEDS} seeds)\n{}\n--- host\n{host}\n--- scenario\n{text}",
                sims.len(),
                sims.into_iter().collect::<Vec<_>>().join("\n  or\n")
            )),
        }
    }
    eprintln!(
        "random differential: {cases} scenarios compared, {same} with one outcome under every seed, {covered} seed-dependent (host gave one of the simulator's outcomes; {zero_time_races} of them from the zero-time generator; found within {most_seeds} seeds), {} diverged; {livelocks} stopped as livelocks (compared only on the livelock)",
        divergences.len()
    );
    assert!(divergences.is_empty(), "{}", divergences.join("\n\n"));
    // The zero-time generator must produce real races (otherwise it tests nothing new):
    // about 4 in 100 of its scenarios are seed-dependent (measured over 20,000 cases);
    // CI's 150 cases are too few to require it.
    if cases >= 1000 {
        assert!(
            zero_time_races * 100 >= cases,
            "only {zero_time_races} zero-time races in {cases} cases"
        );
    }
}

/// A failing init that requests its own module again (request_module_nowait) loops for
/// ever; on real threads it used to run without end. The host run now stops at the instant
/// the simulator found the livelock and reports it (found by generator seed 7, case 102).
#[test]
fn a_livelock_ends_on_the_host_as_in_the_simulator() {
    let text = r#"
modprobe_time = "1ms"
[[module]]
name = "m0"
aliases = ["alias-m0"]
[[module.init]]
step = "s0"
run = [{ sleep = "8ms" }]
[[module.init]]
step = "s1"
run = [{ sleep = "11ms" }, { request_module = "alias-m0", wait = false }, { sleep = "3ms" }]
[[module.init]]
step = "s2"
run = [{ sleep = "18ms" }, { fail = "EINVAL" }]
[[event]]
at = "30ms"
threads = 2
request_module = "alias-m0"
"#;
    let sc = modkit_sim::parse("livelock.toml", text).unwrap();
    let p: Policy = "linux-4.4".parse().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let sc2 = sc.clone();
    std::thread::spawn(move || {
        let _ = tx.send(run_scenario(&sc2, p, 0).expect("runs"));
    });
    let host = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the host run ends");
    let sim = Sim::new(&sc, p, 0).run().unwrap();
    assert_eq!(summary(&host), summary(&sim));
    let d = host
        .kernel
        .diagnostics
        .iter()
        .find(|d| d.kind.name() == "livelock")
        .expect("livelock reported");
    assert!(
        d.message.contains("found by the simulator"),
        "{}",
        d.message
    );
}
