//! Addresses as routing rules see them.

/// An address folded for comparison: Unicode lowercase, surrounding whitespace removed.
/// (maddy also decodes Punycode domains; madmail compares them as written.)
pub fn fold(addr: &str) -> String {
    addr.trim().to_lowercase()
}

/// The domain of an address (after the last `@`), if it has one.
pub fn domain(addr: &str) -> Option<&str> {
    addr.rsplit_once('@').map(|(_, d)| d)
}

/// The local part of an address (before the last `@`), or the whole address.
pub fn local_part(addr: &str) -> &str {
    addr.rsplit_once('@').map_or(addr, |(l, _)| l)
}

/// A `source`/`destination` rule: a whole address (contains `@`), the bare `postmaster`
/// address, or a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    Address(String),
    Domain(String),
}

impl Rule {
    pub fn parse(rule: &str) -> Rule {
        let folded = fold(rule);
        if folded.contains('@') || folded == "postmaster" {
            Rule::Address(folded)
        } else {
            Rule::Domain(folded)
        }
    }

    /// Whether the (folded) address matches.
    pub fn matches(&self, folded_addr: &str) -> bool {
        match self {
            Rule::Address(a) => a == folded_addr,
            Rule::Domain(d) => domain(folded_addr) == Some(d.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(Rule::parse("Example.ORG").matches(&fold("User@example.org")));
        assert!(!Rule::parse("example.org").matches(&fold("user@sub.example.org")));
        assert!(Rule::parse("a@Example.org").matches(&fold("A@example.ORG")));
        assert!(Rule::parse("postmaster").matches(&fold("Postmaster")));
        assert!(!Rule::parse("postmaster").matches(&fold("postmaster@example.org")));
        assert_eq!(local_part("a@b@c"), "a@b");
        assert_eq!(domain("nodomain"), None);
    }
}
