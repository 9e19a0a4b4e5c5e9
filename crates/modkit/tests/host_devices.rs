//! The host's device model: drivers declared by modules, devices added and removed at run
//! time, probe/remove closures, deferred probe, Devres revoked on unbind.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use modkit::{Device, DeviceDriver, Devres, Errno, Host, Module};

fn host(policy: &str) -> Host {
    let h = Host::new(policy.parse().unwrap());
    h.add_bus("endpoint").unwrap();
    h
}

#[derive(Default)]
struct Calls {
    log: Mutex<Vec<String>>,
}

impl Calls {
    fn push(&self, s: String) {
        self.log.lock().unwrap().push(s);
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.log.lock().unwrap())
    }
}

fn tracing_driver(name: &str, pattern: &str, calls: &Arc<Calls>) -> DeviceDriver {
    let (p, r) = (calls.clone(), calls.clone());
    let n1 = name.to_string();
    let n2 = name.to_string();
    DeviceDriver::new(name, "endpoint")
        .matches(pattern)
        .probe(move |ctx| {
            p.push(format!("probe {} by {n1}", ctx.device_name()));
            Ok(())
        })
        .remove(move |ctx| r.push(format!("remove {} by {n2}", ctx.device_name())))
}

#[test]
fn module_init_registers_the_driver_and_exit_unbinds() {
    let host = host("modkit");
    let calls = Arc::new(Calls::default());
    host.add_module(Module::new("httpd").driver(tracing_driver(
        "httpd",
        "endpoint:http:*",
        &calls,
    )))
    .unwrap();
    host.add_device(Device::new("ep0", "endpoint").modalias("endpoint:http:/api"))
        .unwrap();
    assert_eq!(host.device_state("ep0").unwrap(), "unbound");
    // The pattern is the module's alias: modprobe by modalias loads it; its init's
    // driver_register step probes ep0 (the module is still COMING).
    host.modprobe("endpoint:http:/api").unwrap();
    assert_eq!(calls.take(), vec!["probe ep0 by httpd"]);
    assert_eq!(host.device_state("ep0").unwrap(), "bound:httpd");
    // A device added later binds at once.
    host.add_device(Device::new("ep1", "endpoint").modalias("endpoint:http:/b"))
        .unwrap();
    assert_eq!(calls.take(), vec!["probe ep1 by httpd"]);
    // Bound devices do not pin the module: rmmod unbinds through the exit, newest first.
    host.rmmod("httpd").unwrap();
    assert_eq!(
        calls.take(),
        vec!["remove ep1 by httpd", "remove ep0 by httpd"]
    );
    assert_eq!(host.device_state("ep0").unwrap(), "unbound");
    assert!(host.violations().is_empty(), "{:?}", host.violations());
}

#[test]
fn unbind_bind_and_remove_device_follow_sysfs() {
    let host = host("linux-6.12");
    let calls = Arc::new(Calls::default());
    host.add_module(Module::new("httpd").driver(tracing_driver(
        "httpd",
        "endpoint:http:*",
        &calls,
    )))
    .unwrap();
    host.modprobe("httpd").unwrap();
    host.add_device(Device::new("ep0", "endpoint").modalias("endpoint:http:/"))
        .unwrap();
    host.add_device(Device::new("x", "endpoint").modalias("endpoint:ftp:/"))
        .unwrap();
    calls.take();
    assert_eq!(
        host.bind("ep0", "httpd").unwrap_err().errno(),
        Some(Errno::EBUSY)
    );
    assert_eq!(
        host.bind("x", "httpd").unwrap_err().errno(),
        Some(Errno::ENODEV)
    );
    assert_eq!(host.unbind("x").unwrap_err().errno(), Some(Errno::ENODEV));
    host.unbind("ep0").unwrap();
    assert_eq!(host.unbind("ep0").unwrap_err().errno(), Some(Errno::ENODEV));
    host.bind("ep0", "httpd").unwrap();
    host.remove_device("ep0").unwrap();
    assert_eq!(host.device_state("ep0").unwrap(), "absent");
    assert_eq!(
        host.remove_device("ep0").unwrap_err().errno(),
        Some(Errno::ENODEV)
    );
    assert_eq!(
        calls.take(),
        vec![
            "remove ep0 by httpd",
            "probe ep0 by httpd",
            "remove ep0 by httpd"
        ]
    );
    assert_eq!(
        host.add_device(Device::new("y", "nobus"))
            .unwrap_err()
            .errno(),
        Some(Errno::EINVAL)
    );
    assert!(host.violations().is_empty(), "{:?}", host.violations());
}

#[test]
fn probe_errors_follow_dd_c() {
    let host = host("linux-6.1");
    host.add_module(
        Module::new("a")
            .driver(
                DeviceDriver::new("first", "endpoint")
                    .matches("endpoint:*")
                    .probe(|_| Err(Errno::ENOMEM)),
            )
            .driver(
                DeviceDriver::new("quiet", "endpoint")
                    .matches("endpoint:*")
                    .probe(|_| Err(Errno::ENODEV)),
            )
            .driver(DeviceDriver::new("last", "endpoint").matches("endpoint:*")),
    )
    .unwrap();
    host.modprobe("a").unwrap();
    host.add_device(Device::new("e", "endpoint").modalias("endpoint:x"))
        .unwrap();
    assert_eq!(host.device_state("e").unwrap(), "bound:last");
    let log = host.log();
    assert!(
        log.iter()
            .any(|l| l == "first: probe of e failed with error -12"),
        "{log:?}"
    );
    assert!(!log.iter().any(|l| l.contains("quiet")), "{log:?}");
}

#[test]
fn devres_is_revoked_after_remove_and_on_a_failed_probe() {
    let host = host("modkit");
    let slot: Arc<Mutex<Vec<Devres<String>>>> = Arc::default();
    let order = Arc::new(Calls::default());
    let (s, o) = (slot.clone(), order.clone());
    let fail = Arc::new(AtomicUsize::new(1));
    let f = fail.clone();
    host.add_module(
        Module::new("m").driver(
            DeviceDriver::new("m", "endpoint")
                .matches("endpoint:m")
                .probe(move |ctx| {
                    let r = ctx.devm_named("handler", "h".to_string())?;
                    s.lock().unwrap().push(r);
                    if f.fetch_sub(1, Ordering::SeqCst) == 1 {
                        return Err(Errno::ENOMEM);
                    }
                    Ok(())
                })
                .remove({
                    let s = slot.clone();
                    move |_| {
                        let r = s.lock().unwrap().last().cloned().unwrap();
                        o.push(format!("remove sees revoked={}", r.is_revoked()));
                    }
                }),
        ),
    )
    .unwrap();
    host.modprobe("m").unwrap();
    host.add_device(Device::new("d", "endpoint").modalias("endpoint:m"))
        .unwrap();
    // The first probe failed: its resource is revoked at once.
    assert_eq!(host.device_state("d").unwrap(), "unbound");
    assert!(slot.lock().unwrap()[0].is_revoked());
    host.bind("d", "m").unwrap();
    let r = slot.lock().unwrap()[1].clone();
    assert_eq!(&*r.try_access().unwrap(), "h");
    host.unbind("d").unwrap();
    assert_eq!(order.take(), vec!["remove sees revoked=false"]);
    assert!(r.is_revoked());
    assert!(host.violations().is_empty(), "{:?}", host.violations());
}

#[test]
fn an_unbind_with_a_user_in_flight_reports_a_stall_under_modkit() {
    let host = host("modkit");
    host.set_unbind_stall_after(Duration::from_millis(50));
    let slot: Arc<Mutex<Option<Devres<u32>>>> = Arc::default();
    let s = slot.clone();
    host.add_module(
        Module::new("m").driver(
            DeviceDriver::new("m", "endpoint")
                .matches("endpoint:m")
                .probe(move |ctx| {
                    *s.lock().unwrap() = Some(ctx.devm_named("counter", 7u32)?);
                    Ok(())
                }),
        ),
    )
    .unwrap();
    host.modprobe("m").unwrap();
    host.add_device(Device::new("d", "endpoint").modalias("endpoint:m"))
        .unwrap();
    let res = slot.lock().unwrap().clone().unwrap();
    let guard = res.try_access().unwrap();
    host.unbind("d").unwrap(); // does not hang
    assert!(res.try_access().is_none());
    assert_eq!(*guard, 7);
    drop(guard);
    let d = host.diagnostics();
    let stall = d
        .iter()
        .find(|d| d.kind == modkit::DiagKind::Stalled)
        .expect("a stall");
    assert!(stall.message.contains("counter"), "{stall}");
    assert!(stall.chain.iter().any(|c| c == "device d"));
    assert!(stall.chain.iter().any(|c| c == "driver m"));
}

#[test]
fn a_deferred_probe_is_retried_after_the_next_successful_probe() {
    let host = host("modkit");
    host.add_module(
        Module::new("consumer").driver(
            DeviceDriver::new("consumer", "endpoint")
                .matches("endpoint:c")
                .probe(|ctx| {
                    ctx.need_with("device:sup", false, Some("supplier sup not bound"))?;
                    Ok(())
                }),
        ),
    )
    .unwrap();
    host.add_module(
        Module::new("supplier")
            .driver(DeviceDriver::new("supplier", "endpoint").matches("endpoint:s")),
    )
    .unwrap();
    host.modprobe("consumer").unwrap();
    host.add_device(Device::new("c", "endpoint").modalias("endpoint:c"))
        .unwrap();
    assert_eq!(host.device_state("c").unwrap(), "deferred");
    let row = host
        .devices()
        .into_iter()
        .find(|r| r.device == "c")
        .unwrap();
    assert_eq!(row.reason.as_deref(), Some("waits for device:sup"));
    host.add_device(Device::new("sup", "endpoint").modalias("endpoint:s"))
        .unwrap();
    host.modprobe("supplier").unwrap(); // binds sup, which triggers the deferred work
    host.settle();
    assert_eq!(host.device_state("c").unwrap(), "bound:consumer");
    // The managed link: unbinding the supplier unbinds its consumer first.
    host.unbind("sup").unwrap();
    assert_eq!(host.device_state("c").unwrap(), "unbound");
    assert!(host.violations().is_empty(), "{:?}", host.violations());
}

#[test]
fn the_deferred_probe_timeout_prints_the_pending_devices() {
    let host = host("linux-6.12");
    host.set_deferred_probe_timeout(Some(Duration::from_millis(50)));
    host.add_module(
        Module::new("cam").driver(
            DeviceDriver::new("cam", "endpoint")
                .matches("endpoint:cam")
                .probe(|ctx| {
                    ctx.need_with("regulator:vdd", false, Some("no vdd"))?;
                    Ok(())
                }),
        ),
    )
    .unwrap();
    host.add_device(Device::new("cam0", "endpoint").modalias("endpoint:cam"))
        .unwrap();
    host.modprobe("cam").unwrap();
    assert_eq!(host.device_state("cam0").unwrap(), "deferred");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !host
        .log()
        .iter()
        .any(|l| l.contains("deferred probe pending"))
    {
        assert!(std::time::Instant::now() < deadline, "{:?}", host.log());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(host
        .log()
        .contains(&"endpoint cam0: deferred probe pending: no vdd".to_string()));
    // A new timeout starts the timer again.
    host.set_deferred_probe_timeout(Some(Duration::from_millis(20)));
    let pending = |h: &Host| {
        h.log()
            .iter()
            .filter(|l| l.contains("deferred probe pending"))
            .count()
    };
    while pending(&host) < 2 {
        assert!(std::time::Instant::now() < deadline, "{:?}", host.log());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn auxiliary_devices_are_named_and_matched_as_auxiliary_c_does() {
    let host = host("modkit");
    host.add_module(
        Module::new("i915").driver(
            DeviceDriver::new("i915", "pci")
                .matches("pci:v00008086*")
                .probe(|ctx| {
                    ctx.add_device(Device::auxiliary("i915", "gvt", 0))?;
                    Ok(())
                })
                .remove(|ctx| {
                    let _ = ctx.remove_device("i915.gvt.0");
                }),
        ),
    )
    .unwrap();
    host.add_module(
        Module::new("kvmgt")
            .driver(DeviceDriver::new("kvmgt", "auxiliary").matches("auxiliary:i915.gvt")),
    )
    .unwrap();
    host.set_device_autoload(true);
    host.add_device(Device::new("0000:00:02.0", "pci").modalias("pci:v00008086d00003E92"))
        .unwrap();
    // udev's role: i915 loads for the PCI device, its probe adds i915.gvt.0, whose
    // modalias loads kvmgt, which binds it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while host.device_state("i915.gvt.0").as_deref() != Some("bound:kvmgt") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            host.devices_text()
        );
        host.settle();
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(host.device_state("0000:00:02.0").unwrap(), "bound:i915");
    host.rmmod("kvmgt").unwrap();
    host.rmmod("i915").unwrap();
    assert_eq!(host.device_state("i915.gvt.0").unwrap(), "absent");
    assert!(host.violations().is_empty(), "{:?}", host.violations());
}

#[test]
fn a_probe_that_unbinds_its_own_device_is_refused() {
    let host = host("modkit");
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    host.add_module(
        Module::new("m").driver(
            DeviceDriver::new("m", "endpoint")
                .matches("endpoint:m")
                .probe(move |ctx| {
                    let name = ctx.device_name();
                    *s.lock().unwrap() = ctx
                        .host()
                        .remove_device(&name)
                        .err()
                        .and_then(|e| e.errno());
                    Ok(())
                }),
        ),
    )
    .unwrap();
    host.modprobe("m").unwrap();
    host.add_device(Device::new("d", "endpoint").modalias("endpoint:m"))
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), Some(Errno::EDEADLK));
    assert_eq!(host.device_state("d").unwrap(), "bound:m");
}

#[test]
fn a_probe_that_never_returns_is_reported_and_the_waiter_gives_up_under_modkit() {
    let host = host("modkit");
    host.set_unbind_stall_after(Duration::from_millis(50));
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let rx = Mutex::new(rx);
    host.add_module(
        Module::new("slow").driver(
            DeviceDriver::new("slow", "endpoint")
                .matches("endpoint:slow")
                .probe(move |_| {
                    let _ = rx.lock().unwrap().recv();
                    Ok(())
                }),
        ),
    )
    .unwrap();
    host.modprobe("slow").unwrap();
    let h = host.clone();
    let adder = std::thread::spawn(move || {
        h.add_device(Device::new("d", "endpoint").modalias("endpoint:slow"))
    });
    while host.device_state("d").as_deref() != Some("probing") {
        std::thread::yield_now();
    }
    let e = host.unbind("d").unwrap_err();
    assert_eq!(e.errno(), Some(Errno::ETIME));
    let stall = e
        .diagnostics
        .iter()
        .find(|d| d.kind == modkit::DiagKind::Stalled)
        .expect("a stall diagnostic");
    assert!(
        stall.chain.contains(&"callback probe".to_string()),
        "{stall}"
    );
    tx.send(()).unwrap();
    adder.join().unwrap().unwrap();
    host.unbind("d").unwrap();
}

#[test]
fn async_drivers_probe_on_a_worker() {
    let host = host("modkit");
    let main = std::thread::current().id();
    let other = Arc::new(AtomicUsize::new(0));
    let o = other.clone();
    host.add_module(
        Module::new("a").driver(
            DeviceDriver::new("a", "endpoint")
                .matches("endpoint:a")
                .async_probe()
                .probe(move |_| {
                    if std::thread::current().id() != main {
                        o.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(())
                }),
        ),
    )
    .unwrap();
    host.add_device(Device::new("d0", "endpoint").modalias("endpoint:a"))
        .unwrap();
    host.modprobe("a").unwrap();
    host.add_device(Device::new("d1", "endpoint").modalias("endpoint:a"))
        .unwrap();
    host.settle();
    assert_eq!(host.device_state("d0").unwrap(), "bound:a");
    assert_eq!(host.device_state("d1").unwrap(), "bound:a");
    assert_eq!(other.load(Ordering::SeqCst), 2);
}

#[test]
fn drivers_are_checked_when_the_module_is_added() {
    let host = host("modkit");
    let e = host
        .add_module(Module::new("m").driver(DeviceDriver::new("m", "usb9")))
        .unwrap_err();
    assert_eq!(e.errno(), Some(Errno::EINVAL));
    assert!(e.op.contains("usb9"), "{e}");
    let e = host
        .add_module(Module::new("m").driver(DeviceDriver::new("m", "endpoint").matches("[")))
        .unwrap_err();
    assert!(e.op.contains("not a valid glob"), "{e}");
    host.add_module(Module::new("m").driver(DeviceDriver::new("m", "endpoint")))
        .unwrap();
    let e = host
        .add_module(Module::new("n").driver(DeviceDriver::new("m", "endpoint")))
        .unwrap_err();
    assert!(e.op.contains("exists already"), "{e}");
}

#[test]
fn a_dropped_host_with_drivers_is_freed_and_its_timer_stopped() {
    let host = host("modkit");
    let calls = Arc::new(Calls::default());
    let h = host.clone(); // captured by module code: must not keep the host alive
    host.add_module(
        Module::new("m").driver(tracing_driver("m", "endpoint:*", &calls).probe(move |_| {
            let _ = h.lsmod();
            Ok(())
        })),
    )
    .unwrap();
    host.add_device(Device::new("d", "endpoint").modalias("endpoint:d"))
        .unwrap();
    host.modprobe("m").unwrap(); // starts the deferred-probe timer (10 s under modkit)
    let weak = host.downgrade();
    let t = std::time::Instant::now();
    drop(host);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "drop waited for the timer"
    );
    assert!(weak.upgrade().is_none(), "the host leaked");
    assert_eq!(calls.take(), vec!["remove d by m"]);
}

#[test]
fn under_linux_an_unbind_waits_for_the_user_in_flight() {
    let host = host("linux-6.12");
    host.set_unbind_stall_after(Duration::from_millis(10)); // not used under linux-X.Y
    let slot: Arc<Mutex<Option<Devres<u32>>>> = Arc::default();
    let s = slot.clone();
    host.add_module(
        Module::new("m").driver(
            DeviceDriver::new("m", "endpoint")
                .matches("endpoint:m")
                .probe(move |ctx| {
                    *s.lock().unwrap() = Some(ctx.devm(1u32)?);
                    Ok(())
                }),
        ),
    )
    .unwrap();
    host.modprobe("m").unwrap();
    host.add_device(Device::new("d", "endpoint").modalias("endpoint:m"))
        .unwrap();
    let res = slot.lock().unwrap().clone().unwrap();
    let guard = res.try_access().unwrap();
    let h = host.clone();
    let t = std::time::Instant::now();
    let unbinder = std::thread::spawn(move || h.unbind("d"));
    std::thread::sleep(Duration::from_millis(60));
    assert!(!unbinder.is_finished(), "the unbind did not wait");
    drop(guard);
    unbinder.join().unwrap().unwrap();
    assert!(t.elapsed() >= Duration::from_millis(60));
    assert!(!host
        .diagnostics()
        .iter()
        .any(|d| d.kind == modkit::DiagKind::Stalled));
}

/// Seed 004's hot-unplug deadlock: a user holds the device's resource (an ioctl in flight)
/// and waits for the device while an unbind waits for that user. Under modkit both waits
/// are bounded: the unbind reports the resource and goes on, and nothing hangs.
#[test]
fn a_user_in_flight_that_waits_for_the_unbinding_device_does_not_deadlock_under_modkit() {
    let host = host("modkit");
    host.set_unbind_stall_after(Duration::from_millis(50));
    let slot: Arc<Mutex<Option<Devres<u32>>>> = Arc::default();
    let s = slot.clone();
    host.add_module(
        Module::new("m").driver(
            DeviceDriver::new("m", "endpoint")
                .matches("endpoint:m")
                .probe(move |ctx| {
                    *s.lock().unwrap() = Some(ctx.devm_named("ioctl", 0u32)?);
                    Ok(())
                }),
        ),
    )
    .unwrap();
    host.modprobe("m").unwrap();
    host.add_device(Device::new("d", "endpoint").modalias("endpoint:m"))
        .unwrap();
    let res = slot.lock().unwrap().clone().unwrap();
    let guard = res.try_access().unwrap(); // the ioctl in flight
    let h = host.clone();
    let unbinder = std::thread::spawn(move || h.unbind("d"));
    while host.device_state("d").as_deref() != Some("removing") {
        if unbinder.is_finished() {
            break;
        }
        std::thread::yield_now();
    }
    // The ioctl now wants the device (say, it unbinds it itself).
    let mine = host.unbind("d");
    drop(guard);
    let theirs = unbinder.join().unwrap();
    assert!(theirs.is_ok(), "{theirs:?}");
    // Either it gave up waiting (ETIME) or the other unbind ended first: the device was
    // unbound, which is what it asked for (unbind_store() checks the driver before it
    // takes the lock).
    assert!(
        mine.is_ok() || mine.as_ref().unwrap_err().errno() == Some(Errno::ETIME),
        "{mine:?}"
    );
    let stalls: Vec<_> = host
        .diagnostics()
        .into_iter()
        .filter(|d| d.kind == modkit::DiagKind::Stalled)
        .collect();
    // The unbind names the resource, or the waiting unbind names the release in progress.
    assert!(
        stalls.iter().any(|d| d.message.contains("`ioctl`")
            || d.chain
                .contains(&"devres release: users in flight".to_string())),
        "{stalls:?}"
    );
    assert_eq!(host.device_state("d").unwrap(), "unbound");
}

/// The engine seam (what modkit-hostdriver builds on): driver code as a `DeviceCode`
/// object, device operations as a given task, and the deferred-probe timeout on the
/// virtual clock (it fires when every thread is parked, at 10 s of virtual time).
#[test]
fn engines_drive_devices_as_tasks_on_the_virtual_clock() {
    use modkit::driver::{DeviceCode, Driver};
    use modkit::{Clock, ProbeCtx};

    struct Deferring;
    impl DeviceCode for Deferring {
        fn probe(&self, ctx: &mut ProbeCtx<'_>) -> Result<(), Errno> {
            ctx.devm_resource("clk")?;
            ctx.need_with("regulator:vdd", false, Some("no vdd"))?;
            Ok(())
        }
        fn remove(&self, _ctx: &mut ProbeCtx<'_>) {}
    }

    let db = modkit_core::ModuleDb::new(Vec::new()).unwrap();
    let d = Driver::new(
        modkit_core::Kernel::new(db, "modkit".parse().unwrap()),
        Clock::Virtual,
    );
    let host = d.host().clone();
    host.add_bus("endpoint").unwrap();
    host.add_module(
        Module::new("cam").driver(
            DeviceDriver::new("cam", "endpoint")
                .matches("endpoint:cam")
                .code(Arc::new(Deferring)),
        ),
    )
    .unwrap();
    let t = d.new_task("event: add cam0");
    d.add_device(t, Device::new("cam0", "endpoint").modalias("endpoint:cam"))
        .unwrap();
    host.modprobe("cam").unwrap(); // starts the timer: due 10 s after the registration
    d.finish_task(t, Some(modkit::Outcome::Ok));
    d.wait_idle();
    assert!(
        d.vclock() >= 10_000_000_000,
        "the clock moved to the timeout"
    );
    assert!(
        host.log()
            .contains(&"endpoint cam0: deferred probe pending: no vdd".to_string()),
        "{:?}",
        host.log()
    );
    d.device_model(|k, dm| {
        dm.check_devres(k);
        assert_eq!(
            dm.devres.live.len(),
            0,
            "the failed probes released their resources"
        );
    });
    assert!(host.violations().is_empty(), "{:?}", host.violations());
}

/// A gate an async probe blocks on until the test opens it; `started` counts the probes
/// that reached it.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cv: std::sync::Condvar,
    started: AtomicUsize,
}

impl Gate {
    fn pass(&self) {
        self.started.fetch_add(1, Ordering::SeqCst);
        let mut g = self.open.lock().unwrap();
        while !*g {
            g = self.cv.wait(g).unwrap();
        }
    }
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
    fn wait_started(&self, n: usize) {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while self.started.load(Ordering::SeqCst) < n {
            assert!(
                std::time::Instant::now() < until,
                "the async probes never ran"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Waits (up to 10 s) until module `name` is LIVE and still holds a reference: its load
/// waits in `async_synchronize_full()`.
fn wait_live_and_held(host: &Host, name: &str) {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let held = host
            .lsmod()
            .into_iter()
            .any(|m| m.name == name && m.state == Some(modkit::ModState::Live) && m.refcount >= 1);
        if held {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "{name} never waited LIVE"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `do_init_module()`'s `async_synchronize_full()`: the load of a module whose init
/// scheduled async probes returns only when they end, holding the module's reference
/// meanwhile (rmmod: EWOULDBLOCK); from 5.18 every load waits for all async work in
/// flight, before (and under modkit) a load whose init scheduled none does not.
#[test]
fn a_load_waits_for_the_async_probes_after_its_init() {
    for (policy, others_wait) in [
        ("modkit", false),
        ("linux-5.17", false),
        ("linux-5.18", true),
        ("linux-6.1", true),
    ] {
        let host = host(policy);
        let gate = Arc::new(Gate::default());
        let g = gate.clone();
        host.add_module(
            Module::new("a").driver(
                DeviceDriver::new("a", "endpoint")
                    .matches("endpoint:a")
                    .async_probe()
                    .probe(move |_| {
                        g.pass();
                        Ok(())
                    }),
            ),
        )
        .unwrap();
        host.add_module(Module::new("other")).unwrap();
        for d in ["d0", "d1"] {
            host.add_device(Device::new(d, "endpoint").modalias("endpoint:a"))
                .unwrap();
        }
        let h = host.handle();
        let load_a = std::thread::spawn(move || h.modprobe("a"));
        gate.wait_started(2);
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !load_a.is_finished(),
            "{policy}: modprobe a returned before its probes"
        );
        wait_live_and_held(&host, "a");
        let e = host.rmmod("a").unwrap_err();
        assert_eq!(e.errno(), Some(Errno::EWOULDBLOCK), "{policy}: {e}");
        let h = host.handle();
        let load_other = std::thread::spawn(move || h.modprobe("other"));
        // A load that does not wait ends at once; one that waits is still there after
        // 100 ms (the gate is closed).
        let until =
            std::time::Instant::now() + Duration::from_millis(if others_wait { 100 } else { 5000 });
        while !load_other.is_finished() && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        let waited = !load_other.is_finished();
        assert_eq!(
            waited, others_wait,
            "{policy}: other's load waited: {waited}"
        );
        if others_wait {
            wait_live_and_held(&host, "other");
            let e = host.rmmod("other").unwrap_err();
            assert_eq!(e.errno(), Some(Errno::EWOULDBLOCK), "{policy}: {e}");
        } else {
            host.rmmod("other").unwrap();
        }
        gate.open();
        load_a.join().unwrap().unwrap();
        load_other.join().unwrap().unwrap();
        if others_wait {
            host.rmmod("other").unwrap();
        }
        assert_eq!(host.device_state("d0").unwrap(), "bound:a", "{policy}");
        assert_eq!(host.device_state("d1").unwrap(), "bound:a", "{policy}");
        host.rmmod("a").unwrap();
    }
}
