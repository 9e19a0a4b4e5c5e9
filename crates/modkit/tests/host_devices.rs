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
