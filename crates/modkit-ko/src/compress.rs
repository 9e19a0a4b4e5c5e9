//! Compressed modules: detection by magic bytes (as kmod does) and decompression.

use std::borrow::Cow;
use std::io::Read;

use crate::error::ParseError;

/// Upper bound of a decompressed module; anything larger is treated as hostile.
pub const MAX_DECOMPRESSED: u64 = 1 << 30;

/// How a module file is compressed, decided by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain ELF.
    None,
    /// xz (`FD 37 7A 58 5A 00`).
    Xz,
    /// zstd (`28 B5 2F FD`).
    Zstd,
    /// gzip (`1F 8B`).
    Gzip,
}

impl Compression {
    /// Detects the compression from magic bytes, like kmod's `kmod_file_open`.
    pub fn detect(data: &[u8]) -> Compression {
        if data.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]) {
            Compression::Zstd
        } else if data.starts_with(&[0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]) {
            Compression::Xz
        } else if data.starts_with(&[0x1F, 0x8B]) {
            Compression::Gzip
        } else {
            Compression::None
        }
    }

    /// Short name (`none`, `xz`, `zstd`, `gzip`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
        }
    }
}

/// Returns the uncompressed module bytes (borrowed when the data is not compressed).
pub fn decompress(data: &[u8]) -> Result<(Compression, Cow<'_, [u8]>), ParseError> {
    if data.len() < 6 {
        return Err(ParseError::TooShort { len: data.len() });
    }
    let kind = Compression::detect(data);
    let out = match kind {
        Compression::None => return Ok((kind, Cow::Borrowed(data))),
        Compression::Xz => read_all(liblzma::read::XzDecoder::new_multi_decoder(data), "xz")?,
        Compression::Zstd => {
            let dec = zstd::stream::read::Decoder::with_buffer(data).map_err(|e| {
                ParseError::Decompress {
                    format: "zstd",
                    message: e.to_string(),
                }
            })?;
            read_all(dec, "zstd")?
        }
        Compression::Gzip => read_all(flate2::read::MultiGzDecoder::new(data), "gzip")?,
    };
    Ok((kind, Cow::Owned(out)))
}

fn read_all(reader: impl Read, format: &'static str) -> Result<Vec<u8>, ParseError> {
    let mut out = Vec::new();
    reader
        .take(MAX_DECOMPRESSED + 1)
        .read_to_end(&mut out)
        .map_err(|e| ParseError::Decompress {
            format,
            message: e.to_string(),
        })?;
    if out.len() as u64 > MAX_DECOMPRESSED {
        return Err(ParseError::TooLarge {
            format,
            limit: MAX_DECOMPRESSED,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const PAYLOAD: &[u8] = b"\x7fELF not really a module but enough bytes";

    #[test]
    fn detects_magic() {
        assert_eq!(Compression::detect(PAYLOAD), Compression::None);
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 0]), Compression::Gzip);
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(
            Compression::detect(&[0xfd, b'7', b'z', b'X', b'Z', 0]),
            Compression::Xz
        );
    }

    #[test]
    fn roundtrips_every_format() {
        let xz = {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(PAYLOAD).unwrap();
            e.finish().unwrap()
        };
        let zst = zstd::encode_all(PAYLOAD, 1).unwrap();
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(PAYLOAD).unwrap();
            e.finish().unwrap()
        };
        for (data, kind) in [
            (xz, Compression::Xz),
            (zst, Compression::Zstd),
            (gz, Compression::Gzip),
        ] {
            let (k, out) = decompress(&data).unwrap();
            assert_eq!(k, kind);
            assert_eq!(&*out, PAYLOAD);
        }
    }

    #[test]
    fn truncated_streams_are_errors() {
        let zst = zstd::encode_all(PAYLOAD, 1).unwrap();
        let err = decompress(&zst[..zst.len() - 3]).unwrap_err();
        assert!(matches!(err, ParseError::Decompress { format: "zstd", .. }));
        let err = decompress(&[0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2, 3]).unwrap_err();
        assert!(matches!(err, ParseError::Decompress { format: "xz", .. }));
        assert!(matches!(
            decompress(&[1, 2]).unwrap_err(),
            ParseError::TooShort { len: 2 }
        ));
    }
}
