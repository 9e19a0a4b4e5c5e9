//! kmod's `hash_superfast` and the iteration order of its hash tables, which decide the
//! order of depmod's outputs.

/// Paul Hsieh's SuperFastHash exactly as kmod's `shared/hash.c` computes it (32-bit
/// arithmetic, little-endian 16-bit loads, signed `char` in the tail).
pub fn superfast(key: &[u8]) -> u32 {
    let mut h = key.len() as u32;
    let rem = key.len() & 3;
    let mut p = 0;
    let le16 = |a: u8, b: u8| u16::from_le_bytes([a, b]) as u32;
    for _ in 0..key.len() / 4 {
        h = h.wrapping_add(le16(key[p], key[p + 1]));
        let tmp = (le16(key[p + 2], key[p + 3]) << 11) ^ h;
        h = (h << 16) ^ tmp;
        p += 4;
        h = h.wrapping_add(h >> 11);
    }
    match rem {
        3 => {
            h = h.wrapping_add(le16(key[p], key[p + 1]));
            h ^= h << 16;
            h ^= ((key[p + 2] as i8 as i32) << 18) as u32;
            h = h.wrapping_add(h >> 11);
        }
        2 => {
            h = h.wrapping_add(le16(key[p], key[p + 1]));
            h ^= h << 11;
            h = h.wrapping_add(h >> 17);
        }
        1 => {
            h = h.wrapping_add(key[p] as i8 as i32 as u32);
            h ^= h << 10;
            h = h.wrapping_add(h >> 1);
        }
        _ => {}
    }
    h ^= h << 3;
    h = h.wrapping_add(h >> 5);
    h ^= h << 4;
    h = h.wrapping_add(h >> 17);
    h ^= h << 25;
    h = h.wrapping_add(h >> 6);
    h
}

/// Sorts keys into the iteration order of a kmod hash with `buckets` buckets (a power of
/// two): bucket index ascending, then `strcmp` order inside a bucket.
pub fn sort_in_hash_order<T>(items: &mut [T], buckets: u32, key: impl Fn(&T) -> &[u8]) {
    items.sort_by_cached_key(|t| {
        let k = key(t);
        (superfast(k) & (buckets - 1), k.to_vec())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // The empty key hashes to 0 (nothing to mix in).
        assert_eq!(superfast(b""), 0);
        let mut v = vec![b"libata".to_vec(), b"fuse".to_vec(), b"a".to_vec()];
        sort_in_hash_order(&mut v, 512, |k| k);
        assert_eq!(v.len(), 3);
        // Different lengths exercise every tail case without panicking.
        for n in 0..9 {
            let k = vec![0xffu8; n];
            let _ = superfast(&k);
        }
    }
}
