//! modkit's probe wait and a bus match that defers, on the host's driver core (real
//! threads, real clock): the rules are `modkit_core::probewait` and
//! `modkit_core::matchdefer`; the simulator runs the same (examples/scenarios/
//! device-policy.toml, stories 1 and 2).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use modkit::{Device, DeviceDriver, Errno, Host, Init, Module};

const WAIT_LINE: &str =
    "cam0: probe by cam waits for module pll's load to end (it provides clk:pll) instead of deferring";

fn has(host: &Host, line: &str) -> bool {
    host.log().iter().any(|l| l == line)
}

/// Waits (up to 20 s) until `f` holds.
fn until(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// pll's init blocks on `go` before it registers clk:pll; cam's driver needs clk:pll.
fn pll_and_cam(policy: &str) -> (Host, mpsc::Sender<()>, mpsc::Receiver<()>) {
    let host = Host::new(policy.parse().unwrap());
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let go_rx = std::sync::Mutex::new(go_rx);
    host.add_module(
        Module::new("pll")
            .provides("clk:pll")
            .init_step("calibrate", move |_| {
                started_tx.send(()).unwrap();
                go_rx.lock().unwrap().recv().unwrap();
                Ok(Init::Continue)
            })
            .init_step("register", |ctx| {
                ctx.register("clk:pll")?;
                Ok(Init::Continue)
            }),
    )
    .unwrap();
    host.add_module(
        Module::new("cam").driver(
            DeviceDriver::new("cam", "platform")
                .matches("of:cam")
                .probe(|ctx| {
                    ctx.need("clk:pll").map_err(|e| e.errno().unwrap())?;
                    ctx.devm_resource("video:cam0")
                        .map_err(|e| e.errno().unwrap())
                }),
        ),
    )
    .unwrap();
    host.add_device(Device::new("cam0", "platform").modalias("of:cam"))
        .unwrap();
    (host, go_tx, started_rx)
}

#[test]
fn a_need_waits_for_its_loading_provider_and_binds_at_its_init_end() {
    let (host, go, started) = pll_and_cam("modkit");
    let h = host.handle();
    let pll = std::thread::spawn(move || h.modprobe("pll"));
    started.recv().unwrap();
    // pll is COMING: cam's probe (in cam's init, on this thread) waits for it. Let pll go
    // once the wait has begun.
    let h = host.handle();
    let release = std::thread::spawn(move || {
        until("the wait line", || h.log().iter().any(|l| l == WAIT_LINE));
        go.send(()).unwrap();
    });
    host.modprobe("cam").unwrap();
    // cam's load ended only after its probe bound cam0: at pll's init end.
    assert_eq!(host.device_state("cam0").unwrap(), "bound:cam");
    pll.join().unwrap().unwrap();
    release.join().unwrap();
    assert!(has(&host, WAIT_LINE), "{:?}", host.log());
    assert!(
        has(
            &host,
            "cam0: clk:pll is there after module pll's load: the probe goes on"
        ),
        "{:?}",
        host.log()
    );
    assert!(host.violations().is_empty(), "{:?}", host.violations());
}

#[test]
fn under_linux_the_need_defers_while_its_provider_loads() {
    let (host, go, started) = pll_and_cam("linux-6.12");
    let h = host.handle();
    let pll = std::thread::spawn(move || h.modprobe("pll"));
    started.recv().unwrap();
    host.modprobe("cam").unwrap();
    assert_eq!(host.device_state("cam0").unwrap(), "deferred");
    go.send(()).unwrap();
    pll.join().unwrap().unwrap();
    host.settle();
    // Nothing retries it: no probe bound since, and the timeout is 10 s away.
    assert_eq!(host.device_state("cam0").unwrap(), "deferred");
    assert!(
        !host.log().iter().any(|l| l.contains("waits for module")),
        "{:?}",
        host.log()
    );
}

/// pll's first init step adds cam0, whose probe (by cam, loaded already) runs on pll's own
/// init task and needs what pll's second step registers.
fn probe_inside_provider_init(policy: &str) -> Host {
    let host = Host::new(policy.parse().unwrap());
    host.add_module(
        Module::new("cam").driver(
            DeviceDriver::new("cam", "platform")
                .matches("of:cam")
                .probe(|ctx| ctx.need("clk:pll").map_err(|e| e.errno().unwrap())),
        ),
    )
    .unwrap();
    host.add_module(
        Module::new("pll")
            .provides("clk:pll")
            .init_step("add cam0", |ctx| {
                ctx.host()
                    .add_device(Device::new("cam0", "platform").modalias("of:cam"))?;
                Ok(Init::Continue)
            })
            .init_step("register", |ctx| {
                ctx.register("clk:pll")?;
                Ok(Init::Continue)
            }),
    )
    .unwrap();
    host.modprobe("cam").unwrap();
    host.modprobe("pll").unwrap();
    host.settle();
    host
}

#[test]
fn a_wait_that_would_close_a_cycle_defers_and_is_retried_when_the_provider_is_live() {
    let host = probe_inside_provider_init("modkit");
    assert_eq!(host.device_state("cam0").unwrap(), "bound:cam");
    let log = host.log();
    for line in [
        "cam0: probe by cam does not wait for module pll (which provides clk:pll): its load cannot end before this probe does; deferred, retried when pll is live",
        "cam0: clk:pll is there now: the deferred probe is retried at once",
    ] {
        assert!(log.iter().any(|l| l == line), "{line}: {log:?}");
    }
    assert!(
        !log.iter().any(|l| l.contains("instead of deferring")),
        "{log:?}"
    );
    assert!(host.violations().is_empty(), "{:?}", host.violations());
}

#[test]
fn under_linux_the_cycle_case_stays_deferred_until_a_trigger() {
    let host = probe_inside_provider_init("linux-6.1");
    assert_eq!(host.device_state("cam0").unwrap(), "deferred");
    // The next successful probe triggers the pending list.
    host.add_module(
        Module::new("other").driver(DeviceDriver::new("other", "platform").matches("of:x")),
    )
    .unwrap();
    host.modprobe("other").unwrap();
    host.add_device(Device::new("x0", "platform").modalias("of:x"))
        .unwrap();
    host.settle();
    assert_eq!(host.device_state("cam0").unwrap(), "bound:cam");
}

/// Story 2: pl011's probe fails (ENOENT) until the clock is there; uart0's match defers
/// until clk:apb_pclk, which clkc's probe of `clocks` registers.
struct Amba {
    host: Host,
    probes: Arc<AtomicUsize>,
}

fn amba(policy: &str, device_first: bool) -> Amba {
    let host = Host::new(policy.parse().unwrap());
    host.add_bus("amba").unwrap();
    let clock = Arc::new(AtomicBool::new(false));
    let probes = Arc::new(AtomicUsize::new(0));
    let (c, p) = (clock.clone(), probes.clone());
    host.add_module(
        Module::new("pl011").driver(
            DeviceDriver::new("pl011", "amba")
                .matches("amba:d00041011")
                .probe(move |_| {
                    p.fetch_add(1, Ordering::SeqCst);
                    if c.load(Ordering::SeqCst) {
                        Ok(())
                    } else {
                        Err(Errno::ENOENT)
                    }
                }),
        ),
    )
    .unwrap();
    host.add_module(
        Module::new("clkc").driver(
            DeviceDriver::new("clkc", "platform")
                .matches("of:clkc")
                .probe(move |ctx| {
                    ctx.devm_resource("clk:apb_pclk")
                        .map_err(|e| e.errno().unwrap())?;
                    clock.store(true, Ordering::SeqCst);
                    Ok(())
                }),
        ),
    )
    .unwrap();
    let uart = Device::new("uart0", "amba")
        .modalias("amba:d00041011")
        .match_defer("clk:apb_pclk");
    if device_first {
        host.add_device(uart.clone()).unwrap();
        host.modprobe("pl011").unwrap();
    } else {
        host.modprobe("pl011").unwrap();
        host.add_device(uart).unwrap();
    }
    host.settle();
    Amba { host, probes }
}

impl Amba {
    fn clock_comes(&self) {
        self.host.modprobe("clkc").unwrap();
        self.host
            .add_device(Device::new("clocks", "platform").modalias("of:clkc"))
            .unwrap();
        self.host.settle();
    }
}

const FAILED: &str = "failed with error -2";

#[test]
fn a_deferring_match_before_4_5_is_a_match() {
    for first in [true, false] {
        let a = amba("linux-4.4", first);
        assert_eq!(a.probes.load(Ordering::SeqCst), 1, "device first: {first}");
        assert_eq!(a.host.device_state("uart0").unwrap(), "unbound");
        assert!(
            a.host.log().iter().any(|l| l.contains(FAILED)),
            "{:?}",
            a.host.log()
        );
        a.clock_comes();
        // Not on the pending list: nothing retries it.
        assert_eq!(a.host.device_state("uart0").unwrap(), "unbound");
        assert_eq!(a.probes.load(Ordering::SeqCst), 1);
    }
}

#[test]
fn a_deferring_match_from_4_5_to_5_19_pends_and_probes_anyway() {
    for first in [true, false] {
        let a = amba("linux-5.10", first);
        assert_eq!(a.probes.load(Ordering::SeqCst), 1, "device first: {first}");
        assert_eq!(a.host.device_state("uart0").unwrap(), "deferred");
        assert!(
            a.host.log().iter().any(|l| l.contains(FAILED)),
            "{:?}",
            a.host.log()
        );
        a.clock_comes();
        assert_eq!(a.host.device_state("uart0").unwrap(), "bound:pl011");
        assert_eq!(a.probes.load(Ordering::SeqCst), 2);
    }
}

#[test]
fn a_deferring_match_from_6_0_and_under_modkit_pends_without_a_probe() {
    for policy in ["linux-6.1", "modkit"] {
        for first in [true, false] {
            let a = amba(policy, first);
            assert_eq!(a.probes.load(Ordering::SeqCst), 0, "{policy} {first}");
            assert_eq!(a.host.device_state("uart0").unwrap(), "deferred");
            a.clock_comes();
            assert_eq!(a.host.device_state("uart0").unwrap(), "bound:pl011");
            assert_eq!(a.probes.load(Ordering::SeqCst), 1);
            assert!(
                !a.host.log().iter().any(|l| l.contains("failed")),
                "{:?}",
                a.host.log()
            );
        }
    }
}

#[test]
fn a_sysfs_bind_probes_a_deferring_match_in_every_era() {
    for policy in ["linux-4.4", "linux-5.10", "linux-6.1", "modkit"] {
        let a = amba(policy, true);
        let before = a.probes.load(Ordering::SeqCst);
        let e = a.host.bind("uart0", "pl011").unwrap_err();
        assert_eq!(e.errno(), Some(Errno::ENOENT), "{policy}");
        assert_eq!(a.probes.load(Ordering::SeqCst), before + 1, "{policy}");
        let log = a.host.log();
        assert!(log.iter().any(|l| l.contains(FAILED)), "{policy}: {log:?}");
    }
}
