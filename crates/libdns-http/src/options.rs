//! The directives every HTTP provider takes besides its credentials.

use std::time::Duration;

use madmail_config::{Error, Node};
use madmail_module::Block;
use madmail_module::decode::single;
use url::Url;

/// How long one API request may take when `timeout` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times a call is retried after a rate limit, a server error or a lost connection
/// when `retries` is not set.
pub const DEFAULT_RETRIES: u32 = 4;

/// `endpoint URL`, `timeout DURATION` and `retries N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// The API's base URL with its version path, ending in `/`; request paths are relative to it.
    pub endpoint: Url,
    pub timeout: Duration,
    pub retries: u32,
}

impl HttpOptions {
    /// Decodes the three directives from `block`; `default_endpoint` is the provider's public
    /// API (a constant of the provider crate, checked by its tests).
    pub fn decode(block: &mut Block<'_>, default_endpoint: &str) -> HttpOptions {
        Self::decode_with_aliases(block, default_endpoint, &[])
    }

    /// [`HttpOptions::decode`] where `endpoint` also accepts names standing for URLs (OVH's
    /// `ovh-eu`, `ovh-ca`, ...).
    pub fn decode_with_aliases(
        block: &mut Block<'_>,
        default_endpoint: &str,
        aliases: &[(&str, &str)],
    ) -> HttpOptions {
        let endpoint = block
            .custom("endpoint", |n| parse_endpoint_node(n, aliases))
            .optional();
        let timeout = block.duration("timeout").default(DEFAULT_TIMEOUT);
        let retries = block.int::<u32>("retries").default(DEFAULT_RETRIES);
        let timeout_node = block.node().children().iter().find(|n| n.name == "timeout");
        if timeout.is_zero()
            && let Some(node) = timeout_node
        {
            block.error(Error::at(node.arg_pos(0), "timeout must be longer than 0"));
        }
        let endpoint = endpoint.unwrap_or_else(|| default_url(default_endpoint));
        HttpOptions {
            endpoint,
            timeout,
            retries,
        }
    }

    /// The options of a block that set nothing, for tests and callers building a provider
    /// without configuration.
    pub fn with_endpoint(endpoint: Url) -> HttpOptions {
        HttpOptions {
            endpoint,
            timeout: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
        }
    }
}

#[allow(clippy::expect_used)] // a constant of the provider crate, parsed by its tests
fn default_url(default: &str) -> Url {
    parse_endpoint(default).expect("the provider's default endpoint is a valid URL")
}

fn parse_endpoint_node(node: &Node, aliases: &[(&str, &str)]) -> Result<Url, Error> {
    let value = single(node)?;
    if let Some((_, url)) = aliases
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(value))
    {
        return parse_endpoint(url)
            .map_err(|e| Error::at(node.arg_pos(0), format!("endpoint: {e}")));
    }
    parse_endpoint(value).map_err(|e| {
        let names = if aliases.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = aliases.iter().map(|(name, _)| *name).collect();
            format!(" or one of {}", names.join(", "))
        };
        Error::at(
            node.arg_pos(0),
            format!("endpoint: {e}; expected the API's base URL such as https://api.example.com/v1/{names}"),
        )
    })
}

/// Checks an API base URL and ends its path with `/`, so that relative request paths extend
/// it (`.../client/v4` + `zones` is `.../client/v4/zones`, not `.../client/zones`).
pub fn parse_endpoint(value: &str) -> Result<Url, String> {
    let mut url = Url::parse(value).map_err(|e| format!("{value:?} is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{value:?}: scheme must be https or http"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{value:?} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Credentials belong in their own directives, which are kept out of logs.
        return Err("must not contain credentials (user:password@)".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{value:?} must not have a query or fragment"));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked_and_normalised() {
        assert_eq!(
            parse_endpoint("http://127.0.0.1:8080/client/v4")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8080/client/v4/"
        );
        assert_eq!(
            parse_endpoint("https://api.example.com/v2/")
                .unwrap()
                .as_str(),
            "https://api.example.com/v2/"
        );
        assert_eq!(
            parse_endpoint("https://api.example.com").unwrap().as_str(),
            "https://api.example.com/"
        );
        for bad in [
            "api.example.com/v1",
            "ftp://api.example.com/",
            "https://user:pw@api.example.com/",
            "https://api.example.com/v1?x=1",
            "https://api.example.com/v1#x",
            "http://:80/v1",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }
}
