//! `use_devres` and unbind with users in flight on the host driver (seed 004's hot-unplug
//! deadlock, `examples/scenarios/device-policy.toml` story 3): the host follows the
//! simulator's rules on the virtual clock (crates/modkit/src/unbind.rs). Under `modkit`:
//! revocation first (a late user gets ENXIO), the drain of the users in flight, the remove
//! on a thread of its own bounded at 5 s, the `stalled` diagnostic naming device, driver
//! and callback, the abandoned callback holding its module (rmmod: EWOULDBLOCK). Under
//! `linux-X.Y`: the unbounded wait (the run ends stalled, the device `removing`) and the
//! remark for resources freed under a user. Also the host's device history (`--svg`).

use modkit_core::{DiagKind, Errno, Outcome, Policy};
use modkit_hostdriver::run_scenario;
use modkit_sim::Sim;

mod common;
use common::{device_summary, judge_by, Verdict};

/// Story 3 of device-policy.toml, alone.
const STORY3: &str = r#"
[[module]]
name = "gpu"
[[module.driver]]
bus = "pci"
match = ["pci:v000010DEd*sv*sd*bc03sc*i*"]
probe = [{ devm = "drm:card0" }]
remove = [{ wait_for = "gpu_idle" }]

[[module]]
name = "dsp"
[[module.driver]]
bus = "pci"
match = ["pci:v00008086d*sv*sd*bc04sc01i*"]
probe = [{ devm = "misc:dsp" }]
remove = [{ sleep = "1ms" }]

[[device]]
name = "0000:01:00.0"
bus = "pci"
modalias = "pci:v000010DEd00002684sv000010DEsd000016F3bc03sc00i00"

[[device]]
name = "0000:00:1f.3"
bus = "pci"
modalias = "pci:v00008086d0000A348sv00001028sd0000087Cbc04sc01i00"

[[event]]
id = "gpu_load"
modprobe = "gpu"

[[event]]
id = "dsp_load"
modprobe = "dsp"

[[event]]
id = "ioctl"
at = "4s"
run = [{ use_devres = "drm:card0", for = "2s" }]

[[event]]
id = "dsp_ioctl"
at = "4s"
run = [{ use_devres = "misc:dsp", for = "2s" }]

[[event]]
id = "unbind"
at = "5s"
unbind = "0000:01:00.0"

[[event]]
id = "dsp_unbind"
at = "5s"
unbind = "0000:00:1f.3"

[[event]]
id = "ioctl_late"
at = "5500ms"
run = [{ use_devres = "drm:card0", for = "10ms" }]

[[event]]
id = "rmmod_gpu"
at = "12s"
rmmod = "gpu"
"#;

fn result(r: &modkit_sim::Run, id: &str) -> Option<Outcome> {
    r.results.get(id).and_then(|v| v.first().copied())
}

fn state(r: &modkit_sim::Run, dev: &str) -> String {
    let row = r.devices.iter().find(|d| d.device == dev).unwrap();
    format!("{} {}", row.state, row.driver.as_deref().unwrap_or("-"))
}

fn agree(sc: &modkit_sim::scenario::Scenario, p: Policy, host: &modkit_sim::Run) {
    if let Verdict::Diverged { sims, host } = judge_by(sc, p, host, device_summary) {
        panic!(
            "{p}: host\n{host}\n--- simulator\n{}",
            sims.into_iter().collect::<Vec<_>>().join("\n  or\n")
        );
    }
}

#[test]
fn story3_runs_on_the_host_and_agrees_under_every_policy() {
    let sc = modkit_sim::parse("story3.toml", STORY3).unwrap();
    for p in ["modkit", "linux-6.1", "linux-5.10", "linux-4.4"] {
        let p: Policy = p.parse().unwrap();
        let host = run_scenario(&sc, p, 0).unwrap();
        assert!(
            host.kernel.violations.is_empty(),
            "{p}: {:?}",
            host.kernel.violations
        );
        agree(&sc, p, &host);
    }
}

#[test]
fn under_modkit_the_unbind_revokes_drains_and_abandons_the_remove() {
    let sc = modkit_sim::parse("story3.toml", STORY3).unwrap();
    let host = run_scenario(&sc, Policy::Modkit, 0).unwrap();
    assert_eq!(result(&host, "ioctl"), Some(Outcome::Ok));
    assert_eq!(
        result(&host, "ioctl_late"),
        Some(Outcome::Err(Errno::ENXIO))
    );
    assert_eq!(result(&host, "unbind"), Some(Outcome::Ok));
    assert_eq!(result(&host, "dsp_unbind"), Some(Outcome::Ok));
    assert_eq!(
        result(&host, "rmmod_gpu"),
        Some(Outcome::Err(Errno::EWOULDBLOCK))
    );
    assert_eq!(state(&host, "0000:01:00.0"), "unbound -");
    let stall = host
        .kernel
        .diagnostics
        .iter()
        .find(|d| d.kind == DiagKind::Stalled)
        .expect("a stalled diagnostic");
    assert_eq!(
        stall.time, 11_000_000_000,
        "5 s drain to 6 s, then a 5 s bound"
    );
    assert!(
        stall.message.contains(
            "unbind of 0000:01:00.0: the remove callback of driver gpu has not returned after 5 s (it waits: wait_for_completion(gpu_idle)); modkit abandons it"
        ),
        "{}",
        stall.message
    );
    let gpu = host.kernel.db.id("gpu").unwrap();
    assert_eq!(host.kernel.instances[gpu].as_ref().unwrap().refcount, 1);
    // The run itself did not hang: no stall report of the run's own.
    assert_eq!(
        host.kernel
            .diagnostics
            .iter()
            .filter(|d| d.kind == DiagKind::Stalled)
            .count(),
        1
    );
    assert_eq!(host.end_time, 12_000_000_000);
}

#[test]
fn under_linux_the_remove_is_waited_for_and_resources_freed_under_a_user() {
    let sc = modkit_sim::parse("story3.toml", STORY3).unwrap();
    let host = run_scenario(&sc, "linux-6.1".parse().unwrap(), 0).unwrap();
    assert_eq!(result(&host, "ioctl_late"), Some(Outcome::Ok));
    assert_eq!(result(&host, "unbind"), None, "the unbind never returns");
    assert_eq!(result(&host, "dsp_unbind"), Some(Outcome::Ok));
    assert_eq!(state(&host, "0000:01:00.0"), "removing gpu");
    assert_eq!(state(&host, "0000:00:1f.3"), "unbound -");
    let d = &host.kernel.diagnostics;
    assert!(d.iter().any(|d| d.kind == DiagKind::Stalled
        && d.chain
            .iter()
            .any(|c| c.contains("wait_for_completion(gpu_idle)"))));
    let remark = d
        .iter()
        .find(|d| d.kind == DiagKind::Remark)
        .expect("the use-after-free remark");
    assert!(
        remark
            .message
            .starts_with("0000:00:1f.3: devres_release_all() frees its managed resources while 1 user(s) are in flight"),
        "{}",
        remark.message
    );
    assert_eq!(remark.time, 5_001_000_000);
}

/// A remove that returns: the unbind waits for the ioctl (until 6 s) under modkit, so the
/// late ioctl (5.5 s) finds the resource revoked; under Linux the remove returns at 5.002 s
/// and the resource is freed under the ioctl (the remark), so the late one finds nothing.
#[test]
fn the_drain_waits_for_the_users_under_modkit_only() {
    let text = STORY3
        .replace(
            r#"remove = [{ wait_for = "gpu_idle" }]"#,
            r#"remove = [{ sleep = "2ms" }]"#,
        )
        .replace(
            "id = \"rmmod_gpu\"\nat = \"12s\"",
            "id = \"rmmod_gpu\"\nat = \"7s\"",
        );
    let sc = modkit_sim::parse("drain.toml", &text).unwrap();
    for p in ["modkit", "linux-6.12"] {
        let p: Policy = p.parse().unwrap();
        let host = run_scenario(&sc, p, 0).unwrap();
        agree(&sc, p, &host);
        // The run ends with the deferred-probe timeout's work (10 s), on both drivers.
        let sim = Sim::new(&sc, p, 0).run().unwrap();
        assert_eq!(host.end_time, sim.end_time, "{p}");
        let no_stall = |r: &modkit_sim::Run| {
            r.kernel
                .diagnostics
                .iter()
                .all(|d| d.kind != DiagKind::Stalled)
        };
        assert!(no_stall(&host), "{p}: no stall");
        assert_eq!(result(&host, "rmmod_gpu"), Some(Outcome::Ok), "{p}");
        let late = result(&host, "ioctl_late");
        if p.is_modkit() {
            assert_eq!(late, Some(Outcome::Err(Errno::ENXIO)));
            assert!(!host
                .kernel
                .diagnostics
                .iter()
                .any(|d| d.kind == DiagKind::Remark));
        } else {
            // The remove returned at 5.002 s and the resources went with the ioctl in
            // flight: the late one finds nothing.
            assert_eq!(late, Some(Outcome::Err(Errno::ENXIO)));
            assert!(host
                .kernel
                .diagnostics
                .iter()
                .any(|d| d.kind == DiagKind::Remark));
        }
    }
}

/// A user that outlives the drain bound: named in a `stalled` diagnostic at 10 s, and the
/// remove goes on.
#[test]
fn users_that_outlive_the_drain_bound_are_named() {
    let text = STORY3
        .replace(
            r#"remove = [{ wait_for = "gpu_idle" }]"#,
            r#"remove = [{ sleep = "2ms" }]"#,
        )
        .replace(
            r#"{ use_devres = "drm:card0", for = "2s" }"#,
            r#"{ use_devres = "drm:card0", for = "8s" }"#,
        );
    let sc = modkit_sim::parse("drain-bound.toml", &text).unwrap();
    let host = run_scenario(&sc, Policy::Modkit, 0).unwrap();
    agree(&sc, Policy::Modkit, &host);
    let stall = host
        .kernel
        .diagnostics
        .iter()
        .find(|d| d.kind == DiagKind::Stalled)
        .expect("a stalled diagnostic");
    assert_eq!(stall.time, 10_000_000_000);
    assert!(
        stall
            .message
            .contains("(drm:card0) still in flight after 5 s"),
        "{}",
        stall.message
    );
    assert_eq!(result(&host, "unbind"), Some(Outcome::Ok));
    assert_eq!(result(&host, "rmmod_gpu"), Some(Outcome::Ok));
}

/// The host's run records each device's state changes with virtual times, so `modkit
/// simulate --driver host --svg` draws the device rows (issue 10, item 4).
#[test]
fn the_hosts_svg_has_device_rows() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/scenarios/deferred-probe-timeout.toml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let sc = modkit_sim::parse("deferred-probe-timeout.toml", &text).unwrap();
    let p: Policy = "linux-6.1".parse().unwrap();
    let host = run_scenario(&sc, p, 0).unwrap();
    assert!(!host.device_history.is_empty());
    let svg = modkit_sim::timeline::svg(&sc, "t", &host);
    assert!(svg.contains(">devices<"), "a heading row");
    assert!(
        svg.contains("camera deferred from 1.001s to 11.002s"),
        "{svg}"
    );
    assert!(svg.contains("sensor2 bound (imx219) from"), "{svg}");
    // The simulator's history, with zero-length states left out, is the host's.
    let sim = Sim::new(&sc, p, 0).with_history().run().unwrap();
    let spans = |h: &[(u64, String, &'static str, Option<String>)]| {
        let mut v: Vec<(u64, String, &'static str, Option<String>)> = Vec::new();
        for (i, x) in h.iter().enumerate() {
            let next = h[i + 1..].iter().find(|y| y.1 == x.1).map(|y| y.0);
            if next != Some(x.0) {
                v.push(x.clone());
            }
        }
        v
    };
    assert_eq!(spans(&host.device_history), spans(&sim.device_history));
}

/// A use in flight of a resource whose probe then fails (found by the device generator,
/// seed 1, before the fix: the host's failed-probe release blocked its thread on the
/// use's guard, off the virtual clock's books, and the run never ended). The resources of
/// a failed probe go at once, whoever uses them, as in the simulator.
#[test]
fn a_use_of_a_failing_probes_resource_does_not_hang_the_run() {
    let text = r#"
[[module]]
name = "m"
[[module.driver]]
bus = "platform"
match = ["dev:x"]
probe = [{ devm = "res" }, { sleep = "50ms" }, { fail = "ENOMEM" }]
[[device]]
name = "x0"
bus = "platform"
modalias = "dev:x"
[[event]]
id = "load"
modprobe = "m"
[[event]]
id = "use"
at = "20ms"
run = [{ use_devres = "res", for = "100ms" }]
[[event]]
id = "late"
at = "60ms"
run = [{ use_devres = "res", for = "1ms" }]
"#;
    let sc = modkit_sim::parse("failing-probe-use.toml", text).unwrap();
    for p in ["modkit", "linux-6.12"] {
        let p: Policy = p.parse().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let sc2 = sc.clone();
        std::thread::spawn(move || {
            let _ = tx.send(run_scenario(&sc2, p, 0));
        });
        let host = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{p}: the host run hangs"))
            .unwrap();
        agree(&sc, p, &host);
        assert_eq!(result(&host, "use"), Some(Outcome::Ok), "{p}");
        assert_eq!(
            result(&host, "late"),
            Some(Outcome::Err(Errno::ENXIO)),
            "{p}"
        );
    }
}
