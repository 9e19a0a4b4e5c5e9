//! A long dependency chain: `modprobe` of its last module must load the whole chain.
//! (The probe list used to be built recursively, one stack frame per level, and 50,000
//! levels overflowed a 2 MiB test thread's stack; it is iterative now.)

use modkit_core::{Outcome, Policy};
use modkit_sim::Sim;

#[test]
fn modprobe_of_a_50000_module_chain() {
    const N: usize = 50_000;
    let mut text = String::from("[[module]]\nname = \"m0\"\nexports = [\"s0\"]\n");
    for i in 1..N {
        text += &format!(
            "[[module]]\nname = \"m{i}\"\nexports = [\"s{i}\"]\nimports = [\"s{}\"]\n",
            i - 1
        );
    }
    text += &format!("[[event]]\nid = \"top\"\nmodprobe = \"m{}\"\n", N - 1);
    let sc = modkit_sim::parse("chain.toml", &text).expect("valid");
    let run = Sim::new(&sc, Policy::Modkit, 0).run().expect("run");
    assert_eq!(run.results["top"], [Outcome::Ok]);
    assert!(run.kernel.instances.iter().all(|i| i.is_some()));
}
