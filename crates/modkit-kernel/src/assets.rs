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
    /// The compiler modules are built with: the one the kernel was built with (`gcc-12`),
    /// or, when that one cannot be installed on this host, the host's gcc (see
    /// [`compat_make_vars`]).
    pub cc: String,
    /// Extra `make` variables for the build (empty when `cc` is the kernel's own compiler).
    pub make_vars: Vec<String>,
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

/// Where apt looks for a package: the host's own sources, or a Debian suite the host does
/// not use (sid), through a private apt configuration under the cache that leaves the
/// system's sources, lists and state alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Apt {
    /// The host's `/etc/apt` sources.
    Host,
    /// `deb http://deb.debian.org/debian SUITE main`, lists and downloads kept in
    /// `$MODKIT_KERNEL_CACHE/apt-SUITE`, the Release file checked against the keys of
    /// `debian-archive-keyring` (bookworm's package carries the trixie keys that sign sid).
    Suite(String),
}

/// The suites searched, in order, for a kernel the host's apt does not know:
/// `$MODKIT_KERNEL_SUITES` (space-separated), default `sid`.
pub fn extra_suites() -> Vec<String> {
    std::env::var("MODKIT_KERNEL_SUITES")
        .unwrap_or_else(|_| "sid".into())
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

impl Apt {
    /// `-o` options pointing apt at this source.
    fn options(&self) -> Result<Vec<String>, AssetError> {
        let Apt::Suite(suite) = self else {
            return Ok(Vec::new());
        };
        let dir = cache_dir().join(format!("apt-{suite}"));
        let sources = dir.join("sources.list");
        if !sources.exists() {
            for d in ["lists/partial", "cache/archives/partial"] {
                let p = dir.join(d);
                std::fs::create_dir_all(&p).map_err(io(&p))?;
            }
            let line = format!(
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian {suite} main\n"
            );
            std::fs::write(&sources, line).map_err(io(&sources))?;
        }
        let d = dir.display();
        Ok(vec![
            "-o".into(),
            format!("Dir::Etc::sourcelist={d}/sources.list"),
            "-o".into(),
            "Dir::Etc::sourceparts=-".into(),
            "-o".into(),
            format!("Dir::State::Lists={d}/lists"),
            "-o".into(),
            format!("Dir::Cache={d}/cache"),
            "-o".into(),
            "APT::Get::List-Cleanup=0".into(),
        ])
    }

    fn command(&self, tool: &str) -> Result<Command, AssetError> {
        let mut c = Command::new(tool);
        c.args(self.options()?);
        Ok(c)
    }

    /// `apt-cache show PKG` fields of the newest candidate (lists fetched when missing).
    fn show(&self, pkg: &str) -> Result<Vec<(String, String)>, AssetError> {
        let ask = || -> Result<String, AssetError> {
            run(self
                .command("apt-cache")?
                .args(["show", "--no-all-versions", pkg]))
        };
        let text = match ask() {
            Ok(t) if !t.trim().is_empty() => t,
            _ => {
                // Package lists may be missing on a fresh machine.
                let _ = self.command("apt-get")?.args(["update", "-qq"]).status();
                ask().map_err(|_| AssetError::NoPackage {
                    package: pkg.to_string(),
                })?
            }
        };
        Ok(parse_control(&text))
    }
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
    download_from(&Apt::Host, dir, pkg, version)
}

/// [`download`] from a given apt source.
fn download_from(
    apt: &Apt,
    dir: &Path,
    pkg: &str,
    version: Option<&str>,
) -> Result<PathBuf, AssetError> {
    if let Some(p) = find_deb(dir, pkg, version)? {
        return Ok(p);
    }
    let spec = match version {
        Some(v) => format!("{pkg}={v}"),
        None => pkg.to_string(),
    };
    tracing::info!("apt-get download {spec}");
    run(apt
        .command("apt-get")?
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
    let own = compiler_of(&cfg).unwrap_or_else(|| "gcc".into());
    let runs = |cc: &str| Command::new(cc).arg("--version").output().is_ok();
    let (cc, make_vars) = if runs(&own) {
        (own, Vec::new())
    } else if let Some(host) = ["gcc-12", "gcc"].into_iter().find(|c| runs(c)) {
        // The kernel's compiler (sid's gcc-16 for 7.x) needs sid's glibc and cannot be
        // installed on bookworm: build with the host's gcc, minus the flags it lacks.
        tracing::info!("kernel {kver} was built with {own}, not installed: building with {host}");
        let vars = compat_make_vars(&cfg, host);
        (host.to_string(), vars)
    } else {
        return Err(AssetError::Compiler {
            package: own.trim_start_matches("x86_64-linux-gnu-").to_string(),
            compiler: own,
        });
    };
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
        make_vars,
    })
}

/// Make variables that let `cc`, older than the kernel's compiler, build modules against
/// its headers. `CONFIG_CC_HAS_*` options the kernel's compiler set and that make kbuild
/// pass a flag `cc` rejects are cleared on make's command line (`CONFIG_X=`), so kbuild
/// takes the older compiler's path (e.g. `-falign-functions=16` for
/// `-fmin-function-alignment=16`, gcc 14). Attributes the headers use and `cc` does not
/// know (`__counted_by`, gcc 15: a bounds-checking hint that changes no layout) are let
/// through with `KCFLAGS=-Wno-attributes` (the generated modules build with `-Werror`).
/// Each flag and attribute is tried on `cc` itself.
pub fn compat_make_vars(config: &str, cc: &str) -> Vec<String> {
    const FLAGS: &[(&str, &str)] = &[(
        "CONFIG_CC_HAS_MIN_FUNCTION_ALIGNMENT",
        "-fmin-function-alignment=16",
    )];
    let accepts = |flags: &[&str], src: &str| -> bool {
        let dir = std::env::temp_dir().join(format!("modkit-cc-probe-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join("probe.c");
        let ok = std::fs::write(&file, src).is_ok()
            && Command::new(cc)
                .args(flags)
                .args(["-Werror", "-S", "-o", "/dev/null"])
                .arg(&file)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
        let _ = std::fs::remove_dir_all(&dir);
        ok
    };
    let has = |opt: &str| config.lines().any(|l| l == format!("{opt}=y"));
    let mut vars: Vec<String> = FLAGS
        .iter()
        .filter(|(opt, flag)| has(opt) && !accepts(&[flag], ""))
        .map(|(opt, _)| format!("{opt}="))
        .collect();
    if has("CONFIG_CC_HAS_COUNTED_BY")
        && !accepts(
            &[],
            "struct s { int n; int a[] __attribute__((counted_by(n))); };\n",
        )
    {
        vars.push("KCFLAGS=-Wno-attributes".into());
    }
    vars
}

/// `CONFIG_CC_VERSION_TEXT="gcc-12 (Debian 12.2.0-14) 12.2.0"` → `gcc-12`.
pub fn compiler_of(config: &str) -> Option<String> {
    let line = config
        .lines()
        .find(|l| l.starts_with("CONFIG_CC_VERSION_TEXT="))?;
    let v = line.split_once('=')?.1.trim_matches('"');
    let first = v.split_whitespace().next()?;
    // Debian 7.x records the triplet-prefixed name: `x86_64-linux-gnu-gcc-16`.
    let base = first.rsplit("-linux-gnu-").next().unwrap_or(first);
    (base.starts_with("gcc") || base.starts_with("clang")).then(|| first.to_string())
}

fn fill(kver: &str, debs: &Path, root: &Path) -> Result<(), AssetError> {
    let tmp = root.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    // The apt source that knows the kernel: the host's, else the extra suites (sid). The
    // image: the unsigned package where there is one (Debian 6.x), else the (signed) image.
    let mut found = None;
    let sources = std::iter::once(Apt::Host).chain(extra_suites().into_iter().map(Apt::Suite));
    'search: for apt in sources {
        for name in [
            format!("linux-image-{kver}-unsigned"),
            format!("linux-image-{kver}"),
        ] {
            if let Ok(f) = apt.show(&name) {
                found = Some((apt, name, f));
                break 'search;
            }
        }
    }
    let (apt, image, fields) = found.ok_or_else(|| AssetError::NoPackage {
        package: format!("linux-image-{kver}"),
    })?;
    tracing::info!("kernel {kver}: {image} from {apt:?}");
    let version = field(&fields, "Version")
        .ok_or_else(|| AssetError::Version(image.clone()))?
        .to_string();
    unpack(&download_from(&apt, debs, &image, Some(&version))?, &tmp)?;
    // Debian 7.x splits the image: linux-image-KVER is a meta package whose
    // linux-binary-KVER holds the vmlinuz and linux-modules-KVER the modules and
    // modules.builtin/.order.
    for (dep, pinned) in depends(field(&fields, "Depends").unwrap_or("")) {
        if dep == format!("linux-binary-{kver}") || dep == format!("linux-modules-{kver}") {
            let v = pinned.unwrap_or_else(|| version.clone());
            unpack(&download_from(&apt, debs, &dep, Some(&v))?, &tmp)?;
        }
    }
    // Headers, their -common package and kbuild, pinned to the headers' version.
    let hdr = format!("linux-headers-{kver}");
    let hf = apt.show(&hdr)?;
    let hv = field(&hf, "Version").unwrap_or(&version).to_string();
    unpack(&download_from(&apt, debs, &hdr, Some(&hv))?, &tmp)?;
    for (dep, pinned) in depends(field(&hf, "Depends").unwrap_or("")) {
        if dep.starts_with("linux-headers-") || dep.starts_with("linux-kbuild-") {
            let v = pinned.unwrap_or_else(|| hv.clone());
            unpack(&download_from(&apt, debs, &dep, Some(&v))?, &tmp)?;
            if dep.starts_with("linux-kbuild-") {
                let kf = apt.show(&dep)?;
                glibc_compat(&apt, debs, &kf, &tmp, root)?;
            }
        }
    }
    merged_usr_links(kver, &tmp)?;
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

/// Debian 7.x packages install under /usr only (`usr/lib/modules/KVER/vmlinuz`, no
/// /boot): links give them the 6.x layout the rest of the driver reads
/// (`boot/vmlinuz-KVER`, `boot/config-KVER`, `lib/modules/KVER`).
fn merged_usr_links(kver: &str, tmp: &Path) -> Result<(), AssetError> {
    let link = |target: &str, at: PathBuf| -> Result<(), AssetError> {
        let dir = at.parent().unwrap_or(tmp);
        // `target` is relative to `dir`: resolve it lexically (dir may not exist yet).
        let resolved = target
            .split('/')
            .fold(dir.to_path_buf(), |acc, part| match part {
                ".." => acc.parent().map(Path::to_path_buf).unwrap_or(acc),
                p => acc.join(p),
            });
        if at.exists() || !resolved.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        std::os::unix::fs::symlink(target, &at).map_err(io(&at))
    };
    link("usr/lib", tmp.join("lib"))?;
    link(
        &format!("../usr/lib/modules/{kver}/vmlinuz"),
        tmp.join(format!("boot/vmlinuz-{kver}")),
    )?;
    link(
        &format!("../usr/src/linux-headers-{kver}/.config"),
        tmp.join(format!("boot/config-{kver}")),
    )
}

/// kbuild's programs (fixdep, modpost, objtool, …) of a newer Debian need a newer glibc
/// than the host's (sid's 7.x kbuild: `libc6 (>= 2.38)`, bookworm has 2.36). Then the
/// suite's libc6 is unpacked beside them (`ROOT/glibc`) and each ELF program is renamed
/// `PROG.bin` behind a shell wrapper that runs it with that glibc's dynamic loader
/// (`--argv0` keeps the name the multi-arch wrappers of modpost and objtool dispatch on).
/// Nothing is installed on the host.
fn glibc_compat(
    apt: &Apt,
    debs: &Path,
    kbuild: &[(String, String)],
    tmp: &Path,
    root: &Path,
) -> Result<(), AssetError> {
    let Some(need) = depends(field(kbuild, "Depends").unwrap_or(""))
        .into_iter()
        .find(|(n, _)| n == "libc6")
        .and_then(|(_, v)| v)
    else {
        return Ok(());
    };
    let host = run(Command::new("dpkg-query").args(["-W", "-f=${Version}", "libc6"]))?;
    let older = Command::new("dpkg")
        .args(["--compare-versions", host.trim(), "lt", &need])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !older {
        return Ok(());
    }
    tracing::info!(
        "kbuild needs libc6 >= {need}, host has {host}: running it with the suite's glibc"
    );
    let deb = download_from(apt, debs, "libc6", None)?;
    unpack(&deb, &tmp.join("glibc"))?;
    let glibc = root.join("glibc");
    let loader = glibc.join("usr/lib64/ld-linux-x86-64.so.2");
    let libs = format!(
        "{}:/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu",
        glibc.join("usr/lib/x86_64-linux-gnu").display()
    );
    let usr_lib = tmp.join("usr/lib");
    let entries = std::fs::read_dir(&usr_lib).map_err(io(&usr_lib))?;
    let mut stack: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("linux-kbuild-"))
        })
        .collect();
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).map_err(io(&p))?;
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).map_err(io(&p))?.flatten() {
                stack.push(e.path());
            }
            continue;
        }
        use std::os::unix::fs::PermissionsExt;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            continue;
        }
        let head = std::fs::read(&p).map_err(io(&p))?;
        if !head.starts_with(b"\x7fELF") {
            continue;
        }
        let bin = PathBuf::from(format!("{}.bin", p.display()));
        std::fs::rename(&p, &bin).map_err(io(&p))?;
        let script = format!(
            "#!/bin/sh\nexec {} --argv0 \"$0\" --library-path {} \"$0.bin\" \"$@\"\n",
            loader.display(),
            libs
        );
        std::fs::write(&p, script).map_err(io(&p))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).map_err(io(&p))?;
    }
    Ok(())
}

/// Rewrites `include /usr/src/...` (and `VAR=/usr/src/...`) to the unpacked tree under `src`.
pub fn fix_makefile(text: &str, src: &Path) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if let Some(rest) = line.trim_start().strip_prefix("include ") {
            if let Some(tail) = rest.trim().strip_prefix("/usr/src/") {
                out.push_str(&format!("include {}/{}\n", src.display(), tail));
                continue;
            }
        }
        // Debian 7.x: `KBUILD_OUTPUT=/usr/src/linux-headers-KVER`.
        if let Some((var, val)) = line.split_once('=') {
            if let Some(tail) = val.trim().strip_prefix("/usr/src/") {
                out.push_str(&format!("{var}={}/{}\n", src.display(), tail));
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
        assert_eq!(
            compiler_of(
                "CONFIG_CC_VERSION_TEXT=\"x86_64-linux-gnu-gcc-16 (Debian 16.2.0-4) 16.2.0\"\n"
            )
            .as_deref(),
            Some("x86_64-linux-gnu-gcc-16")
        );
        let m = fix_makefile(
            "KBUILD_OUTPUT=/usr/src/linux-headers-7.2.13+deb14-cloud-amd64\n",
            Path::new("/c/usr/src"),
        );
        assert_eq!(
            m,
            "KBUILD_OUTPUT=/c/usr/src/linux-headers-7.2.13+deb14-cloud-amd64\n"
        );
    }
}
