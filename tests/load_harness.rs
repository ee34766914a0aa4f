//! The load bench's own tests (open-loop timing, the report's verdicts, the nginx
//! configuration, the requests of each scenario), run with the other tests. The bench
//! sources are compiled here as a module.

#[path = "../benches/load/main.rs"]
mod load;
