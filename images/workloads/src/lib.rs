//! Pure logic behind the Vouch workload binaries.
//!
//! The binaries themselves (`src/bin/`) are thin wrappers that read stdin,
//! call into these modules and map results to stdout / stderr / exit codes.
//! Everything here is deterministic and free of I/O so it can be unit tested.
//!
//! The I/O contract every workload follows is described in `images/README.md`.

pub mod jsonx;
pub mod sandbox;
pub mod wc;

/// Lowercase hex encoding (kept local so the crate needs no `hex` dependency).
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_encodes_lowercase() {
        assert_eq!(to_hex(&[]), "");
        assert_eq!(to_hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }
}
