//! Request framing the gateway accepts and forwards: one `Content-Length`, and no
//! transfer coding but `chunked`. Pingora reads the body by these rules; the upstream
//! must be told the same, or the two ends can disagree about where a request ends.

use pingora_http::RequestHeader;

use super::GatewayError;

/// Refuses a `Transfer-Encoding` that names any coding besides `chunked` (`gzip,
/// chunked`, say): Pingora would decode the chunks and silently drop the coding, so
/// the provider would get compressed bytes it was never told about. 501, as nginx.
pub fn check_transfer_coding(req: &RequestHeader) -> Result<(), GatewayError> {
    for value in req.headers.get_all(http::header::TRANSFER_ENCODING) {
        let only_chunked = value.to_str().is_ok_and(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .all(|c| c.eq_ignore_ascii_case("chunked"))
        });
        if !only_chunked {
            return Err(GatewayError::not_implemented(
                "Transfer-Encoding other than `chunked` is not supported; send the body uncompressed or say so with Content-Encoding",
            ));
        }
    }
    Ok(())
}

/// Leaves exactly one `Content-Length` on a request header that carries several
/// identical ones (Pingora accepts those and frames the body by their common value).
pub fn collapse_content_length(headers: &mut http::HeaderMap) {
    let mut values = headers.get_all(http::header::CONTENT_LENGTH).iter();
    let Some(first) = values.next().cloned() else {
        return;
    };
    if values.next().is_none() && !first.as_bytes().contains(&b',') {
        return;
    }
    // Pingora refused differing values before any hook ran, so the first stands for
    // all; a comma-joined list of one repeated value counts as that value.
    let single = first.to_str().ok().and_then(|v| v.split(',').next());
    if let Ok(single) = http::HeaderValue::from_str(single.unwrap_or_default().trim()) {
        headers.insert(http::header::CONTENT_LENGTH, single);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/p/openai/chat/completions", None).unwrap();
        for (name, value) in headers {
            req.append_header(name.to_string(), *value).unwrap();
        }
        req
    }

    #[test]
    fn only_chunked_transfer_coding_is_accepted() {
        assert!(check_transfer_coding(&request(&[])).is_ok());
        assert!(check_transfer_coding(&request(&[("transfer-encoding", "chunked")])).is_ok());
        assert!(check_transfer_coding(&request(&[("transfer-encoding", " Chunked ")])).is_ok());
        for coding in [
            "gzip, chunked",
            "deflate,chunked",
            "identity, chunked",
            "br",
        ] {
            let err =
                check_transfer_coding(&request(&[("transfer-encoding", coding)])).unwrap_err();
            assert_eq!(err.status, 501, "{coding}");
        }
        let split = request(&[
            ("transfer-encoding", "gzip"),
            ("transfer-encoding", "chunked"),
        ]);
        assert_eq!(check_transfer_coding(&split).unwrap_err().status, 501);
    }

    #[test]
    fn duplicate_content_lengths_become_one() {
        let collapsed = |pairs: &[(&str, &str)]| {
            let mut headers = request(pairs).headers.clone();
            collapse_content_length(&mut headers);
            let values: Vec<_> = headers.get_all("content-length").iter().cloned().collect();
            values
        };
        assert_eq!(
            collapsed(&[("content-length", "12"), ("content-length", "12")]),
            ["12"]
        );
        assert_eq!(collapsed(&[("content-length", "7, 7")]), ["7"]);
        assert_eq!(collapsed(&[("content-length", "5")]), ["5"]);
        assert!(collapsed(&[]).is_empty());
    }
}
