//! The load bench's own tests (open-loop timing, the report's verdicts, the nginx
//! configuration, the requests of each scenario), run with the other tests. The bench
//! sources are compiled here as a module.

#[path = "../benches/load/main.rs"]
mod load;

/// `make bench` is the whole suite: the criterion micro benches, then the load bench.
#[test]
fn make_bench_runs_the_micro_benches_then_the_load_bench() {
    let out = std::process::Command::new("make")
        .args(["--dry-run", "bench"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        // Run from `make test`: the outer make's flags are not this one's.
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{plan}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let micro = plan.find("bench --bench translate --bench proxy");
    let load = plan.find("bench --bench load");
    assert!(
        matches!((micro, load), (Some(m), Some(l)) if m < l),
        "{plan}"
    );
}
