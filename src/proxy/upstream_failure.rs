//! Maps Pingora's proxy errors to the gateway error the client sees.

use pingora_core::{Error, ErrorSource, ErrorType};

use super::upstream::{read_timer, UpstreamWait};
use super::GatewayError;
use super::UpstreamTarget;

/// The client-facing error for a failed proxy attempt, or `None` when the client
/// connection itself is gone and nothing can be sent.
pub fn gateway_error_for(e: &Error, provider: Option<&str>) -> Option<GatewayError> {
    let who = provider.unwrap_or("upstream");
    if let Some(wait) = wait_that_ran_out(e) {
        return Some(GatewayError::gateway_timeout(waited_too_long(who, wait)));
    }
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
        // A client that stopped reading its answer, cut at `server.send_timeout`: gone,
        // nothing to tell it (and not the provider's time).
        ErrorType::WriteTimedout if e.esource() == &ErrorSource::Downstream => return None,
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
            GatewayError::gateway_timeout(format!(
                "provider `{who}` did not answer in time; retry, or raise its timeouts"
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

/// What the client is told when a provider's exchange ran out of `wait`.
pub fn waited_too_long(who: &str, wait: UpstreamWait) -> String {
    let what = match wait {
        UpstreamWait::FirstByte => "did not start answering",
        UpstreamWait::Idle => "stopped sending its answer midway",
        UpstreamWait::Total => "did not finish its answer",
    };
    format!(
        "provider `{who}` {what} in time ({wait}); retry, or raise timeouts.{} for the provider or model",
        wait.field()
    )
}

/// A read timeout on the proxy path, told as the setting its timer came from (see
/// [`super::upstream::read_timer`]).
pub fn read_timer_error(e: &Error, target: Option<&UpstreamTarget>) -> Option<GatewayError> {
    if e.etype() != &ErrorType::ReadTimedout || e.esource() != &ErrorSource::Upstream {
        return None;
    }
    let target = target?;
    let (_, wait) = read_timer(&target.timeouts, target.shape);
    Some(GatewayError::gateway_timeout(waited_too_long(
        &target.provider.name,
        wait,
    )))
}

/// The wait named by a timeout the gateway's own exchange raised (see
/// `whole_answer`): the error's cause.
fn wait_that_ran_out(e: &Error) -> Option<UpstreamWait> {
    e.cause
        .as_deref()
        .and_then(|c| c.downcast_ref::<UpstreamWait>())
        .copied()
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
    fn a_wait_that_ran_out_is_504_naming_its_setting() {
        let e = Error::because(
            ErrorType::ReadTimedout,
            "no header",
            UpstreamWait::FirstByte,
        )
        .into_up();
        let err = gateway_error_for(&e, Some("openai")).unwrap();
        assert_eq!(err.status, 504);
        assert!(
            err.message.contains("timeouts.first_byte"),
            "{}",
            err.message
        );
        assert_eq!(
            crate::metrics::UpstreamErrorKind::of(&e),
            Some(crate::metrics::UpstreamErrorKind::Timeout)
        );
    }

    #[test]
    fn a_read_timer_on_the_proxy_path_names_the_setting_it_came_from() {
        use crate::providers::{Provider, ProviderKind};
        use crate::proxy::AnswerShape;
        let provider = std::sync::Arc::new(Provider::unconfigured(ProviderKind::OpenAi));
        let e = Error::new_up(ErrorType::ReadTimedout);
        let msg = |shape| {
            let target = UpstreamTarget::new(provider.clone(), "/".into(), Default::default())
                .timed(provider.timeouts, shape);
            read_timer_error(&e, Some(&target)).unwrap().message
        };
        assert!(msg(AnswerShape::Whole).contains("timeouts.first_byte"));
        assert!(msg(AnswerShape::Stream).contains("timeouts.idle"));
        let client = Error::new_down(ErrorType::ReadTimedout);
        assert!(read_timer_error(&client, None).is_none());
    }

    #[test]
    fn dead_client_gets_nothing() {
        let gone = Error::new_down(ErrorType::WriteError);
        assert!(gateway_error_for(&gone, None).is_none());
    }
}
