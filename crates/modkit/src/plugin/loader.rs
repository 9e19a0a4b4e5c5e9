//! The host side of plugins: finding a plugin by name or alias in the plugin directory
//! (its `.modinfo` read from the file), dlopen (RTLD_NOW | RTLD_LOCAL), the descriptor's
//! checks, registration as a module whose first init step links its imports, owned
//! threads, and after unload dlclose with an RTLD_NOLOAD check.

use std::any::TypeId;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use super::dl::{DynLoader, System};
use crate::sync::thread::JoinHandle;
use crate::sync::{Mutex, MutexGuard};

use modkit_core::spec::normalize_name;
use modkit_core::{BodyResult, Errno, ExportSpec, ImportSpec, InitStepSpec, ModuleSpec, Outcome};

use super::{
    crc_of_desc, describe_fn, Abi, AbiArgs, PluginFn, RawCtx, RawDescriptor, RawFn, RawStr,
    RunStepFn, ABI_VERSION, DESCRIPTOR_SYMBOL, STATUS_OK, STATUS_PANIC, STATUS_STOP, VERMAGIC,
};
use crate::api::value_key;
use crate::ctx::InitCtx;
use crate::error::Error;
use crate::host::{HostHandle, ModuleCode};
use crate::symbol::Symbol;

/// Why a plugin could not be found, opened or linked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The file could not be read.
    #[error("{path}: {msg}")]
    Io {
        /// The file.
        path: String,
        /// The system's message.
        msg: String,
    },
    /// The file is not a modkit plugin.
    #[error("{path}: not a modkit plugin: {reason}")]
    NotPlugin {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Built by another compiler, target, panic strategy or plugin ABI.
    #[error("{path}: vermagic mismatch: plugin has \"{plugin}\", host has \"{host}\" (rebuild the plugin with the host's toolchain and modkit)")]
    Vermagic {
        /// The file.
        path: String,
        /// The plugin's vermagic.
        plugin: String,
        /// The host's.
        host: String,
    },
    /// dlopen/dlsym failed.
    #[error("{path}: {msg}")]
    Dlopen {
        /// The file.
        path: String,
        /// dlerror()'s message.
        msg: String,
    },
    /// A symbol's type differs between the two sides.
    #[error("symbol {symbol}: {user} expects `{expected}` but {exporter} exports `{found}` (rebuild one against the other)")]
    TypeMismatch {
        /// The symbol.
        symbol: String,
        /// Who uses it (a module or the host).
        user: String,
        /// Who exports it.
        exporter: String,
        /// The user's type.
        expected: String,
        /// The exporter's type.
        found: String,
    },
    /// The signature check refused the file (feature `signing`,
    /// [`crate::Host::with_keyring`]).
    #[error("{path}: {reason}")]
    Signature {
        /// The file.
        path: String,
        /// The kernel's errno for it (EKEYREJECTED, EBADMSG).
        errno: Errno,
        /// What is wrong.
        reason: String,
    },
    /// The module spec was refused by the core.
    #[error("plugin {name}: {msg}")]
    Spec {
        /// The module.
        name: String,
        /// The core's message.
        msg: String,
    },
}

impl PluginError {
    pub(crate) fn errno(&self) -> Errno {
        match self {
            PluginError::Io { .. } => Errno::ENOENT,
            PluginError::NotPlugin { .. } | PluginError::Vermagic { .. } => Errno::ENOEXEC,
            PluginError::Dlopen { .. } => Errno::ENOEXEC,
            PluginError::TypeMismatch { .. } | PluginError::Spec { .. } => Errno::EINVAL,
            PluginError::Signature { errno, .. } => *errno,
        }
    }
}

impl From<PluginError> for Error {
    fn from(e: PluginError) -> Error {
        let errno = e.errno();
        Error::new(e.to_string(), Outcome::Err(errno))
    }
}

/// Where a plugin's library stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginStatus {
    /// dlopen'ed (registered, loaded or between loads).
    Open,
    /// dlclose'd, and RTLD_NOLOAD confirmed the library is gone.
    Closed,
    /// dlclose'd, but the library stays mapped (glibc keeps a library whose
    /// thread-local destructors are still registered; musl never unloads): its code is
    /// still in memory, modkit will not call it, and lsmod says so.
    StillMapped,
}

/// An export's value in the host's symbol table: the description and the trampoline's
/// address in the library's current mapping.
pub(crate) struct PluginExport {
    desc: String,
    func: AtomicUsize,
    owner: String,
    /// The host-side types already found to match `desc` (so that a lookup compares a
    /// `TypeId` instead of building the type's description each time).
    checked: std::sync::RwLock<Vec<TypeId>>,
}

impl PluginExport {
    /// Checks that `fn(A) -> R` is the exported type: a `TypeId` seen before, else the
    /// descriptions compared (and the type remembered when they match).
    fn check<A: AbiArgs, R: Abi>(&self, symbol: &str) -> Result<(), PluginError> {
        let t = TypeId::of::<PluginFn<A, R>>();
        if self
            .checked
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&t)
        {
            return Ok(());
        }
        let want = describe_fn::<A, R>();
        if self.desc != want {
            return Err(PluginError::TypeMismatch {
                symbol: symbol.into(),
                user: "the host".into(),
                exporter: format!("plugin {}", self.owner),
                expected: want,
                found: self.desc.clone(),
            });
        }
        self.checked
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(t);
        Ok(())
    }
}

struct Lib {
    /// The loader's handle (0 when closed).
    handle: usize,
    desc: usize,
    status: PluginStatus,
    /// The module instance linked against this mapping has been torn down (the undo of
    /// its link step ran: exit done, owned threads joined). The mapping has no user left;
    /// the next link closes it and opens the file again, so that a rebuilt file is what a
    /// load after an unload runs even when a concurrent load came before the reap.
    unloaded: bool,
}

/// One plugin known to the host.
pub(crate) struct PluginRec {
    name: String,
    path: PathBuf,
    loader: Arc<dyn DynLoader>,
    lib: Mutex<Lib>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stop: Mutex<Arc<AtomicBool>>,
    exports: Vec<(String, Arc<PluginExport>)>,
    imports: Vec<(String, String)>,
    steps: Vec<String>,
    depends: Vec<String>,
    sig: super::sighook::SigHook,
}

/// The host's plugins: the directory and what has been registered from it.
#[derive(Default)]
pub(crate) struct Plugins {
    inner: Mutex<Inner>,
}

struct Inner {
    dir: Option<PathBuf>,
    loader: Arc<dyn DynLoader>,
    recs: BTreeMap<String, Arc<PluginRec>>,
    sig: super::sighook::SigHook,
}

impl Default for Inner {
    fn default() -> Inner {
        Inner {
            dir: None,
            loader: Arc::new(System),
            recs: BTreeMap::new(),
            sig: Default::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a descriptor says, copied out.
struct DescInfo {
    name: String,
    exports: Vec<(String, String, RawFn)>,
    imports: Vec<(String, String, usize)>,
    steps: Vec<String>,
}

extern "C-unwind" fn push_str(out: *mut c_void, s: RawStr) {
    // SAFETY: `out` is the String passed to `describe` below; `s` is valid for the call.
    unsafe { (*(out as *mut String)).push_str(s.as_str()) }
}

fn describe(f: super::DescribeFn) -> String {
    let mut s = String::new();
    f(&mut s as *mut String as *mut c_void, push_str);
    s
}

/// Opens `path` and reads its descriptor.
fn open(dl: &dyn DynLoader, path: &Path) -> Result<(usize, usize, DescInfo), PluginError> {
    let p = path.display().to_string();
    let h = dl.open(path).map_err(|msg| PluginError::Dlopen {
        path: p.clone(),
        msg,
    })?;
    let close = |e: PluginError| {
        // `h` came from open above and is closed once.
        dl.close(h);
        e
    };
    let d = dl.symbol(h, DESCRIPTOR_SYMBOL) as *const RawDescriptor;
    if d.is_null() {
        return Err(close(PluginError::NotPlugin {
            path: p,
            reason: format!("no {DESCRIPTOR_SYMBOL} symbol"),
        }));
    }
    // SAFETY: the symbol is the plugin's descriptor static (the plugin ABI, and the
    // DynLoader contract); the abi field is first and read before anything else.
    let desc = unsafe { &*d };
    if desc.abi != ABI_VERSION {
        return Err(close(PluginError::Vermagic {
            path: p,
            plugin: format!("modkit-abi-{}", desc.abi),
            host: VERMAGIC.into(),
        }));
    }
    // SAFETY: same ABI version: the descriptor's layout is ours; its strings and slices
    // point to the plugin's statics, alive while the library is open.
    let vermagic = unsafe { desc.vermagic.as_str() };
    if vermagic != VERMAGIC {
        return Err(close(PluginError::Vermagic {
            path: p,
            plugin: vermagic.into(),
            host: VERMAGIC.into(),
        }));
    }
    // SAFETY: as above.
    let info = unsafe {
        DescInfo {
            name: normalize_name(desc.name.as_str()),
            exports: desc
                .exports
                .as_slice()
                .iter()
                .map(|e| (e.name.as_str().to_string(), describe(e.describe), e.func))
                .collect(),
            imports: desc
                .imports
                .as_slice()
                .iter()
                .map(|i| {
                    (
                        i.name.as_str().to_string(),
                        describe(i.describe),
                        i.slot as usize,
                    )
                })
                .collect(),
            steps: desc
                .steps
                .as_slice()
                .iter()
                .map(|s| s.name.as_str().to_string())
                .collect(),
        }
    };
    Ok((h, d as usize, info))
}

/// `*` and `?` glob, as modules.alias patterns use.
fn fnmatch(pat: &[u8], s: &[u8]) -> bool {
    match (pat.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => fnmatch(&pat[1..], s) || (!s.is_empty() && fnmatch(pat, &s[1..])),
        (Some(b'?'), Some(_)) => fnmatch(&pat[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => fnmatch(&pat[1..], &s[1..]),
        _ => false,
    }
}

/// A plugin file's `.modinfo`, read without loading it.
struct FileInfo {
    path: PathBuf,
    name: String,
    aliases: Vec<String>,
    /// Declared (`depends=`), then computed from the imports by [`super::deps::resolve`].
    depends: Vec<String>,
    exports: Vec<String>,
    imports: Vec<String>,
    vermagic: String,
}

fn scan(dl: &dyn DynLoader, dir: &Path) -> Result<Vec<FileInfo>, PluginError> {
    let rd = std::fs::read_dir(dir).map_err(|e| PluginError::Io {
        path: dir.display().to_string(),
        msg: e.to_string(),
    })?;
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "so"))
        .collect();
    paths.sort();
    for path in paths {
        let Ok(mi) = dl.modinfo(&path) else {
            tracing::debug!(path = %path.display(), "not a modkit plugin, skipped");
            continue;
        };
        let get = |k: &str| -> Vec<String> {
            mi.iter()
                .filter(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .collect()
        };
        let Some(name) = get("name").into_iter().next() else {
            continue;
        };
        out.push(FileInfo {
            name: normalize_name(&name),
            aliases: get("alias"),
            depends: get("depends")
                .into_iter()
                .flat_map(|d| {
                    d.split(',')
                        .filter(|s| !s.is_empty())
                        .map(normalize_name)
                        .collect::<Vec<_>>()
                })
                .collect(),
            exports: get("export"),
            imports: get("import"),
            vermagic: get("vermagic").into_iter().next().unwrap_or_default(),
            path,
        });
    }
    let entries: Vec<super::deps::Entry<'_>> = out
        .iter()
        .map(|f| super::deps::Entry {
            name: &f.name,
            exports: &f.exports,
            imports: &f.imports,
            depends: &f.depends,
        })
        .collect();
    let deps = super::deps::resolve(&entries);
    for (f, d) in out.iter_mut().zip(deps) {
        f.depends = d;
    }
    Ok(out)
}

impl HostHandle {
    /// Sets the plugin directory ([`crate::Host::with_plugin_dir`]).
    pub(crate) fn set_plugin_dir(&self, dir: PathBuf) {
        lock(&self.shared.plugins.inner).dir = Some(dir);
    }

    /// Sets the signature check applied before every dlopen.
    #[cfg(feature = "signing")]
    pub(crate) fn set_plugin_sig_check(&self, sig: super::sighook::SigHook) {
        lock(&self.shared.plugins.inner).sig = sig;
    }

    /// Sets the loader of plugin libraries ([`crate::Host::with_plugin_loader`]).
    pub(crate) fn set_plugin_loader(&self, loader: Arc<dyn DynLoader>) {
        lock(&self.shared.plugins.inner).loader = loader;
    }

    /// Registers the plugin answering `name` (and its dependencies) if there is a plugin
    /// directory, the name is not known yet and a plugin answers it.
    pub(crate) fn plugins_prepare(&self, name: &str) -> Result<(), Error> {
        let mut inner = lock(&self.shared.plugins.inner);
        let Some(dir) = inner.dir.clone() else {
            return Ok(());
        };
        let norm = normalize_name(name);
        if inner.recs.contains_key(&norm) {
            // Known: open again (checking the rebuilt file) what was closed, deps first.
            let mut order = Vec::new();
            let mut stack = vec![norm.clone()];
            while let Some(n) = stack.pop() {
                if order.contains(&n) {
                    continue;
                }
                if let Some(r) = inner.recs.get(&n) {
                    stack.extend(r.depends.iter().cloned());
                    order.push(n);
                }
            }
            for n in order.iter().rev() {
                if let Some(r) = inner.recs.get(n) {
                    if let Some(signed) = r.reopen()? {
                        let mut st = self.lock();
                        if let Some(id) = st.k.db.id(n) {
                            let mut p = st.k.db.spec(id).provenance;
                            p.signed = signed;
                            Arc::make_mut(&mut st.k.db).set_provenance(id, p);
                        }
                    }
                }
            }
            return self.recheck_types(&inner, &norm);
        }
        if self.lock().k.db.id(&norm).is_some() {
            return Ok(());
        }
        let files = scan(&*inner.loader, &dir)?;
        let Some(target) = files
            .iter()
            .find(|f| f.name == norm)
            .or_else(|| {
                files.iter().find(|f| {
                    f.aliases
                        .iter()
                        .any(|a| fnmatch(a.as_bytes(), name.as_bytes()))
                })
            })
            .map(|f| f.name.clone())
        else {
            return Ok(());
        };
        // Dependencies first (depth-first, each once).
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        fn visit(
            n: &str,
            files: &[FileInfo],
            seen: &mut BTreeSet<String>,
            order: &mut Vec<String>,
        ) {
            if !seen.insert(n.to_string()) {
                return;
            }
            if let Some(f) = files.iter().find(|f| f.name == n) {
                for d in &f.depends {
                    visit(d, files, seen, order);
                }
            }
            order.push(n.to_string());
        }
        visit(&target, &files, &mut seen, &mut order);
        for n in order {
            if inner.recs.contains_key(&n) || self.lock().k.db.id(&n).is_some() {
                continue;
            }
            let Some(f) = files.iter().find(|f| f.name == n) else {
                continue;
            };
            if f.vermagic != VERMAGIC {
                return Err(PluginError::Vermagic {
                    path: f.path.display().to_string(),
                    plugin: f.vermagic.clone(),
                    host: VERMAGIC.into(),
                }
                .into());
            }
            let rec = self.register(&inner, f)?;
            inner.recs.insert(n, rec);
        }
        self.recheck_types(&inner, &norm)
    }

    /// Checks `name`'s imports against the registered exporters' descriptions, so that a
    /// type change is refused naming the symbol and both types.
    fn recheck_types(&self, inner: &Inner, name: &str) -> Result<(), Error> {
        let Some(rec) = inner.recs.get(name) else {
            return Ok(());
        };
        for (sym, want) in &rec.imports {
            for other in inner.recs.values() {
                if let Some((_, e)) = other.exports.iter().find(|(n, _)| n == sym) {
                    if &e.desc != want {
                        return Err(PluginError::TypeMismatch {
                            symbol: sym.clone(),
                            user: format!("plugin {}", rec.name),
                            exporter: format!("plugin {}", other.name),
                            expected: want.clone(),
                            found: e.desc.clone(),
                        }
                        .into());
                    }
                }
            }
        }
        Ok(())
    }

    fn register(&self, inner: &Inner, f: &FileInfo) -> Result<Arc<PluginRec>, Error> {
        let verdict = super::sighook::check(&inner.sig, &f.path)?;
        let (h, d, info) = open(&*inner.loader, &f.path)?;
        if let Err(e) = verdict.confirm(&f.path) {
            // The handle just opened is closed once; modkit called none of its code (its
            // ELF constructors, if any, ran inside dlopen: see plugin::signing).
            inner.loader.close(h);
            return Err(e.into());
        }
        if info.name != f.name {
            return Err(PluginError::NotPlugin {
                path: f.path.display().to_string(),
                reason: format!(
                    "descriptor names {} but .modinfo names {}",
                    info.name, f.name
                ),
            }
            .into());
        }
        let mut spec = ModuleSpec::new(&info.name);
        spec.provenance.signed = verdict.signed;
        spec.aliases = f.aliases.clone();
        spec.license = "GPL".into();
        spec.init.push(InitStepSpec {
            name: "modkit:link".into(),
            has_undo: true,
        });
        for s in &info.steps {
            spec.init.push(InitStepSpec {
                name: s.clone(),
                has_undo: true,
            });
        }
        let mut exports = Vec::new();
        for (n, desc, func) in &info.exports {
            spec.exports.push(ExportSpec {
                name: n.clone(),
                namespace: None,
                gpl_only: false,
                crc: Some(crc_of_desc(desc)),
            });
            exports.push((
                n.clone(),
                Arc::new(PluginExport {
                    desc: desc.clone(),
                    func: AtomicUsize::new(*func as usize),
                    owner: info.name.clone(),
                    checked: Default::default(),
                }),
            ));
        }
        for (n, desc, _) in &info.imports {
            spec.imports.push(ImportSpec {
                name: n.clone(),
                crc: Some(crc_of_desc(desc)),
            });
        }
        let rec = Arc::new(PluginRec {
            name: info.name.clone(),
            path: f.path.clone(),
            loader: inner.loader.clone(),
            lib: Mutex::new(Lib {
                handle: h,
                desc: d,
                status: PluginStatus::Open,
                unloaded: false,
            }),
            threads: Mutex::new(Vec::new()),
            stop: Mutex::new(Arc::new(AtomicBool::new(false))),
            exports,
            imports: info
                .imports
                .iter()
                .map(|(n, d, _)| (n.clone(), d.clone()))
                .collect(),
            steps: info.steps.clone(),
            depends: f.depends.clone(),
            sig: inner.sig.clone(),
        });
        let mut st = self.lock();
        let id = st.k.add_module(spec).map_err(|e| PluginError::Spec {
            name: info.name.clone(),
            msg: e.to_string(),
        })?;
        if st.code.len() <= id {
            st.code.resize(id + 1, None);
        }
        st.code[id] = Some(Arc::new(PluginCode { rec: rec.clone() }));
        for (n, e) in &rec.exports {
            st.values.insert(value_key(id, n), e.clone());
        }
        tracing::info!(plugin = %info.name, path = %f.path.display(), "plugin registered");
        Ok(rec)
    }

    /// Closes the libraries of plugins that are no longer loaded and whose threads have
    /// been joined, and checks with RTLD_NOLOAD that they are gone.
    pub(crate) fn plugins_reap(&self) {
        let recs: Vec<Arc<PluginRec>> = lock(&self.shared.plugins.inner)
            .recs
            .values()
            .cloned()
            .collect();
        for rec in recs {
            // The library's lock first: a load that starts after the check below reopens
            // the library in its link step, which takes this lock.
            let mut lib = lock(&rec.lib);
            if lib.status != PluginStatus::Open {
                continue;
            }
            let loaded = {
                let st = self.lock();
                st.k.db.id(&rec.name).is_some_and(|id| {
                    // A forced unload leaves the pins it ignored dangling: a Symbol of
                    // the freed module may still be called, so its library stays open
                    // until the last one is put (which reaps again).
                    st.k.state(id).is_some() || st.k.dangling.values().any(|p| p.module == id)
                })
            };
            if loaded || !lock(&rec.threads).is_empty() {
                continue;
            }
            // The module is unloaded, no Symbol pins it and its threads are joined.
            rec.close_locked(&mut lib);
        }
    }

    /// Where plugin `name`'s library stands; `None` if it is not a registered plugin.
    pub fn plugin_status(&self, name: &str) -> Option<PluginStatus> {
        let rec = lock(&self.shared.plugins.inner)
            .recs
            .get(&normalize_name(name))
            .cloned()?;
        let s = lock(&rec.lib).status;
        Some(s)
    }

    /// A plugin function, typed `fn(A) -> R`, with its owner pinned while the handle lives.
    /// A type that differs from the exporter's is refused naming both.
    pub fn plugin_fn<A: AbiArgs, R: Abi>(
        &self,
        name: &str,
    ) -> Result<Symbol<PluginFn<A, R>>, Error> {
        let sym = self.symbol_get::<PluginExport>(name, None)?;
        sym.check::<A, R>(name)?;
        let addr = sym.func.load(Ordering::Acquire);
        if addr == 0 {
            return Err(Error::new(
                format!("symbol_get({name}): its plugin's library is closed"),
                Outcome::Err(Errno::ENOENT),
            ));
        }
        // SAFETY: `addr` is the trampoline of an export whose description is `fn(A) -> R`.
        let raw: RawFn = unsafe { std::mem::transmute::<usize, RawFn>(addr) };
        // SAFETY: as above.
        let f = unsafe { PluginFn::<A, R>::from_raw(raw) };
        let Symbol { name, _owner, .. } = sym;
        Ok(Symbol {
            value: Arc::new(f),
            name,
            _owner,
        })
    }

    /// Plugin rows for lsmod: libraries that are not open but still mapped.
    pub(crate) fn plugins_still_mapped(&self) -> Vec<String> {
        lock(&self.shared.plugins.inner)
            .recs
            .values()
            .filter(|r| lock(&r.lib).status == PluginStatus::StillMapped)
            .map(|r| r.name.clone())
            .collect()
    }
}

/// A plugin's code as the host runs it: step 0 links (opening the library again after an
/// unload), the others call the plugin's `run_step`.
struct PluginCode {
    rec: Arc<PluginRec>,
}

/// What the callbacks a plugin receives reach.
struct StepEnv<'a, 'b> {
    ctx: &'a mut InitCtx<'b>,
    rec: &'a PluginRec,
}

extern "C-unwind" fn cb_request_module(data: *const c_void, name: RawStr) -> i32 {
    // SAFETY: `data` is the StepEnv of the running step; `name` is valid for the call.
    let (env, name) = unsafe { (&mut *(data as *mut StepEnv<'_, '_>), name.as_str()) };
    if let Err(e) = env.ctx.host().plugins_prepare(name) {
        tracing::warn!(plugin = %env.rec.name, "{e}");
        return -e.errno().unwrap_or(Errno::EINVAL).code().abs();
    }
    match env.ctx.request_module(name) {
        Ok(()) => 0,
        Err(e) => -e.errno().unwrap_or(Errno::EINVAL).code().abs(),
    }
}

extern "C-unwind" fn cb_spawn(
    data: *const c_void,
    name: RawStr,
    run: unsafe extern "C-unwind" fn(stop: *const AtomicBool, arg: *const c_void),
    arg: *const c_void,
) -> i32 {
    // SAFETY: as in cb_request_module.
    let (env, name) = unsafe { (&mut *(data as *mut StepEnv<'_, '_>), name.as_str()) };
    let stop = lock(&env.rec.stop).clone();
    let arg = arg as usize;
    let label = format!("{}/{name}", env.rec.name);
    let r = crate::sync::thread::Builder::new()
        .name(label.clone())
        .spawn(move || {
            // SAFETY: `run` is the plugin's thread trampoline; the library stays open until
            // this thread is joined; `stop` lives in this closure.
            unsafe { run(Arc::as_ptr(&stop), arg as *const c_void) }
        });
    match r {
        Ok(j) => {
            tracing::info!(thread = %label, "plugin thread started");
            lock(&env.rec.threads).push(j);
            0
        }
        Err(_) => -Errno::ENOMEM.code().abs(),
    }
}

extern "C-unwind" fn cb_log(data: *const c_void, line: RawStr) {
    // SAFETY: as in cb_request_module.
    let (env, line) = unsafe { (&mut *(data as *mut StepEnv<'_, '_>), line.as_str()) };
    tracing::info!(plugin = %env.rec.name, "{line}");
    let mut st = env.ctx.host().lock();
    st.k.printk(format!("{}: {line}", env.rec.name));
}

impl PluginRec {
    /// Closes the open library (`lib` is its locked state) and records whether it stays
    /// mapped. The caller has checked that no code of it runs or will be called: the module
    /// is not loaded (or its previous instance is torn down), no Symbol pins it, its owned
    /// threads are joined.
    fn close_locked(&self, lib: &mut Lib) {
        for (_, e) in &self.exports {
            e.func.store(0, Ordering::Release);
        }
        // The handle came from the loader and is closed once (status leaves Open).
        self.loader.close(lib.handle);
        lib.handle = 0;
        lib.desc = 0;
        lib.unloaded = false;
        lib.status = if self.loader.still_mapped(&self.path) {
            tracing::warn!(plugin = %self.name, "plugin library still mapped after dlclose");
            PluginStatus::StillMapped
        } else {
            tracing::info!(plugin = %self.name, "plugin library closed");
            PluginStatus::Closed
        };
    }

    fn stop_and_join(&self) {
        lock(&self.stop).store(true, Ordering::Release);
        let threads = std::mem::take(&mut *lock(&self.threads));
        for t in threads {
            let name = t.thread().name().unwrap_or("?").to_string();
            let _ = t.join();
            tracing::info!(thread = %name, "plugin thread joined");
        }
    }

    /// Opens the library again if it was closed (checking that its descriptor still
    /// matches what was registered), then fills the import slots from the exporters.
    fn link(&self, ctx: &mut InitCtx<'_>) -> Result<(), String> {
        {
            // A mapping left open by an unload whose reap a concurrent load overtook (not
            // while a Symbol that a forced unload left dangling may still call it).
            let mut lib = lock(&self.lib);
            if lib.status == PluginStatus::Open && lib.unloaded && lock(&self.threads).is_empty() {
                let st = ctx.host().lock();
                let dangling =
                    st.k.db
                        .id(&self.name)
                        .is_some_and(|id| st.k.dangling.values().any(|p| p.module == id));
                drop(st);
                if !dangling {
                    self.close_locked(&mut lib);
                }
            }
        }
        self.reopen().map_err(|e| e.to_string())?;
        let lib = lock(&self.lib);
        *lock(&self.stop) = Arc::new(AtomicBool::new(false));
        self.link_imports(ctx, &lib)
    }

    /// Opens the library again if it was closed, checking that the (possibly rebuilt) file
    /// still has the registered exports with the same types, imports and init steps (and
    /// its signature, when the host has a keyring). `Some(signed)`: it was opened now.
    fn reopen(&self) -> Result<Option<bool>, PluginError> {
        let mut lib = lock(&self.lib);
        let mut opened = None;
        if lib.status != PluginStatus::Open {
            let verdict = super::sighook::check(&self.sig, &self.path)?;
            let (h, d, info) = open(&*self.loader, &self.path)?;
            if let Err(e) = verdict.confirm(&self.path) {
                // The handle just opened is closed once; modkit called none of its code (its
                // ELF constructors, if any, ran inside dlopen: see plugin::signing).
                self.loader.close(h);
                return Err(e);
            }
            opened = Some(verdict.signed);
            let same = info.exports.len() == self.exports.len()
                && info.steps == self.steps
                && info.imports.len() == self.imports.len();
            for (n, desc, _) in &info.exports {
                if let Some((_, e)) = self.exports.iter().find(|(m, _)| m == n) {
                    if &e.desc != desc {
                        // The handle just opened is closed once.
                        self.loader.close(h);
                        return Err(PluginError::TypeMismatch {
                            symbol: n.clone(),
                            user: format!("the registered plugin {}", self.name),
                            exporter: format!("its rebuilt file {}", self.path.display()),
                            expected: e.desc.clone(),
                            found: desc.clone(),
                        });
                    }
                }
            }
            if !same {
                self.loader.close(h);
                return Err(PluginError::NotPlugin {
                    path: self.path.display().to_string(),
                    reason: "the rebuilt plugin changed its exports, imports or init steps; a new host is needed to register it".into(),
                });
            }
            for (n, _, func) in &info.exports {
                if let Some((_, e)) = self.exports.iter().find(|(m, _)| m == n) {
                    e.func.store(*func as usize, Ordering::Release);
                }
            }
            *lib = Lib {
                handle: h,
                desc: d,
                status: PluginStatus::Open,
                unloaded: false,
            };
            tracing::info!(plugin = %self.name, "plugin library opened again");
        }
        Ok(opened)
    }

    /// Fills the import slots from the exporters' current trampolines.
    fn link_imports(&self, ctx: &mut InitCtx<'_>, lib: &Lib) -> Result<(), String> {
        // SAFETY: the library is open; its descriptor's slices point to its statics.
        let imports = unsafe { (*(lib.desc as *const RawDescriptor)).imports.as_slice() };
        let host = ctx.host();
        for imp in imports {
            // SAFETY: as above.
            let name = unsafe { imp.name.as_str() };
            let want = describe(imp.describe);
            let st = host.lock();
            let found = st.k.symtab.get(name).and_then(|e| {
                st.values
                    .get(&value_key(e.owner, name))
                    .cloned()
                    .map(|v| (v, st.k.name(e.owner).to_string()))
            });
            drop(st);
            let Some((v, owner)) = found else {
                return Err(format!(
                    "{}: import {name}: no module exports it",
                    self.name
                ));
            };
            let Ok(v) = v.downcast::<PluginExport>() else {
                return Err(format!(
                    "{}: import {name}: exported by {owner}, which is not a plugin",
                    self.name
                ));
            };
            if v.desc != want {
                return Err(PluginError::TypeMismatch {
                    symbol: name.into(),
                    user: format!("plugin {}", self.name),
                    exporter: format!("plugin {}", v.owner),
                    expected: want,
                    found: v.desc.clone(),
                }
                .to_string());
            }
            let addr = v.func.load(Ordering::Acquire);
            // SAFETY: the slot is the plugin's AtomicPtr static, alive while it is open.
            unsafe { (*imp.slot).store(addr as *mut c_void, Ordering::Release) };
        }
        Ok(())
    }

    fn call(&self, ctx: &mut InitCtx<'_>, step: usize, undo: bool) -> i32 {
        let run: RunStepFn = {
            let lib = lock(&self.lib);
            if lib.status != PluginStatus::Open {
                return -Errno::ENOENT.code().abs();
            }
            // SAFETY: the library is open.
            unsafe { (*(lib.desc as *const RawDescriptor)).run_step }
        };
        let mut env = StepEnv { ctx, rec: self };
        let raw = RawCtx {
            data: &mut env as *mut StepEnv<'_, '_> as *const c_void,
            request_module: cb_request_module,
            spawn: cb_spawn,
            log: cb_log,
        };
        // SAFETY: `run` is the plugin's step runner; `raw` lives for the call; the
        // library stays open (the module is COMING or GOING, so it is not reaped).
        unsafe { run(&raw, step, undo) }
    }
}

impl ModuleCode for PluginCode {
    fn init(&self, ctx: &mut InitCtx<'_>, step: usize) -> BodyResult {
        if step == 0 {
            return match self.rec.link(ctx) {
                Ok(()) => BodyResult::Ok,
                Err(msg) => {
                    tracing::warn!(plugin = %self.rec.name, "{msg}");
                    ctx.host().lock().k.printk(msg);
                    BodyResult::Fail(Errno::ENOEXEC)
                }
            };
        }
        let r = self.rec.call(ctx, step - 1, false);
        match r {
            STATUS_OK => BodyResult::Ok,
            STATUS_STOP => BodyResult::Stop,
            STATUS_PANIC => {
                let line = format!(
                    "{}: init step {} panicked (caught at the plugin's trampoline)",
                    self.rec.name,
                    self.step_name(step)
                );
                tracing::warn!("{line}");
                ctx.host().lock().k.printk(line);
                BodyResult::Fail(Errno::EFAULT)
            }
            e => BodyResult::Fail(Errno::from_code(-e).unwrap_or(Errno::EINVAL)),
        }
    }

    fn undo(&self, ctx: &mut InitCtx<'_>, step: usize) {
        if step == 0 {
            self.rec.stop_and_join();
            lock(&self.rec.lib).unloaded = true;
            return;
        }
        if self.rec.call(ctx, step - 1, true) == STATUS_PANIC {
            let line = format!(
                "{}: undo of {} panicked (caught at the plugin's trampoline)",
                self.rec.name,
                self.step_name(step)
            );
            ctx.host().lock().k.printk(line);
        }
    }

    fn step_name(&self, step: usize) -> String {
        if step == 0 {
            "modkit:link".into()
        } else {
            self.rec.steps.get(step - 1).cloned().unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Host;

    #[test]
    fn alias_patterns() {
        assert!(fnmatch(b"calc:*", b"calc:stats"));
        assert!(fnmatch(b"c?lc:*s", b"calc:stats"));
        assert!(!fnmatch(b"calc:*", b"cal:stats"));
        assert!(fnmatch(b"*", b""));
    }

    #[test]
    fn a_directory_without_plugins_finds_nothing() {
        let host = Host::new("modkit".parse().unwrap()).with_plugin_dir("/nonexistent-dir");
        let e = host.modprobe("nothing").unwrap_err();
        assert!(e.to_string().contains("/nonexistent-dir"), "{e}");
        let dir = std::env::temp_dir();
        let host = Host::new("modkit".parse().unwrap()).with_plugin_dir(dir);
        assert_eq!(
            host.modprobe("no-such-plugin-here").unwrap_err().errno(),
            Some(Errno::ENOENT)
        );
        assert_eq!(host.plugin_status("no-such-plugin-here"), None);
    }
}
