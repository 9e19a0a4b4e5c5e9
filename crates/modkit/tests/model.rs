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

/// The device model: a user of a device's managed resource, an unbind and an rmmod race;
/// neither the unbind nor the rmmod (whose exit unbinds) returns while the user holds a
/// guard, the remove runs before the revocation, and the core sees no broken invariant.
#[test]
fn unbind_and_rmmod_wait_for_devres_users() {
    use modkit::{Device, DeviceDriver, Devres};
    use std::sync::Mutex;
    shuttle::check_random(
        || {
            let h = Host::new("linux-6.12".parse().unwrap());
            h.set_deferred_probe_timeout(None);
            h.add_bus("ep").unwrap();
            let slot: Arc<Mutex<Option<Devres<u32>>>> = Arc::default();
            let removed_before_revoke = Arc::new(AtomicBool::new(true));
            let (s, s2, rb) = (slot.clone(), slot.clone(), removed_before_revoke.clone());
            h.add_module(
                Module::new("m").driver(
                    DeviceDriver::new("m", "ep")
                        .matches("ep:*")
                        .probe(move |ctx| {
                            *s.lock().unwrap() = Some(ctx.devm(5u32)?);
                            Ok(())
                        })
                        .remove(move |_| {
                            if let Some(r) = s2.lock().unwrap().as_ref() {
                                if r.is_revoked() {
                                    rb.store(false, Ordering::SeqCst);
                                }
                            }
                        }),
                ),
            )
            .unwrap();
            h.modprobe("m").unwrap();
            h.add_device(Device::new("d", "ep").modalias("ep:d"))
                .unwrap();
            let res = slot.lock().unwrap().clone().unwrap();
            let released = Arc::new(AtomicBool::new(false));
            let user = {
                let (res, released) = (res.clone(), released.clone());
                thread::spawn(move || {
                    for _ in 0..2 {
                        if let Some(g) = res.try_access() {
                            thread::yield_now();
                            assert!(!released.load(Ordering::SeqCst), "unbound under a guard");
                            assert_eq!(*g, 5);
                        }
                    }
                })
            };
            let unbinder = {
                let (h, released) = (h.clone(), released.clone());
                thread::spawn(move || {
                    if h.unbind("d").is_ok() {
                        released.store(true, Ordering::SeqCst);
                    }
                })
            };
            if h.rmmod("m").is_ok() {
                released.store(true, Ordering::SeqCst);
            }
            user.join().unwrap();
            unbinder.join().unwrap();
            assert!(res.is_revoked());
            assert!(removed_before_revoke.load(Ordering::SeqCst));
            assert_eq!(h.device_state("d").unwrap(), "unbound");
            assert!(h.violations().is_empty(), "{:?}", h.violations());
        },
        ITERATIONS,
    );
}
