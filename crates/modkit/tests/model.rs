//! Model-checked tests (shuttle): the host's refcount, state and revoke logic under
//! randomly explored thread interleavings, on shuttle's Mutex/Condvar/threads. Run with
//! `cargo test -p modkit --release --features shuttle --test model`.
//!
//! shuttle does not model time (a timed wait never times out), so these cases use the
//! untimed waits: merged loads, pins and rmmod --wait, and revoke.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use modkit::{Errno, Host, Init, Module, Outcome, Revocable, Rmmod};
use shuttle::thread;

const ITERATIONS: usize = 300;

fn host() -> Host {
    Host::new("modkit".parse().unwrap())
}

#[test]
fn concurrent_modprobes_share_one_init() {
    shuttle::check_random(
        || {
            let h = host();
            let inits = Arc::new(AtomicUsize::new(0));
            let i2 = inits.clone();
            h.add_module(Module::new("m").init_step("probe", move |_| {
                i2.fetch_add(1, Ordering::SeqCst);
                thread::yield_now();
                Ok(Init::Continue)
            }))
            .unwrap();
            let ts: Vec<_> = (0..3)
                .map(|_| {
                    let h = h.clone();
                    thread::spawn(move || h.modprobe("m"))
                })
                .collect();
            for t in ts {
                t.join().unwrap().unwrap();
            }
            assert_eq!(inits.load(Ordering::SeqCst), 1);
            assert!(h.violations().is_empty());
        },
        ITERATIONS,
    );
}

#[test]
fn a_failed_init_is_shared_and_never_frees_a_pinned_module() {
    shuttle::check_random(
        || {
            let h = host();
            h.add_module(Module::new("m").init_step("probe", |_| {
                thread::yield_now();
                Err(Errno::ENODEV)
            }))
            .unwrap();
            let loaders: Vec<_> = (0..2)
                .map(|_| {
                    let h = h.clone();
                    thread::spawn(move || h.modprobe("m").unwrap_err().outcome)
                })
                .collect();
            // A reference taken while the module may be COMING.
            let pinner = {
                let h = h.clone();
                thread::spawn(move || {
                    if let Ok(r) = h.try_module_get("m") {
                        thread::yield_now();
                        drop(r);
                    }
                })
            };
            for t in loaders {
                assert_eq!(t.join().unwrap(), Outcome::Err(Errno::ENODEV));
            }
            pinner.join().unwrap();
            assert!(h.violations().is_empty(), "{:?}", h.violations());
        },
        ITERATIONS,
    );
}

#[test]
fn rmmod_wait_never_frees_while_a_symbol_is_held() {
    shuttle::check_random(
        || {
            let h = host();
            h.add_module(Module::new("lib").export("v", 7u32)).unwrap();
            h.modprobe("lib").unwrap();
            let in_use = Arc::new(AtomicBool::new(false));
            let user = {
                let (h, in_use) = (h.clone(), in_use.clone());
                thread::spawn(move || {
                    if let Ok(v) = h.symbol::<u32>("v") {
                        in_use.store(true, Ordering::SeqCst);
                        thread::yield_now();
                        assert_eq!(*v, 7, "the value is there while the handle lives");
                        in_use.store(false, Ordering::SeqCst);
                    }
                })
            };
            let unloader = {
                let (h, in_use) = (h.clone(), in_use.clone());
                thread::spawn(move || {
                    h.rmmod_with(
                        "lib",
                        Rmmod {
                            wait: true,
                            deadline: None,
                            force: false,
                        },
                    )
                    .unwrap();
                    assert!(
                        !in_use.load(Ordering::SeqCst),
                        "unloaded while a handle was in use"
                    );
                })
            };
            user.join().unwrap();
            unloader.join().unwrap();
            assert!(h.violations().is_empty(), "{:?}", h.violations());
            assert!(h.lsmod()[0].state.is_none());
        },
        ITERATIONS,
    );
}

#[test]
fn load_unload_and_lookup_race() {
    shuttle::check_random(
        || {
            let h = host();
            h.add_module(Module::new("base").export("b", 1u8)).unwrap();
            h.add_module(Module::new("user").import::<u8>("b")).unwrap();
            let ts = vec![
                {
                    let h = h.clone();
                    thread::spawn(move || {
                        let _ = h.modprobe("user");
                    })
                },
                {
                    let h = h.clone();
                    thread::spawn(move || {
                        let _ = h.rmmod("user");
                        let _ = h.rmmod("base");
                    })
                },
                {
                    let h = h.clone();
                    thread::spawn(move || {
                        let _ = h.symbol::<u8>("b");
                    })
                },
            ];
            for t in ts {
                t.join().unwrap();
            }
            assert!(h.violations().is_empty(), "{:?}", h.violations());
            for m in h.lsmod() {
                assert!(m.refcount >= 0);
                if m.state.is_none() {
                    assert!(m.pinned_by.is_empty() && m.used_by.is_empty());
                }
            }
        },
        ITERATIONS,
    );
}

#[test]
fn revoke_refuses_new_access_and_waits_for_accesses_in_flight() {
    shuttle::check_random(
        || {
            let r = Revocable::new(5u32);
            let active = Arc::new(AtomicUsize::new(0));
            let revoked = Arc::new(AtomicBool::new(false));
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    let (r, active, revoked) = (r.clone(), active.clone(), revoked.clone());
                    thread::spawn(move || {
                        if let Some(g) = r.try_access() {
                            assert!(
                                !revoked.load(Ordering::SeqCst),
                                "access granted after revoke returned"
                            );
                            active.fetch_add(1, Ordering::SeqCst);
                            thread::yield_now();
                            assert_eq!(*g, 5);
                            active.fetch_sub(1, Ordering::SeqCst);
                        }
                    })
                })
                .collect();
            let rr = r.clone();
            let (a2, rv2) = (active.clone(), revoked.clone());
            let revoker = thread::spawn(move || {
                assert!(rr.revoke());
                assert_eq!(
                    a2.load(Ordering::SeqCst),
                    0,
                    "revoke returned with an access in flight"
                );
                rv2.store(true, Ordering::SeqCst);
            });
            for t in readers {
                t.join().unwrap();
            }
            revoker.join().unwrap();
            assert!(r.try_access().is_none());
        },
        ITERATIONS,
    );
}
