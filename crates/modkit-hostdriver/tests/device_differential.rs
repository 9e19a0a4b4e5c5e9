//! Random differential testing of the device model: random device scenarios (buses,
//! drivers, devices, probe and remove bodies, device events, udev) run on the simulator
//! over tie-break seeds and on the host driver, which runs them on the `modkit` library's
//! driver core (`modkit::driver`). The contract of docs/host-contract.md: the host's
//! outcome must be one the simulator gives under some seed (`common::judge_by`), where the
//! outcome is the module table with init counts, the sorted results per event, the
//! diagnostic kinds, the end time, the device table (device, bus, driver, state, reason)
//! and the log lines with their times (`common::device_summary`).
//!
//! The generator: up to three modules `m0..m2`, each with zero to two drivers on
//! `platform` or a scenario bus `vbus`, matching device types `tK`; boot and hot-plugged
//! devices of those types (some of no driver's type); probe bodies made of `sleep`,
//! `need` (a registration of some module's init, optional or not, or another device),
//! `devm`, `add_device` (a child device another driver may bind), `fail` (ENODEV, ENXIO,
//! EINVAL, ENOMEM, EPROBE_DEFER); one driver in four with `probe_type = "async"`; remove
//! bodies with `sleep`, `remove_device` of the child and sometimes a `wait_for` that never
//! returns; module inits that register what probes need after a sleep (so that a probe may
//! need what a loading module provides: modkit's probe wait), sometimes after registering
//! their first driver themselves (a probe inside its provider's init: the declined wait);
//! devices on `vbus` whose bus match defers until a registration (`match_defer`, every
//! era's rule); exits that sometimes quiesce (sleep) before unregistering their drivers
//! (the GOING window); events (modprobe, rmmod, add_device, remove_device, bind, unbind, and
//! `use_devres` of a managed resource for up to 300 ms) at distinct instants, sometimes a device event soon after an rmmod; sometimes udevd (one to
//! three workers, an event timeout that may kill one) and a short deferred-probe timeout.
//!
//! A second generator (`random_unbinds_with_users_agree_on_host_and_simulator`) aims at
//! seed 004's hot-unplug deadlock: drivers that bind at load and take a managed resource,
//! `use_devres` events overlapping unbinds, removals, binds and rmmods, removes that sleep
//! or never return.
//!
//! `MODKIT_DEVDIFF_CASES` (default 120) sets the number of scenarios (of each generator),
//! `MODKIT_DEVDIFF_SEED` the generator's seed (default 1); `MODKIT_DIFF_TRACE=1` prints each
//! scenario. A long run:
//! `MODKIT_DEVDIFF_CASES=2000 cargo test --release -p modkit-hostdriver --test device_differential -- --nocapture`.

use std::fmt::Write as _;

use modkit_hostdriver::run_scenario;

mod common;
use common::{device_summary, judge_by, Verdict, MAX_SEEDS};
use modkit_core::Policy;
use modkit_sim::Sim;
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const POLICIES: [&str; 9] = [
    "modkit",
    "linux-4.4",
    "linux-5.4",
    "linux-5.10",
    "linux-5.15",
    "linux-6.1",
    "linux-6.6",
    "linux-6.12",
    "linux-6.1.176",
];

const ERRNOS: [&str; 5] = ["ENODEV", "ENXIO", "EINVAL", "ENOMEM", "EPROBE_DEFER"];

/// One random device scenario's text.
fn scenario(rng: &mut ChaCha8Rng) -> String {
    let mut t = String::from("modprobe_time = \"1ms\"\n");
    let types = rng.gen_range(1..=3usize);
    let vbus = rng.gen_bool(0.3);
    let bus_of = |k: usize| if vbus && k == 1 { "vbus" } else { "platform" };
    if rng.gen_bool(0.5) {
        let _ = writeln!(
            t,
            "udev = {{ workers = {}, event_timeout = \"{}ms\" }}",
            rng.gen_range(1..=3),
            [40, 200, 5000][rng.gen_range(0..3)]
        );
    }
    if rng.gen_bool(0.4) {
        let _ = writeln!(t, "deferred_probe_timeout = {}", rng.gen_range(0..=2));
    }
    if vbus {
        let _ = writeln!(t, "\n[[bus]]\nname = \"vbus\"");
    }
    let n = rng.gen_range(1..=3usize);
    let mut drivers: Vec<(String, usize)> = Vec::new();
    let mut child = 0;
    // The managed resources some probe takes (what `use_devres` events name).
    let mut taken: Vec<String> = Vec::new();
    // Each module's drivers: zero to two, of any device type. (Until h2's cba4c05 every
    // device type's drivers belonged to one module: drivers of two modules matching one
    // device raced in driver_attach(), where the host, like the kernel's
    // __driver_attach(), waits for the device lock and the simulator skipped a device being
    // probed; see `driver_attach_waits_for_a_device_being_probed`.)
    let kinds_of: Vec<Vec<usize>> = (0..n)
        .map(|_| {
            (0..rng.gen_range(0..=2))
                .map(|_| rng.gen_range(0..types))
                .collect()
        })
        .collect();
    let mut async_types = std::collections::BTreeSet::new();
    let drivers_of_type = |k: usize| kinds_of.iter().flatten().filter(|&&x| x == k).count();
    // Which modules register `reg:rI` in their init (needs mostly name one of them).
    let regs: Vec<usize> = (0..n).filter(|_| rng.gen_bool(0.5)).collect();
    for (i, kinds) in kinds_of.iter().enumerate() {
        let _ = writeln!(t, "\n[[module]]\nname = \"m{i}\"");
        let reg = regs.contains(&i);
        // Sometimes the module registers its first driver itself, before the step that
        // registers what probes need: a probe of that driver needing it runs inside the
        // provider's own init (modkit declines the wait: a cycle).
        let early_driver = reg && rng.gen_bool(0.4);
        if early_driver && !kinds.is_empty() {
            let _ = writeln!(
                t,
                "[[module.init]]\nstep = \"drv\"\nrun = [{{ register = \"driver:d{i}0\" }}]\nundo = [{{ unregister = \"driver:d{i}0\" }}]"
            );
        }
        if reg {
            // A provider still loading when a probe needs it (modkit waits for it).
            let sleep = [0, 5, 20, 40, 150][rng.gen_range(0..5)];
            let _ = writeln!(
                t,
                "[[module.init]]\nstep = \"reg\"\nrun = [{{ sleep = \"{sleep}ms\" }}, {{ register = \"reg:r{i}\" }}]\nundo = [{{ unregister = \"reg:r{i}\" }}]"
            );
        }
        for (d, &k) in kinds.iter().enumerate() {
            // Two drivers of one type (of one module or two) never defer: a device the
            // first deferred would be retried by the deferred-probe worker while the
            // second's driver_attach() reaches it, which the simulator runs without a
            // preemption point between devices (docs/host-contract.md, "Devices"; seed 1
            // case 134, seed 2 case 1052 before this rule).
            let shared = drivers_of_type(k) > 1;
            let name = format!("d{i}{d}");
            let mut probe: Vec<String> = Vec::new();
            let mut remove: Vec<String> = Vec::new();
            for _ in 0..rng.gen_range(0..=3) {
                let pick = match rng.gen_range(0..12) {
                    4..=6 if shared => 0,
                    x => x,
                };
                match pick {
                    0..=3 => probe.push(format!("{{ sleep = \"{}ms\" }}", rng.gen_range(1..=30))),
                    4 | 5 => {
                        let r = if !regs.is_empty() && rng.gen_bool(0.7) {
                            regs[rng.gen_range(0..regs.len())]
                        } else {
                            rng.gen_range(0..n)
                        };
                        let opt = if rng.gen_bool(0.3) {
                            ", optional = true"
                        } else {
                            ""
                        };
                        probe.push(format!("{{ need = \"reg:r{r}\"{opt} }}"));
                    }
                    6 => probe.push(format!("{{ need = \"device:x{}\" }}", rng.gen_range(0..4))),
                    7 | 8 => {
                        let r = format!("res{}", rng.gen_range(0..3));
                        probe.push(format!("{{ devm = \"{r}\" }}"));
                        taken.push(r);
                    }
                    9 => {
                        let k2 = rng.gen_range(0..types);
                        probe.push(format!(
                            "{{ add_device = \"c{child}\", bus = \"{}\", modalias = \"dev:t{k2}c\" }}",
                            bus_of(k2)
                        ));
                        if rng.gen_bool(0.7) {
                            remove.push(format!("{{ remove_device = \"c{child}\" }}"));
                        }
                        child += 1;
                    }
                    _ => {
                        // EPROBE_DEFER, the last, is left out for a shared type.
                        let errnos = if shared {
                            &ERRNOS[..ERRNOS.len() - 1]
                        } else {
                            &ERRNOS[..]
                        };
                        probe.push(format!(
                            "{{ fail = \"{}\" }}",
                            errnos[rng.gen_range(0..errnos.len())]
                        ))
                    }
                }
            }
            if rng.gen_bool(0.5) {
                remove.insert(0, format!("{{ sleep = \"{}ms\" }}", rng.gen_range(1..=10)));
            }
            // Sometimes a remove that never returns (seed 004's GPU waiting to go idle):
            // Linux waits for it without bound, modkit abandons it after 5 s.
            if rng.gen_bool(0.08) {
                remove.push("{ wait_for = \"never\" }".into());
            }
            // One driver in four prefers asynchronous probing (crate modkit's
            // asyncprobe.rs: probes on workers, the load's wait after its init), at most
            // one per device type: two async drivers of one type, each registration
            // scheduling a worker per device, multiply the same-instant orders past the
            // judge's 1,024 seeds (seed 5 case 1802: 744 simulator outcomes, the host's
            // one of the orders not drawn).
            let probe_type = if rng.gen_bool(0.25) && async_types.insert(k) {
                "probe_type = \"async\"\n"
            } else {
                ""
            };
            let _ = writeln!(
                t,
                "[[module.driver]]\nname = \"{name}\"\nbus = \"{}\"\nmatch = [\"dev:t{k}*\"]\n{probe_type}probe = [{}]\nremove = [{}]",
                bus_of(k),
                probe.join(", "),
                remove.join(", ")
            );
            drivers.push((name, k));
        }
        // Sometimes the exit quiesces before its drivers' unregistration: a window where the
        // module is GOING and its drivers are still on the bus, which the next events may
        // reach (under linux-X.Y they probe there, under modkit not: modkit_core::going).
        if !kinds.is_empty() && rng.gen_bool(0.5) {
            // (The first driver is registered once: by the early step when it has one.)
            for d in usize::from(early_driver)..kinds.len() {
                let _ = writeln!(
                    t,
                    "[[module.init]]\nstep = \"drv{d}\"\nrun = [{{ register = \"driver:d{i}{d}\" }}]\nundo = [{{ unregister = \"driver:d{i}{d}\" }}]"
                );
            }
            let _ = writeln!(
                t,
                "[[module.init]]\nstep = \"quiesce\"\nrun = [{{ sleep = \"1ms\" }}]\nundo = [{{ sleep = \"{}ms\" }}]",
                rng.gen_range(60..=200)
            );
        }
    }
    let one_vbus_driver = drivers.iter().filter(|d| d.1 == 1).count() <= 1;
    let devs = rng.gen_range(1..=4usize);
    let mut boot = Vec::new();
    for x in 0..devs {
        // One in six has a type no driver matches (`types`).
        let k = if rng.gen_bool(0.17) {
            types
        } else {
            rng.gen_range(0..types)
        };
        let b = rng.gen_bool(0.6);
        boot.push(b);
        let _ = writeln!(
            t,
            "\n[[device]]\nname = \"x{x}\"\nbus = \"{}\"\nmodalias = \"dev:t{k}x\"\nboot = {b}",
            bus_of(k)
        );
        // A bus match that defers until some module's registration: only on `vbus`,
        // with at most one driver of that type (the deferring match probes every driver of
        // the bus before 6.0, so that no two modules' drivers race for the device), and
        // not an async one (the host applies the era's rule when the driver registers, the
        // simulator in each async worker).
        if bus_of(k) == "vbus" && one_vbus_driver && !async_types.contains(&1) && rng.gen_bool(0.5)
        {
            let _ = writeln!(t, "match_defer = \"reg:r{}\"", rng.gen_range(0..n));
        }
    }
    let events = rng.gen_range(1..=6);
    let mut removed = vec![false; devs];
    let (mut at, mut last_alone, mut last_rmmod) = (0, false, None);
    for e in 0..events {
        let x = rng.gen_range(0..devs);
        let m = rng.gen_range(0..n);
        // Soon after an rmmod, at an instant of its own, sometimes a device event for the
        // module's drivers: inside the exit's quiesce window when the module has one (the
        // GOING window, modkit_core::going).
        let soon = last_rmmod.is_some() && rng.gen_bool(0.5);
        let own: Vec<&String> = last_rmmod
            .map(|r| {
                drivers
                    .iter()
                    .filter(|(d, _)| d.starts_with(&format!("d{r}")))
                    .map(|(d, _)| d)
                    .collect()
            })
            .unwrap_or_default();
        let what = match rng.gen_range(0..16) {
            _ if soon && !own.is_empty() && rng.gen_bool(0.5) => {
                format!(
                    "bind = \"x{x}\"\ndriver = \"{}\"",
                    own[rng.gen_range(0..own.len())]
                )
            }
            _ if soon => format!("add_device = \"x{x}\""),
            0..=3 => format!("modprobe = \"m{m}\""),
            4 => format!("modprobe = \"dev:t{}x\"", rng.gen_range(0..types)),
            5 | 6 => format!("rmmod = \"m{m}\""),
            7 | 8 => format!("add_device = \"x{x}\""),
            // One removal per device: with removes that never return, a second removal
            // of a device being removed (ENODEV in the library, a wait in the simulator;
            // docs/host-contract.md, "Devices") is reachable (seed 1, case 1622).
            9 if !removed[x] => {
                removed[x] = true;
                format!("remove_device = \"x{x}\"")
            }
            10 if !drivers.is_empty() => {
                let (d, _) = &drivers[rng.gen_range(0..drivers.len())];
                format!("bind = \"x{x}\"\ndriver = \"{d}\"")
            }
            // An ioctl in flight on a managed resource, which an unbind revokes (modkit)
            // or frees under it (Linux).
            13 | 14 => format!(
                "run = [{{ use_devres = \"{}\", for = \"{}ms\" }}]",
                if taken.is_empty() {
                    "res0".to_string()
                } else {
                    taken[rng.gen_range(0..taken.len())].clone()
                },
                rng.gen_range(1..=300)
            ),
            _ => format!("unbind = \"x{x}\""),
        };
        // Mostly apart; one in five at the instant of the one before (a real race, which
        // the simulator's seeds must cover), but never an rmmod: an rmmod of a driver's
        // module at the instant of a device event makes the simulator, under some seeds,
        // probe while the module is GOING, which its invariant reported (a simulator
        // finding recorded in docs/host-contract.md, "Devices"; MODKIT_DEVDIFF_SEED=1
        // found it at case 427 and =2 at case 594 before this rule). Since then such a
        // probe is the kernel's under linux-X.Y and refused under modkit
        // (modkit_core::going); the GOING window is reached at instants of their own
        // instead (exits that quiesce before unregistering their drivers, device events
        // soon after an rmmod).
        // Nor a remove_device: a second removal of a device being removed gives ENODEV
        // in the library and waits, then succeeds, in the simulator (seed 3 case 1429;
        // docs/host-contract.md, "Devices").
        // (A sysfs bind at the instant of the device's add can run, on the host as on the
        // kernel's other CPUs, between device_add() making the device present and its own
        // attach (seed 2, cases 633 and 1536 of an earlier generator): the simulator has
        // a preemption point there since h1's change, so binds may share an instant.)
        let alone = ["rmmod", "remove_device"]
            .iter()
            .any(|v| what.starts_with(v));
        if soon {
            at += rng.gen_range(3..=50);
        } else if e == 0 || alone || last_alone || !rng.gen_bool(0.2) {
            at = 5 + e * 97 + rng.gen_range(0..40);
        }
        last_alone = alone;
        last_rmmod = what.starts_with("rmmod").then_some(m);
        let _ = writeln!(t, "\n[[event]]\nid = \"e{e}\"\nat = \"{at}ms\"\n{what}");
    }
    t
}

/// How far the host's runs went through `use_devres` and unbind with users in flight.
#[derive(Default)]
struct Uses {
    ok: u64,
    enxio: u64,
    freed: u64,
    abandoned: u64,
}

impl Uses {
    fn count(&mut self, sc: &modkit_sim::scenario::Scenario, host: &modkit_sim::Run) {
        use modkit_sim::devices::DeviceAction;
        use modkit_sim::scenario::{Action, EventKind};
        for e in &sc.events {
            let EventKind::Run(list) = &e.kind else {
                continue;
            };
            if !list
                .iter()
                .any(|a| matches!(a, Action::Device(DeviceAction::UseDevres { .. })))
            {
                continue;
            }
            for o in host.results.get(&e.id).into_iter().flatten() {
                match o.errno() {
                    None => self.ok += 1,
                    Some(modkit_core::Errno::ENXIO) => self.enxio += 1,
                    Some(_) => {}
                }
            }
        }
        for d in &host.kernel.diagnostics {
            if d.message.contains("devres_release_all() frees") {
                self.freed += 1;
            }
            if d.message.contains("modkit abandons it") {
                self.abandoned += 1;
            }
        }
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The generator makes scenarios the simulator accepts and runs under every seed tried
/// (checked on the simulator alone, so that a generator defect is not read as a host one).
#[test]
fn generated_device_scenarios_run_on_the_simulator() {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let mut bound = 0;
    for case in 0..200 {
        let text = scenario(&mut rng);
        let sc = modkit_sim::parse("random-devices.toml", &text)
            .unwrap_or_else(|e| panic!("case {case}: {e}\n{text}"));
        assert!(sc.devices.used);
        let p: Policy = POLICIES[case % POLICIES.len()].parse().unwrap();
        for seed in 0..4 {
            let r = Sim::new(&sc, p, seed)
                .run()
                .unwrap_or_else(|e| panic!("case {case} seed {seed}: {e:?}\n{text}"));
            assert!(
                r.kernel.violations.is_empty(),
                "case {case}: {:?}\n{text}",
                r.kernel.violations
            );
            bound += r.devices.iter().filter(|d| d.state == "bound").count();
        }
    }
    // The scenarios bind devices (otherwise the probe bodies would test nothing).
    assert!(bound > 100, "only {bound} devices bound in 800 runs");
}

#[test]
fn random_device_scenarios_agree_on_host_and_simulator() {
    let cases = env_u64("MODKIT_DEVDIFF_CASES", 120);
    let mut rng = ChaCha8Rng::seed_from_u64(env_u64("MODKIT_DEVDIFF_SEED", 1));
    let (mut same, mut covered, mut most_seeds, mut bound) = (0u64, 0u64, 0, 0usize);
    let (mut waits, mut match_defer) = (0u64, 0u64);
    let mut uses = Uses::default();
    // Cases where the host probed in the GOING window (linux-X.Y only).
    let mut window = 0u64;
    let mut with_async = 0u64;
    let mut divergences = Vec::new();
    for case in 0..cases {
        let text = scenario(&mut rng);
        with_async += u64::from(text.contains("probe_type = \"async\""));
        // modkit one time in three: its probe wait and retry on live need it.
        let policy = if rng.gen_bool(0.25) {
            "modkit"
        } else {
            POLICIES[rng.gen_range(0..POLICIES.len())]
        };
        if std::env::var_os("MODKIT_DIFF_TRACE").is_some() {
            eprintln!("case {case} under {policy}\n{text}");
        }
        let sc =
            modkit_sim::parse("random-devices.toml", &text).expect("generated scenario parses");
        let p: Policy = policy.parse().expect("policy");
        let host = run_scenario(&sc, p, 0).expect("the host runs the scenario");
        let policy_acted = host.kernel.diagnostics.iter().any(|d| {
            d.message.contains("instead of deferring")
                || d.message
                    .contains("its load cannot end before this probe does")
                || d.message.contains("the deferred probe is retried at once")
        });
        waits += u64::from(policy_acted);
        match_defer += u64::from(sc.devices.devices.iter().any(|d| d.match_defer.is_some()));
        assert!(
            host.kernel.violations.is_empty(),
            "case {case} under {policy}: {:?}\n{text}",
            host.kernel.violations
        );
        bound += host.devices.iter().filter(|d| d.state == "bound").count();
        uses.count(&sc, &host);
        if host
            .kernel
            .diagnostics
            .iter()
            .any(|d| d.message.contains("on its way out"))
        {
            window += 1;
        }
        match judge_by(&sc, p, &host, device_summary) {
            Verdict::Same => same += 1,
            Verdict::Covered { seeds } => {
                covered += 1;
                most_seeds = most_seeds.max(seeds);
            }
            Verdict::Diverged { sims, host } => divergences.push(format!(
                "case {case} under {policy}:\n--- simulator ({} outcomes over {MAX_SEEDS} seeds)\n{}\n--- host\n{host}\n--- scenario\n{text}",
                sims.len(),
                sims.into_iter().collect::<Vec<_>>().join("\n  or\n")
            )),
        }
    }
    eprintln!(
        "device differential: {cases} scenarios, {waits} with modkit's probe wait or retry on live, {match_defer} with a match_defer, {same} with one outcome under every seed, {covered} seed-dependent (host gave one of the simulator's outcomes; found within {most_seeds} seeds), {} diverged; {bound} devices bound on the host at the end; {window} probed in a GOING window; {with_async} scenarios with an async driver",
        divergences.len()
    );
    eprintln!(
        "use_devres on the host: {} ok, {} ENXIO; resources freed under users (linux remark): {}; removes abandoned (modkit): {}",
        uses.ok, uses.enxio, uses.freed, uses.abandoned
    );
    assert!(
        divergences.is_empty(),
        "{} of {cases} diverged:\n{}",
        divergences.len(),
        divergences.join("\n\n")
    );
}

/// One random scenario shaped for modkit's probe wait and a bus match that defers:
/// provider modules `p0..` whose init sleeps (0 to 150 ms) and then registers `clk:pI`,
/// sometimes after registering their own driver (whose probe may need their own clock: the
/// declined, cyclic wait), consumer drivers `dc0..` needing providers' clocks (sometimes
/// optional, sometimes a provider's device), devices of each type (one consumer device on
/// `vbus` whose match may defer until a clock), udevd sometimes (its workers' loads in
/// flight), and modprobes of providers and consumers at close or equal instants.
fn wait_scenario(rng: &mut ChaCha8Rng) -> String {
    let mut t = String::from("modprobe_time = \"1ms\"\n");
    let udev = rng.gen_bool(0.4);
    if udev {
        let _ = writeln!(t, "udev = {{ workers = {} }}", rng.gen_range(1..=3));
    }
    if rng.gen_bool(0.3) {
        let _ = writeln!(t, "deferred_probe_timeout = {}", rng.gen_range(0..=1));
    }
    let _ = writeln!(t, "\n[[bus]]\nname = \"vbus\"");
    let np = rng.gen_range(1..=3usize);
    let nc = rng.gen_range(1..=2usize);
    let mut has_driver = Vec::new();
    for i in 0..np {
        let _ = writeln!(t, "\n[[module]]\nname = \"p{i}\"");
        let drv = rng.gen_bool(0.6);
        has_driver.push(drv);
        if drv && rng.gen_bool(0.5) {
            let _ = writeln!(
                t,
                "[[module.init]]\nstep = \"drv\"\nrun = [{{ register = \"driver:dp{i}\" }}]\nundo = [{{ unregister = \"driver:dp{i}\" }}]"
            );
        }
        let sleep = [0, 10, 50, 150][rng.gen_range(0..4)];
        let _ = writeln!(
            t,
            "[[module.init]]\nstep = \"clk\"\nrun = [{{ sleep = \"{sleep}ms\" }}, {{ register = \"clk:p{i}\" }}]\nundo = [{{ unregister = \"clk:p{i}\" }}]"
        );
        if drv {
            let mut probe = Vec::new();
            if rng.gen_bool(0.5) {
                probe.push(format!("{{ need = \"clk:p{}\" }}", rng.gen_range(0..np)));
            }
            probe.push(format!("{{ devm = \"res:p{i}\" }}"));
            let _ = writeln!(
                t,
                "[[module.driver]]\nname = \"dp{i}\"\nbus = \"platform\"\nmatch = [\"dev:p{i}*\"]\nprobe = [{}]",
                probe.join(", ")
            );
        }
    }
    let vbus_consumer = rng.gen_bool(0.5);
    for i in 0..nc {
        let _ = writeln!(t, "\n[[module]]\nname = \"c{i}\"");
        let mut probe = Vec::new();
        for _ in 0..rng.gen_range(1..=2) {
            let j = rng.gen_range(0..np);
            probe.push(match rng.gen_range(0..6) {
                0 => format!("{{ need = \"clk:p{j}\", optional = true }}"),
                1 if has_driver[j] => format!("{{ need = \"device:y{j}\" }}"),
                2 => format!("{{ sleep = \"{}ms\" }}", rng.gen_range(1..=20)),
                _ => format!("{{ need = \"clk:p{j}\" }}"),
            });
        }
        let bus = if vbus_consumer && i == 0 {
            "vbus"
        } else {
            "platform"
        };
        let _ = writeln!(
            t,
            "[[module.driver]]\nname = \"dc{i}\"\nbus = \"{bus}\"\nmatch = [\"dev:c{i}*\"]\nprobe = [{}]",
            probe.join(", ")
        );
    }
    for (i, _) in has_driver.iter().enumerate().filter(|(_, &d)| d) {
        let _ = writeln!(
            t,
            "\n[[device]]\nname = \"y{i}\"\nbus = \"platform\"\nmodalias = \"dev:p{i}y\""
        );
    }
    for i in 0..nc {
        let bus = if vbus_consumer && i == 0 {
            "vbus"
        } else {
            "platform"
        };
        let _ = writeln!(
            t,
            "\n[[device]]\nname = \"x{i}\"\nbus = \"{bus}\"\nmodalias = \"dev:c{i}x\""
        );
        if bus == "vbus" && rng.gen_bool(0.6) {
            let _ = writeln!(t, "match_defer = \"clk:p{}\"", rng.gen_range(0..np));
        }
    }
    // Every module is loaded once (by name, or by a device's modalias through udev).
    let mut names: Vec<String> = (0..np).map(|i| format!("p{i}")).collect();
    names.extend((0..nc).map(|i| format!("c{i}")));
    let mut at = 0;
    for (e, n) in names.iter().enumerate() {
        if udev && rng.gen_bool(0.5) {
            continue;
        }
        if e > 0 && !rng.gen_bool(0.3) {
            at += [5, 20, 60, 200][rng.gen_range(0..4)];
        }
        let _ = writeln!(
            t,
            "\n[[event]]\nid = \"e{e}\"\nat = \"{at}ms\"\nmodprobe = \"{n}\""
        );
    }
    let _ = writeln!(
        t,
        "\n[[event]]\nid = \"end\"\nat = \"{}ms\"\nrun = [{{ sleep = \"1ms\" }}]",
        at + 500
    );
    t
}

/// modkit's probe wait, its retry on live and `match_defer` (every era) agree between the
/// host (the library's probewait.rs and matchdefer.rs) and the simulator, on scenarios
/// shaped for them ([`wait_scenario`]); `MODKIT_DEVDIFF_CASES` and `MODKIT_DEVDIFF_SEED`
/// as above.
#[test]
fn random_probe_wait_scenarios_agree_on_host_and_simulator() {
    let cases = env_u64("MODKIT_DEVDIFF_CASES", 120);
    let mut rng = ChaCha8Rng::seed_from_u64(env_u64("MODKIT_DEVDIFF_SEED", 1) ^ 0x9e37);
    let (mut agreed, mut waits, mut cycles, mut retries, mut deferring) = (0u64, 0, 0, 0, 0);
    let mut divergences = Vec::new();
    for case in 0..cases {
        let text = wait_scenario(&mut rng);
        let policy = if rng.gen_bool(0.5) {
            "modkit"
        } else {
            POLICIES[rng.gen_range(1..POLICIES.len())]
        };
        if std::env::var_os("MODKIT_DIFF_TRACE").is_some() {
            eprintln!("case {case} under {policy}\n{text}");
        }
        let sc = modkit_sim::parse("random-waits.toml", &text)
            .unwrap_or_else(|e| panic!("case {case}: {e}\n{text}"));
        let p: Policy = policy.parse().expect("policy");
        let host = run_scenario(&sc, p, 0).expect("the host runs the scenario");
        assert!(
            host.kernel.violations.is_empty(),
            "case {case} under {policy}: {:?}\n{text}",
            host.kernel.violations
        );
        let said = |m: &str| {
            host.kernel
                .diagnostics
                .iter()
                .any(|d| d.message.contains(m))
        };
        waits += u64::from(said("instead of deferring"));
        cycles += u64::from(said("its load cannot end before this probe does"));
        retries += u64::from(said("the deferred probe is retried at once"));
        deferring += u64::from(sc.devices.devices.iter().any(|d| d.match_defer.is_some()));
        match judge_by(&sc, p, &host, device_summary) {
            Verdict::Same | Verdict::Covered { .. } => agreed += 1,
            Verdict::Diverged { sims, host } => divergences.push(format!(
                "case {case} under {policy}:\n--- simulator ({} outcomes)\n{}\n--- host\n{host}\n--- scenario\n{text}",
                sims.len(),
                sims.into_iter().collect::<Vec<_>>().join("\n  or\n")
            )),
        }
    }
    eprintln!(
        "probe-wait differential: {cases} scenarios, {agreed} agreed, {} diverged; host runs with a wait {waits}, a declined (cyclic) wait {cycles}, a retry on live {retries}, a match_defer {deferring}",
        divergences.len()
    );
    // The generator reaches what it is for.
    if cases >= 100 {
        assert!(waits > 0 && cycles > 0 && retries > 0 && deferring > 0);
    }
    assert!(
        divergences.is_empty(),
        "{} of {cases} diverged:\n{}",
        divergences.len(),
        divergences.join("\n\n")
    );
}

/// Stories 1 and 2 of examples/scenarios/device-policy.toml: modkit's probe wait (cam0 binds at pll's init end),
/// the declined cyclic wait (dsi0 retried when selfclk goes live) and uart0's deferring
/// match under each era, on the host as on the simulator, log lines and times included.
#[test]
fn device_policy_stories_1_and_2_agree() {
    let text = r#"
policy = "modkit"

[[bus]]
name = "amba"

[[module]]
name = "pll"
[[module.init]]
step = "calibrate"
run = [{ sleep = "300ms" }]
[[module.init]]
step = "register"
run = [{ register = "clk:pll" }]
undo = [{ unregister = "clk:pll" }]

[[module]]
name = "cam"
[[module.driver]]
bus = "platform"
match = ["of:NcamT*Cvendor,cam"]
probe = [{ need = "clk:pll", reason = "pll not ready" }, { devm = "video:cam0" }]

[[module]]
name = "selfclk"
[[module.init]]
step = "driver"
run = [{ register = "driver:selfclk" }]
undo = [{ unregister = "driver:selfclk" }]
[[module.init]]
step = "clock"
run = [{ sleep = "100ms" }, { register = "clk:self" }]
undo = [{ unregister = "clk:self" }]
[[module.driver]]
bus = "platform"
match = ["of:NdsiT*Cvendor,dsi"]
probe = [{ need = "clk:self" }, { devm = "panel:dsi0" }]

[[device]]
name = "cam0"
bus = "platform"
modalias = "of:NcamT(null)Cvendor,cam"

[[device]]
name = "dsi0"
bus = "platform"
modalias = "of:NdsiT(null)Cvendor,dsi"

[[module]]
name = "pl011"
[[module.driver]]
bus = "amba"
match = ["amba:d00041011"]
probe = [{ lookup = "clk:apb_pclk" }, { devm = "tty:ttyAMA0" }]

[[module]]
name = "clkc"
[[module.driver]]
bus = "platform"
match = ["of:NclocksT*Cvendor,clkc"]
probe = [{ devm = "clk:apb_pclk" }]

[[device]]
name = "uart0"
bus = "amba"
modalias = "amba:d00041011"
match_defer = "clk:apb_pclk"

[[device]]
name = "clocks"
bus = "platform"
modalias = "of:NclocksT(null)Cvendor,clkc"

[[event]]
id = "pll_load"
modprobe = "pll"

[[event]]
id = "selfclk_load"
modprobe = "selfclk"

[[event]]
id = "cam_load"
at = "50ms"
modprobe = "cam"

[[event]]
id = "check_1s"
at = "1s"
run = [{ lookup = "video:cam0" }, { lookup = "panel:dsi0" }]

[[event]]
id = "uart"
at = "2s"
modprobe = "pl011"

[[event]]
id = "clk"
at = "3s"
modprobe = "clkc"
"#;
    let sc = modkit_sim::parse("stories.toml", text).unwrap();
    let state = |r: &modkit_sim::Run, d: &str| {
        let row = r.devices.iter().find(|x| x.device == d).unwrap();
        format!("{} {}", row.state, row.driver.as_deref().unwrap_or("-"))
    };
    for policy in ["modkit", "linux-6.1", "linux-5.10", "linux-4.4"] {
        let p: Policy = policy.parse().unwrap();
        let host = run_scenario(&sc, p, 0).unwrap();
        if let Verdict::Diverged { sims, host } = judge_by(&sc, p, &host, device_summary) {
            panic!(
                "{policy}: host\n{host}\n--- simulator\n{}",
                sims.into_iter().collect::<Vec<_>>().join("\n  or\n")
            );
        }
        let uart = if policy == "linux-4.4" {
            "unbound -"
        } else {
            "bound pl011"
        };
        assert_eq!(state(&host, "uart0"), uart, "{policy}");
        assert_eq!(state(&host, "cam0"), "bound cam", "{policy}");
        assert_eq!(state(&host, "dsi0"), "bound selfclk", "{policy}");
        let said = |m: &str| host.kernel.diagnostics.iter().any(|d| d.message == m);
        let waited = said("cam0: probe by cam waits for module pll's load to end (it provides clk:pll) instead of deferring");
        let retried = said("dsi0: clk:self is there now: the deferred probe is retried at once");
        assert_eq!(waited && retried, policy == "modkit", "{policy}");
    }
}

/// Found by this test's generator (seed 1, case 53, before drivers of one device type were
/// kept in one module), reduced to a deterministic case: m0's d00 probes x0 from 0 to
/// 36 ms; m1's d10, registered at 11 ms, probes x1 (unbound then) from 11 to 51 ms. At
/// 36 ms d00's driver_attach() reaches x1, which d10 is probing: the kernel's
/// `__driver_attach()` takes the device lock (`__device_driver_lock()`) and waits, then
/// finds x1 bound and goes on; the host's driver core (the `modkit` library) does that, so
/// m0's init, whose last step sleeps 1 ms after the registration, ends at 52 ms. The
/// simulator did so too since h2's cba4c05 (before, it skipped a device being probed and
/// ended at 51 ms): both are judged here. d10 matches x1 only: since the registration's
/// list holds devices in flight too (`DeviceModel::register_driver()`), a d10 matching x0
/// would first wait for x0's lock and race d00 for x1 at 36 ms, as in the kernel.
#[test]
fn driver_attach_waits_for_a_device_being_probed() {
    let text = r#"
deferred_probe_timeout = -1
[[module]]
name = "m0"
[[module.driver]]
name = "d00"
bus = "platform"
match = ["dev:t0*"]
probe = [{ sleep = "36ms" }]
[[module.init]]
step = "reg"
run = [{ register = "driver:d00" }]
undo = [{ unregister = "driver:d00" }]
[[module.init]]
step = "after"
run = [{ sleep = "1ms" }]
[[module]]
name = "m1"
[[module.driver]]
name = "d10"
bus = "platform"
match = ["dev:t0b"]
probe = [{ sleep = "40ms" }]
[[device]]
name = "x0"
bus = "platform"
modalias = "dev:t0a"
[[device]]
name = "x1"
bus = "platform"
modalias = "dev:t0b"
[[event]]
id = "a"
modprobe = "m0"
[[event]]
id = "b"
at = "10ms"
modprobe = "m1"
"#;
    let sc = modkit_sim::parse("attach-lock.toml", text).unwrap();
    let p: Policy = "linux-6.12".parse().unwrap();
    let host = run_scenario(&sc, p, 0).unwrap();
    let state = |r: &modkit_sim::Run, d: &str| {
        let row = r.devices.iter().find(|x| x.device == d).unwrap();
        format!("{} {}", row.state, row.driver.as_deref().unwrap_or("-"))
    };
    assert_eq!(state(&host, "x0"), "bound d00");
    assert_eq!(state(&host, "x1"), "bound d10");
    assert_eq!(host.end_time, 52_000_000, "m0's init waited for x1's lock");
    let sim = Sim::new(&sc, p, 0).run().unwrap();
    assert_eq!(
        sim.end_time, 52_000_000,
        "the simulator's driver_attach waits too"
    );
    assert!(matches!(
        judge_by(&sc, p, &host, device_summary),
        Verdict::Same | Verdict::Covered { .. }
    ));
}

/// The auxiliary bus across the 5.11 boundary (not in the random generator): a driver on
/// it registers under every era; a probe's `auxiliary_device_add()` fails with ENODEV and
/// the simulator's remark before 5.11, and binds the auxiliary driver after. Host and
/// simulator agree under each policy (device table and log lines included).
#[test]
fn auxiliary_devices_agree_across_eras() {
    let text = r#"
udev = { workers = 2 }
[[module]]
name = "parent"
[[module.driver]]
bus = "pci"
match = ["pci:v1234*"]
probe = [{ sleep = "5ms" }, { add_device = "parent.aux.0", bus = "auxiliary" }, { sleep = "1ms" }]
remove = [{ remove_device = "parent.aux.0" }]
[[module]]
name = "auxdrv"
[[module.driver]]
bus = "auxiliary"
match = ["auxiliary:parent.aux"]
probe = [{ devm = "misc:auxdrv" }]
[[device]]
name = "0000:00:01.0"
bus = "pci"
modalias = "pci:v1234d0001"
[[event]]
id = "load"
at = "100ms"
modprobe = "auxdrv"
[[event]]
id = "unplug"
at = "200ms"
remove_device = "0000:00:01.0"
"#;
    let sc = modkit_sim::parse("aux.toml", text).unwrap();
    for policy in ["linux-5.10", "linux-5.15", "linux-6.12", "modkit"] {
        let p: Policy = policy.parse().unwrap();
        let host = run_scenario(&sc, p, 0).unwrap();
        match judge_by(&sc, p, &host, device_summary) {
            Verdict::Diverged { sims, host } => panic!(
                "{policy}: host\n{host}\n--- simulator\n{}",
                sims.into_iter().collect::<Vec<_>>().join("\n  or\n")
            ),
            _ => {
                let live = host
                    .kernel
                    .instances
                    .iter()
                    .flatten()
                    .any(|i| i.state == modkit_core::ModState::Live);
                assert!(live, "{policy}: a module is live");
            }
        }
    }
}

/// The GOING window (modkit_core::going; crates/modkit-sim/tests/device_going.rs): m0's exit
/// unregisters d01 first, whose remove of x1 sleeps 5 ms; meanwhile m1's load binds x2,
/// which triggers the deferred-probe worker, and x0 (deferred on reg:r1) is retried while
/// d00 is still on the bus and m0 is GOING. Under `linux-X.Y` the host, like the kernel
/// (drivers/base/dd.c looks at no module state) and the simulator, probes x0 with d00
/// and the exit's driver_unregister() unbinds it (the core's remark names the probe);
/// under `modkit` neither probes. Host and simulator agree under each policy.
#[test]
fn the_going_window_agrees() {
    let text = r#"
deferred_probe_timeout = -1
[[module]]
name = "m0"
[[module.driver]]
name = "d00"
bus = "platform"
match = ["dev:t0*"]
probe = [{ need = "reg:r1" }, { sleep = "3ms" }]
remove = [{ sleep = "1ms" }]
[[module.driver]]
name = "d01"
bus = "platform"
match = ["dev:t1*"]
probe = [{ sleep = "1ms" }]
remove = [{ sleep = "5ms" }]
[[module]]
name = "m1"
[[module.init]]
step = "reg"
run = [{ register = "reg:r1" }]
undo = [{ unregister = "reg:r1" }]
[[module.driver]]
name = "d10"
bus = "platform"
match = ["dev:t2*"]
probe = []
[[device]]
name = "x0"
bus = "platform"
modalias = "dev:t0x"
[[device]]
name = "x1"
bus = "platform"
modalias = "dev:t1x"
[[device]]
name = "x2"
bus = "platform"
modalias = "dev:t2x"
[[event]]
id = "load"
at = "1ms"
modprobe = "m0"
[[event]]
id = "rmmod"
at = "20ms"
rmmod = "m0"
[[event]]
id = "m1"
at = "21ms"
modprobe = "m1"
"#;
    let sc = modkit_sim::parse("going-window.toml", text).unwrap();
    for policy in ["modkit", "linux-4.4", "linux-5.15", "linux-6.12"] {
        let p: Policy = policy.parse().unwrap();
        let host = run_scenario(&sc, p, 0).unwrap();
        assert!(
            host.kernel.violations.is_empty(),
            "{policy}: {:?}",
            host.kernel.violations
        );
        let window = host.kernel.diagnostics.iter().any(|d| {
            d.kind == modkit_core::DiagKind::Remark
                && d.message
                    .contains("probe of x0 by driver d00 runs code of module m0 on its way out")
        });
        assert_eq!(
            window,
            !p.is_modkit(),
            "{policy}: {:?}",
            host.kernel.diagnostics
        );
        let v = judge_by(&sc, p, &host, device_summary);
        assert!(
            matches!(v, Verdict::Same | Verdict::Covered { .. }),
            "{policy}: host and simulator differ"
        );
    }
}

/// Random scenarios of unbind with users in flight (seed 004's hot-unplug deadlock): one
/// to three drivers, each binding its boot devices at load and taking a managed resource;
/// remove bodies that sleep, return at once or (rarely) never return; `use_devres` events
/// of those resources overlapping unbinds, device removals, rebinding and rmmods. Under
/// `modkit` the host must revoke, drain (5 s), bound the remove (5 s) and abandon it as the
/// simulator does; under `linux-X.Y` wait without bound and free under the users.
fn unbind_scenario(rng: &mut ChaCha8Rng) -> String {
    let mut t = String::from("modprobe_time = \"1ms\"\n");
    let n = rng.gen_range(1..=3usize);
    for i in 0..n {
        let remove = match rng.gen_range(0..10) {
            0 | 1 => "{ wait_for = \"never\" }".to_string(),
            2 | 3 => String::new(),
            _ => format!("{{ sleep = \"{}ms\" }}", rng.gen_range(1..=400)),
        };
        let sleep = if rng.gen_bool(0.3) {
            format!("{{ sleep = \"{}ms\" }}, ", rng.gen_range(1..=20))
        } else {
            String::new()
        };
        let _ = writeln!(
            t,
            "\n[[module]]\nname = \"m{i}\"\n[[module.driver]]\nname = \"d{i}\"\nbus = \"platform\"\nmatch = [\"dev:t{i}*\"]\nprobe = [{sleep}{{ devm = \"res{i}\" }}]\nremove = [{remove}]"
        );
        let _ = writeln!(
            t,
            "\n[[device]]\nname = \"x{i}\"\nbus = \"platform\"\nmodalias = \"dev:t{i}x\""
        );
        let _ = writeln!(t, "\n[[event]]\nid = \"load{i}\"\nmodprobe = \"m{i}\"");
    }
    let events = rng.gen_range(2..=7);
    // One removal per device: a second removal of a device being removed gives ENODEV in
    // the library and waits in the simulator (docs/host-contract.md, "Devices").
    let mut removed = vec![false; n];
    for e in 0..events {
        let i = rng.gen_range(0..n);
        let at = rng.gen_range(30..1500);
        let long = if rng.gen_bool(0.1) { 7000 } else { 800 };
        let what = match rng.gen_range(0..10) {
            0..=3 => format!(
                "run = [{{ use_devres = \"res{i}\", for = \"{}ms\" }}]",
                rng.gen_range(1..=long)
            ),
            4..=6 => format!("unbind = \"x{i}\""),
            7 if !removed[i] => {
                removed[i] = true;
                format!("remove_device = \"x{i}\"")
            }
            7 | 8 => format!("bind = \"x{i}\"\ndriver = \"d{i}\""),
            _ => format!("rmmod = \"m{i}\""),
        };
        let _ = writeln!(t, "\n[[event]]\nid = \"e{e}\"\nat = \"{at}ms\"\n{what}");
    }
    t
}

#[test]
fn random_unbinds_with_users_agree_on_host_and_simulator() {
    let cases = env_u64("MODKIT_DEVDIFF_CASES", 120);
    let mut rng = ChaCha8Rng::seed_from_u64(env_u64("MODKIT_DEVDIFF_SEED", 1) ^ 0x0004);
    let (mut compared, mut uses) = (0u64, Uses::default());
    let mut divergences = Vec::new();
    for case in 0..cases {
        let text = unbind_scenario(&mut rng);
        let policy = POLICIES[rng.gen_range(0..POLICIES.len())];
        if std::env::var_os("MODKIT_DIFF_TRACE").is_some() {
            eprintln!("unbind case {case} under {policy}\n{text}");
        }
        let sc = modkit_sim::parse("random-unbind.toml", &text).expect("generated scenario parses");
        let p: Policy = policy.parse().expect("policy");
        let host = run_scenario(&sc, p, 0).expect("the host runs the scenario");
        assert!(
            host.kernel.violations.is_empty(),
            "case {case} under {policy}: {:?}\n{text}",
            host.kernel.violations
        );
        uses.count(&sc, &host);
        compared += 1;
        if let Verdict::Diverged { sims, host } = judge_by(&sc, p, &host, device_summary) {
            divergences.push(format!(
                "unbind case {case} under {policy}:\n--- simulator ({} outcomes over {MAX_SEEDS} seeds)\n{}\n--- host\n{host}\n--- scenario\n{text}",
                sims.len(),
                sims.into_iter().collect::<Vec<_>>().join("\n  or\n")
            ));
        }
    }
    eprintln!(
        "unbind differential: {compared} scenarios, {} diverged; use_devres on the host: {} ok, {} ENXIO; resources freed under users (linux remark): {}; removes abandoned (modkit): {}",
        divergences.len(),
        uses.ok,
        uses.enxio,
        uses.freed,
        uses.abandoned
    );
    // The generator reaches what it is for.
    if cases >= 100 {
        assert!(uses.ok > 0 && uses.enxio > 0 && uses.freed > 0 && uses.abandoned > 0);
    }
    assert!(
        divergences.is_empty(),
        "{} of {cases} diverged:\n{}",
        divergences.len(),
        divergences.join("\n\n")
    );
}

/// A driver registering while another driver's probe of a matching device runs, and that
/// probe then fails: `__driver_attach()` (drivers/base/dd.c) waits for the device lock and
/// probes the device, unbound again (`__driver_probe_device()` answers -EBUSY only when
/// `dev->driver` is set). ma's da probes x0 from 1 ms to 11 ms and fails (ENODEV); mb's db,
/// registered at 4 ms, binds x0 from 11 ms to 12 ms on the host and on the simulator alike
/// (crates/modkit-sim/tests/device_going.rs has the same case under every policy and 32
/// seeds). Before `DeviceModel::register_driver()` listed devices in flight, x0 stayed
/// unbound on both (the earlier seed 6 case 1155 of this test).
#[test]
fn a_driver_registering_during_a_failing_probe_binds_the_device() {
    let text = r#"
deferred_probe_timeout = -1
[[module]]
name = "ma"
[[module.driver]]
name = "da"
bus = "platform"
match = ["dev:t0*"]
probe = [{ sleep = "10ms" }, { fail = "ENODEV" }]
[[module]]
name = "mb"
[[module.driver]]
name = "db"
bus = "platform"
match = ["dev:t0*"]
probe = [{ sleep = "1ms" }]
[[device]]
name = "x0"
bus = "platform"
modalias = "dev:t0x"
[[event]]
id = "a"
modprobe = "ma"
[[event]]
id = "b"
at = "3ms"
modprobe = "mb"
"#;
    let sc = modkit_sim::parse("attach-failed.toml", text).unwrap();
    for policy in ["linux-6.12", "modkit"] {
        let p: Policy = policy.parse().unwrap();
        let host = run_scenario(&sc, p, 0).unwrap();
        let row = host.devices.iter().find(|x| x.device == "x0").unwrap();
        assert_eq!(
            format!("{} {}", row.state, row.driver.as_deref().unwrap_or("-")),
            "bound db",
            "{policy}: db binds x0 after da's probe failed"
        );
        assert_eq!(host.end_time, 12_000_000, "{policy}: mb's init waited");
        let sim = Sim::new(&sc, p, 0).run().unwrap();
        assert_eq!(sim.end_time, 12_000_000, "{policy}: the simulator too");
        assert!(matches!(
            judge_by(&sc, p, &host, device_summary),
            Verdict::Same | Verdict::Covered { .. }
        ));
    }
}

/// A driver registering while a matching device is being deleted (da's remove sleeps
/// 10 ms from 2 ms): `device_del()` marks it dead and `bus_remove_device()` takes it off
/// the bus's list first, so db's driver_attach() neither waits for it nor probes it; mb's
/// init (registering at 4 ms, then sleeping 20 ms) ends at 24 ms on both drivers.
#[test]
fn a_driver_registering_during_a_device_deletion_skips_it() {
    let text = r#"
deferred_probe_timeout = -1
[[module]]
name = "ma"
[[module.driver]]
name = "da"
bus = "platform"
match = ["dev:t0*"]
probe = []
remove = [{ sleep = "10ms" }]
[[module]]
name = "mb"
[[module.driver]]
name = "db"
bus = "platform"
match = ["dev:t0*"]
probe = []
[[module.init]]
step = "reg"
run = [{ register = "driver:db" }]
undo = [{ unregister = "driver:db" }]
[[module.init]]
step = "after"
run = [{ sleep = "20ms" }]
[[device]]
name = "x0"
bus = "platform"
modalias = "dev:t0x"
[[event]]
id = "a"
modprobe = "ma"
[[event]]
id = "del"
at = "2ms"
remove_device = "x0"
[[event]]
id = "b"
at = "3ms"
modprobe = "mb"
"#;
    let sc = modkit_sim::parse("attach-deleted.toml", text).unwrap();
    for policy in ["linux-6.12", "modkit"] {
        let p: Policy = policy.parse().unwrap();
        let host = run_scenario(&sc, p, 0).unwrap();
        assert_eq!(host.end_time, 24_000_000, "{policy}: db skipped x0");
        let sim = Sim::new(&sc, p, 0).run().unwrap();
        assert_eq!(sim.end_time, 24_000_000, "{policy}: the simulator too");
        assert!(matches!(
            judge_by(&sc, p, &host, device_summary),
            Verdict::Same | Verdict::Covered { .. }
        ));
    }
}

/// A cycle formed after a probe's wait began (modkit_core::probewait::breaks_wait; found
/// by this differential, seed 1, case 74): m0's async probes wait for m0's load, whose
/// init then fails and whose undo's driver_unregister() waits for their device locks.
/// Under `modkit` host and simulator break each wait at once (no stall, the core's line);
/// under `linux-X.Y` there is no probe wait. Host and simulator agree under each policy.
#[test]
fn a_cycle_formed_after_the_probe_wait_began_agrees() {
    let text = r#"
deferred_probe_timeout = 1
udev = { workers = 3 }
[[module]]
name = "m0"
[[module.init]]
step = "driver"
run = [{ register = "driver:d00" }]
undo = [{ unregister = "driver:d00" }]
[[module.init]]
step = "reg"
run = [{ sleep = "150ms" }, { register = "reg:r0" }]
undo = [{ unregister = "reg:r0" }]
[[module.init]]
step = "again"
run = [{ register = "driver:d00" }]
[[module.driver]]
name = "d00"
bus = "platform"
match = ["platform:x"]
probe_type = "async"
probe = [{ need = "reg:r0" }, { sleep = "12ms" }, { devm = "res0" }]
[[device]]
name = "x"
bus = "platform"
modalias = "platform:x"
count = 3
[[event]]
id = "load"
modprobe = "m0"
"#;
    let sc = modkit_sim::parse("late-cycle.toml", text).unwrap();
    for policy in ["linux-6.12", "modkit"] {
        let p: Policy = policy.parse().unwrap();
        let host = run_scenario(&sc, p, 0).unwrap();
        if let Verdict::Diverged { sims, host } = judge_by(&sc, p, &host, device_summary) {
            panic!(
                "{policy}: host\n{host}\n--- simulator\n{}",
                sims.into_iter().collect::<Vec<_>>().join("\n  or\n")
            );
        }
        let stalled = host
            .kernel
            .diagnostics
            .iter()
            .any(|d| d.kind == modkit_core::DiagKind::Stalled);
        assert!(!stalled, "{policy}: the run stalled");
        let broke = host
            .kernel
            .log
            .iter()
            .filter(|l| l.text.contains("probe by d00 stops waiting for module m0"))
            .count();
        assert_eq!(broke, if policy == "modkit" { 3 } else { 0 }, "{policy}");
    }
}
