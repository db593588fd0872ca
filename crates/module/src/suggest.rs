//! "Did you mean" hints.

/// How alike two names are, 0 to 1. Dotted names in the same namespace are compared by their
/// last part, so `target.frobnicate` is not "close" to `target.remote` just by sharing `target.`.
fn similarity(a: &str, b: &str) -> f64 {
    match (a.rsplit_once('.'), b.rsplit_once('.')) {
        (Some((a_ns, a_last)), Some((b_ns, b_last))) if a_ns == b_ns => {
            strsim::jaro_winkler(a_last, b_last)
        }
        _ => strsim::jaro_winkler(a, b),
    }
}

/// The candidate closest to `input`, if any is close enough to be a plausible typo.
pub fn closest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (similarity(input, c), c))
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_owned())
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn finds_typos_only() {
        assert_eq!(
            closest("hostnme", ["hostname", "debug"]).as_deref(),
            Some("hostname")
        );
        assert_eq!(closest("zzz", ["hostname", "debug"]), None);
        assert_eq!(closest("target.frobnicate", ["target.remote"]), None);
        assert_eq!(
            closest("target.remtoe", ["target.remote"]).as_deref(),
            Some("target.remote")
        );
        assert_eq!(
            closest("target.tset", ["target.test"]).as_deref(),
            Some("target.test")
        );
    }
}
