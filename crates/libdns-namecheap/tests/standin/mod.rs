//! A stand-in for the Namecheap XML API (namecheap.com/support/api), over [`FakeZones`]: one
//! resource, `/xml.response`, taking the global parameters (`ApiUser`, `ApiKey`, `UserName`,
//! `ClientIp`, `Command`; names in any case) from the query or a form body, with the account's
//! whitelisted IPv4 address; `namecheap.domains.getList` (`Page`, `PageSize` 10 to 100,
//! `<Paging>`), `namecheap.domains.dns.getHosts` (`SLD`/`TLD`, lowercase `<host>` elements,
//! `EmailType`) and `namecheap.domains.dns.setHosts` (replaces every host; `HostNameN`,
//! `RecordTypeN`, `AddressN`, `MXPrefN` required, `TTLN` 60 to 60000, `EmailType` kept or, when
//! left out, mail setup dropped); every answer is HTTP 200 XML, errors as `Status="ERROR"` with
//! numbered `<Error>`s (1011102 bad key, 1011150 address not whitelisted, 2019166 domain not
//! found, ...). `/getip` stands in for Namecheap's "what is my IP" service.
//!
//! Not documented, chosen here: the error numbers for a bad page size or a bad host (5050900,
//! "unknown exception"). `TLD` lengths are not checked: [`FakeZones::standard`]'s delegated
//! `sub.example.org` plays a domain like `example.co.uk`.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use madmail_libdns_http::names;
use madmail_libdns_http::testing::{FakeZones, Request, Response, page_of};
use quick_xml::escape::escape;

pub const USER: &str = "alice";
pub const KEY: &str = "nc0123456789abcdef0123456789abcd";
pub const CLIENT_IP: &str = "203.0.113.7";
pub const PATH: &str = "/xml.response";
const TYPES: [&str; 12] = [
    "A", "AAAA", "CNAME", "MX", "MXE", "TXT", "URL", "URL301", "FRAME", "CAA", "NS", "ALIAS",
];
const EMAIL_TYPES: [&str; 6] = ["NONE", "MX", "MXE", "FWD", "OX", "GMAIL"];
const UNKNOWN: &str = "5050900";

/// The stand-in's state; its clones share it.
#[derive(Clone)]
pub struct Standin {
    pub zones: FakeZones,
    email_types: Arc<Mutex<HashMap<String, String>>>,
}

pub fn envelope(command: &str, inner: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<ApiResponse Status="OK" xmlns="http://api.namecheap.com/xml.response">
  <Errors />
  <Warnings />
  <RequestedCommand>{command}</RequestedCommand>
  <CommandResponse Type="{command}">
    {inner}
  </CommandResponse>
  <Server>STANDIN01</Server>
  <GMTTimeDifference>--5:00</GMTTimeDifference>
  <ExecutionTime>0.012</ExecutionTime>
</ApiResponse>"#
    )
}

fn xml(body: String) -> Response {
    Response::text(200, "text/xml; charset=utf-8", &body)
}

/// An `ERROR` reply (HTTP 200, as Namecheap answers errors).
pub fn error(number: &str, message: &str) -> Response {
    xml(format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<ApiResponse Status="ERROR" xmlns="http://api.namecheap.com/xml.response">
  <Errors>
    <Error Number="{number}">{}</Error>
  </Errors>
  <Warnings />
  <RequestedCommand />
  <Server>STANDIN01</Server>
  <GMTTimeDifference>--5:00</GMTTimeDifference>
  <ExecutionTime>0</ExecutionTime>
</ApiResponse>"#,
        escape(message)
    ))
}

/// The request's parameters (query and form body), keys lowercase: Namecheap reads names in
/// any case.
struct Params(Vec<(String, String)>);

impl Params {
    fn of(request: &Request) -> Result<Params, Response> {
        let mut pairs: Vec<(String, String)> = request.query_pairs();
        if request.method == "POST" {
            let form = request
                .header("content-type")
                .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
            if !form && !request.body.is_empty() {
                return Err(error(UNKNOWN, "Unsupported request body"));
            }
            pairs.extend(request.form());
        }
        Ok(Params(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
        ))
    }

    fn get(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Standin {
    pub fn new(zones: FakeZones) -> Standin {
        Standin {
            zones,
            email_types: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The domain's `EmailType` (`MX` until a `setHosts` changes it).
    pub fn email_type(&self, domain: &str) -> String {
        self.email_types
            .lock()
            .unwrap()
            .get(domain)
            .cloned()
            .unwrap_or_else(|| "MX".into())
    }

    /// Answers one request.
    pub fn handle(&self, request: &Request) -> Response {
        if request.path == "/getip" && request.method == "GET" {
            return Response::text(200, "text/plain", &format!("{CLIENT_IP}\n"));
        }
        if request.path != PATH {
            return Response::text(404, "text/html", "<h1>404 Not Found</h1>");
        }
        if !matches!(request.method.as_str(), "GET" | "POST") {
            return Response::text(405, "text/html", "<h1>405 Method Not Allowed</h1>");
        }
        let params = match Params::of(request) {
            Ok(p) => p,
            Err(e) => return e,
        };
        if let Err(e) = authenticate(&params) {
            return e;
        }
        let command = params
            .get("Command")
            .unwrap_or_default()
            .to_ascii_lowercase();
        match command.as_str() {
            "namecheap.domains.getlist" => self.get_list(&params),
            "namecheap.domains.dns.gethosts" => match self.domain(&params) {
                Ok(domain) => self.get_hosts(&domain),
                Err(e) => e,
            },
            "namecheap.domains.dns.sethosts" => match self.domain(&params) {
                Ok(domain) => self.set_hosts(&domain, &params),
                Err(e) => e,
            },
            _ => error("1010104", "Parameter Command is invalid"),
        }
    }

    fn domain(&self, params: &Params) -> Result<String, Response> {
        let (Some(sld), Some(tld)) = (params.get("SLD"), params.get("TLD")) else {
            return Err(error("2019166", "Domain not found"));
        };
        if sld.is_empty() || sld.len() > 70 || sld.contains('.') {
            return Err(error("2019166", "Domain not found"));
        }
        self.zones
            .zone_by_name(&format!("{sld}.{tld}"))
            .map(|z| z.name)
            .ok_or_else(|| error("2019166", "Domain not found"))
    }

    fn get_list(&self, params: &Params) -> Response {
        let number = |name: &str, default: usize| match params.get(name) {
            None => Some(default),
            Some(v) => v.parse::<usize>().ok(),
        };
        let (Some(page), Some(size)) = (number("Page", 1), number("PageSize", 20)) else {
            return error(UNKNOWN, "Page and PageSize must be numbers");
        };
        if page == 0 || !(10..=100).contains(&size) {
            return error(UNKNOWN, "PageSize must be between 10 and 100");
        }
        let all = self.zones.zones();
        let entries: String = page_of(&all, page, size)
            .iter()
            .map(|z| {
                format!(
                    r#"<Domain ID="{}" Name="{}" User="{USER}" Created="01/01/2026" Expires="01/01/2027" IsExpired="false" IsLocked="false" AutoRenew="true" WhoisGuard="ENABLED" IsPremium="false" IsOurDNS="true" />"#,
                    z.id.trim_start_matches("zone"),
                    escape(&z.name)
                )
            })
            .collect();
        xml(envelope(
            "namecheap.domains.getList",
            &format!(
                "<DomainGetListResult>{entries}</DomainGetListResult><Paging><TotalItems>{}</TotalItems><CurrentPage>{page}</CurrentPage><PageSize>{size}</PageSize></Paging>",
                all.len()
            ),
        ))
    }

    fn get_hosts(&self, domain: &str) -> Response {
        let hosts: String = self
            .zones
            .records_in(domain)
            .iter()
            .map(|r| {
                format!(
                    r#"<host HostId="{}" Name="{}" Type="{}" Address="{}" MXPref="10" TTL="{}" AssociatedAppTitle="" FriendlyName="" IsActive="true" IsDDNSEnabled="false" />"#,
                    r.id.trim_start_matches("rec"),
                    escape(names::relative_or_at(&r.name, domain)),
                    r.rtype,
                    escape(&r.value),
                    r.ttl
                )
            })
            .collect();
        xml(envelope(
            "namecheap.domains.dns.getHosts",
            &format!(
                r#"<DomainDNSGetHostsResult Domain="{domain}" EmailType="{}" IsUsingOurDNS="true">{hosts}</DomainDNSGetHostsResult>"#,
                self.email_type(domain)
            ),
        ))
    }

    fn set_hosts(&self, domain: &str, params: &Params) -> Response {
        let mut wanted: Vec<(String, String, String, u64)> = Vec::new();
        for n in 1.. {
            let Some(name) = params.get(&format!("HostName{n}")) else {
                break;
            };
            let (Some(rtype), Some(address), Some(_mx_pref)) = (
                params.get(&format!("RecordType{n}")),
                params.get(&format!("Address{n}")),
                params.get(&format!("MXPref{n}")),
            ) else {
                return error(
                    UNKNOWN,
                    &format!("RecordType{n}, Address{n} and MXPref{n} are required"),
                );
            };
            if name.is_empty() || name.ends_with('.') || name.split('.').any(str::is_empty) {
                return error(UNKNOWN, &format!("HostName{n} is invalid"));
            }
            let rtype = rtype.to_ascii_uppercase();
            if !TYPES.contains(&rtype.as_str()) {
                return error(UNKNOWN, &format!("RecordType{n} is invalid"));
            }
            let ttl = match params.get(&format!("TTL{n}")) {
                None => 1800,
                Some(t) => match t.parse::<u64>() {
                    Ok(ttl) if (60..=60_000).contains(&ttl) => ttl,
                    _ => return error(UNKNOWN, &format!("TTL{n} must be between 60 and 60000")),
                },
            };
            let fqdn = if name == "@" {
                domain.to_owned()
            } else {
                format!("{}.{domain}", name.to_ascii_lowercase())
            };
            wanted.push((fqdn, rtype, address.to_owned(), ttl));
        }
        match params.get("EmailType").map(str::to_ascii_uppercase) {
            Some(t) if EMAIL_TYPES.contains(&t.as_str()) => {
                self.email_types.lock().unwrap().insert(domain.into(), t);
            }
            Some(_) => return error(UNKNOWN, "EmailType is invalid"),
            // Without it, the domain's mail setup is lost.
            None => {
                self.email_types
                    .lock()
                    .unwrap()
                    .insert(domain.into(), "NONE".into());
            }
        }
        // Every host not in the call is deleted; those in it stay (or are added).
        for record in self.zones.records_in(domain) {
            let key = (
                record.name.clone(),
                record.rtype.clone(),
                record.value.clone(),
                record.ttl,
            );
            match wanted.iter().position(|w| *w == key) {
                Some(i) => {
                    wanted.remove(i);
                }
                None => {
                    self.zones.remove(&record.id);
                }
            }
        }
        for (fqdn, rtype, value, ttl) in wanted {
            self.zones.add(domain, &fqdn, &rtype, &value, ttl);
        }
        xml(envelope(
            "namecheap.domains.dns.setHosts",
            &format!(r#"<DomainDNSSetHostsResult Domain="{domain}" IsSuccess="true" />"#),
        ))
    }
}

fn authenticate(params: &Params) -> Result<(), Response> {
    let Some(user) = params.get("ApiUser") else {
        return Err(error("1010101", "Parameter APIUser is missing"));
    };
    let Some(key) = params.get("ApiKey") else {
        return Err(error("1010102", "Parameter APIKey is missing"));
    };
    if params.get("Command").is_none() {
        return Err(error("1010104", "Parameter Command is missing"));
    }
    let Some(ip) = params.get("ClientIp") else {
        return Err(error("1010105", "Parameter ClientIP is missing"));
    };
    if ip.parse::<Ipv4Addr>().is_err() {
        return Err(error("1011105", "Parameter ClientIP is invalid"));
    }
    if user != USER || key != KEY {
        return Err(error(
            "1011102",
            "API Key is invalid or API access has not been enabled",
        ));
    }
    if params.get("UserName") != Some(USER) {
        return Err(error("1016103", "UserName is unauthorized"));
    }
    if ip != CLIENT_IP {
        return Err(error("1011150", "Parameter RequestIP is invalid"));
    }
    Ok(())
}
