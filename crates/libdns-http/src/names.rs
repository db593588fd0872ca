//! Names as provider APIs want them. Every name handed to a provider by the ACME loader is a
//! fully qualified name with a trailing dot; APIs variously want it relative to its zone, with
//! or without the dot, with `@` for the apex.

/// `name` without its trailing dot, lowercase.
pub fn bare(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `fqdn` is `zone` or inside it (both compared without trailing dots, ignoring case).
pub fn in_zone(fqdn: &str, zone: &str) -> bool {
    let (fqdn, zone) = (bare(fqdn), bare(zone));
    fqdn == zone || fqdn.ends_with(&format!(".{zone}"))
}

/// Of `zones` (in any form, with or without trailing dots), the longest one holding `fqdn`,
/// as it was given: a delegated `sub.example.org` wins over `example.org`.
pub fn longest_zone<'a, I>(fqdn: &str, zones: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    zones
        .into_iter()
        .filter(|zone| in_zone(fqdn, zone))
        .max_by_key(|zone| bare(zone).len())
}

/// `fqdn` relative to `zone` (`_acme-challenge.mail` in `example.org`), or `""` for the apex.
/// A name outside the zone is returned whole, without its dot.
pub fn relative(fqdn: &str, zone: &str) -> String {
    let (name, zone) = (bare(fqdn), bare(zone));
    if name == zone {
        return String::new();
    }
    match name.strip_suffix(&format!(".{zone}")) {
        Some(inner) => inner.to_owned(),
        None => name,
    }
}

/// [`relative`], with `@` for the apex (the convention of zone files and many APIs).
pub fn relative_or_at(fqdn: &str, zone: &str) -> String {
    let name = relative(fqdn, zone);
    if name.is_empty() { "@".into() } else { name }
}

/// A TXT value as one quoted character-string (`"value"`), the form of APIs that take record
/// data in zone-file syntax.
pub fn quote_txt(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// The value of TXT data in zone-file syntax: quoted strings are unquoted and concatenated
/// (long values come split in 255-byte strings), an unquoted value is returned as it is.
pub fn unquote_txt(data: &str) -> String {
    let data = data.trim();
    if !data.starts_with('"') {
        return data.to_owned();
    }
    let mut value = String::with_capacity(data.len());
    let mut in_string = false;
    let mut chars = data.chars();
    while let Some(c) = chars.next() {
        match (c, in_string) {
            ('"', _) => in_string = !in_string,
            ('\\', true) => {
                if let Some(next) = chars.next() {
                    value.push(next);
                }
            }
            (c, true) => value.push(c),
            (_, false) => {}
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_and_relative_names() {
        let zones = ["example.org", "sub.example.org.", "other.test"];
        assert_eq!(
            longest_zone("_acme-challenge.a.sub.example.org.", zones),
            Some("sub.example.org.")
        );
        assert_eq!(
            longest_zone("_acme-challenge.example.org.", zones),
            Some("example.org")
        );
        assert_eq!(longest_zone("_acme-challenge.notexample.org.", zones), None);
        assert_eq!(longest_zone("EXAMPLE.org.", zones), Some("example.org"));
        assert_eq!(
            relative("_acme-challenge.Mail.example.org.", "example.org."),
            "_acme-challenge.mail"
        );
        assert_eq!(relative("example.org.", "example.org"), "");
        assert_eq!(relative_or_at("example.org.", "example.org"), "@");
    }

    #[test]
    fn txt_quoting_round_trips() {
        assert_eq!(quote_txt("abc"), "\"abc\"");
        assert_eq!(quote_txt("a\"b\\c"), "\"a\\\"b\\\\c\"");
        for value in ["abc", "a\"b\\c", "", "x y"] {
            assert_eq!(unquote_txt(&quote_txt(value)), value);
        }
        assert_eq!(unquote_txt("\"abc\" \"def\""), "abcdef");
        assert_eq!(unquote_txt("plain"), "plain");
    }
}
