//! The zero-time generator shared by the differential tests (random_differential.rs on
//! real threads, host_schedules.rs under shuttle's scheduler).

use std::fmt::Write as _;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A scenario whose init and exit bodies often take no virtual time, with same-instant
/// events (after the generator of an earlier session's helper branch). Imports point to
/// earlier modules and requests to later ones that do not import the requester, so loads
/// cannot restart each other for ever.
pub fn zero_time_scenario(rng: &mut ChaCha8Rng) -> String {
    let n = rng.gen_range(2..=5);
    let mut s = String::from("modprobe_time = \"1ms\"\n");
    let deps: Vec<Vec<usize>> = (0..n)
        .map(|i| (0..i).filter(|_| rng.gen_bool(0.3)).collect())
        .collect();
    // needs[j][i]: loading j loads i first (its import closure).
    let mut needs = vec![vec![false; n]; n];
    for j in 0..n {
        for &d in &deps[j] {
            needs[j][d] = true;
            let inherited = needs[d].clone();
            for (x, &b) in inherited.iter().enumerate() {
                needs[j][x] |= b;
            }
        }
    }
    for i in 0..n {
        let _ = writeln!(s, "\n[[module]]\nname = \"m{i}\"\nexports = [\"sym{i}\"]");
        let imports: Vec<String> = deps[i].iter().map(|j| format!("\"sym{j}\"")).collect();
        let _ = writeln!(s, "imports = [{}]", imports.join(", "));
        let targets: Vec<usize> = (i + 1..n).filter(|&j| !needs[j][i]).collect();
        for k in 0..rng.gen_range(0..=3) {
            let mut acts: Vec<String> = Vec::new();
            for _ in 0..rng.gen_range(0..=2) {
                match rng.gen_range(0..10) {
                    0..=2 => acts.push(format!("{{ sleep = \"{}ms\" }}", rng.gen_range(1..20))),
                    3 => acts.push(format!("{{ register = \"misc:m{i}s{k}\" }}")),
                    4 if !targets.is_empty() => {
                        let j = targets[rng.gen_range(0..targets.len())];
                        let w = if rng.gen_bool(0.5) {
                            ", wait = false"
                        } else {
                            ""
                        };
                        acts.push(format!("{{ request_module = \"m{j}\"{w} }}"));
                    }
                    5 if rng.gen_bool(0.4) => acts.push("{ fail = \"ENODEV\" }".into()),
                    _ => {}
                }
            }
            let undo = if acts.iter().any(|a| a.contains("register")) {
                format!("undo = [{{ unregister = \"misc:m{i}s{k}\" }}]")
            } else if rng.gen_bool(0.5) {
                format!("undo = [{{ sleep = \"{}ms\" }}]", rng.gen_range(1..10))
            } else {
                "undo = true".into()
            };
            let _ = writeln!(
                s,
                "[[module.init]]\nstep = \"s{k}\"\nrun = [{}]\n{undo}",
                acts.join(", ")
            );
        }
    }
    let mut at = 0u64;
    for e in 0..rng.gen_range(1..=6) {
        // Mostly spaced instants, often the same instant as the previous event.
        if e > 0 && rng.gen_bool(0.7) {
            at += rng.gen_range(1..=8) * 25;
        }
        let m = rng.gen_range(0..n);
        let threads = if rng.gen_bool(0.2) { 2 } else { 1 };
        let kind = match rng.gen_range(0..10) {
            0..=3 => format!("modprobe = \"m{m}\""),
            4 => format!("insmod = \"m{m}\""),
            5..=6 => format!("rmmod = \"m{m}\""),
            7 => format!("request_module = \"m{m}\"{}", if rng.gen_bool(0.5) { "\nwait = false" } else { "" }),
            8 => format!("run = [{{ get_module = \"m{m}\" }}, {{ sleep = \"10ms\" }}, {{ put_module = \"m{m}\" }}]"),
            _ => format!("rmmod = \"m{m}\"\nwait = true"),
        };
        let _ = writeln!(
            s,
            "\n[[event]]\nid = \"e{e}\"\nat = \"{at}ms\"\nthreads = {threads}\n{kind}"
        );
    }
    s
}
