//! Credentials: tokens are kept only as sha256 hashes and compared in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;
use tonic::Status;

/// The sha256 of a token.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

impl TokenHash {
    /// Hashes a token.
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// Parses a stored hex hash.
    pub fn from_hex(s: &str) -> Option<Self> {
        let v = hex::decode(s).ok()?;
        Some(Self(v.try_into().ok()?))
    }

    /// Hex form, for the store.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Whether `presented` hashes to this, in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        let h = Sha256::digest(presented.as_bytes());
        bool::from(self.0.ct_eq(h.as_slice()))
    }
}

/// A fresh random session token (256 bits, hex).
pub fn new_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The bearer token of a call.
pub fn bearer(meta: &MetadataMap) -> Result<&str, Status> {
    meta.get(ausweep_proto::wire::AUTH_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| Status::unauthenticated("missing `authorization: Bearer <token>`"))
}

/// Checks a call's bearer token against a hash.
pub fn require(meta: &MetadataMap, hash: &TokenHash, what: &str) -> Result<(), Status> {
    if hash.matches(bearer(meta)?) {
        Ok(())
    } else {
        Err(Status::unauthenticated(format!("bad {what} token")))
    }
}

/// Whether an id (worker, sweep, job) is safe: 1-200 of letters, digits, `.`, `_`, `-`.
pub fn valid_id(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_only_their_token() {
        let h = TokenHash::of("secret");
        assert!(h.matches("secret"));
        assert!(!h.matches("secreT"));
        assert!(!h.matches(""));
        assert_eq!(TokenHash::from_hex(&h.to_hex()), Some(h));
        assert_ne!(new_token(), new_token());
        assert!(valid_id("w-1.node_2", 64));
        assert!(!valid_id("../x", 64) && !valid_id("", 64) && !valid_id(&"a".repeat(65), 64));
    }
}
