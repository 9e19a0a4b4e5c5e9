//! modkit's device policy beside the kernel's (issue 10, item 3) and a bus match returning
//! -EPROBE_DEFER: a probe waiting for a loading module, the cycle it must not wait in,
//! unbind revoking managed resources and bounding the remove callback, and the match
//! deferral per era.

mod common;
use common::*;
use modkit_core::{DiagKind, Errno, Outcome};

fn result(r: &modkit_sim::Run, id: &str) -> Outcome {
    r.results[id][0]
}

fn has_diag(r: &modkit_sim::Run, kind: DiagKind) -> bool {
    r.kernel.diagnostics.iter().any(|d| d.kind == kind)
}

const SLOW_SUPPLIER: &str = r#"
[[module]]
name = "pll"
[[module.init]]
step = "calibrate"
run = [{ sleep = "300ms" }]
[[module.init]]
step = "register"
run = [{ register = "clk:pll" }]
undo = [{ unregister = "clk:pll" }]
[[module]]
name = "cam"
[[module.driver]]
bus = "platform"
match = ["platform:cam"]
probe = [{ need = "clk:pll" }, { devm = "video:cam0" }]
[[device]]
name = "cam0"
bus = "platform"
modalias = "platform:cam"
[[event]]
modprobe = "pll"
[[event]]
id = "cam"
at = "50ms"
modprobe = "cam"
[[event]]
id = "check"
at = "1s"
run = [{ lookup = "video:cam0" }]
"#;

#[test]
fn modkit_waits_for_the_loading_supplier_linux_polls() {
    let r = run("modkit", SLOW_SUPPLIER);
    assert_eq!(state(&r, "cam0"), "bound:cam");
    assert_eq!(result(&r, "check"), Outcome::Ok);
    assert!(log(&r)
        .iter()
        .any(|l| l.contains("cam0: probe by cam waits for module pll's load to end")));
    // Bound when pll's init ended, at 300 ms: the probe ran inside cam's load.
    let bound = r
        .kernel
        .log
        .iter()
        .find(|l| l.text.contains("the probe goes on"));
    assert_eq!(bound.map(|l| l.time), Some(300_000_000 + 1_000_000));
    for p in ["linux-6.1", "linux-5.4"] {
        let r = run(p, SLOW_SUPPLIER);
        assert_eq!(result(&r, "check"), Outcome::Err(Errno::ENOENT), "{p}");
    }
    // 6.1: nothing binds after pll goes live: the timeout (10 s after cam's registration)
    // retries it. 5.4: no timeout: deferred for good.
    assert_eq!(state(&run("linux-6.1", SLOW_SUPPLIER), "cam0"), "bound:cam");
    assert_eq!(state(&run("linux-5.4", SLOW_SUPPLIER), "cam0"), "deferred");
}

#[test]
fn a_probe_waits_for_a_module_a_modprobe_is_still_loading() {
    // pll's modprobe takes 200 ms before the load starts (modprobe_time): not COMING yet.
    let t = format!("modprobe_time = \"200ms\"\n{SLOW_SUPPLIER}").replace(
        "at = \"50ms\"\nmodprobe = \"cam\"",
        "at = \"50ms\"\ninsmod = \"cam\"",
    );
    let r = run("modkit", &t);
    assert_eq!(state(&r, "cam0"), "bound:cam");
    assert_eq!(result(&r, "check"), Outcome::Ok);
    let pll = r.kernel.db.id("pll").unwrap();
    let wait = r
        .kernel
        .log
        .iter()
        .find(|l| l.text.contains("waits for module pll"));
    assert_eq!(wait.map(|l| l.time), Some(50_000_000), "{:?}", log(&r));
    assert_eq!(r.kernel.init_calls[pll], 1);
}

#[test]
fn a_load_that_fails_ends_the_wait_and_the_probe_defers() {
    // pll registers the clock, then its init fails and the undo takes it back.
    let t = SLOW_SUPPLIER.replace(
        "undo = [{ unregister = \"clk:pll\" }]",
        "undo = [{ unregister = \"clk:pll\" }]\n[[module.init]]\nstep = \"fw\"\nrun = [{ fail = \"ENOMEM\" }]",
    );
    let r = run("modkit", &t);
    assert_eq!(state(&r, "cam0"), "deferred");
    assert!(log(&r)
        .iter()
        .any(|l| l.contains("module pll's load ended without clk:pll: the probe defers")));
}

const SELF_PROVIDER: &str = r#"
[[module]]
name = "selfclk"
[[module.init]]
step = "driver"
run = [{ register = "driver:selfclk" }]
undo = [{ unregister = "driver:selfclk" }]
[[module.init]]
step = "clock"
run = [{ sleep = "100ms" }, { register = "clk:self" }]
undo = [{ unregister = "clk:self" }]
[[module.driver]]
bus = "platform"
match = ["platform:dsi"]
probe = [{ need = "clk:self" }]
[[device]]
name = "dsi0"
bus = "platform"
modalias = "platform:dsi"
[[event]]
id = "load"
modprobe = "selfclk"
"#;

#[test]
fn a_wait_for_ones_own_init_is_a_cycle_deferred_and_retried_when_live() {
    let r = run("modkit", SELF_PROVIDER);
    assert_eq!(result(&r, "load"), Outcome::Ok);
    assert_eq!(state(&r, "dsi0"), "bound:selfclk");
    assert!(log(&r)
        .iter()
        .any(|l| l.contains("does not wait for module selfclk")));
    assert!(!has_diag(&r, DiagKind::Stalled));
    // The kernel: deferred until the timeout retries it (10 s), or for good before 5.7.
    assert_eq!(
        state(&run("linux-6.1", SELF_PROVIDER), "dsi0"),
        "bound:selfclk"
    );
    assert_eq!(state(&run("linux-5.4", SELF_PROVIDER), "dsi0"), "deferred");
}

const HOTUNPLUG: &str = r#"
[[module]]
name = "gpu"
[[module.driver]]
bus = "pci"
match = ["pci:gpu"]
probe = [{ devm = "drm:card0" }]
remove = [{ wait_for = "gpu_idle" }]
[[device]]
name = "g0"
bus = "pci"
modalias = "pci:gpu"
[[event]]
modprobe = "gpu"
[[event]]
id = "ioctl"
at = "1s"
run = [{ use_devres = "drm:card0", for = "2s" }]
[[event]]
id = "unbind"
at = "2s"
unbind = "g0"
[[event]]
id = "late"
at = "2500ms"
run = [{ use_devres = "drm:card0" }]
"#;

#[test]
fn modkit_revokes_drains_and_bounds_a_remove_that_never_returns() {
    let r = run("modkit", HOTUNPLUG);
    assert_eq!(result(&r, "ioctl"), Outcome::Ok);
    assert_eq!(result(&r, "unbind"), Outcome::Ok);
    assert_eq!(result(&r, "late"), Outcome::Err(Errno::ENXIO));
    assert_eq!(state(&r, "g0"), "unbound");
    let stalls: Vec<_> = r
        .kernel
        .diagnostics
        .iter()
        .filter(|d| d.kind == DiagKind::Stalled)
        .collect();
    assert_eq!(stalls.len(), 1, "{stalls:?}");
    // Drained at 3 s (the ioctl's end), abandoned 5 s later.
    assert_eq!(stalls[0].time, 8_000_000_000);
    assert!(stalls[0].message.contains("remove callback of driver gpu"));
    assert!(stalls[0].message.contains("g0"));
    assert!(stalls[0].message.contains("wait_for_completion(gpu_idle)"));
    // The abandoned callback keeps gpu's text.
    let gpu = r.kernel.db.id("gpu").unwrap();
    assert_eq!(r.kernel.instances[gpu].as_ref().unwrap().refcount, 1);
}

#[test]
fn linux_hangs_in_remove_and_the_late_user_reaches_the_driver() {
    let r = run("linux-6.12", HOTUNPLUG);
    assert_eq!(result(&r, "late"), Outcome::Ok);
    assert!(
        !r.results["unbind"].iter().any(|_| true),
        "the unbind never returns"
    );
    assert_eq!(state(&r, "g0"), "removing");
    let stall = r
        .kernel
        .diagnostics
        .iter()
        .find(|d| d.kind == DiagKind::Stalled)
        .expect("stalled");
    assert!(stall.chain.iter().any(|c| c.contains("gpu_idle")));
}

#[test]
fn linux_frees_resources_under_a_user_and_says_so() {
    let t = HOTUNPLUG.replace("remove = [{ wait_for = \"gpu_idle\" }]", "");
    let r = run("linux-6.1", &t);
    assert_eq!(result(&r, "unbind"), Outcome::Ok);
    assert!(r
        .kernel
        .diagnostics
        .iter()
        .any(|d| d.kind == DiagKind::Remark && d.message.contains("1 user(s) are in flight")));
    // modkit waits for the user instead: the unbind ends when the ioctl does (3 s).
    let r = run("modkit", &t);
    assert_eq!(result(&r, "unbind"), Outcome::Ok);
    assert!(!has_diag(&r, DiagKind::Stalled));
    assert!(!has_diag(&r, DiagKind::Remark));
}

const AMBA: &str = r#"
[[bus]]
name = "amba"
[[module]]
name = "pl011"
[[module.driver]]
bus = "amba"
match = ["amba:d00041011"]
probe = [{ lookup = "clk:apb_pclk" }]
[[module]]
name = "clkc"
[[module.driver]]
bus = "platform"
match = ["platform:clkc"]
probe = [{ devm = "clk:apb_pclk" }]
[[device]]
name = "uart0"
bus = "amba"
modalias = "amba:d00041011"
match_defer = "clk:apb_pclk"
[[device]]
name = "clocks"
bus = "platform"
modalias = "platform:clkc"
[[event]]
modprobe = "pl011"
[[event]]
at = "1s"
modprobe = "clkc"
"#;

#[test]
fn a_deferring_bus_match_by_era() {
    let failed = "pl011: probe of uart0 failed with error -2".to_string();
    let r = run("linux-4.4", AMBA);
    assert_eq!(state(&r, "uart0"), "unbound");
    assert!(log(&r).contains(&failed));
    let r = run("linux-5.10", AMBA);
    assert_eq!(state(&r, "uart0"), "bound:pl011");
    assert!(log(&r).contains(&failed));
    for p in ["linux-6.1", "modkit"] {
        let r = run(p, AMBA);
        assert_eq!(state(&r, "uart0"), "bound:pl011", "{p}");
        assert!(!log(&r).contains(&failed), "{p}");
    }
    // Nothing provides the clock: deferred; modkit says so at once.
    let t = AMBA.replace("probe = [{ devm = \"clk:apb_pclk\" }]", "");
    let r = run("linux-6.1", &t);
    assert_eq!(state(&r, "uart0"), "deferred");
    assert!(
        log(&r).contains(&"platform uart0: deferred probe pending".to_string())
            || log(&r)
                .iter()
                .any(|l| l.contains("uart0: deferred probe pending"))
    );
    let r = run("modkit", &t);
    assert!(has_diag(&r, DiagKind::DeferredForever));
}

#[test]
fn sysfs_bind_probes_through_a_deferring_match() {
    let t = format!(
        "{AMBA}\n[[event]]\nid = \"bind\"\nat = \"500ms\"\nbind = \"uart0\"\ndriver = \"pl011\"\n"
    );
    // bind_store(): driver_match_device() != 0 is a match: the probe runs and fails.
    let r = run("linux-6.1", &t);
    assert_eq!(r.results["bind"], vec![Outcome::Err(Errno::ENOENT)]);
}

#[test]
fn bad_keys_are_refused_clearly() {
    let e = err("[[device]]\nname = \"u\"\nbus = \"platform\"\nmatch_defer = \"clk\"\n");
    assert!(e.contains("match_defer") && e.contains("kind:name"), "{e}");
    let e = err("[[event]]\nrun = [{ use_devres = \"x\", for = \"soon\" }]\n");
    assert!(e.contains("`for`"), "{e}");
    let e = err("[[event]]\nrun = [{ sleep = \"1s\", for = \"1s\" }]\n");
    assert!(e.contains("`for` does not go with `sleep`"), "{e}");
}

const CROSS_CYCLE: &str = r#"
[[module]]
name = "a"
exports = ["a_sym"]
[[module.init]]
step = "setup"
run = [{ sleep = "100ms" }]
[[module.driver]]
bus = "platform"
match = ["platform:x"]
probe = [{ need = "clk:b" }]
[[module]]
name = "b"
imports = ["a_sym"]
[[module.init]]
step = "clk"
run = [{ register = "clk:b" }]
undo = [{ unregister = "clk:b" }]
[[device]]
name = "x0"
bus = "platform"
modalias = "platform:x"
[[event]]
id = "a"
insmod = "a"
[[event]]
id = "b"
at = "50ms"
insmod = "b"
"#;

#[test]
fn a_wait_on_a_load_that_waits_for_the_prober_is_not_made() {
    // b's load waits for a (its symbol's owner, COMING) while a's init probes x0, which
    // needs what b's init registers: waiting would close the cycle.
    let r = run("modkit", CROSS_CYCLE);
    assert_eq!(result(&r, "a"), Outcome::Ok);
    assert_eq!(result(&r, "b"), Outcome::Ok);
    assert_eq!(state(&r, "x0"), "bound:a");
    assert!(log(&r)
        .iter()
        .any(|l| l.contains("does not wait for module b")));
    assert!(!has_diag(&r, DiagKind::Stalled));
    assert!(!has_diag(&r, DiagKind::DependencyCycle));
    assert_eq!(state(&run("linux-5.4", CROSS_CYCLE), "x0"), "deferred");
}

const UDEV: &str = r#"
udev = { workers = 1 }
[[module]]
name = "a"
[[module.driver]]
bus = "platform"
match = ["platform:a"]
probe = [{ need = "clk:b" }]
[[module]]
name = "b"
[[module.init]]
step = "clk"
run = [{ sleep = "50ms" }, { register = "clk:b" }]
undo = [{ unregister = "clk:b" }]
[[module.driver]]
bus = "platform"
match = ["platform:b"]
[[device]]
name = "a0"
bus = "platform"
modalias = "platform:a"
[[device]]
name = "b0"
bus = "platform"
modalias = "platform:b"
"#;

#[test]
fn a_probe_in_a_udev_worker_waits_for_a_running_load_not_a_queued_event() {
    // One worker, busy with a's load (whose probe needs b): b's event cannot start until it
    // ends: no wait, the probe defers and binds when b's load (or b0's bind) retries it.
    let r = run("modkit", UDEV);
    assert_eq!(state(&r, "a0"), "bound:a");
    assert!(!log(&r).iter().any(|l| l.contains("waits for module b")));
    assert!(!has_diag(&r, DiagKind::Stalled));
    // Two workers: b's load runs beside it; the probe waits for it.
    let r = run("modkit", &UDEV.replace("workers = 1", "workers = 2"));
    assert_eq!(state(&r, "a0"), "bound:a");
    assert!(log(&r)
        .iter()
        .any(|l| l.contains("a0: probe by a waits for module b's load")));
    assert!(!has_diag(&r, DiagKind::Stalled));
}

#[test]
fn an_abandoned_callback_that_returns_later_drops_its_reference() {
    let t = format!(
        "{HOTUNPLUG}\n[[event]]\nid = \"busy\"\nat = \"9s\"\nrmmod = \"gpu\"\n[[event]]\nat = \"10s\"\nrun = [{{ complete = \"gpu_idle\" }}]\n[[event]]\nid = \"rmmod\"\nat = \"11s\"\nrmmod = \"gpu\"\n"
    );
    let r = run("modkit", &t);
    assert_eq!(r.results["busy"], vec![Outcome::Err(Errno::EWOULDBLOCK)]);
    assert_eq!(r.results["rmmod"], vec![Outcome::Ok]);
    assert_eq!(
        r.kernel
            .diagnostics
            .iter()
            .filter(|d| d.kind == DiagKind::Stalled)
            .count(),
        1
    );
}

#[test]
fn a_remove_that_blocks_in_a_nested_unbind_is_bounded_too() {
    // The GPU's remove unregisters its auxiliary device, whose driver's remove blocks.
    let t = r#"
[[module]]
name = "gpu"
[[module.driver]]
bus = "pci"
match = ["pci:gpu"]
probe = [{ add_device = "gpu.aux.0", bus = "auxiliary" }]
remove = [{ remove_device = "gpu.aux.0" }]
[[module]]
name = "auxd"
[[module.driver]]
bus = "auxiliary"
match = ["auxiliary:gpu.aux"]
remove = [{ wait_for = "never" }]
[[device]]
name = "g0"
bus = "pci"
modalias = "pci:gpu"
[[event]]
modprobe = "auxd"
[[event]]
modprobe = "gpu"
[[event]]
id = "unbind"
at = "1s"
unbind = "g0"
"#;
    let r = run("modkit", t);
    assert_eq!(r.results["unbind"], vec![Outcome::Ok]);
    assert_eq!(state(&r, "g0"), "unbound");
    assert_eq!(state(&r, "gpu.aux.0"), "absent");
    assert!(!r
        .kernel
        .diagnostics
        .iter()
        .any(|d| d.message.starts_with("the run stalled")));
}

/// m0 registers d00 (async probe needing reg:r0), registers reg:r0 150 ms later, then fails
/// (driver d00 registered again): the undo's driver_unregister() waits for the device lock
/// of each device whose async probe waits for m0's load, a cycle formed after the waits
/// began (found by the device differential, seed 1, case 74).
const LATE_CYCLE: &str = r#"
deferred_probe_timeout = 1
udev = { workers = 3 }
[[module]]
name = "m0"
[[module.init]]
step = "driver"
run = [{ register = "driver:d00" }]
undo = [{ unregister = "driver:d00" }]
[[module.init]]
step = "reg"
run = [{ sleep = "150ms" }, { register = "reg:r0" }]
undo = [{ unregister = "reg:r0" }]
[[module.init]]
step = "again"
run = [{ register = "driver:d00" }]
[[module.driver]]
name = "d00"
bus = "platform"
match = ["platform:x"]
probe_type = "async"
probe = [{ need = "reg:r0" }, { sleep = "12ms" }, { devm = "res0" }]
[[device]]
name = "x"
bus = "platform"
modalias = "platform:x"
count = 3
[[event]]
id = "load"
modprobe = "m0"
"#;

#[test]
fn a_cycle_formed_after_the_wait_began_breaks_the_wait() {
    for text in [
        LATE_CYCLE.to_string(),
        // A plain failing step after the sleep does it too.
        LATE_CYCLE.replace(
            "step = \"again\"\nrun = [{ register = \"driver:d00\" }]",
            "step = \"again\"\nrun = [{ fail = \"ENOMEM\" }]",
        ),
    ] {
        let r = run("modkit", &text);
        assert!(!has_diag(&r, DiagKind::Stalled), "{:?}", log(&r));
        assert!(matches!(result(&r, "load"), Outcome::Err(_)));
        for x in ["x0", "x1", "x2"] {
            assert_eq!(state(&r, x), "unbound", "{x}");
            let line = format!("{x}: probe by d00 stops waiting for module m0 (which provides reg:r0): its load now waits for this probe; deferred, retried when m0 is live");
            let at = r.kernel.log.iter().find(|l| l.text == line).map(|l| l.time);
            assert_eq!(at, Some(151_000_000), "{x}: {:?}", log(&r));
        }
        assert!(r
            .kernel
            .log
            .iter()
            .all(|l| !l.text.contains("ended without")));
    }
    // Linux: no probe wait, so no cycle to break (the probes defer at once).
    let r = run("linux-6.12", LATE_CYCLE);
    assert!(!has_diag(&r, DiagKind::Stalled), "{:?}", log(&r));
    assert!(r
        .kernel
        .log
        .iter()
        .all(|l| !l.text.contains("stops waiting")));
}
