//! SIGKILL (`kill` and `kill_modprobe` events) and `syscall = "init_module"`: which waits a
//! fatal signal ends, by kernel version (modkit_core::signal).

use modkit_core::{Errno, Outcome, SEC};
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

fn log_at(r: &Run, s: &str) -> Option<u64> {
    r.kernel
        .log
        .iter()
        .find(|l| l.text.contains(s))
        .map(|l| l.time)
}

const SLOTS: &str = r#"
[[module]]
name = "slow"
[[module.init]]
step = "s"
run = [{ sleep = "10s" }]
[[event]]
id = "fill"
threads = 50
request_module = "slow"
[[event]]
id = "late"
at = "10ms"
request_module = "slow"
[[event]]
id = "k"
at = "1s"
kill = "late"
"#;

#[test]
fn the_throttle_is_killable_and_the_semaphore_is_not() {
    // 4.13 – 6.3: wait_event_killable_timeout() ends at the kill, with its message.
    let r = run("linux-6.1", SLOTS);
    assert_eq!(r.results["late"], vec![Outcome::Killed]);
    assert_eq!(r.results["k"], vec![Outcome::Ok]);
    assert_eq!(
        log_at(
            &r,
            "request_module: sigkill sent for modprobe slow, giving up"
        ),
        Some(SEC)
    );
    assert_eq!(log_at(&r, "kmod busy"), None);
    // 6.4+: down_timeout() sleeps on until its 5 s are up.
    let r = run("linux-6.4", SLOTS);
    assert_eq!(r.results["late"], vec![Outcome::Killed]);
    assert_eq!(log_at(&r, "sigkill sent"), None);
    assert_eq!(
        log_at(
            &r,
            "request_module: modprobe slow cannot be processed, kmod busy"
        ),
        Some(10_000_000 + 5 * SEC)
    );
}

const SYMBOL_WAIT: &str = r#"
[[module]]
name = "core"
exports = ["a", "b"]
[[module.init]]
step = "s"
run = [{ sleep = "100s" }]
[[module]]
name = "user"
imports = ["a", "b"]
depends = []
[[event]]
modprobe = "core"
[[event]]
id = "u"
at = "10ms"
insmod = "user"
[[event]]
id = "k"
at = "1s"
kill = "u"
"#;

#[test]
fn a_kill_ends_resolve_symbol_wait_for_every_symbol_at_once() {
    let r = run("linux-6.1", SYMBOL_WAIT);
    assert_eq!(r.results["u"], vec![Outcome::Killed]);
    assert_eq!(
        log_at(&r, "user: gave up waiting for init of module core."),
        Some(SEC)
    );
    assert_eq!(log_at(&r, "user: Unknown symbol b (err -16)"), Some(SEC));
    // Without the kill: 30 s per symbol.
    let quiet = SYMBOL_WAIT.replace("kill = \"u\"", "kill_modprobe = \"nothing\"");
    let r = run("linux-6.1", &quiet);
    assert_eq!(r.results["u"], vec![Outcome::Err(Errno::EBUSY)]);
    assert_eq!(r.results["k"], vec![Outcome::Err(Errno::ESRCH)]);
    assert_eq!(
        log_at(&r, "user: Unknown symbol b (err -16)"),
        Some(10_000_000 + 60 * SEC)
    );
}

#[test]
fn a_killed_modprobe_inserts_nothing_more() {
    // modprobe b loads a (slow) then b: killed during a's init, it never inserts b.
    let text = r#"
[[module]]
name = "a"
exports = ["x"]
[[module.init]]
step = "s"
run = [{ sleep = "2s" }]
[[module]]
name = "b"
imports = ["x"]
[[event]]
id = "m"
modprobe = "b"
[[event]]
id = "k"
at = "1s"
kill = "m"
"#;
    for p in ["linux-4.4", "linux-6.12", "modkit"] {
        let r = run(p, text);
        assert_eq!(r.results["m"], vec![Outcome::Killed], "{p}");
        assert_eq!(r.kernel.init_calls, vec![1, 0], "{p}");
        assert_eq!(
            r.end_time,
            2 * SEC + 1_000_000,
            "{p}: the init is not interrupted"
        );
    }
}

#[test]
fn init_module_is_not_deduplicated_by_the_idempotent_finit() {
    let text = |sys: &str| {
        format!(
            r#"
[[module]]
name = "a"
[[module.init]]
step = "s"
run = [{{ sleep = "1s" }}, {{ fail = "ENODEV" }}]
[[event]]
id = "e"
threads = 3
insmod = "a"
syscall = "{sys}"
"#
        )
    };
    let r = run("linux-6.12", &text("finit_module"));
    assert_eq!(r.results["e"], vec![Outcome::Err(Errno::ENODEV); 3]);
    let r = run("linux-6.12", &text("init_module"));
    let mut got = r.results["e"].clone();
    got.sort();
    assert_eq!(
        got,
        vec![
            Outcome::Err(Errno::EBUSY),
            Outcome::Err(Errno::EBUSY),
            Outcome::Err(Errno::ENODEV)
        ]
    );
    assert_eq!(r.kernel.init_calls, vec![1]);
}

#[test]
fn bad_kill_and_syscall_keys_are_refused_with_a_fix() {
    let err = |t: &str| parse("t.toml", t).unwrap_err().message;
    let base = "[[module]]\nname = \"a\"\n[[event]]\nid = \"m\"\nmodprobe = \"a\"\n";
    let e = err(&format!("{base}[[event]]\nkill = \"mm\"\n"));
    assert!(
        e.contains("no event has id `mm`") && e.contains("`m`"),
        "{e}"
    );
    let e = err(&format!("{base}[[event]]\nid = \"k\"\nkill = \"k\"\n"));
    assert!(e.contains("cannot kill itself"), "{e}");
    let e = err(&format!("{base}[[event]]\nkill = \"m\"\nthreads = 2\n"));
    assert!(e.contains("leave `threads` at 1"), "{e}");
    let e = err(&format!(
        "{base}[[event]]\nkill = \"m\"\nmodprobe = \"a\"\n"
    ));
    assert!(e.contains("exactly one of"), "{e}");
    let e =
        err("[[module]]\nname = \"a\"\n[[event]]\nmodprobe = \"a\"\nsyscall = \"init_module\"\n");
    assert!(e.contains("`syscall` goes with `insmod`"), "{e}");
    let e = err("[[module]]\nname = \"a\"\n[[event]]\ninsmod = \"a\"\nsyscall = \"init_modul\"\n");
    assert!(
        e.contains("unknown system call `init_modul`") && e.contains("init_module"),
        "{e}"
    );
    let e = err("[[module]]\nname = \"a\"\n[[event]]\nkill_modprobe = \"\"\n");
    assert!(e.contains("needs the name"), "{e}");
}

#[test]
fn killed_duplicate_load_waiters_leave_the_others_waiting_as_before() {
    // Era B: the storm's first load fails at 1 s, the instant its 5 waiters are killed; the
    // waiters of `other` are not, and retry one after another (3 more inits).
    let text = r#"
[[module]]
name = "a"
[[module.init]]
step = "s"
run = [{ sleep = "1s" }, { fail = "ENODEV" }]
[[event]]
id = "storm"
threads = 6
insmod = "a"
[[event]]
id = "other"
at = "10ms"
threads = 3
insmod = "a"
[[event]]
id = "k"
at = "1s"
kill = "storm"
"#;
    let r = run("linux-6.1", text);
    assert_eq!(r.results["storm"], vec![Outcome::Killed; 6]);
    assert_eq!(r.results["other"], vec![Outcome::Err(Errno::ENODEV); 3]);
    assert_eq!(r.kernel.init_calls, vec![4]);
    assert_eq!(r.end_time, 4 * SEC);
    assert!(
        r.kernel.diagnostics.is_empty(),
        "{:?}",
        r.kernel.diagnostics
    );
}

#[test]
fn an_init_running_in_a_killed_task_does_not_wait_for_its_request() {
    // `modprobe a` is killed at 1 s while a's init sleeps (not interrupted); the init's
    // request_module("b") at 2 s then returns at once (-ERESTARTSYS, ignored: not required)
    // while the modprobe it started loads b (3 s init) on its own.
    let text = r#"
[[module]]
name = "a"
[[module.init]]
step = "s"
run = [{ sleep = "2s" }, { request_module = "b" }]
[[module]]
name = "b"
[[module.init]]
step = "s"
run = [{ sleep = "3s" }]
[[event]]
id = "m"
modprobe = "a"
[[event]]
id = "k"
at = "1s"
kill = "m"
"#;
    for p in ["linux-6.1", "linux-6.12", "modkit"] {
        let r = run(p, text);
        assert_eq!(r.results["m"], vec![Outcome::Killed], "{p}");
        assert_eq!(r.kernel.init_calls, vec![1, 1], "{p}");
        let a = r.kernel.instances[0].as_ref().expect("a is loaded");
        assert_eq!(a.state, modkit_core::ModState::Live, "{p}");
        // b's modprobe starts at 2.001 s, takes 1 ms to exec, then 3 s of init.
        assert_eq!(r.end_time, 5 * SEC + 2_000_000, "{p}");
    }
}

#[test]
fn modkit_rmmod_wait_is_killable() {
    let text = r#"
[[module]]
name = "a"
[[event]]
modprobe = "a"
[[event]]
at = "10ms"
run = [{ get_module = "a" }]
[[event]]
id = "rm"
at = "20ms"
rmmod = "a"
wait = true
[[event]]
id = "k"
at = "1s"
kill = "rm"
"#;
    let r = run("modkit", text);
    assert_eq!(r.results["rm"], vec![Outcome::Killed]);
    assert_eq!(r.end_time, SEC);
    let a = r.kernel.instances[0].as_ref().expect("a stays");
    assert!(!a.draining, "the killed rmmod no longer refuses new pins");
}
