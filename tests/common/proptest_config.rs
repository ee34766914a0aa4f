//! Proptest settings shared by the `fuzz_*` tests. Included with `#[path]`.

use proptest::test_runner::Config;

/// `default_cases` cases per property, so `make test` stays fast, unless
/// `PROPTEST_CASES` asks for more (`make fuzz`). Failing cases are not saved
/// to files: each one found becomes a plain regression test.
pub fn config(default_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}
