//! Model-checked tests (shuttle) of the plugin unload path: the real `loader.rs` logic
//! (registration, link, owned threads stopped and joined, reap: close, then the
//! still-mapped check) driven by a fake [`DynLoader`] whose "library" is a plugin declared
//! in this file with `modkit::plugin!`. shuttle explores the schedules of threads that
//! hold and drop `Symbol` handles and pins while others rmmod (with wait) and reload.
//!
//! Asserted in every schedule: the fake library is never closed while a `Symbol` handle
//! lives, while a call into it is running or before its owned thread has returned; no call
//! and no owned thread ever runs in a closed library; `rmmod --wait` always completes once
//! the last handle drops (a lost wakeup is a deadlock, which shuttle reports); both calls
//! through one held handle run the same build; the first load after an `rmmod --wait` runs
//! the file "installed" before it, even when a concurrent load overtakes the unload's
//! reap; at the end every open has its close and the library is reported closed.
//!
//! `cargo test -p modkit --release --features shuttle --test plugin_model`

use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use modkit::plugin::dl::DynLoader;
use modkit::plugin::{PluginStatus, Stop, DESCRIPTOR_SYMBOL};
use modkit::{Host, HostHandle, Rmmod};
use shuttle::thread;

const ITERATIONS: usize = 400;

/// Open handles of the fake library (it is "mapped" while this is above zero).
static MAPPED: AtomicUsize = AtomicUsize::new(0);
/// The build of the fake file on disk ("installing" a rebuilt plugin bumps it).
static FILE_BUILD: AtomicUsize = AtomicUsize::new(0);
/// The build the open mapping was read from (`get` returns `x + build`).
static MAPPED_BUILD: AtomicUsize = AtomicUsize::new(0);
static OPENS: AtomicUsize = AtomicUsize::new(0);
static CLOSES: AtomicUsize = AtomicUsize::new(0);
/// `Symbol` handles the test threads hold (counted after the get, before the drop).
static HELD: AtomicUsize = AtomicUsize::new(0);
/// Calls running inside the library.
static IN_CALL: AtomicUsize = AtomicUsize::new(0);
/// Owned threads started and not yet returned.
static WORKERS: AtomicUsize = AtomicUsize::new(0);
/// What went wrong inside the plugin (where a panic would be caught by its trampoline).
static BROKEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// The statics above are shared: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn broken(what: &str) {
    BROKEN.lock().unwrap().push(what.to_string());
}

fn run(stop: &Stop<'_>) {
    while !stop.stopped() {
        if MAPPED.load(SeqCst) == 0 {
            broken("an owned thread runs in a closed library");
        }
        thread::yield_now();
    }
    // A thread's way out takes time (its thread-locals' destructors run in the library).
    thread::yield_now();
    if MAPPED.load(SeqCst) == 0 {
        broken("an owned thread runs in a closed library");
    }
    WORKERS.fetch_sub(1, SeqCst);
}

modkit::plugin! {
    name: "fake",
    license: "MIT",
    aliases: ["fake-alias"],
    depends: [],
    imports: {},
    exports: {
        fn get(x: u64) -> u64 {
            IN_CALL.fetch_add(1, SeqCst);
            if MAPPED.load(SeqCst) == 0 {
                broken("a call into a closed library");
            }
            thread::yield_now();
            IN_CALL.fetch_sub(1, SeqCst);
            x + MAPPED_BUILD.load(SeqCst) as u64
        }
    },
    init: [
        "start" => |ctx| {
            WORKERS.fetch_add(1, SeqCst);
            if let Err(e) = ctx.spawn("worker", run) {
                WORKERS.fetch_sub(1, SeqCst);
                return Err(e);
            }
            Ok(())
        };
    ],
}

/// The fake dynamic loader: every open of `fake.so` "maps" this file's plugin.
struct Fake;

// SAFETY: the descriptor returned is this test binary's own static, alive for ever.
unsafe impl DynLoader for Fake {
    fn open(&self, _path: &Path) -> Result<usize, String> {
        // modkit opens a plugin's file once at a time (one handle per mapping).
        assert_eq!(
            MAPPED.fetch_add(1, SeqCst),
            0,
            "a second open of the library"
        );
        MAPPED_BUILD.store(FILE_BUILD.load(SeqCst), SeqCst);
        Ok(OPENS.fetch_add(1, SeqCst) + 1)
    }

    fn symbol(&self, _handle: usize, symbol: &str) -> *const c_void {
        assert!(MAPPED.load(SeqCst) > 0, "dlsym on a closed library");
        if symbol == DESCRIPTOR_SYMBOL {
            &__modkit_plugin::MODKIT_PLUGIN_DESCRIPTOR as *const _ as *const c_void
        } else {
            std::ptr::null()
        }
    }

    fn close(&self, _handle: usize) {
        assert_eq!(HELD.load(SeqCst), 0, "dlclose while a Symbol handle lives");
        assert_eq!(
            IN_CALL.load(SeqCst),
            0,
            "dlclose while a call runs in the library"
        );
        assert_eq!(
            WORKERS.load(SeqCst),
            0,
            "dlclose before the plugin's owned thread was joined"
        );
        let before = MAPPED.fetch_sub(1, SeqCst);
        assert!(before > 0, "dlclose of a library that is not open");
        CLOSES.fetch_add(1, SeqCst);
    }

    fn still_mapped(&self, _path: &Path) -> bool {
        MAPPED.load(SeqCst) > 0
    }

    fn modinfo(&self, _path: &Path) -> Result<Vec<(String, String)>, String> {
        Ok(__modkit_plugin::MODINFO
            .split(|&b| b == 0)
            .filter_map(|e| {
                let s = std::str::from_utf8(e).ok()?;
                let (k, v) = s.split_once('=')?;
                Some((k.to_string(), v.to_string()))
            })
            .collect())
    }
}

fn plugin_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("modkit-plugin-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("fake.so"), b"").unwrap();
    dir
}

fn reset() {
    for a in [
        &MAPPED,
        &OPENS,
        &CLOSES,
        &HELD,
        &IN_CALL,
        &WORKERS,
        &FILE_BUILD,
        &MAPPED_BUILD,
    ] {
        a.store(0, SeqCst);
    }
    BROKEN.lock().unwrap().clear();
}

fn host(dir: &Path) -> Host {
    Host::new("modkit".parse().unwrap())
        .with_plugin_loader(Arc::new(Fake))
        .with_plugin_dir(dir)
}

fn wait() -> Rmmod {
    Rmmod {
        wait: true,
        deadline: None,
        force: false,
    }
}

/// Takes the `get` symbol (if the plugin is live), calls it twice with a yield between
/// (both calls must run the same build), drops it; the build it ran.
fn use_symbol(h: &HostHandle) -> Option<u64> {
    let s = h.plugin_fn::<(u64,), u64>("get").ok()?;
    HELD.fetch_add(1, SeqCst);
    let a = s.call((10,)).unwrap() - 10;
    thread::yield_now();
    let b = s.call((20,)).unwrap() - 20;
    assert_eq!(a, b, "the library changed under a held Symbol");
    HELD.fetch_sub(1, SeqCst);
    drop(s);
    Some(a)
}

/// The end of every schedule: nothing open, every open closed, nothing broken.
fn check_clean(h: &HostHandle) {
    assert!(
        BROKEN.lock().unwrap().is_empty(),
        "{:?}",
        BROKEN.lock().unwrap()
    );
    assert_eq!(MAPPED.load(SeqCst), 0, "the library is still open");
    assert_eq!(
        OPENS.load(SeqCst),
        CLOSES.load(SeqCst),
        "an open without its close"
    );
    assert_eq!(WORKERS.load(SeqCst), 0, "an owned thread was not joined");
    assert!(matches!(
        h.plugin_status("fake"),
        None | Some(PluginStatus::Closed)
    ));
    assert!(h.violations().is_empty(), "{:?}", h.violations());
}

/// Runs `f` under shuttle's random scheduler and under PCT (which finds the schedules
/// where one thread runs far ahead of another, e.g. an unload racing to the close while
/// an owned thread has not yet returned).
fn explore(f: impl Fn() + Send + Sync + 'static) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let f = Arc::new(f);
    let g = f.clone();
    shuttle::check_random(move || g(), ITERATIONS);
    shuttle::check_pct(move || f(), ITERATIONS, 3);
}

#[test]
fn a_held_symbol_delays_the_close_and_rmmod_wait_completes() {
    let dir = plugin_dir();
    explore(move || {
        reset();
        let h = host(&dir);
        h.modprobe("fake-alias").unwrap();
        let user = {
            let h = h.clone();
            thread::spawn(move || {
                use_symbol(&h);
            })
        };
        let pinner = {
            let h = h.clone();
            thread::spawn(move || {
                if let Ok(r) = h.try_module_get("fake") {
                    HELD.fetch_add(1, SeqCst);
                    thread::yield_now();
                    HELD.fetch_sub(1, SeqCst);
                    drop(r);
                }
            })
        };
        let remover = {
            let h = h.clone();
            thread::spawn(move || h.rmmod_with("fake", wait()))
        };
        user.join().unwrap();
        pinner.join().unwrap();
        remover.join().unwrap().unwrap();
        assert_eq!(h.plugin_status("fake"), Some(PluginStatus::Closed));
        check_clean(&h);
    });
}

#[test]
fn reload_races_with_users_and_unloads() {
    let dir = plugin_dir();
    explore(move || {
        reset();
        let h = host(&dir);
        let loader = {
            let h = h.clone();
            thread::spawn(move || {
                for _ in 0..2 {
                    let _ = h.modprobe("fake");
                    use_symbol(&h);
                }
            })
        };
        let user = {
            let h = h.clone();
            thread::spawn(move || {
                let _ = h.modprobe("fake-alias");
                use_symbol(&h);
            })
        };
        let remover = {
            let h = h.clone();
            thread::spawn(move || {
                for _ in 0..2 {
                    let _ = h.rmmod_with("fake", wait());
                    thread::yield_now();
                }
            })
        };
        loader.join().unwrap();
        user.join().unwrap();
        remover.join().unwrap();
        if h.plugin_status("fake") == Some(PluginStatus::Open) {
            h.rmmod_with("fake", wait()).unwrap();
        }
        check_clean(&h);
    });
}

#[test]
fn a_load_after_rmmod_wait_runs_the_rebuilt_file() {
    let dir = plugin_dir();
    explore(move || {
        reset();
        let h = host(&dir);
        h.modprobe("fake").unwrap();
        let users: Vec<_> = (0..2)
            .map(|_| {
                let h = h.clone();
                thread::spawn(move || {
                    for _ in 0..2 {
                        let _ = h.modprobe("fake");
                        use_symbol(&h);
                    }
                })
            })
            .collect();
        let reloader = {
            let h = h.clone();
            thread::spawn(move || {
                // "Install" a rebuilt file, then unload: the next load must run it,
                // whoever loads it and however the reap interleaves with that load.
                let build = FILE_BUILD.fetch_add(1, SeqCst) as u64 + 1;
                h.rmmod_with("fake", wait()).unwrap();
                loop {
                    let _ = h.modprobe("fake");
                    if let Some(b) = use_symbol(&h) {
                        assert_eq!(b, build, "a load after the unload ran the old build");
                        break;
                    }
                    thread::yield_now();
                }
            })
        };
        for u in users {
            u.join().unwrap();
        }
        reloader.join().unwrap();
        h.rmmod_with("fake", wait()).unwrap();
        check_clean(&h);
    });
}

#[test]
fn a_forced_unload_keeps_the_library_open_until_the_last_symbol_drops() {
    let dir = plugin_dir();
    explore(move || {
        reset();
        let h = host(&dir);
        h.modprobe("fake").unwrap();
        let user = {
            let h = h.clone();
            thread::spawn(move || {
                use_symbol(&h);
            })
        };
        let forcer = {
            let h = h.clone();
            thread::spawn(move || {
                h.rmmod_with(
                    "fake",
                    Rmmod {
                        wait: false,
                        deadline: None,
                        force: true,
                    },
                )
            })
        };
        user.join().unwrap();
        forcer.join().unwrap().unwrap();
        check_clean(&h);
    });
}
