//! Asynchronous probe in the simulator: probes run side by side from async workers, a
//! device added later is probed by one, the wait after init per era, and a bad
//! `probe_type` is a clear error.

mod common;
use common::*;
use modkit_sim::parse;

const BASE: &str = r#"
deferred_probe_timeout = -1
[[module]]
name = "adrv"
[[module.driver]]
bus = "platform"
match = ["of:x*"]
probe_type = "async"
probe = [{ sleep = "1s" }]
[[device]]
name = "x"
bus = "platform"
modalias = "of:x"
count = 3
[[device]]
name = "late"
bus = "platform"
modalias = "of:xlate"
boot = false
[[event]]
id = "load"
at = "0s"
modprobe = "adrv"
[[event]]
id = "add"
at = "1500ms"
add_device = "late"
"#;

#[test]
fn three_probes_side_by_side_and_a_late_device_from_a_worker() {
    let r = run("linux-6.12", BASE);
    // 3 × 1 s probes in parallel (done at ~1 s), then the late device's from 1.5 s to 2.5 s.
    assert!(r.end_time < 2_600_000_000, "{}", r.end_time);
    assert!(r.end_time >= 2_500_000_000, "{}", r.end_time);
    assert!(
        r.devices.iter().all(|d| d.state == "bound"),
        "{:?}",
        r.devices
    );
    let sync = run("linux-6.12", &BASE.replace("probe_type = \"async\"", ""));
    // Synchronous: the three probes one after another in modprobe (until 3 s).
    assert!(sync.end_time >= 3_000_000_000, "{}", sync.end_time);
}

#[test]
fn a_bad_probe_type_is_an_error() {
    let e = parse("t.toml", &BASE.replace("\"async\"", "\"later\""))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`probe_type` is \"sync\" or \"async\""), "{e}");
}
