//! `plugin-host bench DIR`: modkit against a bare dlopen + dlsym of the same `.so`.

use std::ffi::{c_void, CString};
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use modkit::Host;

const N: u32 = 300;
const CALLS: u32 = 5_000_000;

fn per_iter(t: Instant, n: u32) -> f64 {
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

pub fn run(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let so = dir.join("mathcore.so");
    let c = CString::new(so.as_os_str().as_encoded_bytes())?;
    let sym = CString::new("MODKIT_PLUGIN_DESCRIPTOR")?;

    // Bare: dlopen + dlsym, then dlclose.
    let (mut open_ns, mut close_ns) = (0.0, 0.0);
    for _ in 0..N {
        let t = Instant::now();
        // SAFETY: a valid path; the handle is closed below.
        let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        assert!(!h.is_null());
        // SAFETY: a live handle.
        black_box(unsafe { libc::dlsym(h, sym.as_ptr()) });
        open_ns += per_iter(t, N);
        let t = Instant::now();
        // SAFETY: closed once.
        unsafe { libc::dlclose(h) };
        close_ns += per_iter(t, N);
    }

    // modkit: modprobe (dlopen, checks, link, init) and rmmod (exit, dlclose, NOLOAD check).
    let host = Host::new("modkit".parse()?).with_plugin_dir(dir);
    host.modprobe("mathcore")?;
    host.rmmod("mathcore")?;
    let (mut load_ns, mut unload_ns) = (0.0, 0.0);
    for _ in 0..N {
        let t = Instant::now();
        host.modprobe("mathcore")?;
        load_ns += per_iter(t, N);
        let t = Instant::now();
        host.rmmod("mathcore")?;
        unload_ns += per_iter(t, N);
    }

    // Lookup: plugin_fn (typed, pinned) vs dlsym.
    host.modprobe("mathcore")?;
    // SAFETY: as above.
    let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    let t = Instant::now();
    for _ in 0..N * 10 {
        // SAFETY: a live handle.
        black_box(unsafe { libc::dlsym(h, sym.as_ptr()) });
    }
    let dlsym_ns = per_iter(t, N * 10);
    let t = Instant::now();
    for _ in 0..N * 10 {
        black_box(host.plugin_fn::<(i64,), i64>("scale")?);
    }
    let lookup_ns = per_iter(t, N * 10);

    // Calls: through the held Symbol<PluginFn> vs the bare trampoline pointer.
    let scale = host.plugin_fn::<(i64,), i64>("scale")?;
    let raw = scale.as_raw();
    let t = Instant::now();
    let mut acc = 0i64;
    for i in 0..CALLS {
        acc = acc.wrapping_add(scale.call((black_box(i64::from(i)),))?);
    }
    let sym_call = per_iter(t, CALLS);
    black_box(acc);
    let t = Instant::now();
    let mut acc = 0i64;
    for i in 0..CALLS {
        let args = (black_box(i64::from(i)),);
        let mut ret = 0i64;
        // SAFETY: the trampoline of scale: (i64,) -> i64, checked by plugin_fn above.
        let st = unsafe {
            raw(
                &args as *const (i64,) as *const c_void,
                &mut ret as *mut i64 as *mut c_void,
            )
        };
        assert_eq!(st, 0);
        acc = acc.wrapping_add(ret);
    }
    let raw_call = per_iter(t, CALLS);
    black_box(acc);
    drop(scale);
    // SAFETY: closed once.
    unsafe { libc::dlclose(h) };
    host.rmmod("mathcore")?;

    println!("| operation | modkit | bare dlopen/dlsym | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| cold load (modprobe vs dlopen + dlsym) | {:.1} µs | {:.1} µs | {:.2}× |",
        load_ns / 1e3,
        open_ns / 1e3,
        load_ns / open_ns
    );
    println!(
        "| unload (rmmod vs dlclose) | {:.1} µs | {:.1} µs | {:.2}× |",
        unload_ns / 1e3,
        close_ns / 1e3,
        unload_ns / close_ns
    );
    println!(
        "| symbol lookup (plugin_fn vs dlsym) | {:.0} ns | {:.0} ns | {:.2}× |",
        lookup_ns,
        dlsym_ns,
        lookup_ns / dlsym_ns
    );
    println!(
        "| call (held Symbol<PluginFn> vs raw fn pointer) | {:.2} ns | {:.2} ns | {:.2}× |",
        sym_call,
        raw_call,
        sym_call / raw_call
    );
    Ok(())
}
