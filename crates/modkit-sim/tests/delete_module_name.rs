//! delete_module(2) of a name longer than 55 bytes (crates/modkit-core/src/unload.rs,
//! `delete_module_name`): truncated and looked up before 6.17 and its backports, ENOENT
//! after.

use modkit_core::{Errno, Outcome, Policy};
use modkit_sim::Sim;

#[test]
fn long_names_unload_the_truncated_module_only_before_the_change() {
    let m55 = "m".repeat(55);
    let text = format!(
        "[[module]]\nname = \"{m55}\"\n[[event]]\nid = \"load\"\ninsmod = \"{m55}\"\n\
         [[event]]\nid = \"rm\"\nat = \"1s\"\nrmmod = \"{m55}xyz\"\n"
    );
    let sc = modkit_sim::parse("long.toml", &text).expect("valid");
    for (pol, want) in [
        ("linux-4.4", Outcome::Ok),
        ("linux-6.1.148", Outcome::Ok),
        ("linux-6.1.149", Outcome::Err(Errno::ENOENT)),
        ("linux-6.12.42", Outcome::Ok),
        ("linux-6.12.43", Outcome::Err(Errno::ENOENT)),
        ("linux-6.16.1", Outcome::Ok),
        ("linux-6.17", Outcome::Err(Errno::ENOENT)),
        ("modkit", Outcome::Err(Errno::ENOENT)),
    ] {
        let run = Sim::new(&sc, pol.parse::<Policy>().unwrap(), 0)
            .run()
            .expect("run");
        assert_eq!(run.results["load"], [Outcome::Ok], "{pol}");
        assert_eq!(run.results["rm"], [want], "{pol}");
        let id = run.kernel.db.id(&m55).unwrap();
        assert_eq!(
            run.kernel.instances[id].is_some(),
            want != Outcome::Ok,
            "{pol}"
        );
    }
}
