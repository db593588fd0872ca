//! What `madmail cert info` shows for a certificate, in a running server or from the store.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::schedule::{RenewalReason, renewal_time};
use crate::storage::{CertFiles, Meta};
use crate::time_fmt;

/// Where a certificate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// No certificate yet (a self-signed placeholder is served); no attempt failed yet.
    Pending,
    /// A certificate is served and the last attempt (if any) succeeded.
    Valid,
    /// An order is running now.
    Renewing,
    /// The last attempt failed; the current certificate (or the placeholder) is still served.
    Failing,
    /// The stored certificate has expired.
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Valid => "valid",
            Status::Renewing => "renewing",
            Status::Failing => "failing",
            Status::Expired => "expired",
        }
    }
}

/// One managed certificate as `madmail cert info --json` prints it. Times are RFC 3339 in
/// UTC; the serial is uppercase hex without colons (as `openssl x509 -serial`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertStatus {
    /// The loader instance (`--loader`).
    pub loader: String,
    pub names: Vec<String>,
    pub status: Status,
    pub issuer: Option<String>,
    pub serial: Option<String>,
    pub not_before: Option<String>,
    pub not_after: Option<String>,
    /// Whole days until `not_after` (negative once expired).
    pub days_left: Option<i64>,
    pub next_renewal: Option<String>,
    /// `ari`, `renew_before` or `ratio`; none while no certificate exists.
    pub next_renewal_reason: Option<RenewalReason>,
    pub last_error: Option<String>,
    /// The CA certificates are ordered from.
    pub ca: String,
    pub files: CertFiles,
}

/// The facts about the certificate in use.
#[derive(Debug, Clone)]
pub struct CertFacts {
    pub serial: String,
    pub issuer: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// When the next attempt is due and why: after a failure, the retry time; without a
/// certificate, now; otherwise the renewal time of the certificate.
pub fn next_attempt(
    cert: Option<&CertFacts>,
    meta: &Meta,
    renew_before: Option<Duration>,
    retry_at: Option<SystemTime>,
    now: SystemTime,
) -> (SystemTime, Option<RenewalReason>) {
    let planned = cert.map(|c| {
        let (at, reason) = renewal_time(
            c.not_before,
            c.not_after,
            renew_before,
            meta.ari.as_ref().map(|a| a.chosen),
        );
        (at, Some(reason))
    });
    match (planned, retry_at) {
        // A failed renewal is retried, but not before the certificate is due anyway.
        (Some((at, reason)), Some(retry)) => (at.max(retry), reason),
        (Some(p), None) => p,
        (None, Some(retry)) => (retry, None),
        (None, None) => (now, None),
    }
}

#[allow(clippy::too_many_arguments)]
pub fn describe(
    loader: &str,
    names: &[String],
    ca: &str,
    cert: Option<&CertFacts>,
    meta: &Meta,
    renewing: bool,
    next: (SystemTime, Option<RenewalReason>),
    files: CertFiles,
    now: SystemTime,
) -> CertStatus {
    let expired = cert.is_some_and(|c| c.not_after <= now);
    let status = if renewing {
        Status::Renewing
    } else if expired {
        Status::Expired
    } else if meta.last_error.is_some() {
        Status::Failing
    } else if cert.is_none() {
        Status::Pending
    } else {
        Status::Valid
    };
    let days_left = cert.map(|c| match c.not_after.duration_since(now) {
        Ok(left) => (left.as_secs() / 86400) as i64,
        Err(past) => -(past.duration().as_secs().div_ceil(86400) as i64),
    });
    CertStatus {
        loader: loader.to_owned(),
        names: names.to_vec(),
        status,
        issuer: cert.map(|c| c.issuer.clone()),
        serial: cert.map(|c| c.serial.clone()),
        not_before: cert.map(|c| time_fmt::format(c.not_before)),
        not_after: cert.map(|c| time_fmt::format(c.not_after)),
        days_left,
        next_renewal: Some(time_fmt::format(next.0)),
        next_renewal_reason: next.1,
        last_error: meta.last_error.as_ref().map(|e| {
            format!(
                "{} ({} failure{} since {})",
                e.message,
                e.failures,
                if e.failures == 1 { "" } else { "s" },
                time_fmt::format(e.first_failure)
            )
        }),
        ca: ca.to_owned(),
        files,
    }
}

/// `cert info` for people: one block per certificate.
pub fn render_text(statuses: &[CertStatus]) -> String {
    if statuses.is_empty() {
        return "no ACME-managed certificates\n".to_owned();
    }
    let mut out = String::new();
    for s in statuses {
        out.push_str(&format!("{} ({})\n", s.names.join(", "), s.loader));
        let field = |out: &mut String, k: &str, v: &str| out.push_str(&format!("  {k:<14}{v}\n"));
        field(&mut out, "status", s.status.as_str());
        if let Some(v) = &s.issuer {
            field(&mut out, "issuer", v);
        }
        if let Some(v) = &s.serial {
            field(&mut out, "serial", v);
        }
        if let (Some(a), Some(b)) = (&s.not_before, &s.not_after) {
            field(&mut out, "valid", &format!("{a} to {b}"));
        }
        if let Some(d) = s.days_left {
            field(&mut out, "days left", &d.to_string());
        }
        if let Some(n) = &s.next_renewal {
            let why = s
                .next_renewal_reason
                .map(|r| format!(" ({})", r.as_str()))
                .unwrap_or_default();
            field(&mut out, "next renewal", &format!("{n}{why}"));
        }
        if let Some(e) = &s.last_error {
            field(&mut out, "last error", e);
        }
        field(&mut out, "ca", &s.ca);
        field(&mut out, "certificate", &s.files.cert.display().to_string());
        field(&mut out, "key", &s.files.key.display().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LastError;

    const DAY: Duration = Duration::from_secs(86400);

    fn facts(nb: u32, na: u32) -> CertFacts {
        CertFacts {
            serial: "0A1B".into(),
            issuer: "CN=Test CA".into(),
            not_before: SystemTime::UNIX_EPOCH + DAY * nb,
            not_after: SystemTime::UNIX_EPOCH + DAY * na,
        }
    }

    fn files() -> CertFiles {
        CertFiles {
            cert: "/s/a.crt".into(),
            key: "/s/a.key".into(),
            meta: "/s/a.json".into(),
        }
    }

    #[test]
    fn statuses_and_json_shape() {
        let now = SystemTime::UNIX_EPOCH + DAY * 30;
        let names = vec!["mx.example.org".to_owned()];
        let cert = facts(0, 90);
        let meta = Meta::default();
        let next = next_attempt(Some(&cert), &meta, None, None, now);
        assert_eq!(next.1, Some(RenewalReason::Ratio));
        let s = describe(
            "tls",
            &names,
            "https://ca",
            Some(&cert),
            &meta,
            false,
            next,
            files(),
            now,
        );
        assert_eq!(s.status, Status::Valid);
        assert_eq!(s.days_left, Some(60));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["names"][0], "mx.example.org");
        assert_eq!(json["status"], "valid");
        assert_eq!(json["serial"], "0A1B");
        assert_eq!(json["not_after"], "1970-04-01T00:00:00Z");
        assert_eq!(json["next_renewal"], "1970-03-02T00:00:00Z");
        assert_eq!(json["next_renewal_reason"], "ratio");

        let pending = describe(
            "tls",
            &names,
            "https://ca",
            None,
            &meta,
            false,
            next_attempt(None, &meta, None, None, now),
            files(),
            now,
        );
        assert_eq!(pending.status, Status::Pending);
        assert_eq!(pending.next_renewal_reason, None);

        let failing_meta = Meta {
            last_error: Some(LastError {
                time: now,
                message: "connection refused".into(),
                failures: 2,
                first_failure: now - DAY,
            }),
            ..Meta::default()
        };
        let s = describe(
            "tls",
            &names,
            "https://ca",
            Some(&cert),
            &failing_meta,
            false,
            next,
            files(),
            now,
        );
        assert_eq!(s.status, Status::Failing);
        assert!(
            s.last_error
                .unwrap()
                .starts_with("connection refused (2 failures")
        );
        let s = describe(
            "tls",
            &names,
            "https://ca",
            Some(&facts(0, 10)),
            &meta,
            false,
            next,
            files(),
            now,
        );
        assert_eq!((s.status, s.days_left), (Status::Expired, Some(-20)));
        let s = describe(
            "tls",
            &names,
            "https://ca",
            Some(&cert),
            &meta,
            true,
            next,
            files(),
            now,
        );
        assert_eq!(s.status, Status::Renewing);
    }

    #[test]
    fn retries_wait_for_the_later_of_backoff_and_due_time() {
        let now = SystemTime::UNIX_EPOCH + DAY * 30;
        let cert = facts(0, 90);
        let meta = Meta::default();
        // Due at day 60: an early retry time does not bring it forward.
        let (at, _) = next_attempt(Some(&cert), &meta, None, Some(now + DAY), now);
        assert_eq!(at, SystemTime::UNIX_EPOCH + DAY * 60);
        // Overdue: the retry time wins.
        let (at, _) = next_attempt(Some(&facts(0, 30)), &meta, None, Some(now + DAY), now);
        assert_eq!(at, now + DAY);
        assert_eq!(next_attempt(None, &meta, None, None, now).0, now);
    }
}
