//! What the endpoint does to a received message before handing it on: line ending
//! normalisation, the checks on its header (size, `Received:` loop count), the trace header it
//! prepends, and the fields submission adds.
//!
//! The header scanning here is hand-written on purpose: it only needs field names at line
//! starts in the header section, which is a few lines, while a MIME parser would parse (and
//! allocate for) the whole message.

use std::net::IpAddr;
use std::time::SystemTime;

/// Line endings fixed: every bare LF becomes CRLF, so that what is stored and relayed has the
/// CRLF line endings RFC 5321 requires (and a `\n.\n` sent inside DATA stays message content
/// even for a downstream server that would take a bare LF as a line end). Returns `None` when
/// the message is already clean, which is the common case and costs one scan.
pub(crate) fn normalize_line_endings(message: &[u8]) -> Option<Vec<u8>> {
    let bare = memchr::memchr_iter(b'\n', message).any(|i| i == 0 || message[i - 1] != b'\r');
    if !bare {
        return None;
    }
    let mut out = Vec::with_capacity(message.len() + message.len() / 64);
    let mut prev = 0u8;
    for &b in message {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    Some(out)
}

/// The length of the longest line (without its CRLF).
pub(crate) fn longest_line(message: &[u8]) -> usize {
    let mut longest = 0;
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', message) {
        let line = &message[start..end];
        let len = line.len() - usize::from(line.ends_with(b"\r"));
        longest = longest.max(len);
        start = end + 1;
    }
    longest.max(message.len() - start)
}

/// The header section: up to and including the empty line that ends it, or the whole message
/// when it has no body.
pub(crate) fn header_section(message: &[u8]) -> &[u8] {
    if message.starts_with(b"\r\n") {
        return &message[..2];
    }
    match memchr::memmem::find(message, b"\r\n\r\n") {
        Some(i) => &message[..i + 4],
        None => message,
    }
}

/// The names of the header fields, in order (continuation lines skipped).
pub(crate) fn field_names(header: &[u8]) -> impl Iterator<Item = &[u8]> {
    header
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty() && !matches!(line[0], b' ' | b'\t' | b'\r'))
        .filter_map(|line| {
            let colon = memchr::memchr(b':', line)?;
            Some(line[..colon].trim_ascii())
        })
}

pub(crate) fn count_fields(header: &[u8], name: &str) -> usize {
    field_names(header)
        .filter(|n| n.eq_ignore_ascii_case(name.as_bytes()))
        .count()
}

pub(crate) fn has_field(header: &[u8], name: &str) -> bool {
    count_fields(header, name) > 0
}

/// A date as RFC 5322 wants it: `Mon, 23 Nov 2026 07:49:24 +0000`.
pub(crate) fn rfc5322_date(at: SystemTime) -> String {
    // httpdate writes the IMF-fixdate form, which is RFC 5322 syntax except for the obsolete
    // zone name "GMT"; the numeric zone is what RFC 5322 asks new messages to use.
    let http = httpdate::fmt_http_date(at);
    match http.strip_suffix(" GMT") {
        Some(base) => format!("{base} +0000"),
        None => http,
    }
}

/// What the `Received:` header records about one transfer.
pub(crate) struct Trace<'a> {
    pub helo: &'a str,
    pub ip: Option<IpAddr>,
    pub hostname: &'a str,
    /// `ESMTP`, `ESMTPS`, `ESMTPSA`, `LMTP`, ... (RFC 3848 names).
    pub with: String,
    pub id: &'a str,
    /// TLS version and cipher suite, when the session was encrypted.
    pub tls: Option<(&'a str, &'a str)>,
    /// Given when the message has exactly one recipient; more would reveal Bcc recipients.
    pub for_rcpt: Option<&'a str>,
    pub date: SystemTime,
}

impl Trace<'_> {
    /// The `Received:` field (RFC 5321 §4.4), folded, ending in CRLF.
    pub(crate) fn header(&self) -> String {
        let mut h = format!("Received: from {}", sanitize(self.helo));
        match self.ip {
            Some(IpAddr::V4(ip)) => h.push_str(&format!(" ([{ip}])")),
            Some(IpAddr::V6(ip)) => h.push_str(&format!(" ([IPv6:{ip}])")),
            None => h.push_str(" (local socket)"),
        }
        if let Some((version, cipher)) = self.tls {
            h.push_str(&format!("\r\n\t(using {version} with cipher {cipher})"));
        }
        h.push_str(&format!(
            "\r\n\tby {} (madmail) with {} id {}",
            self.hostname, self.with, self.id
        ));
        if let Some(rcpt) = self.for_rcpt {
            h.push_str(&format!("\r\n\tfor <{}>", sanitize(rcpt)));
        }
        h.push_str(&format!("; {}\r\n", rfc5322_date(self.date)));
        h
    }
}

/// Keeps a client-supplied name from breaking the header's syntax (comments, folding).
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || matches!(c, '(' | ')' | '\\' | '<' | '>' | ';' | ' ') {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn bare_lf_becomes_crlf() {
        assert_eq!(normalize_line_endings(b"a\r\nb\r\n"), None);
        assert_eq!(
            normalize_line_endings(b"a\nb\r\n.\nc"),
            Some(b"a\r\nb\r\n.\r\nc".to_vec())
        );
        assert_eq!(normalize_line_endings(b"\n"), Some(b"\r\n".to_vec()));
    }

    #[test]
    fn line_lengths() {
        assert_eq!(longest_line(b"abc\r\nde\r\n"), 3);
        assert_eq!(longest_line(b"abc\r\ndefgh"), 5);
        assert_eq!(longest_line(b""), 0);
    }

    #[test]
    fn header_fields() {
        let msg = b"Received: a\r\n b\r\nreceived : c\r\nSubject: x\r\n\r\nReceived: body\r\n";
        let header = header_section(msg);
        assert!(header.ends_with(b"\r\n\r\n"));
        assert_eq!(count_fields(header, "Received"), 2);
        assert!(has_field(header, "subject"));
        assert!(!has_field(header, "From"));
        assert_eq!(header_section(b"\r\nbody"), b"\r\n");
    }

    #[test]
    fn received_header() {
        let trace = Trace {
            helo: "client (evil)",
            ip: Some("2001:db8::1".parse().unwrap()),
            hostname: "mx.example.org",
            with: "ESMTPS".into(),
            id: "abc",
            tls: Some(("TLSv1.3", "TLS13_AES_128_GCM_SHA256")),
            for_rcpt: Some("u@example.org"),
            date: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        };
        assert_eq!(
            trace.header(),
            "Received: from client__evil_ ([IPv6:2001:db8::1])\r\n\
             \t(using TLSv1.3 with cipher TLS13_AES_128_GCM_SHA256)\r\n\
             \tby mx.example.org (madmail) with ESMTPS id abc\r\n\
             \tfor <u@example.org>; Tue, 14 Nov 2023 22:13:20 +0000\r\n"
        );
    }
}
