//! The kmod-tools check (issue 12 items 2 and 3): boots a kernel with kmod 30's tools and
//! modkit's side by side, runs one command sequence with each (load with dependencies,
//! softdeps, options from modprobe.d, the kernel command line and the command line,
//! blacklists, removal with dependencies, failures, in-use refusals, forced removal and
//! loading, install/remove commands, dry runs, a compressed module) over a small
//! generated module tree, and compares every step's exit status, stdout, stderr and
//! /proc/modules byte for byte (the load-address column masked: it differs between any
//! two loads). In the same boot it runs the storms: 100 simultaneous `modprobe` of a
//! module whose init fails after 50 ms, and of one that loads after 50 ms, with each tool
//! set twice (kmod, modkit, modkit, kmod), counting inits (the module's own printk),
//! `init_module`/`finit_module` calls (syscall tracepoints) and wall time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{assets, build, initramfs, qemu};

/// The generated modules: (name, C source body after the common header).
const MODULES: &[(&str, &str)] = &[
    (
        "mt_base",
        "int mt_base_fn(void) { return 1; }\nEXPORT_SYMBOL(mt_base_fn);\nstatic int __init mtk_init(void) { return 0; }\n",
    ),
    (
        "mt_mid",
        "extern int mt_base_fn(void);\nint mt_mid_fn(void) { return mt_base_fn() + 1; }\nEXPORT_SYMBOL(mt_mid_fn);\nstatic int __init mtk_init(void) { return mt_base_fn() == 1 ? 0 : -EINVAL; }\n",
    ),
    (
        "mt_top",
        "extern int mt_mid_fn(void);\nstatic int __init mtk_init(void) { return mt_mid_fn() == 2 ? 0 : -EINVAL; }\n",
    ),
    ("mt_pre", "static int __init mtk_init(void) { return 0; }\n"),
    ("mt_post", "static int __init mtk_init(void) { return 0; }\n"),
    ("mt_soft", "static int __init mtk_init(void) { return 0; }\n"),
    (
        "mt_param",
        "static int val = 1;\nmodule_param(val, int, 0444);\nstatic char *name = \"none\";\nmodule_param(name, charp, 0444);\nstatic int __init mtk_init(void) { return 0; }\n",
    ),
    (
        "mt_black",
        "MODULE_ALIAS(\"mt-black-alias\");\nstatic int __init mtk_init(void) { return 0; }\n",
    ),
    (
        "mt_cmdblack",
        "MODULE_ALIAS(\"mt-cmdblack-alias\");\nstatic int __init mtk_init(void) { return 0; }\n",
    ),
    ("mt_inst", "static int __init mtk_init(void) { return 0; }\n"),
    ("mt_comp", "static int __init mtk_init(void) { return 0; }\n"),
    ("mt_fail", "static int __init mtk_init(void) { return -ENODEV; }\n"),
    (
        "mt_slowfail",
        "static int __init mtk_init(void) { pr_info(\"mt_slowfail: init\\n\"); msleep(50); return -ENODEV; }\n",
    ),
    (
        "mt_slowok",
        "static int __init mtk_init(void) { pr_info(\"mt_slowok: init\\n\"); msleep(50); return 0; }\n",
    ),
];

/// The guest's /etc/modprobe.d/mt.conf (`$T` is the tool set's directory).
const MODPROBE_CONF: &str = "softdep mt_soft pre: mt_pre post: mt_post
options mt_param val=3
blacklist mt_black
alias mt-conf-alias mt_pre
install mt_inst echo installing mt_inst $CMDLINE_OPTS; $T/modprobe --ignore-install mt_inst $CMDLINE_OPTS
remove mt_inst echo removing mt_inst; $T/modprobe -r --ignore-remove mt_inst
";

/// Kernel command-line options the sequence relies on.
const CMDLINE: &str = "mt_param.name=fromcmdline modprobe.blacklist=mt_cmdblack";

/// Busybox applets the guest scripts use.
const APPLETS: &[&str] = &[
    "sh", "mount", "cat", "echo", "grep", "rm", "dmesg", "uname", "sync", "poweroff",
];

/// An error of the check, naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolCheckError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A step before the boot failed (assets, build, image, compiler, strip).
    #[error("{0}")]
    Setup(String),
    /// The boot failed.
    #[error("boot: {0}")]
    Boot(#[from] qemu::QemuError),
    /// The guest's report is incomplete.
    #[error("the guest's report is incomplete (no @@done); console tail:\n{0}")]
    Incomplete(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ToolCheckError + '_ {
    move |source| ToolCheckError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// One step's observation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// The command (tool name and arguments).
    pub label: String,
    /// Exit status.
    pub rc: String,
    /// Standard output.
    pub out: String,
    /// Standard error.
    pub err: String,
    /// /proc/modules afterwards, load addresses masked.
    pub mods: String,
}

/// One storm's observation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Storm {
    /// `kmod` or `modkit`.
    pub set: String,
    /// The module.
    pub module: String,
    /// Inits the module ran (its printk lines).
    pub inits: u32,
    /// `init_module` + `finit_module` calls.
    pub calls: u32,
    /// Whether the module is loaded afterwards.
    pub loaded: u32,
    /// Wall time from release to the last exit, ms.
    pub wall_ms: f64,
    /// CPU time of all callers together (user, system), ms, from `wait4`'s rusage.
    pub cpu_ms: (f64, f64),
    /// Minor page faults of all callers together.
    pub minflt: u64,
    /// `exit STATUS xCOUNT` lines.
    pub exits: Vec<String>,
    /// Distinct outputs with their counts.
    pub outputs: Vec<(u32, String)>,
}

/// What a boot found.
#[derive(Debug, Clone, Default)]
pub struct ToolReport {
    /// The kernel.
    pub kver: String,
    /// Steps compared.
    pub steps: usize,
    /// Each difference, described.
    pub diffs: Vec<String>,
    /// The storms.
    pub storms: Vec<Storm>,
    /// Boot wall time.
    pub wall: std::time::Duration,
}

impl std::fmt::Display for ToolReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "kmod tools on {}: {} steps, {} differences (boot {:.1} s)",
            self.kver,
            self.steps,
            self.diffs.len(),
            self.wall.as_secs_f64()
        )?;
        for d in &self.diffs {
            writeln!(f, "  DIFF {d}")?;
        }
        for s in &self.storms {
            writeln!(
                f,
                "  storm {:<6} 100 x modprobe {:<11}: inits {:>3}, (f)init_module calls {:>3}, wall {:>7.1} ms, cpu {:.0}+{:.0} ms, minflt {}, loaded {}, {}",
                s.set,
                s.module,
                s.inits,
                s.calls,
                s.wall_ms,
                s.cpu_ms.0,
                s.cpu_ms.1,
                s.minflt,
                s.loaded,
                s.exits.join(", ")
            )?;
            for (n, text) in &s.outputs {
                let t = text.trim_end().replace('\n', " | ");
                writeln!(
                    f,
                    "      x{n}: {}",
                    if t.is_empty() { "(no output)" } else { &t }
                )?;
            }
        }
        Ok(())
    }
}

/// Masks the load address (`0x...`) of each /proc/modules line.
pub fn mask_addresses(mods: &str) -> String {
    mods.split_inclusive('\n')
        .map(|l| {
            let (body, nl) = match l.strip_suffix('\n') {
                Some(b) => (b, "\n"),
                None => (l, ""),
            };
            let masked: Vec<&str> = body
                .split(' ')
                .map(|w| if w.starts_with("0x") { "ADDR" } else { w })
                .collect();
            format!("{}{nl}", masked.join(" "))
        })
        .collect()
}

/// Text between `start` and `end` markers (the guest adds one newline before each end
/// marker, removed here).
fn between<'a>(s: &'a str, start: &str, end: &str) -> &'a str {
    let Some(i) = s.find(start) else { return "" };
    let rest = &s[i + start.len()..];
    let j = rest.find(end).unwrap_or(rest.len());
    &rest[..j]
}

/// Parses the guest's report into steps by (set, number) and storms.
pub fn parse_report(text: &str) -> (BTreeMap<(String, usize), Step>, Vec<Storm>) {
    let text = text.replace('\r', "");
    let mut steps = BTreeMap::new();
    for block in text.split("@@step ").skip(1) {
        let block = block.split("@@end\n").next().unwrap_or("");
        let (head, body) = block.split_once('\n').unwrap_or((block, ""));
        let mut hw = head.splitn(3, ' ');
        let set = hw.next().unwrap_or("").to_string();
        let n: usize = hw.next().and_then(|x| x.parse().ok()).unwrap_or(0);
        let label = hw.next().unwrap_or("").to_string();
        let body = format!("\n{body}");
        let step = Step {
            label,
            rc: between(&body, "\n@@rc ", "\n").to_string(),
            out: between(&body, "\n@@out\n", "\n@@err\n").to_string(),
            err: between(&body, "\n@@err\n", "\n@@mods\n").to_string(),
            mods: mask_addresses(
                between(&body, "\n@@mods\n", "\u{0}")
                    .strip_suffix('\n')
                    .unwrap_or_default(),
            ),
        };
        steps.insert((set, n), step);
    }
    let mut storms = Vec::new();
    for block in text.split("@@storm ").skip(1) {
        let block = block.split("@@stormend").next().unwrap_or("");
        let block = block.split("@@trace\n").next().unwrap_or("");
        let block = block.split("@@times\n").next().unwrap_or("");
        let (head, body) = block.split_once('\n').unwrap_or((block, ""));
        let mut hw = head.split(' ');
        let mut s = Storm {
            set: hw.next().unwrap_or("").into(),
            module: hw.next().unwrap_or("").into(),
            ..Default::default()
        };
        for kv in hw {
            let (k, v) = kv.split_once('=').unwrap_or((kv, "0"));
            let v: u32 = v.trim().parse().unwrap_or(0);
            match k {
                "inits" => s.inits = v,
                "calls" => s.calls = v,
                "loaded" => s.loaded = v,
                _ => {}
            }
        }
        let mut lines = body.split('\n').peekable();
        while let Some(l) = lines.next() {
            if let Some(w) = l.strip_prefix("wall_ms ") {
                s.wall_ms = w.trim().parse().unwrap_or(0.0);
            } else if let Some(c) = l.strip_prefix("cpu_ms ") {
                // `user U sys S minflt F`
                let w: Vec<&str> = c.split_whitespace().collect();
                let num = |i: usize| w.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
                s.cpu_ms = (num(1), num(3));
                s.minflt = num(5) as u64;
            } else if l.starts_with("exit ") {
                s.exits.push(l.to_string());
            } else if let Some(c) = l.strip_prefix("output x") {
                let n = c.trim().parse().unwrap_or(0);
                let mut t = String::new();
                for l2 in lines.by_ref() {
                    if l2 == "@@" {
                        break;
                    }
                    if let Some(x) = l2.strip_suffix("@@") {
                        t.push_str(x);
                        break;
                    }
                    t.push_str(l2);
                    t.push('\n');
                }
                s.outputs.push((n, t));
            }
        }
        storms.push(s);
    }
    (steps, storms)
}

/// `TOOL: DETAIL: ...`: modkit's second line after a kmod message.
fn is_detail_line(l: &str) -> bool {
    l.split_once(": DETAIL: ")
        .is_some_and(|(tool, _)| !tool.is_empty() && tool.bytes().all(|b| b.is_ascii_lowercase()))
}

/// Compares the kmod and modkit steps.
pub fn compare(steps: &BTreeMap<(String, usize), Step>) -> (usize, Vec<String>) {
    let mut diffs = Vec::new();
    let mut n = 0;
    for ((set, i), k) in steps {
        if set != "kmod" {
            continue;
        }
        n += 1;
        let Some(m) = steps.get(&("modkit".to_string(), *i)) else {
            diffs.push(format!("step {i} `{}`: modkit did not run it", k.label));
            continue;
        };
        // modkit prints kmod's message, then may add its own detail on a second line
        // (`TOOL: DETAIL: ...`, modkit_ko::error::detail_line): not compared.
        let merr: String = m
            .err
            .split_inclusive('\n')
            .filter(|l| !is_detail_line(l))
            .collect();
        for (what, a, b) in [
            ("exit status", &k.rc, &m.rc),
            ("stdout", &k.out, &m.out),
            ("stderr", &k.err, &merr),
            ("/proc/modules", &k.mods, &m.mods),
        ] {
            if a != b {
                diffs.push(format!(
                    "step {i} `{}`: {what}\n    kmod:   {:?}\n    modkit: {:?}",
                    k.label, a, b
                ));
            }
        }
    }
    (n, diffs)
}

fn module_source(name: &str, body: &str) -> String {
    format!(
        "// generated by modkit-kernel toolcheck\n#include <linux/module.h>\n#include <linux/init.h>\n#include <linux/delay.h>\nMODULE_LICENSE(\"GPL\");\nMODULE_DESCRIPTION(\"{name}\");\n{body}static void __exit mtk_exit(void) {{ }}\nmodule_init(mtk_init);\nmodule_exit(mtk_exit);\n"
    )
}

fn run_cmd(cmd: &mut Command) -> Result<(), ToolCheckError> {
    let desc = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| ToolCheckError::Setup(format!("{desc}: {e}")))?;
    if !out.status.success() {
        return Err(ToolCheckError::Setup(format!(
            "{desc}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

/// Measurement knobs of a boot (CI uses the defaults).
#[derive(Debug, Clone, Default)]
pub struct ToolCheckOptions {
    /// Skip the command sequence: only the storms run (no steps are compared).
    pub storm_only: bool,
    /// Rounds of storms (each round: kmod, modkit, modkit, kmod per module); 0 means 1.
    pub rounds: u32,
    /// Record each storm's process and system-call trace (CLOCK_MONOTONIC) into the
    /// report (`@@trace` blocks in `WORK/report.txt`) for a per-phase timing.
    pub trace: bool,
    /// Also run storms of cheaper commands (`busybox true`, `modprobe -V`, `modprobe -n`:
    /// `@@phase` blocks) and record modkit's own phase times (`MODKIT_TRACE_TIMES`,
    /// `@@times` blocks).
    pub phases: bool,
}

impl ToolCheckOptions {
    /// The knobs from the environment: `MODKIT_TOOLS_STORM_ONLY=1`,
    /// `MODKIT_TOOLS_ROUNDS=N`, `MODKIT_TOOLS_TRACE=1`, `MODKIT_TOOLS_PHASES=1`.
    pub fn from_env() -> ToolCheckOptions {
        let on = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty() && v != "0");
        ToolCheckOptions {
            storm_only: on("MODKIT_TOOLS_STORM_ONLY"),
            rounds: std::env::var("MODKIT_TOOLS_ROUNDS")
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(1),
            trace: on("MODKIT_TOOLS_TRACE"),
            phases: on("MODKIT_TOOLS_PHASES"),
        }
    }

    fn cmdline(&self) -> String {
        let mut c = String::new();
        if self.storm_only {
            c.push_str(" mt_storm_only");
        }
        if self.rounds > 1 {
            c.push_str(&format!(" mt_rounds={}", self.rounds));
        }
        if self.trace {
            c.push_str(" mt_trace");
        }
        if self.phases {
            c.push_str(" mt_phases");
        }
        c
    }
}

/// Boots `kver` with kmod 30 and the `modkit` binary at `modkit`, runs the sequence and
/// the storms, and reports. `work` holds the build, image, console and report.
pub fn run(kver: &str, modkit: &Path, work: &Path) -> Result<ToolReport, ToolCheckError> {
    run_with(kver, modkit, work, &ToolCheckOptions::default())
}

/// [`run`] with measurement knobs.
pub fn run_with(
    kver: &str,
    modkit: &Path,
    work: &Path,
    topts: &ToolCheckOptions,
) -> Result<ToolReport, ToolCheckError> {
    let ka = assets::kernel(kver).map_err(|e| ToolCheckError::Setup(e.to_string()))?;
    let tools = assets::guest_tools().map_err(|e| ToolCheckError::Setup(e.to_string()))?;
    let src = work.join("src");
    std::fs::create_dir_all(&src).map_err(io(&src))?;
    let mut kbuild = String::from("obj-m +=");
    for (name, body) in MODULES {
        let p = src.join(format!("{name}.c"));
        std::fs::write(&p, module_source(name, body)).map_err(io(&p))?;
        kbuild.push_str(&format!(" {name}.o"));
    }
    kbuild.push('\n');
    std::fs::write(src.join("Kbuild"), kbuild).map_err(io(&src))?;
    let kos = build::build_modules(&ka, &src).map_err(|e| ToolCheckError::Setup(e.to_string()))?;
    let built: Vec<(String, PathBuf)> = kos
        .iter()
        .map(|p| {
            let n = p
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            (n, p.clone())
        })
        .collect();
    let root = work.join("root");
    let _ = std::fs::remove_dir_all(&root);
    let moddir = build::stage_tree(&ka, &built, &[], &root)
        .map_err(|e| ToolCheckError::Setup(e.to_string()))?;
    // mt_comp as .ko.xz (crc32 check, as Debian's kernels compress), then re-index.
    let comp = moddir.join("extra/mt_comp.ko");
    run_cmd(Command::new("xz").args(["--check=crc32", "-f"]).arg(&comp))?;
    let opts = modkit_ko::depmod::DepmodOptions {
        basedir: Some(root.clone()),
        kversion: ka.kver.clone(),
        symvers: Some(ka.symvers.clone()),
        ..Default::default()
    };
    let (mut o, mut e) = (Vec::new(), Vec::new());
    let code = modkit_ko::depmod::run(&opts, &mut o, &mut e)
        .map_err(|err| ToolCheckError::Setup(format!("depmod: {err}")))?;
    if code != 0 {
        return Err(ToolCheckError::Setup(format!(
            "depmod: {}",
            String::from_utf8_lossy(&e)
        )));
    }
    // storm helper, static
    let storm_c = work.join("storm.c");
    std::fs::write(&storm_c, include_str!("../guest/tools/storm.c")).map_err(io(&storm_c))?;
    let storm = work.join("storm");
    run_cmd(
        Command::new("gcc")
            .args(["-std=gnu11", "-static", "-O2", "-Wall", "-o"])
            .arg(&storm)
            .arg(&storm_c),
    )?;
    // modkit without debug info, with its shared libraries
    let mk = work.join("modkit");
    run_cmd(Command::new("strip").arg("-o").arg(&mk).arg(modkit))?;
    let mk_libs = assets::shared_libs(&mk).map_err(|e| ToolCheckError::Setup(e.to_string()))?;

    let mut img = initramfs::Image::new();
    for d in [
        "proc", "sys", "dev", "run", "tmp", "etc", "root", "sbin", "bin",
    ] {
        img.add_dir(d);
    }
    let ie = |e: initramfs::ImageError| ToolCheckError::Setup(e.to_string());
    img.add_bytes(
        "init",
        include_bytes!("../guest/tools/init.sh").to_vec(),
        0o755,
    );
    img.add_bytes(
        "seq.sh",
        include_bytes!("../guest/tools/seq.sh").to_vec(),
        0o755,
    );
    img.add_file("bin/busybox", &tools.busybox, 0o755)
        .map_err(ie)?;
    for a in APPLETS {
        img.add_symlink(&format!("bin/{a}"), "busybox");
    }
    img.add_file("bin/kmod", &tools.kmod, 0o755).map_err(ie)?;
    img.add_file("mb/modkit", &mk, 0o755).map_err(ie)?;
    for t in ["modprobe", "insmod", "rmmod", "lsmod", "depmod", "modinfo"] {
        img.add_symlink(&format!("kb/{t}"), "/bin/kmod");
        img.add_symlink(&format!("mb/{t}"), "modkit");
    }
    for lib in tools.kmod_libs.iter().chain(&mk_libs) {
        let real = std::fs::canonicalize(lib).map_err(io(lib))?;
        img.add_file(&lib.to_string_lossy(), &real, 0o755)
            .map_err(ie)?;
    }
    img.add_file("storm", &storm, 0o755).map_err(ie)?;
    img.add_bytes(
        "etc/modprobe.d/mt.conf",
        MODPROBE_CONF.as_bytes().to_vec(),
        0o644,
    );
    img.add_tree("lib/modules", &root.join("lib/modules"))
        .map_err(ie)?;
    let image = work.join("initramfs.cpio");
    img.write(&image).map_err(ie)?;

    let opts = qemu::BootOptions {
        extra_cmdline: format!("{CMDLINE}{}", topts.cmdline()),
        timeout: std::time::Duration::from_secs(900),
        ..Default::default()
    };
    let out = qemu::boot(&ka, &image, &opts)?;
    let text = String::from_utf8_lossy(&out.report).into_owned();
    if !text.contains("@@done") {
        let lines: Vec<&str> = out.console.lines().collect();
        return Err(ToolCheckError::Incomplete(
            lines[lines.len().saturating_sub(30)..].join("\n"),
        ));
    }
    let (steps, storms) = parse_report(&text);
    let (n, diffs) = compare(&steps);
    let mut report = ToolReport {
        kver: kver.to_string(),
        steps: n,
        diffs,
        storms,
        wall: out.wall,
    };
    if n == 0 && !topts.storm_only {
        report.diffs.push("no steps reported".into());
    }
    let mut listing = String::new();
    for ((set, i), s) in &steps {
        let _ = writeln!(
            listing,
            "== {set} {i} {}\nrc {}\n-- out\n{}\n-- err\n{}\n-- mods\n{}\n",
            s.label, s.rc, s.out, s.err, s.mods
        );
    }
    let lp = work.join("steps.txt");
    std::fs::write(&lp, listing).map_err(io(&lp))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modkit_detail_lines_are_not_compared() {
        let step = |err: &str| Step {
            label: "modinfo /tmp/bad.ko".into(),
            err: err.into(),
            ..Default::default()
        };
        let kmod = "modinfo: ERROR: could not get modinfo from 'bad': Exec format error\n";
        let mut steps = BTreeMap::new();
        steps.insert(("kmod".to_string(), 1), step(kmod));
        let with_detail = format!("{kmod}modinfo: DETAIL: malformed ELF: bad ELF magic\n");
        steps.insert(("modkit".to_string(), 1), step(&with_detail));
        assert_eq!(compare(&steps), (1, Vec::new()));
        // Anything else in modkit's stderr still counts.
        let other = format!("{kmod}modinfo: ERROR: more\n");
        steps.insert(("modkit".to_string(), 1), step(&other));
        assert_eq!(compare(&steps).1.len(), 1);
        assert!(!is_detail_line("x: ERROR: a: DETAIL: b\n"));
    }

    #[test]
    fn parses_steps_and_storms() {
        let text = "@@step kmod 1 modprobe mt_top\r\n@@rc 0\n@@out\n\n@@err\nmodprobe: ERROR: x\n\n@@mods\nmt_top 16384 0 - Live 0xffffffffc0001000\n\n@@end\n\
@@step modkit 1 modprobe mt_top\n@@rc 0\n@@out\n\n@@err\nmodprobe: ERROR: y\n\n@@mods\nmt_top 16384 0 - Live 0xffffffffc0002000\n\n@@end\n\
@@storm kmod mt_slowfail inits=1 calls=100 loaded=0\nwall_ms 812.5\ncpu_ms user 1200.5 sys 800.0 minflt 9000\nexit 1 x100\noutput x99\nmodprobe: ERROR: could not insert 'mt_slowfail': Device or resource busy\n@@\noutput x1\nmodprobe: ERROR: could not insert 'mt_slowfail': No such device\n@@\n@@stormend\n@@done\n";
        let (steps, storms) = parse_report(text);
        assert_eq!(steps.len(), 2);
        let k = &steps[&("kmod".to_string(), 1)];
        assert_eq!(k.err, "modprobe: ERROR: x\n");
        assert_eq!(k.out, "");
        assert_eq!(k.mods, "mt_top 16384 0 - Live ADDR\n");
        let (n, diffs) = compare(&steps);
        assert_eq!(n, 1);
        assert_eq!(diffs.len(), 1, "{diffs:?}");
        assert!(diffs[0].contains("stderr"));
        assert_eq!(storms.len(), 1);
        assert_eq!(storms[0].calls, 100);
        assert_eq!(storms[0].wall_ms, 812.5);
        assert_eq!(storms[0].cpu_ms, (1200.5, 800.0));
        assert_eq!(storms[0].minflt, 9000);
        assert_eq!(storms[0].outputs.len(), 2);
        assert_eq!(storms[0].outputs[0].0, 99);
    }
}
