//! The guest's initramfs: a newc cpio archive (the format the kernel unpacks at boot) with
//! busybox, kmod, the staged module tree, the runner and the plan.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use crate::assets::{GuestTools, KernelAssets};

/// Why the image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A name or file does not fit the newc format (32-bit sizes).
    #[error("{0}: too large for a cpio newc entry")]
    TooLarge(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// One archive entry.
#[derive(Debug, Clone)]
enum Entry {
    Dir,
    File { data: Vec<u8>, mode: u32 },
    Symlink(String),
}

/// A cpio archive being assembled; parent directories are added as needed.
#[derive(Debug, Default)]
pub struct Image {
    entries: Vec<(String, Entry)>,
    dirs: BTreeSet<String>,
    names: BTreeSet<String>,
}

impl Image {
    /// An empty archive.
    pub fn new() -> Image {
        Image::default()
    }

    fn parents(&mut self, path: &str) {
        let mut acc = String::new();
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        for p in &parts[..parts.len().saturating_sub(1)] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(p);
            if self.dirs.insert(acc.clone()) {
                self.entries.push((acc.clone(), Entry::Dir));
            }
        }
    }

    fn push(&mut self, path: &str, e: Entry) {
        let p = path.trim_start_matches('/').to_string();
        self.parents(&p);
        if matches!(e, Entry::Dir) {
            if self.dirs.insert(p.clone()) {
                self.entries.push((p, e));
            }
            return;
        }
        if self.names.insert(p.clone()) {
            self.entries.push((p, e));
        }
    }

    /// A directory.
    pub fn add_dir(&mut self, path: &str) {
        self.push(path, Entry::Dir);
    }

    /// A regular file with these bytes.
    pub fn add_bytes(&mut self, path: &str, data: Vec<u8>, mode: u32) {
        self.push(path, Entry::File { data, mode });
    }

    /// A regular file copied from the host.
    pub fn add_file(&mut self, path: &str, host: &Path, mode: u32) -> Result<(), ImageError> {
        let data = std::fs::read(host).map_err(io(host))?;
        self.add_bytes(path, data, mode);
        Ok(())
    }

    /// A symbolic link.
    pub fn add_symlink(&mut self, path: &str, target: &str) {
        self.push(path, Entry::Symlink(target.to_string()));
    }

    /// Adds a host directory tree under `guest` (files, directories, symlinks).
    pub fn add_tree(&mut self, guest: &str, host: &Path) -> Result<(), ImageError> {
        self.add_dir(guest);
        let mut rd: Vec<_> = std::fs::read_dir(host)
            .map_err(io(host))?
            .filter_map(|e| e.ok())
            .collect();
        rd.sort_by_key(|e| e.file_name());
        for e in rd {
            let name = e.file_name().to_string_lossy().to_string();
            let g = format!("{}/{name}", guest.trim_end_matches('/'));
            let p = e.path();
            let ft = e.file_type().map_err(io(&p))?;
            if ft.is_symlink() {
                let t = std::fs::read_link(&p).map_err(io(&p))?;
                self.add_symlink(&g, &t.to_string_lossy());
            } else if ft.is_dir() {
                self.add_tree(&g, &p)?;
            } else {
                self.add_file(&g, &p, 0o644)?;
            }
        }
        Ok(())
    }

    /// The archive in newc format with its trailer.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ImageError> {
        let mut out = Vec::new();
        for (ino, (name, e)) in (1u32..).zip(&self.entries) {
            let (mode, data): (u32, &[u8]) = match e {
                Entry::Dir => (0o040755, &[]),
                Entry::File { data, mode } => (0o100000 | mode, data.as_slice()),
                Entry::Symlink(t) => (0o120777, t.as_bytes()),
            };
            header(
                &mut out,
                name,
                ino,
                mode,
                if matches!(e, Entry::Dir) { 2 } else { 1 },
                data,
            )?;
        }
        header(&mut out, "TRAILER!!!", 0, 0, 1, &[])?;
        while !out.len().is_multiple_of(512) {
            out.push(0);
        }
        Ok(out)
    }

    /// Writes the archive to `path`.
    pub fn write(&self, path: &Path) -> Result<(), ImageError> {
        let bytes = self.to_bytes()?;
        let mut f = std::fs::File::create(path).map_err(io(path))?;
        f.write_all(&bytes).map_err(io(path))
    }
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn header(
    out: &mut Vec<u8>,
    name: &str,
    ino: u32,
    mode: u32,
    nlink: u32,
    data: &[u8],
) -> Result<(), ImageError> {
    let size = u32::try_from(data.len()).map_err(|_| ImageError::TooLarge(name.to_string()))?;
    let namesize =
        u32::try_from(name.len() + 1).map_err(|_| ImageError::TooLarge(name.to_string()))?;
    let fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, namesize, 0];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
    Ok(())
}

/// The busybox applets `/init` uses (never modprobe, insmod, rmmod, lsmod or depmod: the
/// guest runs kmod's by full path, and busybox's would shadow them in its shell).
pub const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "mount", "uname", "cat", "echo", "ls", "mkdir", "sleep", "poweroff", "sync", "dmesg",
];

/// Lays out the guest: `/init`, busybox, kmod (as /sbin/modprobe, insmod, rmmod, lsmod,
/// depmod, modinfo) with its libraries, the staged `lib/modules` under `tree_root`, the
/// runner and the plan; each of `boot_flags` becomes an empty `/modkit/FLAG` that /init
/// acts on (`clear_warn_once`, `sig_enforce`).
pub fn guest_image(
    _assets: &KernelAssets,
    tools: &GuestTools,
    tree_root: &Path,
    runner: &Path,
    plan: &str,
    boot_flags: &[&str],
    out: &Path,
) -> Result<(), ImageError> {
    let mut img = Image::new();
    for d in [
        "proc", "sys", "dev", "run", "tmp", "etc", "root", "sbin", "bin",
    ] {
        img.add_dir(d);
    }
    img.add_bytes("init", include_bytes!("../guest/init.sh").to_vec(), 0o755);
    img.add_file("bin/busybox", &tools.busybox, 0o755)?;
    for a in BUSYBOX_APPLETS {
        img.add_symlink(&format!("bin/{a}"), "busybox");
    }
    img.add_file("bin/kmod", &tools.kmod, 0o755)?;
    for t in ["modprobe", "insmod", "rmmod", "lsmod", "depmod", "modinfo"] {
        img.add_symlink(&format!("sbin/{t}"), "/bin/kmod");
    }
    for lib in &tools.kmod_libs {
        let real = std::fs::canonicalize(lib).map_err(io(lib))?;
        img.add_file(&lib.to_string_lossy(), &real, 0o755)?;
    }
    img.add_bytes("etc/modprobe.d/.keep", Vec::new(), 0o644);
    img.add_tree("lib/modules", &tree_root.join("lib/modules"))?;
    img.add_file("modkit/runner", runner, 0o755)?;
    img.add_bytes("modkit/plan", plan.as_bytes().to_vec(), 0o644);
    for f in boot_flags {
        img.add_bytes(&format!("modkit/{f}"), Vec::new(), 0o644);
    }
    img.write(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout() {
        let mut i = Image::new();
        i.add_bytes("a/b/c", b"hi".to_vec(), 0o644);
        i.add_symlink("a/l", "b");
        let b = i.to_bytes().unwrap();
        assert_eq!(&b[..6], b"070701");
        assert_eq!(b.len() % 512, 0);
        let s = String::from_utf8_lossy(&b);
        // parents first, then the file, the link, the trailer
        let (pa, pab, pc, pl, pt) = (
            s.find("a\0").unwrap(),
            s.find("a/b\0").unwrap(),
            s.find("a/b/c\0").unwrap(),
            s.find("a/l\0").unwrap(),
            s.find("TRAILER!!!").unwrap(),
        );
        assert!(pa < pab && pab < pc && pc < pl && pl < pt);
        // every header starts 4-aligned
        for (pos, _) in s.match_indices("070701") {
            assert_eq!(pos % 4, 0);
        }
    }
}
