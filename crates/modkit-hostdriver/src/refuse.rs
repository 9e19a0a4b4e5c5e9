//! What the host driver refuses to run, and why (docs/host-contract.md, "Devices").
//!
//! Two kinds of refusal:
//! - a whole file ([`file`]): it uses something the host's driver core does not model at all
//!   (`probe_type = "async"`, a `[[device]]`'s `match_defer`);
//! - one policy of a file ([`under`]): under `modkit`, the simulator's run of the file acts
//!   through modkit's own device policy, which the host's driver core does not do (a probe
//!   waiting for a loading module, a pending device retried at once when its need appears).
//!   The simulator is asked, so a file whose modkit run never reaches these paths still
//!   runs on the host.
//!
//! `use_devres`, a driver callback that never returns and modkit's bounded unbind run on
//! the host (modkit's `unbind.rs`: the simulator's rules and words on the virtual clock).

use modkit_core::{DiagKind, Policy};
use modkit_sim::scenario::Scenario;

/// Why the host cannot run `sc` under any policy, if it cannot.
pub(crate) fn file(sc: &Scenario) -> Option<String> {
    let f = &sc.file;
    if sc.devices.drivers.iter().any(|d| d.async_probe) {
        return Some(format!(
            "{f}: a driver with probe_type = \"async\": the host's driver core probes it from a worker thread but a module's load does not wait for its async probes (async_synchronize_full() in do_init_module(); docs/host-contract.md, \"Devices\"): run it with --driver sim"
        ));
    }
    if let Some(d) = sc.devices.devices.iter().find(|d| d.match_defer.is_some()) {
        return Some(format!(
            "{f}: [[device]] `{}` has match_defer: the host's driver core has no bus match returning -EPROBE_DEFER (its match is the modalias only; docs/host-contract.md, \"Devices\"): run it with --driver sim",
            d.name
        ));
    }
    None
}

/// Parts of modkit's own lines (crates/modkit-core/src/probewait.rs, revocable.rs; the
/// simulator's sim/probewait.rs) that show its device policy acted, with what each means.
/// The unit test below keeps them in step with the core's wording.
const MARKERS: [(&str, &str); 3] = [
    (
        ") instead of deferring",
        "a probe waits for a loading module instead of deferring",
    ),
    (
        "its load cannot end before this probe does",
        "a probe declines a wait that would close a cycle and is retried when the provider goes live",
    ),
    (
        "is there now: the deferred probe is retried at once",
        "a pending device is retried at once when its need appears",
    ),
];

/// Why the host cannot run `sc` under `policy`, if it cannot: [`file`], or under `modkit`
/// a simulated run (same seed) that went through modkit's device policy (see the module
/// doc).
pub(crate) fn under(sc: &Scenario, policy: Policy, seed: u64) -> Option<String> {
    if let Some(why) = file(sc) {
        return Some(why);
    }
    if !sc.devices.used {
        return None;
    }
    if !policy.is_modkit() {
        return None;
    }
    let run = modkit_sim::Sim::new(sc, policy, seed).run().ok()?;
    let (_, what) = MARKERS.iter().find(|(m, _)| {
        run.kernel.diagnostics.iter().any(|d| {
            matches!(d.kind, DiagKind::Remark | DiagKind::Stalled) && d.message.contains(m)
        })
    })?;
    Some(format!(
        "{}: under modkit, the simulated run goes through modkit's device policy ({what}), which the host's driver core does not do (docs/host-contract.md, \"Devices\"): checked by --driver sim",
        sc.file
    ))
}

#[cfg(test)]
mod tests {
    use super::{file, under, MARKERS};
    use modkit_core::{probewait, Policy};

    const GPU: &str = r#"
[[module]]
name = "gpu"
[[module.driver]]
bus = "pci"
match = ["pci:v000010DEd*"]
probe = [{ devm = "drm:card0" }]
remove = [REMOVE]
[[device]]
name = "g0"
bus = "pci"
modalias = "pci:v000010DEd00002684"
[[event]]
id = "load"
modprobe = "gpu"
[[event]]
id = "unbind"
at = "1s"
unbind = "g0"
"#;

    fn gpu(remove: &str, extra: &str) -> modkit_sim::scenario::Scenario {
        let text = format!("{}{extra}", GPU.replace("REMOVE", remove));
        modkit_sim::parse("t.toml", &text).unwrap()
    }

    #[test]
    fn a_remove_that_returns_runs_everywhere() {
        let sc = gpu(r#"{ sleep = "1ms" }"#, "");
        for p in ["linux-6.1", "linux-4.4", "modkit"] {
            assert_eq!(under(&sc, p.parse::<Policy>().unwrap(), 0), None, "{p}");
        }
    }

    #[test]
    fn a_remove_that_never_returns_and_use_devres_run_everywhere() {
        let sc = gpu(
            r#"{ wait_for = "gpu_idle" }"#,
            "[[event]]\nid = \"io\"\nat = \"2s\"\nrun = [{ use_devres = \"drm:card0\", for = \"1ms\" }]\n",
        );
        assert_eq!(file(&sc), None);
        for p in ["linux-6.1", "modkit"] {
            assert_eq!(under(&sc, p.parse::<Policy>().unwrap(), 0), None, "{p}");
        }
    }

    #[test]
    fn match_defer_refuses_the_file() {
        let text = GPU.replace("REMOVE", "").replace(
            "modalias = \"pci:v000010DEd00002684\"",
            "modalias = \"pci:v000010DEd00002684\"\nmatch_defer = \"clk:x\"",
        );
        let sc = modkit_sim::parse("t.toml", &text).unwrap();
        assert!(file(&sc).unwrap().contains("match_defer"));
    }

    #[test]
    fn markers_match_the_core_wording() {
        assert!(probewait::wait_line("d", "drv", "m", "clk:x").contains(MARKERS[0].0));
        assert!(probewait::cycle_line("d", "drv", "m", "clk:x").contains(MARKERS[1].0));
    }
}
