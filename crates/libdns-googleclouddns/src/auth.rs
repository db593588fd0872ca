//! Google credentials: a service account key (a JWT signed with its RSA key, exchanged for an
//! OAuth2 access token, RFC 7523), a user's application-default credentials (a refresh
//! token), or the metadata server of the VM madmail runs on.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use madmail_libdns_http::{Secret, Url};
use serde_json::{Value, json};

/// Where Google issues access tokens when a key file names no `token_uri`.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// The OAuth2 scope of read-write access to Cloud DNS.
pub const SCOPE: &str = "https://www.googleapis.com/auth/ndev.clouddns.readwrite";

/// The metadata server of Google Compute Engine (and GKE, Cloud Run, ...); `GCE_METADATA_HOST`
/// replaces the host, as in Google's own client libraries.
pub const METADATA_HOST: &str = "metadata.google.internal";

const METADATA_TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

/// The JWT bearer grant of RFC 7523.
pub(crate) const JWT_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// How long a JWT assertion is valid: Google's maximum, one hour.
const ASSERTION_LIFETIME: u64 = 3600;

/// Where access tokens come from.
#[derive(Clone)]
pub enum Credentials {
    /// A service account key file (`"type": "service_account"`).
    ServiceAccount(ServiceAccount),
    /// A user's credentials from `gcloud auth application-default login`
    /// (`"type": "authorized_user"`).
    AuthorizedUser(AuthorizedUser),
    /// The metadata server, which hands out tokens of the VM's service account.
    Metadata { token_url: Url },
}

/// A service account key: who signs, with which key, for which token endpoint.
#[derive(Clone)]
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key_id: Option<String>,
    pub token_uri: Url,
    pub project_id: Option<String>,
    key: Arc<RsaKeyPair>,
}

/// A refresh token of a user.
#[derive(Clone)]
pub struct AuthorizedUser {
    pub client_id: String,
    pub client_secret: Secret,
    pub refresh_token: Secret,
    pub token_uri: Url,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::ServiceAccount(account) => f
                .debug_struct("ServiceAccount")
                .field("client_email", &account.client_email)
                .field("private_key_id", &account.private_key_id)
                .field("token_uri", &account.token_uri.as_str())
                .field("private_key", &"<redacted>")
                .finish(),
            Credentials::AuthorizedUser(user) => f
                .debug_struct("AuthorizedUser")
                .field("client_id", &user.client_id)
                .field("client_secret", &user.client_secret)
                .field("refresh_token", &user.refresh_token)
                .field("token_uri", &user.token_uri.as_str())
                .finish(),
            Credentials::Metadata { token_url } => f
                .debug_struct("Metadata")
                .field("token_url", &token_url.as_str())
                .finish(),
        }
    }
}

impl Credentials {
    /// A key file's JSON (`service_account` or `authorized_user`). Errors never quote the file.
    pub fn from_json(text: &str) -> Result<Credentials, String> {
        // Read as a tree first: serde's errors for typed fields can quote values.
        let value: Value = serde_json::from_str(text).map_err(|e| {
            format!(
                "not a JSON key file (line {}, column {}: {})",
                e.line(),
                e.column(),
                match e.classify() {
                    serde_json::error::Category::Eof => "unexpected end",
                    _ => "syntax error",
                }
            )
        })?;
        if !value.is_object() {
            return Err("not a JSON key file (expected an object)".into());
        }
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .ok_or("the key file has no \"type\"")?;
        match kind {
            "service_account" => {
                let pem = field(&value, "private_key")?;
                let key = rsa_key(pem)?;
                Ok(Credentials::ServiceAccount(ServiceAccount {
                    client_email: field(&value, "client_email")?.to_owned(),
                    private_key_id: optional(&value, "private_key_id"),
                    token_uri: token_uri(&value)?,
                    project_id: optional(&value, "project_id"),
                    key: Arc::new(key),
                }))
            }
            "authorized_user" => Ok(Credentials::AuthorizedUser(AuthorizedUser {
                client_id: field(&value, "client_id")?.to_owned(),
                client_secret: Secret::new(field(&value, "client_secret")?),
                refresh_token: Secret::new(field(&value, "refresh_token")?),
                token_uri: token_uri(&value)?,
            })),
            other => Err(format!(
                "credentials of type {:?} are not supported; use a service account key (\"type\": \"service_account\")",
                other.chars().take(40).collect::<String>()
            )),
        }
    }

    /// The key file at `path`.
    pub fn from_file(path: &Path) -> Result<Credentials, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Credentials::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The metadata server's token URL on `host` (`host[:port]`).
    pub fn metadata(host: &str) -> Result<Credentials, String> {
        let url = format!("http://{host}{METADATA_TOKEN_PATH}");
        let token_url = Url::parse(&url).map_err(|e| format!("metadata server {host:?}: {e}"))?;
        Ok(Credentials::Metadata { token_url })
    }

    /// Application default credentials, as Google's client libraries find them: the key file
    /// named by `GOOGLE_APPLICATION_CREDENTIALS`, else gcloud's
    /// `application_default_credentials.json`, else the metadata server.
    pub fn from_environment() -> Result<Credentials, String> {
        if let Some(path) = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
        {
            return Credentials::from_file(&path)
                .map_err(|e| format!("GOOGLE_APPLICATION_CREDENTIALS: {e}"));
        }
        if let Some(path) = gcloud_file().filter(|p| p.is_file()) {
            return Credentials::from_file(&path);
        }
        let host = std::env::var("GCE_METADATA_HOST")
            .ok()
            .filter(|h| !h.trim().is_empty())
            .unwrap_or_else(|| METADATA_HOST.to_owned());
        Credentials::metadata(host.trim())
    }

    /// Where tokens come from, for error messages.
    pub(crate) fn token_url(&self) -> &Url {
        match self {
            Credentials::ServiceAccount(account) => &account.token_uri,
            Credentials::AuthorizedUser(user) => &user.token_uri,
            Credentials::Metadata { token_url } => token_url,
        }
    }
}

impl ServiceAccount {
    /// The signed JWT asking for an access token with the Cloud DNS scope, valid for an hour
    /// from `now` (backdated 10 s for clock skew, as Google's Go client does).
    pub fn assertion(&self, now: SystemTime) -> Result<String, String> {
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            .saturating_sub(10);
        let mut header = json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = json!(kid);
        }
        let claims = json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri.as_str(),
            "iat": iat,
            "exp": iat + ASSERTION_LIFETIME,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "signing the token request failed".to_owned())?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// gcloud's application default credentials file (`$CLOUDSDK_CONFIG` or `~/.config/gcloud`).
fn gcloud_file() -> Option<PathBuf> {
    let dir = match std::env::var_os("CLOUDSDK_CONFIG").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").filter(|h| !h.is_empty())?)
            .join(".config")
            .join("gcloud"),
    };
    Some(dir.join("application_default_credentials.json"))
}

fn field<'a>(value: &'a Value, name: &str) -> Result<&'a str, String> {
    value
        .get(name)
        .and_then(Value::as_str)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| format!("the key file has no {name:?}"))
}

fn optional(value: &Value, name: &str) -> Option<String> {
    value
        .get(name)
        .and_then(Value::as_str)
        .filter(|v| !v.trim().is_empty())
        .map(str::to_owned)
}

fn token_uri(value: &Value) -> Result<Url, String> {
    let text = value
        .get("token_uri")
        .and_then(Value::as_str)
        .filter(|v| !v.trim().is_empty())
        .unwrap_or(DEFAULT_TOKEN_URI);
    let url = Url::parse(text).map_err(|e| format!("token_uri {text:?} is not a URL ({e})"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none_or(str::is_empty) {
        return Err(format!("token_uri {text:?} is not an http(s) URL"));
    }
    Ok(url)
}

/// The RSA key of a PEM block: PKCS#8 (`PRIVATE KEY`, what Google issues) or PKCS#1
/// (`RSA PRIVATE KEY`).
fn rsa_key(pem: &str) -> Result<RsaKeyPair, String> {
    const NOT_RSA: &str = "private_key is not an RSA private key in PEM form";
    let (label, der) = pem_block(pem).ok_or(NOT_RSA)?;
    let key = match label {
        "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
        _ => return Err(NOT_RSA.into()),
    };
    key.map_err(|e| format!("{NOT_RSA} ({e})"))
}

/// The label and the decoded body of the first PEM block of `text`.
fn pem_block(text: &str) -> Option<(&str, Vec<u8>)> {
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----")?;
    let label = &rest[..label_end];
    let body_start = label_end + "-----".len();
    let end_marker = format!("-----END {label}-----");
    let body_end = rest[body_start..].find(&end_marker)? + body_start;
    let body: String = rest[body_start..body_end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = STANDARD.decode(body).ok()?;
    Some((label, der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_checked_without_quoting_them() {
        let error = Credentials::from_json("{\"type\": \"service_account\", \"private_key\": \"-----BEGIN PRIVATE KEY-----\\nc2VjcmV0\\n-----END PRIVATE KEY-----\\n\"}")
            .unwrap_err();
        assert!(
            error.starts_with("private_key is not an RSA private key in PEM form"),
            "{error}"
        );
        assert!(!error.contains("c2VjcmV0"));
        let error = Credentials::from_json("{\"private_key\": \"secret").unwrap_err();
        assert_eq!(
            error,
            "not a JSON key file (line 1, column 23: unexpected end)"
        );
        assert_eq!(
            Credentials::from_json("[1]").unwrap_err(),
            "not a JSON key file (expected an object)"
        );
        assert_eq!(
            Credentials::from_json("{\"private_key\": \"x\"}").unwrap_err(),
            "the key file has no \"type\""
        );
        assert_eq!(
            Credentials::from_json("{\"type\": \"external_account\"}").unwrap_err(),
            "credentials of type \"external_account\" are not supported; use a service account key (\"type\": \"service_account\")"
        );
        assert_eq!(
            Credentials::from_json("{\"type\": \"authorized_user\", \"client_id\": \"a\"}")
                .unwrap_err(),
            "the key file has no \"client_secret\""
        );
    }

    #[test]
    fn pem_blocks() {
        let (label, der) =
            pem_block("junk\n-----BEGIN PRIVATE KEY-----\nAAEC\nAw==\n-----END PRIVATE KEY-----\n")
                .unwrap();
        assert_eq!(label, "PRIVATE KEY");
        assert_eq!(der, [0, 1, 2, 3]);
        assert!(pem_block("-----BEGIN X-----\nAAEC\n-----END Y-----").is_none());
    }
}
