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
//! EINVAL, ENOMEM, EPROBE_DEFER); remove bodies with `sleep`, `remove_device` of the
//! child and sometimes a `wait_for` that never returns; module inits that register what
//! probes need; events (modprobe, rmmod, add_device, remove_device, bind, unbind, and
//! `use_devres` of a managed resource for up to 300 ms) at distinct instants; sometimes udevd (one to
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

use modkit_hostdriver::{run_scenario, unsupported, unsupported_under};

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
    // Every device type's drivers belong to one module: drivers of two modules matching
    // one device would race in driver_attach(), where the host (like the kernel's
    // __driver_attach()) waits for the device lock and the simulator skips a device being
    // probed (docs/host-contract.md, "Devices"; see
    // `driver_attach_waits_for_a_device_being_probed`).
    let mut owner: Vec<Option<usize>> = vec![None; types];
    for i in 0..n {
        let _ = writeln!(t, "\n[[module]]\nname = \"m{i}\"");
        if rng.gen_bool(0.4) {
            let sleep = rng.gen_range(0..=20);
            let _ = writeln!(
                t,
                "[[module.init]]\nstep = \"reg\"\nrun = [{{ sleep = \"{sleep}ms\" }}, {{ register = \"reg:r{i}\" }}]\nundo = [{{ unregister = \"reg:r{i}\" }}]"
            );
        }
        let mut kinds = Vec::new();
        for _ in 0..rng.gen_range(0..=2) {
            let free: Vec<usize> = (0..types)
                .filter(|&k| owner[k].is_none_or(|o| o == i))
                .collect();
            if free.is_empty() {
                break;
            }
            let k = free[rng.gen_range(0..free.len())];
            owner[k] = Some(i);
            kinds.push(k);
        }
        for (d, &k) in kinds.iter().enumerate() {
            // Two drivers of one type never defer: a device the first deferred would be
            // retried by the deferred-probe worker while the second's driver_attach()
            // reaches it, which the simulator runs without a preemption point between
            // devices (docs/host-contract.md, "Devices"; seed 1 case 134, seed 2 case 1052
            // before this rule).
            let shared = kinds.iter().filter(|&&x| x == k).count() > 1;
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
                        let r = rng.gen_range(0..n);
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
            let _ = writeln!(
                t,
                "[[module.driver]]\nname = \"{name}\"\nbus = \"{}\"\nmatch = [\"dev:t{k}*\"]\nprobe = [{}]\nremove = [{}]",
                bus_of(k),
                probe.join(", "),
                remove.join(", ")
            );
            drivers.push((name, k));
        }
    }
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
    }
    let events = rng.gen_range(1..=6);
    let mut removed = vec![false; devs];
    let (mut at, mut last_alone) = (0, false);
    for e in 0..events {
        let x = rng.gen_range(0..devs);
        let m = rng.gen_range(0..n);
        let what = match rng.gen_range(0..16) {
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
        // probe while the module is GOING, which its invariant reports (a simulator
        // finding recorded in docs/host-contract.md, "Devices"; MODKIT_DEVDIFF_SEED=1
        // found it at case 427 and =2 at case 594 before this rule).
        // Nor a sysfs bind: a bind at the instant of the device's add can run, on the host
        // as on the kernel's other CPUs, between device_add() making the device present
        // and its own attach (seed 2, cases 633 and 1536), where the simulator has no
        // preemption point (docs/host-contract.md, "Devices").
        // Nor a remove_device: a second removal of a device being removed gives ENODEV
        // in the library and waits, then succeeds, in the simulator (seed 3 case 1429;
        // docs/host-contract.md, "Devices").
        let alone = ["rmmod", "bind", "remove_device"]
            .iter()
            .any(|v| what.starts_with(v));
        if e == 0 || alone || last_alone || !rng.gen_bool(0.2) {
            at = 5 + e * 97 + rng.gen_range(0..40);
        }
        last_alone = alone;
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
    let mut refused = 0u64;
    let mut uses = Uses::default();
    let mut divergences = Vec::new();
    for case in 0..cases {
        let text = scenario(&mut rng);
        let policy = POLICIES[rng.gen_range(0..POLICIES.len())];
        if std::env::var_os("MODKIT_DIFF_TRACE").is_some() {
            eprintln!("case {case} under {policy}\n{text}");
        }
        let sc =
            modkit_sim::parse("random-devices.toml", &text).expect("generated scenario parses");
        let p: Policy = policy.parse().expect("policy");
        // The generator makes nothing the host refuses as a whole (async probes,
        // match_defer) …
        assert_eq!(unsupported(&sc), None, "case {case}\n{text}");
        // … but under modkit the simulator may go through modkit's own device policy (a
        // probe waiting for a loading module, a pending device retried at once when its
        // need appears), which the host does not model: such a case
        // is compared nowhere and counted (docs/host-contract.md, "Devices").
        if unsupported_under(&sc, p, 0).is_some() {
            refused += 1;
            continue;
        }
        let host = run_scenario(&sc, p, 0).expect("the host runs the scenario");
        assert!(
            host.kernel.violations.is_empty(),
            "case {case} under {policy}: {:?}\n{text}",
            host.kernel.violations
        );
        bound += host.devices.iter().filter(|d| d.state == "bound").count();
        uses.count(&sc, &host);
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
        "device differential: {cases} scenarios, {refused} refused by the host (modkit's device policy acted in the simulator), {same} with one outcome under every seed, {covered} seed-dependent (host gave one of the simulator's outcomes; found within {most_seeds} seeds), {} diverged; {bound} devices bound on the host at the end",
        divergences.len()
    );
    eprintln!(
        "use_devres on the host: {} ok, {} ENXIO; resources freed under users (linux remark): {}; removes abandoned (modkit): {}",
        uses.ok, uses.enxio, uses.freed, uses.abandoned
    );
    // The refusal must not hollow the comparison out: most cases are compared.
    assert!(
        refused * 10 <= cases,
        "{refused} of {cases} refused: the generator makes too many cases the host cannot compare"
    );
    assert!(
        divergences.is_empty(),
        "{} of {cases} diverged:\n{}",
        divergences.len(),
        divergences.join("\n\n")
    );
}

/// Found by this test's generator (seed 1, case 53, before drivers of one device type were
/// kept in one module), reduced to a deterministic case: m0's d00 probes x0 from 0 to
/// 36 ms; m1's d10, registered at 11 ms, probes x1 (unbound then) from 11 to 51 ms. At
/// 36 ms d00's driver_attach() reaches x1, which d10 is probing: the kernel's
/// `__driver_attach()` takes the device lock (`__device_driver_lock()`) and waits, then
/// finds x1 bound and goes on; the host's driver core (the `modkit` library) does that, so
/// m0's init, whose last step sleeps 1 ms after the registration, ends at 52 ms. The
/// simulator did so too since h2's cba4c05 (before, it skipped a device being probed and
/// ended at 51 ms): both are judged here.
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
match = ["dev:t0*"]
probe = [{ sleep = "40ms" }]
[[device]]
name = "x"
count = 2
bus = "platform"
modalias = "dev:t0x"
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
        assert_eq!(unsupported_under(&sc, p, 0), None, "case {case}\n{text}");
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
