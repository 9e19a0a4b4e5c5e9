//! One scenario, one boot: assets, generated modules, build, depmod, plan, image, QEMU,
//! observation.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use modkit_core::{Policy, Version};
use modkit_sim::observed::{Observed, TimeTolerance};
use modkit_sim::Scenario;

use crate::{assets, build, cgen, initramfs, observe, plan, qemu};

/// Everything that can stop a kernel run, each naming the stage that failed.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The kernel's packages or the guest tools could not be had.
    #[error("kernel {kver}: {source}")]
    Assets {
        /// Kernel ABI name.
        kver: String,
        /// Why.
        #[source]
        source: assets::AssetError,
    },
    /// The scenario uses something a real kernel cannot express.
    #[error("{file}: cannot run on a real kernel: {source}")]
    Unsupported {
        /// Scenario file.
        file: String,
        /// The feature.
        #[source]
        source: cgen::Unsupported,
    },
    /// The events cannot be played by the guest runner.
    #[error("{file}: cannot run on a real kernel: {source}")]
    Plan {
        /// Scenario file.
        file: String,
        /// Why.
        #[source]
        source: plan::PlanError,
    },
    /// The generated modules did not build.
    #[error("{file}: building the generated modules for {kver} failed: {source}")]
    Build {
        /// Scenario file.
        file: String,
        /// Kernel ABI name.
        kver: String,
        /// Why.
        #[source]
        source: build::BuildError,
    },
    /// The guest image could not be written.
    #[error("{file}: writing the guest image failed: {source}")]
    Image {
        /// Scenario file.
        file: String,
        /// Why.
        #[source]
        source: initramfs::ImageError,
    },
    /// QEMU failed or the guest did not finish.
    #[error("{file}: booting {kver} failed: {source}")]
    Boot {
        /// Scenario file.
        file: String,
        /// Kernel ABI name.
        kver: String,
        /// Why.
        #[source]
        source: qemu::QemuError,
    },
    /// The guest's report could not be read.
    #[error("{file}: the guest's report on {kver} is unreadable: {source}")]
    Observe {
        /// Scenario file.
        file: String,
        /// Kernel ABI name.
        kver: String,
        /// Why.
        #[source]
        source: observe::ObserveError,
    },
    /// A file of the work directory could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// How to run.
#[derive(Debug, Clone)]
pub struct KernelOptions {
    /// Debian kernel ABI name, e.g. `6.1.0-50-cloud-amd64`.
    pub kver: String,
    /// Keep the work directory (sources, image, console and report) here instead of a
    /// temporary one.
    pub work_dir: Option<PathBuf>,
    /// How long the scenario may run in the guest after its last event started before the
    /// runner stops waiting (default: see [`plan::default_deadline`]).
    pub deadline: Option<Duration>,
}

/// Emulation tolerance for time bounds: TCG runs the guest several times slower than the
/// host, and every modprobe is a fork and exec. `time_max` holds on a real kernel when the
/// run ends by `2 × t + 5 s`; `time_min` is checked as it is (sleeps and timeouts are
/// timer-driven and never end early).
pub const KERNEL_TIME_TOLERANCE: TimeTolerance = TimeTolerance {
    percent: 200,
    slack_ns: 5_000_000_000,
};

/// The upstream version of a Debian kernel (downloads its packages if needed).
pub fn kernel_version(kver: &str) -> Result<Version, KernelError> {
    let a = assets::kernel(kver).map_err(|source| KernelError::Assets {
        kver: kver.to_string(),
        source,
    })?;
    parse_upstream(&a.upstream).ok_or_else(|| KernelError::Assets {
        kver: kver.to_string(),
        source: assets::AssetError::Version(a.upstream.clone()),
    })
}

/// `"6.1.176"` → 6.1.176.
pub fn parse_upstream(s: &str) -> Option<Version> {
    let p: Policy = format!("linux-{s}").parse().ok()?;
    p.version()
}

/// Runs `sc` on the kernel `opts.kver` and returns what it showed.
pub fn run_scenario(sc: &Scenario, opts: &KernelOptions) -> Result<Observed, KernelError> {
    let started = Instant::now();
    let kver = opts.kver.as_str();
    let file = sc.file.clone();
    if let Some(u) = cgen::device_model_unsupported(sc) {
        return Err(KernelError::Unsupported { file, source: u });
    }
    let assets = assets::kernel(kver).map_err(|source| KernelError::Assets {
        kver: kver.to_string(),
        source,
    })?;
    let tools = assets::guest_tools().map_err(|source| KernelError::Assets {
        kver: kver.to_string(),
        source,
    })?;
    let tmp;
    let work: PathBuf = match &opts.work_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("modkit-kernel-")
                .tempdir()
                .map_err(|source| KernelError::Io {
                    path: std::env::temp_dir().display().to_string(),
                    source,
                })?;
            tmp.path().to_path_buf()
        }
    };
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| KernelError::Io { path, source }
    };
    std::fs::create_dir_all(&work).map_err(io(&work))?;

    // Modules as C.
    let symvers = std::fs::read_to_string(&assets.symvers).map_err(io(&assets.symvers))?;
    let target = cgen::Target {
        kver: kver.to_string(),
        upstream: upstream_triple(&assets.upstream),
        vmlinux_exports: cgen::parse_symvers(&symvers),
    };
    let generated = cgen::generate(sc, &target).map_err(|source| KernelError::Unsupported {
        file: file.clone(),
        source,
    })?;
    let src = work.join("src");
    write_files(&src, &generated.files)?;
    let built = build::build_modules(&assets, &src).map_err(|source| KernelError::Build {
        file: file.clone(),
        kver: kver.to_string(),
        source,
    })?;
    let mut stale_built = Vec::new();
    for (name, files) in &generated.stale {
        let dir = work.join(format!("stale-{name}"));
        write_files(&dir, files)?;
        let kos = build::build_modules(&assets, &dir).map_err(|source| KernelError::Build {
            file: file.clone(),
            kver: kver.to_string(),
            source,
        })?;
        if let Some(ko) = kos.into_iter().find(|p| ko_name(p) == *name) {
            stale_built.push((name.clone(), ko));
        }
    }
    let named: Vec<(String, PathBuf)> = built.iter().map(|p| (ko_name(p), p.clone())).collect();
    // `versions = false`: the module as `modprobe --force-modversion` sees it, without its
    // `__versions` section (the loader then forces it in, tainting F).
    for (name, ko) in &named {
        if sc
            .db
            .id(name)
            .is_some_and(|i| !sc.db.spec(i).provenance.versions)
        {
            strip_versions(ko).map_err(|source| KernelError::Io {
                path: ko.display().to_string(),
                source,
            })?;
        }
    }
    // Entries modpost would refuse in the source (6.16+: an explicit `module:` namespace
    // import), added to the built module's .modinfo for the loader to judge.
    for (name, entries) in &generated.modinfo_after_build {
        if let Some((_, ko)) = named.iter().find(|(n, _)| n == name) {
            append_modinfo(ko, entries).map_err(|source| KernelError::Io {
                path: ko.display().to_string(),
                source,
            })?;
        }
    }
    if !named.iter().any(|(n, _)| n == "modkit_rt") {
        return Err(KernelError::Io {
            path: src.join("modkit_rt.ko").display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "modkit_rt was not built"),
        });
    }
    let root = work.join("root");
    build::stage_tree(&assets, &named, &stale_built, &root).map_err(|source| {
        KernelError::Build {
            file: file.clone(),
            kver: kver.to_string(),
            source,
        }
    })?;

    // Events and the guest.
    let deadline = opts
        .deadline
        .unwrap_or_else(|| expected_deadline(sc, &assets.upstream));
    let guest_path = |m: &str| format!("/lib/modules/{kver}/extra/{m}.ko");
    let plan_text = plan::plan(sc, &guest_path, deadline).map_err(|source| KernelError::Plan {
        file: file.clone(),
        source,
    })?;
    std::fs::write(work.join("plan"), &plan_text).map_err(io(&work.join("plan")))?;
    let runner = plan::build_runner(&assets::cache_dir().join("runner")).map_err(|source| {
        KernelError::Plan {
            file: file.clone(),
            source,
        }
    })?;
    let image = work.join("initramfs.cpio");
    let flags = boot_flags(sc);
    initramfs::guest_image(&assets, &tools, &root, &runner, &plan_text, &flags, &image).map_err(
        |source| KernelError::Image {
            file: file.clone(),
            source,
        },
    )?;
    let boot_opts = qemu::BootOptions {
        timeout: deadline + Duration::from_secs(180),
        extra_cmdline: boot_cmdline(sc),
        ..qemu::BootOptions::default()
    };
    let out = qemu::boot(&assets, &image, &boot_opts).map_err(|source| KernelError::Boot {
        file: file.clone(),
        kver: kver.to_string(),
        source,
    })?;
    let _ = std::fs::write(work.join("console.txt"), &out.console);
    let _ = std::fs::write(work.join("report.txt"), &out.report);
    let label = format!("kernel {kver} ({})", assets.upstream);
    let mut obs =
        observe::observe(sc, &out.report, &label).map_err(|source| KernelError::Observe {
            file: file.clone(),
            kver: kver.to_string(),
            source,
        })?;
    obs.time_tolerance = KERNEL_TIME_TOLERANCE;
    obs.import_order = import_order(sc, &named);
    if !obs.unobservable.contains(&"diagnostics") {
        obs.unobservable.push("diagnostics");
    }
    obs.notes.push(format!(
        "QEMU (TCG) boot took {:.1} s; {:.1} s in all with the build; times are measured in the guest, slowed by emulation",
        out.wall.as_secs_f64(),
        started.elapsed().as_secs_f64()
    ));
    Ok(obs)
}

/// How long the guest waits for the scenario: what the simulator predicts under this
/// kernel's version (twice, for emulation), plus 100 ms per thread (each modprobe is a
/// fork and exec under TCG) and 20 s, at least the plan's own estimate, at most 10 min.
fn expected_deadline(sc: &Scenario, upstream: &str) -> Duration {
    let base = plan::default_deadline(sc);
    let threads: u64 = sc.events.iter().map(|e| e.threads as u64).sum();
    let predicted = parse_upstream(upstream)
        .and_then(|v| {
            modkit_sim::Sim::new(sc, Policy::Linux(v), sc.seed)
                .run()
                .ok()
        })
        .map(|r| Duration::from_nanos(r.end_time.saturating_mul(2)))
        .unwrap_or_default();
    (predicted + Duration::from_millis(100 * threads) + Duration::from_secs(20))
        .max(base)
        .min(Duration::from_secs(600))
}

/// The /init flags of a scenario: `clear_warn_once` when a module is unsigned (the
/// kernel's once-per-boot notice was used up by modkit_rt, which is unsigned too), and
/// `sig_enforce` (set after modkit_rt is in: a `module.sig_enforce=1` on the command line
/// would refuse modkit_rt itself).
fn boot_flags(sc: &Scenario) -> Vec<&'static str> {
    let mut f = Vec::new();
    if sc
        .db
        .specs()
        .iter()
        .any(|s| !s.builtin && !s.provenance.signed)
    {
        f.push("clear_warn_once");
    }
    if sc.config.sig_enforce {
        f.push("sig_enforce");
    }
    f
}

/// The kernel command line's scenario part: `module_blacklist=a,b`.
fn boot_cmdline(sc: &Scenario) -> String {
    if sc.config.module_blacklist.is_empty() {
        String::new()
    } else {
        format!("module_blacklist={}", sc.config.module_blacklist.join(","))
    }
}

fn upstream_triple(s: &str) -> (u32, u32, u32) {
    let mut it = s
        .split(['.', '-', '+', '~'])
        .map(|x| x.parse::<u32>().unwrap_or(0));
    (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    )
}

/// `objcopy --strip-debug --remove-section=__versions KO` (the debug info relocates
/// against the section, so it goes too).
fn strip_versions(ko: &Path) -> std::io::Result<()> {
    let out = std::process::Command::new("objcopy")
        .arg("--strip-debug")
        .arg("--remove-section=__versions")
        .arg(ko)
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "objcopy --remove-section=__versions failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Appends `tag=value` entries (each NUL-terminated, as `MODULE_INFO()` lays them out) to
/// the `.modinfo` section of a built module: `objcopy --dump-section`, then
/// `--update-section` (objcopy re-lays out a relocatable file for the larger section; no
/// symbol or relocation points past the old end). The loader's `get_modinfo()` walks the
/// section's strings, so it sees the entries as if `MODULE_INFO()` had written them.
fn append_modinfo(ko: &Path, entries: &[String]) -> std::io::Result<()> {
    let section = ko.with_extension("modinfo.bin");
    let run = |args: &[&std::ffi::OsStr]| -> std::io::Result<()> {
        let out = std::process::Command::new("objcopy").args(args).output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "objcopy {:?} failed: {}",
                args,
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    };
    let dump = format!(".modinfo={}", section.display());
    run(&["--dump-section".as_ref(), dump.as_ref(), ko.as_os_str()])?;
    let mut bytes = std::fs::read(&section)?;
    for e in entries {
        bytes.extend_from_slice(e.as_bytes());
        bytes.push(0);
    }
    std::fs::write(&section, &bytes)?;
    run(&["--update-section".as_ref(), dump.as_ref(), ko.as_os_str()])?;
    std::fs::remove_file(&section)
}

fn ko_name(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().replace('-', "_"))
        .unwrap_or_default()
}

fn write_files(dir: &Path, files: &[(String, String)]) -> Result<(), KernelError> {
    std::fs::create_dir_all(dir).map_err(|source| KernelError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|source| KernelError::Io {
            path: p.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

/// The order in which the real kernel resolves each scenario module's imports: the built
/// `.ko`'s undefined symbols in symbol-table order (as `simplify_symbols()` walks them),
/// restricted to the scenario's imports. A module that cannot be read is left out (the
/// simulator then keeps the file's order for it).
fn import_order(
    sc: &Scenario,
    built: &[(String, PathBuf)],
) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out = std::collections::BTreeMap::new();
    for (name, path) in built {
        let Some(id) = sc.db.id(name) else {
            continue;
        };
        let spec = sc.db.spec(id);
        if spec.imports.len() < 2 {
            continue;
        }
        let Ok(ko) = modkit_ko::ko::KoModule::from_path(path) else {
            continue;
        };
        let Ok(deps) = ko.dependency_symbols else {
            continue;
        };
        let order: Vec<String> = deps
            .into_iter()
            .map(|d| d.name)
            .filter(|n| spec.imports.iter().any(|i| &i.name == n))
            .collect();
        out.insert(name.clone(), order);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_versions_parse() {
        assert_eq!(upstream_triple("6.1.176"), (6, 1, 176));
        assert_eq!(upstream_triple("6.12.117"), (6, 12, 117));
        assert_eq!(ko_name(Path::new("/x/a-b.ko")), "a_b");
    }
}
