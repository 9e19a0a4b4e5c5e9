//! Property tests for the host's device invariants, on random operations from several
//! threads: a device is bound to at most one driver; no probe or remove of a driver whose
//! module is not present (and the core's check: no probe unless the module is COMING or
//! LIVE); managed resources released exactly once and after the remove; every device
//! unbound before its driver's module goes. The core records what it sees broken in
//! `violations()`; the probe and remove closures check the rest.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use modkit::{Device, DeviceDriver, Devres, Errno, Host, Init, Module};
use proptest::prelude::*;

const DEVICES: [(&str, &str); 5] = [
    ("a0", "pt:a0"),
    ("b0", "pt:b0"),
    ("ax", "pt:ax"),
    ("bx", "pt:bx"),
    ("an", "pt:an"),
];
const MODULES: [&str; 3] = ["ma", "mb", "mr"];
const DRIVERS: [&str; 2] = ["da", "db"];

#[derive(Debug, Clone)]
enum Op {
    Modprobe(usize),
    Rmmod(usize),
    Add(usize),
    Remove(usize),
    Bind(usize, usize),
    Unbind(usize),
    Use(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize).prop_map(Op::Modprobe),
        (0..3usize).prop_map(Op::Rmmod),
        (0..5usize).prop_map(Op::Add),
        (0..5usize).prop_map(Op::Remove),
        (0..5usize, 0..2usize).prop_map(|(d, r)| Op::Bind(d, r)),
        (0..5usize).prop_map(Op::Unbind),
        (0..5usize).prop_map(Op::Use),
    ]
}

/// A managed value that counts its creations and drops.
struct Tracked {
    dropped: Arc<AtomicUsize>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct World {
    /// device → driver, as the probes and removes see it.
    bound: Mutex<HashMap<String, String>>,
    /// The latest managed value of each device.
    res: Mutex<HashMap<String, Devres<Tracked>>>,
    created: AtomicUsize,
    dropped: Arc<AtomicUsize>,
    broken: Mutex<Vec<String>>,
}

impl World {
    fn broke(&self, s: String) {
        self.broken.lock().unwrap().push(s);
    }
}

fn module_present(ctx: &modkit::ProbeCtx<'_>, m: &str) -> bool {
    ctx.host()
        .lsmod()
        .iter()
        .any(|r| r.name == m && r.state.is_some())
}

fn driver(w: &Arc<World>, name: &'static str, module: &'static str, pattern: &str) -> DeviceDriver {
    let (wp, wr) = (w.clone(), w.clone());
    DeviceDriver::new(name, "pt")
        .matches(pattern)
        .matches("pt:*x")
        .matches("pt:an")
        .probe(move |ctx| {
            let dev = ctx.device_name();
            if !module_present(ctx, module) {
                wp.broke(format!(
                    "probe of {dev} by {name} while {module} is not present"
                ));
            }
            if let Some(other) = wp.bound.lock().unwrap().get(&dev) {
                wp.broke(format!("probe of {dev} by {name} while bound to {other}"));
            }
            std::thread::yield_now(); // widen the window for the other threads
            if dev == "an" {
                ctx.need("reg:r")?;
            }
            wp.created.fetch_add(1, Ordering::SeqCst);
            let r = ctx.devm_named(
                "tracked",
                Tracked {
                    dropped: wp.dropped.clone(),
                },
            )?;
            wp.res.lock().unwrap().insert(dev.clone(), r);
            if dev == "b0" && name == "da" {
                return Err(Errno::ENXIO); // silent failure; the next driver may try
            }
            wp.bound.lock().unwrap().insert(dev, name.to_string());
            Ok(())
        })
        .remove(move |ctx| {
            let dev = ctx.device_name();
            if !module_present(ctx, module) {
                wr.broke(format!("remove of {dev} by {name} while {module} is gone"));
            }
            match wr.bound.lock().unwrap().remove(&dev) {
                Some(d) if d == name => {}
                other => wr.broke(format!("remove of {dev} by {name}, bound to {other:?}")),
            }
            if let Some(r) = wr.res.lock().unwrap().get(&dev) {
                if r.is_revoked() {
                    wr.broke(format!("{dev}'s managed value revoked before remove"));
                }
            }
        })
}

/// A module with one driver and, before its registration step, a step whose undo checks
/// that the exit's `driver_unregister()` left no device bound to the driver.
fn driver_module(w: &Arc<World>, m: &'static str, d: &'static str, pattern: &str) -> Module {
    let wu = w.clone();
    Module::new(m)
        .init_step_with_undo(
            "setup",
            |_| Ok(Init::Continue),
            move |_| {
                let b = wu.bound.lock().unwrap();
                if let Some((dev, _)) = b.iter().find(|(_, drv)| drv.as_str() == d) {
                    wu.broke(format!("{m} goes while {dev} is bound to {d}"));
                }
            },
        )
        .driver(driver(w, d, m, pattern))
}

fn run(policy: &str, threads: Vec<Vec<Op>>) -> Result<(), TestCaseError> {
    let w = Arc::new(World::default());
    let host = Host::new(policy.parse().unwrap());
    host.set_unbind_stall_after(Duration::from_secs(5));
    host.add_bus("pt").unwrap();
    host.add_module(driver_module(&w, "ma", "da", "pt:a*"))
        .unwrap();
    host.add_module(driver_module(&w, "mb", "db", "pt:b*"))
        .unwrap();
    host.add_module(Module::new("mr").init_step_with_undo(
        "reg",
        |ctx| {
            ctx.register("reg:r")?;
            Ok(Init::Continue)
        },
        |ctx| {
            let _ = ctx.unregister("reg:r");
        },
    ))
    .unwrap();
    std::thread::scope(|s| {
        for ops in threads {
            let h = host.handle();
            let w = w.clone();
            s.spawn(move || {
                for op in ops {
                    let _ = match op {
                        Op::Modprobe(m) => h.modprobe(MODULES[m]),
                        Op::Rmmod(m) => h.rmmod(MODULES[m]),
                        Op::Add(d) => {
                            h.add_device(Device::new(DEVICES[d].0, "pt").modalias(DEVICES[d].1))
                        }
                        Op::Remove(d) => h.remove_device(DEVICES[d].0),
                        Op::Bind(d, r) => h.bind(DEVICES[d].0, DRIVERS[r]),
                        Op::Unbind(d) => h.unbind(DEVICES[d].0),
                        Op::Use(d) => {
                            let r = w.res.lock().unwrap().get(DEVICES[d].0).cloned();
                            if let Some(g) = r.as_ref().and_then(|r| r.try_access()) {
                                std::thread::yield_now();
                                drop(g);
                            }
                            Ok(())
                        }
                    };
                }
            });
        }
    });
    host.settle();
    // At rest: every device bound to a registered driver of a present module, resources
    // released at most once so far.
    modkit::driver::Driver::of(&host).device_model(|k, dm| {
        dm.check_bound(k);
        dm.check_devres(k);
    });
    let v = host.violations();
    prop_assert!(v.is_empty(), "violations: {v:?}\n{}", host.devices_text());
    // Each device the host shows bound is bound in the closures' view too.
    for r in host.devices() {
        let mine = w.bound.lock().unwrap().get(&r.device).cloned();
        prop_assert_eq!(
            r.driver.clone().filter(|_| r.state == "bound"),
            mine,
            "{}",
            r.device
        );
    }
    drop(host); // unloads every module: their exits unbind every device
    let b = w.broken.lock().unwrap().clone();
    prop_assert!(b.is_empty(), "broken: {b:?}");
    prop_assert!(
        w.bound.lock().unwrap().is_empty(),
        "still bound after the host's end"
    );
    w.res.lock().unwrap().clear();
    prop_assert_eq!(
        w.created.load(Ordering::SeqCst),
        w.dropped.load(Ordering::SeqCst),
        "every managed value dropped once"
    );
    Ok(())
}

proptest! {
    // 64 cases in CI; MODKIT_DEVICE_PROP_CASES=N for a long run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("MODKIT_DEVICE_PROP_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn device_invariants_hold_under_random_concurrent_operations(
        policy in prop_oneof![Just("modkit"), Just("linux-6.12"), Just("linux-5.15")],
        threads in proptest::collection::vec(proptest::collection::vec(op(), 1..24), 2..5),
    ) {
        run(policy, threads)?;
    }
}
