//! Device scenarios on the host: the scenario's buses, `[[module.driver]]`s, `[[device]]`s,
//! device events and udev settings run on the `modkit` library's driver core
//! (`modkit::driver`: drivers declared with their code, devices added, bound, unbound and
//! removed as a task, the core's `DeviceModel` under the host's lock), so that the
//! differential tests check the library itself. What this file adds on top:
//!
//! - the probe and remove bodies, interpreted like init steps (`need`, `devm`, `sleep`,
//!   `add_device`, `remove_device`, `fail`, …) through [`modkit::ProbeCtx`];
//! - fw_devlink's firmware links (`suppliers`): made when a device becomes present, and the
//!   supplier that holds a probe back, checked before the probe body runs, as the
//!   simulator does (`modkit_core::devlink`);
//! - udevd on threads: each device added with a modalias queues a uevent; at most
//!   `workers` worker threads run at once, each loading every module the modalias matches
//!   (`modprobe -b`); one udevd thread kills a worker still running `event_timeout` after
//!   it started ("Worker [PID] processing SEQNUM=N killed"; the PID is the host's task id);
//! - under `modkit`, a deferral on a supplier that nothing in the scenario provides is
//!   reported at once (`deferred_forever`), as in the simulator.
//!
//! Asynchronous probing (`probe_type = "async"`, and the wait of a module's load for the
//! async probes after its init) is the library's (`modkit`'s asyncprobe.rs): this file
//! only declares the driver with `DeviceDriver::async_probe`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use modkit::driver::{ctx_module, ctx_task, probe_ctx_ids, DevId, Driver, DrvId, Unless};
use modkit::{Device, DeviceDriver, ProbeCtx};
use modkit_core::device::DevState;
use modkit_core::devlink::FwDevlink;
use modkit_core::modprobe::Modprobe;
use modkit_core::{DiagKind, Errno, Outcome, Policy, Proc, Resume, TaskId, Time, WaitKey};
use modkit_sim::devices::{DeviceAction, DeviceEvent, DeviceSetup};
use modkit_sim::scenario::{Action, Scenario};

use crate::{run_actions, End, HostState};

/// The device side of one host run, shared by the probe code, the hook on device adds and
/// the udev threads.
pub(crate) struct DevEngine {
    setup: DeviceSetup,
    policy: Policy,
    /// fw_devlink's links (taken after the host's lock, never before it).
    fwdl: Mutex<FwDevlink>,
    /// What the scenario can ever provide to a `need` (modkit's deferred_forever check).
    providers: BTreeSet<String>,
    /// (device, key) pairs already reported as deferred for ever.
    reported: Mutex<BTreeSet<(DevId, String)>>,
}

/// udevd's state, kept with the rest of the driver's state under the host's lock.
#[derive(Default)]
pub(crate) struct UdevState {
    /// uevents not yet handed to a worker: (device, modalias, SEQNUM).
    queue: VecDeque<(DevId, String, u64)>,
    /// Workers running, by worker number: (task, device name, SEQNUM, kill deadline).
    running: BTreeMap<u64, Worker>,
    /// uevent sequence numbers.
    seqnum: u64,
    /// Worker numbers.
    next: u64,
    /// The udevd thread that kills late workers runs.
    manager: bool,
    /// Bumped when a worker starts or ends (wakes the udevd thread).
    generation: u64,
}

#[derive(Clone)]
struct Worker {
    task: Option<TaskId>,
    device: String,
    seq: u64,
    deadline: Time,
    killed: bool,
}

fn udevd_key() -> WaitKey {
    WaitKey::Completion("udevd: a worker started or ended".into())
}

fn worker_event(w: u64) -> String {
    format!("udev worker {w}")
}

fn errno_of(e: &modkit::Error) -> Outcome {
    match e.outcome {
        Outcome::Ok => Outcome::Err(Errno::EINVAL),
        o => o,
    }
}

fn res(r: Result<(), modkit::Error>) -> Outcome {
    match r {
        Ok(()) => Outcome::Ok,
        Err(e) => errno_of(&e),
    }
}

/// Declares the scenario's drivers (with interpreted bodies) and devices on the host, sets
/// the deferred-probe timeout, and installs the device-added hook. Returns the engine and
/// the builtin drivers to register at boot.
pub(crate) fn setup(host: &Driver, sc: &Scenario, policy: Policy) -> (Arc<DevEngine>, Vec<DrvId>) {
    let fwdl = host.device_model(|_, dm| {
        for d in &sc.devices.devices {
            let id = dm.declare(&d.name, &d.bus, d.modalias.clone());
            dm.devices[id].match_defer = d.match_defer.clone();
        }
        FwDevlink::default()
    });
    // The scenario's own buses (`[[bus]]`); the kernel's exist already, but for the
    // auxiliary bus before 5.11, which the library leaves out: the simulator declares and
    // registers a driver on it under any era (only adding an auxiliary device fails, with
    // its remark), so the bus is added for the drivers' sake; the library still refuses
    // auxiliary devices before 5.11.
    for b in &sc.devices.buses {
        let _ = host.host().add_bus(b);
    }
    let mut builtin = Vec::new();
    let mut engine = DevEngine {
        setup: sc.devices.clone(),
        policy,
        fwdl: Mutex::new(fwdl),
        providers: BTreeSet::new(),
        reported: Mutex::new(BTreeSet::new()),
    };
    // The drivers in declaration order, so that their ids are the simulator's.
    let eng_slot: Arc<Mutex<Option<Arc<DevEngine>>>> = Arc::new(Mutex::new(None));
    for (i, d) in sc.devices.drivers.iter().enumerate() {
        let mut drv = DeviceDriver::new(&d.spec.name, &d.spec.bus);
        for p in &d.spec.patterns {
            drv = drv.matches(p);
        }
        if d.async_probe {
            drv = drv.async_probe();
        }
        drv = drv.code(Arc::new(Bodies {
            probe: d.probe.clone(),
            remove: d.remove.clone(),
            engine: eng_slot.clone(),
        }));
        match host.add_device_driver(d.spec.module, drv) {
            Ok(id) => {
                debug_assert_eq!(id, i);
                if sc.db.spec(d.spec.module).builtin {
                    builtin.push(id);
                }
            }
            Err(e) => tracing::warn!(target: "modkit::hostdriver", "driver {}: {e}", d.spec.name),
        }
    }
    host.device_model(|_, dm| {
        engine.fwdl = Mutex::new(modkit_sim::sim::fw_devlink(sc, dm));
        engine.providers = modkit_sim::sim::providers(sc, dm);
    });
    let timeout = sc
        .devices
        .timeout
        .unwrap_or_else(|| modkit_core::dd::default_timeout(policy));
    host.set_deferred_probe_timeout_ns(timeout);
    // The kernel's GOING window under linux-X.Y (modkit_core::going); modkit closes it.
    host.set_probe_while_going(modkit_core::going::probes_while_going(policy));
    let engine = Arc::new(engine);
    *eng_slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(engine.clone());
    let e = engine.clone();
    host.on_device_added(move |h, dev| e.device_added(h, dev));
    // modkit's probe wait asks for the same providers as the simulator's.
    let scn = Arc::new(sc.clone());
    host.set_need_providers(move |dm, key| modkit_sim::sim::need_providers(&scn, dm, key));
    let e = engine.clone();
    host.on_match_deferred(move |h, dev| e.match_defer_forever(h, dev));
    (engine, builtin)
}

/// The boot: builtin drivers register, the timeout work is queued, the boot devices are
/// added in declaration order (on the calling thread, as `task`).
pub(crate) fn boot(host: &Driver, sc: &Scenario, task: TaskId, builtin: &[DrvId]) {
    for &d in builtin {
        let _ = host.driver_register(task, d);
    }
    if !sc.devices.drivers.is_empty() {
        host.start_deferred_probe_timer();
    }
    for d in sc.devices.devices.iter().filter(|d| d.boot) {
        let dev = device_of(&sc.devices, &d.name, &d.bus, d.modalias.as_deref());
        let _ = host.add_device(task, dev);
    }
}

/// The library's device for `name`, with the `match_defer` of its `[[device]]` if it has
/// one (the simulator declares every `[[device]]` with it).
fn device_of(setup: &DeviceSetup, name: &str, bus: &str, modalias: Option<&str>) -> Device {
    let mut d = Device::new(name, bus);
    if let Some(m) = modalias.filter(|_| bus != modkit_core::auxiliary::BUS) {
        d = d.modalias(m);
    }
    let declared = setup.devices.iter().find(|x| x.name == name);
    match declared.and_then(|x| x.match_defer.as_deref()) {
        Some(k) => d.match_defer(k),
        None => d,
    }
}

/// A device event (`add_device`, `remove_device`, `bind`, `unbind`) as `task`.
pub(crate) fn event(host: &Driver, sc: &Scenario, task: TaskId, ev: &DeviceEvent) -> Outcome {
    match ev {
        DeviceEvent::Add(n) => match sc.devices.devices.iter().find(|d| &d.name == n) {
            Some(d) => {
                let dev = device_of(&sc.devices, n, &d.bus, d.modalias.as_deref());
                res(host.add_device(task, dev))
            }
            None => Outcome::Err(Errno::ENODEV),
        },
        DeviceEvent::Remove(n) => res(host.remove_device(task, n)),
        DeviceEvent::Bind { device, driver } => {
            // The simulator's sysfs bind fails with EBUSY at once when the device is not
            // unbound (bound, or being probed or removed by another task); the library's
            // `bind` waits for the device lock first, as the kernel's
            // device_driver_attach() does (docs/host-contract.md, "Devices").
            let busy = host.device_model(|_, dm| {
                dm.find_device(device).is_some_and(|d| {
                    dm.present(d) && !matches!(dm.devices[d].state, DevState::Unbound)
                })
            });
            // A driver being unregistered is off its bus's list: the library answers ENODEV,
            // as the simulator does (seed 2 case 335 of device_differential.rs, a bind during
            // the exit's driver_unregister()).
            let known = host.device_model(|k, dm| {
                dm.find_driver(driver).is_some_and(|r| {
                    dm.on_bus(r)
                        && dm.find_device(device).is_some_and(|d| {
                            dm.bus_match(k, r, d) != modkit_core::device::BusMatch::No
                        })
                })
            });
            if busy && known {
                Outcome::Err(Errno::EBUSY)
            } else {
                res(host.bind(task, device, driver))
            }
        }
        DeviceEvent::Unbind(n) => {
            // The simulator's sysfs unbind acts on a bound device only.
            let bound = host.device_model(|_, dm| {
                dm.find_device(n)
                    .is_some_and(|d| matches!(dm.devices[d].state, DevState::Bound(_)))
            });
            if bound {
                res(host.unbind(task, n))
            } else {
                Outcome::Err(Errno::ENODEV)
            }
        }
    }
}

/// A device action or a driver registration in an action list: `Some(outcome)` when it is
/// one.
pub(crate) fn action(
    host: &Driver,
    engine: &DevEngine,
    task: TaskId,
    module: Option<modkit_core::ModId>,
    probe: Option<&mut ProbeCtx<'_>>,
    a: &Action,
) -> Option<Outcome> {
    Some(match a {
        Action::Register(key) if key.starts_with("driver:") => {
            let name = &key["driver:".len()..];
            match host.device_model(|_, dm| dm.find_driver(name)) {
                Some(d) => res(host.driver_register(task, d)),
                None => Outcome::Err(Errno::EINVAL),
            }
        }
        Action::Unregister(key) if key.starts_with("driver:") => {
            let name = &key["driver:".len()..];
            match host.device_model(|_, dm| dm.find_driver(name)) {
                Some(d) => {
                    host.driver_unregister(task, d);
                    Outcome::Ok
                }
                None => Outcome::Err(Errno::EINVAL),
            }
        }
        Action::Device(d) => match d {
            DeviceAction::Add {
                name,
                bus,
                modalias,
            } => {
                if bus == modkit_core::auxiliary::BUS
                    && !modkit_core::auxiliary::bus_exists(engine.policy)
                {
                    let line = format!(
                        "auxiliary_device_add({name}): there is no auxiliary bus before 5.11"
                    );
                    host.device_model(|k, _| k.remark(module, line));
                    return Some(Outcome::Err(Errno::ENODEV));
                }
                let dev = device_of(&engine.setup, name, bus, modalias.as_deref());
                match probe {
                    Some(ctx) => res(ctx.add_device(dev)),
                    None => res(host.add_device(task, dev)),
                }
            }
            DeviceAction::Remove(name) => match probe {
                Some(ctx) => res(ctx.remove_device(name)),
                None => res(host.remove_device(task, name)),
            },
            DeviceAction::Need {
                key,
                optional,
                reason,
            } => match probe {
                Some(ctx) => res(ctx.need_with(key, *optional, reason.as_deref())),
                None => Outcome::Err(Errno::EINVAL),
            },
            DeviceAction::Devm(name) => match probe {
                Some(ctx) => res(ctx.devm_resource(name)),
                None => Outcome::Err(Errno::EINVAL),
            },
            // `try_access()` of the resource, held for `dur` of virtual time (an ioctl in
            // flight); ENXIO when it is gone or revoked (modkit::HostHandle::devres_use).
            DeviceAction::UseDevres { name, dur } => {
                let Ok(user) = host.host().devres_use(name) else {
                    return Some(Outcome::Err(Errno::ENXIO));
                };
                let due = host.host().now_ns().saturating_add(*dur);
                let r = host.wait_on(
                    task,
                    WaitKey::Timer,
                    "use of a managed resource (ioctl in flight)".into(),
                    Some(due),
                    false,
                );
                drop(user);
                match r {
                    Some(_) => Outcome::Ok,
                    // The run stalled: the caller sees it (`Driver::stopped`).
                    None => Outcome::Err(Errno::EINTR),
                }
            }
        },
        _ => return None,
    })
}

/// A driver's probe and remove bodies, interpreted.
struct Bodies {
    probe: Vec<Action>,
    remove: Vec<Action>,
    engine: Arc<Mutex<Option<Arc<DevEngine>>>>,
}

impl Bodies {
    fn engine(&self) -> Arc<DevEngine> {
        self.engine
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .expect("set before any device is added")
    }

    fn run(&self, ctx: &mut ProbeCtx<'_>, list: &[Action]) -> End {
        let host = Driver::of(ctx.host());
        let task = ctx_task(ctx);
        let module = ctx_module(ctx);
        let holder = format!("module {}", ctx.module_name());
        let engine = self.engine();
        run_actions(
            &host,
            task,
            Some(module),
            &holder,
            list,
            true,
            Some(&engine),
            Some(ctx),
        )
    }
}

impl modkit::driver::DeviceCode for Bodies {
    fn probe(&self, ctx: &mut ProbeCtx<'_>) -> Result<(), Errno> {
        let (dev, drv) = probe_ctx_ids(ctx);
        let host = Driver::of(ctx.host());
        let engine = self.engine();
        // fw_devlink: device_links_check_suppliers() runs before the driver's probe; a
        // supplier that holds it back makes the probe defer without running it.
        let list = host.device_model(|k, dm| {
            let f = engine.fwdl.lock().unwrap_or_else(|e| e.into_inner());
            match f.blocker(k.policy, dm, dev) {
                Some(b) => vec![Action::Device(DeviceAction::Need {
                    key: b.key,
                    optional: false,
                    reason: b.reason,
                })],
                None => modkit_sim::devices::probe_behind_links(
                    f.enforced(k.policy, dm, dev),
                    &self.probe,
                ),
            }
        });
        let r = match self.run(ctx, &list) {
            End::Done | End::Stop | End::Ret(_) => Ok(()),
            End::Failed(o) => Err(o.errno().unwrap_or(Errno::EINVAL)),
            End::Stalled => Err(Errno::EINTR),
        };
        if r == Err(Errno::EPROBE_DEFER) && engine.policy.is_modkit() {
            engine.check_deferred_forever(&host, dev, drv);
        }
        r
    }

    fn remove(&self, ctx: &mut ProbeCtx<'_>) {
        let list = self.remove.clone();
        let _ = self.run(ctx, &list);
    }
}

impl DevEngine {
    /// `device_add()` after the device became present: fw_devlink's links, the uevent.
    fn device_added(self: &Arc<Self>, h: &Driver, dev: DevId) {
        let modalias = h.device_model(|k, dm| {
            self.fwdl
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .device_added(k, dm, dev);
            dm.devices[dev].modalias.clone()
        });
        let udev = self.setup.udev.is_some();
        h.engine(|_, s: &mut HostState| {
            s.udev.seqnum += 1;
            if let (true, Some(m)) = (udev, modalias) {
                s.udev.queue.push_back((dev, m, s.udev.seqnum));
            }
        });
        if udev {
            self.udev_dispatch(h);
        }
    }

    /// Hands queued uevents to workers while fewer than `workers` run.
    fn udev_dispatch(self: &Arc<Self>, h: &Driver) {
        let Some(udev) = self.setup.udev else {
            return;
        };
        loop {
            let next = h.engine(|k, s: &mut HostState| {
                let u = &mut s.udev;
                if u.running.len() >= udev.workers as usize {
                    return None;
                }
                let (dev, m, seq) = u.queue.pop_front()?;
                u.next += 1;
                let w = u.next;
                // systemd's module_load_and_warn(): every module the alias matches is
                // loaded, each with its dependencies, going on after a failure.
                let names: Vec<(String, modkit_core::ModId)> =
                    k.db.lookup(&m)
                        .into_iter()
                        .map(|x| (k.name(x).to_string(), x))
                        .collect();
                let _ = dev;
                u.running.insert(
                    w,
                    Worker {
                        task: None,
                        device: String::new(),
                        // The event's own sequence number (the simulator records the
                        // latest one at dispatch; docs/host-contract.md, "Devices").
                        seq,
                        deadline: k.now.saturating_add(udev.event_timeout),
                        killed: false,
                    },
                );
                u.generation += 1;
                k.wakes.push(udevd_key());
                let start_manager = !u.manager;
                u.manager = true;
                Some((w, dev, m, names, start_manager))
            });
            let Some((w, dev, m, names, start_manager)) = next else {
                return;
            };
            let name = h.device_model(|_, dm| dm.devices[dev].name.clone());
            let label = format!("udev worker ({name}): kmod load {m}");
            let task = h.new_task(&label);
            h.engine(|_, s: &mut HostState| {
                if let Some(x) = s.udev.running.get_mut(&w) {
                    x.task = Some(task);
                    x.device = name.clone();
                }
            });
            if start_manager {
                self.start_manager(h);
            }
            let (h2, me) = (h.clone(), self.clone());
            let started = match h.reserve_thread() {
                Some(slot) => h
                    .spawn_thread(Some(label), move || {
                        let _slot = slot;
                        h2.add_killable_event(task, &worker_event(w));
                        for (i, (n, _)) in names.iter().enumerate() {
                            // The loads still to come (modkit's probe wait looks at them).
                            h2.plan_loads(task, names[i + 1..].iter().map(|x| x.1).collect());
                            let o = h2.drive(task, Proc::Modprobe(Modprobe::new(n, true)));
                            let killed =
                                h2.engine(|k, _: &mut HostState| k.fatal_signal_pending(task));
                            if o.is_none() || killed {
                                break;
                            }
                        }
                        me.worker_done(&h2, w, task);
                    })
                    .is_ok(),
                None => false,
            };
            if !started {
                self.worker_done(h, w, task);
            }
        }
    }

    /// A worker ended: its slot goes to the next uevent; then the task ends.
    fn worker_done(self: &Arc<Self>, h: &Driver, w: u64, task: TaskId) {
        h.engine(|k, s: &mut HostState| {
            s.udev.running.remove(&w);
            s.udev.generation += 1;
            k.wakes.push(udevd_key());
        });
        self.udev_dispatch(h);
        h.finish_task(task, Some(Outcome::Ok));
    }

    /// udevd's timeout handling: one thread that sleeps until the earliest worker's
    /// deadline and kills the workers past theirs; it ends when no worker runs.
    fn start_manager(self: &Arc<Self>, h: &Driver) {
        let task = h.new_task("udevd: event_timeout");
        let h2 = h.clone();
        let started = match h.reserve_thread() {
            Some(slot) => h
                .spawn_thread(Some("udevd".into()), move || {
                    let _slot = slot;
                    udevd(&h2, task);
                    h2.finish_task(task, Some(Outcome::Ok));
                })
                .is_ok(),
            None => false,
        };
        if !started {
            h.engine(|_, s: &mut HostState| s.udev.manager = false);
            h.finish_task(task, None);
        }
    }

    /// Whether `key` is something nothing in the scenario provides and `dev` was not yet
    /// reported as waiting for it for ever (the pair is then recorded as reported).
    fn first_unprovided(&self, dev: DevId, key: &str) -> bool {
        !self.providers.contains(key)
            && self
                .reported
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((dev, key.to_string()))
    }

    /// modkit: a bus match that waits for something nothing in the scenario provides gets
    /// the `deferred_forever` diagnostic at once (the simulator's `match_defer_forever`).
    fn match_defer_forever(&self, h: &Driver, dev: DevId) {
        if !self.policy.is_modkit() {
            return;
        }
        h.device_model(|k, dm| {
            let Some(key) = dm.devices[dev].match_defer.clone() else {
                return;
            };
            if !self.first_unprovided(dev, &key) {
                return;
            }
            let d = dm.devices[dev].name.clone();
            let bus = dm.devices[dev].bus.clone();
            k.diagnose(
                DiagKind::DeferredForever,
                None,
                format!("{d}: the {bus} bus's match defers until {key} is there, which nothing provides: it would stay on the pending list for ever"),
                vec![d.clone(), format!("{bus} match waits for {key}"), "nothing in the scenario provides it".to_string()],
                Some(format!("add the module that provides {key}, or drop `match_defer` from {d}")),
            );
        });
    }

    /// modkit: a deferral on a supplier nothing in the scenario can provide is reported at
    /// once, with the chain (as the simulator's `check_deferred_forever`).
    fn check_deferred_forever(&self, h: &Driver, dev: DevId, drv: DrvId) {
        h.device_model(|k, dm| {
            let Some(key) = dm.devices[dev].defer_key.clone() else {
                return;
            };
            if !self.first_unprovided(dev, &key) {
                return;
            }
            let d = dm.devices[dev].name.clone();
            let r = dm.drivers[drv].name.clone();
            let m = dm.drivers[drv].module;
            let what = if key.starts_with("device:") {
                "no driver of the scenario can bind that device"
            } else {
                "no code of the scenario registers it"
            };
            k.diagnose(
                DiagKind::DeferredForever,
                Some(m),
                format!("{d} defers on {key}, which nothing provides ({what}): it would stay on the pending list for ever"),
                vec![d.clone(), format!("probe by {r} needs {key}"), what.to_string()],
                Some(format!(
                    "add the module that provides {key}, or make {r}'s probe go on without it"
                )),
            );
        });
    }
}

/// The udevd thread's loop.
fn udevd(h: &Driver, task: TaskId) {
    loop {
        let next = h.engine(|_, s: &mut HostState| {
            let u = &mut s.udev;
            let due = u
                .running
                .values()
                .filter(|w| !w.killed)
                .map(|w| w.deadline)
                .min();
            match due {
                None if u.running.is_empty() => {
                    u.manager = false;
                    None
                }
                d => Some((d, u.generation)),
            }
        });
        let Some((due, gen)) = next else {
            return;
        };
        let r = h.wait_on_unless(
            task,
            udevd_key(),
            "udevd event_timeout".into(),
            due,
            false,
            move |s: &HostState| s.udev.generation != gen,
        );
        match r {
            Unless::Waited(None) => return,
            Unless::Waited(Some(Resume::TimedOut)) => {
                let late: Vec<u64> = h.engine(|k, s: &mut HostState| {
                    let now = k.now;
                    let mut late = Vec::new();
                    for (&w, x) in s.udev.running.iter_mut() {
                        if !x.killed && x.deadline <= now {
                            x.killed = true;
                            // udevd.c, on_event_timeout().
                            k.printk(format!(
                                "systemd-udevd: {}: Worker [{}] processing SEQNUM={} killed",
                                x.device,
                                x.task.map(|t| t.to_string()).unwrap_or_default(),
                                x.seq
                            ));
                            late.push(w);
                        }
                    }
                    late
                });
                for w in late {
                    h.kill_event(&worker_event(w));
                }
            }
            _ => {}
        }
    }
}
