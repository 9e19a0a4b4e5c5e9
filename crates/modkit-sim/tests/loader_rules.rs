//! The loader's rules one by one: symbols (licence, namespace, CRC), unload, request limits.

use modkit_core::{DiagKind, Errno, Outcome};
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

fn result(r: &Run, id: &str) -> Outcome {
    r.results[id][0]
}

fn has_log(r: &Run, s: &str) -> bool {
    r.kernel.log.iter().any(|l| l.text.contains(s))
}

const EXPORTER: &str = r#"
[[module]]
name = "core"
exports = [{ name = "gpl_sym", gpl_only = true }, { name = "ns_sym", namespace = "CORE_NS" }, { name = "crc_sym", crc = 0x11 }]
"#;

#[test]
fn gpl_only_symbols_are_hidden_from_proprietary_modules() {
    let r = run("linux-6.1", &format!("{EXPORTER}\n[[module]]\nname = \"blob\"\nlicense = \"Proprietary\"\nimports = [\"gpl_sym\"]\n[[event]]\nid = \"e\"\nmodprobe = \"blob\"\n"));
    assert_eq!(result(&r, "e"), Outcome::Err(Errno::ENOENT));
    assert!(has_log(&r, "blob: Unknown symbol gpl_sym (err -2)"));
    assert!(r
        .kernel
        .diagnostics
        .iter()
        .any(|d| d.kind == DiagKind::GplOnly));
}

#[test]
fn namespaces_must_be_imported_from_5_4() {
    let body = format!("{EXPORTER}\n[[module]]\nname = \"user\"\nimports = [\"ns_sym\"]\n[[event]]\nid = \"e\"\nmodprobe = \"user\"\n");
    let r = run("linux-6.1", &body);
    assert_eq!(result(&r, "e"), Outcome::Err(Errno::EINVAL));
    assert!(has_log(
        &r,
        "user: module uses symbol (ns_sym) from namespace CORE_NS, but does not import it."
    ));
    assert!(has_log(&r, "user: Unknown symbol ns_sym (err -22)"));
    let r = run("linux-5.3", &body);
    assert_eq!(result(&r, "e"), Outcome::Ok, "no namespaces before 5.4");
    let ok = body.replace(
        "imports = [\"ns_sym\"]",
        "imports = [\"ns_sym\"]\nimport_namespaces = [\"CORE_NS\"]",
    );
    assert_eq!(result(&run("linux-6.1", &ok), "e"), Outcome::Ok);
}

#[test]
fn crc_mismatch_is_refused_like_modversions() {
    let r = run("linux-6.1", &format!("{EXPORTER}\n[[module]]\nname = \"user\"\nimports = [{{ name = \"crc_sym\", crc = 0x22 }}]\n[[event]]\nid = \"e\"\nmodprobe = \"user\"\n"));
    assert_eq!(result(&r, "e"), Outcome::Err(Errno::EINVAL));
    assert!(has_log(
        &r,
        "user: disagrees about version of symbol crc_sym"
    ));
    assert!(has_log(&r, "user: Unknown symbol crc_sym (err -22)"));
    assert!(r
        .kernel
        .diagnostics
        .iter()
        .any(|d| d.kind == DiagKind::VersionMismatch));
}

#[test]
fn unload_rules() {
    let text = r#"
[[module]]
name = "base"
exports = ["b"]
[[module]]
name = "user"
imports = ["b"]
[[module]]
name = "noexit"
has_exit = false
[[event]]
id = "load"
modprobe = "user"
[[event]]
id = "load2"
modprobe = "noexit"
[[event]]
id = "absent"
at = "1s"
rmmod = "nothere"
[[event]]
id = "held"
at = "1s"
rmmod = "base"
[[event]]
id = "noexit"
at = "1s"
rmmod = "noexit"
[[event]]
id = "forced"
at = "2s"
rmmod = "noexit"
force = true
[[event]]
id = "user"
at = "2s"
rmmod = "user"
[[event]]
id = "base"
at = "3s"
rmmod = "base"
"#;
    for p in ["linux-6.1", "modkit"] {
        let r = run(p, text);
        assert_eq!(result(&r, "load"), Outcome::Ok);
        assert_eq!(result(&r, "absent"), Outcome::Err(Errno::ENOENT));
        assert_eq!(result(&r, "held"), Outcome::Err(Errno::EWOULDBLOCK));
        assert_eq!(result(&r, "noexit"), Outcome::Err(Errno::EBUSY));
        assert_eq!(result(&r, "forced"), Outcome::Ok);
        assert_eq!(result(&r, "user"), Outcome::Ok);
        assert_eq!(result(&r, "base"), Outcome::Ok);
        assert!(r
            .kernel
            .diagnostics
            .iter()
            .any(|d| d.kind == DiagKind::InUse && d.message.contains("used by user")));
    }
}

#[test]
fn refcounts_and_holders_as_lsmod_shows_them() {
    let r = run(
        "linux-6.1",
        r#"
[[module]]
name = "base"
exports = ["b1", "b2"]
[[module]]
name = "u1"
imports = ["b1", "b2"]
[[module]]
name = "u2"
imports = ["b2"]
[[event]]
modprobe = "u1"
[[event]]
modprobe = "u2"
"#,
    );
    let base = r.kernel.db.id("base").unwrap();
    let inst = r.kernel.instances[base].as_ref().unwrap();
    assert_eq!(inst.refcount, 2, "one reference per user, not per symbol");
    assert_eq!(r.kernel.holders(base), vec!["u1", "u2"]);
}

#[test]
fn request_module_name_limit_and_paths() {
    let long = "x".repeat(56);
    let r = run("linux-6.6", &format!("[[event]]\nid = \"long\"\nrequest_module = \"{long}\"\n[[event]]\nid = \"short\"\nrequest_module = \"{}\"\n", &long[..55]));
    assert_eq!(result(&r, "long"), Outcome::Err(Errno::ENAMETOOLONG));
    assert_eq!(result(&r, "short"), Outcome::Status(256));
    let r = run(
        "linux-6.6",
        "modprobe = \"/nonexistent\"\n[[event]]\nid = \"e\"\nrequest_module = \"a\"\n",
    );
    assert_eq!(result(&r, "e"), Outcome::Err(Errno::ENOENT));
}

#[test]
fn semaphore_era_times_out_after_5s_with_the_kernel_message() {
    // 60 requests for a module whose init takes 10 s: 50 slots busy, 10 wait 5 s then ETIME.
    let r = run(
        "linux-6.6",
        r#"
[[module]]
name = "slow"
[[module.init]]
step = "s"
run = [{ sleep = "10s" }]
[[event]]
id = "e"
threads = 60
request_module = "slow"
"#,
    );
    let got = &r.results["e"];
    assert_eq!(
        got.iter()
            .filter(|o| **o == Outcome::Err(Errno::ETIME))
            .count(),
        10
    );
    assert_eq!(got.iter().filter(|o| o.is_ok()).count(), 50);
    assert!(has_log(&r, "request_module: modprobe slow cannot be processed, kmod busy with 50 threads for more than 5 seconds now"));
    // modkit merges identical requests: one modprobe, one slot, everyone ok.
    let r = run(
        "modkit",
        r#"
[[module]]
name = "slow"
[[module.init]]
step = "s"
run = [{ sleep = "10s" }]
[[event]]
id = "e"
threads = 60
request_module = "slow"
"#,
    );
    assert!(r.results["e"].iter().all(|o| o.is_ok()));
    assert_eq!(r.kernel.kmod.peak, 1);
}

#[test]
fn going_module_is_waited_for_then_loaded_once_under_modkit() {
    let text = r#"
[[module]]
name = "m"
[[module.init]]
step = "s"
undo = [{ sleep = "1s" }]
[[event]]
id = "load"
modprobe = "m"
[[event]]
id = "unload"
at = "1s"
rmmod = "m"
[[event]]
id = "reload"
at = "1.5s"
threads = 3
modprobe = "m"
"#;
    let r = run("modkit", text);
    assert!(r.results["reload"].iter().all(|o| o.is_ok()));
    assert_eq!(r.kernel.init_calls[0], 2);
    // Era A answers EEXIST for a GOING module, which modprobe counts as success, and the
    // module ends up absent: the edac_mce_amd bug 6e6de3dee51a fixed.
    let r = run("linux-5.2", text);
    assert!(r.results["reload"].iter().all(|o| o.is_ok()));
    assert!(r.kernel.instances[0].is_none());
    // Era C: EBUSY.
    let r = run("linux-6.2", text);
    assert!(r.results["reload"]
        .iter()
        .all(|o| *o == Outcome::Err(Errno::EBUSY)));
}

#[test]
fn a_failed_init_with_a_pin_taken_while_coming() {
    let text = r#"
[[module]]
name = "a"
[[module.init]]
step = "s"
run = [{ sleep = "10ms" }, { fail = "ENOMEM" }]
[[event]]
id = "load"
modprobe = "a"
[[event]]
id = "pin"
at = "5ms"
run = [{ get_module = "a" }]
[[event]]
id = "reload"
at = "1s"
modprobe = "a"
[[event]]
id = "put"
at = "2s"
run = [{ put_module = "a" }]
"#;
    // Linux frees the module under the pin; the late module_put touches freed memory.
    let r = run("linux-6.6", text);
    assert_eq!(result(&r, "load"), Outcome::Err(Errno::ENOMEM));
    let kinds: Vec<DiagKind> = r.kernel.diagnostics.iter().map(|d| d.kind).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == DiagKind::FreedWhilePinned)
            .count(),
        2,
        "{kinds:?}"
    );
    // modkit holds the failed module (GOING) until the pin drops, then frees it.
    let r = run("modkit", text);
    assert_eq!(result(&r, "load"), Outcome::Err(Errno::ENOMEM));
    assert!(r
        .kernel
        .diagnostics
        .iter()
        .all(|d| d.kind != DiagKind::FreedWhilePinned));
    assert_eq!(result(&r, "put"), Outcome::Ok);
    assert!(r.kernel.instances[0].is_none());
    // The reload at 1 s found the failed module still GOING (pinned), waited for it to go
    // at 2 s, then made its own attempt, which failed 10 ms later.
    assert_eq!(result(&r, "reload"), Outcome::Err(Errno::ENOMEM));
    assert_eq!(r.kernel.init_calls[0], 2);
    assert_eq!(r.end_time, 2_010_000_000);
}
