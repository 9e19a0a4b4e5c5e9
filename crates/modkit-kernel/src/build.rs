//! Building the generated modules against a kernel's headers (kbuild), and staging them as
//! a module tree indexed by modkit's own depmod (byte-identical to kmod 30's).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::assets::KernelAssets;

/// Why the modules could not be built or staged.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// make failed: its output is kept.
    #[error("make -C {headers} M={dir} modules failed:\n{output}")]
    Make {
        /// Headers directory.
        headers: String,
        /// Module directory.
        dir: String,
        /// The last lines of make's output.
        output: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// depmod failed.
    #[error("depmod of {dir} failed (exit {code}): {stderr}")]
    Depmod {
        /// Tree.
        dir: String,
        /// Exit code.
        code: i32,
        /// What it said.
        stderr: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Runs `make -C <headers> M=<src_dir> modules` with the kernel's compiler and returns the
/// built `.ko` files. BTF for modules is turned off (no pahole needed).
pub fn build_modules(assets: &KernelAssets, src_dir: &Path) -> Result<Vec<PathBuf>, BuildError> {
    let src = std::fs::canonicalize(src_dir).map_err(io(src_dir))?;
    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let out = Command::new("make")
        .arg("-C")
        .arg(&assets.headers)
        .arg(format!("M={}", src.display()))
        .arg(format!("-j{jobs}"))
        .arg(format!("CC={}", assets.cc))
        .arg("CONFIG_DEBUG_INFO_BTF_MODULES=")
        .args(&assets.make_vars)
        .arg("modules")
        .output()
        .map_err(io(&assets.headers))?;
    if !out.status.success() {
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        return Err(BuildError::Make {
            headers: assets.headers.display().to_string(),
            dir: src.display().to_string(),
            output: tail,
        });
    }
    let mut kos: Vec<PathBuf> = std::fs::read_dir(&src)
        .map_err(io(&src))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ko"))
        .collect();
    kos.sort();
    Ok(kos)
}

/// Stages `built` as `<out_root>/lib/modules/KVER/extra/NAME.ko` with the kernel's own
/// modules.builtin and modules.order, and indexes the tree with modkit's depmod. For each
/// `(name, stale_ko)` in `stale`, depmod indexes the stale build and the real module then
/// replaces it without depmod running again: a modules.dep out of date, as it arises when a
/// module is copied in without rerunning depmod. Returns the module directory.
pub fn stage_tree(
    assets: &KernelAssets,
    built: &[(String, PathBuf)],
    stale: &[(String, PathBuf)],
    out_root: &Path,
) -> Result<PathBuf, BuildError> {
    let moddir = out_root.join(format!("lib/modules/{}", assets.kver));
    let extra = moddir.join("extra");
    std::fs::create_dir_all(&extra).map_err(io(&extra))?;
    let dest = |name: &str| extra.join(format!("{name}.ko"));
    for (name, ko) in built {
        let src = stale
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p)
            .unwrap_or(ko);
        std::fs::copy(src, dest(name)).map_err(io(src))?;
    }
    let kdir = assets.root.join(format!("lib/modules/{}", assets.kver));
    for f in [
        "modules.builtin",
        "modules.builtin.modinfo",
        "modules.order",
    ] {
        let p = kdir.join(f);
        if p.exists() {
            std::fs::copy(&p, moddir.join(f)).map_err(io(&p))?;
        }
    }
    let opts = modkit_ko::depmod::DepmodOptions {
        basedir: Some(out_root.to_path_buf()),
        kversion: assets.kver.clone(),
        symvers: Some(assets.symvers.clone()),
        ..Default::default()
    };
    let (mut o, mut e) = (Vec::new(), Vec::new());
    let code = modkit_ko::depmod::run(&opts, &mut o, &mut e).map_err(|err| BuildError::Depmod {
        dir: moddir.display().to_string(),
        code: -1,
        stderr: err.to_string(),
    })?;
    if code != 0 {
        return Err(BuildError::Depmod {
            dir: moddir.display().to_string(),
            code,
            stderr: String::from_utf8_lossy(&e).into_owned(),
        });
    }
    for (name, _) in stale {
        if let Some((_, real)) = built.iter().find(|(n, _)| n == name) {
            std::fs::copy(real, dest(name)).map_err(io(real))?;
        }
    }
    Ok(moddir)
}
