//! Unit tests of plugin signatures. The keys in `testdata/` are throwaway test keys (see
//! its README); the `signfile-*` files were signed by the kernel's own
//! `scripts/sign-file` (Debian linux-kbuild-6.1 6.1.176-1) over `content.bin`.

use super::*;

const RSA_KEY: &[u8] = include_bytes!("testdata/rsa.key.pem");
const RSA_CRT: &[u8] = include_bytes!("testdata/rsa.crt.pem");
const RSA_CRT_DER: &[u8] = include_bytes!("testdata/rsa.crt.der");
const OTHER_KEY: &[u8] = include_bytes!("testdata/other.key.pem");
const OTHER_CRT: &[u8] = include_bytes!("testdata/other.crt.pem");
const P256_KEY: &[u8] = include_bytes!("testdata/p256.key.pem");
const P256_CRT: &[u8] = include_bytes!("testdata/p256.crt.pem");
const P384_KEY: &[u8] = include_bytes!("testdata/p384.key.pem");
const P384_CRT: &[u8] = include_bytes!("testdata/p384.crt.pem");
const CONTENT: &[u8] = include_bytes!("testdata/content.bin");
const SF_RSA256: &[u8] = include_bytes!("testdata/signfile-rsa-sha256.bin");
const SF_RSA512: &[u8] = include_bytes!("testdata/signfile-rsa-sha512.bin");
const SF_P256: &[u8] = include_bytes!("testdata/signfile-p256-sha256.bin");

fn ring(pems: &[&[u8]]) -> Keyring {
    let mut k = Keyring::new();
    for p in pems {
        assert_eq!(k.add_pem(p).unwrap(), 1);
    }
    k
}

fn signed(key: &[u8], crt: &[u8], hash: HashAlgo) -> Vec<u8> {
    let key = SigningKey::from_pem_or_der(key).unwrap();
    let cert = certificate_from_pem_or_der(crt).unwrap();
    sign(CONTENT, &key, &cert, hash, false).unwrap()
}

#[test]
fn sign_then_verify_every_key_and_hash() {
    let k = ring(&[RSA_CRT, P256_CRT, P384_CRT]);
    for (key, crt, name) in [
        (RSA_KEY, RSA_CRT, "rsa"),
        (P256_KEY, P256_CRT, "ecdsa-p256"),
        (P384_KEY, P384_CRT, "ecdsa-p384"),
    ] {
        for hash in [HashAlgo::Sha256, HashAlgo::Sha384, HashAlgo::Sha512] {
            let data = signed(key, crt, hash);
            assert!(data.starts_with(CONTENT));
            assert!(data.ends_with(modsig::SIG_MAGIC));
            let info = verify(&data, &k).unwrap_or_else(|e| panic!("{name} {hash:?}: {e}"));
            assert_eq!(info.key, name);
            assert_eq!(info.hash, hash);
            assert_eq!(info.content_len, CONTENT.len());
        }
    }
}

#[test]
fn the_kernels_sign_file_output_verifies() {
    let k = ring(&[RSA_CRT, P256_CRT]);
    let info = verify(SF_RSA256, &k).unwrap();
    assert_eq!(info.signer, "modkit throwaway test RSA key");
    assert_eq!((info.hash, info.key), (HashAlgo::Sha256, "rsa"));
    assert_eq!(info.content_len, CONTENT.len());
    assert_eq!(verify(SF_RSA512, &k).unwrap().hash, HashAlgo::Sha512);
    assert_eq!(verify(SF_P256, &k).unwrap().key, "ecdsa-p256");
}

#[test]
fn same_bytes_as_sign_file_for_rsa() {
    // RSA PKCS#1 v1.5 is deterministic: modkit's signature of the same content with the
    // same key and certificate is sign-file's, byte for byte.
    assert_eq!(signed(RSA_KEY, RSA_CRT, HashAlgo::Sha256), SF_RSA256);
    assert_eq!(signed(RSA_KEY, RSA_CRT_DER, HashAlgo::Sha512), SF_RSA512);
}

#[test]
fn unsigned_and_unknown_keys_are_waivable() {
    let k = ring(&[RSA_CRT]);
    let e = verify(CONTENT, &k).unwrap_err();
    assert_eq!(e.errno(), Errno::ENODATA);
    assert!(e.is_waivable());
    assert_eq!(e.reason(), "unsigned module");
    // Signed by a key the keyring does not hold: ENOKEY, naming the signer.
    let data = signed(OTHER_KEY, OTHER_CRT, HashAlgo::Sha256);
    let e = verify(&data, &k).unwrap_err();
    assert_eq!(e.errno(), Errno::ENOKEY);
    assert!(e.to_string().contains("modkit throwaway other key"), "{e}");
    assert!(e.is_waivable());
    // An empty keyring: ENOKEY as well.
    assert_eq!(
        verify(SF_RSA256, &Keyring::new()).unwrap_err().errno(),
        Errno::ENOKEY
    );
}

#[test]
fn tampered_content_or_signature_is_rejected() {
    let k = ring(&[RSA_CRT, P256_CRT]);
    for good in [
        SF_RSA256.to_vec(),
        signed(P256_KEY, P256_CRT, HashAlgo::Sha256),
    ] {
        let mut data = good.clone();
        data[3] ^= 1;
        let e = verify(&data, &k).unwrap_err();
        assert_eq!(e.errno(), Errno::EKEYREJECTED, "{e}");
        assert!(!e.is_waivable());
        // The last byte of the PKCS#7 blob (inside the signature value).
        let mut data = good.clone();
        let at = data.len() - modsig::SIG_MAGIC.len() - modsig::TRAILER_LEN - 1;
        data[at] ^= 0x40;
        let e = verify(&data, &k).unwrap_err();
        assert!(
            matches!(e.errno(), Errno::EKEYREJECTED | Errno::EBADMSG),
            "{e}"
        );
    }
}

#[test]
fn a_signer_named_like_a_keyring_cert_but_signed_by_another_key_is_rejected() {
    // The kernel finds the key by issuer and serial; when that key does not verify the
    // signature the load fails (EKEYREJECTED), it does not look on.
    let other = signed(OTHER_KEY, OTHER_CRT, HashAlgo::Sha256);
    let parts = modsig::split_kernel(&other).unwrap();
    let ci = ContentInfo::from_der(parts.pkcs7).unwrap();
    let mut sd: SignedData = ci.content.decode_as().unwrap();
    let cert = certificate_from_pem_or_der(RSA_CRT).unwrap();
    let mut si = sd.signer_infos.0.iter().next().unwrap().clone();
    si.sid = SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
        issuer: cert.tbs_certificate.issuer.clone(),
        serial_number: cert.tbs_certificate.serial_number.clone(),
    });
    sd.signer_infos = SignerInfos(SetOfVec::try_from(vec![si]).unwrap());
    let blob = ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: Any::encode_from(&sd).unwrap(),
    }
    .to_der()
    .unwrap();
    let mut data = parts.content.to_vec();
    data.extend_from_slice(&blob);
    data.extend_from_slice(&RawTrailer::pkcs7_suffix(blob.len() as u32));
    let e = verify(&data, &ring(&[RSA_CRT])).unwrap_err();
    assert_eq!(e.errno(), Errno::EKEYREJECTED, "{e}");
    assert!(
        e.to_string().contains("modkit throwaway test RSA key"),
        "{e}"
    );
}

#[test]
fn signing_refuses_a_key_that_is_not_the_certificates() {
    let key = SigningKey::from_pem_or_der(OTHER_KEY).unwrap();
    let cert = certificate_from_pem_or_der(RSA_CRT).unwrap();
    let e = sign(CONTENT, &key, &cert, HashAlgo::Sha256, false).unwrap_err();
    assert!(matches!(e, KeyError::Mismatch(_)), "{e}");
}

#[test]
fn already_signed_needs_replace() {
    let key = SigningKey::from_pem_or_der(RSA_KEY).unwrap();
    let cert = certificate_from_pem_or_der(RSA_CRT).unwrap();
    let e = sign(SF_RSA256, &key, &cert, HashAlgo::Sha256, false).unwrap_err();
    assert_eq!(e, KeyError::AlreadySigned);
    assert!(e.to_string().contains("--replace"));
    let again = sign(SF_RSA512, &key, &cert, HashAlgo::Sha256, true).unwrap();
    assert_eq!(again, SF_RSA256);
}

#[test]
fn wrong_hash_algorithm_is_unsupported_crypto() {
    // Rewrite the digest algorithm OID (SHA-256 → MD5's arc, same length) in the blob.
    let k = ring(&[RSA_CRT]);
    let sha256 = [
        0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
    ];
    let md5 = [
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x05, 0x00,
    ];
    let mut data = SF_RSA256.to_vec();
    let mut n = 0;
    let mut i = 0;
    while i + sha256.len() <= data.len() {
        if data[i..i + sha256.len()] == sha256 {
            data[i..i + sha256.len()].copy_from_slice(&md5);
            n += 1;
        }
        i += 1;
    }
    assert_eq!(
        n, 2,
        "the OID appears in digestAlgorithms and in the SignerInfo"
    );
    // 1.2.840.113549.2.5.0 is not a digest modkit (or the kernel) knows: ENOPKG.
    let e = verify(&data, &k).unwrap_err();
    assert_eq!(e.errno(), Errno::ENOPKG, "{e}");
    assert!(e.is_waivable());
}

#[test]
fn bad_trailers_and_blobs_are_clear_errors() {
    let k = ring(&[RSA_CRT]);
    // Huge sig_len.
    let mut data = SF_RSA256.to_vec();
    let n = data.len() - modsig::SIG_MAGIC.len();
    data[n - 4..n].copy_from_slice(&0x7fff_ffffu32.to_be_bytes());
    let e = verify(&data, &k).unwrap_err();
    assert_eq!(e.errno(), Errno::EBADMSG);
    assert!(!e.is_waivable());
    // A trailer pointing at garbage.
    let mut data = CONTENT.to_vec();
    data.extend_from_slice(b"\x30\x80garbage");
    data.extend_from_slice(&RawTrailer::pkcs7_suffix(9));
    let e = verify(&data, &k).unwrap_err();
    assert_eq!(e.errno(), Errno::EBADMSG, "{e}");
    assert!(e.to_string().contains("malformed PKCS#7"), "{e}");
    // A PGP-style trailer: ENOPKG.
    let mut data = SF_RSA256.to_vec();
    let t = data.len() - modsig::SIG_MAGIC.len() - modsig::TRAILER_LEN;
    data[t + 2] = 0;
    assert_eq!(verify(&data, &k).unwrap_err().errno(), Errno::ENOPKG);
}

#[test]
fn every_truncation_and_byte_flip_is_an_error_never_a_panic() {
    let k = ring(&[RSA_CRT, P256_CRT]);
    for good in [SF_RSA256, SF_P256] {
        for n in 0..good.len() {
            assert!(verify(&good[..n], &k).is_err(), "prefix {n}");
        }
        let blob = modsig::split_kernel(good).unwrap().pkcs7.len();
        let (content_end, blob_end) = (CONTENT.len(), CONTENT.len() + blob);
        for i in 0..good.len() {
            for bit in [0x01u8, 0x80] {
                let mut d = good.to_vec();
                d[i] ^= bit;
                let r = verify(&d, &k);
                // A flip in the content or the trailer always fails; inside the PKCS#7
                // blob only the fields the signature covers must (the SignedData's
                // digestAlgorithms set, for one, is informative: the kernel ignores it
                // too), and nothing may panic.
                if (i < content_end || i >= blob_end) && r.is_ok() {
                    panic!("flip {bit:#x} at {i} still verifies");
                }
            }
        }
    }
}

#[test]
fn keyring_reads_pem_der_and_combined_files() {
    let mut k = Keyring::new();
    k.add_der(RSA_CRT_DER).unwrap();
    assert_eq!(k.len(), 1);
    // The kernel's signing_key.pem holds the key and the certificate: the key is skipped.
    let mut combined = RSA_KEY.to_vec();
    combined.extend_from_slice(RSA_CRT);
    assert_eq!(k.add_pem(&combined).unwrap(), 1);
    assert!(SigningKey::from_pem_or_der(&combined).is_ok());
    assert!(certificate_from_pem_or_der(&combined).is_ok());
    assert!(k.add_der(b"0\x03abc").is_err());
    assert!(Keyring::new()
        .add_pem(b"-----BEGIN CERTIFICATE-----\nAAAA")
        .is_err());
    let e = Keyring::new()
        .add_file("/nonexistent/cert.pem")
        .unwrap_err();
    assert!(e.to_string().contains("/nonexistent/cert.pem"), "{e}");
    assert!(SigningKey::from_pem_or_der(RSA_CRT).is_err());
}

fn hook(policy: SigPolicy) -> super::super::sighook::SigHook {
    Some(Arc::new(SigCheck {
        keyring: ring(&[RSA_CRT]),
        policy,
    }))
}

fn file_with(tag: &str, data: &[u8]) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("modkit-sigcheck-{}-{tag}.so", std::process::id()));
    std::fs::write(&p, data).unwrap();
    p
}

#[test]
fn the_hosts_policy_follows_module_sig_check() {
    use super::super::sighook::check;
    let good = file_with("good", SF_RSA256);
    let unsigned = file_with("unsigned", CONTENT);
    let other = file_with("other", &signed(OTHER_KEY, OTHER_CRT, HashAlgo::Sha256));
    let mut t = SF_RSA256.to_vec();
    t[5] ^= 1;
    let tampered = file_with("tampered", &t);
    for policy in [SigPolicy::Enforce, SigPolicy::Permissive] {
        let h = hook(policy);
        assert!(check(&h, &good).unwrap().signed);
        // Bad signatures are fatal under both policies.
        let e = check(&h, &tampered).err().unwrap();
        assert_eq!(e.errno(), Errno::EKEYREJECTED, "{e}");
        for waivable in [&unsigned, &other] {
            match policy {
                SigPolicy::Enforce => {
                    let e = check(&h, waivable).err().unwrap();
                    assert_eq!(e.errno(), Errno::EKEYREJECTED, "{e}");
                    assert!(e.to_string().contains("Loading of "), "{e}");
                }
                SigPolicy::Permissive => assert!(!check(&h, waivable).unwrap().signed),
            }
        }
    }
    // Without a keyring nothing is read: everything counts as signed.
    assert!(check(&None, &unsigned).unwrap().signed);
    // The file replaced between the check and dlopen: refused.
    let h = hook(SigPolicy::Enforce);
    let v = check(&h, &good).unwrap();
    v.confirm(&good).unwrap();
    std::fs::write(good.with_extension("new"), SF_RSA256).unwrap();
    std::fs::rename(good.with_extension("new"), &good).unwrap();
    let e = v.confirm(&good).unwrap_err();
    assert_eq!(e.errno(), Errno::EKEYREJECTED);
    assert!(e.to_string().contains("changed between"), "{e}");
    for p in [good, unsigned, other, tampered] {
        let _ = std::fs::remove_file(p);
    }
}

/// `data`'s content with a SignedData holding the signer infos of all `sigs` (each a
/// file signed over the same content).
fn multi_signer(sigs: &[Vec<u8>]) -> Vec<u8> {
    let mut infos = Vec::new();
    let mut sd0 = None;
    for s in sigs {
        let parts = modsig::split_kernel(s).unwrap();
        let ci = ContentInfo::from_der(parts.pkcs7).unwrap();
        let sd: SignedData = ci.content.decode_as().unwrap();
        infos.extend(sd.signer_infos.0.iter().cloned());
        sd0.get_or_insert(sd);
    }
    let mut sd = sd0.unwrap();
    sd.signer_infos = SignerInfos(SetOfVec::try_from(infos).unwrap());
    let blob = ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: Any::encode_from(&sd).unwrap(),
    }
    .to_der()
    .unwrap();
    let mut data = CONTENT.to_vec();
    data.extend_from_slice(&blob);
    data.extend_from_slice(&RawTrailer::pkcs7_suffix(blob.len() as u32));
    data
}

#[test]
fn several_signers_as_pkcs7_validate_trust() {
    let rsa = signed(RSA_KEY, RSA_CRT, HashAlgo::Sha256);
    let other = signed(OTHER_KEY, OTHER_CRT, HashAlgo::Sha256);
    // A trusted signer and an unknown one: accepted.
    let data = multi_signer(&[rsa.clone(), other.clone()]);
    assert_eq!(verify(&data, &ring(&[RSA_CRT])).unwrap().key, "rsa");
    // Only unknown signers: ENOKEY.
    assert_eq!(
        verify(&data, &ring(&[P256_CRT])).unwrap_err().errno(),
        Errno::ENOKEY
    );
    // A trusted signer and one whose signature fails: fatal, whatever the order.
    let mut bad = SF_RSA256.to_vec();
    let at = bad.len() - modsig::SIG_MAGIC.len() - modsig::TRAILER_LEN - 1;
    bad[at] ^= 0x40;
    let data = multi_signer(&[other, bad]);
    assert_eq!(
        verify(&data, &ring(&[RSA_CRT, OTHER_CRT]))
            .unwrap_err()
            .errno(),
        Errno::EKEYREJECTED
    );
}
