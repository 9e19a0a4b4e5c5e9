//! Issue 9 item 7 on real threads: the host's end (no `Arc` cycle through module code that
//! captured a `Host`), deadlines on operations and the watchdog. Each test has a time limit
//! so that a regression fails instead of hanging.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use modkit::{DiagKind, Errno, Host, Init, ModState, Module};

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
fn stress(h: &Host, drops: &Arc<AtomicUsize>) {
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

fn wait_coming(h: &Host, name: &str) {
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
