//! The scenario file as written (format 1), deserialised with serde; unknown keys are
//! refused. [`crate::scenario`] turns it into a checked [`crate::scenario::Scenario`].

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// Top level.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    pub name: Option<String>,
    pub policy: Option<Spanned<String>>,
    pub seed: Option<u64>,
    pub modprobe: Option<String>,
    pub modprobe_time: Option<Spanned<String>>,
    pub max_steps: Option<Spanned<u64>>,
    pub kernel_races: Option<String>,
    pub tree: Option<Spanned<String>>,
    pub symvers: Option<Spanned<String>>,
    pub sig_enforce: Option<bool>,
    pub module_blacklist: Option<Vec<String>>,
    pub force_unload: Option<bool>,
    pub modversions: Option<bool>,
    pub force_load: Option<bool>,
    #[serde(default)]
    pub module: Vec<Spanned<RawModule>>,
    #[serde(default)]
    pub event: Vec<Spanned<RawEvent>>,
    #[serde(default)]
    pub expect: Vec<Spanned<RawExpect>>,
    /// `[[bus]]`: user-defined buses (crate::devices).
    #[serde(default)]
    pub bus: Vec<Spanned<crate::devices::RawBus>>,
    /// `[[device]]`.
    #[serde(default)]
    pub device: Vec<Spanned<crate::devices::RawDevice>>,
    /// `udev = { workers = 8, event_timeout = "180s" }`.
    pub udev: Option<Spanned<crate::devices::RawUdev>>,
    /// `deferred_probe_timeout = 10` (seconds; -1: none), the boot parameter.
    pub deferred_probe_timeout: Option<Spanned<i64>>,
}

/// `[[module]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModule {
    pub name: Spanned<String>,
    pub license: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub softdeps: Option<RawSoftdeps>,
    #[serde(default)]
    pub exports: Vec<NameOr<RawExport>>,
    #[serde(default)]
    pub imports: Vec<NameOr<RawImport>>,
    #[serde(default)]
    pub import_namespaces: Vec<String>,
    pub has_exit: Option<bool>,
    pub builtin: Option<bool>,
    #[serde(default)]
    pub init: Vec<RawStep>,
    pub depends: Option<Vec<String>>,
    pub out_of_tree: Option<bool>,
    pub signed: Option<bool>,
    pub staging: Option<bool>,
    pub versions: Option<bool>,
    /// `[[module.driver]]` (crate::devices).
    #[serde(default)]
    pub driver: Vec<Spanned<crate::devices::RawDriver>>,
}

/// `softdeps = { pre = [...], post = [...] }`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSoftdeps {
    #[serde(default)]
    pub pre: Vec<String>,
    #[serde(default)]
    pub post: Vec<String>,
}

/// An export written as a table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExport {
    pub name: String,
    pub namespace: Option<String>,
    #[serde(default)]
    pub gpl_only: bool,
    pub crc: Option<u32>,
}

/// An import written as a table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImport {
    pub name: String,
    pub crc: Option<u32>,
}

/// A bare name or a table.
#[derive(Debug)]
pub enum NameOr<T> {
    Name(String),
    Table(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NameOr<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = NameOr<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a name or a table")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(NameOr::Name(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(NameOr::Table)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// `[[module.init]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub step: String,
    #[serde(default)]
    pub run: Vec<Spanned<RawAction>>,
    pub undo: Option<RawUndo>,
}

/// `undo = true` or `undo = [actions]`.
#[derive(Debug)]
pub enum RawUndo {
    Flag(bool),
    Actions(Vec<Spanned<RawAction>>),
}

impl<'de> Deserialize<'de> for RawUndo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawUndo;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false or a list of actions")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(RawUndo::Flag(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::<Spanned<RawAction>>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(RawUndo::Actions)
            }
        }
        d.deserialize_any(V)
    }
}

/// One action: exactly one verb key, with its modifiers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAction {
    pub sleep: Option<Spanned<String>>,
    pub fail: Option<Spanned<RawCode>>,
    pub stop: Option<bool>,
    pub ret: Option<Spanned<i64>>,
    pub request_module: Option<String>,
    pub wait: Option<bool>,
    pub required: Option<bool>,
    pub get_module: Option<String>,
    pub put_module: Option<String>,
    pub use_symbol: Option<String>,
    pub symbol_get: Option<String>,
    pub symbol_put: Option<String>,
    pub register: Option<String>,
    pub unregister: Option<String>,
    pub lookup: Option<String>,
    pub get: Option<bool>,
    pub open: Option<String>,
    #[serde(rename = "as")]
    pub as_: Option<String>,
    pub close: Option<String>,
    pub spawn: Option<Vec<Spanned<RawAction>>>,
    pub complete: Option<String>,
    pub wait_for: Option<String>,
    pub timeout: Option<Spanned<String>>,
    /// Device actions (crate::devices).
    pub add_device: Option<String>,
    pub bus: Option<String>,
    pub modalias: Option<String>,
    pub remove_device: Option<String>,
    pub need: Option<String>,
    pub optional: Option<bool>,
    pub reason: Option<String>,
    pub devm: Option<String>,
    /// `use_devres = "RES"`, `for = "2s"` (crate::devices).
    pub use_devres: Option<String>,
    #[serde(rename = "for")]
    pub for_: Option<Spanned<String>>,
}

/// `[[event]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvent {
    pub id: Option<String>,
    pub at: Option<Spanned<String>>,
    pub threads: Option<Spanned<u32>>,
    pub modprobe: Option<String>,
    pub insmod: Option<String>,
    pub rmmod: Option<String>,
    pub request_module: Option<String>,
    pub run: Option<Vec<Spanned<RawAction>>>,
    pub set: Option<RawSet>,
    pub force: Option<bool>,
    pub wait: Option<bool>,
    pub timeout: Option<Spanned<String>>,
    /// insmod: `"finit_module"` (default) or `"init_module"`.
    pub syscall: Option<Spanned<String>>,
    /// SIGKILL the threads of this event.
    pub kill: Option<Spanned<String>>,
    /// SIGKILL the modprobe processes request_module started for this name.
    pub kill_modprobe: Option<String>,
    /// Device events (crate::devices).
    pub add_device: Option<String>,
    pub remove_device: Option<String>,
    pub bind: Option<String>,
    pub unbind: Option<String>,
    pub driver: Option<String>,
}

/// `set = { modprobe = "" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSet {
    pub modprobe: Option<String>,
}

/// An error code: `"ok"`, an errno name, or a number.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum RawCode {
    Name(String),
    Number(i64),
}

/// One code or a list of codes.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum RawCodes {
    One(RawCode),
    Many(Vec<RawCode>),
}

/// `[[expect]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    pub policy: Option<String>,
    pub note: Option<String>,
    /// Why a real kernel cannot check this block (the kernel driver skips it, saying why).
    #[serde(default)]
    pub kernel_skip: Option<String>,
    #[serde(rename = "final", default)]
    pub final_: BTreeMap<String, String>,
    #[serde(default)]
    pub results: BTreeMap<String, RawCodes>,
    #[serde(default)]
    pub results_any: BTreeMap<String, Vec<RawCode>>,
    #[serde(default)]
    pub init_calls: BTreeMap<String, u32>,
    #[serde(default)]
    pub refcount: BTreeMap<String, i64>,
    #[serde(default)]
    pub holders: BTreeMap<String, Vec<String>>,
    pub time_max: Option<Spanned<String>>,
    pub time_min: Option<Spanned<String>>,
    #[serde(default)]
    pub log: Vec<String>,
    #[serde(default)]
    pub log_absent: Vec<String>,
    #[serde(default)]
    pub diagnostics: Vec<String>,
    #[serde(default)]
    pub diagnostics_absent: Vec<String>,
    /// Each is contained in the message or the hint of some diagnostic.
    #[serde(default)]
    pub hints: Vec<String>,
    #[serde(default)]
    pub taints: BTreeMap<String, String>,
    /// Device states: `bound:DRIVER`, `deferred`, `unbound`, `absent`.
    #[serde(default)]
    pub devices: BTreeMap<String, String>,
}
