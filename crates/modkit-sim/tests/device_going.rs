//! A driver whose module is GOING, and the rmmod of a module while the deferred-probe worker
//! probes with its driver (the simulator's own invariant reports found by the host driver's
//! device differential test, crates/modkit-hostdriver/tests/device_differential.rs, seed 1
//! case 1212 and earlier generator versions).

use modkit_core::Policy;
use modkit_sim::Sim;

const POLICIES: [&str; 5] = [
    "modkit",
    "linux-4.4",
    "linux-5.10",
    "linux-6.1",
    "linux-6.12",
];

/// Runs `text` under every policy above and seeds 0..32: no invariant report.
fn no_violation_under_any_seed(text: &str) -> Vec<modkit_sim::Run> {
    let sc = modkit_sim::parse("going.toml", text).expect("parses");
    let mut runs = Vec::new();
    for policy in POLICIES {
        let p: Policy = policy.parse().expect("policy");
        for seed in 0..32 {
            let r = Sim::new(&sc, p, seed).run().expect("runs");
            assert!(
                r.kernel.violations.is_empty(),
                "{policy} seed {seed}: {:?}",
                r.kernel.violations
            );
            runs.push(r);
        }
    }
    runs
}

/// m0's exit unregisters d01 first (the driver registered last), whose remove of x1
/// sleeps 5 ms; meanwhile m1's load binds x2, which triggers the deferred-probe worker,
/// and x0 (deferred on reg:r1, which m1's init registers) is retried while d00 is still on
/// the bus and m0 is GOING. The kernel has no module check on that path
/// (`deferred_probe_work_func()` → `bus_probe_device()` → `__device_attach()` →
/// `bus_for_each_drv(__device_attach_driver)` → `driver_probe_device()` →
/// `really_probe()`: drivers/base/dd.c takes no module reference and looks at no module
/// state; d00 leaves the bus only in its own `bus_remove_driver()`), so it probes x0 and
/// the exit's `driver_unregister(d00)` unbinds it at once: so does the simulator under
/// `linux-X.Y`. Under `modkit`, like the host library (h1, "a driver whose module is GOING
/// probes nothing"), no probe runs with a driver whose module is not COMING or LIVE
/// (sim/going.rs, modkit_core::going).
const GOING_WINDOW: &str = r#"
deferred_probe_timeout = -1
[[module]]
name = "m0"
[[module.driver]]
name = "d00"
bus = "platform"
match = ["dev:t0*"]
probe = [{ need = "reg:r1" }, { sleep = "3ms" }]
remove = [{ sleep = "1ms" }]
[[module.driver]]
name = "d01"
bus = "platform"
match = ["dev:t1*"]
probe = [{ sleep = "1ms" }]
remove = [{ sleep = "5ms" }]
[[module]]
name = "m1"
[[module.init]]
step = "reg"
run = [{ register = "reg:r1" }]
undo = [{ unregister = "reg:r1" }]
[[module.driver]]
name = "d10"
bus = "platform"
match = ["dev:t2*"]
probe = []
[[device]]
name = "x0"
bus = "platform"
modalias = "dev:t0x"
[[device]]
name = "x1"
bus = "platform"
modalias = "dev:t1x"
[[device]]
name = "x2"
bus = "platform"
modalias = "dev:t2x"
[[event]]
id = "load"
at = "1ms"
modprobe = "m0"
[[event]]
id = "rmmod"
at = "20ms"
rmmod = "m0"
[[event]]
id = "m1"
at = "21ms"
modprobe = "m1"
"#;

/// Whether `d` was probed by `drv` at or after `from` (the device history's `probing`).
fn probed_after(r: &modkit_sim::Run, d: &str, drv: &str, from: u64) -> bool {
    r.device_history.iter().any(|(t, dev, st, by)| {
        *t >= from && dev == d && *st == "probing" && by.as_deref() == Some(drv)
    })
}

/// Without modkit's rule (`module_may_probe()` letting a GOING module's driver probe under
/// `modkit` too) this fails: the window's probe runs under `modkit` and the core reports
/// "probe of x0 by driver d00 while module m0 is going".
#[test]
fn a_driver_whose_module_is_going_probes_under_linux_only() {
    for r in no_violation_under_any_seed(GOING_WINDOW) {
        let st = |d: &str| {
            let row = r.devices.iter().find(|x| x.device == d).expect("device");
            format!("{} {}", row.state, row.driver.as_deref().unwrap_or("-"))
        };
        // The end state is the same under every policy.
        assert_eq!(st("x0"), "unbound -");
        assert_eq!(st("x1"), "unbound -");
        assert_eq!(st("x2"), "bound d10");
    }
    let sc = modkit_sim::parse("going.toml", GOING_WINDOW).expect("parses");
    for policy in POLICIES {
        let p: Policy = policy.parse().expect("policy");
        for seed in 0..8 {
            let r = Sim::new(&sc, p, seed).with_history().run().expect("runs");
            let window = probed_after(&r, "x0", "d00", 20_000_000);
            let remark = r.kernel.diagnostics.iter().any(|d| {
                d.kind == modkit_core::DiagKind::Remark
                    && d.message
                        .contains("probe of x0 by driver d00 runs code of module m0 on its way out")
            });
            if p.is_modkit() {
                assert!(
                    !window && !remark,
                    "{policy} seed {seed}: modkit probes in the window"
                );
            } else {
                assert!(
                    window && remark,
                    "{policy} seed {seed}: the kernel probes x0 in the window"
                );
                // ... and the exit's driver_unregister() unbinds it.
                let unbound = r
                    .device_history
                    .iter()
                    .any(|(t, d, st, _)| *t >= 20_000_000 && d == "x0" && *st == "removing");
                assert!(unbound, "{policy} seed {seed}: {:?}", r.device_history);
            }
        }
    }
}

/// Seed 1 case 1212 of the host driver's device generator (policy modkit; every seed
/// reported "remove of x3 by driver d00 whose module m0 is gone" before driver_detach()
/// waited for a probe running on another task, commit 9cece2f): rmmod of m0 at 34 ms while
/// the deferred-probe worker runs d00's probe of x3 (23 ms), which waits for x2's
/// binding; later events bind, remove and re-add x3 and rmmod m0 again.
const CASE_1212: &str = r#"
modprobe_time = "1ms"
udev = { workers = 2, event_timeout = "200ms" }
[[module]]
name = "m0"
[[module.init]]
step = "reg"
run = [{ sleep = "18ms" }, { register = "reg:r0" }]
undo = [{ unregister = "reg:r0" }]
[[module.driver]]
name = "d00"
bus = "platform"
match = ["dev:t0*"]
probe = [{ need = "device:x2" }, { sleep = "23ms" }]
remove = [{ sleep = "2ms" }]
[[module.driver]]
name = "d01"
bus = "platform"
match = ["dev:t1*"]
probe = [{ sleep = "4ms" }, { need = "reg:r0" }]
remove = [{ sleep = "1ms" }]
[[device]]
name = "x0"
bus = "platform"
modalias = "dev:t1x"
boot = false
[[device]]
name = "x1"
bus = "platform"
modalias = "dev:t1x"
boot = false
[[device]]
name = "x2"
bus = "platform"
modalias = "dev:t1x"
boot = true
[[device]]
name = "x3"
bus = "platform"
modalias = "dev:t0x"
boot = true
[[event]]
id = "e0"
at = "34ms"
rmmod = "m0"
[[event]]
id = "e1"
at = "118ms"
remove_device = "x3"
[[event]]
id = "e2"
at = "205ms"
bind = "x3"
driver = "d00"
[[event]]
id = "e3"
at = "330ms"
bind = "x0"
driver = "d01"
[[event]]
id = "e4"
at = "410ms"
add_device = "x3"
[[event]]
id = "e5"
at = "515ms"
rmmod = "m0"
"#;

#[test]
fn rmmod_while_the_deferred_probe_worker_probes_with_its_driver() {
    for r in no_violation_under_any_seed(CASE_1212) {
        // Nothing stays bound to m0's drivers once m0 is gone.
        assert!(r
            .devices
            .iter()
            .all(|d| d.state != "bound" || d.driver.is_none()));
    }
}

/// h3's deterministic case (crates/modkit-hostdriver/tests/device_differential.rs,
/// `driver_attach_waits_for_a_device_being_probed`): m0's d00 probes x0 from 0 to 36 ms;
/// m1's d10, registered at 11 ms, probes x1 from 11 to 51 ms. At 36 ms d00's
/// driver_attach() reaches x1: the kernel's `__driver_attach()` takes the device lock
/// (`__device_driver_lock()`) and waits for d10's probe, then finds x1 bound (-EBUSY from
/// `__driver_probe_device()`) and goes on; m0's init, whose last step sleeps 1 ms after
/// the registration, ends at 52 ms (it ended at 51 ms when the simulator skipped x1).
/// d10 matches x1 only: were it to match x0 too, its own driver_attach() would wait for
/// x0's lock first (the registration's list holds devices in flight, see
/// `a_driver_registering_while_another_probe_runs_binds_the_device_if_that_probe_fails`)
/// and race d00 for x1 at 36 ms.
#[test]
fn driver_attach_waits_for_a_device_being_probed() {
    let text = r#"
deferred_probe_timeout = -1
[[module]]
name = "m0"
[[module.driver]]
name = "d00"
bus = "platform"
match = ["dev:t0*"]
probe = [{ sleep = "36ms" }]
[[module.init]]
step = "reg"
run = [{ register = "driver:d00" }]
undo = [{ unregister = "driver:d00" }]
[[module.init]]
step = "after"
run = [{ sleep = "1ms" }]
[[module]]
name = "m1"
[[module.driver]]
name = "d10"
bus = "platform"
match = ["dev:t0b"]
probe = [{ sleep = "40ms" }]
[[device]]
name = "x0"
bus = "platform"
modalias = "dev:t0a"
[[device]]
name = "x1"
bus = "platform"
modalias = "dev:t0b"
[[event]]
id = "a"
modprobe = "m0"
[[event]]
id = "b"
at = "10ms"
modprobe = "m1"
"#;
    for r in no_violation_under_any_seed(text) {
        let st = |d: &str| {
            let row = r.devices.iter().find(|x| x.device == d).expect("device");
            format!("{} {}", row.state, row.driver.as_deref().unwrap_or("-"))
        };
        assert_eq!(st("x0"), "bound d00");
        assert_eq!(st("x1"), "bound d10");
        assert_eq!(r.end_time, 52_000_000, "m0's init waited for x1's lock");
    }
}

/// As [`no_violation_under_any_seed`], with the device history recorded.
fn with_history_under_any_seed(text: &str) -> Vec<modkit_sim::Run> {
    let sc = modkit_sim::parse("attach.toml", text).expect("parses");
    let mut runs = Vec::new();
    for policy in POLICIES {
        let p: Policy = policy.parse().expect("policy");
        for seed in 0..32 {
            let r = Sim::new(&sc, p, seed).with_history().run().expect("runs");
            assert!(
                r.kernel.violations.is_empty(),
                "{policy} seed {seed}: {:?}",
                r.kernel.violations
            );
            assert!(!r.device_history.is_empty(), "the history is recorded");
            runs.push(r);
        }
    }
    runs
}

/// A device another driver is probing when a driver registers: `__driver_attach()`
/// (drivers/base/dd.c, 4.4 to 6.x) walks every device of the bus, not only the unbound
/// ones; after a positive match it takes the device lock (`__device_driver_lock()`, which
/// waits for the probe in progress) and calls `driver_probe_device()`, which probes when
/// `dev->driver` is NULL again (`__driver_probe_device()` answers -EBUSY only when it is
/// set). So when ma's da probes x0 from 1 ms (ma's load takes 1 ms), sleeps 10 ms and
/// fails with ENODEV while mb's db registers (at 4 ms), db waits for x0's lock, probes it
/// at 11 ms and binds it; mb's init ends when db's probe (1 ms) returns: 12 ms. Before,
/// `DeviceModel::register_driver()` listed only the devices unbound at that moment: db
/// never tried x0, which stayed unbound, and the run ended at 11 ms.
#[test]
fn a_driver_registering_while_another_probe_runs_binds_the_device_if_that_probe_fails() {
    let text = r#"
deferred_probe_timeout = -1
[[module]]
name = "ma"
[[module.driver]]
name = "da"
bus = "platform"
match = ["dev:t0*"]
probe = [{ sleep = "10ms" }, { fail = "ENODEV" }]
[[module]]
name = "mb"
[[module.driver]]
name = "db"
bus = "platform"
match = ["dev:t0*"]
probe = [{ sleep = "1ms" }]
[[device]]
name = "x0"
bus = "platform"
modalias = "dev:t0x"
[[event]]
id = "a"
modprobe = "ma"
[[event]]
id = "b"
at = "3ms"
modprobe = "mb"
"#;
    for r in with_history_under_any_seed(text) {
        let row = r.devices.iter().find(|x| x.device == "x0").expect("x0");
        assert_eq!(
            (row.state, row.driver.as_deref()),
            ("bound", Some("db")),
            "db probes x0 after da's probe failed"
        );
        assert!(probed_after(&r, "x0", "da", 0));
        assert!(
            probed_after(&r, "x0", "db", 11_000_000)
                && !r.device_history.iter().any(|(t, d, st, by)| {
                    *t < 11_000_000 && d == "x0" && *st == "probing" && by.as_deref() == Some("db")
                }),
            "db probes x0 only once da's probe has failed"
        );
        assert_eq!(r.end_time, 12_000_000, "mb's init waited for x0's lock");
    }
}

/// The same registration while the device is being deleted: `device_del()` marks it dead
/// (`kill_device()`) and `bus_remove_device()` takes it off the bus's list before
/// releasing its driver, so the new driver neither waits for it nor probes it: mb's init,
/// which sleeps 20 ms after registering db, is not held up by da's 10 ms remove.
#[test]
fn a_driver_registering_while_a_device_is_deleted_leaves_it_alone() {
    let text = r#"
deferred_probe_timeout = -1
[[module]]
name = "ma"
[[module.driver]]
name = "da"
bus = "platform"
match = ["dev:t0*"]
probe = []
remove = [{ sleep = "10ms" }]
[[module]]
name = "mb"
[[module.driver]]
name = "db"
bus = "platform"
match = ["dev:t0*"]
probe = []
[[module.init]]
step = "reg"
run = [{ register = "driver:db" }]
undo = [{ unregister = "driver:db" }]
[[module.init]]
step = "after"
run = [{ sleep = "20ms" }]
[[device]]
name = "x0"
bus = "platform"
modalias = "dev:t0x"
[[event]]
id = "a"
modprobe = "ma"
[[event]]
id = "del"
at = "2ms"
remove_device = "x0"
[[event]]
id = "b"
at = "3ms"
modprobe = "mb"
"#;
    for r in with_history_under_any_seed(text) {
        assert!(!probed_after(&r, "x0", "db", 0), "db never probes x0");
        let row = r.devices.iter().find(|x| x.device == "x0").expect("x0");
        assert_ne!(row.state, "bound");
        // mb's init (loaded from 3 ms, registering at 4 ms) did not wait for the remove
        // (2 ms to 12 ms): 4 + 20 ms. Waiting for x0's lock it would end at 32 ms.
        assert_eq!(r.end_time, 24_000_000, "db's driver_attach() skipped x0");
    }
}
