//! Byte-preserving strings for modinfo and modprobe: file and module names are bytes (a
//! module file may be named `caf\xe9.ko` in Latin-1), while these tools' code keeps
//! names in `String`s. [`from_bytes`] keeps valid UTF-8 as it is and turns each byte that
//! is not part of valid UTF-8 into one character of the last 128 code points of Unicode's
//! plane-16 private use area (U+10FF80 + (byte − 0x80)); [`to_bytes`] turns them back, at
//! the edges: opening a file, writing output, searching an index. So a name goes through
//! unchanged, byte for byte, as kmod's C strings do. (A real name holding those private
//! use characters would be changed into bytes on output; such names do not occur in
//! module trees.) depmod works on plain bytes and does not need this.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const BASE: u32 = 0x10_FF80;

/// Bytes to a `String`, losslessly (see the module documentation).
pub fn from_bytes(b: &[u8]) -> String {
    if let Ok(s) = std::str::from_utf8(b) {
        return s.to_string();
    }
    let mut out = String::with_capacity(b.len() + 8);
    for chunk in b.utf8_chunks() {
        out.push_str(chunk.valid());
        for &x in chunk.invalid() {
            // Invalid bytes are always 0x80 or above.
            out.push(char::from_u32(BASE + (x as u32 & 0x7f)).unwrap_or('\u{fffd}'));
        }
    }
    out
}

/// An `OsStr` (a command-line argument) to a `String`, losslessly.
pub fn from_os(s: &OsStr) -> String {
    from_bytes(s.as_bytes())
}

/// The bytes a [`from_bytes`] string stands for.
pub fn to_bytes(s: &str) -> Cow<'_, [u8]> {
    // The escape characters are encoded as F4 8F BE/BF xx.
    if !s.as_bytes().contains(&0xF4) {
        return Cow::Borrowed(s.as_bytes());
    }
    let mut out = Vec::with_capacity(s.len());
    let mut buf = [0u8; 4];
    for c in s.chars() {
        let u = c as u32;
        if (BASE..BASE + 0x80).contains(&u) {
            out.push(0x80 | (u - BASE) as u8);
        } else {
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    Cow::Owned(out)
}

/// The file path a [`from_bytes`] string stands for.
pub fn path(s: &str) -> Cow<'_, Path> {
    match to_bytes(s) {
        Cow::Borrowed(b) => Cow::Borrowed(Path::new(OsStr::from_bytes(b))),
        Cow::Owned(b) => Cow::Owned(std::ffi::OsString::from_vec(b).into()),
    }
}

use std::os::unix::ffi::OsStringExt;

/// A writer that writes [`from_bytes`] strings as the bytes they stand for. Each `write`
/// must hold whole characters (what `write!` and `write_all` of a `String` do).
pub struct Raw<W: Write>(pub W);

impl<W: Write> Write for Raw<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(s) => self.0.write_all(&to_bytes(s)).map(|()| buf.len()),
            Err(_) => self.0.write_all(buf).map(|()| buf.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_byte_string() {
        for b in [
            &b"caf\xe9"[..],
            b"plain",
            "caf\u{e9}".as_bytes(),
            b"\xff\xfe\x80",
            b"a\xc3",
            b"",
        ] {
            let s = from_bytes(b);
            assert_eq!(&*to_bytes(&s), b);
        }
        assert_eq!(from_bytes(b"fuse"), "fuse");
        let mut out = Vec::new();
        writeln!(Raw(&mut out), "name: {}", from_bytes(b"caf\xe9")).unwrap();
        assert_eq!(out, b"name: caf\xe9\n");
        assert_eq!(
            path(&from_bytes(b"/m/caf\xe9.ko")).as_os_str().as_bytes(),
            b"/m/caf\xe9.ko"
        );
    }
}
