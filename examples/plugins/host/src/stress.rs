//! `plugin-host stress DIR MATHCORE_V1_SO MATHCORE_V2_SO [SECONDS]`: many threads load,
//! call, reload and unload real plugins at once for at least SECONDS, and on until both
//! builds were called and two reloads checked (at most ten times SECONDS, at least 30 s),
//! then check the books.
//!
//! - 6 user threads: `modprobe calc:stats`, take `weighted`, call it twice with a yield
//!   between, drop it; sometimes `rmmod stats`. While a `Symbol` of stats is held, stats'
//!   and mathcore's libraries must be open, and both calls must see the same mathcore build
//!   (a reload cannot happen under a held handle).
//! - 1 reloader: `rmmod stats`, `rmmod --wait mathcore`; when mathcore is gone, installs
//!   the other build (factor 10 or 100) so that the next load opens the rebuilt file.
//! - 1 ticker thread: loads and unloads `ticker` (which starts an owned thread and imports
//!   mathcore), calling `ticks_plus` in between.
//!
//! At the end everything is unloaded and checked: no invariant broken, every init of
//! mathcore and ticker undone exactly once (their log lines), no pin or holder left, every
//! library reported closed (or honestly still mapped), and no thread panicked. A call into
//! an unmapped library would crash the process.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use modkit::plugin::PluginStatus;
use modkit::{Host, HostHandle, Rmmod};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn install(src: &Path, dst: &Path) -> Result<()> {
    let tmp = dst.with_extension(format!("so.new{}", std::process::id()));
    std::fs::copy(src, &tmp)?;
    std::fs::rename(&tmp, dst)?;
    Ok(())
}

fn open_or_mapped(s: Option<PluginStatus>) -> bool {
    s == Some(PluginStatus::Open)
}

/// Counts of what the threads did.
#[derive(Default)]
struct Counts {
    calls: AtomicU64,
    /// Calls that saw the factor-100 build (the others saw factor 10).
    calls_v2: AtomicU64,
    reloads: AtomicU64,
    /// Reloads whose new build the reloader called and checked.
    reloads_seen: AtomicU64,
    ticker_cycles: AtomicU64,
    loads_refused: AtomicU64,
}

fn user(h: &HostHandle, t: i64, stop: &AtomicBool, n: &Counts) -> std::result::Result<(), String> {
    let mut i = 0i64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        if h.modprobe("calc:stats").is_err() {
            // A concurrent unload (GOING) or a reload in progress: try again.
            n.loads_refused.fetch_add(1, Ordering::Relaxed);
            std::thread::yield_now();
            continue;
        }
        if let Ok(f) = h.plugin_fn::<(i64, i64), i64>("weighted") {
            let a = f.call((t, i)).map_err(|e| e.to_string())?;
            if !open_or_mapped(h.plugin_status("stats"))
                || !open_or_mapped(h.plugin_status("mathcore"))
            {
                return Err(format!(
                    "a library closed under a held Symbol: stats {:?}, mathcore {:?}",
                    h.plugin_status("stats"),
                    h.plugin_status("mathcore")
                ));
            }
            std::thread::yield_now();
            let b = f.call((t, i)).map_err(|e| e.to_string())?;
            let s = t + i;
            if a != b || (a != s * 10 && a != s * 100) {
                return Err(format!("weighted({t}, {i}) = {a} then {b}"));
            }
            n.calls.fetch_add(2, Ordering::Relaxed);
            if a == s * 100 {
                n.calls_v2.fetch_add(2, Ordering::Relaxed);
            }
            drop(f);
        }
        if i % 5 == 0 {
            let _ = h.rmmod("stats");
        }
    }
    Ok(())
}

fn reloader(
    h: &HostHandle,
    dir: &Path,
    builds: &[PathBuf; 2],
    stop: &AtomicBool,
    n: &Counts,
) -> std::result::Result<(), String> {
    // The file is replaced before the unload (a rename: the mapped library keeps its
    // inode), so the first load after a successful unload opens the new build, whoever
    // does it; the reloader's own call then checks it sees that build.
    let mut which = 1;
    install(&builds[which], &dir.join("mathcore.so")).map_err(|e| e.to_string())?;
    while !stop.load(Ordering::Relaxed) {
        let _ = h.rmmod("stats");
        let r = h.rmmod_with(
            "mathcore",
            Rmmod {
                wait: true,
                deadline: Some(Duration::from_millis(20)),
                force: false,
            },
        );
        if r.is_ok() {
            n.reloads.fetch_add(1, Ordering::Relaxed);
            let still = h.plugin_status("mathcore") == Some(PluginStatus::StillMapped);
            let factor = if which == 1 { 100 } else { 10 };
            // Call the new build (retrying while users unload stats under us).
            while !stop.load(Ordering::Relaxed) {
                if h.modprobe("calc:stats").is_err() {
                    continue;
                }
                let Ok(f) = h.plugin_fn::<(i64, i64), i64>("weighted") else {
                    continue;
                };
                let v = f.call((1, 2)).map_err(|e| e.to_string())?;
                if !still && v != 3 * factor {
                    return Err(format!(
                        "after a reload, weighted(1, 2) = {v}, not {} (the new build)",
                        3 * factor
                    ));
                }
                n.reloads_seen.fetch_add(1, Ordering::Relaxed);
                break;
            }
            which ^= 1;
            install(&builds[which], &dir.join("mathcore.so")).map_err(|e| e.to_string())?;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

fn ticker(h: &HostHandle, stop: &AtomicBool, n: &Counts) -> std::result::Result<(), String> {
    while !stop.load(Ordering::Relaxed) {
        if h.modprobe("ticker").is_ok() {
            if let Ok(f) = h.plugin_fn::<(i64,), i64>("ticks_plus") {
                f.call((1,)).map_err(|e| e.to_string())?;
            }
            let _ = h.rmmod_with(
                "ticker",
                Rmmod {
                    wait: true,
                    deadline: Some(Duration::from_millis(50)),
                    force: false,
                },
            );
            n.ticker_cycles.fetch_add(1, Ordering::Relaxed);
        }
        std::thread::yield_now();
    }
    Ok(())
}

pub fn run(dir: &Path, builds: [PathBuf; 2], secs: f64) -> Result<()> {
    install(&builds[0], &dir.join("mathcore.so"))?;
    let host = Host::new("modkit".parse()?).with_plugin_dir(dir);
    let stop = Arc::new(AtomicBool::new(false));
    let n = Arc::new(Counts::default());
    let t0 = Instant::now();
    let mut users = Vec::new();
    for t in 0..6 {
        let (h, stop, n) = (host.clone(), stop.clone(), n.clone());
        users.push(std::thread::spawn(move || user(&h, t, &stop, &n)));
    }
    let tick = {
        let (h, stop, n) = (host.clone(), stop.clone(), n.clone());
        std::thread::spawn(move || ticker(&h, &stop, &n))
    };
    let rel = {
        let (h, stop, n, dir, builds) = (
            host.clone(),
            stop.clone(),
            n.clone(),
            dir.to_path_buf(),
            builds.clone(),
        );
        std::thread::spawn(move || {
            reloader(&h, &dir, &builds, &stop, &n).map_err(|e| e.to_string())
        })
    };
    // At least `secs`; then on until the run has called both builds and checked two
    // reloads (the reloader's `rmmod --wait` competes with six loading users, so on a busy
    // machine 3 s can hold a single reload), but never past ten times `secs` (at least
    // 30 s): the check below then says what was not reached.
    let least = Duration::from_secs_f64(secs);
    let most = least.saturating_mul(10).max(Duration::from_secs(30));
    let covered = |n: &Counts| {
        n.calls.load(Ordering::Relaxed) > 0
            && n.calls_v2.load(Ordering::Relaxed) > 0
            && n.reloads_seen.load(Ordering::Relaxed) >= 2
    };
    while t0.elapsed() < least || (!covered(&n) && t0.elapsed() < most) {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for u in users {
        u.join().map_err(|_| "a user thread panicked")??;
    }
    tick.join().map_err(|_| "the ticker thread panicked")??;
    rel.join().map_err(|_| "the reloader panicked")??;

    for m in ["ticker", "stats", "mathcore"] {
        let _ = host.rmmod(m);
    }
    let rows = host.lsmod();
    let loaded: Vec<_> = rows.iter().filter(|r| r.state.is_some()).collect();
    if !loaded.is_empty() {
        return Err(format!("still loaded after the stress:\n{}", host.lsmod_text()).into());
    }
    if let Some(r) = rows
        .iter()
        .find(|r| !r.pinned_by.is_empty() || r.refcount != 0)
    {
        return Err(format!(
            "{} keeps pins {:?} or refs {}",
            r.name, r.pinned_by, r.refcount
        )
        .into());
    }
    for m in ["ticker", "stats", "mathcore"] {
        let s = host.plugin_status(m);
        if !matches!(
            s,
            None | Some(PluginStatus::Closed | PluginStatus::StillMapped)
        ) {
            return Err(format!("{m}: library {s:?} after every unload").into());
        }
    }
    let log = host.log();
    let count = |s: &str| log.iter().filter(|l| l.contains(s)).count();
    let (up, down) = (count("mathcore up"), count("mathcore down"));
    let stopped = count("ticker: thread stopped");
    let ticker_inits = rows
        .iter()
        .find(|r| r.name == "ticker")
        .map_or(0, |r| r.init_calls);
    if up != down {
        return Err(format!("mathcore: {up} inits but {down} undos").into());
    }
    if stopped as u32 != ticker_inits {
        return Err(format!("ticker: {ticker_inits} inits but {stopped} undos").into());
    }
    let v = host.violations();
    if !v.is_empty() {
        return Err(format!("invariants broken: {v:?}").into());
    }
    println!(
        "stress: {:.1} s, 8 threads: {} calls ({} on the v2 build), {} mathcore reloads ({} checked by a call into the new build; {up} loads, {down} unloads), {} ticker load/unload cycles ({stopped} owned threads joined), {} loads refused during unloads; clean: no module, pin or open library left, no invariant broken",
        t0.elapsed().as_secs_f64(),
        n.calls.load(Ordering::Relaxed),
        n.calls_v2.load(Ordering::Relaxed),
        n.reloads.load(Ordering::Relaxed),
        n.reloads_seen.load(Ordering::Relaxed),
        n.ticker_cycles.load(Ordering::Relaxed),
        n.loads_refused.load(Ordering::Relaxed),
    );
    let (calls, v2) = (
        n.calls.load(Ordering::Relaxed),
        n.calls_v2.load(Ordering::Relaxed),
    );
    if calls == 0 || v2 == 0 || n.reloads_seen.load(Ordering::Relaxed) < 2 {
        return Err("the stress did not exercise calls into both builds and two reloads".into());
    }
    Ok(())
}
