//! What the differential tests compare between the simulator and the host driver, and how
//! (the contract is written in docs/host-contract.md).

use std::collections::BTreeSet;

use modkit_core::Policy;
use modkit_sim::report::module_table;
use modkit_sim::{Scenario, Sim};

/// What must agree between drivers: final module table (with init counts), sorted event
/// results, kinds of diagnostics, virtual end time.
///
/// A run stopped as a livelock is the exception: the host cannot see a livelock itself (its
/// threads would loop for ever), so it is stopped at the instant the simulator (seed 0)
/// found one and copies that diagnostic; where it stands at that instant (init counts,
/// results, diagnostics raised so far) depends on how its threads ran until then. Such a
/// run's outcome is only that a livelock was found, and of which module.
pub fn summary(r: &modkit_sim::Run) -> String {
    if let Some(d) = r
        .kernel
        .diagnostics
        .iter()
        .find(|d| d.kind.name() == "livelock")
    {
        return format!("livelock of {:?}", d.module);
    }
    let mut results: Vec<(String, Vec<String>)> = r
        .results
        .iter()
        .map(|(k, v)| {
            let mut v: Vec<String> = v.iter().map(|o| o.to_string()).collect();
            v.sort();
            (k.clone(), v)
        })
        .collect();
    results.sort();
    let mut kinds: Vec<&str> = r.kernel.diagnostics.iter().map(|d| d.kind.name()).collect();
    kinds.sort();
    kinds.dedup();
    format!(
        "modules: {:?}\nresults: {results:?}\ndiagnostics: {kinds:?}\nend: {}",
        module_table(&r.kernel),
        r.end_time
    )
}

/// Tie-break seeds every comparison runs first (0, the atomic file order, and 1..16, which
/// also preempt zero-time code).
pub const FIRST_SEEDS: u64 = 16;

/// Seeds tried in all before a host outcome counts as one the simulator cannot give.
pub const MAX_SEEDS: u64 = 1024;

// host_schedules.rs compares sets of host outcomes itself and does not use these two.
/// How a host run compares with the simulator's runs of the same scenario and policy.
#[allow(dead_code)]
#[derive(Debug)]
pub enum Verdict {
    /// Every seed tried gave one outcome, and the host gave it.
    Same,
    /// The simulator's outcome depends on the seed (a real race); the host gave one of
    /// them (`seeds` seeds were run to find it).
    Covered {
        /// Seeds run.
        seeds: u64,
    },
    /// The host's outcome is none the simulator gives under [`MAX_SEEDS`] seeds.
    Diverged {
        /// The simulator's distinct outcomes.
        sims: BTreeSet<String>,
        /// The host's.
        host: String,
    },
}

/// The contract of docs/host-contract.md: the host's outcome is one of the simulator's
/// over tie-break seeds. Runs seeds `0..FIRST_SEEDS`, then more (up to [`MAX_SEEDS`]) while
/// the host's outcome is not among them, so that a rare interleaving is looked for before
/// a divergence is declared.
#[allow(dead_code)]
pub fn judge(sc: &Scenario, p: Policy, host: &modkit_sim::Run) -> Verdict {
    let h = summary(host);
    let mut sims = BTreeSet::new();
    let mut seed = 0;
    while seed < MAX_SEEDS {
        let run = Sim::new(sc, p, seed).run().expect("the simulator finishes");
        assert!(
            run.kernel.violations.is_empty(),
            "seed {seed}: {:?}",
            run.kernel.violations
        );
        sims.insert(summary(&run));
        seed += 1;
        if seed >= FIRST_SEEDS && sims.contains(&h) {
            break;
        }
    }
    if !sims.contains(&h) {
        Verdict::Diverged { sims, host: h }
    } else if sims.len() == 1 {
        Verdict::Same
    } else {
        Verdict::Covered { seeds: seed }
    }
}

/// [`summary`] for device scenarios: also the device table (device, bus, driver, state,
/// reason) and the log lines, in order (udevd's "Worker [PID] processing SEQNUM=N" is
/// left out after "Worker": the PID is the task id, which the drivers number differently,
/// and the simulator records the latest SEQNUM at dispatch where the host records the
/// event's own).
#[allow(dead_code)]
pub fn device_summary(r: &modkit_sim::Run) -> String {
    let mut s = summary(r);
    if s.starts_with("livelock") {
        return s;
    }
    for row in &r.devices {
        s.push_str(&format!(
            "\ndevice {} {} {} {} {}",
            row.device,
            row.bus,
            row.driver.as_deref().unwrap_or("-"),
            row.state,
            row.reason.as_deref().unwrap_or("")
        ));
    }
    // Lines of one instant are compared as a set: threads print them in the order they
    // take the mutex (docs/host-contract.md).
    let mut lines: Vec<&modkit_core::kernel::LogLine> = r.kernel.log.iter().collect();
    lines.sort_by(|a, b| (a.time, &a.text).cmp(&(b.time, &b.text)));
    for l in lines {
        let t = &l.text;
        let line = match (t.find("Worker ["), t.find("] processing")) {
            (Some(a), Some(b)) if a < b => format!("{}Worker [_] processing _ killed", &t[..a]),
            _ => t.clone(),
        };
        s.push_str(&format!("\nlog {} {line}", l.time));
    }
    s
}

/// [`judge`] with another outcome function (e.g. [`device_summary`]).
#[allow(dead_code)]
pub fn judge_by(
    sc: &Scenario,
    p: Policy,
    host: &modkit_sim::Run,
    outcome: fn(&modkit_sim::Run) -> String,
) -> Verdict {
    let h = outcome(host);
    let mut sims = BTreeSet::new();
    let mut seed = 0;
    while seed < MAX_SEEDS {
        let run = Sim::new(sc, p, seed).run().expect("the simulator finishes");
        assert!(
            run.kernel.violations.is_empty(),
            "seed {seed}: {:?}",
            run.kernel.violations
        );
        sims.insert(outcome(&run));
        seed += 1;
        if seed >= FIRST_SEEDS && sims.contains(&h) {
            break;
        }
    }
    if !sims.contains(&h) {
        Verdict::Diverged { sims, host: h }
    } else if sims.len() == 1 {
        Verdict::Same
    } else {
        Verdict::Covered { seeds: seed }
    }
}
