//! modkit against the libloading crate and a bare `dlopen`/`dlsym`, side by side on the
//! same `mathcore.so` (built with the `c-abi` feature, which adds one plain
//! `extern "C" fn mathcore_scale_c` so that libloading can name a function in it):
//! cold load, symbol lookup, a call through a held symbol and unload. Criterion's
//! statistics (median and its 95 % interval); a table is printed at the end.
//!
//! `bash examples/plugins/run.sh bench` (builds the .so, then runs
//! `MODKIT_BENCH_DIR=DIR cargo bench -p plugin-host --bench plugins`).

use std::ffi::{c_void, CString};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::Criterion;
use modkit::plugin::RawFn;
use modkit::{Host, Rmmod};

type CFn = extern "C" fn(i64) -> i64;

struct Paths {
    dir: PathBuf,
    so: CString,
}

fn paths() -> Paths {
    let dir = PathBuf::from(
        std::env::var_os("MODKIT_BENCH_DIR")
            .expect("MODKIT_BENCH_DIR: a directory holding mathcore.so (run.sh bench sets it)"),
    );
    let so = dir.join("mathcore.so");
    assert!(
        so.exists(),
        "{}: missing (run.sh bench builds it)",
        so.display()
    );
    Paths {
        so: CString::new(so.as_os_str().as_encoded_bytes()).unwrap(),
        dir,
    }
}

fn dlopen(so: &CString, flags: i32) -> *mut c_void {
    // SAFETY: a valid C string; the caller closes the handle.
    let h = unsafe { libc::dlopen(so.as_ptr(), flags) };
    assert!(!h.is_null());
    h
}

fn dlsym(h: *mut c_void, name: &CString) -> *mut c_void {
    // SAFETY: `h` is a live handle.
    unsafe { libc::dlsym(h, name.as_ptr()) }
}

fn dlclose(h: *mut c_void) {
    // SAFETY: `h` came from dlopen and is closed once.
    unsafe { libc::dlclose(h) };
}

fn new_host(dir: &Path) -> Host {
    Host::new("modkit".parse().unwrap()).with_plugin_dir(dir)
}

/// Times `timed` only, `iters` times, with `untimed` between (a cold load needs an unload
/// after it, an unload a load before it).
fn alternate<S>(iters: u64, mut timed: impl FnMut() -> S, mut untimed: impl FnMut(S)) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let t = Instant::now();
        let s = timed();
        total += t.elapsed();
        untimed(s);
    }
    total
}

fn bench_load(c: &mut Criterion, p: &Paths) {
    let desc = CString::new("MODKIT_PLUGIN_DESCRIPTOR").unwrap();
    let path = p.dir.join("mathcore.so");
    let mut g = c.benchmark_group("load");
    g.bench_function("bare", |b| {
        b.iter_custom(|iters| {
            alternate(
                iters,
                || {
                    let h = dlopen(&p.so, libc::RTLD_NOW | libc::RTLD_LOCAL);
                    black_box(dlsym(h, &desc));
                    h
                },
                dlclose,
            )
        })
    });
    g.bench_function("libloading", |b| {
        b.iter_custom(|iters| {
            alternate(
                iters,
                || {
                    // SAFETY: mathcore's initialisers are the Rust runtime's; the symbol
                    // is its descriptor static.
                    let l = unsafe { libloading::Library::new(&path) }.unwrap();
                    // SAFETY: as above.
                    black_box(
                        *unsafe { l.get::<*const c_void>(b"MODKIT_PLUGIN_DESCRIPTOR") }.unwrap(),
                    );
                    l
                },
                drop,
            )
        })
    });
    let host = new_host(&p.dir);
    host.modprobe("mathcore").unwrap();
    host.rmmod("mathcore").unwrap();
    g.bench_function("modkit", |b| {
        b.iter_custom(|iters| {
            alternate(
                iters,
                || host.modprobe("mathcore").unwrap(),
                |()| host.rmmod("mathcore").unwrap(),
            )
        })
    });
    g.bench_function("modkit_new_host", |b| {
        b.iter_custom(|iters| {
            alternate(
                iters,
                || {
                    let host = new_host(&p.dir);
                    host.modprobe("mathcore").unwrap();
                    host
                },
                |h| h.shutdown_with(Rmmod::default()).unwrap(),
            )
        })
    });
    g.finish();

    let mut g = c.benchmark_group("unload");
    g.bench_function("bare", |b| {
        b.iter_custom(|iters| {
            let mut h = dlopen(&p.so, libc::RTLD_NOW | libc::RTLD_LOCAL);
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                dlclose(h);
                total += t.elapsed();
                h = dlopen(&p.so, libc::RTLD_NOW | libc::RTLD_LOCAL);
            }
            dlclose(h);
            total
        })
    });
    g.bench_function("libloading", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // SAFETY: as above.
                let l = unsafe { libloading::Library::new(&path) }.unwrap();
                let t = Instant::now();
                drop(l);
                total += t.elapsed();
            }
            total
        })
    });
    g.bench_function("modkit", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                host.modprobe("mathcore").unwrap();
                let t = Instant::now();
                host.rmmod("mathcore").unwrap();
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
}

fn bench_lookup_and_call(c: &mut Criterion, p: &Paths) {
    let cname = CString::new("mathcore_scale_c").unwrap();
    let host = new_host(&p.dir);
    host.modprobe("mathcore").unwrap();
    let h = dlopen(&p.so, libc::RTLD_NOW | libc::RTLD_LOCAL);
    // SAFETY: as above.
    let lib = unsafe { libloading::Library::new(p.dir.join("mathcore.so")) }.unwrap();

    let mut g = c.benchmark_group("lookup");
    g.bench_function("bare", |b| {
        b.iter(|| black_box(dlsym(h, black_box(&cname))))
    });
    g.bench_function("libloading", |b| {
        b.iter(|| {
            // SAFETY: mathcore_scale_c is `extern "C" fn(i64) -> i64`.
            let s = unsafe { lib.get::<CFn>(black_box(b"mathcore_scale_c\0")) }.unwrap();
            black_box(*s)
        })
    });
    g.bench_function("modkit", |b| {
        b.iter(|| black_box(host.plugin_fn::<(i64,), i64>(black_box("scale")).unwrap()))
    });
    g.finish();

    let scale = host.plugin_fn::<(i64,), i64>("scale").unwrap();
    let tramp: RawFn = scale.as_raw();
    // SAFETY: as above.
    let lscale = unsafe { lib.get::<CFn>(b"mathcore_scale_c\0") }.unwrap();
    let cfn: CFn = *lscale;
    let mut g = c.benchmark_group("call");
    g.bench_function("modkit_symbol", |b| {
        b.iter(|| scale.call((black_box(7i64),)).unwrap())
    });
    g.bench_function("modkit_bound", |b| {
        let f = scale.bind();
        b.iter(|| f.call((black_box(7i64),)).unwrap())
    });
    g.bench_function("raw_trampoline", |b| {
        b.iter(|| {
            let args = (black_box(7i64),);
            let mut ret = 0i64;
            // SAFETY: the trampoline of scale: (i64,) -> i64, checked by plugin_fn.
            let st = unsafe {
                tramp(
                    &args as *const (i64,) as *const c_void,
                    &mut ret as *mut i64 as *mut c_void,
                )
            };
            assert_eq!(st, 0);
            ret
        })
    });
    g.bench_function("libloading_symbol", |b| b.iter(|| lscale(black_box(7))));
    g.bench_function("raw_fn_pointer", |b| {
        let f = black_box(cfn);
        b.iter(|| f(black_box(7)))
    });
    g.finish();
    interleaved_calls(&scale, tramp, cfn);
    drop(scale);
    drop(lib);
    dlclose(h);
    host.rmmod("mathcore").unwrap();
}

/// The three calls measured in alternation (rounds of 200,000 calls each, 150 rounds), so
/// that a loaded machine slows all three alike: medians of the per-round times and of the
/// per-round ratios.
fn interleaved_calls(
    scale: &modkit::Symbol<modkit::plugin::PluginFn<(i64,), i64>>,
    tramp: RawFn,
    cfn: CFn,
) {
    const CALLS: u32 = 200_000;
    const ROUNDS: usize = 150;
    let time = |f: &mut dyn FnMut(i64) -> i64| {
        let t = Instant::now();
        let mut acc = 0i64;
        for i in 0..CALLS {
            acc = acc.wrapping_add(f(black_box(i64::from(i))));
        }
        black_box(acc);
        t.elapsed().as_nanos() as f64 / f64::from(CALLS)
    };
    let (mut sym, mut bnd, mut raw, mut c, mut r_raw, mut r_c, mut r_bnd) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for _ in 0..ROUNDS {
        let bound = scale.bind();
        let a = time(&mut |x| scale.call((x,)).unwrap());
        let e = time(&mut |x| bound.call((x,)).unwrap());
        let b = time(&mut |x| {
            let args = (x,);
            let mut ret = 0i64;
            // SAFETY: the trampoline of scale: (i64,) -> i64, checked by plugin_fn.
            let st = unsafe {
                tramp(
                    &args as *const (i64,) as *const c_void,
                    &mut ret as *mut i64 as *mut c_void,
                )
            };
            assert_eq!(st, 0);
            ret
        });
        let d = time(&mut |x| black_box(cfn)(x));
        sym.push(a);
        bnd.push(e);
        r_bnd.push(e / b);
        raw.push(b);
        c.push(d);
        r_raw.push(a / b);
        r_c.push(a / d);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "interleaved calls ({ROUNDS} rounds of {CALLS}): held Symbol {:.2} ns, Symbol::bind {:.2} ns, raw trampoline {:.2} ns, raw extern \"C\" fn {:.2} ns; median ratios: Symbol/trampoline {:.2}×, bind/trampoline {:.2}×, Symbol/extern \"C\" fn {:.2}×",
        med(&mut sym),
        med(&mut bnd),
        med(&mut raw),
        med(&mut c),
        med(&mut r_raw),
        med(&mut r_bnd),
        med(&mut r_c)
    );
}

/// Median and 95 % interval (ns) criterion stored for `group/id`.
fn estimate(dir: &Path, group: &str, id: &str) -> Option<(f64, f64, f64)> {
    let text = std::fs::read_to_string(dir.join(group).join(id).join("new/estimates.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let m = &v["median"];
    Some((
        m["point_estimate"].as_f64()?,
        m["confidence_interval"]["lower_bound"].as_f64()?,
        m["confidence_interval"]["upper_bound"].as_f64()?,
    ))
}

fn fmt(ns: f64) -> String {
    if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns >= 10.0 {
        format!("{ns:.0} ns")
    } else {
        format!("{ns:.2} ns")
    }
}

fn table(out: &Path) {
    let rows: &[(&str, &str, &str)] = &[
        ("load", "bare", "cold load: dlopen(RTLD_NOW) + dlsym"),
        ("load", "libloading", "cold load: Library::new + get"),
        ("load", "modkit", "cold load: modprobe (after rmmod)"),
        (
            "load",
            "modkit_new_host",
            "first load in a new Host (scan, register, load)",
        ),
        ("lookup", "bare", "lookup: dlsym"),
        ("lookup", "libloading", "lookup: Library::get"),
        (
            "lookup",
            "modkit",
            "lookup: plugin_fn (typed, pinned; get + drop)",
        ),
        (
            "call",
            "raw_fn_pointer",
            "call: raw extern \"C\" fn pointer",
        ),
        (
            "call",
            "libloading_symbol",
            "call: held libloading Symbol<fn>",
        ),
        (
            "call",
            "raw_trampoline",
            "call: raw modkit trampoline pointer",
        ),
        (
            "call",
            "modkit_symbol",
            "call: held modkit Symbol<PluginFn>",
        ),
        (
            "call",
            "modkit_bound",
            "call: modkit Symbol::bind() (a copy tied to the handle's borrow)",
        ),
        ("unload", "bare", "unload: dlclose"),
        ("unload", "libloading", "unload: drop(Library)"),
        (
            "unload",
            "modkit",
            "unload: rmmod (exit, dlclose, RTLD_NOLOAD check)",
        ),
    ];
    println!("\n| operation | median | 95% interval |");
    println!("|---|---:|---:|");
    let mut got = std::collections::HashMap::new();
    for (g, id, what) in rows {
        if let Some((m, lo, hi)) = estimate(out, g, id) {
            println!("| {what} | {} | [{}, {}] |", fmt(m), fmt(lo), fmt(hi));
            got.insert((*g, *id), m);
        }
    }
    let ratio =
        |a: (&str, &str), b: (&str, &str)| -> Option<f64> { Some(got.get(&a)? / got.get(&b)?) };
    if let Some(r) = ratio(("load", "modkit"), ("load", "bare")) {
        println!("\nmodkit load / bare dlopen+dlsym: {r:.2}× (goal ≤ 1.5×)");
    }
    if let Some(r) = ratio(("load", "modkit"), ("load", "libloading")) {
        println!("modkit load / libloading load: {r:.2}×");
    }
    if let Some(r) = ratio(("call", "modkit_symbol"), ("call", "raw_trampoline")) {
        println!("held Symbol call / raw trampoline pointer call: {r:.2}× (goal ≤ 1×)");
    }
    if let Some(r) = ratio(("call", "modkit_symbol"), ("call", "raw_fn_pointer")) {
        println!("held Symbol call / raw extern \"C\" fn pointer call: {r:.2}×");
    }
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average while measuring: {}", l.trim());
    }
}

fn main() {
    let p = paths();
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("criterion-plugins");
    let mut c = Criterion::default()
        .output_directory(&out)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .configure_from_args();
    bench_load(&mut c, &p);
    bench_lookup_and_call(&mut c, &p);
    c.final_summary();
    table(&out);
}
