//! What [`crate::plugin!`] expands to uses these helpers (not meant to be called directly).

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::{
    Abi, AbiArgs, PushFn, RawCtx, RawFn, RawStr, Slot, STATUS_OK, STATUS_PANIC, STATUS_STOP,
};
use crate::plugin::PluginCtx;
use crate::Errno;

/// An init step of a plugin.
pub type StepFn = fn(&mut PluginCtx<'_>) -> Result<(), Errno>;
/// The undo of an init step.
pub type UndoFn = fn(&mut PluginCtx<'_>);

/// Length of the `.modinfo` bytes for `entries` and `depends`.
pub const fn modinfo_len(entries: &[(&str, &str)], depends: &[&str]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < entries.len() {
        n += entries[i].0.len() + 1 + entries[i].1.len() + 1;
        i += 1;
    }
    n += "depends=".len() + 1;
    let mut j = 0;
    while j < depends.len() {
        n += depends[j].len() + if j > 0 { 1 } else { 0 };
        j += 1;
    }
    n
}

const fn put(out: &mut [u8], mut at: usize, s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        out[at] = b[i];
        at += 1;
        i += 1;
    }
    at
}

/// The `.modinfo` bytes: `key=value\0` for each entry, then `depends=a,b\0`, as the
/// kernel's modpost writes them.
pub const fn modinfo_bytes<const N: usize>(entries: &[(&str, &str)], depends: &[&str]) -> [u8; N] {
    let mut out = [0u8; N];
    let mut at = 0;
    let mut i = 0;
    while i < entries.len() {
        at = put(&mut out, at, entries[i].0);
        at = put(&mut out, at, "=");
        at = put(&mut out, at, entries[i].1);
        at += 1;
        i += 1;
    }
    at = put(&mut out, at, "depends=");
    let mut j = 0;
    while j < depends.len() {
        if j > 0 {
            at = put(&mut out, at, ",");
        }
        at = put(&mut out, at, depends[j]);
        j += 1;
    }
    let _ = at;
    out
}

/// Writes the description of `fn(A) -> R` through the host's callback.
pub extern "C-unwind" fn describe<A: AbiArgs, R: Abi>(out: *mut c_void, push: PushFn) {
    let s = super::describe_fn::<A, R>();
    push(out, RawStr::borrowed(&s));
}

/// The body of an export's trampoline: reads the arguments, runs `f` under
/// `catch_unwind`, writes the result.
///
/// # Safety
/// `args` must point to an `A` and `ret` to room for an `R`.
#[inline]
pub unsafe fn trampoline<A: AbiArgs + Copy, R: Abi>(
    args: *const c_void,
    ret: *mut c_void,
    f: impl FnOnce(A) -> R,
) -> i32 {
    // SAFETY: the caller passes a valid `A` (checked by the CRC of the description).
    let a = unsafe { *(args as *const A) };
    match catch_unwind(AssertUnwindSafe(|| f(a))) {
        Ok(r) => {
            // SAFETY: `ret` has room for an `R`.
            unsafe { (ret as *mut R).write(r) };
            STATUS_OK
        }
        Err(_) => STATUS_PANIC,
    }
}

/// Calls an import through its slot (filled by the host when the module was linked). A
/// panic on the other side comes back as a status and is raised here, inside this plugin,
/// where its own trampoline catches it.
#[inline]
pub fn call_import<A: AbiArgs, R: Abi>(slot: &Slot, name: &str, args: A) -> R {
    let p = slot.0.load(std::sync::atomic::Ordering::Acquire);
    if p.is_null() {
        panic!("modkit plugin: import {name} called before the host linked it");
    }
    // SAFETY: the host stores only trampolines whose description matched this import's.
    let raw: RawFn = unsafe { std::mem::transmute::<*mut c_void, RawFn>(p) };
    // SAFETY: as above: `raw` takes `A` and writes `R`.
    let f = unsafe { super::PluginFn::<A, R>::from_raw(raw) };
    match f.call(args) {
        Ok(r) => r,
        Err(_) => panic!("modkit plugin: imported function {name} panicked"),
    }
}

/// The body of a plugin's `run_step`: runs step `step` (or its undo) of `init`/`undo`
/// under `catch_unwind`.
///
/// # Safety
/// `ctx` must be the context the host passed.
pub unsafe fn run_step(
    ctx: *const RawCtx,
    step: usize,
    undo: bool,
    init: &[StepFn],
    undos: &[Option<UndoFn>],
) -> i32 {
    // SAFETY: the host passes a valid context for the call.
    let mut c = unsafe { PluginCtx::from_raw(ctx) };
    let r = catch_unwind(AssertUnwindSafe(|| {
        if undo {
            if let Some(Some(u)) = undos.get(step) {
                u(&mut c);
            }
            Ok(())
        } else {
            match init.get(step) {
                Some(f) => f(&mut c),
                None => Err(Errno::EINVAL),
            }
        }
    }));
    match r {
        Ok(Ok(())) => STATUS_OK,
        Ok(Err(e)) => -e.code().abs(),
        Err(_) => STATUS_PANIC,
    }
}

/// `Some(undo)` or `None` for the macro.
#[macro_export]
#[doc(hidden)]
macro_rules! __modkit_undo {
    () => {
        None
    };
    ($u:expr) => {
        Some($u)
    };
}

/// `STATUS_STOP` re-exported for the macro.
pub const STOP: i32 = STATUS_STOP;

/// Declares the plugin of a `cdylib` crate: its `.modinfo` section (name, license, alias=,
/// vermagic=, one export= per export and one import= per import, depends=), its exports
/// as `extern "C-unwind"` trampolines, its imports as slots the host links, its init
/// table, and the one descriptor symbol the host looks up.
///
/// `depends:` is optional: the plugins a plugin needs are computed from its `import=`
/// entries and the other plugins' `export=` entries, as the kernel's depmod computes
/// modules.dep from undefined symbols (`modkit depmod` on a plugin directory, and
/// `Host::with_plugin_dir` when it scans one). Names listed in `depends:` are added to
/// those (a dependency the imports do not show, e.g. a plugin loaded for its side
/// effects).
///
/// ```ignore
/// modkit::plugin! {
///     name: "greeter",
///     license: "MIT",
///     aliases: ["greet:*"],
///     imports: { fn upper(c: u32) -> u32; },
///     exports: { fn greet(x: u32) -> u32 { upper(x) + 1 } },
///     init: [
///         "hello" => |ctx| { ctx.log("hello"); Ok(()) }, undo |ctx| ctx.log("bye"),
///     ],
/// }
/// ```
#[macro_export]
macro_rules! plugin {
    (
        name: $name:literal,
        license: $license:literal,
        aliases: [$($alias:literal),* $(,)?],
        $(depends: [$($dep:literal),* $(,)?],)?
        imports: { $(fn $iname:ident($($iarg:ident : $ity:ty),* $(,)?) -> $iret:ty;)* },
        exports: { $(fn $ename:ident($($earg:ident : $ety:ty),* $(,)?) -> $eret:ty $ebody:block)* },
        init: [ $( $sname:literal => $sinit:expr $(, undo $sundo:expr)? );* $(;)? ] $(,)?
    ) => {
        #[doc(hidden)]
        mod __modkit_plugin {
            #[allow(unused_imports)]
            use super::*;
            const ENTRIES: &[(&str, &str)] = &[
                ("name", $name),
                ("license", $license),
                $(("alias", $alias),)*
                ("vermagic", $crate::plugin::VERMAGIC),
                $(("export", stringify!($ename)),)*
                $(("import", stringify!($iname)),)*
            ];
            const DEPENDS: &[&str] = &[$($($dep),*)?];
            const LEN: usize = $crate::plugin::macros::modinfo_len(ENTRIES, DEPENDS);
            #[used]
            #[link_section = ".modinfo"]
            pub static MODINFO: [u8; LEN] = $crate::plugin::macros::modinfo_bytes::<LEN>(ENTRIES, DEPENDS);

            #[allow(non_upper_case_globals)]
            pub mod slots {
                $(pub static $iname: $crate::plugin::Slot = $crate::plugin::Slot::new();)*
            }

            pub mod tramps {
                #[allow(unused_imports)]
                use super::super::*;
                $(
                    pub unsafe extern "C-unwind" fn $ename(
                        args: *const ::std::ffi::c_void,
                        ret: *mut ::std::ffi::c_void,
                    ) -> i32 {
                        // SAFETY: the host calls the trampoline with the types its
                        // description names.
                        unsafe {
                            $crate::plugin::macros::trampoline::<($($ety,)*), $eret>(
                                args,
                                ret,
                                |($($earg,)*): ($($ety,)*)| super::super::$ename($($earg),*),
                            )
                        }
                    }
                )*
            }

            static INIT: &[$crate::plugin::macros::StepFn] = &[$($sinit),*];
            static UNDO: &[Option<$crate::plugin::macros::UndoFn>] =
                &[$($crate::__modkit_undo!($($sundo)?)),*];
            static EXPORTS: &[$crate::plugin::RawExport] = &[$(
                $crate::plugin::RawExport {
                    name: $crate::plugin::RawStr::new(stringify!($ename)),
                    describe: $crate::plugin::macros::describe::<($($ety,)*), $eret>,
                    func: tramps::$ename,
                },
            )*];
            static IMPORTS: &[$crate::plugin::RawImport] = &[$(
                $crate::plugin::RawImport {
                    name: $crate::plugin::RawStr::new(stringify!($iname)),
                    describe: $crate::plugin::macros::describe::<($($ity,)*), $iret>,
                    slot: &slots::$iname.0,
                },
            )*];
            static STEPS: &[$crate::plugin::RawStep] = &[$(
                $crate::plugin::RawStep {
                    name: $crate::plugin::RawStr::new($sname),
                    has_undo: true,
                },
            )*];

            unsafe extern "C-unwind" fn run_step(
                ctx: *const $crate::plugin::RawCtx,
                step: usize,
                undo: bool,
            ) -> i32 {
                // SAFETY: the host passes its context.
                unsafe { $crate::plugin::macros::run_step(ctx, step, undo, INIT, UNDO) }
            }

            /// The plugin's descriptor: the one symbol it exports.
            #[no_mangle]
            pub static MODKIT_PLUGIN_DESCRIPTOR: $crate::plugin::Descriptor =
                $crate::plugin::Descriptor($crate::plugin::RawDescriptor {
                    abi: $crate::plugin::ABI_VERSION,
                    vermagic: $crate::plugin::RawStr::new($crate::plugin::VERMAGIC),
                    name: $crate::plugin::RawStr::new($name),
                    exports: $crate::plugin::RawSlice::new(EXPORTS),
                    imports: $crate::plugin::RawSlice::new(IMPORTS),
                    steps: $crate::plugin::RawSlice::new(STEPS),
                    run_step,
                    modinfo: $crate::plugin::RawSlice::new(&MODINFO),
                });
        }

        $(
            #[allow(dead_code)]
            fn $iname($($iarg: $ity),*) -> $iret {
                $crate::plugin::macros::call_import::<($($ity,)*), $iret>(
                    &__modkit_plugin::slots::$iname,
                    stringify!($iname),
                    ($($iarg,)*),
                )
            }
        )*
        $(
            #[allow(dead_code)]
            fn $ename($($earg: $ety),*) -> $eret $ebody
        )*
    };
}
