//! modprobe leaves out the dependencies of a module that is LIVE with a closed closure
//! (`ModuleDb::closed`); these tests check that the result is the one kmod's full probe
//! list gives, including when such a module is unloaded while the modprobe is in flight.

use modkit_core::{Outcome, Policy};
use modkit_sim::Sim;

const SCENARIO: &str = r#"
[[module]]
name = "d"
exports = ["d_sym"]

[[module]]
name = "x"
imports = ["d_sym"]
exports = ["x_sym"]

[[module]]
name = "a"
exports = ["a_sym"]
[[module.init]]
step = "slow"
run = [{ sleep = "10ms" }]

[[module]]
name = "y"
imports = ["a_sym", "x_sym"]

[[event]]
id = "x"
modprobe = "x"

[[event]]
id = "y"
at = "1ms"
modprobe = "y"

[[event]]
id = "rmmod_x"
at = "2ms"
rmmod = "x"

[[event]]
id = "rmmod_d"
at = "3ms"
rmmod = "d"
"#;

/// x (and so d) is live when `modprobe y` builds its list; both are unloaded while a's init
/// runs; modprobe must then load d and x again before y, as kmod's list [a, d, x, y] does.
#[test]
fn pruned_module_unloaded_mid_modprobe_is_reloaded_with_its_closure() {
    let sc = modkit_sim::parse("prune.toml", SCENARIO).expect("valid");
    for p in ["modkit", "linux-5.15", "linux-6.6"] {
        let run = Sim::new(&sc, p.parse::<Policy>().expect("policy"), 0)
            .run()
            .expect("run");
        let k = &run.kernel;
        assert!(k.violations.is_empty(), "{p}: {:?}", k.violations);
        for ev in ["x", "y", "rmmod_x", "rmmod_d"] {
            assert_eq!(run.results[ev], [Outcome::Ok], "{p}: event {ev}");
        }
        for m in ["d", "x", "a", "y"] {
            let id = k.db.id(m).expect("module");
            assert_eq!(k.state(id).map(|s| s.name()), Some("live"), "{p}: {m}");
        }
        assert_eq!(k.init_calls[k.db.id("d").expect("d")], 2, "{p}");
        assert_eq!(k.init_calls[k.db.id("x").expect("x")], 2, "{p}");
    }
}

/// A `depends` override (a stale modules.dep) keeps the closure open: a live module's listed
/// dependencies are still visited and loaded, as kmod would.
#[test]
fn stale_depends_keep_the_closure_open() {
    let sc = modkit_sim::parse(
        "stale.toml",
        r#"
[[module]]
name = "extra"

[[module]]
name = "x"
depends = ["extra"]

[[module]]
name = "y"
depends = ["x"]

[[event]]
id = "insmod_x"
insmod = "x"

[[event]]
id = "y"
at = "1ms"
modprobe = "y"
"#,
    )
    .expect("valid");
    let run = Sim::new(&sc, Policy::Modkit, 0).run().expect("run");
    let k = &run.kernel;
    assert_eq!(run.results["y"], [Outcome::Ok]);
    let extra = k.db.id("extra").expect("extra");
    assert_eq!(
        k.init_calls[extra], 1,
        "modprobe y loads x's listed dependency"
    );
}
