//! Plugins: modules built as separate shared objects (`cdylib` crates declaring themselves
//! with [`crate::plugin!`]), found by name or alias in a plugin directory
//! ([`crate::HostHandle::with_plugin_dir`]), checked (vermagic, per-symbol CRCs from the types'
//! descriptions), linked by modkit (each import is a slot the host fills with the
//! exporter's address; the dynamic linker resolves nothing between plugins) and unloaded
//! only when nothing holds them and their threads have been joined.
//!
//! Everything that crosses the boundary is `#[repr(C)]` or a primitive; every function a
//! plugin exposes is an `extern "C-unwind"` trampoline that catches panics and returns a
//! status, so a panic never unwinds into the host.

mod deps;
pub mod dl;
mod elf;
mod loader;
#[doc(hidden)]
pub mod macros;
mod sighook;
#[cfg(feature = "signing")]
pub mod signing;

use std::ffi::c_void;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

pub(crate) use loader::Plugins;
pub use loader::{PluginError, PluginStatus};

/// The vermagic of this build: modkit's plugin ABI version, rustc's version and commit,
/// the target and the panic strategy. A plugin whose `.modinfo` vermagic differs is
/// refused with both values.
pub const VERMAGIC: &str = env!("MODKIT_VERMAGIC");

/// The plugin ABI version (part of [`VERMAGIC`] and of the descriptor).
pub const ABI_VERSION: u32 = 1;

/// The one symbol a plugin exports to the dynamic linker.
pub const DESCRIPTOR_SYMBOL: &str = "MODKIT_PLUGIN_DESCRIPTOR";

/// A type that may cross the plugin boundary, with a description of its layout that the
/// per-symbol CRC is computed from (modversions' CRC of the prototype, from the layout
/// rather than a compiler-specific name).
///
/// # Safety
/// The type's layout must be fully determined by its description (primitives, `#[repr(C)]`
/// structs of such types, raw pointers).
pub unsafe trait Abi: Copy + 'static {
    /// Appends the type's description.
    fn describe(out: &mut String);
}

macro_rules! prim {
    ($($t:ty),*) => {$(
        // SAFETY: primitives have a fixed layout named by their type.
        unsafe impl Abi for $t {
            fn describe(out: &mut String) {
                out.push_str(concat!(stringify!($t), "/"));
                out.push_str(&std::mem::size_of::<$t>().to_string());
            }
        }
    )*};
}
prim!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    bool,
    char,
    ()
);

// SAFETY: a raw pointer has the layout of an address.
unsafe impl<T: Abi> Abi for *const T {
    fn describe(out: &mut String) {
        out.push_str("*const ");
        T::describe(out);
    }
}

// SAFETY: a raw pointer has the layout of an address.
unsafe impl<T: Abi> Abi for *mut T {
    fn describe(out: &mut String) {
        out.push_str("*mut ");
        T::describe(out);
    }
}

// SAFETY: an array's layout is its element's, repeated.
unsafe impl<T: Abi, const N: usize> Abi for [T; N] {
    fn describe(out: &mut String) {
        out.push('[');
        T::describe(out);
        out.push_str(&format!("; {N}]"));
    }
}

/// Argument lists: tuples of [`Abi`] types (passed by pointer to the trampoline).
pub trait AbiArgs: 'static {
    /// Appends the list's description.
    fn describe(out: &mut String);
}

macro_rules! args {
    ($($n:ident),*) => {
        impl<$($n: Abi),*> AbiArgs for ($($n,)*) {
            #[allow(unused_variables, unused_mut)]
            fn describe(out: &mut String) {
                out.push('(');
                let mut first = true;
                $(
                    if !first { out.push_str(", "); }
                    first = false;
                    $n::describe(out);
                )*
                let _ = first;
                out.push(')');
            }
        }
    };
}
args!();
args!(A);
args!(A, B);
args!(A, B, C);
args!(A, B, C, D);
args!(A, B, C, D, E);
args!(A, B, C, D, E, G);

/// The description of `extern "C-unwind" fn(A...) -> R` as a plugin function.
pub fn describe_fn<A: AbiArgs, R: Abi>() -> String {
    let mut s = String::from("fn");
    A::describe(&mut s);
    s.push_str(" -> ");
    R::describe(&mut s);
    s
}

/// The CRC of a description (CRC-32, IEEE, as modversions uses).
pub fn crc_of_desc(desc: &str) -> u32 {
    let mut crc = !0u32;
    for &b in desc.as_bytes() {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// Status a trampoline returns: success.
pub const STATUS_OK: i32 = 0;
/// Status a trampoline returns: the plugin code panicked (caught at the trampoline).
pub const STATUS_PANIC: i32 = -14;
/// Status an init step returns to stop the table (the module stays live).
pub const STATUS_STOP: i32 = 1;

/// The trampoline behind every plugin function: arguments by pointer, the result written
/// to `ret`, a status returned.
pub type RawFn = unsafe extern "C-unwind" fn(args: *const c_void, ret: *mut c_void) -> i32;

/// A plugin function as the host (or another plugin) calls it: typed, checked against the
/// exporter's description when it was obtained.
pub struct PluginFn<A: AbiArgs, R: Abi> {
    raw: RawFn,
    _t: PhantomData<fn(A) -> R>,
}

impl<A: AbiArgs, R: Abi> Clone for PluginFn<A, R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<A: AbiArgs, R: Abi> Copy for PluginFn<A, R> {}

/// A call into a plugin panicked; the panic was caught at the plugin's trampoline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the plugin function panicked (caught at its trampoline)")]
pub struct PluginPanic;

impl<A: AbiArgs, R: Abi> PluginFn<A, R> {
    /// # Safety
    /// `raw` must be a trampoline for arguments `A` and result `R`.
    pub(crate) unsafe fn from_raw(raw: RawFn) -> Self {
        PluginFn {
            raw,
            _t: PhantomData,
        }
    }

    /// The trampoline itself (for benchmarks and for callers that want the bare pointer;
    /// it stays valid only while the plugin is pinned).
    pub fn as_raw(&self) -> RawFn {
        self.raw
    }

    /// Calls the function; a panic inside it is an error.
    #[inline]
    pub fn call(&self, args: A) -> Result<R, PluginPanic> {
        let mut ret = std::mem::MaybeUninit::<R>::uninit();
        // SAFETY: the trampoline was checked (CRC of its description) to take `A` and
        // write an `R` when it returns STATUS_OK.
        let st = unsafe {
            (self.raw)(
                &args as *const A as *const c_void,
                ret.as_mut_ptr() as *mut c_void,
            )
        };
        if st == STATUS_OK {
            // SAFETY: STATUS_OK means the trampoline wrote the result.
            Ok(unsafe { ret.assume_init() })
        } else {
            Err(PluginPanic)
        }
    }
}

/// A plugin function borrowed from the [`crate::Symbol`] that holds it
/// ([`crate::Symbol::bind`]): the bare trampoline pointer, copied out of the handle so that a
/// hot loop calls it without going through the handle, and usable only while the handle
/// is borrowed (so while the plugin stays pinned).
pub struct BoundFn<'s, A: AbiArgs, R: Abi> {
    f: PluginFn<A, R>,
    _held: PhantomData<&'s ()>,
}

impl<A: AbiArgs, R: Abi> Clone for BoundFn<'_, A, R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<A: AbiArgs, R: Abi> Copy for BoundFn<'_, A, R> {}

impl<A: AbiArgs, R: Abi> BoundFn<'_, A, R> {
    /// Calls the function; a panic inside it is an error.
    #[inline]
    pub fn call(&self, args: A) -> Result<R, PluginPanic> {
        self.f.call(args)
    }
}

impl<A: AbiArgs, R: Abi> crate::Symbol<PluginFn<A, R>> {
    /// The function as a plain copy tied to this handle's borrow (see [`BoundFn`]).
    #[inline]
    pub fn bind(&self) -> BoundFn<'_, A, R> {
        BoundFn {
            f: **self,
            _held: PhantomData,
        }
    }
}

/// A string crossing the boundary.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RawStr {
    ptr: *const u8,
    len: usize,
}

impl RawStr {
    /// From a static string.
    pub const fn new(s: &'static str) -> RawStr {
        RawStr {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// From a borrowed string (valid while `s` is).
    pub fn borrowed(s: &str) -> RawStr {
        RawStr {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// # Safety
    /// The string must still be valid.
    pub unsafe fn as_str<'a>(&self) -> &'a str {
        // SAFETY: the caller guarantees the bytes are alive; they came from a &str.
        unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(self.ptr, self.len)) }
    }
}

/// A slice crossing the boundary.
#[repr(C)]
pub struct RawSlice<T> {
    ptr: *const T,
    len: usize,
}

impl<T> RawSlice<T> {
    /// From a static slice.
    pub const fn new(s: &'static [T]) -> RawSlice<T> {
        RawSlice {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// # Safety
    /// The slice must still be valid.
    pub unsafe fn as_slice<'a>(&self) -> &'a [T] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the caller guarantees the slice is alive; it came from a &'static [T].
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// Writes a type description through the host's callback.
pub type DescribeFn = extern "C-unwind" fn(out: *mut c_void, push: PushFn);
/// The host's callback receiving description text.
pub type PushFn = extern "C-unwind" fn(out: *mut c_void, s: RawStr);

/// One export in a plugin's descriptor.
#[repr(C)]
pub struct RawExport {
    /// Symbol name.
    pub name: RawStr,
    /// Writes the function's description (the CRC is computed from it).
    pub describe: DescribeFn,
    /// The trampoline.
    pub func: RawFn,
}

/// One import: a slot the host fills with the exporter's trampoline before init.
#[repr(C)]
pub struct RawImport {
    /// Symbol name.
    pub name: RawStr,
    /// Writes the expected description.
    pub describe: DescribeFn,
    /// The slot.
    pub slot: *const AtomicPtr<c_void>,
}

/// One init step.
#[repr(C)]
pub struct RawStep {
    /// Step name.
    pub name: RawStr,
    /// The step has an undo.
    pub has_undo: bool,
}

/// Runs init step `step` (or its undo when `undo`): returns STATUS_OK, STATUS_STOP, a
/// negative errno or STATUS_PANIC.
pub type RunStepFn =
    unsafe extern "C-unwind" fn(ctx: *const RawCtx, step: usize, undo: bool) -> i32;

/// The one descriptor a plugin exports ([`DESCRIPTOR_SYMBOL`]).
#[repr(C)]
pub struct RawDescriptor {
    /// [`ABI_VERSION`] of the plugin's modkit.
    pub abi: u32,
    /// The plugin's [`VERMAGIC`].
    pub vermagic: RawStr,
    /// Module name.
    pub name: RawStr,
    /// Exports.
    pub exports: RawSlice<RawExport>,
    /// Imports.
    pub imports: RawSlice<RawImport>,
    /// Init steps, in order.
    pub steps: RawSlice<RawStep>,
    /// Runs a step or its undo.
    pub run_step: RunStepFn,
    /// The `.modinfo` section's bytes (referenced so that the linker keeps them).
    pub modinfo: RawSlice<u8>,
}

/// The descriptor as a static (raw pointers in it point to the plugin's own statics).
#[repr(transparent)]
pub struct Descriptor(pub RawDescriptor);
// SAFETY: the descriptor is immutable and points only to immutable statics and to
// AtomicPtr slots.
unsafe impl Sync for Descriptor {}

/// An import slot as a static.
#[repr(transparent)]
pub struct Slot(pub AtomicPtr<c_void>);

impl Slot {
    /// An empty slot.
    pub const fn new() -> Slot {
        Slot(AtomicPtr::new(std::ptr::null_mut()))
    }
}

impl Default for Slot {
    fn default() -> Self {
        Slot::new()
    }
}

/// What the host gives a plugin's init step.
#[repr(C)]
pub struct RawCtx {
    /// The host's data.
    pub data: *const c_void,
    /// request_module(name): 0 or a negative errno.
    pub request_module: extern "C-unwind" fn(data: *const c_void, name: RawStr) -> i32,
    /// Starts a thread the host owns (joined before the library is closed): 0 or -errno.
    pub spawn: extern "C-unwind" fn(
        data: *const c_void,
        name: RawStr,
        run: unsafe extern "C-unwind" fn(stop: *const AtomicBool, arg: *const c_void),
        arg: *const c_void,
    ) -> i32,
    /// Logs a line in the host's log.
    pub log: extern "C-unwind" fn(data: *const c_void, line: RawStr),
}

/// What a plugin's init step receives.
pub struct PluginCtx<'a> {
    raw: &'a RawCtx,
}

/// A stop request for a plugin's owned thread.
pub struct Stop<'a> {
    flag: &'a AtomicBool,
}

impl Stop<'_> {
    /// The host asked the thread to stop (its module is being unloaded).
    pub fn stopped(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }
}

impl<'a> PluginCtx<'a> {
    #[doc(hidden)]
    /// # Safety
    /// `raw` must be the context the host passed.
    pub unsafe fn from_raw(raw: *const RawCtx) -> PluginCtx<'a> {
        // SAFETY: the host passes a valid context for the duration of the call.
        PluginCtx {
            raw: unsafe { &*raw },
        }
    }

    /// `request_module(name)`: loads a module (or plugin) by name or alias.
    pub fn request_module(&mut self, name: &str) -> Result<(), crate::Errno> {
        errno((self.raw.request_module)(
            self.raw.data,
            RawStr::borrowed(name),
        ))
    }

    /// Starts a thread the host owns: it runs `run` until it returns, and the module
    /// cannot be unloaded (nor its library closed) before the host has joined it. `run`
    /// should return soon after [`Stop::stopped`] becomes true.
    pub fn spawn(&mut self, name: &str, run: fn(&Stop<'_>)) -> Result<(), crate::Errno> {
        unsafe extern "C-unwind" fn tramp(stop: *const AtomicBool, arg: *const c_void) {
            // SAFETY: `arg` is the `fn(&Stop)` passed below; `stop` lives until joined.
            let f: fn(&Stop<'_>) = unsafe { std::mem::transmute(arg) };
            let stop = Stop {
                flag: unsafe { &*stop },
            };
            let _ = std::panic::catch_unwind(|| f(&stop));
        }
        errno((self.raw.spawn)(
            self.raw.data,
            RawStr::borrowed(name),
            tramp,
            run as *const c_void,
        ))
    }

    /// Logs a line in the host's log.
    pub fn log(&mut self, line: &str) {
        (self.raw.log)(self.raw.data, RawStr::borrowed(line))
    }
}

fn errno(r: i32) -> Result<(), crate::Errno> {
    if r >= 0 {
        Ok(())
    } else {
        Err(crate::Errno::from_code(-r).unwrap_or(crate::Errno::EINVAL))
    }
}

// SAFETY: these point only to immutable statics of the plugin (or, for RawStr::borrowed,
// to a string the caller keeps alive during the call) and are never written through.
unsafe impl Sync for RawStr {}
// SAFETY: as above.
unsafe impl Send for RawStr {}
// SAFETY: as above; the slice's elements are themselves Sync.
unsafe impl<T: Sync> Sync for RawSlice<T> {}
// SAFETY: the slot pointer targets an AtomicPtr static, which is Sync.
unsafe impl Sync for RawImport {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_follow_layout() {
        assert_eq!(
            describe_fn::<(i32, u64), i32>(),
            "fn(i32/4, u64/8) -> i32/4"
        );
        assert_ne!(
            crc_of_desc(&describe_fn::<(i32,), i32>()),
            crc_of_desc(&describe_fn::<(i64,), i64>())
        );
        assert_eq!(crc_of_desc("123456789"), 0xCBF4_3926);
    }
}
