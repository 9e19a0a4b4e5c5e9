//! The device model in the simulator: probe order, failures, deferral, unbind order,
//! devres, sysfs bind/unbind, udev's worker limit and event timeout, and clear errors for
//! bad device keys.

mod common;
use common::*;
use modkit_sim::parse;

const TWO_DRIVERS: &str = r#"
[[module]]
name = "first"
[[module.driver]]
bus = "platform"
match = ["platform:x*"]
probe = [{ devm = "misc:first" }, { fail = "ENOMEM" }]
[[module]]
name = "second"
[[module.driver]]
bus = "platform"
match = ["platform:x1"]
[[device]]
name = "x1"
bus = "platform"
modalias = "platform:x1"
[[event]]
modprobe = "first"
[[event]]
at = "1s"
modprobe = "second"
"#;

#[test]
fn a_failed_probe_prints_releases_devres_and_the_next_driver_binds_later() {
    let r = run("linux-6.1", TWO_DRIVERS);
    assert!(log(&r).contains(&"first: probe of x1 failed with error -12".to_string()));
    assert_eq!(state(&r, "x1"), "bound:second");
    assert!(!r.kernel.registrations.contains_key("misc:first"));
    let r = run("linux-6.12", TWO_DRIVERS);
    assert!(
        log(&r).contains(&"first x1: probe with driver first failed with error -12".to_string())
    );
}

#[test]
fn enodev_and_enxio_are_silent() {
    let t = TWO_DRIVERS.replace("ENOMEM", "ENXIO");
    let r = run("linux-6.1", &t);
    assert!(log(&r).is_empty(), "{:?}", log(&r));
    assert_eq!(state(&r, "x1"), "bound:second");
}

const SUPPLIER: &str = r#"
[[module]]
name = "sup"
[[module.driver]]
bus = "platform"
match = ["platform:pmic"]
remove = [{ wait_for = "consumer_removed", timeout = "1s" }]
[[module]]
name = "con"
[[module.driver]]
bus = "platform"
match = ["platform:cam"]
probe = [{ need = "device:pmic" }, { devm = "misc:cam" }]
remove = [{ complete = "consumer_removed" }]
[[device]]
name = "pmic"
bus = "platform"
modalias = "platform:pmic"
[[device]]
name = "cam"
bus = "platform"
modalias = "platform:cam"
[[event]]
id = "con"
modprobe = "con"
[[event]]
id = "sup"
at = "1s"
modprobe = "sup"
[[event]]
id = "unbind"
at = "2s"
unbind = "pmic"
"#;

#[test]
fn a_consumer_defers_binds_after_its_supplier_and_is_unbound_first() {
    let r = run("linux-6.1", SUPPLIER);
    // Unbinding the supplier unbound the consumer first: the supplier's remove found the
    // consumer's completion at once (no timeout), and the consumer's devres is gone.
    assert!(
        r.kernel.diagnostics.is_empty(),
        "{:?}",
        r.kernel.diagnostics
    );
    assert_eq!(state(&r, "pmic"), "unbound");
    assert_eq!(state(&r, "cam"), "unbound");
    assert!(!r.kernel.registrations.contains_key("misc:cam"));
    assert_eq!(r.results["unbind"], vec![modkit_core::Outcome::Ok]);
    // Without the unbind, cam ends bound after the supplier's bind triggered the retry.
    let t = SUPPLIER.replace("unbind = \"pmic\"", "run = []");
    let r = run("linux-6.1", &t);
    assert_eq!(state(&r, "cam"), "bound:con");
    assert!(r.kernel.registrations.contains_key("misc:cam"));
}

#[test]
fn rmmod_unbinds_the_drivers_devices_first() {
    let t = SUPPLIER.replace("unbind = \"pmic\"", "rmmod = \"sup\"");
    let r = run("linux-6.1", &t);
    assert_eq!(state(&r, "pmic"), "unbound");
    // device_links_unbind_consumers() releases the consumer; nothing puts it back on the
    // pending list.
    assert_eq!(state(&r, "cam"), "unbound");
    assert!(
        r.kernel.diagnostics.is_empty(),
        "{:?}",
        r.kernel.diagnostics
    );
}

#[test]
fn sysfs_bind_and_unbind() {
    let t = r#"
[[module]]
name = "a"
[[module.driver]]
bus = "platform"
match = ["platform:x"]
[[device]]
name = "x"
bus = "platform"
modalias = "platform:x"
[[event]]
id = "load"
modprobe = "a"
[[event]]
id = "unbind"
at = "1s"
unbind = "x"
[[event]]
id = "unbind_again"
at = "2s"
unbind = "x"
[[event]]
id = "bind"
at = "3s"
bind = "x"
driver = "a"
[[event]]
id = "bind_again"
at = "4s"
bind = "x"
driver = "a"
"#;
    let r = run("linux-6.12", t);
    use modkit_core::{Errno, Outcome};
    assert_eq!(r.results["unbind"], vec![Outcome::Ok]);
    assert_eq!(r.results["unbind_again"], vec![Outcome::Err(Errno::ENODEV)]);
    assert_eq!(r.results["bind"], vec![Outcome::Ok]);
    assert_eq!(r.results["bind_again"], vec![Outcome::Err(Errno::EBUSY)]);
    assert_eq!(state(&r, "x"), "bound:a");
}

fn udev_file(workers: u32, sleep: &str, timeout: &str) -> String {
    let mut t = format!("udev = {{ workers = {workers}, event_timeout = \"{timeout}\" }}\n");
    for i in 0..6 {
        t.push_str(&format!(
            "[[module]]\nname = \"m{i}\"\naliases = [\"virtual:d{i}\"]\n[[module.init]]\nstep = \"s\"\nrun = [{{ sleep = \"{sleep}\" }}]\n[[device]]\nname = \"d{i}\"\nbus = \"virtual\"\nmodalias = \"virtual:d{i}\"\n"
        ));
    }
    t
}

#[test]
fn udev_runs_one_modprobe_per_uevent_within_its_worker_limit() {
    let r = run("linux-6.1", &udev_file(2, "1s", "180s"));
    assert!(r.kernel.init_calls.iter().all(|&n| n == 1));
    assert!(
        r.end_time >= 3_000_000_000 && r.end_time < 3_100_000_000,
        "{}",
        r.end_time
    );
    let r = run("linux-6.1", &udev_file(6, "1s", "180s"));
    assert!(r.end_time < 1_100_000_000, "{}", r.end_time);
}

#[test]
fn udev_kills_a_worker_past_its_event_timeout() {
    let r = run("linux-6.1", &udev_file(8, "5s", "2s"));
    let killed = log(&r)
        .iter()
        .filter(|l| l.starts_with("systemd-udevd: d") && l.ends_with(" killed"))
        .count();
    assert_eq!(killed, 6, "{:?}", log(&r));
    // finit_module's init goes on: the modules load all the same.
    assert!(r.kernel.instances.iter().all(|i| i
        .as_ref()
        .is_some_and(|i| i.state == modkit_core::ModState::Live)));
}

#[test]
fn bad_device_keys_are_clear_errors() {
    let e = err("[[device]]\nname = \"x\"\nbus = \"usb\"\n");
    assert!(
        e.contains("no bus is named `usb`") && e.contains("[[bus]]"),
        "{e}"
    );
    let e = err("[[device]]\nname = \"gvt\"\nbus = \"auxiliary\"\n");
    assert!(e.contains("modname.devname.id"), "{e}");
    let e = err(
        "[[module]]\nname = \"a\"\n[[module.init]]\nstep = \"s\"\nrun = [{ need = \"clk:x\" }]\n",
    );
    assert!(e.contains("belongs in a driver's `probe`"), "{e}");
    let e = err("[[event]]\nbind = \"x\"\n");
    assert!(e.contains("`bind` needs `driver"), "{e}");
    let e = err("[[module]]\nname = \"a\"\n[[module.driver]]\nbus = \"pci\"\n[[expect]]\ndevices = { x = \"bound:b\" }\n");
    assert!(e.contains("no driver is named `b`"), "{e}");
    let e =
        err("[[module]]\nname = \"a\"\n[[module.driver]]\nbus = \"pci\"\nmatch = [\"pci:[\"]\n");
    assert!(e.contains("not a valid glob"), "{e}");
    let e = err(
        "[[module]]\nname = \"a\"\n[[module.driver]]\nbus = \"pci\"\nprobe = [{ need = \"x\" }]\n",
    );
    assert!(e.contains("kind:name"), "{e}");
}

#[test]
fn the_driver_match_patterns_become_module_aliases() {
    let sc = parse(
        "t.toml",
        "[[module]]\nname = \"kvmgt\"\n[[module.driver]]\nbus = \"auxiliary\"\nmatch = [\"auxiliary:i915.gvt\"]\n",
    )
    .unwrap();
    let id = sc.db.id("kvmgt").unwrap();
    assert_eq!(sc.db.lookup("auxiliary:i915.gvt"), vec![id]);
    assert_eq!(sc.steps[id][0].name, "driver_register(kvmgt)");
}

#[test]
fn modkit_reports_a_deferral_nothing_can_satisfy_at_once() {
    let t = r#"
[[module]]
name = "cam"
[[module.driver]]
bus = "platform"
match = ["platform:cam"]
probe = [{ need = "clk:missing" }]
[[module]]
name = "pmic"
[[module.driver]]
bus = "platform"
match = ["platform:pmic"]
probe = [{ devm = "regulator:vdd" }]
[[device]]
name = "cam"
bus = "platform"
modalias = "platform:cam"
[[device]]
name = "cam2"
bus = "platform"
modalias = "platform:cam2"
[[event]]
modprobe = "cam"
"#;
    let r = run("modkit", t);
    let d: Vec<_> = r
        .kernel
        .diagnostics
        .iter()
        .filter(|d| d.kind == modkit_core::DiagKind::DeferredForever)
        .collect();
    assert_eq!(d.len(), 1, "{:?}", r.kernel.diagnostics);
    assert_eq!(d[0].time, 1_000_000, "at the probe, after modprobe_time");
    assert_eq!(d[0].chain[1], "probe by cam needs clk:missing");
    // Linux keeps it pending silently (the 5.19+ timeout names it later).
    let r = run("linux-6.1", t);
    assert!(r
        .kernel
        .diagnostics
        .iter()
        .all(|d| d.kind != modkit_core::DiagKind::DeferredForever));
    assert!(log(&r).contains(&"platform cam: deferred probe pending".to_string()));
    // A supplier some module provides is no such case.
    let t2 = t.replace("clk:missing", "regulator:vdd");
    let r = run("modkit", &t2);
    assert!(
        r.kernel.diagnostics.is_empty(),
        "{:?}",
        r.kernel.diagnostics
    );
}

#[test]
fn removing_a_device_waits_for_the_probe_in_progress() {
    // Found by the property test: device_del() while a probe sleeps on another task must
    // wait for the device lock, then unbind, not delete the device under the probe.
    let t = r#"
[[module]]
name = "slow"
[[module.driver]]
bus = "platform"
match = ["platform:x"]
probe = [{ sleep = "100ms" }, { devm = "misc:slow" }]
[[device]]
name = "x"
bus = "platform"
modalias = "platform:x"
[[event]]
modprobe = "slow"
[[event]]
id = "unplug"
at = "50ms"
remove_device = "x"
"#;
    let r = run("linux-6.1", t);
    assert_eq!(state(&r, "x"), "absent");
    assert!(!r.kernel.registrations.contains_key("misc:slow"));
    assert_eq!(r.results["unplug"], vec![modkit_core::Outcome::Ok]);
}

/// udevd's kill line carries the killed event's own sequence number (systemd's udevd.c,
/// on_event_timeout(): `log_device_error(event->dev, "Worker [" PID_FMT "] processing
/// SEQNUM=%" PRIu64 " killed", event->worker->pid, event->seqnum)`), not the latest
/// uevent's: with one worker, the six coldplug events are queued at once and each is
/// killed in turn with a number of its own, in queue order.
#[test]
fn udev_kill_line_names_the_events_own_seqnum() {
    let r = run("linux-6.1", &udev_file(1, "5s", "2s"));
    let seqs: Vec<(String, u64)> = log(&r)
        .iter()
        .filter(|l| l.starts_with("systemd-udevd: d") && l.ends_with(" killed"))
        .map(|l| {
            let dev = l["systemd-udevd: ".len()..]
                .split(':')
                .next()
                .unwrap()
                .to_string();
            let n = l
                .split("SEQNUM=")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap();
            (dev, n.parse().unwrap())
        })
        .collect();
    assert_eq!(seqs.len(), 6, "{:?}", log(&r));
    for (i, w) in seqs.windows(2).enumerate() {
        assert_eq!(w[1].1, w[0].1 + 1, "{i}: {seqs:?}");
    }
    let devs: Vec<&str> = seqs.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(devs, ["d0", "d1", "d2", "d3", "d4", "d5"]);
}
