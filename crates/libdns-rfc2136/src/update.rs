//! The provider: one TSIG-signed UPDATE message per operation, sent over TCP (as maddy's libdns
//! provider does: no UDP retransmissions of a change, and a closed port fails at once).

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use hickory_proto::op::{DnsResponse, Message, ResponseCode, update_message};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::{Name, RData, Record, RecordSet, TSigVerifier, TSigner};
use madmail_dns::{DnsError, DnsProvider, Resolvers, ServerAddr, TxtRecord, find_zone, wire};

const PROVIDER: &str = "rfc2136";

/// Pauses before the second and third attempt of an update that failed for a reason that may
/// pass (network, SERVFAIL): a server restarting, a lost connection.
const RETRY_PAUSES: [Duration; 2] = [Duration::from_millis(500), Duration::from_secs(1)];

pub(crate) struct Rfc2136 {
    server: ServerAddr,
    signer: Option<TSigner>,
    /// The zone from the configuration, instead of asking the server.
    zone: Option<String>,
    timeout: Duration,
}

impl fmt::Debug for Rfc2136 {
    // Never the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rfc2136")
            .field("server", &self.server.to_string())
            .field(
                "key_name",
                &self.signer.as_ref().map(|s| s.signer_name().to_string()),
            )
            .field(
                "key_alg",
                &self.signer.as_ref().map(|s| s.algorithm().to_string()),
            )
            .field("zone", &self.zone)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why one attempt failed.
enum Failure {
    /// Retrying may help.
    Transient(String),
    /// It will not.
    Final(DnsError),
}

#[derive(Clone, Copy)]
enum Operation {
    Append,
    Delete,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Append => "append",
            Operation::Delete => "delete",
        }
    }
}

impl Rfc2136 {
    pub(crate) fn new(
        server: ServerAddr,
        signer: Option<TSigner>,
        zone: Option<String>,
        timeout: Duration,
    ) -> Rfc2136 {
        Rfc2136 {
            server,
            signer,
            zone,
            timeout,
        }
    }

    fn failed(&self, zone: &str, operation: Operation, message: String) -> DnsError {
        DnsError::Failed {
            provider: PROVIDER.into(),
            zone: zone.to_owned(),
            operation: operation.as_str().into(),
            message,
        }
    }

    /// Builds the UPDATE message for `record` in `zone`, checking the names first (hickory's
    /// builders assume the name is in the zone).
    fn message(
        &self,
        zone: &str,
        record: &TxtRecord,
        operation: Operation,
    ) -> Result<Message, DnsError> {
        let parse = |name: &str| {
            madmail_dns::absolute_name(name)
                .and_then(|n| Name::from_ascii(&n).map_err(|e| e.to_string()))
                .map_err(|e| self.failed(zone, operation, e))
        };
        let zone_name = parse(zone)?;
        let name = parse(&record.fqdn)?;
        if !zone_name.zone_of(&name) {
            return Err(self.failed(
                zone,
                operation,
                format!("{} is not in zone {zone}", record.fqdn),
            ));
        }
        // A TXT value is a sequence of strings of at most 255 bytes each.
        let txt = TXT::from_bytes(record.value.as_bytes().chunks(255).collect());
        let ttl = u32::try_from(record.ttl.as_secs()).unwrap_or(u32::MAX);
        let rrset = RecordSet::from(Record::from_rdata(name, ttl, RData::TXT(txt)));
        Ok(match operation {
            // Adds to the RRset: other values of the name stay.
            Operation::Append => update_message::append(rrset, zone_name, false, false),
            // Removes this one RR (class NONE): other values stay, a missing one is no error.
            Operation::Delete => update_message::delete_by_rdata(rrset, zone_name, false),
        })
    }

    async fn update(
        &self,
        zone: &str,
        record: &TxtRecord,
        operation: Operation,
    ) -> Result<(), DnsError> {
        let message = self.message(zone, record, operation)?;
        let mut last = String::new();
        for attempt in 0..=RETRY_PAUSES.len() {
            if let Some(pause) = attempt.checked_sub(1).and_then(|i| RETRY_PAUSES.get(i)) {
                tokio::time::sleep(*pause).await;
            }
            match self.attempt(&message).await {
                Ok(()) => {
                    tracing::debug!(
                        provider = PROVIDER,
                        server = %self.server,
                        zone,
                        name = %record.fqdn,
                        operation = operation.as_str(),
                        "TXT record updated"
                    );
                    return Ok(());
                }
                Err(Failure::Final(e)) => return Err(with_context(e, zone, operation)),
                Err(Failure::Transient(reason)) => {
                    tracing::warn!(
                        provider = PROVIDER,
                        server = %self.server,
                        zone,
                        name = %record.fqdn,
                        operation = operation.as_str(),
                        attempt = attempt + 1,
                        %reason,
                        "DNS update failed"
                    );
                    last = reason;
                }
            }
        }
        Err(self.failed(
            zone,
            operation,
            format!("{last} (gave up after {} attempts)", RETRY_PAUSES.len() + 1),
        ))
    }

    /// Sends the update to the server's addresses in turn until one answers.
    async fn attempt(&self, message: &Message) -> Result<(), Failure> {
        let addrs = self
            .server
            .resolve()
            .await
            .map_err(|e| Failure::Transient(format!("resolving {}: {e}", self.server)))?;
        let mut errors = Vec::new();
        for addr in addrs {
            let mut message = message.clone();
            let verifier = match &self.signer {
                Some(signer) => {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    message
                        .finalize(signer, now)
                        .map_err(|e| Failure::Final(failure(format!("signing: {e}"))))?
                }
                None => None,
            };
            match wire::exchange_tcp(addr, message, self.timeout).await {
                Ok(response) => return self.judge(addr, &response, verifier),
                Err(e) => errors.push(format!("{addr}: {e}")),
            }
        }
        Err(Failure::Transient(errors.join("; ")))
    }

    /// What the server's answer means.
    fn judge(
        &self,
        addr: SocketAddr,
        response: &DnsResponse,
        verifier: Option<TSigVerifier>,
    ) -> Result<(), Failure> {
        let code = response.metadata.response_code;
        let key = || {
            self.signer.as_ref().map_or_else(String::new, |s| {
                format!("{} ({})", s.signer_name(), s.algorithm())
            })
        };
        // TSIG errors come in unsigned answers (the server could not check our signature).
        if let Some(error) = response.signature().and_then(|s| s.data.error) {
            let message = match error {
                TsigError::BadSig => format!(
                    "{addr} rejected the signature of key {} (BADSIG): wrong key secret",
                    key()
                ),
                TsigError::BadKey => format!(
                    "{addr} does not know key {} (BADKEY): check key_name and key_alg",
                    key()
                ),
                TsigError::BadTime => format!(
                    "{addr} rejected the signature's time (BADTIME): the clocks differ by more \
                     than {} seconds",
                    self.signer.as_ref().map_or(0, TSigner::fudge)
                ),
                other => format!("{addr} answered TSIG error {other:?}"),
            };
            return Err(Failure::Final(unauthorized(message)));
        }
        // Only a signed answer proves the server did what we asked.
        if let Some(mut verifier) = verifier {
            let checked = match response.signature() {
                None => Err("it is not signed".to_owned()),
                Some(_) => verifier
                    .verify(response.as_buffer())
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            };
            if let Err(problem) = checked
                && code == ResponseCode::NoError
            {
                return Err(Failure::Final(failure(format!(
                    "{addr} answered NOERROR but the answer failed the TSIG check ({problem}); \
                     not trusting it"
                ))));
            }
        }
        let name = wire::rcode_name(code);
        match code {
            ResponseCode::NoError => Ok(()),
            ResponseCode::NotAuth => Err(Failure::Final(unauthorized(format!(
                "{addr} answered {name}: it is not authoritative for the zone, or the key may not \
                 update it"
            )))),
            ResponseCode::Refused => Err(Failure::Final(unauthorized(format!(
                "{addr} answered {name}: updates refused (allow-update / update-policy{})",
                if self.signer.is_none() {
                    "; no key is configured"
                } else {
                    ""
                }
            )))),
            ResponseCode::ServFail => Err(Failure::Transient(format!("{addr} answered {name}"))),
            ResponseCode::NotZone => Err(Failure::Final(failure(format!(
                "{addr} answered {name}: the name is not in the zone"
            )))),
            _ => Err(Failure::Final(failure(format!("{addr} answered {name}")))),
        }
    }
}

/// Errors are built before the zone and operation are known, then completed.
fn unauthorized(message: String) -> DnsError {
    DnsError::Unauthorized {
        provider: PROVIDER.into(),
        zone: String::new(),
        operation: String::new(),
        message,
    }
}

fn failure(message: String) -> DnsError {
    DnsError::Failed {
        provider: PROVIDER.into(),
        zone: String::new(),
        operation: String::new(),
        message,
    }
}

fn with_context(error: DnsError, zone_name: &str, op: Operation) -> DnsError {
    match error {
        DnsError::Unauthorized {
            provider, message, ..
        } => DnsError::Unauthorized {
            provider,
            zone: zone_name.to_owned(),
            operation: op.as_str().into(),
            message,
        },
        DnsError::Failed {
            provider, message, ..
        } => DnsError::Failed {
            provider,
            zone: zone_name.to_owned(),
            operation: op.as_str().into(),
            message,
        },
        other => other,
    }
}

#[async_trait]
impl DnsProvider for Rfc2136 {
    fn name(&self) -> &str {
        PROVIDER
    }

    /// The configured `zone`, or the one the server is authoritative for, asked with SOA
    /// queries (it answers for its own zones, also ones invisible from the Internet).
    async fn zone_for(&self, fqdn: &str) -> Result<String, DnsError> {
        if let Some(zone) = &self.zone {
            let inside = madmail_dns::absolute_name(fqdn)
                .is_ok_and(|name| name == *zone || name.ends_with(&format!(".{zone}")));
            if !inside {
                return Err(DnsError::NoZone {
                    provider: PROVIDER.into(),
                    name: fqdn.to_owned(),
                });
            }
            return Ok(zone.clone());
        }
        let addrs = self.server.resolve().await.map_err(|e| DnsError::Lookup {
            name: fqdn.to_owned(),
            message: format!("resolving {}: {e}", self.server),
        })?;
        find_zone(fqdn, &Resolvers::new(addrs))
            .await
            .map_err(|e| match e {
                DnsError::NoZone { name, .. } => DnsError::NoZone {
                    provider: PROVIDER.into(),
                    name,
                },
                DnsError::Lookup { name, message } => DnsError::Lookup {
                    name,
                    message: format!(
                        "asking {} for the zone: {message} (set `zone` to skip this)",
                        self.server
                    ),
                },
                other => other,
            })
    }

    async fn append(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        self.update(zone, record, Operation::Append).await
    }

    async fn delete(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        self.update(zone, record, Operation::Delete).await
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::OpCode;
    use hickory_proto::rr::rdata::tsig::TsigAlgorithm;

    use super::*;

    fn signer(secret: &[u8]) -> TSigner {
        TSigner::new(
            secret.to_vec(),
            TsigAlgorithm::HmacSha256,
            Name::from_ascii("acme.").unwrap(),
            300,
        )
        .unwrap()
    }

    /// A signed update, and the server's NOERROR answer to it after `sign_answer`.
    fn exchange(sign_answer: impl FnOnce(&mut Message)) -> Result<(), Failure> {
        let provider = Rfc2136::new(
            ServerAddr::parse("127.0.0.1").unwrap(),
            Some(signer(b"our secret")),
            None,
            Duration::from_secs(1),
        );
        let record = TxtRecord {
            fqdn: "_acme-challenge.example.test.".into(),
            value: "v".into(),
            ttl: Duration::from_secs(60),
        };
        let mut request = provider
            .message("example.test.", &record, Operation::Append)
            .unwrap();
        let verifier = request
            .finalize(provider.signer.as_ref().unwrap(), 1_700_000_000)
            .unwrap();
        let mut answer = Message::response(request.metadata.id, OpCode::Update);
        answer.queries = request.queries.clone();
        sign_answer(&mut answer);
        let answer = DnsResponse::from_message(answer).unwrap();
        provider.judge("127.0.0.1:53".parse().unwrap(), &answer, verifier)
    }

    fn final_message(result: Result<(), Failure>) -> String {
        match result {
            Err(Failure::Final(e)) => e.to_string(),
            Err(Failure::Transient(m)) => panic!("transient: {m}"),
            Ok(()) => panic!("accepted"),
        }
    }

    #[test]
    fn an_unsigned_success_is_not_trusted() {
        let message = final_message(exchange(|_| {}));
        assert!(message.contains("not signed"), "{message}");
    }

    #[test]
    fn a_success_signed_with_another_key_is_not_trusted() {
        let message = final_message(exchange(|answer| {
            answer
                .finalize(&signer(b"someone else"), 1_700_000_000)
                .unwrap();
        }));
        assert!(message.contains("failed the TSIG check"), "{message}");
    }
}
