//! Stress tests: storms of concurrent loads and requests, checked against the kernel's
//! documented behaviour (`reference/linux-module-loader.md` §2.1 for duplicate loads, §5.2 for
//! the request_module limit) and modkit's own semantics. Counts and results only: speed is
//! measured by the `engine` benchmark, not asserted here.

use modkit_core::{Errno, Outcome, Policy};
use modkit_sim::{Run, Scenario, Sim};

/// One module `m` whose init sleeps 10 ms and then runs `tail` (an action list, may be
/// empty), and one event `storm` of `threads` copies of `verb = "m"` at time 0. modprobe
/// itself takes no time, so that end times are exact multiples of the init's.
fn storm(verb: &str, threads: u32, tail: &str) -> Scenario {
    let text = format!(
        r#"
modprobe_time = "0s"

[[module]]
name = "m"
exports = ["m_sym"]
[[module.init]]
step = "probe"
run = [{{ sleep = "10ms" }}{tail}]
undo = true

[[event]]
id = "storm"
threads = {threads}
{verb} = "m"
"#
    );
    modkit_sim::parse("storm.toml", &text).expect("valid scenario")
}

fn run(sc: &Scenario, policy: &str) -> Run {
    let p: Policy = policy.parse().expect("policy");
    let run = Sim::new(sc, p, 0).run().expect("the run finishes");
    assert_eq!(run.kernel.violations, Vec::<String>::new(), "{policy}");
    run
}

fn count(results: &[Outcome], o: Outcome) -> usize {
    results.iter().filter(|&&r| r == o).count()
}

fn init_calls(run: &Run, m: &str) -> u32 {
    run.kernel.init_calls[run.kernel.db.id(m).expect("module")]
}

const STORM: u32 = 10_000;

/// modkit: 10,000 concurrent modprobes of one module merge onto one load: one init, every
/// thread gets its success.
#[test]
fn modkit_modprobe_storm_runs_one_init() {
    let sc = storm("modprobe", STORM, "");
    let run = run(&sc, "modkit");
    let res = &run.results["storm"];
    assert_eq!(res.len(), STORM as usize);
    assert_eq!(count(res, Outcome::Ok), STORM as usize);
    assert_eq!(init_calls(&run, "m"), 1);
    let k = &run.kernel;
    let m = k.db.id("m").expect("m");
    assert_eq!(k.state(m).map(|s| s.name()), Some("live"));
    assert_eq!(k.instances[m].as_ref().expect("live").refcount, 0);
    assert!(k.pins.is_empty());
}

/// modkit: a failing init is run once and its error shared by all 10,000 threads.
#[test]
fn modkit_failing_storm_shares_one_error() {
    let sc = storm("modprobe", STORM, r#", { fail = "ENOMEM" }"#);
    let run = run(&sc, "modkit");
    let res = &run.results["storm"];
    assert_eq!(count(res, Outcome::Err(Errno::ENOMEM)), STORM as usize);
    assert_eq!(init_calls(&run, "m"), 1);
    assert!(run.kernel.instances[run.kernel.db.id("m").expect("m")].is_none());
}

/// Linux 6.1 (era B, §2.3): every finit_module waiting in add_unformed_module retries after
/// the failed load is freed, one at a time: the init runs once per thread and every thread
/// gets the init's error. Each retry wakes every waiter on module_wq (wake_up_all); the
/// simulator leaves waiters whose wait cannot end parked and wakes the others one after
/// another, so the whole storm costs O(threads) steps, not O(threads²) (issue 9: 10,000
/// threads used to exhaust the 10M-step budget).
#[test]
fn linux_6_1_failing_storm_retries_serially() {
    let sc = storm("modprobe", STORM, r#", { fail = "ENOMEM" }"#);
    let run = run(&sc, "linux-6.1");
    let res = &run.results["storm"];
    assert_eq!(res.len(), STORM as usize);
    assert_eq!(count(res, Outcome::Err(Errno::ENOMEM)), STORM as usize);
    assert_eq!(init_calls(&run, "m"), STORM);
    // Serialised: each init takes its 10 ms in turn.
    assert_eq!(run.end_time, u64::from(STORM) * 10_000_000);
    assert!(run.steps < 20 * u64::from(STORM), "{} steps", run.steps);
}

/// A failing-init storm of 10,000 insmods in every era costs O(threads) scheduler steps:
/// serialised retries under eras A and B (4.4 to 6.1.8), one attempt and EBUSY under C/D,
/// one shared result under E/F and modkit.
#[test]
fn failing_storms_of_every_era_cost_linear_steps() {
    let sc = storm("insmod", STORM, r#", { fail = "ENODEV" }"#);
    for (policy, inits) in [
        ("linux-4.4", STORM),
        ("linux-5.2", STORM),
        ("linux-5.10", STORM),
        ("linux-6.1", STORM),
        ("linux-6.1.176", 1),
        ("linux-6.4", 1),
        ("linux-6.6", 1),
        ("linux-6.12", 1),
        ("modkit", 1),
    ] {
        let run = run(&sc, policy);
        assert_eq!(run.results["storm"].len(), STORM as usize, "{policy}");
        assert_eq!(init_calls(&run, "m"), inits, "{policy}");
        assert!(
            run.steps < 20 * u64::from(STORM),
            "{policy}: {} steps",
            run.steps
        );
    }
}

/// Linux 6.1 with an init that succeeds: the first load wins, the others wait for it and
/// then find the module LIVE (EEXIST, which modprobe counts as success).
#[test]
fn linux_6_1_modprobe_storm_one_init() {
    let sc = storm("modprobe", STORM, "");
    let run = run(&sc, "linux-6.1");
    let res = &run.results["storm"];
    assert_eq!(count(res, Outcome::Ok), STORM as usize);
    assert_eq!(init_calls(&run, "m"), 1);
}

/// Linux 6.6 (era E, §2.1): concurrent finit_module of one file wait for the first and
/// return its result: one init, one shared error.
#[test]
fn linux_6_6_failing_storm_shares_one_result() {
    let sc = storm("modprobe", STORM, r#", { fail = "ENOMEM" }"#);
    let run = run(&sc, "linux-6.6");
    let res = &run.results["storm"];
    assert_eq!(count(res, Outcome::Err(Errno::ENOMEM)), STORM as usize);
    assert_eq!(init_calls(&run, "m"), 1);
}

/// Linux 6.2 (era C): the waiters wait once, then find the failed module gone: EBUSY, no
/// new attempt.
#[test]
fn linux_6_2_failing_storm_gets_ebusy() {
    let sc = storm("insmod", 100, r#", { fail = "ENOMEM" }"#);
    let run = run(&sc, "linux-6.2");
    let res = &run.results["storm"];
    assert_eq!(count(res, Outcome::Err(Errno::ENOMEM)), 1);
    assert_eq!(count(res, Outcome::Err(Errno::EBUSY)), 99);
    assert_eq!(init_calls(&run, "m"), 1);
}

/// `n` concurrent request_module("m") calls (kernel threads, as lib/test_kmod.c makes them),
/// the module's init taking `init` of virtual time.
fn requests(n: u32, init: &str) -> Scenario {
    let text = format!(
        r#"
modprobe_time = "0s"

[[module]]
name = "m"
[[module.init]]
step = "probe"
run = [{{ sleep = "{init}" }}]

[[event]]
id = "req"
threads = {n}
request_module = "m"
"#
    );
    modkit_sim::parse("requests.toml", &text).expect("valid scenario")
}

/// Linux ≤ 4.12 (§5.2): above MAX_KMOD_CONCURRENT (50) a request fails at once with
/// -ENOMEM, and "runaway loop" is printed at most 5 times.
#[test]
fn linux_4_12_request_storm_enomem_beyond_50() {
    for n in [58u32, 62] {
        let run = run(&requests(n, "1s"), "linux-4.12");
        let res = &run.results["req"];
        assert_eq!(res.len(), n as usize);
        assert_eq!(count(res, Outcome::Ok), 50, "{n}");
        assert_eq!(
            count(res, Outcome::Err(Errno::ENOMEM)),
            n as usize - 50,
            "{n}"
        );
        let runaway = run
            .kernel
            .log
            .iter()
            .filter(|l| l.text.contains("request_module: runaway loop modprobe m"))
            .count();
        assert_eq!(runaway, (n as usize - 50).min(5), "{n}");
        assert_eq!(run.kernel.kmod.peak, 50);
        assert_eq!(init_calls(&run, "m"), 1);
    }
}

/// Linux 6.4+ (§5.2): a FIFO semaphore of 50 with a 5 s timeout. With a 1 s init the extra
/// requests wait for a slot and all succeed; the peak stays at 50.
#[test]
fn linux_6_4_request_storm_waits_for_slots() {
    for n in [58u32, 62] {
        let run = run(&requests(n, "1s"), "linux-6.4");
        let res = &run.results["req"];
        assert_eq!(count(res, Outcome::Ok), n as usize, "{n}");
        assert_eq!(run.kernel.kmod.peak, 50);
        assert_eq!(init_calls(&run, "m"), 1);
        assert!(run.kernel.diagnostics.is_empty(), "{n}");
        // The waiters got their slots when the first 50 finished, at 1 s.
        assert_eq!(run.end_time, 1_000_000_000);
    }
}

/// Linux 6.4+ with an init slower than the 5 s slot timeout: the requests beyond 50 give up
/// with -ETIME and the "cannot be processed" message.
#[test]
fn linux_6_4_request_storm_times_out_beyond_50() {
    for n in [58u32, 62] {
        let run = run(&requests(n, "10s"), "linux-6.4");
        let res = &run.results["req"];
        assert_eq!(count(res, Outcome::Ok), 50, "{n}");
        assert_eq!(
            count(res, Outcome::Err(Errno::ETIME)),
            n as usize - 50,
            "{n}"
        );
        assert!(run.kernel.log.iter().any(|l| l
            .text
            .contains("request_module: modprobe m cannot be processed, kmod busy with 50 threads for more than 5 seconds now")));
    }
}

/// modkit merges identical requests into one modprobe: 62 requests of one name use one slot.
#[test]
fn modkit_request_storm_merges() {
    let run = run(&requests(62, "10s"), "modkit");
    let res = &run.results["req"];
    assert_eq!(count(res, Outcome::Ok), 62);
    assert_eq!(run.kernel.kmod.peak, 1);
    assert_eq!(init_calls(&run, "m"), 1);
}

/// `n` modules `m0..`, each with an init taking `init`, and one request_module event per
/// module, all at time 0.
fn distinct_requests(n: u32, init: &str) -> Scenario {
    let mut text = String::from("modprobe_time = \"0s\"\n");
    for i in 0..n {
        text += &format!(
            "[[module]]\nname = \"m{i}\"\n[[module.init]]\nstep = \"probe\"\nrun = [{{ sleep = \"{init}\" }}]\n"
        );
    }
    for i in 0..n {
        text += &format!("[[event]]\nid = \"r{i}\"\nrequest_module = \"m{i}\"\n");
    }
    modkit_sim::parse("distinct.toml", &text).expect("valid scenario")
}

/// modkit: the limit of 50 applies to distinct requests (a FIFO semaphore with the 5 s
/// timeout of 6.4+): with 1 s inits the 12 extra requests wait for slots and succeed; with
/// 10 s inits they give up with ETIME and a `limit_reached` diagnostic.
#[test]
fn modkit_distinct_requests_share_50_slots() {
    let run1 = run(&distinct_requests(62, "1s"), "modkit");
    assert!(run1.results.values().flatten().all(|o| o.is_ok()));
    assert_eq!(run1.kernel.kmod.peak, 50);
    assert_eq!(run1.end_time, 2_000_000_000);

    let run10 = run(&distinct_requests(62, "10s"), "modkit");
    let all: Vec<Outcome> = run10.results.values().flatten().copied().collect();
    assert_eq!(count(&all, Outcome::Ok), 50);
    assert_eq!(count(&all, Outcome::Err(Errno::ETIME)), 12);
    assert!(run10
        .kernel
        .diagnostics
        .iter()
        .any(|d| d.kind.name() == "limit_reached"));
}
