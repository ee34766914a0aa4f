//! The `aurora` binary: command line, config loading, and the Pingora server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use pingora_core::server::configuration::Opt;
use pingora_core::server::RunArgs;

use aurora::config::{ConfigSource, EnvSnapshot, DEFAULT_CONFIG_PATH};
use aurora::limits::LimitStore;
use aurora::logging;
use aurora::proxy::response_store::ResponseStore;

#[cfg(feature = "alloc-count")]
#[global_allocator]
static ALLOCATOR: aurora::alloc_count::CountingAllocator = aurora::alloc_count::CountingAllocator;

#[cfg(all(feature = "jemalloc", not(feature = "alloc-count")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// How long what waits to be written (charges, Responses API answers, access lines,
/// spans) may take to leave at exit.
const EXIT_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Aurora, an AI gateway.
#[derive(Debug, Parser)]
#[command(name = "aurora", version, about)]
struct Cli {
    /// Config file (env AURORA_CONFIG; default conf/aurora.yaml).
    #[arg(long, value_name = "PATH", global = true)]
    config: Option<PathBuf>,

    /// Validate the config and the environment, then exit 0 (valid) or 1.
    #[arg(long)]
    check_config: bool,

    /// Print the built-in defaults as an `aurora.yaml`, then exit.
    #[arg(long)]
    print_default_config: bool,

    #[command(flatten)]
    pingora: Opt,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage gateway keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// What a gateway key used this period, per model: read from the Redis the config
    /// counts limits in, else asked of the running gateway's metrics listener
    /// (`GET /admin/usage`) with the master key (`AURORA_MASTER_KEY`).
    Usage {
        /// The key's name.
        #[arg(long)]
        key: String,
        /// day, week or month.
        #[arg(long, default_value = "month")]
        period: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// Mint a managed key: prints it once, with the YAML stanza holding only its hash.
    New {
        /// Who the key is for; shown in logs instead of the key.
        #[arg(long)]
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_default_config {
        print!("{}", aurora::config::default_config_yaml());
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Keys {
        action: KeysAction::New { name },
    }) = &cli.command
    {
        return new_key(name);
    }
    let env = EnvSnapshot::from_process();
    if let Some(Command::Usage { key, period }) = &cli.command {
        let source = config_source(cli.config.clone(), &env);
        return match source.load(&env) {
            Ok(config) => usage(&config, &source, &env, key, period),
            Err(e) => {
                eprintln!("aurora: config error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // Start with RUST_LOG (or the default) so loading is logged; the config's own
    // filter, which RUST_LOG also wins in, takes over once it is loaded.
    let early_filter = env.get("RUST_LOG").unwrap_or(logging::DEFAULT_LOG_FILTER);
    if logging::install(early_filter).is_err() {
        let _ = logging::install(logging::DEFAULT_LOG_FILTER);
    }
    let source = config_source(cli.config.clone(), &env);
    let config = match source.load(&env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("aurora: config error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if cli.check_config {
        println!(
            "aurora: config OK ({}): {}",
            source.path.display(),
            config.summary()
        );
        return ExitCode::SUCCESS;
    }
    if let Err(e) = logging::set_filter(&config.server.log_level) {
        log::error!("log filter not applied: {e}");
    }
    log::info!("config loaded: {}", config.summary());
    if config.auth.is_open() {
        log::warn!(
            "GATEWAY AUTH IS OFF: no master_key or managed key is configured, so anyone who can reach {} can spend the provider credentials. Set AURORA_MASTER_KEY or auth.keys.",
            config.server.startup.listen
        );
    }
    log::info!("listening on http://{}", config.server.startup.listen);
    if let Some(tls_listen) = &config.server.startup.tls_listen {
        log::info!("listening on https://{tls_listen} (HTTP/2 and HTTP/1.1)");
    }
    if let Some(addr) = &config.server.startup.metrics_listen {
        log::info!("metrics on http://{addr}/metrics (no key)");
    }
    log::info!(
        "SIGHUP reloads {}, SIGTERM drains for {}s, SIGQUIT hands the listeners to `aurora -u`",
        source.path.display(),
        config.server.startup.grace_period_seconds
    );
    match aurora::server::build_server(config, source, Some(cli.pingora)) {
        Ok(built) => {
            // `run` returns once every runtime has stopped (`run_forever` would exit
            // at once): what is still queued for the log and the collector goes out.
            built.server.run(RunArgs::default());
            // Then what the stores have not written yet (the charges of streams cut as
            // the grace period ended, the Responses API answers whose writes the
            // runtimes dropped) goes before the process ends.
            write_out_stores(
                built.limit_store.as_ref(),
                built.response_store.as_ref(),
                EXIT_FLUSH_TIMEOUT,
            );
            logging::flush_access_log(EXIT_FLUSH_TIMEOUT);
            aurora::telemetry::flush(EXIT_FLUSH_TIMEOUT);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("aurora: cannot start: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Has each store write what waits as the process ends, side by side: the exit waits
/// out the bound once, not once per store.
fn write_out_stores(limits: &dyn LimitStore, responses: &dyn ResponseStore, bound: Duration) {
    std::thread::scope(|scope| {
        let apart = std::thread::Builder::new()
            .name("responses-at-exit".into())
            .spawn_scoped(scope, || responses.write_out_at_exit(bound));
        limits.write_out_at_exit(bound);
        match apart {
            // Joined here, so that a panic there is said, not carried past the log's
            // and the collector's own flush.
            Ok(thread) => {
                if thread.join().is_err() {
                    log::warn!(
                        "Responses API answers not written to Redis at exit: the write failed"
                    );
                }
            }
            // No thread to be had: one after the other.
            Err(_) => responses.write_out_at_exit(bound),
        }
    });
}

/// `aurora usage`: the report, printed as JSON: read from Redis when the limits are
/// counted there, else asked of the running gateway with its master key, found where
/// the gateway finds it (the environment, a file it names, the config).
fn usage(
    config: &aurora::config::Config,
    source: &ConfigSource,
    env: &EnvSnapshot,
    key: &str,
    period: &str,
) -> ExitCode {
    let master = match source.master_key(env) {
        Ok(master) => master,
        Err(e) => {
            eprintln!("aurora: config error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let master = master.as_ref().map(|m| m.expose());
    match aurora::server::usage_report_text(config, key, period, master) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("aurora: {e}");
            ExitCode::FAILURE
        }
    }
}

fn config_source(flag: Option<PathBuf>, env: &EnvSnapshot) -> ConfigSource {
    let (path, required) = match flag.or_else(|| env.get("AURORA_CONFIG").map(PathBuf::from)) {
        Some(path) => (path, true),
        None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    };
    // Reloads must find the same file whatever the working directory is by then.
    let path = std::path::absolute(&path).unwrap_or(path);
    ConfigSource { path, required }
}

fn new_key(name: &str) -> ExitCode {
    match aurora::auth::mint_managed_key() {
        Ok(minted) => {
            println!("New gateway key for `{name}` (shown once; store it now):");
            println!("{}", minted.key.expose());
            println!();
            println!("Add to your config (only the hash is stored):");
            print!("{}", minted.yaml_stanza(name));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("aurora: cannot get random bytes: {e}");
            ExitCode::FAILURE
        }
    }
}
