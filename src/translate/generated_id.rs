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

/// Whether `id` has the shape of one [`generated_id`] made with `prefix`: the prefix
/// and 32 lowercase hex digits (a provider's own ids are longer).
pub fn is_generated(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|hex| {
        hex.len() == 32
            && hex
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_made_here_is_told_from_a_providers() {
        assert!(is_generated(&generated_id("resp_"), "resp_"));
        assert!(!is_generated(
            "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
            "resp_"
        ));
        assert!(!is_generated(
            "resp_ABCDEF0123456789abcdef0123456789",
            "resp_"
        ));
        assert!(!is_generated(&generated_id("msg_"), "resp_"));
    }

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
