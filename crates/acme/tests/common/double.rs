//! An in-process ACME test double (plain HTTP on loopback, JWS not verified) for what Pebble
//! 2.4 lacks or can't be made to do on demand: ARI windows and `replaces`, `Retry-After` on
//! rate limits and on order polling, storms of `badNonce`. Orders are ready at once (no
//! authorization to solve) and counted, so it also serves as a stand-in `test_ca`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

#[derive(Default)]
pub struct State {
    pub base: String,
    pub nonce: u64,
    /// POSTs still to reject with badNonce.
    pub bad_nonces: u32,
    pub bad_nonces_sent: u32,
    /// newOrder requests still to refuse with 429 + Retry-After: 1.
    pub rate_limits: u32,
    pub rate_limited_at: Vec<Instant>,
    pub orders: Vec<Order>,
    /// Order polls (POST-as-GET on an order): when, and the status answered.
    pub polls: Vec<(Instant, &'static str)>,
    /// ARI windows by certificate id; certificates not listed get a window far ahead.
    pub windows: HashMap<String, (SystemTime, SystemTime)>,
    /// The window of the next certificate issued.
    pub next_window: Option<(SystemTime, SystemTime)>,
    pub ari_requests: u32,
}

pub struct Order {
    pub names: Vec<String>,
    pub replaces: Option<String>,
    pub status: &'static str,
    /// Polls still answered "processing" after finalize.
    pub processing: u32,
    pub cert: Option<String>,
}

pub struct Double {
    pub state: Mutex<State>,
    pub ca_key: rcgen::KeyPair,
    pub ca_params: rcgen::CertificateParams,
    pub ca_pem: String,
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

impl Double {
    pub async fn start(setup: impl FnOnce(&mut State)) -> (Arc<Double>, String) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Double CA");
        let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let mut state = State {
            base: format!("http://{addr}"),
            ..State::default()
        };
        setup(&mut state);
        let double = Arc::new(Double {
            state: Mutex::new(state),
            ca_key,
            ca_params,
            ca_pem,
        });
        let served = double.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let double = served.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let double = double.clone();
                        async move { Ok::<_, Infallible>(double.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (double, format!("http://{addr}/dir"))
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let payload: Option<Value> = if method == http::Method::POST {
            let jws: Value = serde_json::from_slice(&body).unwrap();
            let raw = jws["payload"].as_str().unwrap();
            (!raw.is_empty()).then(|| serde_json::from_slice(&B64.decode(raw).unwrap()).unwrap())
        } else {
            None
        };
        let mut st = self.state();
        st.nonce += 1;
        let nonce = format!("nonce{}", st.nonce);
        let base = st.base.clone();
        let reply = |status: StatusCode, body: Value, extra: &[(&'static str, String)]| {
            let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
            *r.status_mut() = status;
            let h = r.headers_mut();
            h.insert("Replay-Nonce", nonce.parse().unwrap());
            h.insert("Content-Type", "application/json".parse().unwrap());
            for (k, v) in extra {
                h.insert(*k, v.parse().unwrap());
            }
            r
        };
        if method == http::Method::POST && st.bad_nonces > 0 {
            st.bad_nonces -= 1;
            st.bad_nonces_sent += 1;
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"type": "urn:ietf:params:acme:error:badNonce", "detail": "try again", "status": 400}),
                &[],
            );
        }
        match (method.as_str(), path.as_str()) {
            ("GET", "/dir") => reply(
                StatusCode::OK,
                json!({
                    "newNonce": format!("{base}/nonce"),
                    "newAccount": format!("{base}/new-account"),
                    "newOrder": format!("{base}/new-order"),
                    "revokeCert": format!("{base}/revoke"),
                    "keyChange": format!("{base}/key-change"),
                    "renewalInfo": format!("{base}/ari"),
                    "meta": {"caaIdentities": ["double.test"]}
                }),
                &[],
            ),
            ("HEAD" | "GET", "/nonce") => reply(StatusCode::OK, json!({}), &[]),
            ("POST", "/new-account") => reply(
                StatusCode::CREATED,
                json!({"status": "valid"}),
                &[("Location", format!("{base}/acct/1"))],
            ),
            ("POST", "/new-order") => {
                if st.rate_limits > 0 {
                    st.rate_limits -= 1;
                    st.rate_limited_at.push(Instant::now());
                    return reply(
                        StatusCode::TOO_MANY_REQUESTS,
                        json!({"type": "urn:ietf:params:acme:error:rateLimited", "detail": "slow down", "status": 429}),
                        &[("Retry-After", "1".into())],
                    );
                }
                let payload = payload.unwrap();
                let names: Vec<String> = payload["identifiers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i["value"].as_str().unwrap().to_owned())
                    .collect();
                let replaces = payload["replaces"].as_str().map(str::to_owned);
                st.orders.push(Order {
                    names,
                    replaces,
                    status: "ready",
                    processing: 1,
                    cert: None,
                });
                let id = st.orders.len() - 1;
                let body = order_json(&base, id, &st.orders[id]);
                reply(
                    StatusCode::CREATED,
                    body,
                    &[("Location", format!("{base}/order/{id}"))],
                )
            }
            ("POST", p) if p.starts_with("/finalize/") => {
                let id: usize = p["/finalize/".len()..].parse().unwrap();
                let csr = B64
                    .decode(payload.unwrap()["csr"].as_str().unwrap())
                    .unwrap();
                let pem = self.issue(&csr, &mut st);
                let order = &mut st.orders[id];
                order.cert = Some(pem);
                order.status = "processing";
                let body = order_json(&base, id, order);
                reply(StatusCode::OK, body, &[("Retry-After", "1".into())])
            }
            ("POST", p) if p.starts_with("/order/") => {
                let id: usize = p["/order/".len()..].parse().unwrap();
                let order = &mut st.orders[id];
                if order.status == "processing" {
                    if order.processing > 0 {
                        order.processing -= 1;
                    } else {
                        order.status = "valid";
                    }
                }
                let status = order.status;
                let body = order_json(&base, id, order);
                st.polls.push((Instant::now(), status));
                reply(StatusCode::OK, body, &[("Retry-After", "1".into())])
            }
            ("POST", p) if p.starts_with("/cert/") => {
                let id: usize = p["/cert/".len()..].parse().unwrap();
                let pem = st.orders[id].cert.clone().unwrap();
                let mut r = reply(StatusCode::OK, json!({}), &[]);
                *r.body_mut() = Full::new(Bytes::from(pem));
                r.headers_mut().insert(
                    "Content-Type",
                    "application/pem-certificate-chain".parse().unwrap(),
                );
                r
            }
            ("GET", p) if p.starts_with("/ari/") => {
                st.ari_requests += 1;
                let id = &p["/ari/".len()..];
                let far = SystemTime::now() + Duration::from_secs(30 * 86400);
                let (start, end) = st
                    .windows
                    .get(id)
                    .copied()
                    .unwrap_or((far, far + Duration::from_secs(86400)));
                reply(
                    StatusCode::OK,
                    json!({"suggestedWindow": {"start": rfc3339(start), "end": rfc3339(end)}}),
                    &[("Retry-After", "3600".into())],
                )
            }
            _ => reply(
                StatusCode::NOT_FOUND,
                json!({"type": "urn:ietf:params:acme:error:malformed"}),
                &[],
            ),
        }
    }

    /// Signs the CSR's key for its names, valid 90 days, with an AKI (for ARI ids).
    fn issue(&self, csr: &[u8], st: &mut State) -> String {
        let csr = rcgen::CertificateSigningRequestParams::from_der(&csr.to_vec().into()).unwrap();
        let mut params = csr.params;
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(90);
        let mut serial = [0u8; 16];
        aws_lc_rs::rand::fill(&mut serial).unwrap();
        serial[0] = (serial[0] & 0x7f) | 0x40;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let issuer = rcgen::Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&csr.public_key, &issuer).unwrap();
        let id = instant_acme::CertificateIdentifier::try_from(cert.der())
            .unwrap()
            .to_string();
        if let Some(window) = st.next_window.take() {
            st.windows.insert(id, window);
        }
        format!("{}{}", cert.pem(), self.ca_pem)
    }
}

fn order_json(base: &str, id: usize, order: &Order) -> Value {
    let mut v = json!({
        "status": order.status,
        "identifiers": order.names.iter().map(|n| json!({"type": "dns", "value": n})).collect::<Vec<_>>(),
        "authorizations": [],
        "finalize": format!("{base}/finalize/{id}"),
    });
    if order.status == "valid" {
        v["certificate"] = json!(format!("{base}/cert/{id}"));
    }
    if let Some(r) = &order.replaces {
        v["replaces"] = json!(r);
    }
    v
}
