//! One-time codes: six decimal digits from the operating system's CSPRNG, uniform (rejection
//! sampling, no modulo bias), kept only as an Argon2id hash ([`super::password::Hasher`]).

/// Digits of a code.
pub const DIGITS: usize = 6;
const SPACE: u32 = 1_000_000;
/// The largest multiple of [`SPACE`] below 2^32: draws at or above it are drawn again.
const ZONE: u32 = u32::MAX - (u32::MAX % SPACE);

/// A fresh code, `000000` to `999999`.
pub fn generate() -> Result<String, String> {
    loop {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).map_err(|e| format!("no randomness: {e}"))?;
        let n = u32::from_le_bytes(b);
        if n < ZONE {
            return Ok(format!("{:06}", n % SPACE));
        }
    }
}

/// Whether `s` has a code's form (six ASCII digits).
pub fn well_formed(s: &str) -> bool {
    s.len() == DIGITS && s.bytes().all(|b| b.is_ascii_digit())
}

/// `n` random bytes as lowercase hex (ids, secrets).
pub fn random_hex(n: usize) -> Result<String, String> {
    let mut b = vec![0u8; n.min(64)];
    getrandom::fill(&mut b).map_err(|e| format!("no randomness: {e}"))?;
    Ok(hex::encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_vary() {
        let codes: std::collections::HashSet<String> =
            (0..50).map(|_| generate().unwrap()).collect();
        assert!(codes.iter().all(|c| well_formed(c)), "{codes:?}");
        // 50 draws of a million: a repeat is possible, 40 distinct is all but certain.
        assert!(codes.len() > 40);
        assert!(!well_formed("12345"));
        assert!(!well_formed("12345a"));
        assert!(!well_formed("１２３４５６"));
        assert_eq!(random_hex(16).unwrap().len(), 32);
    }
}
