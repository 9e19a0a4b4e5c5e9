//! Scenario files on real threads: every actor (event, module body, work item, the modprobe
//! that request_module starts) is a thread, the core is behind the host's mutex, and a
//! virtual clock jumps to the next deadline whenever every thread is parked. The result
//! is a [`modkit_sim::Run`], so the simulator's expectations and reports apply unchanged:
//! `modkit check --driver host` and the differential test compare the two drivers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use modkit_core::load::Load;
use modkit_core::modprobe::Modprobe;
use modkit_core::request::Request;
use modkit_core::unload::Unload;
use modkit_core::{
    BodyResult, DiagKind, Errno, Kernel, ModId, Outcome, Policy, Proc, Resume, TaskId, WaitKey,
};
use modkit_sim::scenario::{Action, EventKind, Scenario, Step};
use modkit_sim::Run;

use crate::ctx::InitCtx;
use crate::host::{Clock, Host, ModuleCode, State};
use modkit_sim::actions::immediate_as;

/// Interpreted module bodies.
struct ScenarioCode {
    steps: Vec<Step>,
}

/// How an action list ended.
enum End {
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
            ctx.host(),
            ctx.task(),
            Some(ctx.module()),
            &holder,
            &self.steps[step].run,
            true,
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
            let _ = run_actions(ctx.host(), ctx.task(), Some(ctx.module()), &holder, u, true);
        }
    }

    fn step_name(&self, step: usize) -> String {
        self.steps[step].name.clone()
    }
}

fn run_actions(
    host: &Host,
    task: TaskId,
    module: Option<ModId>,
    holder: &str,
    list: &[Action],
    body: bool,
) -> End {
    for a in list {
        {
            let mut st = host.lock();
            host.tick(&mut st);
            let State { k, acts, .. } = &mut *st;
            if let Some(o) = immediate_as(k, acts, module, holder, Some(task), a) {
                host.deliver(&mut st);
                if o.is_ok() {
                    continue;
                }
                return End::Failed(o);
            }
        }
        let o: Outcome = match a {
            Action::Sleep(d) => {
                let deadline = host.now_ns() + d;
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
                let child = {
                    let mut st = host.lock();
                    host.new_task(&mut st, &label)
                };
                let h = host.clone();
                let list = list.clone();
                let holder = holder.to_string();
                let spawned = crate::sync::thread::Builder::new().spawn(move || {
                    let end = run_actions(&h, child, module, &holder, &list, false);
                    let o = match end {
                        End::Stalled => None,
                        End::Failed(o) => Some(o),
                        _ => Some(Outcome::Ok),
                    };
                    let mut st = h.lock();
                    h.finish_task(&mut st, child, o);
                });
                match spawned {
                    Ok(_) => Outcome::Ok,
                    Err(_) => {
                        let mut st = host.lock();
                        host.finish_task(&mut st, child, Some(Outcome::Err(Errno::ENOMEM)));
                        Outcome::Err(Errno::ENOMEM)
                    }
                }
            }
            Action::WaitFor { name, timeout } => {
                let deadline = timeout.map(|t| host.now_ns() + t);
                loop {
                    if host.lock().acts.completions.contains(name) {
                        break Outcome::Ok;
                    }
                    let reason = format!("wait_for_completion({name})");
                    // wait_for_completion_killable(): SIGKILL gives -ERESTARTSYS.
                    let key = WaitKey::Completion(name.clone());
                    match host.wait_on(task, key, reason, deadline, true) {
                        None => return End::Stalled,
                        Some(Resume::Killed) => break Outcome::Err(Errno::ERESTARTSYS),
                        Some(Resume::TimedOut) => {
                            if host.lock().acts.completions.contains(name) {
                                break Outcome::Ok;
                            }
                            let mut st = host.lock();
                            let msg = format!(
                                "{holder} gave up waiting for completion {name} after {}",
                                modkit_sim::duration::format_duration(timeout.unwrap_or(0))
                            );
                            st.k.diagnose(DiagKind::Timeout, module, msg, Vec::new(), None);
                            break Outcome::Err(Errno::ETIME);
                        }
                        Some(_) => continue,
                    }
                }
            }
            _ => unreachable!("immediate actions are handled above"),
        };
        if !o.is_ok() {
            let _ = body;
            return End::Failed(o);
        }
    }
    End::Done
}

/// Runs a scenario on real threads under `policy`. Same-instant ties are real races, so
/// `seed` is accepted for symmetry with the simulator and otherwise unused.
pub fn run_scenario(sc: &Scenario, policy: Policy, _seed: u64) -> Run {
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
    let host = Host::from_kernel(k, Clock::Virtual);
    {
        let mut st = host.lock();
        st.horizon = livelock.as_ref().map(|(t, _)| *t);
        for (m, steps) in sc.steps.iter().enumerate() {
            st.code[m] = Some(Arc::new(ScenarioCode {
                steps: steps.clone(),
            }));
        }
    }
    let results: Arc<Mutex<BTreeMap<String, Vec<Outcome>>>> = Arc::new(Mutex::new(
        sc.events
            .iter()
            .map(|e| (e.id.clone(), Vec::new()))
            .collect(),
    ));
    host.hold(true);
    let mut threads = Vec::new();
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
            };
            let label = if ev.threads > 1 {
                format!("event {}[{t}]: {what}", ev.id)
            } else {
                format!("event {}: {what}", ev.id)
            };
            let task = {
                let mut st = host.lock();
                host.new_task(&mut st, &label)
            };
            let (h, ev, results, db) = (host.clone(), ev.clone(), results.clone(), sc.db.clone());
            let spawned = crate::sync::thread::Builder::new()
                .name(label.clone())
                .spawn(move || {
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
                        let mut st = h.lock();
                        h.finish_task(&mut st, task, None);
                        return;
                    }
                    if !matches!(
                        ev.kind,
                        EventKind::SetModprobe(_) | EventKind::Kill(_) | EventKind::KillModprobe(_)
                    ) {
                        h.lock().killable_tasks.add_event(task, &ev.id);
                    }
                    let o: Option<Outcome> = match &ev.kind {
                        EventKind::Kill(id) => Some(h.kill(crate::signal::Target::Event(id))),
                        EventKind::KillModprobe(n) => {
                            Some(h.kill(crate::signal::Target::Modprobe(n)))
                        }
                        EventKind::SetModprobe(p) => {
                            h.lock().k.modprobe_path = p.clone();
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
                            match run_actions(&h, task, None, &label, list, false) {
                                End::Stalled => None,
                                End::Failed(o) => Some(o),
                                _ => Some(Outcome::Ok),
                            }
                        }
                    };
                    let mut st = h.lock();
                    let o = h.finish_task(&mut st, task, o);
                    drop(st);
                    if let Some(o) = o {
                        let o = match ev.kind {
                            EventKind::Modprobe(_) | EventKind::Insmod(_)
                                if o == Outcome::Err(Errno::EEXIST) =>
                            {
                                Outcome::Ok
                            }
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
                    let mut st = host.lock();
                    host.finish_task(&mut st, task, None);
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
    let (stalled, horizon_hit) = {
        let st = host.lock();
        (st.stalled, st.horizon_hit)
    };
    let mut kernel = host.take_kernel();
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
    Run {
        kernel,
        end_time,
        results,
        event_order: sc.events.iter().map(|e| e.id.clone()).collect(),
        steps: 0,
    }
}
