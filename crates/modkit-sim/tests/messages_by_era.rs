//! Messages by era (issue 8, item 6) and module namespaces (item 2), end to end through the
//! simulator: what lands in the kernel log, in userspace stderr and in diagnostics.

use modkit_core::{DiagKind, Policy};
use modkit_sim::{parse, report, Sim};

fn run(text: &str, policy: &str) -> modkit_sim::Run {
    let sc = parse("t.toml", text).unwrap_or_else(|e| panic!("{e}"));
    let p: Policy = policy.parse().unwrap();
    Sim::new(&sc, p, 0).run().unwrap()
}

fn log(r: &modkit_sim::Run) -> Vec<String> {
    r.kernel.log.iter().map(|l| l.text.clone()).collect()
}

#[test]
fn modprobe_errors_go_to_userspace_stderr_not_the_kernel_log() {
    let text = "[[module]]\nname = \"a\"\nimports = [\"nothing\"]\n[[event]]\nid = \"e\"\nmodprobe = \"a\"\n";
    let r = run(text, "linux-6.1");
    let t = report::text("t", "linux-6.1".parse().unwrap(), 0, &r);
    let (log_part, rest) = t.split_once("-- userspace stderr").expect("stderr section");
    assert!(
        log_part.contains("a: Unknown symbol nothing (err -2)"),
        "{t}"
    );
    assert!(!log_part.contains("modprobe:"), "{t}");
    let stderr = rest.split("\n-- ").next().unwrap();
    assert!(
        stderr.contains("modprobe: ERROR: could not insert 'a'"),
        "{t}"
    );
}

#[test]
fn unknown_symbol_prints_err_0_before_4_18() {
    let text = "[[module]]\nname = \"a\"\nimports = [\"nothing\"]\n[[event]]\ninsmod = \"a\"\n";
    assert!(log(&run(text, "linux-4.17")).contains(&"a: Unknown symbol nothing (err 0)".into()));
    assert!(log(&run(text, "linux-4.18")).contains(&"a: Unknown symbol nothing (err -2)".into()));
    // A lookup that found the symbol but failed keeps its own error in every era.
    let ns = "[[module]]\nname = \"x\"\nexports = [{ name = \"s\", namespace = \"N\" }]\n[[module]]\nname = \"a\"\nimports = [\"s\"]\n[[event]]\nmodprobe = \"a\"\n";
    assert!(log(&run(ns, "linux-5.4")).contains(&"a: Unknown symbol s (err -22)".into()));
}

#[test]
fn no_symbol_version_is_printed_once_per_boot() {
    // pr_warn_once has one flag per call site: the second symbol stays silent.
    let text = r#"
[[module]]
name = "x"
exports = [{ name = "s1", crc = 1 }, { name = "s2", crc = 2 }, { name = "s3", crc = 3 }]
[[module]]
name = "a"
imports = [{ name = "s3", crc = 3 }, "s1", "s2"]
[[event]]
modprobe = "a"
"#;
    let l = log(&run(text, "linux-6.1"));
    let n: Vec<&String> = l
        .iter()
        .filter(|t| t.contains("no symbol version for"))
        .collect();
    assert_eq!(n, [&"a: no symbol version for s1".to_string()], "{l:?}");
}

#[test]
fn remarks_stay_out_of_the_linux_log() {
    let text = r#"
[[module]]
name = "a"
[[module.init]]
step = "s"
run = [{ stop = true }]
undo = true
[[event]]
modprobe = "a"
"#;
    for (policy, in_log) in [("linux-6.12", false), ("modkit", true)] {
        let r = run(text, policy);
        let logged = log(&r).iter().any(|t| t.contains("stopped early"));
        assert_eq!(logged, in_log, "{policy}");
        assert!(
            r.kernel
                .diagnostics
                .iter()
                .any(|d| d.kind == DiagKind::Remark
                    && d.message.contains("stopped early but has an undo")),
            "{policy}"
        );
    }
}

#[test]
fn module_namespaces_by_version() {
    let text = r#"
[[module]]
name = "x"
exports = [{ name = "s", namespace = "module:kvm,ns-user*" }]
[[module]]
name = "ns_user_b"
imports = ["s"]
[[module]]
name = "kvm"
imports = ["s"]
import_namespaces = ["module:kvm,ns-user*"]
[[event]]
id = "b"
modprobe = "ns_user_b"
[[event]]
id = "k"
modprobe = "kvm"
"#;
    let r = run(text, "linux-6.16");
    assert_eq!(r.results["b"], [modkit_core::Outcome::Ok]);
    assert_eq!(
        r.results["k"],
        [modkit_core::Outcome::Err(modkit_core::Errno::EPERM)]
    );
    assert!(log(&r)
        .contains(&"kvm: module tries to import module namespace: module:kvm,ns-user*".into()));
    let r = run(text, "linux-6.15");
    assert_eq!(
        r.results["b"],
        [modkit_core::Outcome::Err(modkit_core::Errno::EINVAL)]
    );
    assert_eq!(r.results["k"], [modkit_core::Outcome::Ok]);
}
