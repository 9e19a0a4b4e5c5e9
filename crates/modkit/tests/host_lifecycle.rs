//! Issue 9 item 7 on real threads: the host's end (no `Arc` cycle through module code that
//! captured a `Host`), deadlines on operations and the watchdog. Each test has a time limit
//! so that a regression fails instead of hanging.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use modkit::{DiagKind, Errno, Host, HostHandle, Init, ModState, Module};

fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("hung: no result within the time limit")
}

/// An exported value that counts its drops.
struct Counted(Arc<AtomicUsize>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

const N: usize = 14;

/// 14 modules in a chain (m{i} imports m{i-1}'s value), each init capturing a `Host` clone
/// (it looks at the host while it runs), hammered by 4 threads loading and unloading.
fn stress(h: &HostHandle, drops: &Arc<AtomicUsize>) {
    for i in 0..N {
        let captured = h.clone();
        let mut m = Module::new(&format!("m{i}"))
            .export(&format!("v{i}"), Counted(drops.clone()))
            .init_step("look", move |_| {
                let _ = captured.lsmod();
                Ok(Init::Continue)
            });
        if i > 0 {
            m = m.import::<Counted>(&format!("v{}", i - 1));
        }
        h.add_module(m).unwrap();
    }
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let h = h.clone();
            std::thread::spawn(move || {
                let mut x: u64 = 0x9e37_79b9 + t;
                for _ in 0..300 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let name = format!("m{}", x % N as u64);
                    if x.is_multiple_of(3) {
                        let _ = h.rmmod(&name);
                    } else {
                        let _ = h.modprobe(&name);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn shutdown_frees_a_host_whose_module_code_captured_it() {
    let (dropped, freed, again) = within(120, || {
        let drops = Arc::new(AtomicUsize::new(0));
        let h = Host::new("modkit".parse().unwrap());
        let weak = h.downgrade();
        stress(&h, &drops);
        assert_eq!(h.violations(), Vec::<String>::new());
        // A reference still held: shutdown refuses, naming it, and changes nothing.
        h.modprobe("m3").unwrap();
        let pin = h.try_module_get("m3").unwrap();
        let e = h.shutdown().unwrap_err();
        assert_eq!(e.errno(), Some(Errno::EBUSY), "{e}");
        assert!(e.op.contains("m3"), "{e}");
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        drop(pin);
        h.shutdown().unwrap();
        assert!(h.lsmod().iter().all(|r| r.state.is_none()));
        let dropped = drops.load(Ordering::SeqCst);
        let again = h.modprobe("m0").unwrap_err().errno();
        drop(h);
        (dropped, weak.upgrade().is_none(), again)
    });
    assert_eq!(dropped, N, "every exported value dropped once");
    assert!(
        freed,
        "the host itself is freed once its last handle is gone"
    );
    assert_eq!(again, Some(Errno::EINVAL), "a shut-down host refuses loads");
}

/// Issue 9 item 7 / issue 11 item 6: a program that never calls shutdown and whose module
/// code captured handles: dropping the `Host` unloads everything (users first, undos run),
/// drops every value once and frees the host.
#[test]
fn dropping_the_host_frees_it_although_module_code_captured_handles() {
    let (dropped, freed, again, order) = within(120, || {
        let drops = Arc::new(AtomicUsize::new(0));
        let h = Host::new("modkit".parse().unwrap());
        let weak = h.downgrade();
        stress(&h, &drops);
        let order = Arc::new(Mutex::new(Vec::new()));
        for name in ["base", "user"] {
            let (o, captured) = (order.clone(), h.clone());
            let mut m = Module::new(name).init_step_with_undo(
                "s",
                |_| Ok(Init::Continue),
                move |_| {
                    let _ = captured.lsmod();
                    o.lock().unwrap().push(name)
                },
            );
            m = if name == "base" {
                m.export("b", 1u32)
            } else {
                m.import::<u32>("b")
            };
            h.add_module(m).unwrap();
        }
        h.modprobe("user").unwrap();
        for i in 0..N {
            h.modprobe(&format!("m{i}")).unwrap();
        }
        let other = h.clone();
        drop(h);
        let again = other.modprobe("m0").unwrap_err().errno();
        drop(other);
        let order = order.lock().unwrap().clone();
        (
            drops.load(Ordering::SeqCst),
            weak.upgrade().is_none(),
            again,
            order,
        )
    });
    assert_eq!(dropped, N, "every exported value dropped once");
    assert!(
        freed,
        "the host is freed: no cycle through captured handles"
    );
    assert_eq!(
        again,
        Some(Errno::EINVAL),
        "a handle of a dropped host is refused"
    );
    assert_eq!(
        order,
        vec!["user", "base"],
        "users unloaded first, with their undos"
    );
}

/// Dropping the `Host` while another thread is loading waits for that load, then unloads
/// it; a module pinned past the drop wait is left with a warning, its code still dropped.
#[test]
fn dropping_the_host_waits_for_loads_in_flight_and_bounds_the_wait_for_pins() {
    let (undone, pinned_left, elapsed) = within(60, || {
        let undone = Arc::new(AtomicUsize::new(0));
        let mut h = Host::new("modkit".parse().unwrap());
        h.set_drop_wait(Duration::from_millis(300));
        let (tx, rx) = mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(rx));
        let u = undone.clone();
        h.add_module(Module::new("slow").init_step_with_undo(
            "block",
            move |_| {
                let _ = gate.lock().unwrap().recv();
                Ok(Init::Continue)
            },
            move |_| {
                u.fetch_add(1, Ordering::SeqCst);
            },
        ))
        .unwrap();
        h.add_module(Module::new("held")).unwrap();
        h.modprobe("held").unwrap();
        let pin = h.try_module_get("held").unwrap();
        let loader = {
            let h = h.clone();
            std::thread::spawn(move || h.modprobe("slow"))
        };
        wait_coming(&h, "slow");
        let other = h.clone();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            tx.send(()).unwrap();
        });
        let t0 = Instant::now();
        drop(h);
        let elapsed = t0.elapsed();
        releaser.join().unwrap();
        loader.join().unwrap().unwrap();
        let left: Vec<_> = other
            .lsmod()
            .into_iter()
            .filter(|r| r.state.is_some())
            .map(|r| r.name)
            .collect();
        drop(pin);
        (undone.load(Ordering::SeqCst), left, elapsed)
    });
    assert_eq!(undone, 1, "the load in flight finished, then was unloaded");
    assert_eq!(
        pinned_left,
        vec!["held".to_string()],
        "the pinned module is left"
    );
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(20),
        "the drop waited for the pin about its drop wait: {elapsed:?}"
    );
}

#[test]
fn module_code_holding_a_weak_host_does_not_keep_it_alive() {
    let (dropped, freed) = within(60, || {
        let drops = Arc::new(AtomicUsize::new(0));
        let h = Host::new("modkit".parse().unwrap());
        let weak = h.downgrade();
        let inner = h.downgrade();
        h.add_module(
            Module::new("w")
                .export("v", Counted(drops.clone()))
                .init_step("look", move |_| {
                    let host = inner.upgrade().ok_or(Errno::ENODEV)?;
                    let _ = host.lsmod();
                    Ok(Init::Continue)
                }),
        )
        .unwrap();
        h.modprobe("w").unwrap();
        h.rmmod("w").unwrap();
        drop(h);
        (drops.load(Ordering::SeqCst), weak.upgrade().is_none())
    });
    assert_eq!(dropped, 1);
    assert!(freed);
}

/// A module whose init blocks until the test releases it.
fn blocking(name: &str, gate: Arc<Mutex<mpsc::Receiver<()>>>) -> Module {
    Module::new(name).init_step("block", move |_| {
        let _ = gate.lock().unwrap().recv();
        Ok(Init::Continue)
    })
}

fn wait_coming(h: &HostHandle, name: &str) {
    for _ in 0..10_000 {
        if h.lsmod()
            .iter()
            .any(|r| r.name == name && r.state == Some(ModState::Coming))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("{name} never came");
}

#[test]
fn a_modprobe_deadline_ends_the_wait_for_a_load_in_flight() {
    let (err, took, loader) = within(60, || {
        let h = Host::new("modkit".parse().unwrap());
        let (tx, rx) = mpsc::channel();
        h.add_module(blocking("slow", Arc::new(Mutex::new(rx))))
            .unwrap();
        let h2 = h.clone();
        let loader = std::thread::spawn(move || h2.modprobe("slow"));
        wait_coming(&h, "slow");
        let t0 = Instant::now();
        let err = h
            .modprobe_with("slow", Duration::from_millis(100))
            .unwrap_err();
        let took = t0.elapsed();
        tx.send(()).unwrap();
        (err, took, loader.join().unwrap())
    });
    assert_eq!(err.errno(), Some(Errno::ETIME), "{err}");
    assert!(took >= Duration::from_millis(100), "{took:?}");
    let d = err
        .diagnostics
        .iter()
        .find(|d| d.kind == DiagKind::Timeout)
        .expect("a timeout diagnostic");
    assert!(d.chain.iter().any(|c| c.contains("modprobe slow")), "{d}");
    loader.expect("the load in flight is not disturbed");
}

#[test]
fn a_default_deadline_applies_to_every_operation() {
    let (err, loader) = within(60, || {
        let h = Host::new("modkit".parse().unwrap());
        let (tx, rx) = mpsc::channel();
        h.add_module(blocking("slow", Arc::new(Mutex::new(rx))))
            .unwrap();
        let h2 = h.clone();
        let loader = std::thread::spawn(move || h2.modprobe("slow"));
        wait_coming(&h, "slow");
        h.set_default_deadline(Some(Duration::from_millis(50)));
        let err = h.request_module("slow").unwrap_err();
        tx.send(()).unwrap();
        (err, loader.join().unwrap())
    });
    assert_eq!(err.errno(), Some(Errno::ETIME), "{err}");
    loader.unwrap();
}

#[test]
fn the_watchdog_reports_a_stall_and_ends_the_stuck_operation() {
    let (err, kinds, loader) = within(60, || {
        let h = Host::new("modkit".parse().unwrap());
        let (tx, rx) = mpsc::channel();
        h.add_module(blocking("stuck", Arc::new(Mutex::new(rx))))
            .unwrap();
        let h2 = h.clone();
        let loader = std::thread::spawn(move || h2.modprobe("stuck"));
        wait_coming(&h, "stuck");
        h.start_watchdog(Duration::from_millis(80));
        // No deadline: without the watchdog this waits until the init returns.
        let err = h.modprobe("stuck").unwrap_err();
        let kinds: Vec<DiagKind> = h.diagnostics().iter().map(|d| d.kind).collect();
        tx.send(()).unwrap();
        (err, kinds, loader.join().unwrap())
    });
    assert_eq!(err.errno(), Some(Errno::ETIME), "{err}");
    let d = err
        .diagnostics
        .iter()
        .find(|d| d.kind == DiagKind::Stalled)
        .expect("the stall is in the error");
    assert!(!d.chain.is_empty(), "{d}");
    assert!(kinds.contains(&DiagKind::Stalled));
    loader.unwrap();
}
