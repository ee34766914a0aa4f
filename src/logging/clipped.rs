//! Client text cut to a size a log line or a span attribute can hold: a path, a model
//! name or an error quoting one can be as long as a request may be, and the line
//! queue and the span batches are bounded in count, not in bytes.

use std::borrow::Cow;

/// `text` cut to `max` bytes at most (at a character's edge), with `…` after what was
/// cut; borrowed when it fits.
pub fn clipped(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &text[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_at_a_character_edge_and_marked() {
        assert_eq!(clipped("short", 8), "short");
        assert_eq!(clipped("abcdefghij", 4), "abcd…");
        // `é` is two bytes: the cut does not split it.
        assert_eq!(clipped("aé", 2), "a…");
    }
}
