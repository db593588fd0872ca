//! `libdns.googleclouddns`: publishes dns-01 TXT records through the Google Cloud DNS v1 API
//! (`https://dns.googleapis.com/dns/v1/`), as maddy's module of the same name:
//!
//! ```text
//! dns googleclouddns {
//!     project              my-gcp-project
//!     service_account_json /etc/madmail/gcp-dns-key.json
//! }
//! ```
//!
//! `service_account_json` is the path of a service account key file (relative paths are taken
//! relative to the configuration file) or the key file's JSON itself (a value starting with
//! `{`, for example `{env:GCP_DNS_KEY}`). Without it, application default credentials are used:
//! the key file named by `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's
//! `application_default_credentials.json`, or the metadata server of the VM.
//!
//! A service account key signs a JWT (RS256) that `token_uri` exchanges for an access token
//! with the scope `ndev.clouddns.readwrite`. The account needs `roles/dns.admin` on the project,
//! or a role with `dns.managedZones.list`, `dns.resourceRecordSets.list`, `dns.changes.create`
//! and `dns.changes.get`.
//!
//! Cloud DNS changes whole RRsets: to add a value the name's TXT RRset is read and replaced in
//! one change (deleting the set as read, adding it with the value appended); to remove one the
//! set is replaced by the rest, or deleted when the value was its last. A concurrent writer
//! makes the change fail its precondition, and the read-modify-write starts over. It only
//! changes the TXT RRset of the challenge name, and never logs the key or the access token.

mod auth;

use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use madmail_config::{Error, Node};
use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_http::reqwest::{Method, StatusCode, header};
use madmail_libdns_http::{
    ApiClient, Call, Failure, HttpOptions, Reply, Secret, Url, build_provider, names,
};
use madmail_module::decode::single;
use madmail_module::globals::relative_to_file;
use madmail_module::{Built, Ctx, Definition, Errors, Kind, ModuleSpec, Registry};
use serde::{Deserialize, Serialize};

pub use auth::{
    AuthorizedUser, Credentials, DEFAULT_TOKEN_URI, METADATA_HOST, SCOPE, ServiceAccount,
};

/// The public API; `endpoint` replaces it.
pub const DEFAULT_ENDPOINT: &str = "https://dns.googleapis.com/dns/v1/";

const PROVIDER: &str = "googleclouddns";
/// Zones asked for per page. The API lets the server choose when `maxResults` is absent and
/// documents no maximum (unconfirmed); 100 is what Google's own tools ask for.
const PAGE_SIZE: u32 = 100;
/// A listing that goes on for longer than this many pages is a server fault.
const MAX_PAGES: usize = 10_000;
/// How often a read-modify-write of an RRset is tried when another writer changed the set
/// between our read and our change.
const RMW_ATTEMPTS: usize = 5;
/// How long a change is followed until Cloud DNS reports it `done`; a change still pending
/// then is left to the propagation check.
const CHANGE_WAIT: Duration = Duration::from_secs(60);
const FIRST_POLL: Duration = Duration::from_millis(100);
const MAX_POLL: Duration = Duration::from_secs(5);
/// An access token is renewed this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// Registers `libdns.googleclouddns`.
pub fn register(registry: &mut Registry) {
    registry.register(SPEC);
}

const SPEC: ModuleSpec = ModuleSpec {
    name: "libdns.googleclouddns",
    kind: Kind::Named,
    build,
    summary: "DNS provider: Google Cloud DNS (service account)",
};

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    build_provider(
        def,
        ctx,
        DEFAULT_ENDPOINT,
        |block| {
            let project = block.custom("project", project).required();
            let credentials = block
                .custom("service_account_json", service_account_json)
                .optional();
            Some((project?, credentials))
        },
        |(project, credentials), options| {
            let credentials = match credentials {
                Some(credentials) => credentials,
                None => Credentials::from_environment()?,
            };
            GoogleCloudDns::new(project, credentials, &options)
        },
    )
}

/// A project id: 6 to 30 lowercase letters, digits and hyphens (older projects may have a
/// domain prefix, `example.com:proj`); checked only for what would break a URL path.
fn project(node: &Node) -> Result<String, Error> {
    let value = single(node)?;
    if value.trim().is_empty() {
        return Err(Error::at(
            node.arg_pos(0),
            format!("{} is empty", node.name),
        ));
    }
    if value.contains(['/', '?', '#']) || value.chars().any(char::is_whitespace) {
        return Err(Error::at(
            node.arg_pos(0),
            format!("project {value:?} is not a project id"),
        ));
    }
    Ok(value.to_owned())
}

/// A key file's path, or its JSON (a value starting with `{`).
fn service_account_json(node: &Node) -> Result<Credentials, Error> {
    let value = single(node)?;
    let pos = node.arg_pos(0);
    if value.trim().is_empty() {
        return Err(Error::at(pos, format!("{} is empty", node.name)));
    }
    if value.trim_start().starts_with('{') {
        return Credentials::from_json(value)
            .map_err(|e| Error::at(pos, format!("{}: {e}", node.name)));
    }
    // Never quote something that may be a mangled key rather than a path.
    if value.len() > 1024 || value.contains(['\n', '"']) {
        return Err(Error::at(
            pos,
            format!("{}: neither a key file's path nor its JSON", node.name),
        ));
    }
    let path = relative_to_file(node, value, 0)?;
    Credentials::from_file(&path).map_err(|e| Error::at(pos, format!("{}: {e}", node.name)))
}

/// Cloud DNS of one project with one set of credentials.
#[derive(Debug)]
pub struct GoogleCloudDns {
    client: ApiClient,
    project: String,
    credentials: Credentials,
    /// The access token and when to renew it.
    token: tokio::sync::Mutex<Option<(Secret, Instant)>>,
    /// Held across each read-modify-write of an RRset, so that two values presented at once
    /// (a wildcard and its apex) do not make each other's changes fail.
    writing: tokio::sync::Mutex<()>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ZonePage {
    #[serde(default)]
    managed_zones: Vec<ManagedZone>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManagedZone {
    /// The zone's name in API paths (not its DNS name).
    name: String,
    dns_name: String,
    /// `public` or `private`; absent on older zones, which are public.
    #[serde(default)]
    visibility: Option<String>,
}

impl ManagedZone {
    fn is_public(&self) -> bool {
        self.visibility
            .as_deref()
            .is_none_or(|v| v.eq_ignore_ascii_case("public"))
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RrSetPage {
    #[serde(default)]
    rrsets: Vec<RrSet>,
}

/// A resource record set. Deletions must match the set exactly, so fields this crate does
/// not know are kept and sent back as they came.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RrSet {
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    #[serde(default)]
    ttl: i64,
    #[serde(default)]
    rrdatas: Vec<String>,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

impl RrSet {
    fn txt(name: &str, ttl: i64, rrdatas: Vec<String>) -> RrSet {
        RrSet {
            name: name.to_owned(),
            rtype: "TXT".into(),
            ttl,
            rrdatas,
            other: serde_json::Map::new(),
        }
    }

    fn holds(&self, value: &str) -> bool {
        self.rrdatas.iter().any(|d| names::unquote_txt(d) == value)
    }
}

#[derive(Debug, Serialize)]
struct ChangeRequest {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    additions: Vec<RrSet>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    deletions: Vec<RrSet>,
}

#[derive(Debug, Deserialize)]
struct Change {
    #[serde(default)]
    id: String,
    #[serde(default)]
    status: String,
}

#[derive(Debug, Deserialize)]
struct TokenReply {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// `{"error": {"code", "message", "errors": [{"reason", "message"}], "status"}}`, or OAuth's
/// `{"error": "invalid_grant", "error_description": "..."}`.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorField,
    #[serde(default)]
    error_description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ErrorField {
    Api(ApiError),
    OAuth(String),
}

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Vec<ErrorItem>,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorItem {
    #[serde(default)]
    reason: String,
}

/// Why the API refused a call, when the caller can do something about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// 409 `alreadyExists`: an addition met a set that is there.
    Exists,
    /// 412 `conditionNotMet`: a deletion did not match the set as it is now.
    Conflict,
    /// 404 `notFound`.
    NotFound,
    Other,
}

struct Refused {
    reason: Reason,
    error: DnsError,
}

impl From<DnsError> for Refused {
    fn from(error: DnsError) -> Refused {
        Refused {
            reason: Reason::Other,
            error,
        }
    }
}

impl GoogleCloudDns {
    /// A provider for the project `project`, calling the API at `options.endpoint`.
    pub fn new(
        project: impl Into<String>,
        credentials: Credentials,
        options: &HttpOptions,
    ) -> Result<GoogleCloudDns, String> {
        let client = ApiClient::new(PROVIDER, options)?.with_error_message(error_message);
        Ok(GoogleCloudDns {
            client,
            project: project.into(),
            credentials,
            token: tokio::sync::Mutex::new(None),
            writing: tokio::sync::Mutex::new(()),
        })
    }

    /// `projects/{project}/managedZones` followed by `segments`, each percent-encoded.
    fn url(&self, call: &Call<'_>, segments: &[&str]) -> Result<Url, DnsError> {
        let mut url = self.client.base().clone();
        url.path_segments_mut()
            .map_err(|()| self.client.failed(call, "the endpoint cannot take a path"))?
            .pop_if_empty()
            .extend(["projects", &self.project, "managedZones"])
            .extend(segments);
        Ok(url)
    }

    /// An access token: the cached one, or a new one when it is about to expire or `renew`.
    async fn access_token(&self, call: &Call<'_>, renew: bool) -> Result<Secret, DnsError> {
        let mut cached = self.token.lock().await;
        if !renew
            && let Some((token, renew_at)) = cached.as_ref()
            && Instant::now() < *renew_at
        {
            return Ok(token.clone());
        }
        let operation = format!("{} (getting an access token)", call.operation);
        let token_call = Call::new(&operation, call.zone);
        let reply = self.request_token(&token_call).await?;
        let token: TokenReply = self.client.decode(&token_call, &reply.body)?;
        if token.access_token.is_empty() {
            return Err(self
                .client
                .failed(&token_call, "the token endpoint sent no access_token"));
        }
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(3600));
        let renew_at = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN.min(lifetime / 2));
        let token = Secret::new(token.access_token);
        *cached = Some((token.clone(), renew_at));
        Ok(token)
    }

    async fn request_token(&self, call: &Call<'_>) -> Result<Reply, DnsError> {
        let form = match &self.credentials {
            Credentials::ServiceAccount(account) => {
                let assertion = account
                    .assertion(SystemTime::now())
                    .map_err(|e| self.client.failed(call, e))?;
                Some(
                    form_urlencoded::Serializer::new(String::new())
                        .append_pair("grant_type", auth::JWT_GRANT)
                        .append_pair("assertion", &assertion)
                        .finish(),
                )
            }
            Credentials::AuthorizedUser(user) => Some(
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("grant_type", "refresh_token")
                    .append_pair("client_id", &user.client_id)
                    .append_pair("client_secret", user.client_secret.expose())
                    .append_pair("refresh_token", user.refresh_token.expose())
                    .finish(),
            ),
            Credentials::Metadata { .. } => None,
        };
        let url = self.credentials.token_url().clone();
        let result = self
            .client
            .send(call, |http| match &form {
                Some(form) => http
                    .post(url.clone())
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(form.clone()),
                None => http.get(url.clone()).header("metadata-flavor", "Google"),
            })
            .await;
        result.map_err(|failure| {
            // Refused credentials: 400 invalid_grant (bad signature, unknown or disabled
            // account, revoked refresh token), 401 invalid_client / unauthorized_client.
            let refused = matches!(
                oauth_error(&failure.body).as_deref(),
                Some("invalid_grant" | "invalid_client" | "unauthorized_client" | "access_denied")
            );
            if refused {
                self.client.unauthorized(call, failure.message)
            } else {
                self.client.error(call, failure)
            }
        })
    }

    /// One API call with a bearer token; a token refused with 401 (expired or revoked early)
    /// is renewed once.
    async fn call(
        &self,
        call: &Call<'_>,
        method: Method,
        url: &Url,
        body: Option<String>,
    ) -> Result<Reply, Refused> {
        let mut renew = false;
        loop {
            let token = self.access_token(call, renew).await?;
            let result = self
                .client
                .send(call, |http| {
                    let request = http
                        .request(method.clone(), url.clone())
                        .bearer_auth(token.expose());
                    match &body {
                        Some(json) => request
                            .header(header::CONTENT_TYPE, "application/json")
                            .body(json.clone()),
                        None => request,
                    }
                })
                .await;
            match result {
                Ok(reply) => return Ok(reply),
                Err(failure) if failure.status == Some(StatusCode::UNAUTHORIZED) && !renew => {
                    renew = true;
                }
                Err(failure) => return Err(self.refused(call, failure)),
            }
        }
    }

    fn refused(&self, call: &Call<'_>, failure: Failure) -> Refused {
        let reasons = error_reasons(&failure.body);
        let has = |reason: &str| reasons.iter().any(|r| r == reason);
        let reason = match failure.status.map(|s| s.as_u16()) {
            Some(409) if has("alreadyExists") || reasons.is_empty() => Reason::Exists,
            Some(412) => Reason::Conflict,
            Some(404) => Reason::NotFound,
            _ => Reason::Other,
        };
        Refused {
            reason,
            error: self.client.error(call, failure),
        }
    }

    async fn get<T: for<'de> Deserialize<'de>>(
        &self,
        call: &Call<'_>,
        url: &Url,
    ) -> Result<T, DnsError> {
        let reply = self
            .call(call, Method::GET, url, None)
            .await
            .map_err(|r| r.error)?;
        self.client.decode(call, &reply.body)
    }

    /// The project's zones (only those named `dns_name`, with its dot, when given), every page.
    async fn managed_zones(
        &self,
        call: &Call<'_>,
        dns_name: Option<&str>,
    ) -> Result<Vec<ManagedZone>, DnsError> {
        let mut zones = Vec::new();
        let mut page_token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut url = self.url(call, &[])?;
            {
                let mut query = url.query_pairs_mut();
                if let Some(name) = dns_name {
                    query.append_pair("dnsName", name);
                }
                query.append_pair("maxResults", &PAGE_SIZE.to_string());
                if let Some(token) = &page_token {
                    query.append_pair("pageToken", token);
                }
            }
            let page: ZonePage = self.get(call, &url).await?;
            zones.extend(page.managed_zones);
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) if page_token.as_ref() != Some(&next) => page_token = Some(next),
                Some(_) => {
                    return Err(self
                        .client
                        .failed(call, "the zone listing repeats its page token"));
                }
                None => return Ok(zones),
            }
        }
        Err(self
            .client
            .failed(call, format!("the zone listing has over {MAX_PAGES} pages")))
    }

    /// The name (in API paths) of the public managed zone `zone`.
    async fn managed_zone(&self, call: &Call<'_>, zone: &str) -> Result<String, DnsError> {
        let dns_name = absolute(zone);
        self.managed_zones(call, Some(&dns_name))
            .await?
            .into_iter()
            .find(|z| z.is_public() && names::bare(&z.dns_name) == names::bare(zone))
            .map(|z| z.name)
            .ok_or_else(|| DnsError::NoZone {
                provider: PROVIDER.into(),
                name: zone.into(),
            })
    }

    /// The TXT RRset of `name` (absolute) in the managed zone `managed`, if there is one.
    async fn txt_rrset(
        &self,
        call: &Call<'_>,
        managed: &str,
        name: &str,
    ) -> Result<Option<RrSet>, DnsError> {
        let mut url = self.url(call, &[managed, "rrsets"])?;
        url.query_pairs_mut()
            .append_pair("name", name)
            .append_pair("type", "TXT");
        let page: RrSetPage = self.get(call, &url).await?;
        Ok(page.rrsets.into_iter().find(|r| {
            r.rtype.eq_ignore_ascii_case("TXT") && names::bare(&r.name) == names::bare(name)
        }))
    }

    /// Sends one change and follows it until it is applied (or [`CHANGE_WAIT`] has passed).
    async fn change(
        &self,
        call: &Call<'_>,
        managed: &str,
        change: &ChangeRequest,
    ) -> Result<(), Refused> {
        let url = self.url(call, &[managed, "changes"])?;
        let body = serde_json::to_string(change).map_err(|e| {
            self.client
                .failed(call, format!("encoding the change: {e}"))
        })?;
        let reply = self.call(call, Method::POST, &url, Some(body)).await?;
        let sent: Change = self.client.decode(call, &reply.body)?;
        self.wait_done(call, managed, sent).await;
        Ok(())
    }

    /// Polls a pending change until it is `done`. It was accepted, so nothing here fails the
    /// operation: a change that stays pending, or an account without `dns.changes.get`, leaves
    /// the wait to the propagation check.
    async fn wait_done(&self, call: &Call<'_>, managed: &str, change: Change) {
        if change.status == "done" || change.id.is_empty() {
            return;
        }
        let deadline = Instant::now() + CHANGE_WAIT;
        let mut wait = FIRST_POLL;
        loop {
            if Instant::now() + wait > deadline {
                tracing::warn!(
                    provider = PROVIDER,
                    zone = call.zone,
                    change = %change.id,
                    "the change is still pending after {} s; leaving it to the propagation check",
                    CHANGE_WAIT.as_secs()
                );
                return;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(MAX_POLL);
            let url = match self.url(call, &[managed, "changes", &change.id]) {
                Ok(url) => url,
                Err(_) => return,
            };
            match self.get::<Change>(call, &url).await {
                Ok(state) if state.status == "done" => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(
                        provider = PROVIDER,
                        zone = call.zone,
                        error = %e,
                        "cannot follow the change; leaving it to the propagation check"
                    );
                    return;
                }
            }
        }
    }

    /// Reads the TXT RRset of `fqdn`, lets `edit` decide the change (`None`: nothing to do)
    /// and sends it; starts over when another writer changed the set in between.
    async fn read_modify_write(
        &self,
        call: &Call<'_>,
        zone: &str,
        fqdn: &str,
        edit: impl Fn(&str, Option<RrSet>) -> Option<ChangeRequest>,
    ) -> Result<(), DnsError> {
        let _writing = self.writing.lock().await;
        let managed = self.managed_zone(call, zone).await?;
        let name = absolute(fqdn);
        for _ in 0..RMW_ATTEMPTS {
            let rrset = self.txt_rrset(call, &managed, &name).await?;
            let Some(change) = edit(&name, rrset) else {
                return Ok(());
            };
            match self.change(call, &managed, &change).await {
                Ok(()) => {
                    tracing::debug!(provider = PROVIDER, zone, name = %name, operation = call.operation, "TXT RRset changed");
                    return Ok(());
                }
                // The set changed between the read and the change: read it again.
                Err(Refused {
                    reason: Reason::Exists | Reason::Conflict | Reason::NotFound,
                    error,
                }) => {
                    tracing::debug!(provider = PROVIDER, zone, error = %error, "TXT RRset changed concurrently; reading it again");
                }
                Err(refused) => return Err(refused.error),
            }
        }
        Err(self.client.failed(
            call,
            format!("the TXT RRset of {name} changed under each of {RMW_ATTEMPTS} attempts"),
        ))
    }
}

#[async_trait]
impl DnsProvider for GoogleCloudDns {
    fn name(&self) -> &str {
        PROVIDER
    }

    async fn zone_for(&self, fqdn: &str) -> Result<String, DnsError> {
        let zones = self
            .managed_zones(&Call::new("list zones", "-"), None)
            .await?;
        names::longest_zone(
            fqdn,
            zones
                .iter()
                .filter(|z| z.is_public())
                .map(|z| z.dns_name.as_str()),
        )
        .map(absolute)
        .ok_or_else(|| DnsError::NoZone {
            provider: PROVIDER.into(),
            name: fqdn.into(),
        })
    }

    async fn append(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let call = Call::new("create TXT record", zone);
        if !names::in_zone(&record.fqdn, zone) {
            return Err(self
                .client
                .failed(&call, format!("{} is not in the zone", record.fqdn)));
        }
        let ttl = i64::try_from(record.ttl.as_secs())
            .unwrap_or(i64::MAX)
            .min(i64::from(i32::MAX));
        let quoted = names::quote_txt(&record.value);
        self.read_modify_write(&call, zone, &record.fqdn, |name, rrset| match rrset {
            Some(set) if set.holds(&record.value) => None,
            // An RRset has one TTL: the set keeps its own.
            Some(set) => {
                let mut rrdatas = set.rrdatas.clone();
                rrdatas.push(quoted.clone());
                Some(ChangeRequest {
                    additions: vec![RrSet::txt(name, set.ttl, rrdatas)],
                    deletions: vec![set],
                })
            }
            None => Some(ChangeRequest {
                additions: vec![RrSet::txt(name, ttl, vec![quoted.clone()])],
                deletions: Vec::new(),
            }),
        })
        .await
    }

    async fn delete(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let call = Call::new("delete TXT record", zone);
        self.read_modify_write(&call, zone, &record.fqdn, |name, rrset| {
            let set = rrset.filter(|set| set.holds(&record.value))?;
            let rest: Vec<String> = set
                .rrdatas
                .iter()
                .filter(|d| names::unquote_txt(d) != record.value)
                .cloned()
                .collect();
            let additions = if rest.is_empty() {
                Vec::new()
            } else {
                vec![RrSet::txt(name, set.ttl, rest)]
            };
            Some(ChangeRequest {
                additions,
                deletions: vec![set],
            })
        })
        .await
    }
}

/// `name` lowercase with a trailing dot, as the API wants names.
fn absolute(name: &str) -> String {
    format!("{}.", names::bare(name))
}

fn error_reasons(body: &[u8]) -> Vec<String> {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody {
            error: ErrorField::Api(error),
            ..
        }) => error.errors.into_iter().map(|e| e.reason).collect(),
        _ => Vec::new(),
    }
}

/// The `error` code of an OAuth error reply.
fn oauth_error(body: &[u8]) -> Option<String> {
    match serde_json::from_slice::<ErrorBody>(body).ok()?.error {
        ErrorField::OAuth(code) => Some(code),
        ErrorField::Api(_) => None,
    }
}

/// `message (reason)` of a Google API error, `error: description` of an OAuth error.
fn error_message(body: &[u8]) -> Option<String> {
    let body = serde_json::from_slice::<ErrorBody>(body).ok()?;
    match body.error {
        ErrorField::Api(error) => {
            let reasons: Vec<&str> = error
                .errors
                .iter()
                .map(|e| e.reason.as_str())
                .filter(|r| !r.is_empty())
                .collect();
            let detail = if reasons.is_empty() {
                error.status.unwrap_or_default()
            } else {
                reasons.join(", ")
            };
            Some(if detail.is_empty() {
                error.message
            } else {
                format!("{} ({detail})", error.message)
            })
        }
        ErrorField::OAuth(code) => Some(match body.error_description {
            Some(description) if !description.is_empty() => format!("{code}: {description}"),
            _ => code,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies() {
        let api = br#"{"error":{"code":409,"message":"The resource 'entity.change.additions[0]' named 'x. (TXT)' already exists","errors":[{"message":"...","domain":"global","reason":"alreadyExists"}],"status":"ALREADY_EXISTS"}}"#;
        assert_eq!(
            error_message(api).unwrap(),
            "The resource 'entity.change.additions[0]' named 'x. (TXT)' already exists (alreadyExists)"
        );
        assert_eq!(error_reasons(api), ["alreadyExists"]);
        let oauth = br#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#;
        assert_eq!(
            error_message(oauth).unwrap(),
            "invalid_grant: Invalid JWT Signature."
        );
        assert_eq!(oauth_error(oauth).as_deref(), Some("invalid_grant"));
        assert_eq!(error_message(b"<html>"), None);
    }
}
