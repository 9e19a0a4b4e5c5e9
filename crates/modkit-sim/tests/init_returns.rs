//! What `do_init_module()` makes of an init's return value, and request_module with
//! autoloading disabled, on both sides of each change (docs/loader-versions.md).

use modkit_core::{Errno, ModState, Outcome};
use modkit_sim::{parse, Run, Sim};

fn run(policy: &str, text: &str) -> Run {
    let sc = parse("t.toml", text).unwrap_or_else(|e| panic!("{e}"));
    Sim::new(&sc, policy.parse().unwrap(), 0).run().unwrap()
}

fn state(r: &Run, name: &str) -> Option<ModState> {
    r.kernel.state(r.kernel.db.id(name).expect("module exists"))
}

fn log(r: &Run) -> Vec<&str> {
    r.kernel.log.iter().map(|l| l.text.as_str()).collect()
}

const POSITIVE: &str = r#"
[[module]]
name = "ret_one"
[[module.init]]
step = "probe"
run = [{ ret = 1 }]
[[module.init]]
step = "never_reached"
run = [{ fail = "ENODEV" }]

[[event]]
id = "load"
insmod = "ret_one"
"#;

#[test]
fn a_positive_init_return_goes_live_with_the_warning_of_its_era() {
    for policy in [
        "linux-4.4",
        "linux-6.1.176",
        "linux-6.12.117",
        "linux-7.0.9",
    ] {
        let r = run(policy, POSITIVE);
        assert_eq!(r.results["load"], [Outcome::Ok], "{policy}");
        assert_eq!(state(&r, "ret_one"), Some(ModState::Live), "{policy}");
        assert_eq!(
            log(&r),
            [
                "do_init_module: 'ret_one'->init suspiciously returned 1, it should follow 0/-E convention",
                "do_init_module: loading module anyway...",
                "Call Trace:",
            ],
            "{policy}"
        );
    }
    for policy in ["linux-7.1", "linux-7.2.13", "modkit"] {
        let r = run(policy, POSITIVE);
        assert_eq!(r.results["load"], [Outcome::Ok], "{policy}");
        assert_eq!(state(&r, "ret_one"), Some(ModState::Live), "{policy}");
        assert_eq!(
            log(&r),
            ["ret_one: init suspiciously returned 1, it should follow 0/-E convention"],
            "{policy}"
        );
    }
}

const EEXIST: &str = r#"
[[module]]
name = "init_eexist"
[[module.init]]
step = "register"
run = [{ fail = "EEXIST" }]

[[event]]
id = "insmod"
insmod = "init_eexist"

[[event]]
id = "modprobe"
at = "10ms"
modprobe = "init_eexist"

[[event]]
id = "request"
at = "20ms"
request_module = "init_eexist"
"#;

#[test]
fn an_init_failing_with_eexist_reads_as_loaded_until_7_1() {
    for policy in [
        "linux-4.4",
        "linux-6.1.176",
        "linux-6.12.117",
        "linux-7.0",
        "linux-7.0.9",
    ] {
        let r = run(policy, EEXIST);
        // finit_module() fails with EEXIST, which modprobe takes for "already loaded":
        // success, with the module absent. An insmod event is the raw system call: EEXIST.
        assert_eq!(
            r.results["insmod"],
            [Outcome::Err(Errno::EEXIST)],
            "{policy}"
        );
        assert_eq!(r.results["modprobe"], [Outcome::Ok], "{policy}");
        assert_eq!(r.results["request"], [Outcome::Ok], "{policy}");
        assert_eq!(state(&r, "init_eexist"), None, "{policy}");
    }
    for policy in ["linux-7.1", "linux-7.2", "linux-7.2.13"] {
        let r = run(policy, EEXIST);
        assert_eq!(
            r.results["insmod"],
            [Outcome::Err(Errno::EBUSY)],
            "{policy}"
        );
        assert_eq!(
            r.results["modprobe"],
            [Outcome::Err(Errno::EBUSY)],
            "{policy}"
        );
        // request_module returns modprobe's wait status: exit 1.
        assert_eq!(r.results["request"], [Outcome::Status(256)], "{policy}");
        assert_eq!(state(&r, "init_eexist"), None, "{policy}");
        // The kernel converts silently; modprobe words the failure.
        assert_eq!(
            log(&r),
            ["modprobe: ERROR: could not insert 'init_eexist': Device or resource busy"],
            "{policy}"
        );
    }
}

const AUTOLOAD_OFF: &str = r#"
modprobe = ""

[[module]]
name = "wanted"

[[event]]
id = "request"
request_module = "wanted"

[[event]]
id = "restore"
at = "10ms"
set = { modprobe = "/sbin/modprobe" }

[[event]]
id = "again"
at = "20ms"
request_module = "wanted"
"#;

#[test]
fn an_empty_modprobe_path_gives_0_then_enoent() {
    let zero = [
        "linux-4.4.219",
        "linux-4.14.176",
        "linux-4.19.115",
        "linux-5.4.32",
        "linux-5.6",
        "linux-5.6.4",
    ];
    let enoent = [
        "linux-4.4.220",
        "linux-4.14.177",
        "linux-4.19.116",
        "linux-5.4.33",
        "linux-5.6.5",
        "linux-5.7",
        "linux-6.1.176",
        "linux-7.2.13",
        "modkit",
    ];
    for policy in zero.iter().chain(&enoent) {
        let r = run(policy, AUTOLOAD_OFF);
        let want = if zero.contains(policy) {
            Outcome::Ok
        } else {
            Outcome::Err(Errno::ENOENT)
        };
        assert_eq!(r.results["request"], [want], "{policy}");
        assert_eq!(r.results["again"], [Outcome::Ok], "{policy}");
        assert_eq!(state(&r, "wanted"), Some(ModState::Live), "{policy}");
    }
}

#[test]
fn ret_is_checked_where_it_is_written() {
    let bad = |run_line: &str, want: &str| {
        let text = format!(
            "[[module]]\nname = \"a\"\n[[module.init]]\nstep = \"s\"\nrun = [{run_line}]\n"
        );
        let e = parse("t.toml", &text).unwrap_err().to_string();
        assert!(e.contains(want), "{run_line}: {e}");
    };
    bad("{ ret = 0 }", "not a positive init return value");
    bad("{ ret = -5 }", "write `fail = \"ENAME\"` for an error");
    bad("{ ret = 2147483648 }", "1 to 2147483647");
    bad(
        "{ ret = \"1\" }",
        "invalid type: string \"1\", expected i64",
    );
    bad(
        "{ spawn = [{ ret = 1 }] }",
        "belongs only in an init step's `run`",
    );
    let ev = "[[module]]\nname = \"a\"\n[[event]]\nrun = [{ ret = 1 }]\n";
    let e = parse("t.toml", ev).unwrap_err().to_string();
    assert!(e.contains("belongs only in an init step's `run`"), "{e}");
    let ok =
        "[[module]]\nname = \"a\"\n[[module.init]]\nstep = \"s\"\nrun = [{ ret = 2147483647 }]\n";
    assert!(parse("t.toml", ok).is_ok());
}
