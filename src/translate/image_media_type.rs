//! The media type an inline image is sent to Anthropic with.
//!
//! Anthropic takes `image/jpeg`, `image/png`, `image/gif` and `image/webp` only, and
//! refuses an image whose bytes are not of the type named ("Image does not match the
//! provided media type"). OpenAI takes what a data URL says, so clients send
//! `data:image/jpg;…` (browsers and tools write it) or a JPEG labelled `image/png`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Base64 characters read from the start of an image: 16 decode to the 12 bytes a
/// WEBP header needs ("RIFF", its size, "WEBP"), the longest of the four.
const SNIFFED_BASE64_CHARS: usize = 16;

/// The media type to send to Anthropic for a base64 image whose data URL said
/// `declared`: the type its first bytes show when they are one Anthropic takes, else
/// `declared` with its JPEG aliases (`image/jpg`, `image/pjpeg`, `image/jpe`) made
/// `image/jpeg`, else `declared` as given (Anthropic's own error then names it).
pub(super) fn anthropic_image_media_type<'a>(declared: &'a str, base64_data: &str) -> &'a str {
    if let Some(sniffed) = media_type_of_image_start(base64_data) {
        return sniffed;
    }
    const JPEG_ALIASES: [&str; 4] = ["image/jpeg", "image/jpg", "image/pjpeg", "image/jpe"];
    if JPEG_ALIASES
        .iter()
        .any(|a| declared.eq_ignore_ascii_case(a))
    {
        return "image/jpeg";
    }
    ["image/png", "image/gif", "image/webp"]
        .into_iter()
        .find(|t| declared.eq_ignore_ascii_case(t))
        .unwrap_or(declared)
}

/// The Anthropic media type the image's first bytes show, decoding only the first
/// few base64 characters (an image may be megabytes); `None` when they show none of
/// the four or are not base64.
fn media_type_of_image_start(base64_data: &str) -> Option<&'static str> {
    let start = base64_data.as_bytes();
    // Whole groups of four only: a cut group would not decode.
    let start = &start[..start.len().min(SNIFFED_BASE64_CHARS) / 4 * 4];
    let mut head = [0u8; SNIFFED_BASE64_CHARS / 4 * 3];
    let len = STANDARD.decode_slice(start, &mut head).ok()?;
    let head = &head[..len];
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if head.starts_with(&[0x89, b'P', b'N', b'G']) {
        Some("image/png")
    } else if head.starts_with(b"GIF8") {
        Some("image/gif")
    } else if head.starts_with(b"RIFF") && head.get(8..12) == Some(b"WEBP") {
        Some("image/webp")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JPEG: &str = "/9j/4AAQSkZJRgABAQA=";
    const PNG: &str = "iVBORw0KGgo=";
    const GIF: &str = "R0lGODlhAQABAA==";
    const WEBP: &str = "UklGRiQAAABXRUJQVlA4IA==";

    #[test]
    fn the_first_bytes_name_the_type_whatever_the_url_said() {
        for (data, expected) in [
            (JPEG, "image/jpeg"),
            (PNG, "image/png"),
            (GIF, "image/gif"),
            (WEBP, "image/webp"),
        ] {
            for declared in [
                "image/png",
                "image/jpg",
                "image/webp",
                "application/octet-stream",
            ] {
                assert_eq!(
                    anthropic_image_media_type(declared, data),
                    expected,
                    "{declared} {data}"
                );
            }
        }
    }

    #[test]
    fn only_the_start_of_a_long_image_is_read() {
        // Past the first characters the data is not base64: it is never decoded.
        let data = format!("{JPEG}{}", "!".repeat(1000));
        assert_eq!(anthropic_image_media_type("image/png", &data), "image/jpeg");
    }

    #[test]
    fn unknown_bytes_keep_the_declared_type_with_jpeg_aliases_made_jpeg() {
        let riff_wave = "UklGRiQAAABXQVZFZm10IA==";
        for (declared, data, expected) in [
            ("image/jpg", "AAAA", "image/jpeg"),
            ("image/pjpeg", "AAAA", "image/jpeg"),
            ("image/jpe", "not base64", "image/jpeg"),
            ("IMAGE/JPG", "", "image/jpeg"),
            ("Image/PNG", "AAAA", "image/png"),
            ("image/webp", riff_wave, "image/webp"),
            ("image/bmp", "Qk0AAA==", "image/bmp"),
            ("image/heic", "AAAA", "image/heic"),
        ] {
            assert_eq!(
                anthropic_image_media_type(declared, data),
                expected,
                "{declared} {data}"
            );
        }
    }
}
