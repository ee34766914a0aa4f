//! `aurora usage`: a key's usage report, read from the Redis the limits are counted
//! in, or, with the memory store (which lives in the gateway's process), asked of the
//! running gateway's metrics listener.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{Config, LimitStoreKind, RedisAddress};
use crate::limits::{parse_period, usage_report, RedisStore};

/// The JSON report of `key` over `period` (`day`, `week`, `month`): read from the
/// Redis the config counts limits in, else asked of the gateway it configures with
/// `master_key`, which that needs. A Redis this host cannot reach (a private network
/// only the gateway is on) is asked through the gateway too, when `master_key` is
/// given.
pub fn usage_report_text(
    config: &Config,
    key: &str,
    period: &str,
    master_key: Option<&str>,
) -> Result<String, String> {
    match &config.limits.store {
        LimitStoreKind::Redis(address) => {
            let unread = match read_from_redis(config, address, key, period) {
                Ok(report) => return Ok(report),
                Err(e) => e,
            };
            match master_key {
                Some(master_key) if config.server.startup.metrics_listen.is_some() => {
                    fetch_usage_report(config, key, period, master_key)
                        .map_err(|asked| format!("{unread}; nor through the gateway: {asked}"))
                }
                _ => Err(unread),
            }
        }
        LimitStoreKind::Memory => {
            let master_key = master_key.ok_or(
                "set AURORA_MASTER_KEY to the gateway's master key: the report is asked of \
                 the running gateway, whose memory holds it",
            )?;
            fetch_usage_report(config, key, period, master_key)
        }
    }
}

/// How often the report is tried from Redis before it is given up on: a connection
/// from afar takes longer than one call's time.
const REDIS_TRIES: u32 = 3;

/// The report read from the Redis at `address`, as every replica writes it.
fn read_from_redis(
    config: &Config,
    address: &RedisAddress,
    key: &str,
    period: &str,
) -> Result<String, String> {
    let period = parse_period(period).ok_or("period is day, week or month")?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start: {e}"))?;
    runtime.block_on(async {
        let mut tries = 0;
        loop {
            tries += 1;
            // A store of its own each time: a failed try's store asks nothing for a while.
            let store =
                RedisStore::at(address, config.limits.slot_lease).map_err(|e| e.to_string())?;
            match usage_report(&store, key, period, now).await {
                Ok(report) => return Ok(report.to_string()),
                Err(e) if tries >= REDIS_TRIES => {
                    return Err(format!("cannot read the usage from Redis: {e}"))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
}

/// The JSON report of `key` over `period`, from the gateway configured by `config`,
/// asked with `master_key`.
pub fn fetch_usage_report(
    config: &Config,
    key: &str,
    period: &str,
    master_key: &str,
) -> Result<String, String> {
    let addr = config
        .server
        .startup
        .metrics_listen
        .as_deref()
        .ok_or("server.metrics_listen is off: the usage report is served there")?;
    let mut stream = TcpStream::connect(addr)
        .map_err(|e| format!("cannot reach the gateway's metrics listener at {addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let encode = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let request = format!(
        "GET /admin/usage?key={}&period={} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {master_key}\r\nConnection: close\r\n\r\n",
        encode(key),
        encode(period)
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("cannot ask the gateway: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("no answer from the gateway: {e}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or("the gateway's answer is not HTTP")?;
    if !head.starts_with("HTTP/1.1 200") {
        let status = head.lines().next().unwrap_or("");
        return Err(format!("the gateway answered {status}: {body}"));
    }
    Ok(body.to_string())
}
