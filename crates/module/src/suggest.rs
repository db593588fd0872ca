//! "Did you mean" hints.

/// The candidate closest to `input`, if any is close enough to be a plausible typo.
pub fn closest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(input, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_typos_only() {
        assert_eq!(super::closest("hostnme", ["hostname", "debug"]).as_deref(), Some("hostname"));
        assert_eq!(super::closest("zzz", ["hostname", "debug"]), None);
    }
}
