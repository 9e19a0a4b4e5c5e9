//! # modkit-core
//!
//! The pure state machine of modkit: the Linux kernel's loadable-module system as data and
//! decisions, with no I/O, no threads and no clock. Drivers (the simulator, the host) own
//! the tasks and the time; they poll [`Proc`]edures, which return what the task must do next:
//! wait on a key with the deadline the [`Policy`] chose, run module code, call a nested
//! procedure, spawn a task, or finish with an [`Outcome`].
//!
//! The files follow the kernel's split of `kernel/module/`: [`load`] (`main.c`'s
//! `load_module`/`do_init_module`), [`unload`] (`delete_module`), [`request`] (`kmod.c`),
//! [`modprobe`] (kmod's userspace), [`waits`] (`module_wq` and the wait-for graph).

pub mod asyncprobe;
pub mod auxiliary;
pub mod dd;
pub mod debugfs;
pub mod device;
pub mod devlink;
pub mod devres;
pub mod diag;
pub mod errno;
pub mod events;
pub mod going;
pub mod initret;
pub mod kernel;
pub mod load;
pub mod matchdefer;
pub mod messages;
pub mod modprobe;
pub mod modsig;
pub mod namespace;
pub mod pinwait;
pub mod policy;
pub mod probewait;
pub mod proc;
pub mod request;
pub mod revocable;
pub mod signal;
pub mod spec;
pub mod stable;
pub mod symcycle;
pub mod symget;
pub mod taint;
pub mod unload;
pub mod waits;

pub use diag::{DiagKind, Diagnostic};
pub use errno::{Errno, Outcome};
pub use kernel::{Kernel, ModId, ModState, Time, SEC};
pub use policy::{DupEra, KmodLimiter, Policy, PositiveInitWarning, Version};
pub use proc::{Body, BodyResult, Proc, Resume, Step};
pub use spec::{ExportSpec, ImportSpec, InitStepSpec, ModuleDb, ModuleSpec, SpecError};
pub use waits::{TaskId, WaitInfo, WaitKey};
