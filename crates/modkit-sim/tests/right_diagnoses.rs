//! Issue 9, item 3: every diagnosis names the real cause and every fix hint is true for the
//! policy in force.

use modkit_core::{DiagKind, Errno, Outcome};
use modkit_sim::{parse, Run, Sim};

fn run(policy: &str, text: &str) -> Run {
    let sc = parse("t.toml", text).unwrap_or_else(|e| panic!("{e}"));
    Sim::new(&sc, policy.parse().unwrap(), 0).run().unwrap()
}

fn diags(r: &Run, kind: DiagKind) -> Vec<&modkit_core::Diagnostic> {
    r.kernel
        .diagnostics
        .iter()
        .filter(|d| d.kind == kind)
        .collect()
}

const CYCLES: &str = r#"
[[module]]
name = "a"
exports = ["a_sym"]
imports = ["b_sym"]
[[module]]
name = "b"
exports = ["b_sym"]
imports = ["a_sym"]
[[module]]
name = "c"
exports = ["c_sym"]
imports = ["c_sym"]
[[event]]
id = "ia"
insmod = "a"
[[event]]
id = "ic"
insmod = "c"
"#;

#[test]
fn symbol_import_cycles_are_dependency_cycles_with_the_chain() {
    for policy in ["modkit", "linux-6.1"] {
        let r = run(policy, CYCLES);
        assert_eq!(r.results["ia"], vec![Outcome::Err(Errno::ENOENT)]);
        assert_eq!(r.results["ic"], vec![Outcome::Err(Errno::ENOENT)]);
        // The kernel's own line is unchanged.
        assert!(r
            .kernel
            .log
            .iter()
            .any(|l| l.text == "a: Unknown symbol b_sym (err -2)"));
        let cyc = diags(&r, DiagKind::DependencyCycle);
        assert_eq!(cyc.len(), 2, "{policy}: {:?}", r.kernel.diagnostics);
        assert_eq!(cyc[0].chain, ["a", "b", "a"]);
        assert_eq!(cyc[1].chain, ["c", "c"]);
        assert!(
            cyc[1].message.contains("its own export c_sym"),
            "{}",
            cyc[1]
        );
        // No hint to "load b first": no load order works.
        assert!(
            r.kernel.diagnostics.iter().all(|d| !d
                .hint
                .as_deref()
                .unwrap_or("")
                .contains("first (or let modprobe do it)")),
            "{:?}",
            r.kernel.diagnostics
        );
    }
}

#[test]
fn a_plain_missing_exporter_still_says_load_it_first() {
    let r = run(
        "modkit",
        "[[module]]\nname = \"a\"\nimports = [\"b_sym\"]\n[[module]]\nname = \"b\"\nexports = [\"b_sym\"]\n[[event]]\nid = \"ia\"\ninsmod = \"a\"\n",
    );
    let u = diags(&r, DiagKind::UnknownSymbol);
    assert_eq!(u.len(), 1);
    assert!(u[0].hint.as_deref().unwrap().contains("load b first"));
    assert!(diags(&r, DiagKind::DependencyCycle).is_empty());
}

/// A pin that is never dropped: rmmod waits (modkit) and nothing wakes it.
const PIN_FOREVER: &str = r#"
[[module]]
name = "m"
[[event]]
id = "load"
insmod = "m"
[[event]]
id = "pin"
at = "1ms"
run = [{ get_module = "m" }]
[[event]]
id = "rm"
at = "2ms"
rmmod = "m"
wait = true
"#;

#[test]
fn stall_hints_are_true_for_the_policy() {
    let r = run("modkit", PIN_FOREVER);
    let s = diags(&r, DiagKind::Stalled);
    assert_eq!(s.len(), 1, "{:?}", r.kernel.diagnostics);
    let hint = s[0].hint.as_deref().unwrap();
    // Under modkit the stall is not a refused cycle: the hint must not claim modkit fails it.
    assert!(!hint.contains("under modkit"), "{hint}");
    assert!(hint.contains("timeout"), "{hint}");

    // The same stall kind under a Linux policy: a wait cycle the kernel hangs in.
    let r = run(
        "linux-6.1",
        r#"
[[module]]
name = "a"
[[module.init]]
step = "s"
run = [{ request_module = "b" }]
[[module]]
name = "b"
[[module.init]]
step = "s"
run = [{ request_module = "a" }]
[[event]]
id = "p"
modprobe = "a"
"#,
    );
    let s = diags(&r, DiagKind::Stalled);
    assert_eq!(s.len(), 1, "{:?}", r.kernel.diagnostics);
    let hint = s[0].hint.as_deref().unwrap();
    assert!(hint.contains("real kernel hangs"), "{hint}");
}

#[test]
fn a_timed_out_rmmod_wait_does_not_suggest_waiting() {
    let mut text = PIN_FOREVER.replace("wait = true", "wait = true\ntimeout = \"10ms\"");
    text.push('\n');
    let r = run("modkit", &text);
    assert_eq!(r.results["rm"], vec![Outcome::Err(Errno::EWOULDBLOCK)]);
    let u = diags(&r, DiagKind::InUse);
    assert_eq!(u.len(), 1, "{:?}", r.kernel.diagnostics);
    let hint = u[0].hint.as_deref().unwrap();
    assert!(!hint.contains("wait = true"), "{hint}");
    assert!(hint.contains("longer timeout"), "{hint}");
    // Without wait, the suggestion to wait stays.
    let r = run("modkit", &PIN_FOREVER.replace("wait = true", ""));
    let hint = diags(&r, DiagKind::InUse)[0].hint.clone().unwrap();
    assert!(hint.contains("wait = true"), "{hint}");
}

#[test]
fn unknown_names_for_insmod_and_rmmod_are_alike_under_every_policy() {
    for policy in ["modkit", "linux-6.1", "linux-4.19"] {
        let r = run(
            policy,
            "[[event]]\nid = \"i\"\ninsmod = \"ghost\"\n[[event]]\nid = \"r\"\nrmmod = \"ghost\"\n",
        );
        assert_eq!(r.results["i"], vec![Outcome::Err(Errno::ENOENT)]);
        assert_eq!(r.results["r"], vec![Outcome::Err(Errno::ENOENT)]);
    }
}

/// Under a Linux policy rmmod never waits for references (delete_module() since 3.13):
/// the `in_use` hint must not offer modkit's waiting rmmod as a fix (issue 9, item 7).
#[test]
fn the_in_use_hint_under_linux_does_not_offer_modkits_wait() {
    for policy in ["linux-6.1", "linux-4.19", "linux-6.12"] {
        for text in [
            PIN_FOREVER.replace("wait = true", ""),
            PIN_FOREVER.to_string(),
        ] {
            let r = run(policy, &text);
            assert_eq!(r.results["rm"], vec![Outcome::Err(Errno::EWOULDBLOCK)]);
            let u = diags(&r, DiagKind::InUse);
            assert_eq!(u.len(), 1, "{:?}", r.kernel.diagnostics);
            let hint = u[0].hint.as_deref().unwrap();
            assert!(!hint.contains("to wait for it"), "{policy}: {hint}");
            assert!(!hint.contains("longer timeout"), "{policy}: {hint}");
            assert!(hint.contains("close what pins m first"), "{policy}: {hint}");
        }
    }
}
