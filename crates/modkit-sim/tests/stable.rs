//! Stable patch levels: `linux-X.Y.Z` follows the stable backports of its line
//! (crates/modkit-core/src/stable.rs, docs/loader-versions.md).

use modkit_core::{DiagKind, Errno, ModState, Outcome};
use modkit_sim::{parse, Run, Sim};

fn run(policy: &str, text: &str) -> Run {
    let sc = parse("t.toml", text).unwrap_or_else(|e| panic!("{e}"));
    let run = Sim::new(&sc, policy.parse().unwrap(), 0).run().unwrap();
    assert!(
        run.kernel.violations.is_empty(),
        "{:?}",
        run.kernel.violations
    );
    run
}

fn count(r: &Run, id: &str, o: Outcome) -> usize {
    r.results[id].iter().filter(|&&x| x == o).count()
}

fn inits(r: &Run, name: &str) -> u32 {
    let id = r.kernel.db.id(name).expect("module exists");
    r.kernel.init_calls[id]
}

/// `n` simultaneous finit_module() calls of a module whose init fails, as measured on
/// Debian's 6.1.176 under QEMU (100 threads: one init, ENODEV ×1, EBUSY ×99).
fn storm(n: usize) -> String {
    format!(
        r#"
[[module]]
name = "failing"
[[module.init]]
step = "probe"
run = [{{ sleep = "10ms" }}, {{ fail = "ENODEV" }}]

[[event]]
id = "storm"
threads = {n}
insmod = "failing"
"#
    )
}

const N: usize = 100;

fn assert_serialised(policy: &str) {
    let r = run(policy, &storm(N));
    assert_eq!(
        inits(&r, "failing"),
        N as u32,
        "{policy}: every caller inits"
    );
    assert_eq!(
        count(&r, "storm", Outcome::Err(Errno::ENODEV)),
        N,
        "{policy}"
    );
}

fn assert_one_init_rest_ebusy(policy: &str) {
    let r = run(policy, &storm(N));
    assert_eq!(inits(&r, "failing"), 1, "{policy}: one init");
    assert_eq!(
        count(&r, "storm", Outcome::Err(Errno::ENODEV)),
        1,
        "{policy}"
    );
    assert_eq!(
        count(&r, "storm", Outcome::Err(Errno::EBUSY)),
        N - 1,
        "{policy}: every other caller EBUSY"
    );
}

#[test]
fn linux_6_1_release_and_6_1_8_serialise_the_failing_inits() {
    for p in ["linux-6.1", "linux-6.1.0", "linux-6.1.8"] {
        assert_serialised(p);
    }
}

#[test]
fn linux_6_1_9_and_later_have_dont_wait_for_going() {
    for p in ["linux-6.1.9", "linux-6.1.176"] {
        assert_one_init_rest_ebusy(p);
    }
}

#[test]
fn other_stable_lines_got_it_at_their_own_patch_level() {
    for (before, after) in [
        ("linux-4.14.304", "linux-4.14.305"),
        ("linux-4.19.271", "linux-4.19.272"),
        ("linux-5.4.230", "linux-5.4.231"),
        ("linux-5.10.165", "linux-5.10.166"),
        ("linux-5.15.90", "linux-5.15.91"),
    ] {
        assert_serialised(before);
        assert_one_init_rest_ebusy(after);
    }
    // 4.9.y ended (4.9.337) before the backport: serialised to the end.
    assert_serialised("linux-4.9.337");
}

#[test]
fn era_b_itself_was_backported_before_5_3() {
    // Era A with every caller arriving together also serialises (each waiter retries);
    // what 6e6de3dee51a changed is the answer for a GOING module: EEXIST (A) or a wait
    // (B). A loader arriving while a live module is being unloaded shows it.
    let text = r#"
[[module]]
name = "m"
[[module.init]]
step = "s"
undo = [{ sleep = "100ms" }]

[[event]]
id = "load"
insmod = "m"

[[event]]
id = "unload"
at = "10ms"
rmmod = "m"

[[event]]
id = "again"
at = "50ms"
insmod = "m"
"#;
    // An insmod event is the raw system call: era A answers EEXIST for the GOING module;
    // era B waits and loads it again. (4.19.65 – 4.19.89 wait too, but are never woken: the
    // unload wakeup came in 4.19.90.)
    for (policy, loaded_again) in [
        ("linux-4.19.64", false),
        ("linux-4.19.90", true),
        ("linux-5.2.6", false),
    ] {
        let r = run(policy, text);
        assert_eq!(r.results["unload"][0], Outcome::Ok, "{policy}");
        let want = if loaded_again {
            Outcome::Ok
        } else {
            Outcome::Err(Errno::EEXIST)
        };
        assert_eq!(r.results["again"][0], want, "{policy}");
        let m = r.kernel.db.id("m").unwrap();
        let live = r.kernel.state(m) == Some(ModState::Live);
        assert_eq!(live, loaded_again, "{policy}: m live at the end");
        assert_eq!(inits(&r, "m"), if loaded_again { 2 } else { 1 }, "{policy}");
    }
    // 5.2.y ended before the unload wakeup (5.5, 5d603311615f) was backported: from 5.2.7
    // the loader waits for the unload and is never woken.
    for policy in ["linux-5.2.7", "linux-4.19.65"] {
        let r = run(policy, text);
        assert!(r.results["again"].is_empty(), "{policy}");
        assert!(
            r.kernel
                .diagnostics
                .iter()
                .any(|d| d.kind == DiagKind::Stalled),
            "{policy}"
        );
    }
}

#[test]
fn unload_wakeup_reached_5_4_9() {
    // A loader waits (era B) on a module being unloaded. Before 5d603311615f (5.5,
    // backported to 5.4.9) delete_module() did not wake module_wq: the loader sleeps on.
    let text = r#"
[[module]]
name = "m"
[[module.init]]
step = "s"
undo = [{ sleep = "100ms" }]

[[event]]
id = "load"
insmod = "m"

[[event]]
id = "unload"
at = "10ms"
rmmod = "m"

[[event]]
id = "again"
at = "50ms"
insmod = "m"
"#;
    let r = run("linux-5.4.9", text);
    assert_eq!(r.results["again"][0], Outcome::Ok);
    let r = run("linux-5.4.8", text);
    assert!(
        r.results["again"].is_empty(),
        "the loader is never woken: {:?}",
        r.results.get("again")
    );
    assert!(r
        .kernel
        .diagnostics
        .iter()
        .any(|d| d.kind == DiagKind::Stalled));
}

#[test]
fn autoload_disabled_error_reached_5_4_33_and_5_6_5() {
    let text = r#"
modprobe = ""

[[event]]
id = "req"
request_module = "fs-nonexistent"
"#;
    for (policy, want) in [
        ("linux-5.4.32", Outcome::Ok),
        ("linux-5.4.33", Outcome::Err(Errno::ENOENT)),
        ("linux-5.6", Outcome::Ok),
        ("linux-5.6.5", Outcome::Err(Errno::ENOENT)),
        ("linux-5.7", Outcome::Err(Errno::ENOENT)),
        ("linux-4.9.219", Outcome::Ok),
        ("linux-4.9.220", Outcome::Err(Errno::ENOENT)),
    ] {
        let r = run(policy, text);
        assert_eq!(r.results["req"][0], want, "{policy}");
    }
}
