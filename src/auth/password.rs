//! Password hashes in RabbitMQ's `rabbit_password_hashing_sha256` format,
//! so definitions exported from RabbitMQ import unchanged: base64 of a
//! 4-byte random salt followed by SHA-256(salt ++ password).

use base64::Engine;
use sha2::{Digest, Sha256};

/// RabbitMQ's name for this format (`hashing_algorithm` in definitions).
pub const ALGORITHM: &str = "rabbit_password_hashing_sha256";
const SALT_BYTES: usize = 4;
const DIGEST_BYTES: usize = 32;

/// A stored password: salt and digest, never the password itself.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    salt: [u8; SALT_BYTES],
    digest: [u8; DIGEST_BYTES],
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("a password hash must be base64 of 36 bytes (rabbit_password_hashing_sha256)")]
    Malformed,
    #[error("no random salt: {0}")]
    NoRandom(String),
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt.
    pub fn new(password: &[u8]) -> Result<Self, HashError> {
        let mut salt = [0u8; SALT_BYTES];
        fill_random(&mut salt)?;
        Ok(Self::with_salt(salt, password))
    }

    pub fn with_salt(salt: [u8; SALT_BYTES], password: &[u8]) -> Self {
        Self { salt, digest: digest(&salt, password) }
    }

    /// Reads RabbitMQ's `password_hash` text.
    pub fn parse(text: &str) -> Result<Self, HashError> {
        let raw = base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|_| HashError::Malformed)?;
        let (salt, digest) = raw.split_at_checked(SALT_BYTES).ok_or(HashError::Malformed)?;
        let salt: [u8; SALT_BYTES] = salt.try_into().map_err(|_| HashError::Malformed)?;
        let digest: [u8; DIGEST_BYTES] = digest.try_into().map_err(|_| HashError::Malformed)?;
        Ok(Self { salt, digest })
    }

    /// The `password_hash` text RabbitMQ's definitions carry.
    pub fn to_text(&self) -> String {
        let mut raw = Vec::with_capacity(SALT_BYTES + DIGEST_BYTES);
        raw.extend_from_slice(&self.salt);
        raw.extend_from_slice(&self.digest);
        base64::engine::general_purpose::STANDARD.encode(raw)
    }

    /// Whether `password` is the one hashed, in time that does not depend
    /// on where the digests differ.
    pub fn verify(&self, password: &[u8]) -> bool {
        constant_time_eq(&digest(&self.salt, password), &self.digest)
    }
}

fn digest(salt: &[u8; SALT_BYTES], password: &[u8]) -> [u8; DIGEST_BYTES] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(password);
    h.finalize().into()
}

/// Compares every byte, whatever the first difference.
fn constant_time_eq(a: &[u8; DIGEST_BYTES], b: &[u8; DIGEST_BYTES]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box: keep the compiler from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

fn fill_random(buf: &mut [u8]) -> Result<(), HashError> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|e| HashError::NoRandom(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rabbitmq_hashes_verify() {
        // RabbitMQ's worked example (docs/passwords): salt 908D C60A, "test12".
        let h = PasswordHash::with_salt([0x90, 0x8d, 0xc6, 0x0a], b"test12");
        let text = h.to_text();
        assert_eq!(text, "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR");
        let back = PasswordHash::parse(&text).unwrap();
        assert_eq!(back, h);
        assert!(back.verify(b"test12"));
        assert!(!back.verify(b"test13"));
        assert!(!back.verify(b""));
    }

    #[test]
    fn fresh_salts_differ_and_verify() {
        let a = PasswordHash::new(b"s3cret").unwrap();
        let b = PasswordHash::new(b"s3cret").unwrap();
        assert_ne!(a.to_text(), b.to_text(), "a fresh salt each time");
        assert!(a.verify(b"s3cret") && b.verify(b"s3cret"));
        assert!(!format!("{a:?}").contains("s3cret"));
    }

    #[test]
    fn malformed_hashes_are_refused() {
        for bad in ["", "not base64!", "AAAA", &base64::engine::general_purpose::STANDARD.encode([0u8; 37])] {
            assert_eq!(PasswordHash::parse(bad), Err(HashError::Malformed), "{bad:?}");
        }
    }
}
