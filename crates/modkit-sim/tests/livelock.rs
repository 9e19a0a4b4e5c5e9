//! Runs that never end: periodic behaviour is a `livelock` diagnostic found in a few
//! rounds; anything else stops at the step budget with an honest message.

use modkit_core::{DiagKind, Policy};
use modkit_sim::{Sim, SimError};

const PING_PONG: &str = r#"
[[module]]
name = "a"
[[module.init]]
step = "probe_a"
run = [{ request_module = "b", wait = false }, { fail = "ENODEV" }]
[[module]]
name = "b"
[[module.init]]
step = "probe_b"
run = [{ request_module = "a", wait = false }, { fail = "ENODEV" }]
[[event]]
id = "boot"
modprobe = "a"
"#;

#[test]
fn failing_inits_that_request_each_other_are_a_livelock() {
    let twice = PING_PONG
        .replace(
            "run = [{ request_module = \"b\", wait = false }",
            "run = [{ request_module = \"b\", wait = false }, { request_module = \"b\", wait = false }",
        )
        .replace(
            "run = [{ request_module = \"a\", wait = false }",
            "run = [{ request_module = \"a\", wait = false }, { request_module = \"a\", wait = false }",
        );
    for text in [PING_PONG, twice.as_str()] {
        let sc = modkit_sim::parse("t.toml", text).unwrap();
        for p in ["modkit", "linux-6.1", "linux-5.2", "linux-6.12"] {
            let run = Sim::new(&sc, p.parse::<Policy>().unwrap(), 0)
                .run()
                .unwrap();
            let d = run
                .kernel
                .diagnostics
                .iter()
                .find(|d| d.kind == DiagKind::Livelock)
                .unwrap_or_else(|| panic!("{p}: {:?}", run.kernel.diagnostics));
            let chain = d.chain.join(" → ");
            assert!(
                chain.contains("a: init step `probe_a` runs request_module(\"b\", wait = false)"),
                "{chain}"
            );
            assert!(
                chain.contains("b: init step `probe_b` runs request_module(\"a\", wait = false)"),
                "{chain}"
            );
            assert!(run.steps < 1_000, "{p}: {} steps", run.steps);
            assert!(
                !run.kernel
                    .diagnostics
                    .iter()
                    .any(|d| d.kind == DiagKind::Stalled),
                "a livelock stopped on purpose is no stall"
            );
        }
    }
}

#[test]
fn a_loop_that_a_later_event_ends_is_no_livelock() {
    let text = format!("{PING_PONG}[[event]]\nat = \"50ms\"\nset = {{ modprobe = \"\" }}\n");
    let sc = modkit_sim::parse("t.toml", &text).unwrap();
    for p in ["modkit", "linux-6.1"] {
        let run = Sim::new(&sc, p.parse::<Policy>().unwrap(), 0)
            .run()
            .unwrap();
        assert!(
            run.kernel.diagnostics.is_empty(),
            "{p}: {:?}",
            run.kernel.diagnostics
        );
        assert!(run.end_time >= 50_000_000);
        assert!(
            run.kernel.init_calls[0] > 10,
            "the loop ran until the event"
        );
    }
}

#[test]
fn the_step_budget_is_an_option_with_an_honest_message() {
    let text = r#"
max_steps = 1000
policy = "linux-6.1"
[[module]]
name = "a"
[[module.init]]
step = "probe"
run = [{ sleep = "1ms" }, { fail = "ENODEV" }]
[[event]]
threads = 2000
modprobe = "a"
"#;
    let sc = modkit_sim::parse("t.toml", text).unwrap();
    assert_eq!(sc.max_steps, Some(1000));
    let e = Sim::new(&sc, sc.policy, 0).run().unwrap_err();
    let SimError::Runaway { budget, steps, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!((*budget, *steps), (1000, 1000));
    let msg = e.to_string();
    assert!(msg.contains("max_steps = N"), "{msg}");
    assert!(msg.contains("no livelock"), "{msg}");
    assert!(!msg.contains("wake each other"), "{msg}");
    // The library's option overrides the file's.
    let run = Sim::new(&sc, sc.policy, 0)
        .with_max_steps(1_000_000)
        .run()
        .unwrap();
    assert_eq!(run.kernel.init_calls[0], 2000);
    let e = modkit_sim::parse("t.toml", "max_steps = 0\n").unwrap_err();
    assert!(e.message.contains("at least 1"), "{e}");
}
