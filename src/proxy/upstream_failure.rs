//! Maps Pingora's proxy errors to the gateway error the client sees.

use pingora_core::{Error, ErrorSource, ErrorType};

use super::GatewayError;

/// The client-facing error for a failed proxy attempt, or `None` when the client
/// connection itself is gone and nothing can be sent.
pub fn gateway_error_for(e: &Error, provider: Option<&str>) -> Option<GatewayError> {
    let who = provider.unwrap_or("upstream");
    let err = match e.etype() {
        ErrorType::HTTPStatus(413) => GatewayError::payload_too_large(0),
        ErrorType::HTTPStatus(code) if (400..600).contains(code) => {
            let mut g = GatewayError::invalid_request("request refused by the gateway");
            g.status = *code;
            g
        }
        ErrorType::ConnectTimedout | ErrorType::TLSHandshakeTimedout => {
            GatewayError::gateway_timeout(format!(
                "timed out connecting to provider `{who}`; check its base_url or raise timeouts.connect"
            ))
        }
        // The client's body stopped arriving (see `body_deadline`).
        ErrorType::ReadTimedout if e.esource() == &ErrorSource::Downstream => {
            GatewayError::request_timeout(
                "the request body stopped arriving; send it without pauses or raise server.body_timeout",
            )
        }
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            GatewayError::gateway_timeout(format!(
                "provider `{who}` did not answer in time; retry, or raise timeouts.read"
            ))
        }
        ErrorType::ConnectRefused
        | ErrorType::ConnectNoRoute
        | ErrorType::ConnectError
        | ErrorType::BindError
        | ErrorType::SocketError
        | ErrorType::ConnectProxyFailure => GatewayError::bad_gateway(format!(
            "cannot connect to provider `{who}`; check its base_url and that it is up"
        )),
        ErrorType::TLSHandshakeFailure
        | ErrorType::TLSWantX509Lookup
        | ErrorType::InvalidCert
        | ErrorType::HandshakeError => GatewayError::bad_gateway(format!(
            "TLS with provider `{who}` failed (certificate not trusted or handshake refused); set ca_file for a private CA"
        )),
        _ => match e.esource() {
            ErrorSource::Upstream => GatewayError::bad_gateway(format!(
                "provider `{who}` closed the connection or sent an invalid response"
            )),
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                    return None
                }
                _ => GatewayError::invalid_request("malformed request"),
            },
            ErrorSource::Internal | ErrorSource::Unset => {
                let mut g = GatewayError::bad_gateway("internal gateway error");
                g.status = 500;
                g
            }
        },
    };
    Some(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_failures_are_502_and_timeouts_504() {
        let refused = Error::new_up(ErrorType::ConnectRefused);
        assert_eq!(gateway_error_for(&refused, Some("x")).unwrap().status, 502);
        let tls = Error::new_up(ErrorType::InvalidCert);
        assert_eq!(gateway_error_for(&tls, None).unwrap().status, 502);
        let slow = Error::new_up(ErrorType::ReadTimedout);
        assert_eq!(gateway_error_for(&slow, None).unwrap().status, 504);
        let slow = Error::new_up(ErrorType::ConnectTimedout);
        assert_eq!(gateway_error_for(&slow, None).unwrap().status, 504);
    }

    #[test]
    fn a_client_body_that_stops_arriving_is_408_not_504() {
        let slow_client = Error::new_down(ErrorType::ReadTimedout);
        let err = gateway_error_for(&slow_client, Some("x")).unwrap();
        assert_eq!((err.status, err.code), (408, Some("request_timeout")));
        assert!(
            err.message.contains("server.body_timeout"),
            "{}",
            err.message
        );
    }

    #[test]
    fn dead_client_gets_nothing() {
        let gone = Error::new_down(ErrorType::WriteError);
        assert!(gateway_error_for(&gone, None).is_none());
    }
}
