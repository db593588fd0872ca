//! The table key for a username, as maddy's `auth.pass_table` computes it: the PRECIS
//! `UsernameCaseMapped` profile of RFC 8265 (Go's `precis.UsernameCaseMapped.CompareKey`).
//! It maps full-width characters to their normal forms, lowercases the whole name (local part
//! and domain), normalises to Unicode NFC, and rejects spaces, control characters and other
//! code points an identifier may not contain.

use precis_core::profile::PrecisFastInvocation;
use precis_profiles::UsernameCaseMapped;

/// The key `username` is stored under, or why it is not a valid username.
pub fn normalize(username: &str) -> Result<String, String> {
    UsernameCaseMapped::enforce(username)
        .map(|key| key.into_owned())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn case_maps_like_maddy() {
        assert_eq!(normalize("Alice@Example.ORG").unwrap(), "alice@example.org");
        assert_eq!(
            normalize("user+tag@example.org").unwrap(),
            "user+tag@example.org"
        );
        // Full-width letters are mapped to ASCII.
        assert_eq!(normalize("\u{ff21}lice").unwrap(), "alice");
        // NFC: a + combining ring is å.
        assert_eq!(normalize("a\u{30a}").unwrap(), "\u{e5}");
        // Per-character lowercasing: no final sigma special case (Go's HandleFinalSigma(false)).
        assert_eq!(normalize("ΟΔΟΣ").unwrap(), "οδοσ");
        assert!(normalize("").is_err());
        assert!(normalize("two words").is_err());
        assert!(normalize("tab\there").is_err());
    }
}
