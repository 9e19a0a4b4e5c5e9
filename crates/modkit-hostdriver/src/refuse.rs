//! What the host driver refuses to run, and why (docs/host-contract.md, "Devices").
//!
//! Two kinds of refusal:
//! - a whole file ([`file`]): it uses something the host's driver core does not model at all
//!   (the `use_devres` action);
//! - one policy of a file ([`under`]): under `modkit`, the simulator's run of the file acts
//!   through a part of modkit's own device policy that the host's driver core does not do
//!   (a remove callback abandoned after its bound). The simulator is asked, so a file whose
//!   modkit run never reaches that path still runs on the host. modkit's probe wait (a
//!   probe waiting for a loading module, a declined wait retried when the provider goes
//!   live) and a bus match that defers (`match_defer`) run on the host
//!   (`modkit`'s probewait.rs and matchdefer.rs).

use modkit_core::{DiagKind, Policy};
use modkit_sim::devices::DeviceAction;
use modkit_sim::scenario::{Action, Scenario};

/// Why the host cannot run `sc` under any policy, if it cannot.
pub(crate) fn file(sc: &Scenario) -> Option<String> {
    let f = &sc.file;
    if sc
        .all_actions()
        .iter()
        .any(|a| matches!(a, Action::Device(DeviceAction::UseDevres { .. })))
    {
        return Some(format!(
            "{f}: the action use_devres: the host's driver core has no Revocable access to a device's managed resources (nor unbind's revocation and drain of its users; docs/host-contract.md, \"Devices\"): run it with --driver sim"
        ));
    }
    None
}

/// Parts of modkit's own lines (crates/modkit-core/src/revocable.rs) that show the part of
/// its device policy the host does not do acted, with what each means. The unit test below
/// keeps them in step with the core's wording.
const MARKERS: [(&str, &str); 1] = [(
    "modkit abandons it",
    "unbind abandons a remove callback after its bound",
)];

/// The completions a driver's probe or remove body waits for without a bound.
fn callback_waits(sc: &Scenario) -> Vec<&str> {
    let mut out = Vec::new();
    for d in &sc.devices.drivers {
        for a in d.probe.iter().chain(&d.remove) {
            if let Action::WaitFor {
                name,
                timeout: None,
            } = a
            {
                out.push(name.as_str());
            }
        }
    }
    out
}

/// Why the host cannot run `sc` under `policy`, if it cannot: [`file`]; a simulated run
/// (same seed) that stalls in a driver's probe or remove callback (the host's driver core
/// lets a callback unwind when the run stalls: a remove returns and the unbind succeeds, a
/// probe fails, where the simulator leaves the callback parked and the event unfinished);
/// or under `modkit` a simulated run that went through modkit's device policy (see the
/// module doc).
pub(crate) fn under(sc: &Scenario, policy: Policy, seed: u64) -> Option<String> {
    if let Some(why) = file(sc) {
        return Some(why);
    }
    if !sc.devices.used {
        return None;
    }
    let run = modkit_sim::Sim::new(sc, policy, seed).run().ok()?;
    let waits = callback_waits(sc);
    let stuck = run.kernel.diagnostics.iter().find_map(|d| {
        if d.kind != DiagKind::Stalled {
            return None;
        }
        let text = std::iter::once(&d.message).chain(&d.chain);
        text.flat_map(|t| {
            waits
                .iter()
                .filter(move |w| t.contains(&format!("wait_for_completion({w})")))
        })
        .next()
    });
    if let Some(w) = stuck {
        return Some(format!(
            "{}: under {policy}, the simulated run stalls in a driver callback (wait_for_completion({w}) never returns): the host's driver core lets the callback unwind when the run stalls (a remove returns, its unbind succeeds) instead of leaving it parked (docs/host-contract.md, \"Devices\"): checked by --driver sim",
            sc.file
        ));
    }
    if !policy.is_modkit() {
        return None;
    }
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
    use modkit_core::{probewait, revocable, Policy};

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
    fn a_remove_that_never_returns_is_refused_under_every_policy() {
        let sc = gpu(r#"{ wait_for = "gpu_idle" }"#, "");
        assert_eq!(file(&sc), None);
        let why = under(&sc, "linux-6.1".parse().unwrap(), 0).unwrap();
        assert!(why.contains("wait_for_completion(gpu_idle)"), "{why}");
        // Under modkit the simulator abandons it after 5 s (its `stalled` names the wait).
        let why = under(&sc, Policy::Modkit, 0).unwrap();
        assert!(why.contains("under modkit"), "{why}");
    }

    #[test]
    fn use_devres_refuses_the_file_and_match_defer_does_not() {
        let sc = gpu(
            r#"{ sleep = "1ms" }"#,
            "[[event]]\nid = \"io\"\nat = \"2s\"\nrun = [{ use_devres = \"drm:card0\", for = \"1ms\" }]\n",
        );
        assert!(file(&sc).unwrap().contains("use_devres"));
        let text = GPU.replace("REMOVE", "").replace(
            "modalias = \"pci:v000010DEd00002684\"",
            "modalias = \"pci:v000010DEd00002684\"\nmatch_defer = \"clk:x\"",
        );
        let sc = modkit_sim::parse("t.toml", &text).unwrap();
        assert_eq!(file(&sc), None);
    }

    #[test]
    fn markers_match_the_core_wording() {
        assert!(revocable::remove_stall_message("d", "drv", "it waits").contains(MARKERS[0].0));
        // The probe wait's lines are not markers: the host prints them too.
        for m in MARKERS {
            assert!(!probewait::wait_line("d", "drv", "m", "clk:x").contains(m.0));
            assert!(!probewait::cycle_line("d", "drv", "m", "clk:x").contains(m.0));
        }
    }
}
