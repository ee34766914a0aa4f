//! Ids the gateway makes up (a Responses answer's, a message's or tool call's the
//! provider did not name): a prefix and a random UUID's 32 lowercase hex digits.

/// `prefix` followed by a fresh random UUID's 32 lowercase hex digits, written in one
/// allocation of the right size.
pub fn generated_id(prefix: &str) -> String {
    let mut hex = uuid::Uuid::encode_buffer();
    let digits = uuid::Uuid::new_v4().simple().encode_lower(&mut hex);
    let mut id = String::with_capacity(prefix.len() + digits.len());
    id.push_str(prefix);
    id.push_str(digits);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_id_is_its_prefix_and_a_fresh_uuid() {
        let (a, b) = (generated_id("resp_"), generated_id("resp_"));
        for id in [&a, &b] {
            let hex = id.strip_prefix("resp_").unwrap();
            assert_eq!(hex.len(), 32, "{id}");
            assert!(
                hex.bytes()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
                "{id}"
            );
        }
        assert_ne!(a, b);
    }
}
