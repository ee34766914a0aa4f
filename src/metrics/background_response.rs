//! A Responses API response run in the background (`"background": true`). It is
//! generated apart from the request that started it, whose answer reports no usage;
//! its usage comes with whichever request reads it complete (a poll, a resumed
//! stream, or the stream that started it), and it may be read again as often as the
//! client likes. So its usage is charged once, by the first request that reads it
//! complete, and each response is known by a digest of its id wherever that is kept.

use sha2::{Digest, Sha256};

/// A background response, by a digest of its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackgroundResponse([u8; 16]);

impl BackgroundResponse {
    /// The response whose `id` member has the JSON text `raw_id`, as its provider
    /// wrote it (every answer of one provider writes an id alike).
    pub fn of_id(raw_id: &[u8]) -> Self {
        let digest = Sha256::digest(raw_id.trim_ascii());
        let mut key = [0; 16];
        key.copy_from_slice(&digest[..16]);
        Self(key)
    }

    /// The digest in hexadecimal, for a key in a shared store.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_known_by_its_id_alone() {
        let one = BackgroundResponse::of_id(br#""resp_68a1""#);
        assert_eq!(one, BackgroundResponse::of_id(br#" "resp_68a1" "#));
        assert_ne!(one, BackgroundResponse::of_id(br#""resp_68a2""#));
        assert_eq!(one.hex().len(), 32);
        assert!(!one.hex().contains("resp"));
    }
}
