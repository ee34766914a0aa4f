//! What the gateway allows a client while it sends a request header, as a plain state
//! machine over the bytes read from the connection.
//!
//! Pingora reads the header before any proxy hook runs, gives each read its own timeout
//! and lets the header grow to about 1 MiB, so a client dripping a header or sending a
//! huge one holds a connection and its buffer for as long as it likes. The header must
//! therefore be watched below Pingora, on the connection itself: [`HeaderWatch`]
//! counts the bytes of the current request's header from its first byte until the
//! blank line that ends it, and says when the header has begun (so the caller starts
//! the `header_timeout` clock) and when it would outgrow `max_header_bytes`.

use std::time::Duration;

use bytes::Bytes;

use crate::config::ServerSettings;
use crate::proxy::GatewayError;

/// The limits one request header is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderLimits {
    /// Time from the header's first byte to its end.
    pub timeout: Duration,
    /// Largest header, request line included, in bytes.
    pub max_bytes: usize,
}

impl HeaderLimits {
    /// The limits `server.header_timeout` and `server.max_header_bytes` set.
    pub fn from_settings(server: &ServerSettings) -> Self {
        Self {
            timeout: server.header_timeout,
            max_bytes: usize::try_from(server.max_header_bytes).unwrap_or(usize::MAX),
        }
    }
}

/// What the bytes of one read did to the current request's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderProgress {
    /// No header is being read (the body, an upgraded stream, or no bytes at all).
    NotInHeader,
    /// A header began with these bytes and is not complete: its clock starts now.
    Started,
    /// More of a header that had begun; still not complete.
    Continued,
    /// The header ended within these bytes, within the size limit.
    Complete,
    /// The header is larger than the limit (or cannot end within it).
    TooLarge,
}

/// Why the gateway cut a connection while it read a request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderBreach {
    /// The header did not arrive whole within `header_timeout` of its first byte.
    TooSlow,
    /// The header outgrew `max_header_bytes`.
    TooLarge,
}

impl HeaderBreach {
    /// The gateway error sent for this breach.
    pub fn error(self, limits: HeaderLimits) -> GatewayError {
        match self {
            HeaderBreach::TooSlow => GatewayError::request_timeout(format!(
                "the request header did not arrive within {} of its first byte; send it without pauses or raise server.header_timeout",
                humantime::format_duration(limits.timeout)
            )),
            HeaderBreach::TooLarge => GatewayError::header_too_large(limits.max_bytes as u64),
        }
    }

    /// The whole HTTP/1.1 answer: status, the OpenAI error envelope, and
    /// `Connection: close`, since the connection ends with it.
    pub fn answer(self, limits: HeaderLimits) -> Bytes {
        let err = self.error(limits);
        let body = err.openai_envelope();
        let reason = http::StatusCode::from_u16(err.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            err.status,
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        Bytes::from(out)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of the next request (keep-alive idle time is free).
    AwaitingRequest,
    /// Inside a header.
    Header,
    /// Past the header: body, response, or an upgraded stream.
    PastHeader,
}

/// Where the scan for the blank line that ends a header stands. httparse skips empty
/// lines before the request line and ends lines with CRLF or a bare LF, so a header
/// ends at `\n\n` or `\n\r\n` after its first non-empty line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndScan {
    /// Only CR and LF so far (empty lines before the request line).
    Leading,
    /// Inside a line.
    InLine,
    /// Just after a line's LF.
    AfterLf,
    /// After a line's LF, then a CR.
    AfterLfCr,
}

impl EndScan {
    /// The index of the byte that ends the header, if it is in `bytes`. Only line
    /// ends are visited (found with `memchr`), not every byte of the header.
    fn find_end(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut i = 0;
        if *self == EndScan::Leading {
            i = bytes.iter().position(|b| !matches!(b, b'\r' | b'\n'))?;
            *self = EndScan::InLine;
        }
        loop {
            match (*self, bytes.get(i)?) {
                (EndScan::AfterLf | EndScan::AfterLfCr, b'\n') => return Some(i),
                (EndScan::AfterLf, b'\r') => *self = EndScan::AfterLfCr,
                (EndScan::InLine, _) => {
                    i += memchr::memchr(b'\n', &bytes[i..])?;
                    *self = EndScan::AfterLf;
                }
                _ => *self = EndScan::InLine,
            }
            i += 1;
        }
    }
}

/// The header watch of one client connection (see the module docs).
#[derive(Debug, Clone)]
pub struct HeaderWatch {
    limits: HeaderLimits,
    phase: Phase,
    header_bytes: usize,
    scan: EndScan,
}

impl HeaderWatch {
    /// A watch for a new connection, waiting for its first request.
    pub fn new(limits: HeaderLimits) -> Self {
        Self {
            limits,
            phase: Phase::AwaitingRequest,
            header_bytes: 0,
            scan: EndScan::Leading,
        }
    }

    /// The connection waits for its next request, held to `limits`.
    pub fn next_request(&mut self, limits: HeaderLimits) {
        *self = Self::new(limits);
    }

    /// The limits of the current request.
    pub fn limits(&self) -> HeaderLimits {
        self.limits
    }

    /// Whether the current request's header has been read to its end.
    pub fn header_read(&self) -> bool {
        self.phase == Phase::PastHeader
    }

    /// Takes in the bytes of one read from the client.
    pub fn observe(&mut self, bytes: &[u8]) -> HeaderProgress {
        if bytes.is_empty() || self.phase == Phase::PastHeader {
            return HeaderProgress::NotInHeader;
        }
        let started = self.phase == Phase::AwaitingRequest;
        self.phase = Phase::Header;
        if let Some(end) = self.scan.find_end(bytes) {
            self.header_bytes = self.header_bytes.saturating_add(end + 1);
            if self.header_bytes > self.limits.max_bytes {
                return HeaderProgress::TooLarge;
            }
            self.phase = Phase::PastHeader;
            return HeaderProgress::Complete;
        }
        self.header_bytes = self.header_bytes.saturating_add(bytes.len());
        // At the limit without its end, the header can only end past it.
        if self.header_bytes >= self.limits.max_bytes {
            HeaderProgress::TooLarge
        } else if started {
            HeaderProgress::Started
        } else {
            HeaderProgress::Continued
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_bytes: usize) -> HeaderLimits {
        HeaderLimits {
            timeout: Duration::from_secs(1),
            max_bytes,
        }
    }

    fn watch() -> HeaderWatch {
        HeaderWatch::new(limits(1024))
    }

    #[test]
    fn a_header_in_one_read_is_complete_without_starting_a_clock() {
        let mut w = watch();
        let progress = w.observe(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(progress, HeaderProgress::Complete);
    }

    #[test]
    fn a_dripped_header_starts_once_then_continues_until_its_blank_line() {
        let mut w = watch();
        let header = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let (last, rest) = header.split_last().unwrap();
        assert_eq!(w.observe(&rest[..1]), HeaderProgress::Started);
        for b in &rest[1..] {
            assert_eq!(w.observe(&[*b]), HeaderProgress::Continued);
        }
        assert_eq!(w.observe(&[*last]), HeaderProgress::Complete);
    }

    #[test]
    fn bare_lf_line_ends_end_a_header_as_httparse_accepts_them() {
        let mut w = watch();
        assert_eq!(
            w.observe(b"GET / HTTP/1.1\nHost: x\n\n"),
            HeaderProgress::Complete
        );
        let mut w = watch();
        assert_eq!(
            w.observe(b"GET / HTTP/1.1\nHost: x\n\r\n"),
            HeaderProgress::Complete
        );
    }

    #[test]
    fn empty_lines_before_the_request_line_do_not_end_the_header() {
        let mut w = watch();
        assert_eq!(w.observe(b"\r\n\r\n\n\n"), HeaderProgress::Started);
        assert_eq!(w.observe(b"GET / HTTP/1.1\r\n"), HeaderProgress::Continued);
        assert_eq!(w.observe(b"\r\n"), HeaderProgress::Complete);
    }

    #[test]
    fn a_crlf_split_across_reads_still_ends_the_header() {
        let mut w = watch();
        assert_eq!(
            w.observe(b"GET / HTTP/1.1\r\nA: b\r"),
            HeaderProgress::Started
        );
        assert_eq!(w.observe(b"\n\r"), HeaderProgress::Continued);
        assert_eq!(w.observe(b"\n"), HeaderProgress::Complete);
    }

    /// The scan, one byte at a time, as httparse reads line ends.
    fn reference_end(bytes: &[u8]) -> Option<usize> {
        let start = bytes.iter().position(|b| !matches!(b, b'\r' | b'\n'))?;
        (start..bytes.len()).find(|&i| {
            bytes[i] == b'\n'
                && i > start
                && (bytes[i - 1] == b'\n'
                    || (bytes[i - 1] == b'\r' && i > start + 1 && bytes[i - 2] == b'\n'))
        })
    }

    #[test]
    fn the_end_is_found_wherever_the_reads_split_the_header() {
        let headers: [&[u8]; 6] = [
            b"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n\r\nbody",
            b"\r\n\nGET / HTTP/1.1\nHost: x\n\nrest",
            b"GET / HTTP/1.1\r\nA: \r\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: b\n\r\n",
            b"GET / HTTP/1.1\r\nA: b\r\n\rX\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: b\r\n",
        ];
        for header in headers {
            let expected = reference_end(header);
            for split in 0..=header.len() {
                let mut scan = EndScan::Leading;
                let (a, b) = header.split_at(split);
                let found = scan
                    .find_end(a)
                    .or_else(|| scan.find_end(b).map(|i| i + split));
                assert_eq!(
                    found,
                    expected,
                    "{:?} split at {split}",
                    header.escape_ascii()
                );
            }
        }
    }

    #[test]
    fn body_bytes_after_the_header_are_not_counted() {
        let mut w = HeaderWatch::new(limits(40));
        let mut read = b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n".to_vec();
        assert!(read.len() <= 40);
        read.extend_from_slice(&[b'x'; 100]);
        assert_eq!(w.observe(&read), HeaderProgress::Complete);
        assert_eq!(w.observe(&[b'\n'; 2000]), HeaderProgress::NotInHeader);
    }

    #[test]
    fn a_header_of_exactly_the_limit_passes_and_one_byte_more_does_not() {
        let header = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut exact = HeaderWatch::new(limits(header.len()));
        assert_eq!(exact.observe(header), HeaderProgress::Complete);
        let mut short = HeaderWatch::new(limits(header.len() - 1));
        assert_eq!(short.observe(header), HeaderProgress::TooLarge);
    }

    #[test]
    fn an_unfinished_header_reaching_the_limit_is_too_large() {
        let mut w = HeaderWatch::new(limits(1024));
        assert_eq!(w.observe(b"GET / HTTP/1.1\r\n"), HeaderProgress::Started);
        assert_eq!(w.observe(&[b'a'; 1000]), HeaderProgress::Continued);
        assert_eq!(w.observe(&[b'a'; 8]), HeaderProgress::TooLarge);
    }

    #[test]
    fn the_next_request_starts_a_new_header_with_new_limits() {
        let mut w = watch();
        assert_eq!(
            w.observe(b"GET / HTTP/1.1\r\n\r\n"),
            HeaderProgress::Complete
        );
        w.next_request(limits(20));
        assert_eq!(w.limits().max_bytes, 20);
        assert_eq!(w.observe(b"GET / HTTP/1.1\r\n"), HeaderProgress::Started);
        assert_eq!(w.observe(b"Host: x\r\n\r\n"), HeaderProgress::TooLarge);
    }

    #[test]
    fn an_empty_read_changes_nothing() {
        let mut w = watch();
        assert_eq!(w.observe(b""), HeaderProgress::NotInHeader);
        assert_eq!(w.observe(b"G"), HeaderProgress::Started);
        assert_eq!(w.observe(b""), HeaderProgress::NotInHeader);
        assert_eq!(w.observe(b"ET"), HeaderProgress::Continued);
    }

    #[test]
    fn answers_are_complete_http_responses_that_close_the_connection() {
        let limits = HeaderLimits {
            timeout: Duration::from_secs(10),
            max_bytes: 65536,
        };
        let slow = HeaderBreach::TooSlow.answer(limits);
        let text = std::str::from_utf8(&slow).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nconnection: close"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "request_timeout");
        assert!(v["error"]["param"].is_null());
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("server.header_timeout"));

        let big = HeaderBreach::TooLarge.answer(limits);
        let text = std::str::from_utf8(&big).unwrap();
        assert!(text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        let body = text.split_once("\r\n\r\n").unwrap().1;
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "request_header_fields_too_large");
    }
}
