//! Cutting a byte stream at arbitrary offsets, for the `fuzz_*` tests that check a
//! decoder gives the same output however its input arrives. Included with `#[path]`.

/// `bytes` cut at the given offsets (each taken modulo the length, in order).
pub fn split<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut start = 0;
    for c in cuts {
        pieces.push(&bytes[start..c]);
        start = c;
    }
    pieces.push(&bytes[start..]);
    pieces
}
