//! Issue 9 item 7, second case: a cycle through the "module is going away" wait must not
//! depend on the tie-break seed. Module x (alias `alias-x`) has a step with a 10 ms undo and
//! a step that requests `alias-x`; x is loaded at 0, removed at 100 ms (its undo runs until
//! 110 ms), `request_module(alias-x)` comes at 101 ms and `modprobe x` at 105 ms. Both wait
//! for x to go; at 110 ms one of them loads x again, and x's init then asks for alias-x,
//! which the request of 101 ms holds. Which of the two simultaneous waits comes last used to
//! decide between a refusal and a permanent stall (and, once the stall was gone, between
//! two different results). The refusal now always goes to the wait for x's init, whoever
//! closes the cycle (modkit_core::proc, `refuse_cycle`); with `wait = false` nothing waits.

use std::collections::BTreeSet;

use modkit::Policy;
use modkit_sim::Sim;

fn scenario(wait: bool) -> String {
    let wait = if wait { "" } else { ", wait = false" };
    format!(
        r#"
[[module]]
name = "x"
aliases = ["alias-x"]
[[module.init]]
step = "s1"
undo = [{{ sleep = "10ms" }}]
[[module.init]]
step = "s2"
run = [{{ request_module = "alias-x"{wait} }}]

[[event]]
id = "load"
modprobe = "x"
[[event]]
id = "rm"
at = "100ms"
rmmod = "x"
[[event]]
id = "req"
at = "101ms"
request_module = "alias-x"
[[event]]
id = "load2"
at = "105ms"
modprobe = "x"
"#
    )
}

/// Everything observable about a run but the diagnostics' wording.
fn outcome(run: &modkit_sim::Run) -> String {
    let kinds: Vec<String> = run
        .kernel
        .diagnostics
        .iter()
        .map(|d| d.kind.to_string())
        .collect();
    let mut results: Vec<String> = run
        .results
        .iter()
        .map(|(e, r)| format!("{e}={r:?}"))
        .collect();
    results.sort();
    let table: Vec<String> = (0..run.kernel.db.len())
        .map(|i| {
            format!(
                "{}:{:?}:{}",
                run.kernel.name(i),
                run.kernel.state(i),
                run.kernel.init_calls[i]
            )
        })
        .collect();
    format!("{results:?} {table:?} {kinds:?} end={}", run.end_time)
}

#[test]
fn the_going_away_cycle_does_not_depend_on_the_seed() {
    for wait in [false, true] {
        let text = scenario(wait);
        let sc = modkit_sim::parse("going.toml", &text).unwrap();
        let mut seen = BTreeSet::new();
        for seed in 0..500 {
            let run = Sim::new(&sc, Policy::Modkit, seed).run().unwrap();
            assert!(
                !run.kernel
                    .diagnostics
                    .iter()
                    .any(|d| d.kind == modkit::DiagKind::Stalled),
                "wait = {wait}, seed {seed}: stalled"
            );
            seen.insert(outcome(&run));
        }
        assert_eq!(seen.len(), 1, "wait = {wait}: outcomes by seed: {seen:#?}");
        let only = seen.into_iter().next().unwrap();
        if wait {
            // The request of 101 ms is refused (its modprobe waited for x's init, which
            // waited for it); x itself goes live.
            assert!(only.contains("req=[Err(EDEADLK)]"), "{only}");
            assert!(only.contains("dependency_cycle"), "{only}");
        } else {
            assert!(only.contains("req=[Ok]"), "{only}");
        }
        assert!(only.contains("load2=[Ok]"), "{only}");
        // The host driver (real threads, whatever order they run in) agrees.
        for _ in 0..5 {
            let host = modkit::scenario::run_scenario(&sc, Policy::Modkit, 0);
            assert_eq!(outcome(&host), only, "wait = {wait}: host");
        }
    }
}
