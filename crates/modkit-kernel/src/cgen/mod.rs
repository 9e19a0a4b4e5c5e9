//! C generation: a scenario's modules as real kernel module sources.
//!
//! Every non-builtin `[[module]]` becomes a module `NAME.ko` built from two C files:
//! `NAME-main.c` (modinfo, the import references, the init table, the exit, the actions)
//! and `NAME-syms.c` (the exported functions, in a file that includes nothing but
//! `<linux/export.h>`, so that a scenario symbol may carry the name of something the
//! kernel's headers declare, such as `kmalloc`). The runtime module `modkit_rt` (source
//! `guest/modkit_rt.c`) is always added, with a generated file of stand-ins for builtin
//! exports that the target's vmlinux does not have. A `Kbuild` lists them all.
//!
//! What cannot be expressed on a real kernel is refused with [`Unsupported`], naming the
//! feature, where it is used and why; nothing is approximated silently. See
//! `docs/kernel-driver.md`, "What maps to what".

mod actions;
mod module;
mod rt;
mod text;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use modkit_core::ModuleSpec;
use modkit_sim::scenario::{Action, EventKind};
use modkit_sim::Scenario;

/// One export of the target kernel's vmlinux, from its `Module.symvers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelExport {
    /// The modversions CRC.
    pub crc: Option<u32>,
    /// `EXPORT_SYMBOL_GPL` (or `_NS_GPL`).
    pub gpl_only: bool,
    /// The symbol namespace, if any.
    pub namespace: Option<String>,
}

/// The kernel the modules are generated for.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// Debian ABI name, e.g. `6.1.0-50-cloud-amd64`.
    pub kver: String,
    /// Upstream version, e.g. `(6, 1, 176)`: selects the macro syntax (namespaces are
    /// bare tokens before 6.13, string literals since).
    pub upstream: (u32, u32, u32),
    /// vmlinux's exports (from [`parse_symvers`]).
    pub vmlinux_exports: BTreeMap<String, KernelExport>,
}

/// The generated sources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Generated {
    /// `(file name, content)` of every file of the build directory, `Kbuild` included.
    pub files: Vec<(String, String)>,
    /// Names of the modules the directory builds, `modkit_rt` first.
    pub modules: Vec<String>,
    /// For each module with `depends = [...]` (an out-of-date modules.dep): the files of
    /// a build directory whose `.ko` of that name is the stale build depmod must see
    /// (same modinfo and exports, imports only from the modules `depends` names). The
    /// directory builds the other modules too, so that modpost resolves everything; only
    /// the `.ko` of that name is the stale variant.
    pub stale: Vec<(String, Vec<(String, String)>)>,
    /// `(module, entries)`: `.modinfo` entries (`tag=value`) to add to that module's
    /// built `.ko` after kbuild, because modpost would refuse the module with them in its
    /// source. Only explicit imports of a `module:` namespace on 6.16+, where modpost
    /// (9c036cfbb75b "modpost: check forbidden MODULE_IMPORT_NS("module:") at compile
    /// time", 6.16-rc1) stops the build with `ERROR: modpost: X: explicitly importing
    /// namespace "module:…" is not allowed.` while the loader's own refusal
    /// (`setup_modinfo()`, EPERM) is what the scenario asks for.
    pub modinfo_after_build: Vec<(String, Vec<String>)>,
}

/// A scenario feature a real kernel cannot express.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{feature} ({place}) is not supported: {reason}")]
pub struct Unsupported {
    /// The feature, e.g. `modprobe_time` or `use_symbol of a vmlinux symbol`.
    pub feature: String,
    /// Where: the module, step and action, or the event.
    pub place: String,
    /// Why a real kernel cannot do it.
    pub reason: String,
}

impl Unsupported {
    pub(crate) fn new(
        feature: impl Into<String>,
        place: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Unsupported {
            feature: feature.into(),
            place: place.into(),
            reason: reason.into(),
        }
    }
}

/// Parses a `Module.symvers` (`CRC\tSYMBOL\tMODULE\tEXPORT_TYPE\tNAMESPACE` per line) and
/// returns vmlinux's exports; lines of in-tree modules and malformed lines are skipped.
pub fn parse_symvers(text: &str) -> BTreeMap<String, KernelExport> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 4 || f[2] != "vmlinux" || f[1].is_empty() {
            continue;
        }
        let crc = f[0]
            .strip_prefix("0x")
            .and_then(|h| u32::from_str_radix(h, 16).ok());
        let gpl_only = f[3].ends_with("_GPL");
        let namespace = f
            .get(4)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        out.insert(
            f[1].to_string(),
            KernelExport {
                crc,
                gpl_only,
                namespace,
            },
        );
    }
    out
}

/// The default `modprobe_time` (1 ms): the only value a real modprobe can be said to take.
const DEFAULT_MODPROBE_TIME: u64 = 1_000_000;
/// More modules than this make a build of minutes and a guest of hundreds of modules:
/// refused rather than attempted.
const MAX_MODULES: usize = 256;
/// `MODULE_NAME_LEN - 1`.
const MAX_MODULE_NAME: usize = 55;
/// Below every kernel's `KSYM_NAME_LEN`.
const MAX_SYMBOL_NAME: usize = 127;

/// Who provides a symbol on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Provider {
    /// A generated module (index into the scenario's modules).
    Module(usize),
    /// The target's vmlinux, really: it may be referenced, never called.
    Vmlinux,
    /// A builtin export vmlinux lacks: a stand-in function exported by modkit_rt.
    StandIn,
}

/// One symbol as the target will see it.
#[derive(Debug, Clone)]
pub(crate) struct Sym {
    pub provider: Provider,
    pub gpl_only: bool,
    pub namespace: Option<String>,
}

/// What every module's generation needs to know about the whole scenario.
pub(crate) struct Ctx<'a> {
    pub sc: &'a Scenario,
    pub target: &'a Target,
    /// Every symbol some module or vmlinux provides.
    pub syms: HashMap<String, Sym>,
    /// Modules that export `__modkit_dep_NAME` (named by some stale `depends`).
    pub dep_exporters: BTreeSet<usize>,
    /// Builtin exports provided by modkit_rt: `(builtin module, export index)`.
    pub stand_ins: Vec<(usize, usize)>,
}

impl Ctx<'_> {
    /// True when namespaces are string literals in the export and import macros (6.13+).
    pub fn ns_literals(&self) -> bool {
        self.target.upstream >= (6, 13, 0)
    }

    /// True when an explicit `MODULE_IMPORT_NS(ns)` cannot go into the source because the
    /// target's modpost refuses a `module:` namespace import (6.16+): the entry is added
    /// to the built `.ko`'s `.modinfo` instead ([`Generated::modinfo_after_build`]).
    pub fn module_ns_import_after_build(&self, ns: &str) -> bool {
        self.target.upstream >= (6, 16, 0) && modkit_core::namespace::is_module_namespace(ns)
    }

    pub fn spec(&self, i: usize) -> &ModuleSpec {
        &self.sc.db.specs()[i]
    }

    pub fn is_builtin_name(&self, name: &str) -> bool {
        self.sc
            .db
            .id(name)
            .map(|i| self.spec(i).builtin)
            .unwrap_or(false)
    }
}

/// Generates the build directory for `sc` on `target`, or says what cannot be expressed.
/// The refusal of a scenario that uses the device model (docs/scenario-format.md,
/// "Devices"): the kernel driver generates modules and plays userspace events, but no
/// buses, drivers or devices (that would need a generated bus and device registrations in
/// modkit_rt, and a udevd in the guest), so such a file is refused, not run without them.
pub fn device_model_unsupported(sc: &Scenario) -> Option<Unsupported> {
    sc.uses_devices().then(|| {
        Unsupported::new(
            "the device model",
            "[[bus]], [[device]], [[module.driver]], udev, deferred_probe_timeout or a device event",
            "the kernel driver generates modules and plays events, but not buses, drivers, devices or udev; check this file with the simulator (`modkit check FILE`)",
        )
    })
}

pub fn generate(sc: &Scenario, target: &Target) -> Result<Generated, Unsupported> {
    if let Some(u) = device_model_unsupported(sc) {
        return Err(u);
    }
    let ctx = analyse(sc, target)?;
    let specs = sc.db.specs();
    let mut modules = vec!["modkit_rt".to_string()];
    let mut per_module: Vec<(usize, module::ModuleFiles)> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        if spec.builtin {
            continue;
        }
        per_module.push((i, module::generate(&ctx, i)?));
        modules.push(spec.name.clone());
    }
    check_events(&ctx)?;

    let needs_rt_files = rt::files(&ctx);
    let flags = kbuild_flags(&ctx);
    let mut files: Vec<(String, String)> = needs_rt_files.clone();
    for (i, m) in &per_module {
        let name = &specs[*i].name;
        files.push((format!("{name}-main.c"), m.main.clone()));
        files.push((format!("{name}-syms.c"), m.syms.clone()));
    }
    files.push(("Kbuild".into(), kbuild(&ctx, &modules, &flags)));

    let mut stale = Vec::new();
    for (i, m) in &per_module {
        let spec = &specs[*i];
        if spec.depends_override.is_none() {
            continue;
        }
        let mut sfiles = needs_rt_files.clone();
        for (j, n) in &per_module {
            let name = &specs[*j].name;
            let main = if j == i {
                module::stale_main(&ctx, *i)
            } else {
                n.main.clone()
            };
            sfiles.push((format!("{name}-main.c"), main));
            sfiles.push((format!("{name}-syms.c"), n.syms.clone()));
        }
        let _ = m;
        sfiles.push(("Kbuild".into(), kbuild(&ctx, &modules, &flags)));
        stale.push((spec.name.clone(), sfiles));
    }
    let modinfo_after_build = specs
        .iter()
        .filter(|spec| !spec.builtin)
        .filter_map(|spec| {
            let entries: Vec<String> = spec
                .import_namespaces
                .iter()
                .filter(|ns| ctx.module_ns_import_after_build(ns))
                .map(|ns| format!("import_ns={ns}"))
                .collect();
            (!entries.is_empty()).then(|| (spec.name.clone(), entries))
        })
        .collect();
    Ok(Generated {
        files,
        modules,
        stale,
        modinfo_after_build,
    })
}

/// modpost switches the scenario needs (set in the Kbuild file, which modpost reads).
struct KbuildFlags {
    /// Some import has no provider: the module is built with an undefined symbol (modpost
    /// warns instead of failing) and the kernel refuses it at load, as the scenario says.
    modpost_warn: bool,
    /// Some module uses a namespaced symbol without importing the namespace: built
    /// anyway (as a module built elsewhere would be); the kernel refuses it at load.
    allow_missing_ns: bool,
}

fn kbuild_flags(ctx: &Ctx) -> KbuildFlags {
    let mut f = KbuildFlags {
        modpost_warn: false,
        allow_missing_ns: false,
    };
    for spec in ctx.sc.db.specs().iter().filter(|s| !s.builtin) {
        for imp in &spec.imports {
            match ctx.syms.get(&imp.name) {
                None => f.modpost_warn = true,
                Some(s) => {
                    if let Some(ns) = &s.namespace {
                        if !spec.import_namespaces.contains(ns) {
                            f.allow_missing_ns = true;
                        }
                    }
                }
            }
        }
    }
    f
}

fn kbuild(ctx: &Ctx, modules: &[String], flags: &KbuildFlags) -> String {
    let mut k = String::new();
    k.push_str("# Generated by modkit");
    if let Some(n) = &ctx.sc.name {
        k.push_str(&format!(" from scenario \"{}\"", text::c_comment(n)));
    }
    k.push_str(&format!(" for {}. Do not edit.\n", ctx.target.kver));
    k.push_str("ccflags-y := -Werror\n");
    if flags.modpost_warn {
        k.push_str(
            "# Some import has no provider: modpost warns, the kernel refuses the module at load.\n\
             KBUILD_MODPOST_WARN := 1\n",
        );
    }
    if flags.allow_missing_ns {
        k.push_str(
            "# Some module uses a namespace it does not import: modpost warns, the kernel refuses it.\n\
             CONFIG_MODULE_ALLOW_MISSING_NAMESPACE_IMPORTS := y\n",
        );
    }
    for m in modules {
        k.push_str(&format!("obj-m += {m}.o\n"));
        if m == "modkit_rt" {
            k.push_str("modkit_rt-y := modkit_rt-core.o modkit_rt-builtin.o\n");
        } else {
            k.push_str(&format!("{m}-y := {m}-main.o {m}-syms.o\n"));
        }
    }
    k
}

/// The loader settings a booted Debian kernel can take (docs/kernel-driver.md, "Taints"):
/// `sig_enforce` and `module_blacklist` are set at boot; CONFIG_MODULE_FORCE_UNLOAD,
/// CONFIG_MODVERSIONS and CONFIG_MODULE_FORCE_LOAD are built in (all `y` on 6.1.176 and
/// 6.12.117; sid's 7.2.13 lacks CONFIG_MODVERSIONS, where a module without `__versions` is
/// an ordinary one and `modkit compare` simulates with the kernel's values, see
/// [`crate::kconfig`]), so a scenario must not say otherwise where it matters; a module the scenario calls signed cannot be
/// loaded under `sig_enforce` (no module can carry Debian's signature).
fn check_loader_config(sc: &Scenario) -> Result<(), Unsupported> {
    let c = &sc.config;
    if !c.force_unload {
        return Err(Unsupported::new(
            "force_unload = false",
            "top level",
            "the Debian kernels are built with CONFIG_MODULE_FORCE_UNLOAD=y; remove the key",
        ));
    }
    for spec in sc.db.specs().iter().filter(|s| !s.builtin) {
        let place = format!("module `{}`", spec.name);
        if !(spec.provenance.versions || (c.modversions && c.force_load)) {
            return Err(Unsupported::new(
                "versions = false",
                place,
                "the Debian kernels are built with CONFIG_MODVERSIONS=y and CONFIG_MODULE_FORCE_LOAD=y: say `modversions = true` (and no `force_load = false`) at the top",
            ));
        }
        if c.sig_enforce && spec.provenance.signed {
            return Err(Unsupported::new(
                "sig_enforce with a signed module",
                place,
                "the kernel driver cannot sign modules with the kernel's key, so under sig_enforce the real kernel refuses every generated module; mark it `signed = false`",
            ));
        }
    }
    Ok(())
}

/// Checks the whole scenario and builds the symbol table.
fn analyse<'a>(sc: &'a Scenario, target: &'a Target) -> Result<Ctx<'a>, Unsupported> {
    if sc.modprobe_time != DEFAULT_MODPROBE_TIME {
        return Err(Unsupported::new(
            "modprobe_time",
            "top level",
            "a real modprobe takes the time it takes; remove the key (default 1ms)",
        ));
    }
    check_loader_config(sc)?;
    if !sc.tree_unresolved.is_empty() {
        return Err(Unsupported::new(
            "tree",
            "top level",
            "a scenario that imports a real modules tree describes real drivers, whose code cannot be generated",
        ));
    }
    let specs = sc.db.specs();
    if specs.len() > MAX_MODULES {
        return Err(Unsupported::new(
            "module count",
            "top level",
            format!(
                "{} modules (a tree import?); the kernel driver builds and boots at most {MAX_MODULES}",
                specs.len()
            ),
        ));
    }
    let mut syms: HashMap<String, Sym> = HashMap::new();
    let mut stand_ins = Vec::new();
    // Builtin modules: vmlinux, or stand-ins in modkit_rt for what vmlinux lacks.
    for (i, spec) in specs.iter().enumerate().filter(|(_, s)| s.builtin) {
        let place = format!("builtin module `{}`", spec.name);
        if sc.steps.get(i).is_some_and(|s| {
            s.iter()
                .any(|st| !st.run.is_empty() || st.undo.as_ref().is_some_and(|u| !u.is_empty()))
        }) {
            return Err(Unsupported::new(
                "init table of a builtin module",
                place,
                "vmlinux's initcalls ran at boot, before the scenario",
            ));
        }
        for (e, ex) in spec.exports.iter().enumerate() {
            check_symbol_name(&ex.name, &place)?;
            let sym = match target.vmlinux_exports.get(&ex.name) {
                Some(k) => {
                    if k.namespace != ex.namespace {
                        return Err(Unsupported::new(
                            "builtin export namespace",
                            format!("{place}, export `{}`", ex.name),
                            format!(
                                "the scenario puts it in namespace {:?}, the kernel {} in {:?}",
                                ex.namespace, target.kver, k.namespace
                            ),
                        ));
                    }
                    if k.gpl_only != ex.gpl_only {
                        // Only matters for an importer that is not GPL-compatible.
                        if let Some(imp) = specs.iter().find(|s| {
                            !s.builtin
                                && !s.is_gpl_compatible()
                                && s.imports.iter().any(|i| i.name == ex.name)
                        }) {
                            return Err(Unsupported::new(
                                "builtin export GPL flag",
                                format!("{place}, export `{}`", ex.name),
                                format!(
                                    "the scenario says gpl_only = {}, the kernel {} says {}, and `{}` (licence \"{}\") imports it",
                                    ex.gpl_only, target.kver, k.gpl_only, imp.name, imp.license
                                ),
                            ));
                        }
                    }
                    Sym {
                        provider: Provider::Vmlinux,
                        gpl_only: k.gpl_only,
                        namespace: k.namespace.clone(),
                    }
                }
                None => {
                    if let Some(ns) = &ex.namespace {
                        check_namespace(ns, &format!("{place}, export `{}`", ex.name), target)?;
                    }
                    stand_ins.push((i, e));
                    Sym {
                        provider: Provider::StandIn,
                        gpl_only: ex.gpl_only,
                        namespace: ex.namespace.clone(),
                    }
                }
            };
            if ex.crc.is_some() {
                check_crc_consumers(specs, &ex.name, ex.crc, &place)?;
            }
            if syms.insert(ex.name.clone(), sym).is_some() {
                return Err(Unsupported::new(
                    "duplicate builtin export",
                    place,
                    format!("`{}` is exported twice", ex.name),
                ));
            }
        }
    }
    // Generated modules.
    for (i, spec) in specs.iter().enumerate().filter(|(_, s)| !s.builtin) {
        let place = format!("module `{}`", spec.name);
        check_module_name(&spec.name)?;
        for ex in &spec.exports {
            let eplace = format!("{place}, export `{}`", ex.name);
            check_symbol_name(&ex.name, &eplace)?;
            if let Some(ns) = &ex.namespace {
                check_namespace(ns, &eplace, target)?;
            }
            if target.vmlinux_exports.contains_key(&ex.name) {
                return Err(Unsupported::new(
                    "export of a vmlinux symbol",
                    eplace,
                    format!(
                        "the kernel {} exports `{}` itself: modpost refuses a module that exports it again",
                        target.kver, ex.name
                    ),
                ));
            }
            if let Some(prev) = syms.get(&ex.name) {
                let by = match prev.provider {
                    Provider::Module(j) => format!("module `{}`", specs[j].name),
                    _ => "a builtin module".to_string(),
                };
                return Err(Unsupported::new(
                    "duplicate export",
                    eplace,
                    format!(
                        "{by} exports it too; modpost refuses to build two modules exporting one symbol"
                    ),
                ));
            }
            check_crc_consumers(specs, &ex.name, ex.crc, &eplace)?;
            syms.insert(
                ex.name.clone(),
                Sym {
                    provider: Provider::Module(i),
                    gpl_only: ex.gpl_only,
                    namespace: ex.namespace.clone(),
                },
            );
        }
    }
    // Imports: what modpost would refuse to build.
    for spec in specs.iter().filter(|s| !s.builtin) {
        for imp in &spec.imports {
            let place = format!("module `{}`, import `{}`", spec.name, imp.name);
            check_symbol_name(&imp.name, &place)?;
            if let Some(s) = syms.get(&imp.name) {
                if s.gpl_only && !spec.is_gpl_compatible() {
                    return Err(Unsupported::new(
                        "GPL-only import by a non-GPL module",
                        place,
                        format!(
                            "modpost refuses to build a module with licence \"{}\" that uses a GPL-only symbol",
                            spec.license
                        ),
                    ));
                }
            }
        }
        for ns in &spec.import_namespaces {
            check_namespace(
                ns,
                &format!("module `{}`, import_namespaces", spec.name),
                target,
            )?;
        }
    }
    // Stale depends: the dependencies export a marker the stale build imports.
    let mut dep_exporters = BTreeSet::new();
    for spec in specs.iter().filter(|s| !s.builtin) {
        if let Some(deps) = &spec.depends_override {
            for d in deps {
                match sc.db.id(d) {
                    Some(j) if !specs[j].builtin && specs[j].name != spec.name => {
                        dep_exporters.insert(j);
                    }
                    Some(_) => {}
                    None => {
                        return Err(Unsupported::new(
                            "depends",
                            format!("module `{}`", spec.name),
                            format!("`{d}` names no module"),
                        ))
                    }
                }
            }
        }
    }
    Ok(Ctx {
        sc,
        target,
        syms,
        dep_exporters,
        stand_ins,
    })
}

/// CRCs: the real build gives every import the CRC of its export, so only a scenario in
/// which they agree (or one side has none, with no "no symbol version" line expected)
/// can be reproduced.
fn check_crc_consumers(
    specs: &[ModuleSpec],
    sym: &str,
    crc: Option<u32>,
    place: &str,
) -> Result<(), Unsupported> {
    let Some(have) = crc else { return Ok(()) };
    for s in specs.iter().filter(|s| !s.builtin) {
        let Some(imp) = s.imports.iter().find(|i| i.name == sym) else {
            continue;
        };
        match imp.crc {
            Some(want) if want != have => {
                return Err(Unsupported::new(
                    "CRC mismatch",
                    format!("{place}; imported by `{}`", s.name),
                    format!(
                        "the import's CRC {want:#010x} disagrees with the export's {have:#010x}; a real build computes both from one prototype"
                    ),
                ))
            }
            None if s.imports.iter().any(|i| i.crc.is_some()) => {
                return Err(Unsupported::new(
                    "missing import CRC",
                    format!("{place}; imported by `{}`", s.name),
                    "a versioned module without a version for this symbol (\"no symbol version\") cannot be built: modpost records every CRC",
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_module_name(name: &str) -> Result<(), Unsupported> {
    let ok = !name.is_empty()
        && name.len() <= MAX_MODULE_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name != "modkit_rt"
        && name != "vmlinux";
    if ok {
        Ok(())
    } else {
        Err(Unsupported::new(
            "module name",
            format!("module `{name}`"),
            format!(
                "a generated module's name must be 1-{MAX_MODULE_NAME} of [A-Za-z0-9_] and not modkit_rt or vmlinux"
            ),
        ))
    }
}

fn check_symbol_name(name: &str, place: &str) -> Result<(), Unsupported> {
    if !text::is_c_ident(name) || name.len() > MAX_SYMBOL_NAME {
        return Err(Unsupported::new(
            "symbol name",
            place,
            format!("`{name}` is not a C identifier of at most {MAX_SYMBOL_NAME} bytes"),
        ));
    }
    if name.starts_with("modkit_") || name.starts_with("__modkit_") {
        return Err(Unsupported::new(
            "symbol name",
            place,
            format!("`{name}`: names starting with modkit_ are the runtime's"),
        ));
    }
    Ok(())
}

/// A namespace the export and import macros can carry. A `module:PATTERNS` namespace
/// (6.16's `EXPORT_SYMBOL_FOR_MODULES`) is emitted as the namespace string itself on every
/// kernel: from 6.13 as a string literal, before through the macros' `__stringify(ns)`,
/// which reproduces `module:ns-user*` exactly but cannot carry a comma. On kernels before
/// 6.16 it is an ordinary namespace string (docs/kernel-driver.md).
fn check_namespace(ns: &str, place: &str, target: &Target) -> Result<(), Unsupported> {
    if let Some(patterns) = ns.strip_prefix(modkit_core::namespace::MODULE_NS_PREFIX) {
        let literals = target.upstream >= (6, 13, 0);
        let ok_char = |c: char| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '*') || (literals && c == ',')
        };
        let pieces_ok = patterns
            .split(',')
            .all(|p| !p.is_empty() && p.trim_end_matches('*').chars().all(|c| c != '*'));
        if patterns.is_empty() || !patterns.chars().all(ok_char) || !pieces_ok || ns.len() > 64 {
            let commas = if literals {
                ""
            } else {
                "; before 6.13 the macros stringify the namespace, so a comma cannot be passed"
            };
            return Err(Unsupported::new(
                "namespace name",
                place,
                format!(
                    "`{ns}`: a module namespace is `module:` and module-name patterns of [A-Za-z0-9_-], each with an optional trailing `*`, separated by commas (at most 64 bytes){commas}"
                ),
            ));
        }
        return Ok(());
    }
    if !text::is_c_ident(ns) || ns.len() > 64 {
        return Err(Unsupported::new(
            "namespace name",
            place,
            format!(
                "`{ns}`: the macros take a namespace that is a C identifier (at most 64 bytes)"
            ),
        ));
    }
    Ok(())
}

/// Checks what the events' `run` lists ask of modkit_rt.
fn check_events(ctx: &Ctx) -> Result<(), Unsupported> {
    for (n, ev) in ctx.sc.events.iter().enumerate() {
        if let EventKind::Run(list) = &ev.kind {
            let place = format!("event `{}` (#{})", ev.id, n + 1);
            check_rt_actions(list, &place)?;
        }
    }
    Ok(())
}

fn check_rt_actions(list: &[Action], place: &str) -> Result<(), Unsupported> {
    for a in list {
        match a {
            Action::Unregister(key) => {
                if let Some((kind @ ("fs" | "misc"), _)) = key.split_once(':') {
                    return Err(Unsupported::new(
                        format!("unregister of {kind}: outside its module"),
                        place,
                        format!(
                            "`{key}`: only the module that registered a {kind} object holds the structure the kernel unregisters"
                        ),
                    ));
                }
            }
            Action::Lookup { key, get: true } | Action::Open { key, .. }
                if key.starts_with("debugfs:") =>
            {
                return Err(Unsupported::new(
                    "pinning lookup or open of debugfs:",
                    place,
                    format!("`{key}`: debugfs directories have no owner module to pin"),
                ));
            }
            Action::Spawn(inner) => check_rt_actions(inner, place)?,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
