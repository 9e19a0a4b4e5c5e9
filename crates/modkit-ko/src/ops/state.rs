//! What the running kernel says about its modules: `/sys/module/NAME/{initstate,refcnt,
//! holders,coresize}`, `/proc/modules` and `/sys/module/compression`, read as libkmod
//! reads them (`kmod_module_get_initstate`, `_get_refcnt`, `_get_holders`, `_get_size`,
//! `kmod_module_new_from_loaded`).

/// `enum kmod_module_initstate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitState {
    /// Built into the kernel image.
    Builtin,
    /// Loaded and initialised.
    Live,
    /// Being loaded (or its sysfs directory exists without `initstate`).
    Coming,
    /// Being removed.
    Going,
}

/// The sysfs root (tests point it elsewhere through `MODKIT_SYSFS_MODULE`).
fn sys_module() -> String {
    std::env::var("MODKIT_SYSFS_MODULE").unwrap_or_else(|_| "/sys/module".to_string())
}

/// `/sys/module/NAME/initstate` (the built-in check is the caller's). `Err(errno)` when
/// the module is not in the kernel.
pub fn initstate(name: &str) -> Result<InitState, i32> {
    let dir = format!("{}/{name}", sys_module());
    match std::fs::read_to_string(format!("{dir}/initstate")) {
        Ok(s) => match s.as_str() {
            "live\n" => Ok(InitState::Live),
            "coming\n" => Ok(InitState::Coming),
            "going\n" => Ok(InitState::Going),
            _ => Err(libc::EINVAL),
        },
        Err(e) => {
            if std::fs::metadata(&dir).is_ok_and(|m| m.is_dir()) {
                return Ok(InitState::Coming);
            }
            Err(e.raw_os_error().unwrap_or(libc::ENOENT))
        }
    }
}

/// `/sys/module/NAME/refcnt`.
pub fn refcnt(name: &str) -> Result<i64, i32> {
    let s = std::fs::read_to_string(format!("{}/{name}/refcnt", sys_module()))
        .map_err(|e| e.raw_os_error().unwrap_or(libc::ENOENT))?;
    s.trim().parse().map_err(|_| libc::EINVAL)
}

/// `/sys/module/NAME/holders`, in directory order.
pub fn holders(name: &str) -> Result<Vec<String>, i32> {
    let rd = std::fs::read_dir(format!("{}/{name}/holders", sys_module()))
        .map_err(|e| e.raw_os_error().unwrap_or(libc::ENOENT))?;
    Ok(rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect())
}

/// `/sys/module/NAME/coresize`, falling back to /proc/modules' size column.
pub fn size(name: &str) -> Result<i64, i32> {
    let dir = format!("{}/{name}", sys_module());
    if std::fs::metadata(&dir).is_err() {
        return Err(libc::ENOENT);
    }
    if let Ok(s) = std::fs::read_to_string(format!("{dir}/coresize")) {
        return s.trim().parse().map_err(|_| libc::EINVAL);
    }
    let pm = std::fs::read_to_string("/proc/modules")
        .map_err(|e| e.raw_os_error().unwrap_or(libc::ENOENT))?;
    pm.lines()
        .find_map(|l| {
            let mut f = l.split([' ', '\t']).filter(|s| !s.is_empty());
            (f.next() == Some(name)).then(|| f.next()?.parse().ok())?
        })
        .ok_or(libc::ENOENT)
}

/// The names in /proc/modules, in its order.
pub fn loaded() -> Result<Vec<String>, i32> {
    let pm = std::fs::read_to_string("/proc/modules")
        .map_err(|e| e.raw_os_error().unwrap_or(libc::ENOENT))?;
    Ok(pm
        .lines()
        .filter_map(|l| l.split([' ', '\t']).next())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect())
}

/// The compression the kernel decompresses itself (`/sys/module/compression`, 5.17+ with
/// `CONFIG_MODULE_DECOMPRESS`): `xz`, `zstd` or `gzip`.
pub fn kernel_compression() -> Option<String> {
    std::fs::read_to_string(format!("{}/compression", sys_module()))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}
