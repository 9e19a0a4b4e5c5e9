//! kmod 30 vs modkit's module tools on real kernels (issue 12 items 2 and 3): one QEMU
//! boot per kernel runs the same command sequence with both tool sets and compares exit
//! statuses, stdout, stderr and /proc/modules byte for byte, then runs the modprobe
//! storms. Needs the kernel packages (cached by the kernel driver), qemu-system-x86_64,
//! gcc and a release build of `modkit` (`$MODKIT`, default target/release/modkit):
//!
//! ```sh
//! cargo build --release --bin modkit
//! cargo test --release -p modkit-kernel --test kmod_tools -- --ignored --test-threads=1 --nocapture
//! ```

use std::path::PathBuf;

fn modkit_bin() -> PathBuf {
    match std::env::var("MODKIT") {
        Ok(p) => PathBuf::from(p),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/modkit"),
    }
}

fn check(kver: &str) {
    let bin = modkit_bin();
    assert!(
        bin.is_file(),
        "{} missing: cargo build --release --bin modkit",
        bin.display()
    );
    let work = std::env::temp_dir().join(format!("modkit-kmod-tools-{kver}"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    // MODKIT_TOOLS_STORM_ONLY / _ROUNDS / _TRACE: measurement runs (toolcheck.rs)
    let topts = modkit_kernel::toolcheck::ToolCheckOptions::from_env();
    let report = modkit_kernel::toolcheck::run_with(kver, &bin, &work, &topts)
        .unwrap_or_else(|e| panic!("kmod-tools check on {kver}: {e}"));
    println!("{report}");
    println!(
        "(steps of both tool sets: {0}/steps.txt; the guest's report: {0}/report.txt)",
        work.display()
    );
    if !topts.storm_only {
        assert!(report.steps >= 60, "only {} steps ran", report.steps);
    }
    assert!(
        report.diffs.is_empty(),
        "{} differences between kmod 30 and modkit on {kver}:\n{report}",
        report.diffs.len()
    );
    // The storms: every modkit caller gets the real outcome (the init's ENODEV, or
    // success), and modkit calls the kernel no more often than kmod does.
    for m in report.storms.iter().filter(|s| s.set == "modkit") {
        let kmod_calls = report
            .storms
            .iter()
            .filter(|s| s.set == "kmod" && s.module == m.module)
            .map(|s| s.calls)
            .min()
            .expect("kmod storm");
        let want_exit = if m.module == "mt_slowok" {
            "exit 0 x100"
        } else {
            "exit 1 x100"
        };
        assert_eq!(m.exits, vec![want_exit.to_string()], "{report}");
        if m.module == "mt_slowfail" {
            assert!(
                m.outputs.iter().all(|(_, t)| t.contains("No such device")),
                "a modkit caller did not get the init's error: {report}"
            );
        }
        assert!(
            m.calls <= kmod_calls,
            "modkit called the kernel more often: {report}"
        );
        assert!(m.calls >= 1 && m.inits >= 1, "{report}");
    }
    assert_eq!(
        report.storms.len(),
        8 * topts.rounds.max(1) as usize,
        "{report}"
    );
}

#[test]
#[ignore = "boots a real kernel under QEMU (about a minute)"]
fn kmod_tools_linux_6_1() {
    check("6.1.0-50-cloud-amd64");
}

#[test]
#[ignore = "boots a real kernel under QEMU (about a minute)"]
fn kmod_tools_linux_6_12() {
    check("6.12.117+deb12-cloud-amd64");
}
