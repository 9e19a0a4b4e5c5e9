//! The loader's hook for plugin signatures: with the `signing` feature it runs
//! [`super::signing`]'s check before dlopen and confirms after it that the file opened is
//! the file verified; without it every plugin counts as signed (a kernel built without
//! CONFIG_MODULE_SIG) and nothing is read.

use std::path::Path;

use super::PluginError;

/// The host's signature check, if any.
#[cfg(feature = "signing")]
pub(crate) type SigHook = Option<std::sync::Arc<super::signing::SigCheck>>;
/// The host's signature check: none without the `signing` feature.
#[cfg(not(feature = "signing"))]
#[derive(Clone, Default)]
pub(crate) struct SigHook;

/// What the check decided about a file, and the file's identity when it was read.
pub(crate) struct Verdict {
    /// Loads without the E taint (verified, or not checked at all).
    pub(crate) signed: bool,
    stamp: Option<Stamp>,
}

#[derive(PartialEq, Eq, Debug)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
}

fn stamp(m: &std::fs::Metadata) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    Stamp {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime: (m.mtime(), m.mtime_nsec()),
    }
}

/// Checks `path`'s signature if the host has a keyring (before dlopen).
pub(crate) fn check(hook: &SigHook, path: &Path) -> Result<Verdict, PluginError> {
    #[cfg(feature = "signing")]
    if hook.is_some() {
        let io = |e: std::io::Error| PluginError::Io {
            path: path.display().to_string(),
            msg: e.to_string(),
        };
        let mut f = std::fs::File::open(path).map_err(io)?;
        let before = stamp(&f.metadata().map_err(io)?);
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut data).map_err(io)?;
        let signed = super::signing::check_bytes(hook, path, &data)?;
        return Ok(Verdict {
            signed,
            stamp: Some(before),
        });
    }
    let _ = (hook, path);
    Ok(Verdict {
        signed: true,
        stamp: None,
    })
}

impl Verdict {
    /// After dlopen: the file at `path` is still the one verified (same device, inode,
    /// size and modification time), else the plugin is refused.
    pub(crate) fn confirm(&self, path: &Path) -> Result<(), PluginError> {
        let Some(before) = &self.stamp else {
            return Ok(());
        };
        let now = std::fs::metadata(path).map(|m| stamp(&m)).ok();
        if now.as_ref() != Some(before) {
            return Err(PluginError::Signature {
                path: path.display().to_string(),
                errno: modkit_core::Errno::EKEYREJECTED,
                reason: "the file changed between its signature check and dlopen".into(),
            });
        }
        Ok(())
    }
}
