//! The device model (`drivers/base/core.c`, `bus.c`, `driver.c`, `dd.c`): buses, drivers
//! that modules register and unregister, devices added and removed, matching by modalias
//! pattern, probe and remove, the deferred-probe lists and timeout, managed device links
//! and managed resources. Like the rest of the core it decides and records; it runs no
//! code: the driver (simulator) runs each probe and remove body and reports its result.
//!
//! The calls follow the kernel's order:
//! - `driver_register()` → `bus_add_driver()` → `driver_attach()`: every device of the bus
//!   that is present, not bound and matches is probed, in the order devices were added
//!   ([`DeviceModel::register_driver`]).
//! - `device_add()` → `bus_probe_device()` → `__device_attach()`: the registered drivers
//!   of its bus are tried in registration order until one binds or one defers
//!   ([`DeviceModel::drivers_for`]).
//! - `really_probe()`: [`DeviceModel::probe_begin`] / [`DeviceModel::probe_end`]
//!   (rules per era in [`crate::dd`]).
//! - `__device_release_driver()`: consumers are unbound first
//!   (`device_links_unbind_consumers()`), then the driver's remove runs, then
//!   `devres_release_all()` ([`DeviceModel::consumers_of`], [`DeviceModel::remove_begin`],
//!   [`DeviceModel::remove_end`]).
//! - `driver_unregister()` → `driver_detach()`: every bound device is released, then the
//!   driver leaves the bus.
//!
//! A bound device does not pin its driver's module: the driver core takes no module
//! reference at bind (`really_probe()` has no `try_module_get()`); `rmmod` runs the
//! module's exit, whose `driver_unregister()` unbinds every device first. Probes run while
//! the module is COMING (inside its init, as `module_pci_driver()` registers there) or
//! LIVE (under `linux-X.Y` also GOING, before its exit's `driver_unregister()`:
//! [`crate::going`]); removes while it is present (COMING, LIVE, or GOING during its exit). The
//! invariants the property tests check are recorded in [`Kernel::violations`].

use std::collections::VecDeque;

pub use crate::devres::DevId;
use crate::devres::DevresTable;
use crate::errno::Errno;
use crate::kernel::{Kernel, ModId, ModState, Time};

/// Checks a modalias pattern (a glob, as kmod matches aliases).
pub fn valid_pattern(p: &str) -> Result<(), String> {
    glob::Pattern::new(p).map(|_| ()).map_err(|e| e.to_string())
}

/// A driver's index in the [`DeviceModel`].
pub type DrvId = usize;

/// The buses every kernel has; a scenario may add its own.
pub const BUILTIN_BUSES: [&str; 6] = ["platform", "pci", "auxiliary", "cpu", "acpi", "virtual"];

/// A driver as a module declares it (`struct device_driver` and its id table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverSpec {
    /// `drv->name`.
    pub name: String,
    /// The bus it registers on.
    pub bus: String,
    /// The module that registers it (`drv->owner`).
    pub module: ModId,
    /// Modalias patterns of its id table (what `MODULE_DEVICE_TABLE` turns into aliases).
    pub patterns: Vec<String>,
}

/// Where a device is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DevState {
    /// Not added (declared for later, or removed).
    Absent,
    /// Added, no driver.
    Unbound,
    /// A driver's probe runs.
    Probing(DrvId),
    /// Bound to a driver.
    Bound(DrvId),
    /// The driver's remove runs.
    Removing(DrvId),
}

/// A device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// `dev_name()`.
    pub name: String,
    /// Its bus.
    pub bus: String,
    /// The modalias its uevent announces, if any.
    pub modalias: Option<String>,
    /// State.
    pub state: DevState,
    /// Why its last probe deferred (modkit's words), while it is on the pending list.
    pub defer_reason: Option<String>,
    /// The reason `dev_err_probe()` recorded (`deferred_probe_reason`), if the driver gave one.
    pub kernel_reason: Option<String>,
    /// What its last deferral waited for (`need`'s key), if a `need` deferred.
    pub defer_key: Option<String>,
    /// The last probe failure: driver and error.
    pub failed: Option<(DrvId, Errno)>,
    /// Suppliers it has managed device links to (`device_link_add()` during its probe).
    pub suppliers: Vec<DevId>,
    /// `deferred_trigger_count` when its current probe began.
    trigger_at_probe: u64,
    /// The bus's match of this device returns -EPROBE_DEFER until this (`kind:name`, or
    /// `device:NAME` bound) is there ([`crate::matchdefer`]).
    pub match_defer: Option<String>,
    /// Its deferring match put it on the pending list before the probe that runs anyway
    /// (4.5–5.19): a failed probe leaves it there.
    match_deferred: bool,
}

/// `driver_match_device()`'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusMatch {
    /// 0: no match.
    No,
    /// Positive: a match.
    Yes,
    /// -EPROBE_DEFER: the bus cannot tell yet ([`crate::matchdefer`]).
    Defer,
}

/// One row of the report's device table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    /// Device name.
    pub device: String,
    /// Bus.
    pub bus: String,
    /// Bound (or probing, removing) driver, if any.
    pub driver: Option<String>,
    /// `bound`, `deferred`, `unbound`, `probing`, `removing` or `absent`.
    pub state: &'static str,
    /// Why it is deferred, or how its last probe failed.
    pub reason: Option<String>,
}

/// What a finished probe leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeEnd {
    /// Bound; `trigger`: the deferred work must run (the pending list was moved to the
    /// active list).
    Bound {
        /// Queue the deferred work.
        trigger: bool,
    },
    /// Deferred (on the pending list); `trigger` as above, when a trigger happened during
    /// the probe.
    Deferred {
        /// Queue the deferred work.
        trigger: bool,
    },
    /// Failed (silently for ENODEV/ENXIO); the next driver may try.
    Failed,
}

/// The whole device model.
#[derive(Debug, Clone, Default)]
pub struct DeviceModel {
    /// Declared drivers.
    pub drivers: Vec<DriverSpec>,
    /// Registration order of the registered drivers (`bus->p->klist_drivers`).
    pub registered: Vec<DrvId>,
    /// Every device, present or not, in the order first declared or created.
    pub devices: Vec<Device>,
    /// Order in which present devices were added (`bus->p->klist_devices`).
    pub added: Vec<DevId>,
    /// `deferred_probe_pending_list`.
    pub pending: Vec<DevId>,
    /// `deferred_probe_active_list`.
    pub active: VecDeque<DevId>,
    /// `deferred_trigger_count`.
    pub trigger_count: u64,
    /// The deferred-probe timeout: `None` none, `Some(0)` expired (or 0 from boot).
    pub timeout: Option<Time>,
    /// When the timeout work is due, while it is queued.
    pub timeout_due: Option<Time>,
    /// Managed resources.
    pub devres: DevresTable,
    /// Drivers being unregistered: `bus_remove_driver()` takes them off the bus's list
    /// (`klist_remove()`) before `driver_detach()`, so no device matches them meanwhile.
    pub detaching: std::collections::BTreeSet<DrvId>,
    patterns: Vec<Vec<glob::Pattern>>,
}

impl DeviceModel {
    /// A model with these drivers (none registered) and the timeout in force.
    pub fn new(drivers: Vec<DriverSpec>, timeout: Option<Time>) -> Self {
        let patterns = drivers
            .iter()
            .map(|d| {
                d.patterns
                    .iter()
                    .filter_map(|p| glob::Pattern::new(p).ok())
                    .collect()
            })
            .collect();
        DeviceModel {
            drivers,
            patterns,
            timeout,
            timeout_due: timeout.filter(|&t| t > 0),
            ..Default::default()
        }
    }

    /// Declares one more driver (not registered) after the model was made, as a host that
    /// adds modules at run time does; returns its id. Patterns that are not valid globs
    /// match nothing (check them with [`valid_pattern`] first).
    pub fn add_driver(&mut self, spec: DriverSpec) -> DrvId {
        self.patterns.push(
            spec.patterns
                .iter()
                .filter_map(|p| glob::Pattern::new(p).ok())
                .collect(),
        );
        self.drivers.push(spec);
        self.drivers.len() - 1
    }

    /// Declares a device (absent until added); returns its id. A name declared already
    /// returns the existing id.
    pub fn declare(&mut self, name: &str, bus: &str, modalias: Option<String>) -> DevId {
        if let Some(id) = self.find_device(name) {
            return id;
        }
        self.devices.push(Device {
            name: name.to_string(),
            bus: bus.to_string(),
            modalias,
            state: DevState::Absent,
            defer_reason: None,
            kernel_reason: None,
            defer_key: None,
            failed: None,
            suppliers: Vec::new(),
            trigger_at_probe: 0,
            match_defer: None,
            match_deferred: false,
        });
        self.devices.len() - 1
    }

    /// The device named `name`.
    pub fn find_device(&self, name: &str) -> Option<DevId> {
        self.devices.iter().position(|d| d.name == name)
    }

    /// The driver named `name`.
    pub fn find_driver(&self, name: &str) -> Option<DrvId> {
        self.drivers.iter().position(|d| d.name == name)
    }

    /// Whether `drv` is registered.
    pub fn is_registered(&self, drv: DrvId) -> bool {
        self.registered.contains(&drv)
    }

    /// Whether `drv` is on its bus's list of drivers (registered, not being unregistered).
    pub fn on_bus(&self, drv: DrvId) -> bool {
        self.is_registered(drv) && !self.detaching.contains(&drv)
    }

    /// `bus_remove_driver()`'s start: the driver leaves the bus's list before its devices
    /// are detached.
    pub fn begin_unregister(&mut self, drv: DrvId) {
        self.detaching.insert(drv);
    }

    /// Whether the device is present (added and not removed).
    pub fn present(&self, dev: DevId) -> bool {
        self.devices[dev].state != DevState::Absent
    }

    /// `drv->bus->match(dev, drv)`: same bus and the modalias matches a pattern.
    pub fn matches(&self, drv: DrvId, dev: DevId) -> bool {
        let (d, v) = (&self.drivers[drv], &self.devices[dev]);
        d.bus == v.bus
            && v.modalias
                .as_deref()
                .is_some_and(|m| self.patterns[drv].iter().any(|p| p.matches(m)))
    }

    /// Whether `key` is there: a registration `kind:name`, or `device:NAME` bound.
    pub fn key_ready(&self, k: &Kernel, key: &str) -> bool {
        match key.strip_prefix("device:") {
            Some(n) => self
                .find_device(n)
                .is_some_and(|s| matches!(self.devices[s].state, DevState::Bound(_))),
            None => k.registrations.contains_key(key),
        }
    }

    /// Whether the bus's match of `dev` defers now (its `match_defer` is not there).
    pub fn match_defers(&self, k: &Kernel, dev: DevId) -> bool {
        self.devices[dev]
            .match_defer
            .as_deref()
            .is_some_and(|key| !self.key_ready(k, key))
    }

    /// `driver_match_device(drv, dev)`: other bus, no match; a deferring match defers for
    /// every driver of the bus (AMBA's match reads the peripheral id before it looks at
    /// the driver's table); else the modalias patterns.
    pub fn bus_match(&self, k: &Kernel, drv: DrvId, dev: DevId) -> BusMatch {
        if self.drivers[drv].bus != self.devices[dev].bus {
            BusMatch::No
        } else if self.match_defers(k, dev) {
            BusMatch::Defer
        } else if self.matches(drv, dev) {
            BusMatch::Yes
        } else {
            BusMatch::No
        }
    }

    /// `driver_deferred_probe_add()` for a deferring match (4.5+): the device joins the
    /// pending list, with the key its match waits for as the reason. `probing`: the probe
    /// runs anyway (4.5–5.19), so a failure keeps it there.
    pub fn match_defer_add(&mut self, dev: DevId, probing: bool) {
        let d = &mut self.devices[dev];
        let key = d.match_defer.clone().unwrap_or_default();
        d.defer_reason = Some(format!("bus match deferred: waits for {key}"));
        d.defer_key = Some(key);
        d.match_deferred = probing;
        if !self.pending.contains(&dev) && !self.active.contains(&dev) {
            self.pending.push(dev);
        }
    }

    /// The registered drivers of `dev`'s bus, in registration order (what
    /// `bus_for_each_drv()` walks).
    pub fn drivers_on_bus(&self, dev: DevId) -> Vec<DrvId> {
        self.registered
            .iter()
            .copied()
            .filter(|&d| self.drivers[d].bus == self.devices[dev].bus && self.on_bus(d))
            .collect()
    }

    /// The registered drivers that match `dev`, in registration order.
    pub fn drivers_for(&self, dev: DevId) -> Vec<DrvId> {
        self.registered
            .iter()
            .copied()
            .filter(|&d| self.matches(d, dev) && self.on_bus(d))
            .collect()
    }

    /// `bus_add_driver()`: registers `drv`; returns the devices `driver_attach()` probes
    /// (present, unbound, matching, in the order added), and those another driver is
    /// probing or removing that `drv` matches: `__driver_attach()` (drivers/base/dd.c)
    /// walks every device of the bus, takes the device lock (`__device_driver_lock()`,
    /// waiting for that probe or remove) and probes if the device is unbound then
    /// (`__driver_probe_device()`: -EBUSY when `dev->driver` is set). The caller waits for
    /// the lock and checks again; a device being deleted is the caller's to leave out
    /// (`bus_remove_device()` takes it off the bus's list before releasing its driver). From 5.19 a registration extends
    /// a timeout still pending (`deferred_probe_extend_timeout()`).
    pub fn register_driver(&mut self, k: &mut Kernel, drv: DrvId) -> Result<Vec<DevId>, Errno> {
        if self.is_registered(drv) {
            // driver_register(): "Driver '%s' is already registered, aborting..."
            let name = self.drivers[drv].name.clone();
            k.printk(format!(
                "Error: Driver '{name}' is already registered, aborting..."
            ));
            return Err(Errno::EBUSY);
        }
        let m = self.drivers[drv].module;
        if !matches!(k.state(m), Some(ModState::Coming | ModState::Live)) {
            k.violations.push(format!(
                "driver {} registered while its module {} is not coming or live",
                self.drivers[drv].name,
                k.name(m)
            ));
        }
        self.registered.push(drv);
        if crate::dd::registration_extends_timeout(k.policy) {
            if let (Some(_), Some(t)) = (self.timeout_due, self.timeout) {
                if t > 0 {
                    self.timeout_due = Some(k.now.saturating_add(t));
                }
            }
        }
        Ok(self
            .added
            .iter()
            .copied()
            .filter(|&d| match self.devices[d].state {
                DevState::Unbound => {
                    self.matches(drv, d)
                        || (self.drivers[drv].bus == self.devices[d].bus && self.match_defers(k, d))
                }
                // In flight: a plain match waits for the lock (a deferring match of a
                // device in flight is left out: the model has no pending-list add for it).
                DevState::Probing(_) | DevState::Removing(_) => {
                    self.matches(drv, d) && !self.match_defers(k, d)
                }
                _ => false,
            })
            .collect())
    }

    /// `driver_detach()`'s list: the devices bound to `drv`, newest first.
    pub fn bound_to(&self, drv: DrvId) -> Vec<DevId> {
        self.added
            .iter()
            .rev()
            .copied()
            .filter(|&d| self.devices[d].state == DevState::Bound(drv))
            .collect()
    }

    /// `bus_remove_driver()`'s end: the driver leaves the bus.
    pub fn unregister_driver(&mut self, drv: DrvId) {
        self.detaching.remove(&drv);
        self.registered.retain(|&d| d != drv);
    }

    /// `device_add()`: the device becomes present and unbound. EEXIST if present already
    /// (sysfs refuses a duplicate name).
    pub fn add_device(&mut self, dev: DevId) -> Result<(), Errno> {
        if self.present(dev) {
            return Err(Errno::EEXIST);
        }
        let d = &mut self.devices[dev];
        d.state = DevState::Unbound;
        d.defer_reason = None;
        d.kernel_reason = None;
        d.failed = None;
        self.added.push(dev);
        Ok(())
    }

    /// `device_del()`'s end, after the driver is released: the device is gone.
    pub fn del_device(&mut self, k: &mut Kernel, dev: DevId) {
        if matches!(
            self.devices[dev].state,
            DevState::Bound(_) | DevState::Probing(_) | DevState::Removing(_)
        ) {
            k.violations.push(format!(
                "device {} deleted while a driver is bound",
                self.devices[dev].name
            ));
        }
        self.devices[dev].state = DevState::Absent;
        self.devices[dev].suppliers.clear();
        self.added.retain(|&d| d != dev);
        self.pending.retain(|&d| d != dev);
        self.active.retain(|&d| d != dev);
    }

    /// `really_probe()`'s start: false when the device is not present and unbound (the
    /// kernel skips a device already bound, "already claimed"). A driver whose module is
    /// not COMING or LIVE is a broken invariant, except GOING under `linux-X.Y` (the
    /// kernel's window, [`crate::going`]), which is allowed and named in a remark.
    pub fn probe_begin(&mut self, k: &mut Kernel, dev: DevId, drv: DrvId) -> bool {
        if self.devices[dev].state != DevState::Unbound {
            return false;
        }
        let m = self.drivers[drv].module;
        if !self.is_registered(drv) {
            k.violations.push(format!(
                "probe of {} by driver {} that is not registered",
                self.devices[dev].name, self.drivers[drv].name
            ));
        }
        let going_ok = crate::going::probes_while_going(k.policy);
        if k.state(m) == Some(ModState::Going) && going_ok {
            // The kernel's window (crate::going): allowed under linux-X.Y, and named.
            let text = format!(
                "probe of {} by driver {} runs code of module {} on its way out (GOING: its exit has begun and its driver_unregister() will unbind the device)",
                self.devices[dev].name,
                self.drivers[drv].name,
                k.name(m)
            );
            k.remark(Some(m), text);
        } else if !matches!(k.state(m), Some(ModState::Coming | ModState::Live)) {
            k.violations.push(format!(
                "probe of {} by driver {} while module {} is {}",
                self.devices[dev].name,
                self.drivers[drv].name,
                k.name(m),
                k.state(m).map_or("absent", |s| s.name())
            ));
        }
        if self.devres.held_by(dev) > 0 {
            // really_probe(): WARN_ON(!list_empty(&dev->devres_head))
            k.violations.push(format!(
                "probe of {} with managed resources still held",
                self.devices[dev].name
            ));
        }
        let tc = self.trigger_count;
        let d = &mut self.devices[dev];
        d.state = DevState::Probing(drv);
        d.trigger_at_probe = tc;
        // What this probe defers on, if it does (a need sets it again).
        d.defer_key = None;
        true
    }

    /// `driver_deferred_probe_trigger()`: the pending list moves to the active list.
    pub fn trigger(&mut self) {
        self.trigger_count += 1;
        let p = std::mem::take(&mut self.pending);
        self.active.extend(p);
    }

    /// `really_probe()`'s end with the probe's result: binds, defers or fails as the era
    /// does, printing what it prints, releasing managed resources on failure.
    pub fn probe_end(
        &mut self,
        k: &mut Kernel,
        dev: DevId,
        drv: DrvId,
        result: Result<(), Errno>,
    ) -> ProbeEnd {
        if self.devices[dev].state != DevState::Probing(drv) {
            k.violations.push(format!(
                "probe of {} by {} ended while the device was {:?}",
                self.devices[dev].name, self.drivers[drv].name, self.devices[dev].state
            ));
        }
        match result {
            Ok(()) => {
                let d = &mut self.devices[dev];
                d.state = DevState::Bound(drv);
                d.match_deferred = false;
                d.defer_reason = None;
                d.kernel_reason = None;
                d.failed = None;
                self.pending.retain(|&x| x != dev);
                self.active.retain(|&x| x != dev);
                self.trigger();
                ProbeEnd::Bound { trigger: true }
            }
            Err(e) => {
                self.release_devres(k, dev);
                let d = &mut self.devices[dev];
                d.state = DevState::Unbound;
                d.suppliers.clear();
                if e == Errno::EPROBE_DEFER {
                    d.match_deferred = false;
                    if d.defer_reason.is_none() {
                        d.defer_reason =
                            Some(format!("{} returned -EPROBE_DEFER", self.drivers[drv].name));
                    }
                    let changed = d.trigger_at_probe != self.trigger_count;
                    if !self.pending.contains(&dev) && !self.active.contains(&dev) {
                        self.pending.push(dev);
                    }
                    if changed {
                        self.trigger();
                    }
                    return ProbeEnd::Deferred { trigger: changed };
                }
                d.failed = Some((drv, e));
                let name = d.name.clone();
                if std::mem::take(&mut d.match_deferred) {
                    // 4.5–5.19: driver_deferred_probe_add() ran before the probe, and a
                    // failed probe does not take the device off the pending list.
                } else {
                    d.defer_reason = None;
                    self.pending.retain(|&x| x != dev);
                }
                if let Some(line) =
                    crate::dd::probe_failed_line(k.policy, &self.drivers[drv].name, &name, e)
                {
                    k.printk(line);
                }
                ProbeEnd::Failed
            }
        }
    }

    /// A probe needs `key` (a registration `kind:name`, or `device:NAME`, a device that
    /// must be bound, to which a managed device link is made). `optional`: the driver asks
    /// `driver_deferred_probe_check_state()`, which gives up after the timeout.
    /// `reason`: what the driver passes to `dev_err_probe()`.
    pub fn need(
        &mut self,
        k: &mut Kernel,
        dev: DevId,
        key: &str,
        optional: bool,
        reason: Option<&str>,
    ) -> Result<(), Errno> {
        let supplier = key
            .strip_prefix("device:")
            .and_then(|n| self.find_device(n));
        if self.key_ready(k, key) {
            if let Some(s) = supplier {
                if !self.devices[dev].suppliers.contains(&s) {
                    self.devices[dev].suppliers.push(s);
                }
            }
            return Ok(());
        }
        if optional && crate::dd::has_check_state(k.policy) && self.timeout == Some(0) {
            let prefix = self.prefix(dev);
            k.printk(crate::dd::check_state_timeout_line(&prefix));
            return Err(Errno::ETIMEDOUT);
        }
        let d = &mut self.devices[dev];
        d.defer_reason = Some(format!("waits for {key}"));
        d.defer_key = Some(key.to_string());
        d.kernel_reason = reason.map(|r| r.to_string());
        Err(Errno::EPROBE_DEFER)
    }

    /// Whether some declared driver of `bus` matches `modalias` (a device that could bind).
    pub fn any_driver_matches(&self, bus: &str, modalias: Option<&str>) -> bool {
        let Some(m) = modalias else { return false };
        self.drivers
            .iter()
            .zip(&self.patterns)
            .any(|(d, p)| d.bus == bus && p.iter().any(|p| p.matches(m)))
    }

    /// `dev_driver_string(dev) dev_name(dev)`: the prefix of `dev_*()` lines.
    pub fn prefix(&self, dev: DevId) -> String {
        let d = &self.devices[dev];
        let s = match d.state {
            DevState::Probing(x) | DevState::Bound(x) | DevState::Removing(x) => {
                self.drivers[x].name.as_str()
            }
            _ => d.bus.as_str(),
        };
        format!("{s} {}", d.name)
    }

    /// `device_links_unbind_consumers()`: the bound consumers of `dev`, to unbind first.
    pub fn consumers_of(&self, dev: DevId) -> Vec<DevId> {
        self.added
            .iter()
            .rev()
            .copied()
            .filter(|&c| {
                self.devices[c].suppliers.contains(&dev)
                    && matches!(self.devices[c].state, DevState::Bound(_))
            })
            .collect()
    }

    /// `__device_release_driver()` before the remove callback: the driver bound, if any.
    pub fn remove_begin(&mut self, k: &mut Kernel, dev: DevId) -> Option<DrvId> {
        let DevState::Bound(drv) = self.devices[dev].state else {
            return None;
        };
        let m = self.drivers[drv].module;
        if !self.is_registered(drv) || k.state(m).is_none() {
            k.violations.push(format!(
                "remove of {} by driver {} whose module {} is gone",
                self.devices[dev].name,
                self.drivers[drv].name,
                k.name(m)
            ));
        }
        self.devices[dev].state = DevState::Removing(drv);
        Some(drv)
    }

    /// `__device_release_driver()` after the remove callback: `devres_release_all()`,
    /// the links it made as a consumer go, the device is unbound.
    pub fn remove_end(&mut self, k: &mut Kernel, dev: DevId) {
        self.release_devres(k, dev);
        let d = &mut self.devices[dev];
        d.state = DevState::Unbound;
        d.suppliers.clear();
    }

    /// `devm_*()`: a managed resource of the device being probed; a `kind:name`
    /// resource registers that name for the driver's module.
    pub fn devm(&mut self, k: &mut Kernel, dev: DevId, name: &str) -> Result<(), Errno> {
        let DevState::Probing(drv) = self.devices[dev].state else {
            return Err(Errno::EINVAL);
        };
        if name.contains(':') {
            k.register(self.drivers[drv].module, name)?;
        }
        self.devres.add(dev, name);
        Ok(())
    }

    fn release_devres(&mut self, k: &mut Kernel, dev: DevId) {
        if matches!(self.devices[dev].state, DevState::Bound(_)) {
            k.violations.push(format!(
                "managed resources of {} released while it is bound (before remove)",
                self.devices[dev].name
            ));
        }
        for (_, r) in self.devres.release_all(dev) {
            if r.name.contains(':') {
                let _ = k.unregister(&r.name);
            }
        }
    }

    /// Checks that no device is bound to a driver whose module is gone or that is no
    /// longer registered (a driver must be unbound before its module can go).
    pub fn check_bound(&self, k: &mut Kernel) {
        for d in &self.devices {
            if let DevState::Bound(x) | DevState::Probing(x) | DevState::Removing(x) = d.state {
                let m = self.drivers[x].module;
                if k.state(m).is_none() || !self.is_registered(x) {
                    k.violations.push(format!(
                        "device {} still bound to driver {} after module {} went away",
                        d.name,
                        self.drivers[x].name,
                        k.name(m)
                    ));
                }
            }
        }
    }

    /// Checks that no resource was released twice (the property tests call it at the end).
    pub fn check_devres(&self, k: &mut Kernel) {
        for (id, n) in &self.devres.releases {
            if *n != 1 {
                k.violations
                    .push(format!("managed resource {id} released {n} times"));
            }
        }
    }

    /// The timeout work is due at `now`: `driver_deferred_probe_timeout = 0` and the
    /// pending list moves to the active list (the caller retries it, then calls
    /// [`DeviceModel::timeout_report`]). False when the work is not due (extended).
    pub fn timeout_fire(&mut self, now: Time) -> bool {
        match self.timeout_due {
            Some(d) if d <= now => {
                self.timeout_due = None;
                self.timeout = Some(0);
                self.trigger();
                true
            }
            _ => false,
        }
    }

    /// The lines `deferred_probe_timeout_work_func()` prints for devices still pending.
    pub fn timeout_report(&self, k: &mut Kernel) {
        let policy = k.policy;
        for &d in &self.pending {
            let line = crate::dd::pending_line(
                policy,
                &self.prefix(d),
                self.devices[d].kernel_reason.as_deref(),
            );
            k.printk(line);
        }
    }

    /// Device `i`'s state word (`bound`, `deferred`, `unbound`, `probing`, `removing`,
    /// `absent`) and its driver, as the table shows them.
    pub fn state_of(&self, i: DevId) -> (&'static str, Option<DrvId>) {
        match self.devices[i].state {
            DevState::Absent => ("absent", None),
            DevState::Unbound if self.pending.contains(&i) || self.active.contains(&i) => {
                ("deferred", None)
            }
            DevState::Unbound => ("unbound", None),
            DevState::Probing(x) => ("probing", Some(x)),
            DevState::Bound(x) => ("bound", Some(x)),
            DevState::Removing(x) => ("removing", Some(x)),
        }
    }

    /// The report's device table, in declaration order.
    pub fn table(&self) -> Vec<DeviceRow> {
        self.devices
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let (state, driver) = self.state_of(i);
                let reason = if state == "deferred" {
                    d.defer_reason.clone()
                } else {
                    d.failed.map(|(x, e)| {
                        format!("probe by {} failed with {}", self.drivers[x].name, e.name())
                    })
                };
                DeviceRow {
                    device: d.name.clone(),
                    bus: d.bus.clone(),
                    driver: driver.map(|x| self.drivers[x].name.clone()),
                    state,
                    reason,
                }
            })
            .collect()
    }

    /// The state word of device `name` as expectations write it: `bound:DRIVER`,
    /// `deferred`, `unbound`, `absent` (`None` for an unknown name).
    pub fn state_word(&self, name: &str) -> Option<String> {
        let row = self.table().into_iter().find(|r| r.device == name)?;
        Some(match (row.state, row.driver) {
            ("bound", Some(d)) => format!("bound:{d}"),
            (s, _) => s.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ModuleDb, ModuleSpec};

    fn kernel(policy: &str) -> Kernel {
        let db = ModuleDb::new(vec![ModuleSpec::new("a"), ModuleSpec::new("b")]).unwrap();
        let mut k = Kernel::new(db, policy.parse().unwrap());
        for m in 0..2 {
            k.instances[m] = Some(crate::kernel::Instance {
                state: ModState::Live,
                refcount: 0,
                holders: Default::default(),
                targets: Default::default(),
                progress: 0,
                owner_task: None,
                draining: false,
            });
        }
        k
    }

    fn model(k: &Kernel) -> DeviceModel {
        let drivers = vec![
            DriverSpec {
                name: "da".into(),
                bus: "platform".into(),
                module: 0,
                patterns: vec!["platform:x*".into()],
            },
            DriverSpec {
                name: "db".into(),
                bus: "platform".into(),
                module: 1,
                patterns: vec!["platform:x1".into()],
            },
        ];
        DeviceModel::new(drivers, crate::dd::default_timeout(k.policy))
    }

    #[test]
    fn a_failed_probe_prints_and_lets_the_next_driver_try() {
        let mut k = kernel("linux-6.1");
        let mut m = model(&k);
        let x = m.declare("x1", "platform", Some("platform:x1".into()));
        m.add_device(x).unwrap();
        assert!(m.register_driver(&mut k, 0).unwrap().contains(&x));
        m.register_driver(&mut k, 1).unwrap();
        assert_eq!(m.drivers_for(x), vec![0, 1]);
        assert!(m.probe_begin(&mut k, x, 0));
        assert_eq!(
            m.probe_end(&mut k, x, 0, Err(Errno::ENOMEM)),
            ProbeEnd::Failed
        );
        assert_eq!(k.log[0].text, "da: probe of x1 failed with error -12");
        assert!(m.probe_begin(&mut k, x, 1));
        m.probe_end(&mut k, x, 1, Ok(()));
        assert_eq!(m.state_word("x1").unwrap(), "bound:db");
        assert!(k.violations.is_empty());
    }

    /// The GOING window (crate::going): a probe with a driver whose module's exit has begun
    /// is the kernel's behaviour under linux-X.Y (a remark, no violation) and a broken
    /// invariant under modkit; a module already gone is a violation under both.
    #[test]
    fn a_probe_while_the_module_is_going_is_linux_only() {
        for (policy, allowed) in [("linux-4.4", true), ("linux-6.12", true), ("modkit", false)] {
            let mut k = kernel(policy);
            let mut m = model(&k);
            let x = m.declare("x1", "platform", Some("platform:x1".into()));
            m.register_driver(&mut k, 0).unwrap();
            m.add_device(x).unwrap();
            k.instances[0].as_mut().unwrap().state = ModState::Going;
            assert!(m.probe_begin(&mut k, x, 0));
            m.probe_end(&mut k, x, 0, Ok(()));
            assert_eq!(
                k.violations.is_empty(),
                allowed,
                "{policy}: {:?}",
                k.violations
            );
            let remark = k
                .diagnostics
                .iter()
                .any(|d| d.kind == crate::DiagKind::Remark && d.message.contains("on its way out"));
            assert_eq!(remark, allowed, "{policy}");
            // Under linux the remark stays out of the kernel log.
            assert!(k.log.iter().all(|l| !l.text.contains("on its way out")));
            // The remove in the exit's driver_unregister() is fine under every policy.
            let before = k.violations.len();
            assert_eq!(m.remove_begin(&mut k, x), Some(0));
            m.remove_end(&mut k, x);
            assert_eq!(k.violations.len(), before, "{policy}: {:?}", k.violations);
            // Gone: a probe is a violation under every policy.
            k.instances[0] = None;
            assert!(m.probe_begin(&mut k, x, 0));
            assert!(k.violations.len() > before, "{policy}");
        }
    }

    #[test]
    fn a_deferral_waits_on_the_pending_list_until_a_bind_triggers() {
        let mut k = kernel("linux-6.12");
        let mut m = model(&k);
        let x = m.declare("x1", "platform", Some("platform:x1".into()));
        let y = m.declare("x2", "platform", Some("platform:x2".into()));
        m.add_device(x).unwrap();
        m.add_device(y).unwrap();
        m.register_driver(&mut k, 0).unwrap();
        m.probe_begin(&mut k, x, 0);
        assert_eq!(
            m.need(&mut k, x, "device:x2", false, Some("no x2")),
            Err(Errno::EPROBE_DEFER)
        );
        m.probe_end(&mut k, x, 0, Err(Errno::EPROBE_DEFER));
        assert_eq!(m.state_word("x1").unwrap(), "deferred");
        m.probe_begin(&mut k, y, 0);
        assert_eq!(
            m.probe_end(&mut k, y, 0, Ok(())),
            ProbeEnd::Bound { trigger: true }
        );
        assert_eq!(m.active.iter().copied().collect::<Vec<_>>(), vec![x]);
        m.active.clear();
        m.probe_begin(&mut k, x, 0);
        m.need(&mut k, x, "device:x2", false, None).unwrap();
        m.probe_end(&mut k, x, 0, Ok(()));
        assert_eq!(m.consumers_of(y), vec![x]);
        assert!(k.log.is_empty());
    }

    #[test]
    fn the_timeout_reports_pending_devices_and_gives_up_optional_suppliers() {
        let mut k = kernel("linux-6.12");
        let mut m = model(&k);
        let x = m.declare("x1", "platform", Some("platform:x1".into()));
        m.add_device(x).unwrap();
        m.register_driver(&mut k, 0).unwrap();
        assert_eq!(m.timeout_due, Some(10 * crate::kernel::SEC));
        m.probe_begin(&mut k, x, 0);
        let _ = m.need(&mut k, x, "regulator:vdd", true, None);
        m.probe_end(&mut k, x, 0, Err(Errno::EPROBE_DEFER));
        assert!(!m.timeout_fire(5 * crate::kernel::SEC));
        assert!(m.timeout_fire(10 * crate::kernel::SEC));
        m.active.clear();
        m.pending.push(x);
        m.timeout_report(&mut k);
        assert_eq!(
            k.log[0].text,
            "platform x1: deferred probe pending: (reason unknown)"
        );
        m.pending.clear();
        m.probe_begin(&mut k, x, 0);
        assert_eq!(
            m.need(&mut k, x, "regulator:vdd", true, None),
            Err(Errno::ETIMEDOUT)
        );
        assert_eq!(
            k.log[1].text,
            "da x1: deferred probe timeout, ignoring dependency"
        );
    }

    #[test]
    fn devres_goes_after_remove_and_once() {
        let mut k = kernel("modkit");
        let mut m = model(&k);
        let x = m.declare("x1", "platform", Some("platform:x1".into()));
        m.add_device(x).unwrap();
        m.register_driver(&mut k, 0).unwrap();
        m.probe_begin(&mut k, x, 0);
        m.devm(&mut k, x, "misc:x").unwrap();
        m.probe_end(&mut k, x, 0, Ok(()));
        assert!(k.registrations.contains_key("misc:x"));
        assert_eq!(m.remove_begin(&mut k, x), Some(0));
        m.remove_end(&mut k, x);
        assert!(!k.registrations.contains_key("misc:x"));
        m.check_devres(&mut k);
        assert!(k.violations.is_empty());
    }
}
