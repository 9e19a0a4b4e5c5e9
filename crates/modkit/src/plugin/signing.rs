//! Plugin signatures in the kernel's module-signature format (feature `signing`).
//!
//! A signed plugin is the shared object followed by a detached PKCS#7 (CMS) SignedData
//! over it, `struct module_signature` and `~Module signature appended~\n`, exactly what
//! the kernel's `scripts/sign-file` appends to a `.ko` (the trailer's format is
//! [`modkit_core::modsig`]). [`sign`] writes it; [`verify`] checks it against a
//! [`Keyring`] of X.509 certificates the way the kernel's `mod_verify_sig()` →
//! `verify_pkcs7_signature()` does; [`Host::with_keyring`] makes the host check every
//! plugin file *before* dlopen, under a [`SigPolicy`].
//!
//! What the kernel does (kernel/module/signing.c `module_sig_check()`, 5.4–6.19, and
//! crypto/asymmetric_keys/pkcs7_verify.c, pkcs7_trust.c), and modkit follows:
//!
//! - no signature (`-ENODATA`), unsupported crypto (`-ENOPKG`), or no key in the keyring
//!   matching the signer (`-ENOKEY`): under enforcement (`module.sig_enforce=1`) the load
//!   fails with `-EKEYREJECTED` after `pr_notice("Loading of %s is rejected")` with reason
//!   "unsigned module", "module with unsupported crypto" or "module with unavailable key";
//!   otherwise the module loads, and once listed it gets the `E` taint
//!   (`TAINT_UNSIGNED_MODULE`) with "module verification failed: signature and/or
//!   required key missing - tainting kernel" (`pr_notice_once`, kernel/module/main.c);
//! - every other error is fatal even without enforcement ("All other errors are fatal,
//!   including lack of memory, unparseable signatures, and signature check failures --
//!   even if signatures aren't required."): an unparseable blob or trailer (`-EBADMSG`),
//!   a signature that does not match the content under a key of the keyring
//!   (`-EKEYREJECTED`, public_key_verify_signature()), and a module signature with signed
//!   attributes or whose content type is not `id-data` (`pkcs7_verify()`:
//!   "Invalid module sig (has authattrs)", -EKEYREJECTED; 4.3–6.19).
//!
//! Differences, chosen: the keyring holds the certificates that may sign (the kernel's
//! builtin and secondary keyrings); certificates embedded in the message are ignored, so
//! there is no chain building; validity dates are not checked (nor does the kernel for
//! module signatures). Digests: SHA-224/256/384/512 (SHA-1, which 6.1 still accepts, is
//! refused as unsupported crypto, `-ENOPKG`); keys: RSA (PKCS#1 v1.5) and ECDSA on
//! P-256/P-384 (the kernel verifies ECDSA module signatures since 5.13).
//!
//! A plugin file is verified as read from disk, then opened with dlopen by path: a writer
//! that can replace the file between the two could swap it (the kernel avoids this by
//! loading from the very buffer it verified, which dlopen cannot do without changing the
//! library's identity). modkit re-checks the file's identity (device, inode, size, mtime)
//! after dlopen and refuses the plugin when it changed, before calling any of its code;
//! but ELF constructors of a file swapped in that window would already have run inside
//! dlopen (Rust plugins have none unless they ask for one). A plugin directory writable
//! by untrusted users is therefore not safe, signatures or not.

use std::path::Path;
use std::sync::Arc;

use cms::cert::IssuerAndSerialNumber;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use const_oid::ObjectIdentifier;
use der::asn1::{OctetString, SetOfVec};
use der::{Any, Decode, Encode};
use modkit_core::modsig::{self, RawTrailer, TrailerError};
use modkit_core::Errno;
use sha2::Digest;
use spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;

use crate::Host;

const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const SUBJECT_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

/// A digest algorithm of a module signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgo {
    /// SHA-224 (verification only, as the kernel accepts it).
    Sha224,
    /// SHA-256 (`modkit sign`'s default, Debian's CONFIG_MODULE_SIG_HASH).
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512 (the kernel's default CONFIG_MODULE_SIG_HASH since 6.x).
    Sha512,
}

impl HashAlgo {
    /// The name sign-file takes (`sha256`...).
    pub fn name(self) -> &'static str {
        match self {
            HashAlgo::Sha224 => "sha224",
            HashAlgo::Sha256 => "sha256",
            HashAlgo::Sha384 => "sha384",
            HashAlgo::Sha512 => "sha512",
        }
    }

    /// Parses a name as sign-file takes it.
    pub fn from_name(s: &str) -> Option<HashAlgo> {
        [
            HashAlgo::Sha224,
            HashAlgo::Sha256,
            HashAlgo::Sha384,
            HashAlgo::Sha512,
        ]
        .into_iter()
        .find(|h| h.name() == s)
    }

    fn oid(self) -> ObjectIdentifier {
        ObjectIdentifier::new_unwrap(match self {
            HashAlgo::Sha256 => "2.16.840.1.101.3.4.2.1",
            HashAlgo::Sha384 => "2.16.840.1.101.3.4.2.2",
            HashAlgo::Sha512 => "2.16.840.1.101.3.4.2.3",
            HashAlgo::Sha224 => "2.16.840.1.101.3.4.2.4",
        })
    }

    fn from_oid(oid: &ObjectIdentifier) -> Option<HashAlgo> {
        [
            HashAlgo::Sha224,
            HashAlgo::Sha256,
            HashAlgo::Sha384,
            HashAlgo::Sha512,
        ]
        .into_iter()
        .find(|h| h.oid() == *oid)
    }

    /// `sha{N}WithRSAEncryption`.
    fn rsa_oid(self) -> ObjectIdentifier {
        ObjectIdentifier::new_unwrap(match self {
            HashAlgo::Sha256 => "1.2.840.113549.1.1.11",
            HashAlgo::Sha384 => "1.2.840.113549.1.1.12",
            HashAlgo::Sha512 => "1.2.840.113549.1.1.13",
            HashAlgo::Sha224 => "1.2.840.113549.1.1.14",
        })
    }

    /// `ecdsa-with-SHA{N}`.
    fn ecdsa_oid(self) -> ObjectIdentifier {
        ObjectIdentifier::new_unwrap(match self {
            HashAlgo::Sha224 => "1.2.840.10045.4.3.1",
            HashAlgo::Sha256 => "1.2.840.10045.4.3.2",
            HashAlgo::Sha384 => "1.2.840.10045.4.3.3",
            HashAlgo::Sha512 => "1.2.840.10045.4.3.4",
        })
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            HashAlgo::Sha224 => sha2::Sha224::digest(data).to_vec(),
            HashAlgo::Sha256 => sha2::Sha256::digest(data).to_vec(),
            HashAlgo::Sha384 => sha2::Sha384::digest(data).to_vec(),
            HashAlgo::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    fn pkcs1v15(self) -> rsa::Pkcs1v15Sign {
        match self {
            HashAlgo::Sha224 => rsa::Pkcs1v15Sign::new::<sha2::Sha224>(),
            HashAlgo::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
            HashAlgo::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
            HashAlgo::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
        }
    }
}

/// Why a signature did not verify, with the kernel's errno for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// The trailer: no signature (`ENODATA`), not PKCS#7 (`ENOPKG`) or malformed
    /// (`EBADMSG`).
    #[error("{0}")]
    Trailer(#[from] TrailerError),
    /// The PKCS#7 blob does not parse, or is not what sign-file writes (`EBADMSG`).
    #[error("malformed PKCS#7 signature: {0}")]
    Malformed(String),
    /// A digest or signature algorithm modkit does not verify (`ENOPKG`).
    #[error("unsupported crypto: {0}")]
    Unsupported(String),
    /// No certificate in the keyring matches the signer (`ENOKEY`).
    #[error("no key in the keyring for the signer ({0})")]
    NoKey(String),
    /// The signature does not match the content under the signer's key, or the message
    /// is not one the kernel accepts for a module (`EKEYREJECTED`).
    #[error("signature rejected: {0}")]
    Rejected(String),
}

impl SigError {
    /// The errno the kernel's verification gives (before `module_sig_check()` applies the
    /// policy).
    pub fn errno(&self) -> Errno {
        match self {
            SigError::Trailer(t) => t.errno(),
            SigError::Malformed(_) => Errno::EBADMSG,
            SigError::Unsupported(_) => Errno::ENOPKG,
            SigError::NoKey(_) => Errno::ENOKEY,
            SigError::Rejected(_) => Errno::EKEYREJECTED,
        }
    }

    /// Whether `module_sig_check()` lets the module load (tainted) without enforcement:
    /// ENODATA, ENOPKG and ENOKEY; every other error is fatal.
    pub fn is_waivable(&self) -> bool {
        matches!(self.errno(), Errno::ENODATA | Errno::ENOPKG | Errno::ENOKEY)
    }

    /// The reason `module_sig_check()` prints in "Loading of %s is rejected".
    pub fn reason(&self) -> &'static str {
        match self.errno() {
            Errno::ENODATA => "unsigned module",
            Errno::ENOPKG => "module with unsupported crypto",
            Errno::ENOKEY => "module with unavailable key",
            _ => "module with a bad signature",
        }
    }
}

/// Loading keys and certificates, and signing, failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A certificate could not be read.
    #[error("certificate: {0}")]
    Cert(String),
    /// A private key could not be read.
    #[error("private key: {0}")]
    Key(String),
    /// The private key is not the certificate's.
    #[error("the private key does not match the certificate's public key (subject {0})")]
    Mismatch(String),
    /// The file already carries a signature.
    #[error("the file is already signed (it ends with \"~Module signature appended~\"); re-sign with --replace (strips the old signature first)")]
    AlreadySigned,
    /// Signing or encoding failed.
    #[error("signing failed: {0}")]
    Sign(String),
}

/// The PEM blocks of a text: (label, DER).
fn pem_blocks(text: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let s = String::from_utf8_lossy(text);
    let mut out = Vec::new();
    let mut rest: &str = &s;
    while let Some(b) = rest.find("-----BEGIN ") {
        let from = &rest[b..];
        let Some(lab_end) = from[11..].find("-----") else {
            return Err("unterminated PEM header".into());
        };
        let label = &from[11..11 + lab_end];
        let end_marker = format!("-----END {label}-----");
        let Some(e) = from.find(&end_marker) else {
            return Err(format!("PEM block {label} has no END line"));
        };
        let block = &from[..e + end_marker.len()];
        let (l, der) = der::pem::decode_vec(block.as_bytes())
            .map_err(|e| format!("PEM block {label}: {e}"))?;
        out.push((l.to_string(), der));
        rest = &from[e + end_marker.len()..];
    }
    Ok(out)
}

fn common_name(name: &x509_cert::name::Name) -> String {
    for rdn in name.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid == COMMON_NAME {
                let v = atv.value.value();
                return String::from_utf8_lossy(v).into_owned();
            }
        }
    }
    name.to_string()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A certificate of the keyring, with what verification looks up.
#[derive(Clone)]
struct KeyCert {
    issuer: Vec<u8>,
    serial: Vec<u8>,
    skid: Option<Vec<u8>>,
    spki: Vec<u8>,
    key_algo: ObjectIdentifier,
    curve: Option<ObjectIdentifier>,
    subject: String,
}

impl KeyCert {
    fn new(cert: &Certificate) -> Result<KeyCert, KeyError> {
        let tbs = &cert.tbs_certificate;
        let enc = |e: der::Error| KeyError::Cert(e.to_string());
        let skid = tbs
            .extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id == SUBJECT_KEY_ID)
            .and_then(|e| OctetString::from_der(e.extn_value.as_bytes()).ok())
            .map(|o| o.as_bytes().to_vec());
        let alg = &tbs.subject_public_key_info.algorithm;
        let curve = alg
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        Ok(KeyCert {
            issuer: tbs.issuer.to_der().map_err(enc)?,
            serial: tbs.serial_number.as_bytes().to_vec(),
            skid,
            spki: tbs.subject_public_key_info.to_der().map_err(enc)?,
            key_algo: alg.oid,
            curve,
            subject: common_name(&tbs.subject),
        })
    }
}

/// The certificates whose keys may sign plugins (the kernel's builtin and secondary
/// trusted keyrings).
#[derive(Clone, Default)]
pub struct Keyring {
    certs: Vec<KeyCert>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.certs.iter().map(|c| &c.subject))
            .finish()
    }
}

impl Keyring {
    /// An empty keyring (every signed plugin then fails with ENOKEY).
    pub fn new() -> Keyring {
        Keyring::default()
    }

    /// Adds one DER certificate.
    pub fn add_der(&mut self, der: &[u8]) -> Result<(), KeyError> {
        let cert = Certificate::from_der(der).map_err(|e| KeyError::Cert(e.to_string()))?;
        self.certs.push(KeyCert::new(&cert)?);
        Ok(())
    }

    /// Adds every `CERTIFICATE` block of a PEM text (other blocks, such as the private key
    /// of the kernel's `signing_key.pem`, are skipped); returns how many.
    pub fn add_pem(&mut self, pem: &[u8]) -> Result<usize, KeyError> {
        let mut n = 0;
        for (label, der) in pem_blocks(pem).map_err(KeyError::Cert)? {
            if label == "CERTIFICATE" {
                self.add_der(&der)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Adds the certificates of a file, PEM (one or more) or DER (as the kernel's
    /// `signing_key.x509`).
    pub fn add_file(&mut self, path: impl AsRef<Path>) -> Result<usize, KeyError> {
        let path = path.as_ref();
        let data =
            std::fs::read(path).map_err(|e| KeyError::Cert(format!("{}: {e}", path.display())))?;
        if data.starts_with(b"0") {
            self.add_der(&data)
                .map_err(|e| KeyError::Cert(format!("{}: {e}", path.display())))?;
            return Ok(1);
        }
        let n = self
            .add_pem(&data)
            .map_err(|e| KeyError::Cert(format!("{}: {e}", path.display())))?;
        if n == 0 {
            return Err(KeyError::Cert(format!(
                "{}: no CERTIFICATE block (expected PEM or DER)",
                path.display()
            )));
        }
        Ok(n)
    }

    /// How many certificates it holds.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    fn find(&self, sid: &SignerIdentifier) -> Result<&KeyCert, SigError> {
        match sid {
            SignerIdentifier::IssuerAndSerialNumber(ias) => {
                let issuer = ias
                    .issuer
                    .to_der()
                    .map_err(|e| SigError::Malformed(e.to_string()))?;
                let serial = ias.serial_number.as_bytes();
                self.certs
                    .iter()
                    .find(|c| c.issuer == issuer && c.serial == serial)
                    .ok_or_else(|| {
                        SigError::NoKey(format!(
                            "issuer \"{}\", serial {}",
                            common_name(&ias.issuer),
                            hex(serial)
                        ))
                    })
            }
            SignerIdentifier::SubjectKeyIdentifier(skid) => {
                let id = skid.0.as_bytes();
                self.certs
                    .iter()
                    .find(|c| c.skid.as_deref() == Some(id))
                    .ok_or_else(|| SigError::NoKey(format!("subject key id {}", hex(id))))
            }
        }
    }
}

/// What a good signature says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigInfo {
    /// The signing certificate's subject common name.
    pub signer: String,
    /// Its serial number, hex.
    pub serial: String,
    /// The digest algorithm.
    pub hash: HashAlgo,
    /// The key type: `rsa`, `ecdsa-p256` or `ecdsa-p384`.
    pub key: &'static str,
    /// Length of the signed content (the file without its signature).
    pub content_len: usize,
}

/// Verifies the module signature of `data` (a whole signed file) against `keyring`, as
/// `mod_verify_sig()` does: the trailer's checks, then the PKCS#7 message's (signed data
/// over `id-data`, detached, no signed attributes), then each signer's signature over the
/// content's digest with the keyring's key. Every signer is checked: one whose signature
/// does not verify is fatal (EKEYREJECTED); otherwise the first that verified is
/// returned, else ENOPKG when one used unsupported crypto, else ENOKEY
/// (`pkcs7_validate_trust()`).
pub fn verify(data: &[u8], keyring: &Keyring) -> Result<SigInfo, SigError> {
    let parts = modsig::split_kernel(data)?;
    let mal = |e: der::Error| SigError::Malformed(e.to_string());
    let ci = ContentInfo::from_der(parts.pkcs7).map_err(mal)?;
    if ci.content_type != ID_SIGNED_DATA {
        return Err(SigError::Malformed(format!(
            "content type {} is not signedData",
            ci.content_type
        )));
    }
    let sd: SignedData = ci.content.decode_as().map_err(mal)?;
    // pkcs7_note_signeddata_version(): 1 (PKCS#7) or 3 (CMS), else unsupported.
    if !matches!(sd.version, CmsVersion::V1 | CmsVersion::V3) {
        return Err(SigError::Malformed(format!(
            "unsupported SignedData version {:?}",
            sd.version
        )));
    }
    if sd.encap_content_info.econtent_type != ID_DATA {
        return Err(SigError::Rejected(
            "Invalid module sig (not pkcs7-data)".into(),
        ));
    }
    if sd.encap_content_info.econtent.is_some() {
        return Err(SigError::Malformed(
            "the message carries its content (a module signature is detached)".into(),
        ));
    }
    if sd.signer_infos.0.is_empty() {
        return Err(SigError::Malformed("no signer".into()));
    }
    if sd.signer_infos.0.iter().any(|s| s.signed_attrs.is_some()) {
        return Err(SigError::Rejected(
            "Invalid module sig (has authattrs)".into(),
        ));
    }
    // pkcs7_verify() checks every signer, then pkcs7_validate_trust(): a fatal error of
    // any signer ends it; otherwise success if a signer verified with a trusted key, else
    // ENOPKG if one used unsupported crypto, else ENOKEY.
    let mut good = None;
    let mut unsupported = None;
    let mut no_key = None;
    for si in sd.signer_infos.0.iter() {
        match verify_one(parts.content, si, keyring) {
            Ok(info) => good = good.or(Some(info)),
            Err(e @ SigError::NoKey(_)) => no_key = no_key.or(Some(e)),
            Err(e @ SigError::Unsupported(_)) => unsupported = unsupported.or(Some(e)),
            Err(e) => return Err(e),
        }
    }
    match (good, unsupported, no_key) {
        (Some(info), _, _) => Ok(info),
        (None, Some(e), _) => Err(e),
        (None, None, Some(e)) => Err(e),
        (None, None, None) => Err(SigError::Malformed("no signer".into())),
    }
}

fn verify_one(content: &[u8], si: &SignerInfo, keyring: &Keyring) -> Result<SigInfo, SigError> {
    // pkcs7_note_signerinfo_version(): version 1 names the signer by issuer and serial,
    // version 3 by subject key identifier; anything else is malformed.
    let by_serial = matches!(si.sid, SignerIdentifier::IssuerAndSerialNumber(_));
    match (si.version, by_serial) {
        (CmsVersion::V1, true) | (CmsVersion::V3, false) => {}
        (v, _) => {
            return Err(SigError::Malformed(format!(
                "SignerInfo version {v:?} does not fit its signer identifier"
            )))
        }
    }
    let hash = HashAlgo::from_oid(&si.digest_alg.oid)
        .ok_or_else(|| SigError::Unsupported(format!("digest algorithm {}", si.digest_alg.oid)))?;
    let cert = keyring.find(&si.sid)?;
    let sig_oid = si.signature_algorithm.oid;
    let sig = si.signature.as_bytes();
    let digest = hash.digest(content);
    let rejected = |what: &str| SigError::Rejected(format!("{what} (signer \"{}\")", cert.subject));
    let key = if cert.key_algo == RSA_ENCRYPTION {
        if sig_oid != RSA_ENCRYPTION && sig_oid != hash.rsa_oid() {
            return Err(rejected(&format!(
                "signature algorithm {sig_oid} does not fit an RSA key with {}",
                hash.name()
            )));
        }
        use rsa::pkcs8::DecodePublicKey;
        let pk = rsa::RsaPublicKey::from_public_key_der(&cert.spki)
            .map_err(|e| SigError::Unsupported(format!("RSA key: {e}")))?;
        pk.verify(hash.pkcs1v15(), &digest, sig)
            .map_err(|_| rejected("RSA signature does not match the content"))?;
        "rsa"
    } else if cert.key_algo == ID_EC_PUBLIC_KEY {
        if sig_oid != hash.ecdsa_oid() {
            return Err(rejected(&format!(
                "signature algorithm {sig_oid} does not fit an ECDSA key with {}",
                hash.name()
            )));
        }
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        use p256::pkcs8::DecodePublicKey;
        match cert.curve {
            Some(c) if c == SECP256R1 => {
                let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&cert.spki)
                    .map_err(|e| SigError::Unsupported(format!("P-256 key: {e}")))?;
                let s = p256::ecdsa::Signature::from_der(sig)
                    .map_err(|e| SigError::Malformed(format!("ECDSA signature: {e}")))?;
                vk.verify_prehash(&digest, &s)
                    .map_err(|_| rejected("ECDSA signature does not match the content"))?;
                "ecdsa-p256"
            }
            Some(c) if c == SECP384R1 => {
                let vk = p384::ecdsa::VerifyingKey::from_public_key_der(&cert.spki)
                    .map_err(|e| SigError::Unsupported(format!("P-384 key: {e}")))?;
                let s = p384::ecdsa::Signature::from_der(sig)
                    .map_err(|e| SigError::Malformed(format!("ECDSA signature: {e}")))?;
                vk.verify_prehash(&digest, &s)
                    .map_err(|_| rejected("ECDSA signature does not match the content"))?;
                "ecdsa-p384"
            }
            other => {
                return Err(SigError::Unsupported(format!(
                    "elliptic curve {}",
                    other
                        .map(|o| o.to_string())
                        .unwrap_or_else(|| "(none)".into())
                )))
            }
        }
    } else {
        return Err(SigError::Unsupported(format!(
            "public key algorithm {}",
            cert.key_algo
        )));
    };
    Ok(SigInfo {
        signer: cert.subject.clone(),
        serial: hex(&cert.serial),
        hash,
        key,
        content_len: content.len(),
    })
}

/// A private key that signs: RSA, or ECDSA on P-256 or P-384.
#[derive(Clone)]
pub enum SigningKey {
    /// RSA (PKCS#1 v1.5 signatures, as sign-file makes with an RSA key).
    Rsa(Box<rsa::RsaPrivateKey>),
    /// ECDSA on P-256.
    P256(p256::ecdsa::SigningKey),
    /// ECDSA on P-384.
    P384(p384::ecdsa::SigningKey),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SigningKey::Rsa(_) => "SigningKey::Rsa(..)",
            SigningKey::P256(_) => "SigningKey::P256(..)",
            SigningKey::P384(_) => "SigningKey::P384(..)",
        })
    }
}

impl SigningKey {
    /// Reads an unencrypted private key from PEM (`PRIVATE KEY`, `RSA PRIVATE KEY` or
    /// `EC PRIVATE KEY`; other blocks, such as the certificate in the kernel's
    /// `signing_key.pem`, are skipped) or from DER (PKCS#8).
    pub fn from_pem_or_der(data: &[u8]) -> Result<SigningKey, KeyError> {
        let blocks = if data.starts_with(b"0") {
            vec![("PRIVATE KEY".to_string(), data.to_vec())]
        } else {
            pem_blocks(data).map_err(KeyError::Key)?
        };
        for (label, der) in blocks {
            match label.as_str() {
                "PRIVATE KEY" => return SigningKey::from_pkcs8(&der),
                "RSA PRIVATE KEY" => {
                    use rsa::pkcs1::DecodeRsaPrivateKey;
                    return rsa::RsaPrivateKey::from_pkcs1_der(&der)
                        .map(|k| SigningKey::Rsa(Box::new(k)))
                        .map_err(|e| KeyError::Key(e.to_string()));
                }
                "EC PRIVATE KEY" => {
                    if let Ok(k) = p256::SecretKey::from_sec1_der(&der) {
                        return Ok(SigningKey::P256(k.into()));
                    }
                    return p384::SecretKey::from_sec1_der(&der)
                        .map(|k| SigningKey::P384(k.into()))
                        .map_err(|_| {
                            KeyError::Key("EC key on a curve other than P-256 or P-384".into())
                        });
                }
                "ENCRYPTED PRIVATE KEY" => {
                    return Err(KeyError::Key(
                        "encrypted private keys are not supported; decrypt it first (openssl pkey -in KEY -out PLAIN)".into(),
                    ))
                }
                _ => {}
            }
        }
        Err(KeyError::Key(
            "no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block".into(),
        ))
    }

    fn from_pkcs8(der: &[u8]) -> Result<SigningKey, KeyError> {
        use p256::pkcs8::DecodePrivateKey;
        if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_der(der) {
            return Ok(SigningKey::Rsa(Box::new(k)));
        }
        if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_der(der) {
            return Ok(SigningKey::P256(k));
        }
        if let Ok(k) = p384::ecdsa::SigningKey::from_pkcs8_der(der) {
            return Ok(SigningKey::P384(k));
        }
        Err(KeyError::Key(
            "PKCS#8 key is neither RSA nor ECDSA on P-256/P-384".into(),
        ))
    }

    fn public_spki(&self) -> Result<Vec<u8>, KeyError> {
        use p256::pkcs8::EncodePublicKey;
        let r = match self {
            SigningKey::Rsa(k) => k.to_public_key().to_public_key_der(),
            SigningKey::P256(k) => k.verifying_key().to_public_key_der(),
            SigningKey::P384(k) => k.verifying_key().to_public_key_der(),
        };
        r.map(|d| d.as_bytes().to_vec())
            .map_err(|e| KeyError::Key(e.to_string()))
    }
}

/// Reads a certificate from PEM (the first `CERTIFICATE` block) or DER.
pub fn certificate_from_pem_or_der(data: &[u8]) -> Result<Certificate, KeyError> {
    if data.starts_with(b"0") {
        return Certificate::from_der(data).map_err(|e| KeyError::Cert(e.to_string()));
    }
    for (label, der) in pem_blocks(data).map_err(KeyError::Cert)? {
        if label == "CERTIFICATE" {
            return Certificate::from_der(&der).map_err(|e| KeyError::Cert(e.to_string()));
        }
    }
    Err(KeyError::Cert("no CERTIFICATE block".into()))
}

/// The detached PKCS#7 (CMS) SignedData over `content` that `scripts/sign-file` makes by
/// default (CMS_NOCERTS | CMS_BINARY | CMS_DETACHED, CMS_NOATTR): version 1, one
/// SignerInfo identified by the certificate's issuer and serial number, no signed
/// attributes, no certificates, the signature over the content's digest.
pub fn pkcs7_signature(
    content: &[u8],
    key: &SigningKey,
    cert: &Certificate,
    hash: HashAlgo,
) -> Result<Vec<u8>, KeyError> {
    let kc = KeyCert::new(cert)?;
    if key.public_spki()? != kc.spki {
        return Err(KeyError::Mismatch(kc.subject));
    }
    let digest = hash.digest(content);
    let sign_err = |e: &dyn std::fmt::Display| KeyError::Sign(e.to_string());
    let (sig, sig_alg) = match key {
        SigningKey::Rsa(k) => (
            k.sign(hash.pkcs1v15(), &digest).map_err(|e| sign_err(&e))?,
            AlgorithmIdentifierOwned {
                oid: RSA_ENCRYPTION,
                parameters: Some(Any::null()),
            },
        ),
        SigningKey::P256(k) => {
            use p256::ecdsa::signature::hazmat::PrehashSigner;
            let s: p256::ecdsa::Signature = k.sign_prehash(&digest).map_err(|e| sign_err(&e))?;
            (
                s.to_der().as_bytes().to_vec(),
                AlgorithmIdentifierOwned {
                    oid: hash.ecdsa_oid(),
                    parameters: None,
                },
            )
        }
        SigningKey::P384(k) => {
            use p384::ecdsa::signature::hazmat::PrehashSigner;
            let s: p384::ecdsa::Signature = k.sign_prehash(&digest).map_err(|e| sign_err(&e))?;
            (
                s.to_der().as_bytes().to_vec(),
                AlgorithmIdentifierOwned {
                    oid: hash.ecdsa_oid(),
                    parameters: None,
                },
            )
        }
    };
    let digest_alg = AlgorithmIdentifierOwned {
        oid: hash.oid(),
        parameters: None,
    };
    let der_err = |e: der::Error| KeyError::Sign(e.to_string());
    let si = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: cert.tbs_certificate.issuer.clone(),
            serial_number: cert.tbs_certificate.serial_number.clone(),
        }),
        digest_alg: digest_alg.clone(),
        signed_attrs: None,
        signature_algorithm: sig_alg,
        signature: OctetString::new(sig).map_err(der_err)?,
        unsigned_attrs: None,
    };
    let sd = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![digest_alg]).map_err(der_err)?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_DATA,
            econtent: None,
        },
        certificates: None,
        crls: None,
        signer_infos: SignerInfos(SetOfVec::try_from(vec![si]).map_err(der_err)?),
    };
    let ci = ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: Any::encode_from(&sd).map_err(der_err)?,
    };
    ci.to_der().map_err(der_err)
}

/// Signs a file's bytes as sign-file does: `content`, the PKCS#7 blob, the
/// `module_signature` trailer (`id_type` PKCS#7, `sig_len`) and the magic. A file that is
/// already signed is refused unless `replace`, which signs its content again (the old
/// signature stripped).
pub fn sign(
    data: &[u8],
    key: &SigningKey,
    cert: &Certificate,
    hash: HashAlgo,
    replace: bool,
) -> Result<Vec<u8>, KeyError> {
    let content = if RawTrailer::read(data).is_some() {
        if !replace {
            return Err(KeyError::AlreadySigned);
        }
        modsig::strip(data).map_err(|e| KeyError::Sign(format!("the old signature: {e}")))?
    } else {
        data
    };
    let blob = pkcs7_signature(content, key, cert, hash)?;
    let sig_len =
        u32::try_from(blob.len()).map_err(|_| KeyError::Sign("signature too long".into()))?;
    let mut out = Vec::with_capacity(content.len() + blob.len() + 40);
    out.extend_from_slice(content);
    out.extend_from_slice(&blob);
    out.extend_from_slice(&RawTrailer::pkcs7_suffix(sig_len));
    Ok(out)
}

/// What the host does with a plugin whose signature is missing or cannot be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigPolicy {
    /// `module.sig_enforce=1`: such a plugin is refused before dlopen with EKEYREJECTED.
    Enforce,
    /// The kernel's default: it loads, with the `E` taint and the kernel's log line.
    Permissive,
}

/// The host's signature check: a keyring and a policy.
#[derive(Debug, Clone)]
pub(crate) struct SigCheck {
    keyring: Keyring,
    policy: SigPolicy,
}

/// Checks a plugin file's bytes (read before dlopen): `Ok(true)` signed and verified,
/// `Ok(false)` to load with the E taint (permissive, waivable error), `Err` refused.
pub(crate) fn check_bytes(
    sig: &Option<Arc<SigCheck>>,
    path: &Path,
    data: &[u8],
) -> Result<bool, super::PluginError> {
    let Some(sig) = sig else {
        return Ok(true);
    };
    let p = path.display().to_string();
    match verify(data, &sig.keyring) {
        Ok(info) => {
            tracing::info!(path = %p, signer = %info.signer, hash = info.hash.name(), key = info.key, "plugin signature verified");
            Ok(true)
        }
        Err(e) if e.is_waivable() && sig.policy == SigPolicy::Permissive => {
            tracing::warn!(path = %p, reason = e.reason(), "{e}; module verification failed: signature and/or required key missing - tainting kernel");
            Ok(false)
        }
        Err(e) => {
            // module_sig_check(): waivable errors become EKEYREJECTED under enforcement,
            // after pr_notice("Loading of %s is rejected"); the others stay as they are.
            let (errno, reason) = if e.is_waivable() {
                let line = format!("Loading of {} is rejected", e.reason());
                tracing::warn!(path = %p, "{line}");
                (Errno::EKEYREJECTED, format!("{line} ({e})"))
            } else {
                tracing::warn!(path = %p, "{e}");
                (e.errno(), e.to_string())
            };
            Err(super::PluginError::Signature {
                path: p,
                errno,
                reason,
            })
        }
    }
}

impl Host {
    /// Checks the signature of every plugin file against `keyring` before it is opened
    /// (dlopen), with `policy` deciding what a missing signature or an unknown signer does
    /// (see [`SigPolicy`] and the module documentation). A bad signature is always
    /// refused. Without this call plugins are not checked (a kernel without
    /// CONFIG_MODULE_SIG). Call it before the first `modprobe`: a plugin already
    /// registered keeps the check it was registered with.
    pub fn with_keyring(self, keyring: Keyring, policy: SigPolicy) -> Host {
        self.set_plugin_sig_check(Some(Arc::new(SigCheck { keyring, policy })));
        self
    }
}

#[cfg(test)]
mod tests;
