//! fw_devlink in the simulator: a consumer waits for its firmware-described supplier, a
//! cycle of three devices is relaxed per era, the link is managed once made, and a bad
//! `suppliers` name is a clear error.

mod common;
use common::*;
use modkit_sim::parse;

/// a → b → c → a, one builtin driver for all three.
const RING: &str = r#"
[[module]]
name = "d"
builtin = true
[[module.driver]]
bus = "platform"
match = ["of:*"]
probe = [{ sleep = "1ms" }]
[[device]]
name = "a"
bus = "platform"
modalias = "of:a"
suppliers = ["b"]
[[device]]
name = "b"
bus = "platform"
modalias = "of:b"
suppliers = ["c"]
[[device]]
name = "c"
bus = "platform"
modalias = "of:c"
suppliers = ["a"]
"#;

#[test]
fn a_ring_of_three_is_relaxed_once_per_era() {
    let r = run("linux-6.12", RING);
    assert_eq!(
        log(&r),
        vec!["platform a: Fixed dependency cycle(s) with /b".to_string()]
    );
    for d in ["a", "b", "c"] {
        assert_eq!(state(&r, d), "bound:d");
    }
    let r = run("linux-6.1", RING);
    assert_eq!(
        log(&r),
        vec!["platform c: Fixing up cyclic dependency with a".to_string()]
    );
    for d in ["a", "b", "c"] {
        assert_eq!(state(&r, d), "bound:d");
    }
    let r = run("modkit", RING);
    assert!(log(&r).is_empty());
    let d = &r.kernel.diagnostics;
    assert_eq!(d.len(), 1);
    assert!(d[0].message.contains("a → b → c → a"), "{}", d[0].message);
}

const CHAIN: &str = r#"
[[module]]
name = "cons"
[[module.driver]]
bus = "platform"
match = ["of:cons"]
probe = [{ sleep = "1ms" }]
[[module]]
name = "sup"
[[module.driver]]
bus = "platform"
match = ["of:sup"]
probe = [{ sleep = "1ms" }]
[[device]]
name = "cons"
bus = "platform"
modalias = "of:cons"
suppliers = ["sup"]
[[device]]
name = "sup"
bus = "platform"
modalias = "of:sup"
boot = false
[[event]]
id = "c"
at = "1s"
modprobe = "cons"
[[event]]
id = "add"
at = "2s"
add_device = "sup"
[[event]]
id = "s"
at = "3s"
modprobe = "sup"
[[event]]
id = "unbind"
at = "4s"
unbind = "sup"
"#;

#[test]
fn the_consumer_waits_then_follows_its_supplier() {
    // 6.12: deferred until the supplier binds at 3 s; unbinding the supplier unbinds it.
    let r = run("linux-6.12", CHAIN);
    assert_eq!(state(&r, "cons"), "unbound");
    assert_eq!(state(&r, "sup"), "unbound");
    // Before 5.13 the link is permissive: the consumer binds at 1 s and stays bound.
    let r = run("linux-5.10", CHAIN);
    assert_eq!(state(&r, "cons"), "bound:cons");
    // Without the unbind, 6.12 binds it after its supplier.
    let text = CHAIN.replace("unbind = \"sup\"", "add_device = \"nothing\"");
    let r = run("linux-6.12", &text);
    assert_eq!(state(&r, "cons"), "bound:cons");
}

#[test]
fn a_supplier_nobody_declares_is_an_error() {
    let e = parse(
        "t.toml",
        &RING.replace("suppliers = [\"c\"]", "suppliers = [\"zz\"]"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("`suppliers` names `zz`"), "{e}");
}
