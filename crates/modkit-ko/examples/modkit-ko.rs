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
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Depmod(a) => modkit_ko::cli::run_depmod(&a),
    };
    std::process::exit(code);
}
