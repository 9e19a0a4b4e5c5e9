//! # modkit-sim
//!
//! Scenario files (format 1), the deterministic simulator that runs them under virtual
//! time with modkit's semantics or those of a chosen Linux version, expectations, and
//! reports.
//!
//! ```
//! let sc = modkit_sim::scenario::parse("demo.toml", r#"
//! [[module]]
//! name = "a"
//! [[event]]
//! id = "boot"
//! modprobe = "a"
//! [[expect]]
//! final = { a = "live" }
//! "#).unwrap();
//! let blocks = modkit_sim::check::check(&sc, None).unwrap();
//! assert!(blocks[0].passed());
//! ```

pub mod actions;
pub mod check;
pub mod coldplug;
pub mod devices;
pub mod diff;
pub mod duration;
mod import_order;
pub mod observed;
mod raw;
pub mod report;
pub mod scenario;
pub mod sim;
pub mod timeline;
pub mod tree;
pub mod width;

pub use scenario::{load, parse, Scenario, ScenarioError};
pub use sim::{set_memory_limit, Progress, Run, Sim, SimError, PROGRESS_EVERY};
