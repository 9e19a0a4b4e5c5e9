//! A Debian kernel and the guest's tools, fetched with `apt-get download` into a cache and
//! unpacked with `dpkg-deb -x`; nothing is installed on the host.
//!
//! Adding a kernel is one step: pass its Debian ABI name (`--kernel KVER`, e.g.
//! `6.1.0-50-cloud-amd64`); the packages `linux-image-KVER-unsigned` (or
//! `linux-image-KVER`), `linux-headers-KVER`, the headers' `-common` package and the
//! `linux-kbuild-*` package pinned to the headers' exact version are found from apt's
//! metadata (`apt-cache show`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a kernel or a tool could not be had.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    /// apt knows no such package.
    #[error("apt knows no package {package}; check the kernel ABI name (apt-cache search linux-image) or run apt-get update")]
    NoPackage {
        /// Package name.
        package: String,
    },
    /// A command failed.
    #[error("{command} failed: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Its stderr or the spawn error.
        detail: String,
    },
    /// A file or directory could not be used.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The unpacked package lacks a file it should have.
    #[error("{path} is missing from the unpacked packages of {kver}")]
    Missing {
        /// Kernel.
        kver: String,
        /// The missing path.
        path: String,
    },
    /// The package version has no upstream version.
    #[error("cannot read an upstream kernel version from {0:?}")]
    Version(String),
    /// The compiler the kernel was built with is not installed.
    #[error(
        "the kernel was built with {compiler}, which is not installed: apt-get install {package}"
    )]
    Compiler {
        /// `gcc-12`.
        compiler: String,
        /// Debian package to install.
        package: String,
    },
}

/// An unpacked kernel: image, headers ready for out-of-tree builds, version.
#[derive(Debug, Clone)]
pub struct KernelAssets {
    /// Debian ABI name.
    pub kver: String,
    /// Upstream version, `6.1.176`.
    pub upstream: String,
    /// Debian package version, `6.1.176-1`.
    pub package_version: String,
    /// The unpacked root.
    pub root: PathBuf,
    /// The kernel image.
    pub vmlinuz: PathBuf,
    /// The headers directory (`make -C` here).
    pub headers: PathBuf,
    /// vmlinux's exports.
    pub symvers: PathBuf,
    /// The kernel's .config.
    pub config: PathBuf,
    /// The compiler the kernel was built with (`gcc-12`).
    pub cc: String,
}

/// busybox and kmod for the guest.
#[derive(Debug, Clone)]
pub struct GuestTools {
    /// Static busybox.
    pub busybox: PathBuf,
    /// kmod's multicall binary.
    pub kmod: PathBuf,
    /// Shared libraries kmod needs (host paths, the same paths in the guest).
    pub kmod_libs: Vec<PathBuf>,
}

/// The cache: `$MODKIT_KERNEL_CACHE`, else `/var/cache/modkit-ci/kernel` when writable,
/// else `~/.cache/modkit/kernel`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MODKIT_KERNEL_CACHE") {
        return PathBuf::from(d);
    }
    let sys = PathBuf::from("/var/cache/modkit-ci/kernel");
    if std::fs::create_dir_all(&sys).is_ok() && writable(&sys) {
        return sys;
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/tmp".into());
    home.join(".cache/modkit/kernel")
}

fn writable(dir: &Path) -> bool {
    let probe = dir.join(format!(".probe-{}", std::process::id()));
    let ok = std::fs::write(&probe, b"").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AssetError + '_ {
    move |source| AssetError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn run(cmd: &mut Command) -> Result<String, AssetError> {
    let line = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| AssetError::Command {
        command: line.clone(),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(AssetError::Command {
            command: line,
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `apt-cache show PKG` fields of the newest candidate.
fn apt_show(pkg: &str) -> Result<Vec<(String, String)>, AssetError> {
    let text = match run(Command::new("apt-cache").args(["show", "--no-all-versions", pkg])) {
        Ok(t) if !t.trim().is_empty() => t,
        _ => {
            // Package lists may be missing on a fresh machine.
            let _ = Command::new("apt-get").args(["update", "-qq"]).status();
            run(Command::new("apt-cache").args(["show", "--no-all-versions", pkg])).map_err(
                |_| AssetError::NoPackage {
                    package: pkg.to_string(),
                },
            )?
        }
    };
    Ok(parse_control(&text))
}

/// Fields of a Debian control paragraph (the first one).
pub fn parse_control(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(last) = out.last_mut() {
                last.1.push('\n');
                last.1.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

fn field<'a>(f: &'a [(String, String)], key: &str) -> Option<&'a str> {
    f.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Package names in a Depends field (alternatives: the first), with their pinned version
/// when the relation is `=`.
pub fn depends(field: &str) -> Vec<(String, Option<String>)> {
    field
        .split(',')
        .filter_map(|alt| {
            let first = alt.split('|').next()?.trim();
            let (name, rel) = match first.split_once('(') {
                Some((n, r)) => (n.trim(), Some(r.trim_end_matches(')').trim())),
                None => (first, None),
            };
            let pinned = rel.and_then(|r| {
                let r = r.trim();
                r.strip_prefix('=')
                    .filter(|v| !v.starts_with('>') && !v.starts_with('<'))
                    .map(|v| v.trim().to_string())
                    .or_else(|| r.strip_prefix(">=").map(|v| v.trim().to_string()))
            });
            (!name.is_empty()).then(|| (name.to_string(), pinned))
        })
        .collect()
}

/// `6.1.176-1` → `6.1.176`; `6.12.117-1~deb12u1` → `6.12.117`.
pub fn upstream_of(package_version: &str) -> Option<String> {
    let v = package_version.split(':').next_back()?;
    let v = v.split(['-', '~', '+']).next()?;
    let parts: Vec<&str> = v.split('.').collect();
    if parts.len() < 2 || parts.iter().any(|p| p.parse::<u32>().is_err()) {
        return None;
    }
    Some(v.to_string())
}

/// Downloads `pkg` (optionally `=version`) into `dir` unless a .deb of it is there.
fn download(dir: &Path, pkg: &str, version: Option<&str>) -> Result<PathBuf, AssetError> {
    if let Some(p) = find_deb(dir, pkg, version)? {
        return Ok(p);
    }
    let spec = match version {
        Some(v) => format!("{pkg}={v}"),
        None => pkg.to_string(),
    };
    tracing::info!("apt-get download {spec}");
    run(Command::new("apt-get")
        .args(["download", "-q", &spec])
        .current_dir(dir))?;
    find_deb(dir, pkg, version)?.ok_or_else(|| AssetError::NoPackage {
        package: spec.clone(),
    })
}

fn find_deb(dir: &Path, pkg: &str, version: Option<&str>) -> Result<Option<PathBuf>, AssetError> {
    let prefix = format!("{pkg}_");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            n.starts_with(&prefix)
                && n.ends_with(".deb")
                && version.is_none_or(|v| n.contains(&v.replace(':', "%3a")))
        })
        .collect();
    found.sort();
    Ok(found.pop())
}

/// Unpacks `deb` into `root` (idempotent per package file: a stamp records it).
fn unpack(deb: &Path, root: &Path) -> Result<(), AssetError> {
    let stamp = root.join(format!(
        ".unpacked-{}",
        deb.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
    ));
    if stamp.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(root).map_err(io(root))?;
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(root))?;
    std::fs::write(&stamp, b"").map_err(io(&stamp))?;
    Ok(())
}

/// The kernel `kver`: downloaded and unpacked once, headers ready for `make -C`.
pub fn kernel(kver: &str) -> Result<KernelAssets, AssetError> {
    if kver.is_empty() || kver.contains(['/', ' ']) || kver.starts_with('.') {
        return Err(AssetError::NoPackage {
            package: format!("linux-image-{kver}"),
        });
    }
    let cache = cache_dir();
    let debs = cache.clone();
    std::fs::create_dir_all(&debs).map_err(io(&debs))?;
    let root = cache.join(format!("root-{kver}"));
    let done = root.join(".complete");
    if !done.exists() {
        let _lock = Lock::take(&cache.join(format!(".lock-{kver}")))?;
        if !done.exists() {
            fill(kver, &debs, &root)?;
            std::fs::write(&done, b"").map_err(io(&done))?;
        }
    }
    let version_file = root.join(".package-version");
    let package_version = std::fs::read_to_string(&version_file)
        .map_err(io(&version_file))?
        .trim()
        .to_string();
    let upstream = upstream_of(&package_version)
        .ok_or_else(|| AssetError::Version(package_version.clone()))?;
    let headers = root.join(format!("usr/src/linux-headers-{kver}"));
    let need = |p: PathBuf| {
        if p.exists() {
            Ok(p)
        } else {
            Err(AssetError::Missing {
                kver: kver.to_string(),
                path: p.display().to_string(),
            })
        }
    };
    let vmlinuz = need(root.join(format!("boot/vmlinuz-{kver}")))?;
    let symvers = need(headers.join("Module.symvers"))?;
    let config = need(root.join(format!("boot/config-{kver}")))?;
    let cfg = std::fs::read_to_string(&config).map_err(io(&config))?;
    let cc = compiler_of(&cfg).unwrap_or_else(|| "gcc".into());
    if Command::new(&cc).arg("--version").output().is_err() {
        return Err(AssetError::Compiler {
            package: cc.clone(),
            compiler: cc,
        });
    }
    Ok(KernelAssets {
        kver: kver.to_string(),
        upstream,
        package_version,
        root,
        vmlinuz,
        headers,
        symvers,
        config,
        cc,
    })
}

/// `CONFIG_CC_VERSION_TEXT="gcc-12 (Debian 12.2.0-14) 12.2.0"` → `gcc-12`.
pub fn compiler_of(config: &str) -> Option<String> {
    let line = config
        .lines()
        .find(|l| l.starts_with("CONFIG_CC_VERSION_TEXT="))?;
    let v = line.split_once('=')?.1.trim_matches('"');
    let first = v.split_whitespace().next()?;
    (first.starts_with("gcc") || first.starts_with("clang")).then(|| first.to_string())
}

fn fill(kver: &str, debs: &Path, root: &Path) -> Result<(), AssetError> {
    let tmp = root.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    // The image: the unsigned package where there is one.
    let (image, fields) = match apt_show(&format!("linux-image-{kver}-unsigned")) {
        Ok(f) => (format!("linux-image-{kver}-unsigned"), f),
        Err(_) => {
            let p = format!("linux-image-{kver}");
            let f = apt_show(&p)?;
            (p, f)
        }
    };
    let version = field(&fields, "Version")
        .ok_or_else(|| AssetError::Version(image.clone()))?
        .to_string();
    unpack(&download(debs, &image, Some(&version))?, &tmp)?;
    // Headers, their -common package and kbuild, pinned to the headers' version.
    let hdr = format!("linux-headers-{kver}");
    let hf = apt_show(&hdr)?;
    unpack(&download(debs, &hdr, Some(&version))?, &tmp)?;
    for (dep, pinned) in depends(field(&hf, "Depends").unwrap_or("")) {
        if dep.starts_with("linux-headers-") || dep.starts_with("linux-kbuild-") {
            let v = pinned.unwrap_or_else(|| version.clone());
            unpack(&download(debs, &dep, Some(&v))?, &tmp)?;
        }
    }
    // The headers' Makefile includes an absolute /usr/src path: point it at our copy.
    let mk = tmp.join(format!("usr/src/linux-headers-{kver}/Makefile"));
    let text = std::fs::read_to_string(&mk).map_err(io(&mk))?;
    let fixed = fix_makefile(&text, &root.join("usr/src"));
    std::fs::write(&mk, fixed).map_err(io(&mk))?;
    let vf = tmp.join(".package-version");
    std::fs::write(&vf, &version).map_err(io(&vf))?;
    let _ = std::fs::remove_dir_all(root);
    std::fs::rename(&tmp, root).map_err(io(root))?;
    Ok(())
}

/// Rewrites `include /usr/src/...` to the unpacked tree under `src`.
pub fn fix_makefile(text: &str, src: &Path) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if let Some(rest) = line.trim_start().strip_prefix("include ") {
            if let Some(tail) = rest.trim().strip_prefix("/usr/src/") {
                out.push_str(&format!("include {}/{}\n", src.display(), tail));
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// busybox-static and kmod, from their Debian packages.
pub fn guest_tools() -> Result<GuestTools, AssetError> {
    let cache = cache_dir();
    std::fs::create_dir_all(&cache).map_err(io(&cache))?;
    let root = cache.join("tools");
    let _lock = Lock::take(&cache.join(".lock-tools"))?;
    for pkg in ["busybox-static", "kmod"] {
        let deb = download(&cache, pkg, None)?;
        unpack(&deb, &root)?;
    }
    let busybox = root.join("bin/busybox");
    let kmod = root.join("bin/kmod");
    for p in [&busybox, &kmod] {
        if !p.exists() {
            return Err(AssetError::Missing {
                kver: "guest tools".into(),
                path: p.display().to_string(),
            });
        }
    }
    let kmod_libs = shared_libs(&kmod)?;
    Ok(GuestTools {
        busybox,
        kmod,
        kmod_libs,
    })
}

/// The shared libraries `bin` loads, as `ldd` resolves them on the host (the host is a
/// Debian of the same release as the package), the dynamic loader included.
pub fn shared_libs(bin: &Path) -> Result<Vec<PathBuf>, AssetError> {
    let text = run(Command::new("ldd").arg(bin))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let path = match line.split_once("=>") {
            Some((_, rhs)) => rhs.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            out.push(PathBuf::from(p));
        }
    }
    Ok(out)
}

/// An exclusive lock file (flock), released on drop.
struct Lock(#[allow(dead_code)] std::fs::File);

impl Lock {
    fn take(path: &Path) -> Result<Lock, AssetError> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io(path))?;
        f.lock().map_err(io(path))?;
        Ok(Lock(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_fields() {
        assert_eq!(upstream_of("6.1.176-1").as_deref(), Some("6.1.176"));
        assert_eq!(
            upstream_of("6.12.117-1~deb12u1").as_deref(),
            Some("6.12.117")
        );
        assert_eq!(upstream_of("junk"), None);
        let d = depends("linux-headers-6.1.0-50-common (= 6.1.176-1), linux-kbuild-6.1 (>= 6.1.176-1), gcc-12 | clang");
        assert_eq!(
            d[0],
            (
                "linux-headers-6.1.0-50-common".into(),
                Some("6.1.176-1".into())
            )
        );
        assert_eq!(d[1], ("linux-kbuild-6.1".into(), Some("6.1.176-1".into())));
        assert_eq!(d[2], ("gcc-12".into(), None));
        let f = parse_control("Package: x\nVersion: 1-2\nDescription: a\n more\n\nPackage: y\n");
        assert_eq!(field(&f, "Version"), Some("1-2"));
        assert_eq!(field(&f, "Description"), Some("a\nmore"));
    }

    #[test]
    fn makefile_and_compiler() {
        let m = fix_makefile(
            "include /usr/src/linux-headers-6.1.0-50-common/Makefile\n",
            Path::new("/c/root/usr/src"),
        );
        assert_eq!(
            m,
            "include /c/root/usr/src/linux-headers-6.1.0-50-common/Makefile\n"
        );
        assert_eq!(
            compiler_of(
                "CONFIG_X=y\nCONFIG_CC_VERSION_TEXT=\"gcc-12 (Debian 12.2.0-14) 12.2.0\"\n"
            )
            .as_deref(),
            Some("gcc-12")
        );
    }
}
