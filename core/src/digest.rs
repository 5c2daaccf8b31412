//! The content digest every artifact and data set is addressed by.

use sha2::{Digest, Sha256};

/// Lower-case hex SHA-256 of `bytes`: what the artifact store records for an
/// upload and what a reader checks a download against.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
