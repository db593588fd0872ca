//! Sending one DNS message to one server and getting its answer, over hickory-net's UDP and
//! TCP client streams. Shared by the checks of this crate and by providers that speak DNS
//! themselves (`libdns.rfc2136`).

use std::net::SocketAddr;
use std::time::Duration;

use hickory_net::NetError;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::{DnsHandle, FirstAnswer};
use hickory_proto::op::{DnsRequest, DnsRequestOptions, DnsResponse, Message, ResponseCode};

/// Sends `message` over UDP and, when the answer comes back truncated, again over TCP. The
/// message goes out as it is (a TSIG signature already on it is kept); `timeout` bounds each
/// transport's exchange, UDP retransmissions included.
pub async fn exchange(
    server: SocketAddr,
    message: Message,
    timeout: Duration,
) -> Result<DnsResponse, NetError> {
    // The provider owns the background task driving the exchange: it must outlive the answer.
    let runtime = TokioRuntimeProvider::new();
    let udp = UdpClientStream::builder(server, runtime.clone())
        .with_timeout(Some(timeout))
        .exchange();
    let response = udp
        .send(DnsRequest::new(message.clone(), options(&message)))
        .first_answer()
        .await;
    drop(runtime);
    let response = response?;
    if !response.metadata.truncation {
        return Ok(response);
    }
    tracing::debug!(%server, "truncated answer over UDP, asking again over TCP");
    exchange_tcp(server, message, timeout).await
}

/// Sends `message` over TCP. The connection's multiplexer gives the message a new ID, which
/// TSIG allows for: a signature carries the ID it was made with ("original ID").
pub async fn exchange_tcp(
    server: SocketAddr,
    message: Message,
    timeout: Duration,
) -> Result<DnsResponse, NetError> {
    // The provider owns the background task driving the connection (dropping the last clone
    // aborts it): it must outlive the answer.
    let runtime = TokioRuntimeProvider::new();
    let tcp = TcpClientStream::exchange(server, None, timeout, None, runtime.clone()).await?;
    let options = options(&message);
    let response = tcp
        .send(DnsRequest::new(message, options))
        .first_answer()
        .await;
    drop(runtime);
    response
}

fn options(message: &Message) -> DnsRequestOptions {
    let mut options = DnsRequestOptions::default();
    options.use_edns = message.edns.is_some();
    options.recursion_desired = message.metadata.recursion_desired;
    options
}

/// The mnemonic of a response code as DNS tools print it (`NOERROR`, `NOTAUTH`...), with the
/// code for ones without a common name.
pub fn rcode_name(code: ResponseCode) -> String {
    let name = match code {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::YXDomain => "YXDOMAIN",
        ResponseCode::YXRRSet => "YXRRSET",
        ResponseCode::NXRRSet => "NXRRSET",
        ResponseCode::NotAuth => "NOTAUTH",
        ResponseCode::NotZone => "NOTZONE",
        ResponseCode::BADVERS => "BADVERS",
        ResponseCode::BADSIG => "BADSIG",
        ResponseCode::BADKEY => "BADKEY",
        ResponseCode::BADTIME => "BADTIME",
        other => return format!("RCODE{}", u16::from(other)),
    };
    name.to_owned()
}
