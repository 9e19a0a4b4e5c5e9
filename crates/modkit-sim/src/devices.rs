//! The device model in scenario files: `[[bus]]`, `[[module.driver]]`, `[[device]]`,
//! `udev`, `deferred_probe_timeout`, the device actions (`add_device`, `remove_device`,
//! `need`, `devm`) and events (`add_device`, `remove_device`, `bind`, `unbind`), and the
//! `devices` expectation (docs/scenario-format.md, "Devices"). The rules live in
//! `modkit_core::device`; the simulator runs them (`crate::sim`, `sim/devices.rs`).

use serde::Deserialize;
use toml::Spanned;

use modkit_core::device::{DriverSpec, BUILTIN_BUSES};
use modkit_core::{ModuleDb, Time};

use crate::scenario::Action;

/// `[[bus]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBus {
    /// The bus's name.
    pub name: String,
}

/// `[[device]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDevice {
    /// `dev_name()`.
    pub name: String,
    /// Its bus.
    pub bus: String,
    /// The modalias its uevent announces (auxiliary devices: derived from the name).
    pub modalias: Option<String>,
    /// Present at boot (default true); false: added by an `add_device` event.
    pub boot: Option<bool>,
    /// Copies `name0` … `nameN-1` (288 CPUs: `name = "cpu"`, `count = 288`).
    pub count: Option<u32>,
    /// Its suppliers in the firmware description (fw_devlink's fwnode links): names of
    /// other `[[device]]`s.
    pub suppliers: Option<Vec<String>>,
    /// Its fwnode's full name as `%pfwf` prints it (default `/NAME`).
    pub fwnode: Option<String>,
    /// The bus's match of it returns -EPROBE_DEFER until this (`kind:name`, or
    /// `device:NAME` bound) is there (modkit_core::matchdefer).
    pub match_defer: Option<String>,
}

/// `udev = { workers = N, event_timeout = "180s" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUdev {
    /// `children_max` (default: systemd's, 2 × CPUs + 16, at most 2048).
    pub workers: Option<u32>,
    /// `event_timeout` (default 180 s).
    pub event_timeout: Option<String>,
}

/// `[[module.driver]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDriver {
    /// `drv->name` (default: the module's name).
    pub name: Option<String>,
    /// The bus.
    pub bus: String,
    /// Modalias patterns of the id table.
    #[serde(rename = "match", default)]
    pub match_: Vec<String>,
    /// The probe body.
    #[serde(default)]
    pub probe: Vec<Spanned<crate::raw::RawAction>>,
    /// The remove body.
    #[serde(default)]
    pub remove: Vec<Spanned<crate::raw::RawAction>>,
    /// `drv->probe_type`: `"sync"` (default) or `"async"` (PROBE_PREFER_ASYNCHRONOUS).
    pub probe_type: Option<String>,
}

/// The body a probe runs behind fw_devlink's enforced links: a `need` of each supplier link
/// (`device:NAME`), then the driver's own probe body.
pub fn probe_behind_links(links: Vec<String>, probe: &[Action]) -> Vec<Action> {
    let mut l: Vec<Action> = links
        .into_iter()
        .map(|key| {
            Action::Device(DeviceAction::Need {
                key,
                optional: false,
                reason: None,
            })
        })
        .collect();
    l.extend(probe.iter().cloned());
    l
}

/// A device action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceAction {
    /// `device_add()` of a new device (`auxiliary_device_add()` when the bus is `auxiliary`).
    Add {
        /// Name.
        name: String,
        /// Bus.
        bus: String,
        /// Modalias.
        modalias: Option<String>,
    },
    /// `device_unregister()`.
    Remove(String),
    /// The probe needs a supplier: a registration `kind:name` or `device:NAME`.
    Need {
        /// What.
        key: String,
        /// Through `driver_deferred_probe_check_state()`.
        optional: bool,
        /// `dev_err_probe()`'s message.
        reason: Option<String>,
    },
    /// A managed resource of the device being probed.
    Devm(String),
    /// A user of a device's managed resource for a while (an ioctl in flight:
    /// `Revocable::try_access()`, modkit_core::revocable).
    UseDevres {
        /// The resource's name (`devm = "…"`).
        name: String,
        /// How long the access lasts.
        dur: Time,
    },
}

/// A device event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceEvent {
    /// Hot-plug a declared device.
    Add(String),
    /// Unplug a device.
    Remove(String),
    /// `echo DEV > /sys/bus/BUS/drivers/DRV/bind`.
    Bind {
        /// Device.
        device: String,
        /// Driver.
        driver: String,
    },
    /// `echo DEV > /sys/bus/BUS/drivers/DRV/unbind`.
    Unbind(String),
}

/// A driver with its bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverDecl {
    /// What the core knows.
    pub spec: DriverSpec,
    /// Probe body.
    pub probe: Vec<Action>,
    /// Remove body.
    pub remove: Vec<Action>,
    /// `probe_type = "async"`: probed by async workers.
    pub async_probe: bool,
}

/// A declared device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceDecl {
    /// Name.
    pub name: String,
    /// Bus.
    pub bus: String,
    /// Modalias.
    pub modalias: Option<String>,
    /// Present at boot.
    pub boot: bool,
    /// Firmware-described suppliers (fw_devlink), by device name.
    pub suppliers: Vec<String>,
    /// Its fwnode's full name, if the file gives it.
    pub fwnode: Option<String>,
    /// What its bus's match waits for (modkit_core::matchdefer), if anything.
    pub match_defer: Option<String>,
}

/// udevd's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Udev {
    /// Workers at once (`children_max`).
    pub workers: u32,
    /// A worker still busy after this long is killed (`event_timeout`).
    pub event_timeout: Time,
}

/// Everything about devices in a scenario.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceSetup {
    /// Every bus (the builtin ones, then `[[bus]]`).
    pub buses: Vec<String>,
    /// Drivers, in declaration order.
    pub drivers: Vec<DriverDecl>,
    /// Devices, in declaration order.
    pub devices: Vec<DeviceDecl>,
    /// udevd, when set.
    pub udev: Option<Udev>,
    /// `deferred_probe_timeout` when given: `None` = -1 (no timeout).
    pub timeout: Option<Option<Time>>,
    /// The file uses the device model at all.
    pub used: bool,
}

/// An error with the offset it is about, when known.
pub(crate) type Located = (Option<usize>, String);

/// Parses a probe or remove body.
pub(crate) type ParseBody<'a> =
    dyn Fn(&[Spanned<crate::raw::RawAction>]) -> Result<Vec<Action>, Located> + 'a;

/// The step name of the implicit `driver_register()` appended to a module's init.
pub fn register_step_name(driver: &str) -> String {
    format!("driver_register({driver})")
}

/// Checks a module's `[[module.driver]]` tables: adds their patterns to the module's
/// aliases (`MODULE_DEVICE_TABLE`) and, for each driver whose registration the init table
/// does not write itself (`register = "driver:NAME"`), appends the step that
/// `module_driver()` makes: `driver_register()`, undone by `driver_unregister()`.
/// Returns the drivers with their bodies (module id filled in later).
pub(crate) fn module_drivers(
    module: &str,
    raw: &[Spanned<RawDriver>],
    aliases: &mut Vec<String>,
    steps: &mut Vec<crate::scenario::Step>,
    init: &mut Vec<modkit_core::InitStepSpec>,
    builtin: bool,
    parse: &ParseBody<'_>,
) -> Result<Vec<(String, DriverDecl)>, Located> {
    let mut out = Vec::new();
    for (i, d) in raw.iter().enumerate() {
        let rd = d.get_ref();
        let name = rd.name.clone().unwrap_or_else(|| module.to_string());
        let at = Some(d.span().start);
        if name.is_empty() {
            return Err((at, format!("driver {}: `name` is empty", i + 1)));
        }
        for p in &rd.match_ {
            if let Err(e) = modkit_core::device::valid_pattern(p) {
                return Err((
                    at,
                    format!("driver `{name}`: `match` pattern `{p}` is not a valid glob: {e}"),
                ));
            }
            if !aliases.contains(p) {
                aliases.push(p.clone());
            }
        }
        let probe =
            parse(&rd.probe).map_err(|(a, m)| (a, format!("driver `{name}` probe: {m}")))?;
        let remove =
            parse(&rd.remove).map_err(|(a, m)| (a, format!("driver `{name}` remove: {m}")))?;
        let async_probe = match rd.probe_type.as_deref() {
            None | Some("sync") => false,
            Some("async") => true,
            Some(o) => {
                return Err((
                    at,
                    format!("driver `{name}`: `probe_type` is \"sync\" or \"async\", not `{o}`"),
                ))
            }
        };
        let key = format!("driver:{name}");
        let written = steps.iter().any(|s| {
            s.run
                .iter()
                .any(|a| matches!(a, Action::Register(k) if *k == key))
        });
        if !written && !builtin {
            init.push(modkit_core::InitStepSpec {
                name: register_step_name(&name),
                has_undo: true,
            });
            steps.push(crate::scenario::Step {
                name: register_step_name(&name),
                run: vec![Action::Register(key.clone())],
                undo: Some(vec![Action::Unregister(key)]),
            });
        }
        out.push((
            module.to_string(),
            DriverDecl {
                spec: DriverSpec {
                    name,
                    bus: rd.bus.clone(),
                    module: usize::MAX,
                    patterns: rd.match_.clone(),
                },
                probe,
                remove,
                async_probe,
            },
        ));
    }
    Ok(out)
}

/// Checks buses, devices and drivers together and completes the setup. Errors carry the
/// offset of what they are about.
pub(crate) fn finish(
    raw_buses: &[Spanned<RawBus>],
    raw_devices: &[Spanned<RawDevice>],
    udev: &Option<Spanned<RawUdev>>,
    timeout: &Option<Spanned<i64>>,
    drivers: Vec<(String, DriverDecl, usize)>,
    db: &ModuleDb,
) -> Result<DeviceSetup, (usize, String)> {
    let mut s = DeviceSetup {
        buses: BUILTIN_BUSES.iter().map(|b| b.to_string()).collect(),
        ..Default::default()
    };
    for b in raw_buses {
        let n = &b.get_ref().name;
        if n.is_empty() || s.buses.contains(n) {
            return Err((
                b.span().start,
                format!(
                    "[[bus]] `{n}`: a bus needs a new, non-empty name (builtin: {})",
                    BUILTIN_BUSES.join(", ")
                ),
            ));
        }
        s.buses.push(n.clone());
    }
    let bus_ok = |bus: &str| -> Result<(), String> {
        if s.buses.iter().any(|b| b == bus) {
            Ok(())
        } else {
            Err(format!(
                "no bus is named `{bus}`: use one of {} or declare it with [[bus]]",
                s.buses.join(", ")
            ))
        }
    };
    for (module, mut d, off) in drivers {
        bus_ok(&d.spec.bus)
            .map_err(|e| (off, format!("[[module.driver]] `{}`: {e}", d.spec.name)))?;
        if s.drivers.iter().any(|x| x.spec.name == d.spec.name) {
            return Err((
                off,
                format!(
                    "[[module.driver]] `{}`: two drivers have this name",
                    d.spec.name
                ),
            ));
        }
        d.spec.module = db.id(&module).expect("module parsed");
        s.drivers.push(d);
    }
    for rd in raw_devices {
        let d = rd.get_ref();
        let off = rd.span().start;
        bus_ok(&d.bus).map_err(|e| (off, format!("[[device]] `{}`: {e}", d.name)))?;
        let names: Vec<String> = match d.count {
            None => vec![d.name.clone()],
            Some(0) => {
                return Err((
                    off,
                    format!("[[device]] `{}`: `count` must be at least 1", d.name),
                ))
            }
            Some(n) if n > 100_000 => {
                return Err((
                    off,
                    format!("[[device]] `{}`: `count` is at most 100000", d.name),
                ))
            }
            Some(n) => (0..n).map(|i| format!("{}{i}", d.name)).collect(),
        };
        for name in names {
            if name.is_empty() || s.devices.iter().any(|x| x.name == name) {
                return Err((
                    off,
                    format!("[[device]] `{name}`: a device needs a new, non-empty name"),
                ));
            }
            let modalias = match (&d.modalias, d.bus.as_str()) {
                (Some(m), _) => Some(m.clone()),
                (None, "auxiliary") => {
                    if !modkit_core::auxiliary::valid_name(&name) {
                        return Err((off, format!("[[device]] `{name}`: an auxiliary device is named `modname.devname.id`")));
                    }
                    modkit_core::auxiliary::modalias(&name)
                }
                (None, _) => None,
            };
            s.devices.push(DeviceDecl {
                name,
                bus: d.bus.clone(),
                modalias,
                boot: d.boot.unwrap_or(true),
                suppliers: d.suppliers.clone().unwrap_or_default(),
                fwnode: d.fwnode.clone(),
                match_defer: d.match_defer.clone(),
            });
        }
    }
    for rd in raw_devices {
        let d = rd.get_ref();
        if let Some(key) = &d.match_defer {
            if !key
                .split_once(':')
                .is_some_and(|(k, n)| !k.is_empty() && !n.is_empty())
            {
                return Err((
                    rd.span().start,
                    format!(
                        "[[device]] `{}`: `match_defer = \"{key}\"`: write `kind:name` (a registration) or `device:NAME` (a device that must be bound)",
                        d.name
                    ),
                ));
            }
        }
        for sup in d.suppliers.iter().flatten() {
            if !s.devices.iter().any(|x| &x.name == sup) {
                return Err((
                    rd.span().start,
                    format!(
                        "[[device]] `{}`: `suppliers` names `{sup}`, which no [[device]] declares \
                         (declare it, with `boot = false` if it comes later)",
                        d.name
                    ),
                ));
            }
        }
    }
    if let Some(u) = udev {
        let r = u.get_ref();
        // systemd-udevd's default (udevd.c, manager_set_default_children_max()):
        // MIN(2 × CPUs + 16, MAX(memory / 128 MiB, 10), WORKER_NUM_MAX = 2048); the CPUs
        // are the scenario's `cpu` devices (at least 1), memory is taken as large enough.
        let cpus = s.devices.iter().filter(|d| d.bus == "cpu").count().max(1) as u32;
        let workers = r.workers.unwrap_or_else(|| (2 * cpus + 16).min(2048));
        if workers == 0 {
            return Err((
                u.span().start,
                "key `udev`: `workers` must be at least 1".into(),
            ));
        }
        let event_timeout = match &r.event_timeout {
            Some(t) => crate::duration::parse_duration(t)
                .map_err(|e| (u.span().start, format!("key `udev`: `event_timeout`: {e}")))?,
            None => 180 * modkit_core::SEC,
        };
        s.udev = Some(Udev {
            workers,
            event_timeout,
        });
    }
    if let Some(t) = timeout {
        let v = *t.get_ref();
        if !(-1..=1_000_000).contains(&v) {
            return Err((
                t.span().start,
                "key `deferred_probe_timeout`: seconds from -1 (none) to 1000000".into(),
            ));
        }
        s.timeout = Some((v >= 0).then(|| v as u64 * modkit_core::SEC));
    }
    s.used = !s.drivers.is_empty()
        || !s.devices.is_empty()
        || s.udev.is_some()
        || timeout.is_some()
        || !raw_buses.is_empty();
    Ok(s)
}

/// Parses a device action (`verb` one of add_device, remove_device, need, devm, use_devres).
pub(crate) fn action(
    a: &crate::raw::RawAction,
    verb: &str,
    in_probe: bool,
) -> Result<Action, String> {
    let probe_only = |v: &str| -> Result<(), String> {
        if in_probe {
            Ok(())
        } else {
            Err(format!(
                "`{v}` belongs in a driver's `probe` (it acts on the device being probed)"
            ))
        }
    };
    Ok(Action::Device(match verb {
        "add_device" => {
            let name = a.add_device.clone().expect("verb");
            let bus = a.bus.clone().ok_or("`add_device` needs `bus = \"…\"`")?;
            let modalias = match (&a.modalias, bus.as_str()) {
                (Some(m), _) => Some(m.clone()),
                (None, "auxiliary") => {
                    if !modkit_core::auxiliary::valid_name(&name) {
                        return Err(format!(
                            "an auxiliary device is named `modname.devname.id`, not `{name}`"
                        ));
                    }
                    modkit_core::auxiliary::modalias(&name)
                }
                (None, _) => None,
            };
            DeviceAction::Add {
                name,
                bus,
                modalias,
            }
        }
        "remove_device" => DeviceAction::Remove(a.remove_device.clone().expect("verb")),
        "need" => {
            probe_only("need")?;
            let key = a.need.clone().expect("verb");
            if !key.contains(':') {
                return Err(format!(
                    "`need = \"{key}\"`: write `kind:name` (a registration) or `device:NAME`"
                ));
            }
            DeviceAction::Need {
                key,
                optional: a.optional.unwrap_or(false),
                reason: a.reason.clone(),
            }
        }
        "devm" => {
            probe_only("devm")?;
            DeviceAction::Devm(a.devm.clone().expect("verb"))
        }
        "use_devres" => {
            let name = a.use_devres.clone().expect("verb");
            let dur = match &a.for_ {
                Some(d) => crate::duration::parse_duration(d.get_ref())
                    .map_err(|e| format!("`for`: {e}"))?,
                None => 0,
            };
            DeviceAction::UseDevres { name, dur }
        }
        _ => unreachable!("device verbs"),
    }))
}

/// Parses a device event; `None` when the event has no device key.
pub(crate) fn event(e: &crate::raw::RawEvent) -> Result<Vec<DeviceEvent>, String> {
    let mut v = Vec::new();
    if let Some(d) = &e.add_device {
        v.push(DeviceEvent::Add(d.clone()));
    }
    if let Some(d) = &e.remove_device {
        v.push(DeviceEvent::Remove(d.clone()));
    }
    if let Some(d) = &e.bind {
        let driver = e
            .driver
            .clone()
            .ok_or("`bind` needs `driver = \"…\"` (the driver whose bind file is written)")?;
        v.push(DeviceEvent::Bind {
            device: d.clone(),
            driver,
        });
    } else if e.driver.is_some() {
        return Err("`driver` goes with `bind`".into());
    }
    if let Some(d) = &e.unbind {
        v.push(DeviceEvent::Unbind(d.clone()));
    }
    Ok(v)
}

/// Checks a `devices` expectation's state word.
pub(crate) fn state_word(w: &str, setup: &DeviceSetup) -> Result<(), String> {
    match w.split_once(':') {
        Some(("bound", d)) if setup.drivers.iter().any(|x| x.spec.name == d) => Ok(()),
        Some(("bound", d)) => Err(format!("no driver is named `{d}`")),
        None if ["deferred", "unbound", "absent", "probing", "removing"].contains(&w) => Ok(()),
        _ => Err(format!(
            "`{w}` is not a device state: use bound:DRIVER, deferred, unbound or absent"
        )),
    }
}
