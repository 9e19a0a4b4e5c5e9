//! Putting one module file into the kernel. An uncompressed file goes to
//! `finit_module(2)`; a compressed one too, with `MODULE_INIT_COMPRESSED_FILE`, when the
//! kernel decompresses that format itself (`/sys/module/compression` names it, 5.17+);
//! otherwise it is decompressed here and passed to `init_module(2)` (or, when forcing
//! flags must reach the kernel, to `finit_module(2)` on a memfd holding the image).

use std::io::Read;

use super::state::kernel_compression;
use super::sys;
use crate::compress::{decompress, Compression};

/// How a module was handed to the kernel (for `-vv` messages and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `finit_module` on the file.
    FinitFile,
    /// `finit_module` on the compressed file, the kernel decompressing.
    FinitCompressed,
    /// Decompressed here, `init_module`.
    InitModule,
    /// Decompressed here, `finit_module` on a memfd (forcing flags).
    FinitMemfd,
}

/// Chooses the route for a file compressed as `kind` given the kernel's own
/// decompressor `kernel` and whether forcing flags are set.
pub fn route(kind: Compression, kernel: Option<&str>, forcing: bool) -> Route {
    match kind {
        Compression::None => Route::FinitFile,
        k if kernel == Some(k.name()) => Route::FinitCompressed,
        _ if forcing => Route::FinitMemfd,
        _ => Route::InitModule,
    }
}

/// Inserts the module at `path` with `params` and `MODULE_INIT_*` `flags`; `Err(errno)`
/// as the kernel (or opening the file) reported it.
pub fn insert_file(path: &str, params: &str, flags: u32) -> Result<Route, i32> {
    let mut f = std::fs::File::open(path).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    let mut magic = [0u8; 6];
    let n = f
        .read(&mut magic)
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    let kind = Compression::detect(&magic[..n]);
    let kernel = if kind == Compression::None {
        None
    } else {
        kernel_compression()
    };
    let r = route(kind, kernel.as_deref(), flags != 0);
    let res = insert_by(r, &f, path, params, flags);
    if res == Err(libc::ENOSYS) && matches!(r, Route::FinitFile | Route::FinitMemfd) {
        // A kernel older than 3.8 has no finit_module: kmod 30 then hands the image to
        // init_module (libkmod-module.c, kmod_module_insert_module, `errno != ENOSYS`).
        // kmod also strips __versions / vermagic from that image when forcing; modkit
        // passes it unchanged (no such kernel is packaged by Debian any more).
        return insert_by(Route::InitModule, &f, path, params, flags);
    }
    res
}

fn insert_by(
    r: Route,
    f: &std::fs::File,
    path: &str,
    params: &str,
    flags: u32,
) -> Result<Route, i32> {
    match r {
        Route::FinitFile => sys::finit_module(f, params, flags).map(|_| r),
        Route::FinitCompressed => {
            sys::finit_module(f, params, flags | sys::MODULE_INIT_COMPRESSED_FILE).map(|_| r)
        }
        Route::InitModule | Route::FinitMemfd => {
            let data = std::fs::read(path).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
            let (_, image) = decompress(&data).map_err(|_| libc::EINVAL)?;
            if r == Route::InitModule {
                sys::init_module(&image, params).map(|_| r)
            } else {
                let mf = sys::memfd_with(&image)?;
                sys::finit_module(&mf, params, flags).map(|_| r)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route(Compression::None, Some("xz"), true), Route::FinitFile);
        assert_eq!(
            route(Compression::Xz, Some("xz"), false),
            Route::FinitCompressed
        );
        assert_eq!(
            route(Compression::Zstd, Some("xz"), false),
            Route::InitModule
        );
        assert_eq!(route(Compression::Zstd, None, true), Route::FinitMemfd);
    }

    #[test]
    fn missing_file_is_enoent() {
        assert_eq!(insert_file("/nonexistent/x.ko", "", 0), Err(libc::ENOENT));
    }
}
