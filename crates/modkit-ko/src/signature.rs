//! The module signature trailer (`~Module signature appended~\n`) and its PKCS#7 contents,
//! decoded the way kmod 30 (built with OpenSSL) reports them in `modinfo`.

use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier};
use const_oid::ObjectIdentifier;
use der::Decode;

/// The magic string at the very end of a signed module (the format lives in
/// `modkit_core::modsig`, shared with the plugin host's verifier).
pub use modkit_core::modsig::SIG_MAGIC;

const HASH_ALGOS: [&str; 9] = [
    "md4", "md5", "sha1", "rmd160", "sha256", "sha384", "sha512", "sha224", "sm3",
];
const ID_TYPES: [&str; 3] = ["PGP", "X509", "PKCS#7"];

/// `struct module_signature`, the 12 bytes before the magic, with where its parts lie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureTrailer {
    /// Public-key algorithm (0 DSA, 1 RSA; 0 for PKCS#7).
    pub algo: u8,
    /// Digest algorithm index (0 for PKCS#7).
    pub hash: u8,
    /// Key identifier type (0 PGP, 1 X509, 2 PKCS#7).
    pub id_type: u8,
    /// Length of the signer's name (0 for PKCS#7).
    pub signer_len: u8,
    /// Length of the key identifier (0 for PKCS#7).
    pub key_id_len: u8,
    /// Length of the signature blob.
    pub sig_len: u32,
    /// Offset of the signature blob in the module bytes.
    pub sig_offset: usize,
    /// Offset where the signed content (the ELF image) ends.
    pub content_len: usize,
}

impl SignatureTrailer {
    /// Parses the trailer at the end of `data`, applying kmod's validity checks.
    /// Returns `None` when there is no (valid) signature.
    pub fn parse(data: &[u8]) -> Option<SignatureTrailer> {
        let (raw, size) = modkit_core::modsig::RawTrailer::read(data)?;
        let (algo, hash, id_type, signer_len, key_id_len) = (
            raw.algo,
            raw.hash,
            raw.id_type,
            raw.signer_len,
            raw.key_id_len,
        );
        // kmod's checks (libkmod-signature.c), more lenient than the kernel's
        // mod_check_sig(): any known algo, hash and id type.
        if algo >= 2 || hash as usize >= HASH_ALGOS.len() || id_type as usize >= ID_TYPES.len() {
            return None;
        }
        let sig_len = raw.sig_len;
        let total = signer_len as usize + key_id_len as usize + sig_len as usize;
        if sig_len == 0 || size < total {
            return None;
        }
        Some(SignatureTrailer {
            algo,
            hash,
            id_type,
            signer_len,
            key_id_len,
            sig_len,
            sig_offset: size - sig_len as usize,
            content_len: size - total,
        })
    }

    /// The key identifier type as kmod names it (`PKCS#7`, `X509`, `PGP`).
    pub fn id_type_name(&self) -> &'static str {
        ID_TYPES[self.id_type as usize]
    }
}

/// What `modinfo` shows about a signature (`sig_id`, `signer`, `sig_key`, `sig_hashalgo`,
/// `signature`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureInfo {
    /// `sig_id`: `PKCS#7`, `X509` or `PGP`.
    pub id_type: &'static str,
    /// `signer`: the issuer's common name for PKCS#7.
    pub signer: Vec<u8>,
    /// `sig_key`: the certificate serial number (PKCS#7) or key id bytes.
    pub key_id: Vec<u8>,
    /// `sig_hashalgo`, when known.
    pub hash_algo: Option<&'static str>,
    /// `signature`: the raw signature bytes.
    pub signature: Vec<u8>,
}

/// Decodes the signature of a module whose trailer is `t`, like kmod's
/// `kmod_module_signature_info`. Returns `None` when kmod would show no signature keys
/// (for instance an undecodable PKCS#7 blob).
pub fn signature_info(data: &[u8], t: &SignatureTrailer) -> Option<SignatureInfo> {
    let sig = data.get(t.sig_offset..t.sig_offset + t.sig_len as usize)?;
    if t.id_type == 2 {
        return pkcs7_info(sig, t);
    }
    let key_off = t.sig_offset - t.key_id_len as usize;
    let signer_off = key_off - t.signer_len as usize;
    Some(SignatureInfo {
        id_type: t.id_type_name(),
        signer: data[signer_off..key_off].to_vec(),
        key_id: data[key_off..t.sig_offset].to_vec(),
        hash_algo: Some(HASH_ALGOS[t.hash as usize]),
        signature: sig.to_vec(),
    })
}

fn hash_algo_name(oid: &ObjectIdentifier) -> Option<&'static str> {
    let table: [(&str, &'static str); 9] = [
        ("1.2.840.113549.2.4", "md4"),
        ("1.2.840.113549.2.5", "md5"),
        ("1.3.14.3.2.26", "sha1"),
        ("1.3.36.3.2.1", "rmd160"),
        ("2.16.840.1.101.3.4.2.1", "sha256"),
        ("2.16.840.1.101.3.4.2.2", "sha384"),
        ("2.16.840.1.101.3.4.2.3", "sha512"),
        ("2.16.840.1.101.3.4.2.4", "sha224"),
        ("1.2.156.10197.1.401", "sm3"),
    ];
    let s = oid.to_string();
    table.iter().find(|(o, _)| *o == s).map(|(_, n)| *n)
}

fn pkcs7_info(blob: &[u8], t: &SignatureTrailer) -> Option<SignatureInfo> {
    let ci = ContentInfo::from_der(blob).ok()?;
    let sd: SignedData = ci.content.decode_as().ok()?;
    let si = sd.signer_infos.0.iter().next()?;
    let SignerIdentifier::IssuerAndSerialNumber(ias) = &si.sid else {
        return None;
    };
    // OpenSSL's BN_bn2bin: big-endian magnitude without leading zero bytes.
    let serial = ias.serial_number.as_bytes();
    let first = serial.iter().position(|&b| b != 0).unwrap_or(serial.len());
    let key_id = serial[first..].to_vec();
    // kmod's x509_name_to_str: the commonName entry, or (a kmod quirk) the last entry
    // when there is no commonName.
    const CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
    let mut signer = Vec::new();
    let mut last = None;
    for rdn in ias.issuer.0.iter() {
        for atv in rdn.0.iter() {
            last = Some(atv);
            if atv.oid == CN {
                break;
            }
        }
        if last.is_some_and(|a| a.oid == CN) {
            break;
        }
    }
    if let Some(atv) = last {
        let v = atv.value.value();
        let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
        signer = v[..end].to_vec();
    }
    Some(SignatureInfo {
        id_type: t.id_type_name(),
        signer,
        key_id,
        hash_algo: hash_algo_name(&si.digest_alg.oid),
        signature: si.signature.as_bytes().to_vec(),
    })
}

/// Formats bytes like kmod's `kmod_module_hex_to_str`: `AB:CD:...`, with `\n\t\t` after
/// every 20 bytes.
pub fn hex_to_str(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3 + bytes.len() / 20 * 3);
    for (i, b) in bytes.iter().enumerate() {
        s.push_str(&format!("{b:02X}"));
        if i + 1 < bytes.len() {
            s.push(':');
            if (i + 1) % 20 == 0 {
                s.push_str("\n\t\t");
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trailer(id_type: u8, signer: &[u8], key: &[u8], sig: &[u8]) -> Vec<u8> {
        let mut v = b"ELFDATA".to_vec();
        v.extend_from_slice(signer);
        v.extend_from_slice(key);
        v.extend_from_slice(sig);
        v.extend_from_slice(&[1, 4, id_type, signer.len() as u8, key.len() as u8, 0, 0, 0]);
        v.extend_from_slice(&(sig.len() as u32).to_be_bytes());
        v.extend_from_slice(SIG_MAGIC);
        v
    }

    #[test]
    fn parses_x509_style_trailer() {
        let data = trailer(1, b"me", b"\x01\x02", b"SIG");
        let t = SignatureTrailer::parse(&data).unwrap();
        assert_eq!(t.content_len, 7);
        let info = signature_info(&data, &t).unwrap();
        assert_eq!(info.id_type, "X509");
        assert_eq!(info.signer, b"me");
        assert_eq!(info.key_id, b"\x01\x02");
        assert_eq!(info.hash_algo, Some("sha256"));
        assert_eq!(info.signature, b"SIG");
    }

    #[test]
    fn rejects_bad_trailers() {
        assert!(SignatureTrailer::parse(b"short").is_none());
        assert!(SignatureTrailer::parse(SIG_MAGIC).is_none());
        let mut data = trailer(1, b"", b"", b"S");
        let n = data.len();
        data[n - 28 - 4..n - 28].copy_from_slice(&1000u32.to_be_bytes());
        assert!(SignatureTrailer::parse(&data).is_none());
        let data = trailer(7, b"", b"", b"S");
        assert!(SignatureTrailer::parse(&data).is_none());
        // A PKCS#7 id with garbage content decodes to no info, without panicking.
        let data = trailer(2, b"", b"", b"\x30\x80garbage");
        let t = SignatureTrailer::parse(&data).unwrap();
        assert!(signature_info(&data, &t).is_none());
    }

    #[test]
    fn hex_like_kmod() {
        assert_eq!(hex_to_str(&[0xab, 1]), "AB:01");
        let v: Vec<u8> = (0..21).collect();
        let s = hex_to_str(&v);
        assert!(s.contains("13:\n\t\t14"));
        assert_eq!(hex_to_str(&[]), "");
    }
}
