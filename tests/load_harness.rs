//! The load bench's own tests (open-loop timing, the report's verdicts, the nginx
//! configuration, the requests of each scenario), run with the other tests. The bench
//! sources are compiled here as a module.

#[path = "../benches/load/main.rs"]
mod load;

/// What `make --dry-run target` would run.
fn make_plan(target: &str) -> String {
    make_plan_with(&[target])
}

/// What `make --dry-run args…` would run (a target and its variables).
fn make_plan_with(args: &[&str]) -> String {
    let out = std::process::Command::new("make")
        .arg("--dry-run")
        .args(args)
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

/// Where `needles` first occur in `plan`, each after the one before; panics otherwise.
fn in_order(plan: &str, needles: &[&str]) {
    let mut from = 0;
    for needle in needles {
        match plan[from..].find(needle) {
            Some(at) => from += at + needle.len(),
            None => panic!("`{needle}` missing or out of order in:\n{plan}"),
        }
    }
}

/// `make release-pgo` builds both servers instrumented, sends those builds the
/// training workload, merges what they counted, builds both again from it and checks
/// the new builds with the same workload.
#[test]
fn make_release_pgo_builds_from_the_profile_of_its_training_run() {
    let plan = make_plan("release-pgo");
    in_order(
        &plan,
        &[
            "-Cprofile-generate=",
            "--bin aurora --example bare_pingora",
            "AURORA_BIN=",
            "/generate/",
            "AURORA_PINGORA_BIN=",
            "/generate/",
            "bench --bench load -- --train",
            "llvm-profdata merge -o ",
            "merged.profdata",
            "-Cprofile-use=",
            "merged.profdata",
            "--bin aurora --example bare_pingora",
            // The optimized builds answer the same workload before the gateway's is
            // put where it is run from.
            "AURORA_BIN=",
            "/use/",
            "AURORA_PINGORA_BIN=",
            "/pgo/bare_pingora",
            "bench --bench load -- --train",
            "/pgo/aurora;",
        ],
    );
    // Instrumented build scripts would write their own profiles into the merge.
    assert_eq!(plan.matches("--release --target ").count(), 2, "{plan}");
    assert!(!make_plan("release").contains("profile-"));
}

/// `PGO=1` makes each load bench measure the profile-guided builds of both servers.
#[test]
fn pgo_load_benches_measure_the_profile_guided_builds_of_both_servers() {
    for target in ["bench-load", "bench-paired", "bench-counts"] {
        let plan = make_plan_with(&[target, "PGO=1"]);
        // The bench runs last, after `release-pgo` has made the builds it names.
        let bench = plan
            .lines()
            .rfind(|l| l.contains("bench --bench load"))
            .unwrap();
        assert!(
            bench.contains("AURORA_BIN=") && bench.contains("/pgo/aurora "),
            "{bench}"
        );
        assert!(
            bench.contains("AURORA_PINGORA_BIN=") && bench.contains("/pgo/bare_pingora "),
            "{bench}"
        );
        in_order(&plan, &["-Cprofile-use=", bench]);
        let plain = make_plan(target);
        assert!(!plain.contains("/pgo/"), "{plain}");
    }
}
