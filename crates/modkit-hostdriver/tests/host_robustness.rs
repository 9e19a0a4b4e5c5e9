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
        let host = modkit_hostdriver::run_scenario(&sc, p, 0);
        for (driver, run) in [("sim", sim), ("host", host)] {
            assert_eq!(run.results["probe"][0].to_string(), "ok", "{p} {driver}");
            assert_eq!(run.results["first"][0].to_string(), "ok", "{p} {driver}");
            assert_eq!(run.kernel.init_calls.iter().sum::<u32>(), 1, "{p} {driver}");
        }
    }
}
