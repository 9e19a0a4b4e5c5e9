//! Issue 9 item 7 on the host driver: scenarios that once hung the host run to their end.

/// A `wait = false` request merged into an identical one in flight does not wait for it
/// (the completion it signals right after is seen before the 5 ms bound), on both drivers.
#[test]
fn a_merged_nowait_request_does_not_wait() {
    let text = r#"
[[module]]
name = "m"
[[module.init]]
step = "slow"
run = [{ sleep = "10ms" }]
[[event]]
id = "first"
request_module = "m"
[[event]]
id = "second"
at = "1ms"
run = [{ request_module = "m", wait = false }, { complete = "c" }]
[[event]]
id = "probe"
at = "1ms"
run = [{ wait_for = "c", timeout = "5ms" }]
"#;
    let sc = modkit_sim::parse("t.toml", text).unwrap();
    for p in ["modkit", "linux-6.1"] {
        let p: modkit::Policy = p.parse().unwrap();
        let sim = modkit_sim::Sim::new(&sc, p, 0).run().unwrap();
        let host = modkit_hostdriver::run_scenario(&sc, p, 0).expect("the host runs it");
        for (driver, run) in [("sim", sim), ("host", host)] {
            assert_eq!(run.results["probe"][0].to_string(), "ok", "{p} {driver}");
            assert_eq!(run.results["first"][0].to_string(), "ok", "{p} {driver}");
            assert_eq!(run.kernel.init_calls.iter().sum::<u32>(), 1, "{p} {driver}");
        }
    }
}

/// Issue 9 item 8: 20,000 threads used to abort the whole process (the standard library
/// could not set up a new thread's guard stack once the process ran out of memory
/// mappings). The host refuses a scenario that asks for more threads than its limit, with
/// the limit in the error, before starting any; the simulator still runs it.
#[test]
fn too_many_threads_for_the_host_is_a_clear_error() {
    let text =
        "[[module]]\nname = \"m\"\n[[event]]\nid = \"storm\"\nthreads = 20000\nmodprobe = \"m\"\n";
    let sc = modkit_sim::parse("storm.toml", text).unwrap();
    let p: modkit::Policy = "modkit".parse().unwrap();
    let e = modkit_hostdriver::run_scenario(&sc, p, 0).unwrap_err();
    let limit = modkit::thread_limit();
    assert!(limit <= modkit::HOST_THREAD_CAP);
    assert_eq!(
        e,
        modkit_hostdriver::ScenarioError::TooManyThreads {
            file: "storm.toml".into(),
            asked: 20_000,
            limit
        }
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("limit of {limit} OS threads")) && msg.contains("20000 threads"),
        "{msg}"
    );
    let sim = modkit_sim::Sim::new(&sc, p, 0).run().unwrap();
    assert_eq!(sim.results["storm"].len(), 20_000);
}
