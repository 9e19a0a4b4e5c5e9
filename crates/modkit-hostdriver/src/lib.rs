//! Scenario files on real threads (`modkit check --driver host`): every actor (event,
//! module body, work item, the modprobe that request_module starts) is a thread, the core
//! is behind the [`modkit::Host`]'s mutex, and a virtual clock jumps to the next deadline
//! whenever every thread is parked. The result is a [`modkit_sim::Run`], so the
//! simulator's expectations and reports apply unchanged: `modkit check --driver host` and
//! the differential tests compare the two drivers.
//!
//! This crate sits on both sides (core ← modkit ← hostdriver, core ← sim ← hostdriver), so
//! that the `modkit` library itself needs neither the simulator nor the .ko readers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use modkit::driver::{ctx_module, ctx_task, Driver, ModuleCode, Unless};
use modkit::{Clock, InitCtx, ProbeCtx};

mod devices;
use modkit_core::load::Load;
use modkit_core::modprobe::Modprobe;
use modkit_core::request::Request;
use modkit_core::unload::Unload;
use modkit_core::{
    BodyResult, DiagKind, Errno, Kernel, ModId, Outcome, Policy, Proc, Resume, TaskId, WaitKey,
};
use modkit_sim::actions::{immediate_as, ActionState};
use modkit_sim::scenario::{Action, EventKind, Scenario, Step};
use modkit_sim::Run;

/// The driver's state under the host's lock ([`Driver::engine`]): the actions' files and
/// completions, and udevd's.
#[derive(Default)]
pub(crate) struct HostState {
    acts: ActionState,
    udev: devices::UdevState,
}

/// Interpreted module bodies.
struct ScenarioCode {
    steps: Vec<Step>,
    devices: Option<Arc<devices::DevEngine>>,
}

/// How an action list ended.
pub(crate) enum End {
    Done,
    Stop,
    Ret(u32),
    Failed(Outcome),
    Stalled,
}

impl ModuleCode for ScenarioCode {
    fn init(&self, ctx: &mut InitCtx<'_>, step: usize) -> BodyResult {
        let holder = format!("module {}", ctx.module_name());
        match run_actions(
            &Driver::of(ctx.host()),
            ctx_task(ctx),
            Some(ctx_module(ctx)),
            &holder,
            &self.steps[step].run,
            true,
            self.devices.as_ref(),
            None,
        ) {
            End::Done => BodyResult::Ok,
            End::Stop => BodyResult::Stop,
            End::Ret(n) => BodyResult::Returned(n),
            End::Failed(o) => BodyResult::Fail(o.errno().unwrap_or(Errno::ENOENT)),
            End::Stalled => BodyResult::Fail(Errno::EINTR),
        }
    }

    fn undo(&self, ctx: &mut InitCtx<'_>, step: usize) {
        let holder = format!("module {}", ctx.module_name());
        if let Some(u) = &self.steps[step].undo {
            let _ = run_actions(
                &Driver::of(ctx.host()),
                ctx_task(ctx),
                Some(ctx_module(ctx)),
                &holder,
                u,
                true,
                self.devices.as_ref(),
                None,
            );
        }
    }

    fn step_name(&self, step: usize) -> String {
        self.steps[step].name.clone()
    }
}

/// Runs an action list as `task`: the code of `module` (`holder` names it in pins), with
/// the scenario's device engine when it has devices, and the probe or remove context when
/// the list is a driver's body.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_actions(
    host: &Driver,
    task: TaskId,
    module: Option<ModId>,
    holder: &str,
    list: &[Action],
    body: bool,
    devs: Option<&Arc<devices::DevEngine>>,
    mut probe: Option<&mut ProbeCtx<'_>>,
) -> End {
    for a in list {
        if let Some(eng) = devs {
            if let Some(o) = devices::action(host, eng, task, module, probe.as_deref_mut(), a) {
                if o.is_ok() {
                    continue;
                }
                return End::Failed(o);
            }
        }
        if let Some(o) = host.engine(|k, s: &mut HostState| {
            immediate_as(k, &mut s.acts, module, holder, Some(task), a)
        }) {
            if o.is_ok() {
                continue;
            }
            return End::Failed(o);
        }
        let o: Outcome = match a {
            Action::Sleep(d) => {
                let deadline = host.host().now_ns() + d;
                let reason = format!("sleep {}", modkit_sim::duration::format_duration(*d));
                // modkit_rt's sleep: no signal ends it.
                match host.wait_on(task, WaitKey::Timer, reason, Some(deadline), false) {
                    None => return End::Stalled,
                    Some(_) => Outcome::Ok,
                }
            }
            Action::Fail(e) => Outcome::Err(*e),
            Action::Stop => return End::Stop,
            Action::Ret(n) => return End::Ret(*n),
            Action::RequestModule {
                name,
                wait,
                required,
            } => {
                let Some(o) = host.drive(task, Proc::Request(Request::new(name, *wait))) else {
                    return End::Stalled;
                };
                if !o.is_ok() && !*required {
                    Outcome::Ok
                } else {
                    o
                }
            }
            Action::Spawn(list) => {
                let label = format!("work item of {holder}");
                let child = host.new_task(&label);
                let h = host.clone();
                let list = list.clone();
                let holder = holder.to_string();
                let devs = devs.cloned();
                let slot = host.reserve_thread();
                let spawned = match slot {
                    Some(slot) => host
                        .spawn_thread(None, move || {
                            let _slot = slot;
                            let end = run_actions(
                                &h,
                                child,
                                module,
                                &holder,
                                &list,
                                false,
                                devs.as_ref(),
                                None,
                            );
                            let o = match end {
                                End::Stalled => None,
                                End::Failed(o) => Some(o),
                                _ => Some(Outcome::Ok),
                            };
                            h.finish_task(child, o);
                        })
                        .map(drop),
                    None => Err(std::io::Error::other("thread limit")),
                };
                match spawned {
                    Ok(_) => Outcome::Ok,
                    Err(_) => {
                        host.finish_task(child, Some(Outcome::Err(Errno::ENOMEM)));
                        Outcome::Err(Errno::ENOMEM)
                    }
                }
            }
            Action::WaitFor { name, timeout } => {
                let deadline = timeout.map(|t| host.host().now_ns() + t);
                loop {
                    let reason = format!("wait_for_completion({name})");
                    // wait_for_completion_killable(): SIGKILL gives -ERESTARTSYS. The check
                    // and the wait are one step under the lock, or a `complete` in between
                    // would wake nobody (the simulator does both at once too).
                    let key = WaitKey::Completion(name.clone());
                    let done = |s: &HostState| s.acts.completions.contains(name);
                    match host.wait_on_unless(task, key, reason, deadline, true, done) {
                        Unless::Done => break Outcome::Ok,
                        Unless::Waited(None) => return End::Stalled,
                        Unless::Waited(Some(r)) => match r {
                            Resume::Killed => break Outcome::Err(Errno::ERESTARTSYS),
                            Resume::TimedOut => {
                                if completed(host, name) {
                                    break Outcome::Ok;
                                }
                                let msg = format!(
                                    "{holder} gave up waiting for completion {name} after {}",
                                    modkit_sim::duration::format_duration(timeout.unwrap_or(0))
                                );
                                host.engine(|k, _: &mut HostState| {
                                    k.diagnose(DiagKind::Timeout, module, msg, Vec::new(), None)
                                });
                                break Outcome::Err(Errno::ETIME);
                            }
                            _ => continue,
                        },
                    }
                }
            }
            // Handled above when the scenario has devices (the parser accepts device
            // actions only then).
            Action::Device(_) => Outcome::Err(Errno::EINVAL),
            _ => unreachable!("immediate actions are handled above"),
        };
        if !o.is_ok() {
            let _ = body;
            return End::Failed(o);
        }
    }
    End::Done
}

/// Why the host could not run a scenario.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScenarioError {
    /// The events ask for more threads than the host can run at once.
    #[error("{file}: the events ask for {asked} threads in all, more than the host driver's limit of {limit} OS threads at once (see modkit::thread_limit; the simulator takes up to 100000): use fewer threads, or run this scenario on the simulator")]
    TooManyThreads {
        /// Scenario file.
        file: String,
        /// Threads the events ask for.
        asked: u64,
        /// [`modkit::thread_limit`].
        limit: usize,
    },
    /// The run needed more OS threads at once than the host's limit (modprobes started by
    /// `request_module` and work items are threads too); it was stopped.
    #[error("{file}: the run needed more than the host driver's limit of {limit} OS threads at once (events' threads, the modprobes that request_module starts and work items; see modkit::thread_limit) and was stopped at {time} ns of virtual time: use fewer threads, or run this scenario on the simulator")]
    ThreadLimit {
        /// Scenario file.
        file: String,
        /// [`modkit::thread_limit`].
        limit: usize,
        /// Virtual time when it stopped.
        time: u64,
    },
}

/// Completion `name` has been completed (`complete_all`).
fn completed(host: &Driver, name: &str) -> bool {
    host.engine(|_, s: &mut HostState| s.acts.completions.contains(name))
}

/// Runs a scenario on real threads under `policy`. Same-instant ties are real races, so
/// `seed` is accepted for symmetry with the simulator and otherwise unused. Fails when the
/// scenario needs more OS threads at once than [`modkit::thread_limit`].
pub fn run_scenario(sc: &Scenario, policy: Policy, _seed: u64) -> Result<Run, ScenarioError> {
    let asked: u64 = sc.events.iter().map(|e| u64::from(e.threads)).sum();
    let limit = modkit::thread_limit();
    if asked > limit as u64 {
        return Err(ScenarioError::TooManyThreads {
            file: sc.file.clone(),
            asked,
            limit,
        });
    }
    // A scenario that loops for ever (a failing init that requests itself again) would keep
    // real threads busy without end: the simulator finds such a livelock in a few steps,
    // so the host run is stopped at the instant the simulator stopped and reports the same
    // livelock, marked as found by the simulator.
    let livelock = modkit_sim::Sim::new(sc, policy, 0)
        .run()
        .ok()
        .and_then(|r| {
            let d = r
                .kernel
                .diagnostics
                .iter()
                .find(|d| d.kind == modkit_core::DiagKind::Livelock)?
                .clone();
            Some((r.end_time, d))
        });
    let mut k = Kernel::new(sc.db.clone(), policy);
    k.modprobe_path = sc.modprobe.clone();
    k.modprobe_exec = sc.modprobe_time;
    k.config = sc.config.clone();
    k.record_history = true;
    let host = Driver::new(k, Clock::Virtual);
    host.set_horizon(livelock.as_ref().map(|(t, _)| *t));
    let devs = sc.devices.used.then(|| devices::setup(&host, sc, policy));
    let engine = devs.as_ref().map(|(e, _)| e.clone());
    for (m, steps) in sc.steps.iter().enumerate() {
        host.set_code(
            m,
            Arc::new(ScenarioCode {
                steps: steps.clone(),
                devices: engine.clone(),
            }),
        );
    }
    let results: Arc<Mutex<BTreeMap<String, Vec<Outcome>>>> = Arc::new(Mutex::new(
        sc.events
            .iter()
            .map(|e| (e.id.clone(), Vec::new()))
            .collect(),
    ));
    host.hold(true);
    let mut threads = Vec::new();
    if let Some((_, builtin)) = &devs {
        // The boot: builtin drivers register during initcalls, then the boot devices are
        // added (with their coldplug uevents) by one task, as the simulator does.
        let task = host.new_task("boot: device_add");
        let (h, sc2, builtin) = (host.clone(), sc.clone(), builtin.clone());
        match host.reserve_thread() {
            Some(slot) => match host.spawn_thread(Some("boot: device_add".into()), move || {
                let _slot = slot;
                devices::boot(&h, &sc2, task, &builtin);
                h.finish_task(task, Some(Outcome::Ok));
            }) {
                Ok(j) => threads.push(j),
                Err(_) => {
                    host.finish_task(task, None);
                }
            },
            None => {
                host.finish_task(task, None);
            }
        }
    }
    for ev in &sc.events {
        for t in 0..ev.threads {
            let what = match &ev.kind {
                EventKind::Modprobe(n) => format!("modprobe {n}"),
                EventKind::Insmod(n) => format!("insmod {n}"),
                EventKind::Rmmod { name, .. } => format!("rmmod {name}"),
                EventKind::RequestModule { name, .. } => format!("request_module({name})"),
                EventKind::Run(_) => "run".into(),
                EventKind::SetModprobe(_) => "set".into(),
                EventKind::Kill(id) => format!("kill {id}"),
                EventKind::KillModprobe(n) => format!("kill modprobe {n}"),
                EventKind::Device(d) => format!("{d:?}"),
            };
            let label = if ev.threads > 1 {
                format!("event {}[{t}]: {what}", ev.id)
            } else {
                format!("event {}: {what}", ev.id)
            };
            let task = host.new_task(&label);
            let (h, ev, results, db) = (host.clone(), ev.clone(), results.clone(), sc.db.clone());
            let (engine, sc2) = (engine.clone(), Arc::new(sc.clone()));
            let Some(slot) = host.reserve_thread() else {
                host.finish_task(task, None);
                continue;
            };
            let spawned = host.spawn_thread(Some(label.clone()), move || {
                let _slot = slot;
                if ev.at > 0
                    && h.wait_on(
                        task,
                        WaitKey::Timer,
                        format!("start at {}", ev.at),
                        Some(ev.at),
                        false,
                    )
                    .is_none()
                {
                    h.finish_task(task, None);
                    return;
                }
                if !matches!(
                    ev.kind,
                    EventKind::SetModprobe(_) | EventKind::Kill(_) | EventKind::KillModprobe(_)
                ) {
                    h.add_killable_event(task, &ev.id);
                }
                let o: Option<Outcome> = match &ev.kind {
                    EventKind::Kill(id) => Some(h.kill_event(id)),
                    EventKind::KillModprobe(n) => Some(h.kill_modprobe(n)),
                    EventKind::Device(d) => {
                        let o = devices::event(&h, &sc2, task, d);
                        // An event the run stalled in (a remove that never returns) has
                        // no result, as in the simulator.
                        (!h.stopped().0).then_some(o)
                    }
                    EventKind::SetModprobe(p) => {
                        h.engine(|k, _: &mut HostState| k.modprobe_path = p.clone());
                        Some(Outcome::Ok)
                    }
                    EventKind::Modprobe(n) => {
                        h.drive(task, Proc::Modprobe(Modprobe::new(n, false)))
                    }
                    EventKind::Insmod(n) => match db.id(n) {
                        Some(id) if ev.init_module => {
                            h.drive(task, Proc::Load(Load::new(id, None).init_module()))
                        }
                        Some(id) => h.drive(task, Proc::Load(Load::new(id, None))),
                        // No such module: ENOENT, as the simulator and rmmod give.
                        None => Some(Outcome::Err(Errno::ENOENT)),
                    },
                    EventKind::Rmmod {
                        name,
                        force,
                        wait,
                        timeout,
                    } => h.drive(
                        task,
                        Proc::Unload(Unload::new(name, *force, *wait, *timeout)),
                    ),
                    EventKind::RequestModule { name, wait } => {
                        h.drive(task, Proc::Request(Request::new(name, *wait)))
                    }
                    EventKind::Run(list) => {
                        match run_actions(
                            &h,
                            task,
                            None,
                            &label,
                            list,
                            false,
                            engine.as_ref(),
                            None,
                        ) {
                            End::Stalled => None,
                            // A use_devres cut short by the run's stall.
                            End::Failed(_) if h.stopped().0 => None,
                            End::Failed(o) => Some(o),
                            _ => Some(Outcome::Ok),
                        }
                    }
                };
                let o = h.finish_task(task, o);
                if let Some(o) = o {
                    let o = match ev.kind {
                        EventKind::Modprobe(_) if o == Outcome::Err(Errno::EEXIST) => Outcome::Ok,
                        _ => o,
                    };
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(ev.id.clone())
                        .or_default()
                        .push(o);
                }
            });
            match spawned {
                Ok(j) => threads.push(j),
                Err(_) => {
                    host.finish_task(task, None);
                }
            }
        }
    }
    host.hold(false);
    for t in threads {
        let _ = t.join();
    }
    host.wait_idle();
    let end_time = host.vclock();
    let (stalled, horizon_hit) = host.stopped();
    if host.thread_limit_hit() {
        return Err(ScenarioError::ThreadLimit {
            file: sc.file.clone(),
            limit,
            time: end_time,
        });
    }
    let devices = if sc.devices.used {
        host.device_model(|k, dm| {
            dm.check_devres(k);
            dm.check_bound(k);
            dm.table()
        })
    } else {
        Vec::new()
    };
    // modkit's abandoned remove callbacks are detached (modkit's unbind.rs).
    host.forget_abandoned();
    let device_history = host.device_history();
    let mut kernel = host.take_kernel();
    host.release_abandoned();
    if let (true, Some((_, mut d))) = (horizon_hit, livelock) {
        kernel.now = end_time;
        d.message
            .push_str(" (found by the simulator; the host run was stopped at the same instant)");
        kernel.diagnostics.push(d);
    } else if stalled {
        kernel.now = end_time;
        modkit_sim::sim::report_stall(&mut kernel);
    }
    let results = std::mem::take(&mut *results.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(Run {
        // Sampled when the virtual clock moves (modkit's history.rs).
        device_history,
        devices,
        kernel,
        end_time,
        results,
        event_order: sc.events.iter().map(|e| e.id.clone()).collect(),
        steps: 0,
    })
}
