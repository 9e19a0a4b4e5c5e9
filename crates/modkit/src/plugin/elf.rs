//! Reads a plugin's `.modinfo` section from its file without loading it (ELF64
//! little-endian, as the plugins modkit builds are), so that a plugin with the wrong
//! vermagic is refused before any of its code is mapped. modkit-ko's modinfo reads the
//! same section (`modkit modinfo plugin.so`).

/// The `key=value` entries of the file's `.modinfo` section, in order.
pub(crate) fn modinfo(data: &[u8]) -> Result<Vec<(String, String)>, String> {
    let sec = section(data, ".modinfo")?.ok_or("no .modinfo section (not a modkit plugin)")?;
    Ok(sec
        .split(|&b| b == 0)
        .filter(|e| !e.is_empty())
        .filter_map(|e| {
            let s = String::from_utf8_lossy(e);
            let (k, v) = s.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect())
}

fn u16_at(d: &[u8], at: usize) -> Result<usize, String> {
    d.get(at..at + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
        .ok_or_else(|| format!("truncated ELF at offset {at}"))
}

fn u32_at(d: &[u8], at: usize) -> Result<usize, String> {
    d.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| format!("truncated ELF at offset {at}"))
}

fn u64_at(d: &[u8], at: usize) -> Result<usize, String> {
    d.get(at..at + 8)
        .map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a) as usize
        })
        .ok_or_else(|| format!("truncated ELF at offset {at}"))
}

/// The bytes of section `name`, if present.
fn section<'a>(d: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, String> {
    if d.get(0..4) != Some(b"\x7fELF") {
        return Err("not an ELF file".into());
    }
    if d.get(4) != Some(&2) || d.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let shoff = u64_at(d, 0x28)?;
    let shentsize = u16_at(d, 0x3A)?;
    let shnum = u16_at(d, 0x3C)?;
    let shstrndx = u16_at(d, 0x3E)?;
    if shentsize < 64 {
        return Err("bad section header size".into());
    }
    let sh = |i: usize| -> Result<(usize, usize, usize), String> {
        let at = shoff
            .checked_add(i.checked_mul(shentsize).ok_or("overflow")?)
            .ok_or("overflow")?;
        Ok((u32_at(d, at)?, u64_at(d, at + 0x18)?, u64_at(d, at + 0x20)?))
    };
    let bytes = |off: usize, size: usize| -> Result<&'a [u8], String> {
        off.checked_add(size)
            .and_then(|end| d.get(off..end))
            .ok_or_else(|| "section out of the file's bounds".to_string())
    };
    let (_, stroff, strsize) = sh(shstrndx)?;
    let strtab = bytes(stroff, strsize)?;
    for i in 0..shnum {
        let (n, off, size) = sh(i)?;
        let Some(rest) = strtab.get(n..) else {
            continue;
        };
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        if &rest[..end] == name.as_bytes() {
            return bytes(off, size).map(Some);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error() {
        assert!(modinfo(b"").is_err());
        assert!(modinfo(b"\x7fELF\x02\x01").is_err());
        let mut d = vec![0u8; 64];
        d[..6].copy_from_slice(b"\x7fELF\x02\x01");
        d[0x28] = 0xff;
        d[0x3A] = 64;
        d[0x3C] = 1;
        assert!(modinfo(&d).is_err());
    }
}
