//! The load bench's own tests (open-loop timing, the report's verdicts, the nginx
//! configuration, the requests of each scenario), run with the other tests. The bench
//! sources are compiled here as a module.

#[path = "../benches/load/main.rs"]
mod load;

/// What `make --dry-run target` would run.
fn make_plan(target: &str) -> String {
    let out = std::process::Command::new("make")
        .args(["--dry-run", target])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        // Run from `make test`: the outer make's flags are not this one's.
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{plan}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    plan
}

/// `make bench` is the whole suite: the criterion micro benches, then the load bench.
#[test]
fn make_bench_runs_the_micro_benches_then_the_load_bench() {
    let plan = make_plan("bench");
    let micro = plan.find("bench --bench translate --bench proxy");
    let load = plan.find("bench --bench load");
    assert!(
        matches!((micro, load), (Some(m), Some(l)) if m < l),
        "{plan}"
    );
}

/// `make soak` runs the load bench's soak mode against the release binary; neither
/// `make test` nor `make bench` does.
#[test]
fn make_soak_runs_the_soak_mode_of_the_load_bench_and_nothing_else_does() {
    let plan = make_plan("soak");
    assert!(plan.contains("cargo build --release"), "{plan}");
    assert!(
        plan.contains("AURORA_BIN=") && plan.contains("bench --bench load -- --soak"),
        "{plan}"
    );
    for other in ["test", "bench"] {
        assert!(!make_plan(other).contains("--soak"), "make {other} soaks");
    }
}

/// `make bench-paired` runs only the side-by-side mode, against bare Pingora too.
#[test]
fn make_bench_paired_runs_the_side_by_side_mode_of_the_load_bench() {
    let plan = make_plan("bench-paired");
    assert!(plan.contains("--example bare_pingora"), "{plan}");
    assert!(
        plan.contains("AURORA_BIN=") && plan.contains("bench --bench load -- --paired"),
        "{plan}"
    );
    assert!(!make_plan("bench-load").contains("--paired"));
}
