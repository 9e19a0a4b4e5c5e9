//! Stand-alone driver for the kmod-compatible tools (the same code `modkit depmod|modinfo|
//! modprobe` runs): `cargo run -p modkit-ko --example modkit-ko -- depmod -b DIR VERSION`.

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// kmod-compatible depmod.
    Depmod(modkit_ko::cli::DepmodArgs),
    /// kmod-compatible modinfo.
    Modinfo(modkit_ko::cli::ModinfoArgs),
    /// kmod-compatible modprobe (dry-run modes).
    Modprobe(modkit_ko::cli::ModprobeArgs),
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Depmod(a) => modkit_ko::cli::run_depmod(&a),
        Cmd::Modinfo(a) => modkit_ko::cli::run_modinfo(&a),
        Cmd::Modprobe(a) => modkit_ko::cli::run_modprobe(&a),
    };
    std::process::exit(code);
}
