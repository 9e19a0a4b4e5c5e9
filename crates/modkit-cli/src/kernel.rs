//! `modkit check --driver kernel` and `modkit compare`: scenarios on a real kernel in QEMU,
//! checked against their expectations and set beside the simulator.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use modkit_core::{Policy, Version};
use modkit_sim::diff::{differences, side_by_side, DiffKind};
use modkit_sim::observed::Observed;
use modkit_sim::scenario::Expect;
use modkit_sim::{Scenario, Sim};

use crate::{out, outln};

/// Whether an `[[expect]]` block's policy describes the kernel at hand.
///
/// The rule (docs/kernel-driver.md, "Which blocks a kernel checks"): a block applies to a
/// kernel whose upstream version is X.Y.Z when its policy is `linux-X.Y.Z`, or when it is
/// another version of the same X.Y line (`linux-X.Y`, the release) under which the
/// simulator gives this scenario exactly the same behaviour as under `linux-X.Y.Z` (no
/// stable backport between them matters here). `modkit` blocks never apply.
pub fn applies(sc: &Scenario, ex: &Expect, upstream: Version) -> Result<(), String> {
    if let Some(why) = &ex.kernel_skip {
        return Err(format!("kernel_skip: {why}"));
    }
    let policy = ex.policy;
    let Some(v) = policy.version() else {
        return Err("modkit's own semantics: no kernel has them".into());
    };
    let exact = Policy::Linux(upstream);
    if v == upstream && policy.to_string() == exact.to_string() {
        return Ok(());
    }
    if (v.major, v.minor) != (upstream.major, upstream.minor) {
        return Err(format!("the kernel is {}", upstream_label(upstream)));
    }
    let a = Sim::new(sc, policy, sc.seed).run();
    let b = Sim::new(sc, exact, sc.seed).run();
    match (a, b) {
        (Ok(a), Ok(b)) => {
            let (a, b) = (
                Observed::from_run(&a, "simulator"),
                Observed::from_run(&b, "simulator"),
            );
            let d = differences(&a, &b);
            if d.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "the simulator gives {} and {} different behaviour here ({}): stable backports; a block for {} would apply",
                    policy,
                    exact,
                    d[0].item,
                    exact
                ))
            }
        }
        _ => Err(format!(
            "the simulator cannot run the scenario under {policy} or {exact}"
        )),
    }
}

fn upstream_label(v: Version) -> String {
    let s = Policy::Linux(v).to_string();
    s.trim_start_matches("linux-").to_string()
}

fn load(file: &Path) -> Result<Scenario, String> {
    modkit_sim::load(file).map_err(|e| e.to_string())
}

fn options(kver: &str, keep: Option<&Path>, file: &Path) -> modkit_kernel::KernelOptions {
    modkit_kernel::KernelOptions {
        kver: kver.to_string(),
        work_dir: keep.map(|d| {
            d.join(
                file.file_stem()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_else(|| "scenario".into()),
            )
        }),
        deadline: None,
    }
}

fn upstream_of(kver: &str) -> Result<Version, ExitCode> {
    eprintln!("modkit: preparing kernel {kver} (downloads its Debian packages once)");
    modkit_kernel::kernel_version(kver).map_err(|e| {
        eprintln!("modkit: {e}");
        ExitCode::from(2)
    })
}

/// Checks one block against a kernel observation and prints its line; true if it passed.
fn check_block(file: &Path, ex: &Expect, obs: &Observed, kver: &str) -> bool {
    let place = format!(
        "{}:{} [expect #{} {}, kernel {kver}]",
        file.display(),
        ex.line,
        ex.index,
        ex.policy
    );
    let failures = modkit_sim::check::compare_observed(ex, obs);
    let skipped = modkit_sim::check::skipped_keys(ex, obs);
    let skipped = if skipped.is_empty() {
        String::new()
    } else {
        format!(
            "  (not observable on a real kernel: {})",
            skipped.join(", ")
        )
    };
    if failures.is_empty() {
        outln!("pass  {place}{skipped}");
        true
    } else {
        outln!("FAIL  {place}{skipped}");
        for f in &failures {
            outln!("        {f}");
        }
        false
    }
}

/// `modkit check --driver kernel --kernel KVER FILE...`.
pub fn check(files: &[PathBuf], kver: &str) -> ExitCode {
    let upstream = match upstream_of(kver) {
        Ok(v) => v,
        Err(c) => return c,
    };
    let (mut passed, mut failed, mut skipped) = (0usize, 0usize, 0usize);
    for file in files {
        let sc = match load(file) {
            Ok(s) => s,
            Err(e) => {
                outln!("ERROR {e}");
                failed += 1;
                continue;
            }
        };
        let mut todo = Vec::new();
        for ex in &sc.expects {
            match applies(&sc, ex, upstream) {
                Ok(()) => todo.push(ex),
                Err(why) => {
                    skipped += 1;
                    outln!(
                        "skip  {}:{} [expect #{} {}]: {why}",
                        file.display(),
                        ex.line,
                        ex.index,
                        ex.policy
                    );
                }
            }
        }
        if todo.is_empty() {
            continue;
        }
        eprintln!("modkit: {}: booting {kver}", file.display());
        let obs = match modkit_kernel::run_scenario(&sc, &options(kver, None, file)) {
            Ok(o) => o,
            Err(e) => {
                outln!("ERROR {e}");
                failed += todo.len();
                continue;
            }
        };
        for ex in todo {
            if check_block(file, ex, &obs, kver) {
                passed += 1;
            } else {
                failed += 1;
            }
        }
    }
    outln!("check: {passed} passed, {failed} failed, {skipped} skipped");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `modkit compare --kernel KVER FILE...`.
pub fn compare(
    files: &[PathBuf],
    kver: &str,
    policy: Option<Policy>,
    with_check: bool,
    keep: Option<&Path>,
    json: bool,
) -> ExitCode {
    let upstream = match upstream_of(kver) {
        Ok(v) => v,
        Err(c) => return c,
    };
    let policy = policy.unwrap_or(Policy::Linux(upstream));
    let mut bad = 0usize;
    let mut errors = 0usize;
    let mut failed_blocks = 0usize;
    for file in files {
        let sc = match load(file) {
            Ok(s) => s,
            Err(e) => {
                outln!("ERROR {e}");
                errors += 1;
                continue;
            }
        };
        let title = sc.name.clone().unwrap_or_else(|| sc.file.clone());
        eprintln!("modkit: {}: booting {kver}", file.display());
        let real = match modkit_kernel::run_scenario(&sc, &options(kver, keep, file)) {
            Ok(o) => o,
            Err(e) => {
                outln!("ERROR {e}");
                errors += 1;
                continue;
            }
        };
        let mut real = real;
        // The kernel resolves imports in the built .ko's symbol-table order: so does the
        // simulator here (docs/kernel-driver.md).
        let sc = match sc.with_import_order(&real.import_order) {
            Ok(Some(re)) => {
                for (m, order) in &real.import_order {
                    let id = re.db.id(m);
                    if id.is_some_and(|i| {
                        sc.db
                            .id(m)
                            .is_some_and(|j| re.db.spec(i).imports != sc.db.spec(j).imports)
                    }) {
                        real.notes.push(format!(
                            "the simulator resolves {m}'s imports in the order of its .ko's symbol table: {}",
                            order.join(", ")
                        ));
                    }
                }
                re
            }
            Ok(None) => sc,
            Err(e) => {
                outln!("ERROR {}: {e}", file.display());
                errors += 1;
                continue;
            }
        };
        // The build-time loader settings are the kernel's (modkit_kernel::kconfig).
        let mut sc = sc;
        match modkit_kernel::kconfig::kernel_config(kver) {
            Ok(text) => real
                .notes
                .extend(modkit_kernel::kconfig::apply_kernel_config(
                    &text,
                    kver,
                    &mut sc.config,
                )),
            Err(e) => {
                outln!("ERROR {}: {e}", file.display());
                errors += 1;
                continue;
            }
        }
        let sim = match Sim::new(&sc, policy, sc.seed).run() {
            Ok(r) => Observed::from_run(&r, &format!("simulator {policy}")),
            Err(e) => {
                outln!("ERROR {e}");
                errors += 1;
                continue;
            }
        };
        let host = match modkit_hostdriver::run_scenario(&sc, policy, sc.seed) {
            Ok(r) => Observed::from_run(&r, &format!("host {policy}")),
            Err(e) => {
                outln!("ERROR {e}");
                errors += 1;
                continue;
            }
        };
        let diffs = differences(&sim, &real);
        let host_diffs: Vec<_> = differences(&sim, &host)
            .into_iter()
            .filter(|d| d.kind == DiffKind::Behaviour && d.item != "log")
            .collect();
        let behaviour = diffs
            .iter()
            .filter(|d| d.kind == DiffKind::Behaviour)
            .count();
        if behaviour > 0 && sc.kernel_races.is_none() {
            bad += 1;
        }
        if json {
            let list = |ds: &[modkit_sim::diff::Difference]| {
                ds.iter()
                    .map(|d| {
                        serde_json::json!({
                            "item": d.item,
                            "kind": if d.kind == DiffKind::Behaviour { "behaviour" } else { "timing" },
                            "simulator": d.left,
                            "other": d.right,
                        })
                    })
                    .collect::<Vec<_>>()
            };
            outln!(
                "{}",
                serde_json::json!({
                    "scenario": title,
                    "file": file.display().to_string(),
                    "kernel": real.driver,
                    "policy": policy.to_string(),
                    "simulator": modkit_sim::report::json_observed(&title, policy, sc.seed, &sim),
                    "kernel_run": modkit_sim::report::json_observed(&title, policy, sc.seed, &real),
                    "differences": list(&diffs),
                    "host_differences": list(&host_diffs),
                })
            );
        } else {
            outln!("== {title}  ({})", file.display());
            out(&side_by_side(&sim, &real, &diffs));
            if host_diffs.is_empty() {
                outln!("  host driver: agrees with the simulator");
            } else {
                for d in &host_diffs {
                    outln!(
                        "  host driver differs: {}: {}  |  {}",
                        d.item,
                        d.left,
                        d.right
                    );
                }
            }
            if let (Some(why), true) = (&sc.kernel_races, behaviour > 0) {
                outln!("  explained (kernel_races): {why}");
            }
            if !real.notes.is_empty() {
                for n in &real.notes {
                    outln!("  note: {n}");
                }
            }
            outln!("");
        }
        if with_check {
            for ex in &sc.expects {
                match applies(&sc, ex, upstream) {
                    Ok(()) => {
                        if !check_block(file, ex, &real, kver) {
                            failed_blocks += 1;
                        }
                    }
                    Err(why) => outln!(
                        "skip  {}:{} [expect #{} {}]: {why}",
                        file.display(),
                        ex.line,
                        ex.index,
                        ex.policy
                    ),
                }
            }
            outln!("");
        }
    }
    outln!(
        "compare: {} file(s), {bad} with unexplained differences, {errors} that could not run, {failed_blocks} failed block(s)",
        files.len()
    );
    if errors > 0 {
        ExitCode::from(2)
    } else if bad == 0 && failed_blocks == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(name: &str) -> Scenario {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/scenarios")
            .join(name);
        modkit_sim::load(&p).unwrap()
    }

    fn block<'a>(sc: &'a Scenario, policy: &str) -> &'a Expect {
        sc.expects
            .iter()
            .find(|e| e.policy.to_string() == policy)
            .unwrap()
    }

    #[test]
    fn which_blocks_a_kernel_checks() {
        let v6_1_176 = Version::with_patch(6, 1, 176);
        // The storm behaves differently in the 6.1 release and in 6.1.176 (backport).
        let storm = example("cpufreq-storm.toml");
        assert!(applies(&storm, block(&storm, "linux-6.1"), v6_1_176).is_err());
        assert!(applies(&storm, block(&storm, "modkit"), v6_1_176).is_err());
        let why = applies(&storm, block(&storm, "linux-6.1.176"), v6_1_176).unwrap_err();
        assert!(why.starts_with("kernel_skip:"), "{why}");
        // The i915/kvmgt stall does not: its linux-6.1 block applies to 6.1.176.
        let kvmgt = example("i915-kvmgt.toml");
        assert_eq!(
            applies(&kvmgt, block(&kvmgt, "linux-6.1"), v6_1_176),
            Ok(())
        );
        assert_eq!(
            applies(&kvmgt, block(&kvmgt, "linux-6.1.176"), v6_1_176),
            Ok(())
        );
        assert!(applies(&kvmgt, block(&kvmgt, "linux-5.15"), v6_1_176).is_err());
        assert!(applies(&kvmgt, block(&kvmgt, "linux-6.12.117"), v6_1_176).is_err());
    }
}
