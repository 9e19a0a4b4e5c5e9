//! A long dependency chain: `modprobe` of its last module must load the whole chain.
//!
//! Ignored while it fails: `Modprobe::visit` (crates/modkit-core/src/modprobe.rs) recurses
//! once per level of the chain, so 50,000 levels overflow a 2 MiB test thread's stack and
//! abort the process (10,000 levels pass). Run with
//! `cargo test --release -p modkit-sim --test deep_chain -- --ignored`.

use modkit_core::{Outcome, Policy};
use modkit_sim::Sim;

#[test]
#[ignore = "stack overflow in Modprobe::visit on deep chains (reported)"]
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
