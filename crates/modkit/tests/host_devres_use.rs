//! `HostHandle::devres_use`: a use in flight of a device's managed resource by name (what a
//! scenario's `use_devres` does on the host), on the real clock.

use std::time::Duration;

use modkit::{Device, DeviceDriver, Errno, Host, Module};

fn host(policy: &str) -> Host {
    let h = Host::new(policy.parse().unwrap());
    h.add_bus("endpoint").unwrap();
    h.add_module(
        Module::new("m").driver(
            DeviceDriver::new("m", "endpoint")
                .matches("endpoint:m")
                .probe(|ctx| {
                    ctx.devm_resource("drm:card0")
                        .map_err(|e| e.errno().unwrap())
                }),
        ),
    )
    .unwrap();
    h.modprobe("m").unwrap();
    h.add_device(Device::new("d", "endpoint").modalias("endpoint:m"))
        .unwrap();
    h
}

#[test]
fn a_use_is_refused_once_the_device_is_unbound() {
    let h = host("modkit");
    assert_eq!(
        h.devres_use("nothing").unwrap_err().errno(),
        Some(Errno::ENXIO)
    );
    drop(h.devres_use("drm:card0").unwrap());
    h.unbind("d").unwrap();
    assert_eq!(
        h.devres_use("drm:card0").unwrap_err().errno(),
        Some(Errno::ENXIO)
    );
}

#[test]
fn under_linux_a_real_clock_unbind_waits_for_the_use() {
    let h = host("linux-6.12");
    let user = h.devres_use("drm:card0").unwrap();
    let h2 = h.clone();
    let unbinder = std::thread::spawn(move || h2.unbind("d"));
    std::thread::sleep(Duration::from_millis(60));
    assert!(
        !unbinder.is_finished(),
        "the unbind did not wait for the use"
    );
    drop(user);
    unbinder.join().unwrap().unwrap();
    assert_eq!(h.device_state("d").unwrap(), "unbound");
}

#[test]
fn under_modkit_a_real_clock_unbind_reports_a_use_that_outlives_its_bound() {
    let h = host("modkit");
    h.set_unbind_stall_after(Duration::from_millis(30));
    let user = h.devres_use("drm:card0").unwrap();
    h.unbind("d").unwrap();
    drop(user);
    let stall = h
        .diagnostics()
        .into_iter()
        .find(|d| d.kind == modkit::DiagKind::Stalled)
        .expect("a stall");
    assert!(stall.message.contains("drm:card0"), "{stall}");
}
