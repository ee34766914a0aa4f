//! `aurora usage`: asks the running gateway's metrics listener for a key's usage
//! report (the store may be this host's memory or a Redis only the gateway reaches).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::config::Config;

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
