//! What the machine's noise cannot move: instructions per request (callgrind) and
//! system calls per request (strace), for the gateway, bare Pingora and nginx. The
//! seconds of the load bench vary by tens of percent on a shared machine; these counts
//! are the same from run to run, so a change's cost shows wherever it is measured.
//!
//! `cargo bench --bench load -- --counts` (or `make bench-counts`); knob:
//! `AURORA_BENCH_COUNT_SECS` (each counted loop, default 10 s). The table goes to
//! stdout and `target/bench/counts/counts.md`.

use super::{instructions, procfs, servers, syscalls};

/// Runs both counts; the exit code of the bench process.
pub fn run() -> i32 {
    let dir = servers::target_dir().join("bench/counts");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("counts: create {}: {e}", dir.display());
        return 1;
    }
    // The dumps of an earlier run would be read as this run's.
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("callgrind.") || name.starts_with("strace-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let secs = super::env_or("AURORA_BENCH_COUNT_SECS", 10.0f64).max(1.0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("bench runtime");
    let mock = servers::start_mock(10, 0, None, &dir);
    let mut report = String::new();
    if instructions::available() {
        let counts = instructions::measure(&rt, mock.port, &dir, secs);
        report.push_str("Instructions per request (callgrind, user space):\n\n");
        report.push_str(&instructions::table(&counts));
    } else {
        eprintln!("counts: valgrind (with callgrind_control) is not installed");
    }
    if syscalls::available() {
        let nofile = procfs::raise_nofile_limit();
        let nginx = servers::nginx_binary();
        let counts = syscalls::measure(
            &rt,
            mock.port,
            nginx.as_deref().map(|bin| (bin, nofile)),
            &dir,
            secs,
        );
        report.push_str("\nSystem calls per request (strace -f -c):\n\n");
        report.push_str(&syscalls::table(&counts));
    } else {
        eprintln!("counts: strace is not installed");
    }
    println!("{report}");
    let out = dir.join("counts.md");
    if let Err(e) = std::fs::write(&out, &report) {
        eprintln!("counts: write {}: {e}", out.display());
    }
    i32::from(report.is_empty())
}
