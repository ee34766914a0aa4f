//! `aurora usage`: a key's usage report, read from the Redis the limits are counted
//! in, or, with the memory store (which lives in the gateway's process), asked of the
//! running gateway's metrics listener.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{Config, LimitStoreKind, RedisAddress};
use crate::limits::{parse_period, reports_no_key, usage_report, RedisStore};

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
    // A wrong argument is said as such, not taken for a store to ask elsewhere.
    parse_period(period).ok_or("period is day, week or month")?;
    if key.is_empty() {
        return Err("name the key: --key NAME".into());
    }
    match &config.limits.store {
        LimitStoreKind::Redis(address) => {
            let unread = match read_from_redis(config, address, key, period) {
                Ok(report) => return Ok(report),
                // Redis answered: the gateway would say the same.
                Err(RedisRead::Answered(said)) => return Err(said),
                Err(RedisRead::Unread(e)) => e,
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
                "the report is asked of the running gateway, whose memory holds it, with its \
                 master key: set AURORA_MASTER_KEY (or AURORA_MASTER_KEY_FILE, \
                 server.master_key or server.master_key_file)",
            )?;
            fetch_usage_report(config, key, period, master_key)
        }
    }
}

/// How often the report is tried from Redis before it is given up on: a connection
/// from afar takes longer than one call's time, and goes on being made between tries.
const REDIS_TRIES: u32 = 5;

/// Why the report was not read from Redis.
enum RedisRead {
    /// Redis answered, and the answer is no report (a name no key goes by).
    Answered(String),
    /// Redis could not be read.
    Unread(String),
}

/// The report read from the Redis at `address`, as every replica writes it.
fn read_from_redis(
    config: &Config,
    address: &RedisAddress,
    key: &str,
    period: &str,
) -> Result<String, RedisRead> {
    let period = parse_period(period)
        .ok_or_else(|| RedisRead::Answered("period is day, week or month".into()))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RedisRead::Unread(format!("cannot start: {e}")))?;
    runtime.block_on(async {
        let store = RedisStore::at(address, config.limits.slot_lease)
            .map_err(|e| RedisRead::Unread(e.to_string()))?;
        let mut tries = 0;
        loop {
            tries += 1;
            match usage_report(&store, key, period, now).await {
                Ok(report) if reports_no_key(&report, config.auth.has_key_named(key)) => {
                    return Err(RedisRead::Answered(format!(
                        "no key is named `{key}`, and nothing was used under that name"
                    )))
                }
                Ok(report) => return Ok(report.to_string()),
                Err(e) if tries >= REDIS_TRIES => {
                    return Err(RedisRead::Unread(format!(
                        "cannot read the usage from Redis: {e}"
                    )))
                }
                // A store whose call failed asks nothing for a moment: tried past it.
                Err(_) => {
                    let past_quiet = crate::limits::QUIET_AFTER_LOSS + Duration::from_millis(100);
                    tokio::time::sleep(past_quiet).await
                }
            }
        }
    })
}

/// How long asking the gateway may take, each of connecting, sending and reading.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// The address of the gateway's metrics listener `listen` as this host reaches it: a
/// listener on every address (`0.0.0.0`, `::`) is asked on loopback. The master key
/// crosses no network in clear: an address that is not this host's is refused.
fn gateway_on_this_host(listen: &str) -> Result<SocketAddr, String> {
    let addr = listen
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| format!("server.metrics_listen `{listen}` is not an address"))?;
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    // An address this host holds is one a socket can be bound to.
    if ip.is_loopback() || UdpSocket::bind((ip, 0)).is_ok() {
        return Ok(SocketAddr::new(ip, addr.port()));
    }
    Err(format!(
        "server.metrics_listen {addr} is not an address of this host: the master key is \
         sent in clear, so only to a gateway on this host; run `aurora usage` there"
    ))
}

/// The JSON report of `key` over `period`, from the gateway configured by `config`,
/// asked with `master_key`.
pub fn fetch_usage_report(
    config: &Config,
    key: &str,
    period: &str,
    master_key: &str,
) -> Result<String, String> {
    let listen = config
        .server
        .startup
        .metrics_listen
        .as_deref()
        .ok_or("server.metrics_listen is off: the usage report is served there")?;
    let addr = gateway_on_this_host(listen)?;
    let mut stream = TcpStream::connect_timeout(&addr, ASK_TIMEOUT)
        .map_err(|e| format!("cannot reach the gateway's metrics listener at {addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(ASK_TIMEOUT));
    let _ = stream.set_write_timeout(Some(ASK_TIMEOUT));
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
    // Whatever answers on the port, a report is read up to a bound.
    (&mut stream)
        .take(MAX_ANSWER_BYTES + 1)
        .read_to_end(&mut answer)
        .map_err(|e| format!("no answer from the gateway: {e}"))?;
    if answer.len() as u64 > MAX_ANSWER_BYTES {
        return Err(format!(
            "the answer on {addr} is longer than a usage report can be ({MAX_ANSWER_BYTES} bytes)"
        ));
    }
    let answer = printable(&String::from_utf8_lossy(&answer));
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or("the gateway's answer is not HTTP")?;
    if !head.starts_with("HTTP/1.1 200") {
        let status = head.lines().next().unwrap_or("");
        return Err(format!("the gateway answered {status}: {body}"));
    }
    Ok(body.to_string())
}

/// The most of an answer read: a report names a key's models, a few kilobytes.
const MAX_ANSWER_BYTES: u64 = 16 * 1024 * 1024;

/// `text` with its control characters (a terminal's escape sequences among them) but
/// line breaks and tabs shown as `�`: what answers is printed on the operator's terminal.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && !matches!(c, '\r' | '\n' | '\t') {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_answers_is_printed_without_a_terminals_escape_sequences() {
        assert_eq!(
            printable("{\"a\":1}\r\n\t\u{1b}[2J\u{7}x"),
            "{\"a\":1}\r\n\t\u{fffd}[2J\u{fffd}x"
        );
    }

    #[test]
    fn an_answer_longer_than_a_report_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..=(MAX_ANSWER_BYTES >> 20) {
                if s.write_all(&chunk).is_err() {
                    return;
                }
            }
        });
        let yaml = format!("server:\n  metrics_listen: \"{addr}\"\n");
        let env = crate::config::EnvSnapshot::loopback();
        let config = crate::config::build_config(Some(&yaml), None, &env).unwrap();
        let err = fetch_usage_report(&config, "team", "month", "master").unwrap_err();
        assert!(err.contains("longer than a usage report"), "{err}");
    }

    #[test]
    fn the_master_key_is_sent_only_to_a_gateway_on_this_host() {
        assert_eq!(
            gateway_on_this_host("0.0.0.0:9464"),
            Ok("127.0.0.1:9464".parse().unwrap())
        );
        assert_eq!(
            gateway_on_this_host("[::]:9464"),
            Ok("[::1]:9464".parse().unwrap())
        );
        assert_eq!(
            gateway_on_this_host("127.0.0.1:9464"),
            Ok("127.0.0.1:9464".parse().unwrap())
        );
        // An address of another host (TEST-NET-1): never asked.
        let err = gateway_on_this_host("192.0.2.1:9464").unwrap_err();
        assert!(err.contains("not an address of this host"), "{err}");
    }

    #[test]
    fn a_wrong_period_asks_neither_redis_nor_the_gateway() {
        let gateway = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        gateway.set_nonblocking(true).unwrap();
        let listen = gateway.local_addr().unwrap().to_string();
        let env = crate::config::EnvSnapshot::from_pairs([
            ("AURORA_LISTEN", "127.0.0.1:8080"),
            ("AURORA_METRICS_LISTEN", listen.as_str()),
            ("AURORA_REDIS_URL", "redis://127.0.0.1:1/0"),
        ]);
        let config = crate::config::build_config(Some(""), None, &env).unwrap();
        let err = usage_report_text(&config, "team-a", "year", Some("gw-master")).unwrap_err();
        assert!(err.contains("period"), "{err}");
        assert!(gateway.accept().is_err(), "the gateway was asked");
    }
}
