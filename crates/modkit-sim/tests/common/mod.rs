//! Helpers shared by the device tests (devices.rs, fw_devlink.rs, async_probe.rs): run a
//! scenario text under a policy, read a device's state word, the log, a parse error.
#![allow(dead_code)] // each test file uses its own subset

use modkit_core::Policy;
use modkit_sim::{parse, Run, Sim};

/// Runs `text` under `policy` with seed 0; the run must break no invariant.
pub fn run(policy: &str, text: &str) -> Run {
    let sc = parse("t.toml", text).unwrap_or_else(|e| panic!("{e}"));
    let p: Policy = policy.parse().unwrap();
    let r = Sim::new(&sc, p, 0).run().unwrap();
    assert!(r.kernel.violations.is_empty(), "{:?}", r.kernel.violations);
    r
}

/// Device `dev`'s state as expectations write it (`bound:DRIVER`, `deferred`, …).
pub fn state(r: &Run, dev: &str) -> String {
    let row = r.devices.iter().find(|d| d.device == dev).expect("device");
    match (&row.driver, row.state) {
        (Some(d), "bound") => format!("bound:{d}"),
        (_, s) => s.to_string(),
    }
}

/// The kernel log's lines.
pub fn log(r: &Run) -> Vec<String> {
    r.kernel.log.iter().map(|l| l.text.clone()).collect()
}

/// The parse error of `text`.
pub fn err(text: &str) -> String {
    parse("t.toml", text).unwrap_err().to_string()
}
