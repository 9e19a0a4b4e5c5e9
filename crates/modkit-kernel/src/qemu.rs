//! Booting a kernel with an initramfs under QEMU (TCG: /dev/kvm is not used), the console on
//! ttyS0 and the runner's report on ttyS1, each captured to a file, with a wall-clock limit.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::assets::KernelAssets;

/// Why a boot failed.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    /// qemu-system-x86_64 could not be started.
    #[error(
        "cannot start qemu-system-x86_64 ({0}); install it with: apt-get install qemu-system-x86"
    )]
    Missing(String),
    /// The guest did not power off in time.
    #[error("the guest did not finish within {limit:?}; console tail:\n{tail}")]
    Timeout {
        /// The limit.
        limit: Duration,
        /// The console's last lines.
        tail: String,
    },
    /// The kernel panicked or found no init.
    #[error("the guest kernel failed: {line}; console tail:\n{tail}")]
    Panic {
        /// The panic line.
        line: String,
        /// The console's last lines.
        tail: String,
    },
    /// A capture file could not be used.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// How to boot.
#[derive(Debug, Clone)]
pub struct BootOptions {
    /// Guest memory in MiB.
    pub memory_mb: u32,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Wall-clock limit for the whole boot.
    pub timeout: Duration,
    /// Appended to the kernel command line.
    pub extra_cmdline: String,
}

impl Default for BootOptions {
    fn default() -> Self {
        BootOptions {
            memory_mb: 1024,
            cpus: 2,
            timeout: Duration::from_secs(600),
            extra_cmdline: String::new(),
        }
    }
}

/// What a boot left.
#[derive(Debug, Clone)]
pub struct BootOutput {
    /// ttyS0: the kernel console (quiet) and /init's errors.
    pub console: String,
    /// ttyS1: the runner's report.
    pub report: Vec<u8>,
    /// Wall time of the boot.
    pub wall: Duration,
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Boots `initramfs` on the kernel and waits for the guest to power off.
pub fn boot(
    assets: &KernelAssets,
    initramfs: &Path,
    opts: &BootOptions,
) -> Result<BootOutput, QemuError> {
    let dir = initramfs.parent().unwrap_or(Path::new("."));
    let console_path = dir.join("console.txt");
    let report_path = dir.join("report.txt");
    for p in [&console_path, &report_path] {
        let _ = std::fs::remove_file(p);
    }
    // Boot overhead cut for TCG: no NIC (no iPXE option ROM to load and run), no EDD
    // probing, no CPU-vulnerability mitigations (retpolines, call-depth tracking and
    // friends are costly to emulate and touch nothing of the module loader).
    let cmdline = format!(
        "console=ttyS0 loglevel=1 panic=-1 rdinit=/init tsc=reliable no_timer_check edd=off mitigations=off {}",
        opts.extra_cmdline
    );
    let start = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-cpu", "max", "-nographic", "-no-reboot"])
        .args(["-m", &opts.memory_mb.to_string()])
        .args(["-smp", &opts.cpus.to_string()])
        .arg("-kernel")
        .arg(&assets.vmlinuz)
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", &cmdline])
        .args(["-monitor", "none", "-nic", "none"])
        .arg("-serial")
        .arg(format!("file:{}", console_path.display()))
        .arg("-serial")
        .arg(format!("file:{}", report_path.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| QemuError::Missing(e.to_string()))?;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) => {}
            Err(e) => return Err(QemuError::Missing(e.to_string())),
        }
        if start.elapsed() > opts.timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let wall = start.elapsed();
    let console =
        String::from_utf8_lossy(&std::fs::read(&console_path).unwrap_or_default()).into_owned();
    let report = std::fs::read(&report_path).unwrap_or_default();
    if status.is_none() {
        return Err(QemuError::Timeout {
            limit: opts.timeout,
            tail: tail(&console, 30),
        });
    }
    if let Some(line) = console
        .lines()
        .find(|l| l.contains("Kernel panic") || l.contains("No working init found"))
    {
        return Err(QemuError::Panic {
            line: line.to_string(),
            tail: tail(&console, 30),
        });
    }
    if let Some(s) = status {
        if !s.success() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            return Err(QemuError::Missing(format!(
                "qemu exited with {s}: {}",
                err.trim()
            )));
        }
    }
    Ok(BootOutput {
        console,
        report,
        wall,
    })
}
