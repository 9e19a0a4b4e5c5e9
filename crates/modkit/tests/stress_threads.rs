//! Concurrency on real threads: storms of modprobes of one module, the kmod selftests'
//! request_module limits (50, 58, 62 concurrent requests), load/unload races.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use modkit::{Errno, Host, HostHandle, Init, Module, Outcome};

fn slow(name: &str, ms: u64, fail: Option<Errno>, inits: Arc<AtomicUsize>) -> Module {
    Module::new(name).init_step("probe", move |_| {
        inits.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(ms));
        match fail {
            Some(e) => Err(e),
            None => Ok(Init::Continue),
        }
    })
}

fn storm(
    h: &HostHandle,
    n: usize,
    op: impl Fn(&HostHandle) -> Result<(), modkit::Error> + Send + Sync + 'static,
) -> Vec<Outcome> {
    let op = Arc::new(op);
    let barrier = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (h, op, b) = (h.clone(), op.clone(), barrier.clone());
            std::thread::spawn(move || {
                b.wait();
                match op(&h) {
                    Ok(()) => Outcome::Ok,
                    Err(e) => e.outcome,
                }
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn thousand_threads_modprobe_one_module_one_init_one_result() {
    let h = Host::new("modkit".parse().unwrap());
    let inits = Arc::new(AtomicUsize::new(0));
    h.add_module(slow("m", 200, None, inits.clone())).unwrap();
    let got = storm(&h, 1000, |h| h.modprobe("m"));
    assert!(got.iter().all(|o| o.is_ok()), "{got:?}");
    assert_eq!(inits.load(Ordering::SeqCst), 1);
    assert!(h.violations().is_empty());
}

#[test]
fn a_failing_init_storm_shares_one_result_under_modkit() {
    let h = Host::new("modkit".parse().unwrap());
    let inits = Arc::new(AtomicUsize::new(0));
    h.add_module(slow(
        "acpi_cpufreq",
        200,
        Some(Errno::ENODEV),
        inits.clone(),
    ))
    .unwrap();
    let got = storm(&h, 500, |h| h.modprobe("acpi_cpufreq"));
    assert!(got.iter().all(|o| *o == Outcome::Err(Errno::ENODEV)));
    assert_eq!(
        inits.load(Ordering::SeqCst),
        1,
        "every thread arrived within the 200 ms init"
    );
}

#[test]
fn a_failing_init_storm_is_serialised_under_linux_6_1() {
    let h = Host::new("linux-6.1".parse().unwrap());
    let inits = Arc::new(AtomicUsize::new(0));
    h.add_module(slow("acpi_cpufreq", 2, Some(Errno::ENODEV), inits.clone()))
        .unwrap();
    let got = storm(&h, 64, |h| h.modprobe("acpi_cpufreq"));
    assert!(got.iter().all(|o| *o == Outcome::Err(Errno::ENODEV)));
    assert_eq!(
        inits.load(Ordering::SeqCst),
        64,
        "era B: every loader makes its own attempt"
    );
    assert_eq!(h.lsmod()[0].init_calls, 64);
}

#[test]
fn a_failing_init_storm_gets_ebusy_under_linux_6_2() {
    let h = Host::new("linux-6.2".parse().unwrap());
    let inits = Arc::new(AtomicUsize::new(0));
    h.add_module(slow(
        "acpi_cpufreq",
        300,
        Some(Errno::ENODEV),
        inits.clone(),
    ))
    .unwrap();
    let got = storm(&h, 64, |h| h.modprobe("acpi_cpufreq"));
    let ebusy = got
        .iter()
        .filter(|o| **o == Outcome::Err(Errno::EBUSY))
        .count();
    let enodev = got
        .iter()
        .filter(|o| **o == Outcome::Err(Errno::ENODEV))
        .count();
    assert_eq!(ebusy + enodev, 64);
    assert_eq!(enodev, inits.load(Ordering::SeqCst));
    assert!(ebusy >= 1);
}

fn requests(policy: &str, n: usize) -> (Vec<Outcome>, Host) {
    let h = Host::new(policy.parse().unwrap());
    let inits = Arc::new(AtomicUsize::new(0));
    h.add_module(slow("test_module", 300, None, inits)).unwrap();
    let got = storm(&h, n, |h| h.request_module("test_module"));
    (got, h)
}

#[test]
fn kmod_limits_50_58_62_requests() {
    for n in [50, 58, 62] {
        // 6.4+: the extra requests wait for a slot (at most 5 s) and succeed.
        let (got, h) = requests("linux-6.4", n);
        assert!(got.iter().all(|o| o.is_ok()), "6.4 with {n}: {got:?}");
        assert!(h.violations().is_empty());
        // ≤ 4.12: the extra requests fail at once with ENOMEM.
        let (got, h) = requests("linux-4.12", n);
        let enomem = got
            .iter()
            .filter(|o| **o == Outcome::Err(Errno::ENOMEM))
            .count();
        assert_eq!(enomem, n - 50, "4.12 with {n}: {got:?}");
        if n > 50 {
            assert!(h
                .log()
                .iter()
                .any(|l| l == "request_module: runaway loop modprobe test_module"));
        }
        // modkit merges identical requests: one modprobe.
        let (got, _) = requests("modkit", n);
        assert!(got.iter().all(|o| o.is_ok()));
    }
}

#[test]
fn load_unload_races_keep_the_invariants() {
    let h = Host::new("modkit".parse().unwrap());
    h.add_module(Module::new("base").export("b", 7u32)).unwrap();
    h.add_module(
        Module::new("user")
            .import::<u32>("b")
            .init_step("use", |ctx| {
                let b = ctx.symbol::<u32>("b").map_err(|_| Errno::ENOENT)?;
                assert_eq!(*b, 7);
                Ok(Init::Continue)
            }),
    )
    .unwrap();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let h = h.clone();
            std::thread::spawn(move || {
                for _ in 0..200 {
                    match i % 4 {
                        0 => {
                            let _ = h.modprobe("user");
                        }
                        1 => {
                            let _ = h.rmmod("user");
                        }
                        2 => {
                            let _ = h.rmmod("base");
                        }
                        _ => {
                            if let Ok(s) = h.symbol::<u32>("b") {
                                assert_eq!(*s, 7);
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(h.violations().is_empty(), "{:?}", h.violations());
    for m in h.lsmod() {
        assert!(m.refcount >= 0);
        if m.state.is_none() {
            assert!(m.pinned_by.is_empty() && m.used_by.is_empty());
        }
    }
}
