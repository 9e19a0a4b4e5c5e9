//! Fuzzes the `.ko` reader: any bytes (plain, xz, zstd or gzip) must give a module or an
//! error, never a panic, and the modinfo signature decoder must not panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modkit_ko::signature::{signature_info, SignatureTrailer};
use modkit_ko::KoModule;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = KoModule::from_bytes(data) {
        let _ = m.modinfo_values("alias").count();
    }
    if let Some(t) = SignatureTrailer::parse(data) {
        let _ = signature_info(data, &t);
    }
});
