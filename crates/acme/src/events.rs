//! What happens to a certificate that the operator may want to hear about, in the encodings
//! every channel shares (those of `madmail cert info --json`: RFC 3339 UTC times, uppercase
//! hex serials, names as an array; comma-separated in a command's environment), and the rule
//! deciding when an `expiring` notice is due.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::time_fmt;

/// The kinds of events, as named in webhooks, `MADMAIL_EVENT` and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The first certificate for these names.
    Obtained,
    /// A newer certificate replaced the one in use.
    Renewed,
    /// An attempt failed; the certificate in use (if any) stays.
    RenewalFailed,
    /// A `notify_before` threshold was crossed while the renewal is overdue.
    Expiring,
    /// The CA asked (ARI) for the certificate to be replaced before its normal renewal time.
    RevokedOrReplaced,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Obtained => "obtained",
            EventKind::Renewed => "renewed",
            EventKind::RenewalFailed => "renewal_failed",
            EventKind::Expiring => "expiring",
            EventKind::RevokedOrReplaced => "revoked_or_replaced",
        }
    }

    /// Whether the event reports a problem (logged as a warning, mailed with a warning
    /// subject).
    pub fn is_problem(self) -> bool {
        matches!(
            self,
            EventKind::RenewalFailed | EventKind::Expiring | EventKind::RevokedOrReplaced
        )
    }
}

/// One event of one certificate.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    /// The loader instance.
    pub loader: String,
    pub names: Vec<String>,
    /// Of the certificate in use after the event (none before the first one).
    pub serial: Option<String>,
    pub not_before: Option<SystemTime>,
    pub not_after: Option<SystemTime>,
    /// For `renewal_failed`.
    pub error: Option<String>,
    /// For `renewal_failed` (and `expiring`, when a retry is scheduled).
    pub next_retry: Option<SystemTime>,
    /// For `expiring`: the `notify_before` threshold crossed.
    pub threshold: Option<Duration>,
    /// When it happened.
    pub time: SystemTime,
    /// The certificate and key files in the store (or the exported ones with `export_path`).
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl Event {
    /// Whole days from `time` until `not_after` (negative once expired).
    pub fn days_left(&self) -> Option<i64> {
        let not_after = self.not_after?;
        Some(match not_after.duration_since(self.time) {
            Ok(left) => (left.as_secs() / 86_400) as i64,
            Err(past) => -(past.duration().as_secs().div_ceil(86_400) as i64),
        })
    }

    /// The webhook's body.
    pub fn to_json(&self) -> Value {
        let time = |t: Option<SystemTime>| t.map(time_fmt::format);
        json!({
            "event": self.kind.as_str(),
            "loader": self.loader,
            "names": self.names,
            "serial": self.serial,
            "not_before": time(self.not_before),
            "not_after": time(self.not_after),
            "days_left": self.days_left(),
            "error": self.error,
            "next_retry": time(self.next_retry),
            "threshold": self.threshold.map(humantime_short),
            "time": time_fmt::format(self.time),
            "cert_path": self.cert_path.display().to_string(),
            "key_path": self.key_path.display().to_string(),
        })
    }

    /// The environment of `notify_command` (unset values are empty strings).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let time = |t: Option<SystemTime>| t.map(time_fmt::format).unwrap_or_default();
        vec![
            ("MADMAIL_EVENT", self.kind.as_str().to_owned()),
            ("MADMAIL_LOADER", self.loader.clone()),
            ("MADMAIL_CERT_NAMES", self.names.join(",")),
            (
                "MADMAIL_CERT_SERIAL",
                self.serial.clone().unwrap_or_default(),
            ),
            ("MADMAIL_CERT_PATH", self.cert_path.display().to_string()),
            ("MADMAIL_KEY_PATH", self.key_path.display().to_string()),
            ("MADMAIL_NOT_BEFORE", time(self.not_before)),
            ("MADMAIL_NOT_AFTER", time(self.not_after)),
            ("MADMAIL_ERROR", self.error.clone().unwrap_or_default()),
            ("MADMAIL_NEXT_RETRY", time(self.next_retry)),
            (
                "MADMAIL_THRESHOLD",
                self.threshold.map(humantime_short).unwrap_or_default(),
            ),
        ]
    }

    /// A one-line summary: the mail subject.
    pub fn summary(&self) -> String {
        let names = self.names.join(", ");
        match self.kind {
            EventKind::Obtained => format!("certificate obtained for {names}"),
            EventKind::Renewed => format!("certificate renewed for {names}"),
            EventKind::RenewalFailed => format!("certificate renewal failed for {names}"),
            EventKind::Expiring => match self.days_left() {
                Some(days) if days < 0 => format!("certificate for {names} has expired"),
                Some(days) => format!(
                    "certificate for {names} expires in {days} day{} and is not renewed",
                    if days == 1 { "" } else { "s" }
                ),
                None => format!("certificate for {names} is expiring"),
            },
            EventKind::RevokedOrReplaced => {
                format!("the CA asks to replace the certificate for {names} early")
            }
        }
    }

    /// The plain-text body of a notice mail.
    pub fn text(&self) -> String {
        let time =
            |t: Option<SystemTime>| t.map(time_fmt::format).unwrap_or_else(|| "-".to_owned());
        let mut body = format!("{}.\n\n", self.summary());
        body.push_str(&format!("Event:       {}\n", self.kind.as_str()));
        body.push_str(&format!("Loader:      {}\n", self.loader));
        body.push_str(&format!("Names:       {}\n", self.names.join(", ")));
        body.push_str(&format!(
            "Serial:      {}\n",
            self.serial.as_deref().unwrap_or("-")
        ));
        body.push_str(&format!("Not before:  {}\n", time(self.not_before)));
        body.push_str(&format!("Not after:   {}\n", time(self.not_after)));
        if let Some(error) = &self.error {
            body.push_str(&format!("Error:       {error}\n"));
        }
        if self.next_retry.is_some() {
            body.push_str(&format!("Next retry:  {}\n", time(self.next_retry)));
        }
        body.push_str(&format!("Time:        {}\n", time(Some(self.time))));
        if self.kind.is_problem() {
            body.push_str(
                "\n`madmail cert info` shows the state of every certificate; `madmail cert test` checks\nwhat an order needs; `madmail cert renew --force NAME` tries again now.\n",
            );
        }
        body
    }
}

/// `30d`, `12h`, `90s`: a threshold as the configuration would write it.
fn humantime_short(d: Duration) -> String {
    let secs = d.as_secs();
    if secs.is_multiple_of(86_400) && secs > 0 {
        format!("{}d", secs / 86_400)
    } else if secs.is_multiple_of(3600) && secs > 0 {
        format!("{}h", secs / 3600)
    } else {
        format!("{secs}s")
    }
}

/// Which `expiring` notice is due now, if any, and which thresholds to record as done.
///
/// A notice is due when the renewal is overdue (`now` is past `renewal_time`; the certificate in
/// use is the newest, or it would have been replaced) and the time left until `not_after` is at
/// most a threshold not yet `sent` for this serial. When several are crossed at once (a server
/// that was down, a first look at an old certificate), one notice is sent, for the smallest,
/// and all crossed ones are recorded: one mail saying "3 days left", not four.
pub fn expiring_due(
    not_after: SystemTime,
    renewal_time: SystemTime,
    thresholds: &[Duration],
    sent: &[u64],
    now: SystemTime,
) -> Option<(Duration, Vec<u64>)> {
    if now < renewal_time {
        return None;
    }
    let left = not_after.duration_since(now).unwrap_or(Duration::ZERO);
    let crossed: Vec<Duration> = thresholds.iter().copied().filter(|t| left <= *t).collect();
    let smallest = crossed.iter().copied().min()?;
    if sent.contains(&smallest.as_secs()) {
        return None;
    }
    let mut record: Vec<u64> = sent.to_vec();
    for t in crossed {
        if !record.contains(&t.as_secs()) {
            record.push(t.as_secs());
        }
    }
    record.sort_unstable();
    Some((smallest, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn defaults() -> Vec<Duration> {
        [30, 14, 7, 3, 1].iter().map(|d| DAY * *d).collect()
    }

    #[test]
    fn thresholds_fire_once_each_and_only_when_overdue() {
        let start = SystemTime::UNIX_EPOCH + DAY * 20_000;
        let not_after = start + DAY * 40;
        let renewal = start + DAY * 10; // 30 days left
        let thresholds = defaults();
        let mut sent: Vec<u64> = Vec::new();
        let mut fired = Vec::new();
        // Walk the clock hour by hour to the end and a day beyond.
        let mut now = start;
        while now < not_after + DAY {
            if let Some((threshold, record)) =
                expiring_due(not_after, renewal, &thresholds, &sent, now)
            {
                fired.push((threshold.as_secs() / 86_400, now));
                sent = record;
            }
            now += Duration::from_secs(3600);
        }
        let days: Vec<u64> = fired.iter().map(|(d, _)| *d).collect();
        assert_eq!(days, [30, 14, 7, 3, 1]);
        // Each fired when it was crossed, not before.
        for (days, at) in &fired {
            let left = not_after.duration_since(*at).unwrap();
            assert!(left <= DAY * *days as u32, "{days}: {left:?}");
            assert!(left > DAY * *days as u32 - Duration::from_secs(3600));
        }
    }

    #[test]
    fn nothing_while_the_renewal_is_not_overdue() {
        let now = SystemTime::UNIX_EPOCH + DAY * 20_000;
        // 2 days left but renewal time in the future (a short-lived certificate).
        assert_eq!(
            expiring_due(now + DAY * 2, now + DAY, &defaults(), &[], now),
            None
        );
    }

    #[test]
    fn several_crossed_at_once_give_one_notice() {
        let now = SystemTime::UNIX_EPOCH + DAY * 20_000;
        let (threshold, record) =
            expiring_due(now + DAY * 2, now - DAY * 20, &defaults(), &[], now).unwrap();
        assert_eq!(threshold, DAY * 3);
        assert_eq!(record, [3, 7, 14, 30].map(|d| d * 86_400));
        assert_eq!(
            expiring_due(now + DAY * 2, now - DAY * 20, &defaults(), &record, now),
            None
        );
        // Expired: the last threshold still fires once.
        let (threshold, _) =
            expiring_due(now - DAY, now - DAY * 20, &defaults(), &record, now).unwrap();
        assert_eq!(threshold, DAY);
    }

    #[test]
    fn encodings_match_cert_info() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let event = Event {
            kind: EventKind::RenewalFailed,
            loader: "local_tls".into(),
            names: vec!["example.org".into(), "*.example.org".into()],
            serial: Some("0A1B".into()),
            not_before: Some(time - DAY * 60),
            not_after: Some(time + DAY * 2 + Duration::from_secs(5)),
            error: Some("boom".into()),
            next_retry: Some(time + Duration::from_secs(60)),
            threshold: None,
            time,
            cert_path: "/s/c.crt".into(),
            key_path: "/s/c.key".into(),
        };
        let json = event.to_json();
        assert_eq!(json["event"], "renewal_failed");
        assert_eq!(json["names"], json!(["example.org", "*.example.org"]));
        assert_eq!(json["not_after"], "2027-01-17T08:00:05Z");
        assert_eq!(json["days_left"], 2);
        assert_eq!(json["serial"], "0A1B");
        let env = event.env();
        let get = |k: &str| env.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        assert_eq!(get("MADMAIL_CERT_NAMES"), "example.org,*.example.org");
        assert_eq!(get("MADMAIL_NOT_AFTER"), "2027-01-17T08:00:05Z");
        assert_eq!(get("MADMAIL_EVENT"), "renewal_failed");
        assert!(event.text().contains("Error:       boom\n"));
    }
}
