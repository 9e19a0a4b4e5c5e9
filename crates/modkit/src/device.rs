//! The device model's public types: [`Device`] (what [`crate::HostHandle::add_device`]
//! adds), [`DeviceDriver`] (what a module declares with [`crate::Module::driver`]), the
//! probe/remove code ([`DeviceCode`]) and the rows of [`crate::HostHandle::devices`].
//!
//! The rules are the kernel's driver core (`drivers/base/dd.c`, `bus.c`, `driver.c`) as
//! `modkit_core::device` models them; the host runs them on real threads
//! (crate::probe).

use std::sync::Arc;

use modkit_core::Errno;

pub use modkit_core::device::DeviceRow;

use crate::probe::ProbeCtx;

/// A device to add to the host: a name (`dev_name()`), its bus, and the modalias its
/// uevent announces, which drivers' patterns match.
///
/// On the `auxiliary` bus the name is `modname.devname.id` and the modalias is derived from
/// it (`auxiliary:modname.devname`), as `auxiliary_device_add()` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub(crate) name: String,
    pub(crate) bus: String,
    pub(crate) modalias: Option<String>,
    pub(crate) match_defer: Option<String>,
}

impl Device {
    /// A device named `name` on `bus`, without a modalias (no driver matches it until
    /// [`Device::modalias`] gives one; auxiliary devices get theirs from the name).
    pub fn new(name: &str, bus: &str) -> Device {
        Device {
            name: name.to_string(),
            bus: bus.to_string(),
            modalias: None,
            match_defer: None,
        }
    }

    /// An auxiliary device `modname.devname.id` (`auxiliary_device_add()`), matched by
    /// drivers on `modname.devname`.
    pub fn auxiliary(modname: &str, devname: &str, id: u32) -> Device {
        Device::new(
            &modkit_core::auxiliary::device_name(modname, devname, id),
            modkit_core::auxiliary::BUS,
        )
    }

    /// The modalias the device announces (`MODALIAS=` of its uevent).
    pub fn modalias(mut self, modalias: &str) -> Device {
        self.modalias = Some(modalias.to_string());
        self
    }

    /// The bus's match of this device returns `-EPROBE_DEFER` until `key` is there (a
    /// `kind:name` registration, or `device:NAME` bound), as AMBA's match does while the
    /// device's clock cannot be read: the driver core then does what the era does
    /// (`modkit_core::matchdefer`): before 4.5 the error counts as a match (the probe runs);
    /// 4.5–5.19 the device goes on the pending list and the probe runs anyway; 6.0+ and
    /// `modkit` the device goes on the pending list only, and is retried with it. A sysfs
    /// [`crate::HostHandle::bind`] probes in every era (`bind_store()`).
    pub fn match_defer(mut self, key: &str) -> Device {
        self.match_defer = Some(key.to_string());
        self
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device's bus.
    pub fn bus(&self) -> &str {
        &self.bus
    }
}

/// A driver's probe and remove, as code the host runs: native closures
/// ([`DeviceDriver::probe`], [`DeviceDriver::remove`]) or code an engine supplies (such as
/// modkit-hostdriver's interpreted scenario actions, through
/// [`crate::driver::Driver::add_device_driver`]).
///
/// Both run outside the host's lock, on the thread that caused them (the module's init
/// registering the driver, the thread adding the device, the deferred-probe worker, an
/// unbind, the module's exit).
pub trait DeviceCode: Send + Sync {
    /// The driver's probe: `Ok` binds the device. `Err(EPROBE_DEFER)` puts it on the
    /// pending list (retried after every successful probe); `ENODEV` and `ENXIO` fail
    /// silently; any other error is logged with the kernel's line and the next matching
    /// driver is tried. Managed resources taken in a failed probe are released at once.
    fn probe(&self, ctx: &mut ProbeCtx<'_>) -> Result<(), Errno>;
    /// The driver's remove: runs at unbind, before the managed resources are released.
    fn remove(&self, ctx: &mut ProbeCtx<'_>);
}

type ProbeFn = Arc<dyn Fn(&mut ProbeCtx<'_>) -> Result<(), Errno> + Send + Sync>;
type RemoveFn = Arc<dyn Fn(&mut ProbeCtx<'_>) + Send + Sync>;

/// A driver a module declares (`struct device_driver` with its id table): a name, a bus,
/// modalias patterns (globs, which also become the module's aliases, as
/// `MODULE_DEVICE_TABLE` does), a probe and a remove.
///
/// ```
/// use modkit::{Device, DeviceDriver, Host, Module};
///
/// let host = Host::new("modkit".parse().unwrap());
/// host.add_bus("endpoint").unwrap();
/// host.add_module(Module::new("httpd").driver(
///     DeviceDriver::new("httpd", "endpoint")
///         .matches("endpoint:http:*")
///         .probe(|ctx| {
///             let _handler = ctx.devm(format!("serving {}", ctx.device_name()))?;
///             Ok(())
///         }),
/// )).unwrap();
/// host.add_device(Device::new("ep0", "endpoint").modalias("endpoint:http:/api")).unwrap();
/// host.modprobe("endpoint:http:/api").unwrap();   // the pattern is httpd's alias
/// assert_eq!(host.device_state("ep0").unwrap(), "bound:httpd");
/// host.rmmod("httpd").unwrap();                   // its exit unbinds ep0 first
/// assert_eq!(host.device_state("ep0").unwrap(), "unbound");
/// ```
#[derive(Clone)]
pub struct DeviceDriver {
    pub(crate) name: String,
    pub(crate) bus: String,
    pub(crate) patterns: Vec<String>,
    pub(crate) probe: Option<ProbeFn>,
    pub(crate) remove: Option<RemoveFn>,
    pub(crate) async_probe: bool,
    pub(crate) code: Option<Arc<dyn DeviceCode>>,
}

impl std::fmt::Debug for DeviceDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceDriver")
            .field("name", &self.name)
            .field("bus", &self.bus)
            .field("patterns", &self.patterns)
            .field("async_probe", &self.async_probe)
            .finish_non_exhaustive()
    }
}

impl DeviceDriver {
    /// A driver `name` on `bus` with no patterns (it matches nothing), a probe that
    /// succeeds and a remove that does nothing.
    pub fn new(name: &str, bus: &str) -> DeviceDriver {
        DeviceDriver {
            name: name.to_string(),
            bus: bus.to_string(),
            patterns: Vec::new(),
            probe: None,
            remove: None,
            async_probe: false,
            code: None,
        }
    }

    /// One modalias pattern of its id table (a glob such as `pci:v00008086d*`); it is also
    /// an alias of the module, so `modprobe MODALIAS` loads it.
    pub fn matches(mut self, pattern: &str) -> DeviceDriver {
        self.patterns.push(pattern.to_string());
        self
    }

    /// The probe.
    pub fn probe<F>(mut self, probe: F) -> DeviceDriver
    where
        F: Fn(&mut ProbeCtx<'_>) -> Result<(), Errno> + Send + Sync + 'static,
    {
        self.probe = Some(Arc::new(probe));
        self
    }

    /// The remove.
    pub fn remove<F>(mut self, remove: F) -> DeviceDriver
    where
        F: Fn(&mut ProbeCtx<'_>) + Send + Sync + 'static,
    {
        self.remove = Some(Arc::new(remove));
        self
    }

    /// `probe_type = PROBE_PREFER_ASYNCHRONOUS`: the driver's registration and a device's
    /// addition do not run its probe themselves; a worker thread per device does (wait for
    /// them with [`crate::HostHandle::settle`]). A sysfs-style [`crate::HostHandle::bind`]
    /// stays synchronous. As the kernel's `do_init_module()` does with
    /// `async_synchronize_full()`, a load whose init's registration scheduled async probes
    /// (from 5.18: every load) waits, once its module is LIVE, until no async probe is in
    /// flight, and holds the module's initial reference meanwhile (an `rmmod` of it gets
    /// EWOULDBLOCK). A probe that loads a module and waits for it can thus deadlock under
    /// 5.18+, as in the kernel (`request_module()` from async workers is not allowed).
    pub fn async_probe(mut self) -> DeviceDriver {
        self.async_probe = true;
        self
    }

    /// Probe and remove given as one [`DeviceCode`] object (replaces the closures).
    pub fn code(mut self, code: Arc<dyn DeviceCode>) -> DeviceDriver {
        self.code = Some(code);
        self
    }

    /// The driver's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its bus.
    pub fn bus(&self) -> &str {
        &self.bus
    }

    /// Its patterns.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// The code the host runs.
    pub(crate) fn into_code(self) -> Arc<dyn DeviceCode> {
        if let Some(c) = self.code {
            return c;
        }
        Arc::new(NativeDeviceCode {
            probe: self.probe,
            remove: self.remove,
        })
    }
}

struct NativeDeviceCode {
    probe: Option<ProbeFn>,
    remove: Option<RemoveFn>,
}

impl DeviceCode for NativeDeviceCode {
    fn probe(&self, ctx: &mut ProbeCtx<'_>) -> Result<(), Errno> {
        match &self.probe {
            Some(p) => p(ctx),
            None => Ok(()),
        }
    }

    fn remove(&self, ctx: &mut ProbeCtx<'_>) {
        if let Some(r) = &self.remove {
            r(ctx)
        }
    }
}

/// The name of the init step that registers driver `name` (`module_driver()`'s
/// `driver_register()`), appended to the init table of a module that declares drivers.
pub fn register_step_name(name: &str) -> String {
    format!("driver_register({name})")
}
