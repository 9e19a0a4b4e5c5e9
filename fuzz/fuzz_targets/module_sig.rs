//! The module-signature verifier (modkit's `signing` feature): the trailer, the PKCS#7
//! DER, the signer lookup and the signature check. Any input must give a result or an
//! error, never a panic, in bounded time and memory (sig_len is checked against the
//! input's length before anything is sliced).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use modkit::plugin::signing::{verify, Keyring};

static RING: OnceLock<Keyring> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let ring = RING.get_or_init(|| {
        let mut k = Keyring::new();
        for pem in [
            &include_bytes!("../../crates/modkit/src/plugin/signing/testdata/rsa.crt.pem")[..],
            &include_bytes!("../../crates/modkit/src/plugin/signing/testdata/p256.crt.pem")[..],
        ] {
            k.add_pem(pem).expect("test certificates parse");
        }
        k
    });
    let _ = modkit_core::modsig::split_kernel(data);
    if let Err(e) = verify(data, ring) {
        let _ = (e.errno(), e.is_waivable(), e.to_string());
    }
});
