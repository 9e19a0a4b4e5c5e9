//! `modkit`: run and check module-loading scenarios under virtual time, with modkit's
//! semantics or those of a chosen Linux version.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use modkit_core::Policy;

/// modkit: the Linux kernel's module system, rebuilt in Rust, simulated from scenario files.
#[derive(Debug, Parser)]
#[command(name = "modkit", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one scenario and print the log, the module table, event results and diagnostics.
    Simulate {
        /// The scenario file (TOML, format 1).
        file: PathBuf,
        /// Override the policy: "modkit" or "linux-X.Y".
        #[arg(long)]
        policy: Option<Policy>,
        /// Override the tie-break seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run every [[expect]] block of each file and print one line per block.
    Check {
        /// Scenario files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Override every file's seed.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// kmod 30-compatible depmod: write modules.dep, .alias, .symbols, .softdep, .devname
    /// and the .bin indexes of a real module tree.
    Depmod(modkit_ko::cli::DepmodArgs),
    /// kmod 30-compatible modinfo for module files, names or aliases.
    Modinfo(modkit_ko::cli::ModinfoArgs),
    /// kmod 30-compatible modprobe, dry-run modes (--show-depends, --resolve-alias).
    Modprobe(modkit_ko::cli::ModprobeArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Simulate {
            file,
            policy,
            seed,
            json,
        } => simulate(&file, policy, seed, json),
        Command::Check { files, seed } => check(&files, seed),
        Command::Depmod(a) => ExitCode::from(modkit_ko::cli::run_depmod(&a) as u8),
        Command::Modinfo(a) => ExitCode::from(modkit_ko::cli::run_modinfo(&a) as u8),
        Command::Modprobe(a) => ExitCode::from(modkit_ko::cli::run_modprobe(&a) as u8),
    }
}

fn simulate(
    file: &std::path::Path,
    policy: Option<Policy>,
    seed: Option<u64>,
    json: bool,
) -> ExitCode {
    let sc = match modkit_sim::load(file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("modkit: {e}");
            return ExitCode::from(2);
        }
    };
    let policy = policy.unwrap_or(sc.policy);
    let seed = seed.unwrap_or(sc.seed);
    let title = sc.name.clone().unwrap_or_else(|| sc.file.clone());
    let run = match modkit_sim::Sim::new(&sc, policy, seed).run() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("modkit: {e}");
            return ExitCode::from(1);
        }
    };
    if json {
        println!("{}", modkit_sim::report::json(&title, policy, seed, &run));
    } else {
        print!("{}", modkit_sim::report::text(&title, policy, seed, &run));
    }
    ExitCode::SUCCESS
}

fn check(files: &[PathBuf], seed: Option<u64>) -> ExitCode {
    let (mut passed, mut failed) = (0usize, 0usize);
    for file in files {
        let sc = match modkit_sim::load(file) {
            Ok(s) => s,
            Err(e) => {
                println!("ERROR {e}");
                failed += 1;
                continue;
            }
        };
        if sc.expects.is_empty() {
            println!(
                "ERROR {}: no [[expect]] block to check; add one",
                file.display()
            );
            failed += 1;
            continue;
        }
        match modkit_sim::check::check(&sc, seed) {
            Ok(blocks) => {
                for b in blocks {
                    let place = format!(
                        "{}:{} [expect #{} {}]",
                        file.display(),
                        b.line,
                        b.index,
                        b.policy
                    );
                    if b.passed() {
                        passed += 1;
                        println!("pass  {place}");
                    } else {
                        failed += 1;
                        println!("FAIL  {place}");
                        for f in &b.failures {
                            println!("        {f}");
                        }
                    }
                }
            }
            Err(e) => {
                println!("ERROR {e}");
                failed += 1;
            }
        }
    }
    println!("check: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
