//! Engine benchmarks: `cargo bench -p modkit-sim --bench engine`.
//!
//! - `dag_load/N`: N modules on a random DAG, each importing 10 symbols (9 of random earlier
//!   modules, 1 of the builtin `vmlinux`; ~100,000 imports at N = 10,000), modprobed one
//!   event per module in dependency order.
//!   The scenario text is generated and parsed outside the timed loop; the loop times
//!   `Sim::new(..).run()`.
//! - `storm/10000`: 10,000 concurrent modprobes (`threads = 10000`) of one module under
//!   modkit (one init, one shared result).
//! - `fail_storm/POLICY` (table only): 10,000 concurrent insmods of a module whose init
//!   sleeps 1 ms and fails, under one policy of each duplicate-load era: 10,000 serialised
//!   inits under eras A and B (4.4 to 6.1.8), one init under the others.
//!
//! Before criterion runs, a table is printed with one measured run of each case: wall time,
//! events (userspace operations: one per thread) per second, scheduler steps, and the peak
//! heap of the run, counted by the allocator wrapper below (the parsed scenario, allocated
//! before, is not included; the whole process's peak RSS is printed from VmHWM at the end).
//! `MODKIT_BENCH_SIZES=1000,10000` chooses the DAG sizes (default 1000,10000,100000).

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use modkit_core::Policy;
use modkit_sim::{Scenario, Sim};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The system allocator, counting live and peak heap bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract (valid layouts, pointers from this allocator) is `System`'s; the
// counters are plain atomics and never touch the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same layout as our caller gave, which the GlobalAlloc contract makes valid.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was returned by this allocator (so by `System`) with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr`/`layout` come from this allocator (so from `System`) and `new_size`
        // meets the caller's obligations, all passed through unchanged.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Imports of other modules' symbols per module in the DAG case (plus one of `vmlinux`:
/// 10 imports per module, ~100,000 at N = 10,000).
const FANIN: usize = 9;

/// N modules `m0..`: module i exports `s{i}` and imports `kmalloc` (builtin `vmlinux`) and
/// `s{j}` for up to 9 distinct random earlier modules j; one `modprobe` event per module,
/// in dependency order.
fn dag_text(n: usize) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
    let mut s = String::with_capacity(n * 160);
    s.push_str("name = \"dag\"\n\n[[module]]\nname = \"vmlinux\"\nbuiltin = true\nexports = [\"kmalloc\"]\n\n");
    let mut picks = Vec::with_capacity(FANIN);
    for i in 0..n {
        picks.clear();
        while picks.len() < FANIN.min(i) {
            let j = rng.gen_range(0..i);
            if !picks.contains(&j) {
                picks.push(j);
            }
        }
        let _ = write!(
            s,
            "[[module]]\nname = \"m{i}\"\nexports = [\"s{i}\"]\nimports = [\"kmalloc\""
        );
        for j in &picks {
            let _ = write!(s, ", \"s{j}\"");
        }
        s.push_str("]\n\n");
    }
    for i in 0..n {
        let _ = write!(s, "[[event]]\nid = \"e{i}\"\nmodprobe = \"m{i}\"\n\n");
    }
    s
}

/// One module with a 10 ms init and `threads` concurrent modprobes of it.
fn storm_text(threads: u32) -> String {
    format!(
        "[[module]]\nname = \"m\"\n[[module.init]]\nstep = \"probe\"\nrun = [{{ sleep = \"10ms\" }}]\nundo = true\n\n[[event]]\nid = \"storm\"\nthreads = {threads}\nmodprobe = \"m\"\n"
    )
}

fn parse(name: &str, text: &str) -> Scenario {
    modkit_sim::parse(name, text).expect("generated scenario is valid")
}

/// Userspace operations in the scenario: one per thread of each event.
fn events(sc: &Scenario) -> u64 {
    sc.events.iter().map(|e| u64::from(e.threads)).sum()
}

/// Runs once and checks the outcome (every event ok, nothing broken).
fn run_once(sc: &Scenario) -> u64 {
    let run = Sim::new(sc, Policy::Modkit, 0).run().expect("run");
    assert!(
        run.kernel.violations.is_empty(),
        "{:?}",
        run.kernel.violations
    );
    assert!(
        run.results.values().flatten().all(|o| o.is_ok()),
        "every modprobe succeeds"
    );
    run.steps
}

/// One measured run: wall time, steps and the run's peak heap (bytes above what was live
/// before it started).
fn measure(sc: &Scenario) -> (Duration, u64, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let t = Instant::now();
    let steps = run_once(sc);
    let wall = t.elapsed();
    (wall, steps, PEAK.load(Ordering::Relaxed) - base)
}

fn sizes() -> Vec<usize> {
    std::env::var("MODKIT_BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000, 100_000])
}

fn mib(b: usize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// Prints the table of single measured runs.
fn table() {
    println!(
        "case            modules  imports  events  steps      wall ms  events/s    peak heap MiB"
    );
    for n in sizes() {
        let sc = parse("dag.toml", &dag_text(n));
        let imports: usize = sc.db.specs().iter().map(|s| s.imports.len()).sum();
        let ev = events(&sc);
        let (wall, steps, peak) = measure(&sc);
        println!(
            "dag_load/{n:<7} {n:>7}  {imports:>7}  {ev:>6}  {steps:>9}  {:>7.1}  {:>10.0}  {:>8.1}",
            wall.as_secs_f64() * 1e3,
            ev as f64 / wall.as_secs_f64(),
            mib(peak)
        );
    }
    let sc = parse("storm.toml", &storm_text(10_000));
    let ev = events(&sc);
    let (wall, steps, peak) = measure(&sc);
    println!(
        "storm/10000           1        0  {ev:>6}  {steps:>9}  {:>7.1}  {:>10.0}  {:>8.1}",
        wall.as_secs_f64() * 1e3,
        ev as f64 / wall.as_secs_f64(),
        mib(peak)
    );
    fail_storm_table();
}

/// 10,000 insmods of a module whose init fails after 1 ms, one row per era.
fn fail_storm_table() {
    let text = "[[module]]\nname = \"m\"\n[[module.init]]\nstep = \"probe\"\nrun = [{ sleep = \"1ms\" }, { fail = \"ENODEV\" }]\n\n[[event]]\nid = \"storm\"\nthreads = 10000\ninsmod = \"m\"\n";
    let sc = parse("fail_storm.toml", text);
    println!("case                       inits  steps      wall ms");
    for policy in [
        "linux-4.4",
        "linux-5.10",
        "linux-6.1",
        "linux-6.1.176",
        "linux-6.6",
        "linux-6.12",
        "modkit",
    ] {
        let p: Policy = policy.parse().expect("policy");
        let t = Instant::now();
        let run = Sim::new(&sc, p, 0).run().expect("run");
        let wall = t.elapsed();
        let inits: u32 = run.kernel.init_calls.iter().sum();
        println!(
            "fail_storm/{policy:<15} {inits:>5}  {:>9}  {:>7.1}",
            run.steps,
            wall.as_secs_f64() * 1e3
        );
    }
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("dag_load");
    g.sample_size(10);
    for n in sizes() {
        let sc = parse("dag.toml", &dag_text(n));
        g.throughput(Throughput::Elements(events(&sc)));
        if n >= 100_000 {
            g.measurement_time(Duration::from_secs(20));
        }
        g.bench_with_input(BenchmarkId::from_parameter(n), &sc, |b, sc| {
            b.iter(|| run_once(sc))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("storm");
    g.sample_size(10);
    let sc = parse("storm.toml", &storm_text(10_000));
    g.throughput(Throughput::Elements(events(&sc)));
    g.bench_with_input(BenchmarkId::from_parameter(10_000), &sc, |b, sc| {
        b.iter(|| run_once(sc))
    });
    g.finish();
}

/// Peak resident set size of the process (VmHWM), from /proc/self/status.
fn vm_hwm() -> Option<String> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .map(|l| l["VmHWM:".len()..].trim().to_string())
}

fn main() {
    // `cargo test --benches` runs this with `--bench` absent: check one small case only.
    let bench = std::env::args().any(|a| a == "--bench");
    if !bench {
        let sc = parse("dag.toml", &dag_text(200));
        run_once(&sc);
        return;
    }
    table();
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
    if let Some(h) = vm_hwm() {
        println!("process peak RSS (VmHWM): {h}");
    }
}
