//! `modkit`: run and check module-loading scenarios under virtual time, with modkit's
//! semantics or those of a chosen Linux version.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use modkit_core::Policy;
use modkit_sim::observed::Observed;
use modkit_sim::{Run, Scenario};

mod heap;
mod kernel;
mod ko;
mod sign;

#[global_allocator]
static HEAP: heap::Counting = heap::Counting;

/// Which driver runs a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Driver {
    /// The deterministic simulator (one thread, virtual time).
    Sim,
    /// The host driver: every actor on a real thread, the core behind a mutex, a virtual
    /// clock that advances when every thread is parked.
    Host,
    /// A real Linux kernel booted in QEMU (`--kernel KVER`): the scenario's modules are
    /// generated as C, built against that kernel's headers and run by a guest program.
    Kernel,
}

/// A run's failure: the simulator's ([`modkit_sim::SimError`]) or the host driver's
/// ([`modkit_hostdriver::ScenarioError`]).
type RunError = Box<dyn std::error::Error>;

fn run(sc: &Scenario, policy: Policy, seed: u64, driver: Driver) -> Result<Run, RunError> {
    match driver {
        Driver::Host => Ok(modkit_hostdriver::run_scenario(sc, policy, seed)?),
        Driver::Sim | Driver::Kernel => {
            let mut line = ProgressLine::new(&sc.file);
            let run = modkit_sim::Sim::new(sc, policy, seed)
                .with_history()
                .with_progress(|p| line.show(p))
                .run();
            line.finish();
            Ok(run?)
        }
    }
}

/// The progress line on stderr of a simulation that runs longer than a second, shown only
/// when stderr is a terminal and erased when the run ends.
struct ProgressLine<'a> {
    file: &'a str,
    start: std::time::Instant,
    enabled: bool,
    shown: bool,
    /// When the line was last redrawn (at most five times a second).
    last: std::time::Instant,
}

impl<'a> ProgressLine<'a> {
    fn new(file: &'a str) -> Self {
        use std::io::IsTerminal;
        ProgressLine {
            file,
            start: std::time::Instant::now(),
            enabled: std::io::stderr().is_terminal(),
            shown: false,
            last: std::time::Instant::now(),
        }
    }

    fn show(&mut self, p: &modkit_sim::Progress) {
        if !self.enabled
            || self.start.elapsed() < std::time::Duration::from_secs(1)
            || (self.shown && self.last.elapsed() < std::time::Duration::from_millis(200))
        {
            return;
        }
        self.last = std::time::Instant::now();
        eprint!(
            "\r\x1b[K{}",
            progress_text(self.file, p, self.start.elapsed())
        );
        self.shown = true;
    }

    fn finish(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
        }
    }
}

/// One progress line: where the run stands in virtual time, steps against the budget, tasks
/// and inits, and the wall time so far.
fn progress_text(file: &str, p: &modkit_sim::Progress, wall: std::time::Duration) -> String {
    format!(
        "modkit: {file}: {:.3} s virtual, {} of {} steps ({:.0}%), {} tasks, {} inits, events {}/{} [{:.1} s]",
        p.time as f64 / 1e9,
        p.steps,
        p.budget,
        100.0 * p.steps as f64 / p.budget.max(1) as f64,
        p.tasks,
        p.inits,
        p.events.0,
        p.events.1,
        wall.as_secs_f64()
    )
}

/// Output that ends quietly when the reader goes away (`modkit … | head -1`), as kmod's
/// tools do, instead of panicking on a closed pipe.
pub(crate) fn out(text: &str) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_all(text.as_bytes()).and_then(|()| o.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("modkit: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

#[macro_export]
macro_rules! outln {
    ($($t:tt)*) => { $crate::out(&format!("{}\n", format_args!($($t)*))) };
}

/// modkit: the Linux kernel's module system, rebuilt in Rust, simulated from scenario files.
#[derive(Debug, Parser)]
#[command(name = "modkit", version, about)]
struct Cli {
    /// Stop a simulation whose heap grows past this size, with an error saying so (bytes,
    /// or with K, M, G, T: powers of 1024).
    #[arg(long, global = true, default_value = "2G", value_parser = heap::parse_size)]
    max_memory: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one scenario and print the log, the module table, event results and diagnostics.
    Simulate {
        /// The scenario file (TOML, format 1). Optional with --tree.
        #[arg(required_unless_present = "tree")]
        file: Option<PathBuf>,
        /// Without a file: import every module of this lib/modules/VERSION tree and
        /// modprobe each one (the report lists any symbol that does not resolve).
        #[arg(long, value_name = "PATH", conflicts_with = "file")]
        tree: Option<PathBuf>,
        /// With --tree: vmlinux's exports (default: the tree's build/Module.symvers).
        #[arg(long, value_name = "FILE", requires = "tree")]
        symvers: Option<PathBuf>,
        /// With --tree: instead of modprobing every module, simulate the coldplug of this
        /// machine's devices (one `BUS NAME MODALIAS` per line, as captured from /sys; see
        /// docs/scenario-format.md): which modules udev loads, which driver binds each device.
        #[arg(long, value_name = "FILE", requires = "tree")]
        devices: Option<PathBuf>,
        /// Override the policy: "modkit", or a kernel "linux-X.Y" / "linux-X.Y.Z" from linux-4.4
        /// to linux-7.2 (stable patch levels apply their loader backports).
        #[arg(long)]
        policy: Option<Policy>,
        /// Override the tie-break seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Run on the simulator or on real threads.
        #[arg(long, value_enum, default_value_t = Driver::Sim)]
        driver: Driver,
        /// Also draw the run: each module's state over virtual time, as an SVG file.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
        /// With --driver kernel: the Debian kernel ABI name, e.g. 6.1.0-50-cloud-amd64.
        #[arg(long, value_name = "KVER", required_if_eq("driver", "kernel"))]
        kernel: Option<String>,
        /// With --driver kernel: keep the generated sources, image, console and report here.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
    },
    /// Run every [[expect]] block of each file and print one line per block.
    Check {
        /// Scenario files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Override every file's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Run on the simulator, on real threads or on a real kernel.
        #[arg(long, value_enum, default_value_t = Driver::Sim)]
        driver: Driver,
        /// With --driver kernel: the Debian kernel ABI name. Only the blocks whose policy
        /// gives that kernel's loader behaviour are checked; the others are skipped.
        #[arg(long, value_name = "KVER", required_if_eq("driver", "kernel"))]
        kernel: Option<String>,
    },
    /// Run scenarios on a real kernel and print them beside the simulator under the
    /// matching policy (and the host driver): results, init counts, states, refcounts,
    /// holders and log lines, with every difference listed. Exits 1 on any difference in
    /// behaviour; timing differences within the emulation tolerance are reported only.
    Compare {
        /// Scenario files (one boot each).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The Debian kernel ABI name, e.g. 6.1.0-50-cloud-amd64.
        #[arg(long, value_name = "KVER")]
        kernel: String,
        /// The simulator's policy (default: linux-X.Y.Z of that kernel).
        #[arg(long)]
        policy: Option<Policy>,
        /// Also check the files' [[expect]] blocks that apply to that kernel, on the same boot.
        #[arg(long)]
        check: bool,
        /// Keep each run's work directory under DIR/<file stem>.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
        /// Print one JSON object per file instead of text.
        #[arg(long)]
        json: bool,
    },
    /// kmod 30-compatible depmod: write modules.dep, .alias, .symbols, .softdep, .devname
    /// and the .bin indexes of a real module tree.
    Depmod(crate::ko::DepmodArgs),
    /// kmod 30-compatible modinfo for module files, names or aliases.
    Modinfo(crate::ko::ModinfoArgs),
    /// kmod 30-compatible modprobe: load or remove (-r) modules with their dependencies,
    /// softdeps, modprobe.d and kernel command-line options; -n, -v, -q, -a, -c, -D, -R, -f,
    /// --first-time (run `modkit modprobe -h` for all options).
    #[command(disable_help_flag = true)]
    Modprobe {
        /// kmod's modprobe options and arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// kmod 30-compatible insmod: insert a module file with parameters.
    #[command(disable_help_flag = true)]
    Insmod {
        /// kmod's insmod options and arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// kmod 30-compatible rmmod: remove modules (-f forces).
    #[command(disable_help_flag = true)]
    Rmmod {
        /// kmod's rmmod options and arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Sign a plugin (or .ko) in the kernel's module-signature format, as the kernel's
    /// scripts/sign-file does: a detached PKCS#7 SignedData (signer by issuer and serial,
    /// no certificates, no signed attributes), struct module_signature and
    /// "~Module signature appended~".
    Sign(crate::sign::SignArgs),
    /// Verify module signatures against certificates, as the kernel and
    /// Host::with_keyring do: prints `FILE: ok (...)` or `FILE: ERRNO: reason`.
    VerifySig(crate::sign::VerifyArgs),
    /// kmod 30-compatible lsmod: the loaded modules from /proc/modules and /sys/module.
    #[command(disable_help_flag = true)]
    Lsmod {
        /// (lsmod takes no arguments.)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// Runs a kmod tool on its raw command line (`tool` becomes argv[0]).
fn run_kmod_tool(tool: &str, rest: &[String]) -> ExitCode {
    let mut argv = vec![tool.to_string()];
    argv.extend(rest.iter().cloned());
    let code = modkit_ko::ops::run_tool(tool, &argv).unwrap_or(1);
    ExitCode::from(code as u8)
}

/// The multicall front end: installed (or linked) as insmod, rmmod, lsmod, modprobe,
/// modinfo or depmod, modkit acts as that tool, as kmod does; `modkit insmod ...` etc.
/// run the same code with kmod's own option parsing. `None`: an ordinary modkit command.
///
/// Arguments are taken as bytes ([`modkit_ko::bytestr`]): a module file named
/// `caf\xe9.ko` is a valid argument. Only the tool's own arguments are parsed: kmod's
/// getopt for insmod/rmmod/lsmod/modprobe, and for modinfo and depmod a clap command
/// built for that tool alone (building modkit's whole command tree was 13% of
/// `modprobe -D`'s instructions).
fn multicall() -> Option<ExitCode> {
    let args: Vec<String> = std::env::args_os()
        .map(|a| modkit_ko::bytestr::from_os(&a))
        .collect();
    let base = modkit_ko::ops::short_name(args.first()?);
    if let Some(code) = modkit_ko::ops::run_tool(&base, &args) {
        return Some(ExitCode::from(code as u8));
    }
    if base == "modinfo" || base == "depmod" {
        return Some(run_ko_clap_tool(&base, &base, &args[1..]));
    }
    let sub = args.get(1)?;
    if modkit_ko::ops::TOOLS.contains(&sub.as_str()) {
        return Some(run_kmod_tool(sub, &args[2..]));
    }
    if sub == "modinfo" || sub == "depmod" {
        return Some(run_ko_clap_tool(sub, &format!("modkit {sub}"), &args[2..]));
    }
    None
}

/// Parses `rest` with the clap command of `tool` (modinfo or depmod) alone and runs it.
fn run_ko_clap_tool(tool: &str, bin_name: &str, rest: &[String]) -> ExitCode {
    use clap::{Args, FromArgMatches};
    let argv = std::iter::once(bin_name.to_string()).chain(rest.iter().cloned());
    let name = if tool == "modinfo" {
        "modinfo"
    } else {
        "depmod"
    };
    let cmd = clap::Command::new(name).bin_name(bin_name.to_string());
    let code = if tool == "modinfo" {
        let m = crate::ko::ModinfoArgs::augment_args(cmd).get_matches_from(argv);
        let a = crate::ko::ModinfoArgs::from_arg_matches(&m).unwrap_or_else(|e| e.exit());
        crate::ko::run_modinfo_argv(&a, rest)
    } else {
        let m = crate::ko::DepmodArgs::augment_args(cmd).get_matches_from(argv);
        let a = crate::ko::DepmodArgs::from_arg_matches(&m).unwrap_or_else(|e| e.exit());
        crate::ko::run_depmod(&a)
    };
    ExitCode::from(code as u8)
}

fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    // MODKIT_TRACE_TIMES: the CPU used before main (dynamic loading, runtime start-up)
    modkit_ko::ops::phase::mark("main");
    // Without RUST_LOG the filter shows errors only, and the kmod tools log none through
    // tracing: they skip setting the subscriber up (part of every modprobe's start-up,
    // which a storm pays a hundred times; issue 12).
    let log_asked = std::env::var_os("RUST_LOG").is_some();
    if log_asked {
        init_tracing();
    }
    if let Some(code) = multicall() {
        return code;
    }
    if !log_asked {
        init_tracing();
    }
    let cli = Cli::parse();
    modkit_sim::set_memory_limit(cli.max_memory, heap::in_use);
    match cli.command {
        Command::Simulate {
            file,
            tree,
            symvers,
            devices,
            policy,
            seed,
            json,
            driver,
            svg,
            kernel,
            keep,
        } => {
            let sc = match (file, tree) {
                (Some(_), _) if symvers.is_some() => Err(
                    "--symvers goes with --tree (a scenario file names its Module.symvers with the `symvers` key)"
                        .to_string(),
                ),
                (Some(f), _) => modkit_sim::load(&f).map_err(|e| e.to_string()),
                (None, Some(t)) => match &devices {
                    Some(d) => coldplug_scenario(&t, symvers.as_deref(), d),
                    None => tree_scenario(&t, symvers.as_deref()),
                },
                (None, None) => Err("a scenario file or --tree is needed".to_string()),
            };
            match sc {
                Ok(sc) => {
                    let how = How {
                        policy,
                        seed,
                        json,
                        driver,
                        kernel,
                        keep,
                    };
                    simulate(&sc, &how, svg.as_deref())
                }
                Err(e) => {
                    eprintln!("modkit: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Check {
            files,
            seed,
            driver,
            kernel,
        } => match (driver, kernel) {
            (Driver::Kernel, Some(k)) => kernel::check(&files, &k),
            _ => check(&files, seed, driver),
        },
        Command::Compare {
            files,
            kernel,
            policy,
            check,
            keep,
            json,
        } => kernel::compare(&files, &kernel, policy, check, keep.as_deref(), json),
        Command::Depmod(a) => ExitCode::from(crate::ko::run_depmod(&a) as u8),
        Command::Modinfo(a) => ExitCode::from(crate::ko::run_modinfo(&a) as u8),
        Command::Modprobe { args } => run_kmod_tool("modprobe", &args),
        Command::Insmod { args } => run_kmod_tool("insmod", &args),
        Command::Rmmod { args } => run_kmod_tool("rmmod", &args),
        Command::Lsmod { args } => run_kmod_tool("lsmod", &args),
        Command::Sign(a) => crate::sign::run_sign(&a),
        Command::VerifySig(a) => crate::sign::run_verify(&a),
    }
}

/// How `simulate` runs.
struct How {
    policy: Option<Policy>,
    seed: Option<u64>,
    json: bool,
    driver: Driver,
    kernel: Option<String>,
    keep: Option<PathBuf>,
}

/// The coldplug of a machine's device list on a real tree (`--tree T --devices F`).
fn coldplug_scenario(
    tree: &std::path::Path,
    symvers: Option<&std::path::Path>,
    list: &std::path::Path,
) -> Result<Scenario, String> {
    let root = tree_root(tree)?;
    let label = list.display().to_string();
    let bytes = read_bounded(list, 64 << 20).map_err(|e| format!("--devices {label}: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        format!(
            "--devices {label}: not UTF-8 at byte {}: a device list is text",
            e.utf8_error().valid_up_to()
        )
    })?;
    let devices = modkit_sim::coldplug::parse_device_list(&label, &text)?;
    let symvers = match symvers {
        Some(s) => {
            Some(std::fs::canonicalize(s).map_err(|e| format!("--symvers {}: {e}", s.display()))?)
        }
        None if modkit_sim::tree::find_symvers(&root).is_none() => {
            return Err(no_symvers(&root));
        }
        None => None,
    };
    let c = modkit_sim::coldplug::coldplug_scenario(&root, symvers.as_deref(), &label, &devices)?;
    eprintln!(
        "modkit: {} devices, {} matched by {} modules of the tree",
        devices.len(),
        devices.len() - c.unmatched.len(),
        c.matches.len()
    );
    if !c.unmatched.is_empty() {
        eprintln!(
            "modkit: no module of the tree matches {} (builtin drivers or none): {}",
            c.unmatched.len(),
            c.unmatched.join(", ")
        );
    }
    modkit_sim::parse(
        &format!("{}/(coldplug of {label})", root.display()),
        &c.text,
    )
    .map_err(|e| e.to_string())
}

/// Reads at most `max` bytes of `path`; more is an error saying so.
fn read_bounded(path: &std::path::Path, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    if buf.len() as u64 > max {
        return Err(format!("larger than {} MiB", max >> 20));
    }
    Ok(buf)
}

fn tree_root(tree: &std::path::Path) -> Result<std::path::PathBuf, String> {
    std::fs::canonicalize(tree).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "{}: no such directory: --tree takes a lib/modules/VERSION directory",
                tree.display()
            )
        } else {
            format!("{}: {e}", tree.display())
        }
    })
}

fn no_symvers(root: &std::path::Path) -> String {
    format!(
        "{}: no Module.symvers in build/, source/ or the tree itself, so vmlinux's exports are unknown: pass --symvers PATH/Module.symvers (Debian's linux-headers-VERSION package has one)",
        root.display()
    )
}

/// A scenario that modprobes every module of a real tree.
fn tree_scenario(
    tree: &std::path::Path,
    symvers: Option<&std::path::Path>,
) -> Result<Scenario, String> {
    let root = tree_root(tree)?;
    let names = modkit_sim::tree::tree_module_names(&root)?;
    let toml_str = |p: &std::path::Path| format!("{:?}", p.display().to_string());
    let mut text = format!(
        "name = {}\ntree = {}\n",
        toml_str(std::path::Path::new(&format!(
            "every module of {}",
            root.display()
        ))),
        toml_str(&root)
    );
    if symvers.is_none() && modkit_sim::tree::find_symvers(&root).is_none() {
        return Err(no_symvers(&root));
    }
    if let Some(s) = symvers {
        let s = std::fs::canonicalize(s).map_err(|e| format!("--symvers {}: {e}", s.display()))?;
        text.push_str(&format!("symvers = {}\n", toml_str(&s)));
    }
    for n in &names {
        text.push_str(&format!(
            "[[event]]\nid = \"load-{n}\"\nmodprobe = \"{n}\"\n"
        ));
    }
    modkit_sim::parse(&format!("{}/(generated)", root.display()), &text).map_err(|e| e.to_string())
}

fn simulate(sc: &Scenario, how: &How, svg: Option<&std::path::Path>) -> ExitCode {
    for w in &sc.tree_warnings {
        eprintln!("modkit: WARNING: {w}");
    }
    for (m, sym) in &sc.tree_unresolved {
        eprintln!("modkit: WARNING: {m} needs unknown symbol {sym}");
    }
    let policy = how.policy.unwrap_or(sc.policy);
    let seed = how.seed.unwrap_or(sc.seed);
    let title = sc.name.clone().unwrap_or_else(|| sc.file.clone());
    let observed = if how.driver == Driver::Kernel {
        let Some(kver) = how.kernel.clone() else {
            eprintln!("modkit: --driver kernel needs --kernel KVER (e.g. 6.1.0-50-cloud-amd64)");
            return ExitCode::from(2);
        };
        if svg.is_some() {
            eprintln!("modkit: --svg draws the simulator's timeline; it is not available with --driver kernel");
            return ExitCode::from(2);
        }
        let opts = modkit_kernel::KernelOptions {
            kver,
            work_dir: how.keep.clone(),
            deadline: None,
        };
        match modkit_kernel::run_scenario(sc, &opts) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("modkit: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        let run = match run(sc, policy, seed, how.driver) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("modkit: {e}");
                return ExitCode::from(1);
            }
        };
        if let Some(path) = svg {
            let picture = modkit_sim::timeline::svg(sc, &title, &run);
            if let Err(e) = std::fs::write(path, picture) {
                eprintln!("modkit: cannot write {}: {e}", path.display());
                return ExitCode::from(1);
            }
            eprintln!("modkit: wrote the timeline to {}", path.display());
        }
        let name = if how.driver == Driver::Host {
            "host"
        } else {
            "simulator"
        };
        Observed::from_run(&run, name)
    };
    if how.json {
        outln!(
            "{}",
            modkit_sim::report::json_observed(&title, policy, seed, &observed)
        );
    } else {
        out(&modkit_sim::report::text_observed(
            &title, policy, seed, &observed,
        ));
    }
    ExitCode::SUCCESS
}

fn check(files: &[PathBuf], seed: Option<u64>, driver: Driver) -> ExitCode {
    let (mut passed, mut failed) = (0usize, 0usize);
    for file in files {
        let sc = match modkit_sim::load(file) {
            Ok(s) => s,
            Err(e) => {
                outln!("ERROR {e}");
                failed += 1;
                continue;
            }
        };
        if sc.expects.is_empty() {
            outln!(
                "ERROR {}: no [[expect]] block to check; add one",
                file.display()
            );
            failed += 1;
            continue;
        }
        let seed = seed.unwrap_or(sc.seed);
        for ex in &sc.expects {
            let place = format!(
                "{}:{} [expect #{} {}{}]",
                file.display(),
                ex.line,
                ex.index,
                ex.policy,
                if driver == Driver::Host { ", host" } else { "" }
            );
            match run(&sc, ex.policy, seed, driver) {
                Ok(r) => {
                    let failures = modkit_sim::check::compare(ex, &r);
                    if failures.is_empty() {
                        passed += 1;
                        outln!("pass  {place}");
                    } else {
                        failed += 1;
                        outln!("FAIL  {place}");
                        for f in &failures {
                            outln!("        {f}");
                        }
                    }
                }
                Err(e) => {
                    outln!("ERROR {place}: {e}");
                    failed += 1;
                }
            }
        }
    }
    outln!("check: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_says_where_the_run_stands() {
        let p = modkit_sim::Progress {
            steps: 2_500_000,
            budget: 10_000_000,
            time: 1_500_000_000,
            tasks: 3000,
            inits: 7,
            events: (2, 3),
        };
        let t = progress_text("s.toml", &p, std::time::Duration::from_millis(1200));
        assert_eq!(
            t,
            "modkit: s.toml: 1.500 s virtual, 2500000 of 10000000 steps (25%), 3000 tasks, 7 inits, events 2/3 [1.2 s]"
        );
    }
}
