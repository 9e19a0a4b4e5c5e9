//! The plugin host: loads plugins on demand from a directory of shared objects, calls
//! across them, shows an unload refused while held and then waited for, owned threads
//! joined before the library is closed, a reload of a rebuilt plugin, and a rebuilt plugin
//! whose type changed refused with both types named.
//!
//! Usage: plugin-host PLUGIN_DIR MATHCORE_V2_SO MATHCORE_CHANGED_TYPE_SO

mod signed;
mod stress;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use modkit::plugin::PluginStatus;
use modkit::{Host, Rmmod};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Replaces `dst` by a copy of `src` with a new inode (as `install` does), so a library
/// still mapped from the old file is never overwritten in place.
fn install(src: &Path, dst: &Path) -> Result<()> {
    let tmp = dst.with_extension("so.new");
    std::fs::copy(src, &tmp)?;
    std::fs::rename(&tmp, dst)?;
    Ok(())
}

fn check(cond: bool, what: &str) -> Result<()> {
    if cond {
        Ok(())
    } else {
        Err(format!("check failed: {what}").into())
    }
}

fn run(dir: PathBuf, v2: PathBuf, changed: PathBuf) -> Result<()> {
    let host = Host::new("modkit".parse()?).with_plugin_dir(&dir);

    // 1. On demand, by alias: calc:stats is stats, which needs mathcore first.
    host.modprobe("calc:stats")?;
    println!("after modprobe calc:stats:\n{}", host.lsmod_text());

    // 2. Calls across plugins: the host calls stats, stats calls mathcore.
    let weighted = host.plugin_fn::<(i64, i64), i64>("weighted")?;
    let w = weighted.call((2, 3))?;
    println!("weighted(2, 3) = {w}");
    check(w == 50, "weighted(2, 3) == (2 + 3) * 10")?;
    drop(weighted);

    // 3. A panic inside a plugin is caught at its trampoline and becomes an error.
    let ratio = host.plugin_fn::<(i64, i64), i64>("ratio")?;
    check(ratio.call((7, 2))? == 3, "ratio(7, 2) == 3")?;
    let e = ratio.call((1, 0)).unwrap_err();
    println!("ratio(1, 0): {e}");
    drop(ratio);

    // 4. The host's type is checked against the exporter's.
    let e = host.plugin_fn::<(i32,), i32>("scale").unwrap_err();
    println!("plugin_fn::<(i32,), i32>(\"scale\"): {e}");

    // 5. An unload refused while held, then waited for.
    let e = host.rmmod("mathcore").unwrap_err();
    println!("rmmod mathcore: {e}");
    let scale = host.plugin_fn::<(i64,), i64>("scale")?;
    host.rmmod("stats")?;
    let e = host.rmmod("mathcore").unwrap_err();
    println!("rmmod mathcore while a Symbol is held: {e}");
    let h2 = host.clone();
    let waiter = std::thread::spawn(move || {
        let t = std::time::Instant::now();
        let r = h2.rmmod_with(
            "mathcore",
            Rmmod {
                wait: true,
                deadline: Some(Duration::from_secs(5)),
                force: false,
            },
        );
        (r, t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(50));
    check(scale.call((4,))? == 40, "scale(4) == 40 while held")?;
    drop(scale);
    let (r, waited) = waiter.join().map_err(|_| "waiter panicked")?;
    r?;
    println!(
        "rmmod --wait mathcore: unloaded after {} ms, library {:?}",
        waited.as_millis(),
        host.plugin_status("mathcore")
    );
    check(
        matches!(
            host.plugin_status("mathcore"),
            Some(PluginStatus::Closed | PluginStatus::StillMapped)
        ),
        "mathcore's library was dlclose'd",
    )?;

    // 6. A plugin thread, joined before its library is closed.
    host.modprobe("ticker")?;
    std::thread::sleep(Duration::from_millis(30));
    let ticks = host.plugin_fn::<(), u64>("ticks")?;
    let n = ticks.call(())?;
    println!("ticker's thread ticked {n} times");
    check(n > 0, "the ticker thread runs")?;
    drop(ticks);
    host.rmmod("ticker")?;
    host.rmmod("mathcore")?;
    println!(
        "rmmod ticker: thread joined, library {:?}",
        host.plugin_status("ticker")
    );

    // 7. Stress: threads load, call and unload concurrently; every call sees a linked
    //    stats, and the books balance at the end.
    let workers: Vec<_> = (0..6)
        .map(|t| {
            let h = host.clone();
            std::thread::spawn(move || -> std::result::Result<u32, String> {
                let mut calls = 0;
                for i in 0..40 {
                    if h.modprobe("calc:stats").is_ok() {
                        if let Ok(f) = h.plugin_fn::<(i64, i64), i64>("weighted") {
                            let v = f.call((t, i)).map_err(|e| e.to_string())?;
                            if v != (t + i) * 10 {
                                return Err(format!("weighted({t}, {i}) = {v}"));
                            }
                            calls += 1;
                        }
                    }
                    if i % 3 == 0 {
                        let _ = h.rmmod("stats");
                    }
                }
                Ok(calls)
            })
        })
        .collect();
    let mut calls = 0;
    for w in workers {
        calls += w.join().map_err(|_| "worker panicked")??;
    }
    let _ = host.rmmod("stats");
    host.rmmod("mathcore")?;
    println!(
        "stress: 6 threads x 40 rounds, {calls} calls, stats library {:?}",
        host.plugin_status("stats")
    );
    check(
        host.violations().is_empty(),
        "no invariant broken under concurrency",
    )?;

    // 8. Reload of a rebuilt plugin (same types, new code).
    install(&v2, &dir.join("mathcore.so"))?;
    host.modprobe("stats")?;
    let w = host
        .plugin_fn::<(i64, i64), i64>("weighted")?
        .call((2, 3))?;
    println!("after installing mathcore v2: weighted(2, 3) = {w}");
    check(w == 500, "the reloaded mathcore multiplies by 100")?;
    host.rmmod("stats")?;
    host.rmmod("mathcore")?;

    // 9. A rebuilt plugin whose type changed is refused, naming the symbol and both types.
    install(&changed, &dir.join("mathcore.so"))?;
    let e = host.modprobe("stats").unwrap_err();
    println!("after installing mathcore with scale(i32) -> i32: {e}");
    check(
        e.to_string().contains("scale"),
        "the error names the symbol",
    )?;

    // 10. Shutdown: every module unloaded, users first, libraries closed.
    install(&v2, &dir.join("mathcore.so"))?;
    host.modprobe("ticker")?;
    host.modprobe("calc:stats")?;
    host.shutdown_with(Rmmod::default())?;
    println!(
        "after shutdown: ticker {:?}, mathcore {:?}",
        host.plugin_status("ticker"),
        host.plugin_status("mathcore")
    );
    println!("\nfinal:\n{}", host.lsmod_text());
    check(host.violations().is_empty(), "no invariant broken")?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if args.first().is_some_and(|a| a.as_os_str() == "stress") {
        let (Some(dir), Some(v1), Some(v2)) = (args.get(1), args.get(2), args.get(3)) else {
            eprintln!(
                "usage: plugin-host stress PLUGIN_DIR MATHCORE_V1_SO MATHCORE_V2_SO [SECONDS]"
            );
            return ExitCode::from(2);
        };
        let secs = args
            .get(4)
            .and_then(|s| s.to_str()?.parse().ok())
            .unwrap_or(3.0);
        return match stress::run(dir, [v1.clone(), v2.clone()], secs) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("plugin-host stress: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.first().is_some_and(|a| a.as_os_str() == "signed") {
        let [_, signed_dir, tampered_dir, cert] = args.as_slice() else {
            eprintln!("usage: plugin-host signed SIGNED_DIR TAMPERED_DIR CERT");
            return ExitCode::from(2);
        };
        return match signed::run(signed_dir, tampered_dir, cert) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("plugin-host signed: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let [dir, v2, changed] = args.as_slice() else {
        eprintln!("usage: plugin-host PLUGIN_DIR MATHCORE_V2_SO MATHCORE_CHANGED_TYPE_SO");
        return ExitCode::from(2);
    };
    match run(dir.clone(), v2.clone(), changed.clone()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plugin-host: {e}");
            ExitCode::FAILURE
        }
    }
}
