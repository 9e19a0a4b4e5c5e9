//! Native modules declared in Rust: name, licence, aliases, softdeps, typed exports and
//! imports, and an init table of closures with their undo closures.

use std::any::Any;
use std::sync::Arc;

use modkit_core::spec::normalize_name;
use modkit_core::{BodyResult, Errno, ExportSpec, ImportSpec, InitStepSpec, ModuleSpec};

use crate::ctx::InitCtx;
use crate::host::ModuleCode;
use crate::symbol::crc_of;

/// What an init step returns on success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// Go on with the next step.
    Continue,
    /// Early success: skip the remaining steps, stay loaded (i915's mock selftests).
    Stop,
}

type InitFn = Arc<dyn Fn(&mut InitCtx<'_>) -> Result<Init, Errno> + Send + Sync>;
type UndoFn = Arc<dyn Fn(&mut InitCtx<'_>) + Send + Sync>;
/// Exported values by symbol name.
pub(crate) type Values = Vec<(String, Arc<dyn Any + Send + Sync>)>;

struct NativeStep {
    name: String,
    init: InitFn,
    undo: Option<UndoFn>,
}

/// A module written in Rust, built step by step:
///
/// ```
/// use modkit::{Host, Init, Module};
/// let host = Host::new("modkit".parse().unwrap());
/// host.add_module(
///     Module::new("greeter")
///         .export("greet", (|name: &str| format!("hello, {name}")) as fn(&str) -> String)
///         .init_step("say_hi", |_ctx| Ok(Init::Continue)),
/// ).unwrap();
/// host.modprobe("greeter").unwrap();
/// let greet = host.symbol::<fn(&str) -> String>("greet").unwrap();
/// assert_eq!(greet("world"), "hello, world");
/// ```
pub struct Module {
    pub(crate) spec: ModuleSpec,
    steps: Vec<NativeStep>,
    pub(crate) values: Values,
    drivers: Vec<crate::device::DeviceDriver>,
    provides: Vec<String>,
}

impl Module {
    /// A GPL module named `name` with no symbols and no init steps.
    pub fn new(name: &str) -> Self {
        Module {
            spec: ModuleSpec::new(name),
            steps: Vec::new(),
            values: Vec::new(),
            drivers: Vec::new(),
            provides: Vec::new(),
        }
    }

    /// A device driver the module declares (`module_driver()`): its patterns become the
    /// module's aliases (`MODULE_DEVICE_TABLE`), and a step `driver_register(NAME)` is
    /// appended to the init table (after the steps declared so far and later), undone at
    /// exit by `driver_unregister()`, which unbinds every device the driver has first. A
    /// bound device does not pin the module. See [`crate::DeviceDriver`].
    pub fn driver(mut self, driver: crate::device::DeviceDriver) -> Self {
        self.drivers.push(driver);
        self
    }

    /// Declares that the module provides `key` (a `kind:name` registration its init or one
    /// of its drivers' probes makes). Under the `modkit` policy a probe whose
    /// [`crate::ProbeCtx::need`] of `key` finds it missing while this module is loading
    /// waits for the load to end instead of deferring (crate::probewait; a `device:NAME`
    /// need is answered by the modules whose drivers match that device, without
    /// declaring). Under `linux-X.Y` it changes nothing.
    pub fn provides(mut self, key: &str) -> Self {
        self.provides.push(key.to_string());
        self
    }

    /// The keys declared with [`Module::provides`].
    pub(crate) fn provided_keys(&self) -> Vec<String> {
        self.provides.clone()
    }

    /// `MODULE_LICENSE`: a licence that is not GPL-compatible cannot use GPL-only exports.
    pub fn license(mut self, license: &str) -> Self {
        self.spec.license = license.to_string();
        self
    }

    /// An alias (a glob pattern, matched as modprobe matches modaliases).
    pub fn alias(mut self, pattern: &str) -> Self {
        self.spec.aliases.push(pattern.to_string());
        self
    }

    /// A soft dependency loaded before this module.
    pub fn softdep_pre(mut self, name: &str) -> Self {
        self.spec.softdeps_pre.push(name.to_string());
        self
    }

    /// A soft dependency loaded after this module.
    pub fn softdep_post(mut self, name: &str) -> Self {
        self.spec.softdeps_post.push(name.to_string());
        self
    }

    fn export_with<T: Any + Send + Sync>(
        mut self,
        name: &str,
        ns: Option<&str>,
        gpl: bool,
        value: T,
    ) -> Self {
        self.spec.exports.push(ExportSpec {
            name: name.to_string(),
            namespace: ns.map(str::to_string),
            gpl_only: gpl,
            crc: Some(crc_of::<T>()),
        });
        self.values.push((name.to_string(), Arc::new(value)));
        self
    }

    /// Exports a value (a function pointer, an `Arc<dyn Trait>`, …) under `name`, with a
    /// CRC derived from its type.
    pub fn export<T: Any + Send + Sync>(self, name: &str, value: T) -> Self {
        self.export_with(name, None, false, value)
    }

    /// `EXPORT_SYMBOL_GPL`.
    pub fn export_gpl<T: Any + Send + Sync>(self, name: &str, value: T) -> Self {
        self.export_with(name, None, true, value)
    }

    /// `EXPORT_SYMBOL_NS`: importers must `import_namespace(ns)`.
    pub fn export_ns<T: Any + Send + Sync>(self, name: &str, namespace: &str, value: T) -> Self {
        self.export_with(name, Some(namespace), false, value)
    }

    /// Imports `name` with type `T`: loading links it (and pins its owner), refusing a
    /// type that disagrees with the export like modversions refuses a CRC mismatch.
    pub fn import<T: Any + Send + Sync>(mut self, name: &str) -> Self {
        self.spec.imports.push(ImportSpec {
            name: name.to_string(),
            crc: Some(crc_of::<T>()),
        });
        self
    }

    /// `MODULE_IMPORT_NS`.
    pub fn import_namespace(mut self, ns: &str) -> Self {
        self.spec.import_namespaces.push(ns.to_string());
        self
    }

    /// An init step with no undo.
    pub fn init_step<F>(mut self, name: &str, init: F) -> Self
    where
        F: Fn(&mut InitCtx<'_>) -> Result<Init, Errno> + Send + Sync + 'static,
    {
        self.steps.push(NativeStep {
            name: name.to_string(),
            init: Arc::new(init),
            undo: None,
        });
        self
    }

    /// An init step and the undo that tears down exactly what it set up; the undo runs on
    /// a later step's failure and at unload, once.
    pub fn init_step_with_undo<F, U>(mut self, name: &str, init: F, undo: U) -> Self
    where
        F: Fn(&mut InitCtx<'_>) -> Result<Init, Errno> + Send + Sync + 'static,
        U: Fn(&mut InitCtx<'_>) + Send + Sync + 'static,
    {
        self.steps.push(NativeStep {
            name: name.to_string(),
            init: Arc::new(init),
            undo: Some(Arc::new(undo)),
        });
        self
    }

    /// No exit function: the module cannot be unloaded unless forced.
    pub fn no_exit(mut self) -> Self {
        self.spec.has_exit = false;
        self
    }

    /// The module's name (normalised).
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub(crate) fn into_parts(
        mut self,
    ) -> (
        ModuleSpec,
        NativeCode,
        Values,
        Vec<crate::device::DeviceDriver>,
    ) {
        self.spec.name = normalize_name(&self.spec.name);
        for d in &self.drivers {
            for p in &d.patterns {
                if !self.spec.aliases.contains(p) {
                    self.spec.aliases.push(p.clone());
                }
            }
            let name = d.name.clone();
            let undo_name = d.name.clone();
            self.steps.push(NativeStep {
                name: crate::device::register_step_name(&d.name),
                init: Arc::new(move |ctx: &mut InitCtx<'_>| {
                    ctx.driver_register(&name)?;
                    Ok(Init::Continue)
                }),
                undo: Some(Arc::new(move |ctx: &mut InitCtx<'_>| {
                    let _ = ctx.driver_unregister(&undo_name);
                })),
            });
        }
        self.spec.init = self
            .steps
            .iter()
            .map(|s| InitStepSpec {
                name: s.name.clone(),
                has_undo: s.undo.is_some(),
            })
            .collect();
        (
            self.spec,
            NativeCode { steps: self.steps },
            self.values,
            self.drivers,
        )
    }
}

/// The closures of one native module.
pub(crate) struct NativeCode {
    steps: Vec<NativeStep>,
}

impl ModuleCode for NativeCode {
    fn init(&self, ctx: &mut InitCtx<'_>, step: usize) -> BodyResult {
        match (self.steps[step].init)(ctx) {
            Ok(Init::Continue) => BodyResult::Ok,
            Ok(Init::Stop) => BodyResult::Stop,
            Err(e) => BodyResult::Fail(e),
        }
    }

    fn undo(&self, ctx: &mut InitCtx<'_>, step: usize) {
        if let Some(u) = &self.steps[step].undo {
            u(ctx);
        }
    }

    fn step_name(&self, step: usize) -> String {
        self.steps[step].name.clone()
    }
}
