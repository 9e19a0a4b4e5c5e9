//! # modkit-kernel
//!
//! The kernel driver: a scenario becomes real kernel modules (C generated from the
//! scenario, built against a Debian kernel's headers), a guest program that plays the
//! scenario's events, and one QEMU boot of that kernel; what the guest saw (results,
//! dmesg, /proc/modules, holders, refcounts) comes back as a driver-neutral
//! [`modkit_sim::observed::Observed`]. See `docs/kernel-driver.md`.

pub mod assets;
pub mod build;
pub mod cgen;
mod driver;
pub mod initramfs;
pub mod kconfig;
pub mod observe;
pub mod plan;
pub mod qemu;
pub mod stackdump;
pub mod toolcheck;

pub use driver::{
    kernel_version, parse_upstream, run_scenario, KernelError, KernelOptions, KERNEL_TIME_TOLERANCE,
};
