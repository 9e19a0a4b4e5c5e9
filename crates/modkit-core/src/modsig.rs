//! The module-signature trailer's format, without any cryptography: `struct
//! module_signature` (include/linux/module_signature.h) and the magic
//! `~Module signature appended~\n` that `scripts/sign-file` appends after the PKCS#7
//! (CMS) SignedData blob:
//!
//! ```text
//! [ signed content (the ELF image) ][ PKCS#7 DER, sig_len bytes ][ 12-byte trailer ][ magic ]
//! ```
//!
//! The trailer is `algo, hash, id_type, signer_len, key_id_len, __pad[3], sig_len (be32)`;
//! for PKCS#7 every byte field is 0 except `id_type = 2` (`PKEY_ID_PKCS7`).
//!
//! Two readers need it: the `.ko` tools (kmod's lenient reading for `modinfo`) and the
//! plugin host's verifier (the kernel's strict `mod_check_sig()`), so the bytes are read
//! once here and each applies its own rules. All reads are bounded: any input gives a
//! value or an error, never a panic.

/// The magic string at the very end of a signed module (`MODULE_SIG_STRING`).
pub const SIG_MAGIC: &[u8] = b"~Module signature appended~\n";

/// Size of `struct module_signature`.
pub const TRAILER_LEN: usize = 12;

/// `PKEY_ID_PKCS7`: the only `id_type` the kernel accepts since 4.3.
pub const PKEY_ID_PKCS7: u8 = 2;

/// `struct module_signature` as it lies in the file, fields unchecked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawTrailer {
    /// Public-key algorithm (0 for PKCS#7).
    pub algo: u8,
    /// Digest algorithm index (0 for PKCS#7).
    pub hash: u8,
    /// Key identifier type (0 PGP, 1 X509, 2 PKCS#7).
    pub id_type: u8,
    /// Length of the signer's name (0 for PKCS#7).
    pub signer_len: u8,
    /// Length of the key identifier (0 for PKCS#7).
    pub key_id_len: u8,
    /// Padding (must be 0).
    pub pad: [u8; 3],
    /// Length of the signature blob (big-endian in the file).
    pub sig_len: u32,
}

impl RawTrailer {
    /// Reads the trailer of `data` when it ends with [`SIG_MAGIC`]: the trailer and the
    /// offset where it starts (everything before it is content, signer, key id and
    /// signature). `None`: no magic (an unsigned file) or too short to hold a trailer.
    pub fn read(data: &[u8]) -> Option<(RawTrailer, usize)> {
        let end = data.len().checked_sub(SIG_MAGIC.len())?;
        if &data[end..] != SIG_MAGIC {
            return None;
        }
        let at = end.checked_sub(TRAILER_LEN)?;
        let h = &data[at..end];
        Some((
            RawTrailer {
                algo: h[0],
                hash: h[1],
                id_type: h[2],
                signer_len: h[3],
                key_id_len: h[4],
                pad: [h[5], h[6], h[7]],
                sig_len: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
            },
            at,
        ))
    }

    /// The trailer `scripts/sign-file` writes for a PKCS#7 blob of `sig_len` bytes,
    /// followed by the magic: the bytes to append after the blob.
    pub fn pkcs7_suffix(sig_len: u32) -> Vec<u8> {
        let mut v = Vec::with_capacity(TRAILER_LEN + SIG_MAGIC.len());
        v.extend_from_slice(&[0, 0, PKEY_ID_PKCS7, 0, 0, 0, 0, 0]);
        v.extend_from_slice(&sig_len.to_be_bytes());
        v.extend_from_slice(SIG_MAGIC);
        v
    }
}

/// Why a file's signature trailer is not one the kernel would check, with the errno
/// `mod_check_sig()` (kernel/module_signature.c) / `module_sig_check()`
/// (kernel/module/signing.c) give for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrailerError {
    /// No `~Module signature appended~` at the end: `-ENODATA` ("unsigned module").
    #[error("no module signature (the file does not end with \"~Module signature appended~\\n\"); sign it with `modkit sign`")]
    Unsigned,
    /// `id_type` is not PKCS#7: `-ENOPKG` ("module with unsupported crypto"; the kernel
    /// logs "not signed with expected PKCS#7 message").
    #[error("signature id_type {0} is not PKCS#7 (2): not signed with expected PKCS#7 message")]
    NotPkcs7(u8),
    /// `sig_len` does not fit in the file: `-EBADMSG`.
    #[error("signature length {sig_len} does not fit in the {file_len}-byte file (truncated or corrupt trailer)")]
    BadLength {
        /// The trailer's `sig_len`.
        sig_len: u32,
        /// The file's length.
        file_len: usize,
    },
    /// A PKCS#7 trailer with non-zero `algo`, `hash`, `signer_len`, `key_id_len` or
    /// padding: `-EBADMSG` ("PKCS#7 signature info has unexpected non-zero params").
    #[error("PKCS#7 signature info has unexpected non-zero params")]
    NonZeroParams,
}

impl TrailerError {
    /// The errno the kernel's check gives (before `module_sig_check()` turns ENODATA,
    /// ENOPKG and ENOKEY into EKEYREJECTED under enforcement).
    pub fn errno(&self) -> crate::Errno {
        match self {
            TrailerError::Unsigned => crate::Errno::ENODATA,
            TrailerError::NotPkcs7(_) => crate::Errno::ENOPKG,
            TrailerError::BadLength { .. } | TrailerError::NonZeroParams => crate::Errno::EBADMSG,
        }
    }
}

/// A signed file split the way `mod_verify_sig()` splits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedParts<'a> {
    /// The signed content (the ELF image without the signature).
    pub content: &'a [u8],
    /// The PKCS#7 (CMS) SignedData, DER.
    pub pkcs7: &'a [u8],
}

/// Splits `data` into content and PKCS#7 blob with the kernel's checks, in its order
/// (`module_sig_check()` → `mod_verify_sig()` → `mod_check_sig()`, Linux 5.4–6.19):
/// no magic → [`TrailerError::Unsigned`]; `sig_len >= len - sizeof(ms)` →
/// [`TrailerError::BadLength`]; `id_type != PKEY_ID_PKCS7` → [`TrailerError::NotPkcs7`];
/// any other non-zero byte field → [`TrailerError::NonZeroParams`].
pub fn split_kernel(data: &[u8]) -> Result<SignedParts<'_>, TrailerError> {
    // module_sig_check(): info->len > markerlen and the magic at the end.
    if data.len() <= SIG_MAGIC.len() || !data.ends_with(SIG_MAGIC) {
        return Err(TrailerError::Unsigned);
    }
    let modlen = data.len() - SIG_MAGIC.len();
    // mod_verify_sig(): modlen <= sizeof(ms) → -EBADMSG.
    if modlen <= TRAILER_LEN {
        return Err(TrailerError::BadLength {
            sig_len: 0,
            file_len: data.len(),
        });
    }
    let (t, at) = RawTrailer::read(data).ok_or(TrailerError::Unsigned)?;
    // mod_check_sig(): sig_len >= file_len - sizeof(*ms) → -EBADMSG, checked first.
    if t.sig_len as usize >= modlen - TRAILER_LEN {
        return Err(TrailerError::BadLength {
            sig_len: t.sig_len,
            file_len: data.len(),
        });
    }
    if t.id_type != PKEY_ID_PKCS7 {
        return Err(TrailerError::NotPkcs7(t.id_type));
    }
    if t.algo != 0 || t.hash != 0 || t.signer_len != 0 || t.key_id_len != 0 || t.pad != [0; 3] {
        return Err(TrailerError::NonZeroParams);
    }
    let sig_at = at - t.sig_len as usize;
    Ok(SignedParts {
        content: &data[..sig_at],
        pkcs7: &data[sig_at..at],
    })
}

/// The content of `data` without its signature when it carries a well-formed PKCS#7
/// trailer (for re-signing), or `data` itself when it carries none.
pub fn strip(data: &[u8]) -> Result<&[u8], TrailerError> {
    match split_kernel(data) {
        Ok(p) => Ok(p.content),
        Err(TrailerError::Unsigned) => Ok(data),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(content: &[u8], sig: &[u8]) -> Vec<u8> {
        let mut v = content.to_vec();
        v.extend_from_slice(sig);
        v.extend_from_slice(&RawTrailer::pkcs7_suffix(sig.len() as u32));
        v
    }

    #[test]
    fn splits_what_it_appends() {
        let data = signed(b"\x7fELF body", b"0\x03DER");
        let p = split_kernel(&data).unwrap();
        assert_eq!(p.content, b"\x7fELF body");
        assert_eq!(p.pkcs7, b"0\x03DER");
        assert_eq!(strip(&data).unwrap(), b"\x7fELF body");
        assert_eq!(strip(b"plain").unwrap(), b"plain");
    }

    #[test]
    fn kernel_errors_in_kernel_order() {
        assert_eq!(split_kernel(b"").unwrap_err(), TrailerError::Unsigned);
        assert_eq!(split_kernel(SIG_MAGIC).unwrap_err(), TrailerError::Unsigned);
        assert_eq!(
            split_kernel(b"\x7fELF unsigned").unwrap_err().errno(),
            crate::Errno::ENODATA
        );
        // Magic with too little before it: truncated.
        let mut short = vec![0u8; 5];
        short.extend_from_slice(SIG_MAGIC);
        assert!(matches!(
            split_kernel(&short).unwrap_err(),
            TrailerError::BadLength { .. }
        ));
        // A huge sig_len: EBADMSG, no panic, no allocation.
        let mut data = signed(b"content", b"sig");
        let n = data.len() - SIG_MAGIC.len();
        data[n - 4..n].copy_from_slice(&u32::MAX.to_be_bytes());
        let e = split_kernel(&data).unwrap_err();
        assert_eq!(e.errno(), crate::Errno::EBADMSG);
        assert!(e.to_string().contains("4294967295"), "{e}");
        // sig_len equal to everything before the trailer: the kernel's >= check.
        let mut data = signed(b"", b"sig");
        let n = data.len() - SIG_MAGIC.len();
        data[n - 4..n].copy_from_slice(&3u32.to_be_bytes());
        assert!(matches!(
            split_kernel(&data).unwrap_err(),
            TrailerError::BadLength { .. }
        ));
        // Not PKCS#7: ENOPKG.
        let mut data = signed(b"content", b"sig");
        let t = data.len() - SIG_MAGIC.len() - TRAILER_LEN;
        data[t + 2] = 1;
        assert_eq!(split_kernel(&data).unwrap_err(), TrailerError::NotPkcs7(1));
        assert_eq!(TrailerError::NotPkcs7(1).errno(), crate::Errno::ENOPKG);
        // PKCS#7 with a hash byte set: EBADMSG.
        let mut data = signed(b"content", b"sig");
        data[t + 1] = 4;
        assert_eq!(
            split_kernel(&data).unwrap_err(),
            TrailerError::NonZeroParams
        );
        data[t + 1] = 0;
        data[t + 6] = 1;
        assert_eq!(
            split_kernel(&data).unwrap_err(),
            TrailerError::NonZeroParams
        );
    }

    #[test]
    fn every_truncation_is_an_error_or_unsigned() {
        let data = signed(b"\x7fELF some content here", b"0\x05sig..");
        for n in 0..data.len() {
            let r = split_kernel(&data[..n]);
            assert!(r.is_err(), "prefix {n} split");
        }
        assert!(split_kernel(&data).is_ok());
    }
}
