//! `symbol_get` / `symbol_put` (crates/modkit-core/src/symget.rs): GPL-only from 6.6 and
//! its stable backports, NULL (ENOENT) for an owner that is still coming, a reference held
//! until the put.

use modkit_core::{Errno, Outcome, Policy};
use modkit_sim::Sim;

const TEXT: &str = r#"
[[module]]
name = "prov"
exports = [{ name = "p_gpl", gpl_only = true }, "p_plain"]
[[module.init]]
step = "slow"
run = [{ sleep = "1s" }]

[[module]]
name = "early"
[[module.init]]
step = "get"
run = [{ symbol_get = "p_gpl" }]

[[module]]
name = "user"
[[module.init]]
step = "get"
run = [{ symbol_get = "p_gpl" }]
undo = [{ symbol_put = "p_gpl" }]
[[module.init]]
step = "get_plain"
run = [{ symbol_get = "p_plain" }, { symbol_put = "p_plain" }]

[[module]]
name = "nobody"
[[module.init]]
step = "get"
run = [{ symbol_get = "no_such_symbol" }]

[[event]]
id = "prov"
insmod = "prov"

[[event]]
id = "early"
at = "500ms"
insmod = "early"

[[event]]
id = "user"
at = "2s"
insmod = "user"

[[event]]
id = "nobody"
at = "3s"
insmod = "nobody"

[[event]]
id = "rm_user"
at = "4s"
rmmod = "user"
"#;

fn run(policy: &str) -> modkit_sim::Run {
    let sc = modkit_sim::parse("symbol_get.toml", TEXT).expect("valid");
    Sim::new(&sc, policy.parse::<Policy>().unwrap(), 0)
        .run()
        .expect("run")
}

#[test]
fn a_coming_owner_gives_null() {
    for p in ["linux-6.5", "linux-6.6", "modkit"] {
        let r = run(p);
        assert_eq!(r.results["early"], [Outcome::Err(Errno::ENOENT)], "{p}");
        assert_eq!(r.results["nobody"], [Outcome::Err(Errno::ENOENT)], "{p}");
    }
}

#[test]
fn non_gpl_symbols_fail_from_6_6_and_the_backports() {
    let line = "failing symbol_get of non-GPLONLY symbol p_plain.";
    for (p, refuses) in [
        ("linux-4.4", false),
        ("linux-6.5", false),
        ("linux-6.5.3", true),
        ("linux-6.1.52", false),
        ("linux-6.1.53", true),
        ("linux-6.6", true),
        ("modkit", true),
    ] {
        let r = run(p);
        let logged = r.kernel.log.iter().any(|l| l.text == line);
        assert_eq!(logged, refuses, "{p}");
        let want = if refuses {
            Outcome::Err(Errno::ENOENT)
        } else {
            Outcome::Ok
        };
        assert_eq!(r.results["user"], [want], "{p}");
        // The failed init's undo put p_gpl back; a live user holds it until rmmod's exit.
        assert_eq!(r.results["rm_user"].len(), 1, "{p}");
        let prov = r.kernel.db.id("prov").unwrap();
        let refs = r.kernel.instances[prov].as_ref().unwrap().refcount;
        assert_eq!(refs, 0, "{p}: every reference was put");
    }
}
