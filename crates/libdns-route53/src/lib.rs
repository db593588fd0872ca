//! `libdns.route53`: publishes dns-01 TXT records in Amazon Route 53 through the AWS SDK
//! (REST API 2013-04-01, SigV4-signed), as maddy's module of the same name:
//!
//! ```text
//! dns route53 {
//!     access_key_id     AKIAIOSFODNN7EXAMPLE
//!     secret_access_key {env:AWS_SECRET_ACCESS_KEY}
//! }
//! ```
//!
//! Without keys the SDK's standard credential chain is used (environment variables, the shared
//! `~/.aws/credentials` and `~/.aws/config` files with `profile`, web identity tokens, ECS and
//! EC2 instance roles). `session_token` goes with temporary keys. `hosted_zone_id` skips the
//! zone lookup; `region` (default `us-east-1`) only matters for the credential chain and
//! signing, Route 53 being global; `endpoint` names another server (a test server such as
//! moto), without the `/2013-04-01` version path. Each change is followed (`GetChange`) until
//! it is `INSYNC`, for at most two minutes, unless `wait_insync off`.
//!
//! The IAM policy needs `route53:ListHostedZonesByName` (on `*`), `route53:GetHostedZone`
//! (with `hosted_zone_id`), `route53:ListResourceRecordSets` and
//! `route53:ChangeResourceRecordSets` on the hosted zones, and `route53:GetChange` on
//! `arn:aws:route53:::change/*`.
//!
//! Route 53 changes whole RRsets: to add a value the name's TXT set is read and written back
//! with the value appended (`UPSERT`, keeping the set's TTL); to remove one the set is written
//! back without it, or deleted (`DELETE` of the set exactly as read) when it held nothing else.
//! Those read-modify-writes are serialised within this provider. It only changes the TXT set
//! of the challenge name, and never logs the secret key. Requests go through the SDK's own
//! HTTPS client (rustls with aws-lc-rs) and standard retryer (throttling,
//! `PriorRequestNotComplete` and server errors, with jittered exponential backoff),
//! configured from `timeout` and `retries`.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_route53::config::http::HttpResponse;
use aws_sdk_route53::config::retry::RetryConfig;
use aws_sdk_route53::config::timeout::TimeoutConfig;
use aws_sdk_route53::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_route53::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord, ResourceRecordSet, RrType,
};
use madmail_config::{Error, Node};
use madmail_dns::{DnsError, DnsProvider, TxtRecord};
use madmail_libdns_http::{Call, Secret, Url, build_provider, names};
use madmail_module::decode::single;
use madmail_module::{Block, Built, Ctx, Definition, Errors, Kind, ModuleSpec, Registry};

/// Route 53's global endpoint, without the API's version path (the SDK adds `/2013-04-01/`).
/// When `endpoint` is not set the SDK chooses the endpoint itself (it knows the partitions:
/// `route53.amazonaws.com.cn` in China, GovCloud, ...); this is what it chooses for `aws`.
pub const DEFAULT_ENDPOINT: &str = "https://route53.amazonaws.com/";

/// The region requests are signed for when `region` is not set; Route 53 is global, signed
/// for `us-east-1` in the `aws` partition.
pub const DEFAULT_REGION: &str = "us-east-1";

const PROVIDER: &str = "route53";
/// The API's version path, which `endpoint` must not repeat.
const VERSION_PATH: &str = "2013-04-01";
/// Zones asked for per page of `ListHostedZonesByName` (the API's maximum).
const ZONES_PER_PAGE: i32 = 100;
/// A listing that goes on for longer than this many pages is a server fault.
const MAX_PAGES: usize = 1000;
/// How long a change is followed until Route 53 reports it `INSYNC` (usually within 60 s); a
/// change still pending then is left to the propagation check.
pub const INSYNC_TIMEOUT: Duration = Duration::from_secs(120);
const FIRST_POLL: Duration = Duration::from_millis(500);
const MAX_POLL: Duration = Duration::from_secs(5);
/// How often a deletion is tried when the set changed between our read and our change.
const DELETE_ATTEMPTS: usize = 3;
/// The defaults of `timeout` and `retries`, those of every HTTP provider (`HttpOptions`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_RETRIES: u32 = 4;
/// How much of an error body an error message quotes when it is no error document.
const BODY_EXCERPT: usize = 300;
/// A TXT record's character-strings hold at most 255 bytes each.
const TXT_STRING: usize = 255;

/// Error codes meaning the credentials were refused or may not do this.
const CODES_AUTH: [&str; 8] = [
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "ExpiredToken",
    "InvalidSignatureException",
    "MissingAuthenticationToken",
];

/// Registers `libdns.route53`.
pub fn register(registry: &mut Registry) {
    registry.register(SPEC);
}

const SPEC: ModuleSpec = ModuleSpec {
    name: "libdns.route53",
    kind: Kind::Named,
    build,
    summary: "DNS provider: Amazon Route 53 (AWS access key or credential chain)",
};

/// How to reach Route 53: what the configuration block says.
#[derive(Debug, Clone)]
pub struct Route53Options {
    /// An access key (id, secret, optional session token); `None` uses the SDK's credential
    /// chain.
    pub keys: Option<AccessKey>,
    pub region: String,
    /// The profile of the shared config files for the credential chain.
    pub profile: Option<String>,
    /// The hosted zone to use, skipping the lookup.
    pub hosted_zone_id: Option<String>,
    /// Whether to follow each change until it is `INSYNC`.
    pub wait_insync: bool,
    /// Another endpoint than the SDK's (without the version path).
    pub endpoint: Option<Url>,
    pub timeout: Duration,
    pub retries: u32,
}

/// An AWS access key.
#[derive(Debug, Clone)]
pub struct AccessKey {
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

impl Route53Options {
    /// Options with an access key and every other setting at its default.
    pub fn with_keys(access_key_id: &str, secret_access_key: &str) -> Route53Options {
        Route53Options {
            keys: Some(AccessKey {
                access_key_id: Secret::new(access_key_id),
                secret_access_key: Secret::new(secret_access_key),
                session_token: None,
            }),
            region: DEFAULT_REGION.into(),
            profile: None,
            hosted_zone_id: None,
            wait_insync: true,
            endpoint: None,
            timeout: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
        }
    }
}

fn build(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    build_provider(def, ctx, DEFAULT_ENDPOINT, settings, |settings, options| {
        // The default endpoint is left to the SDK, which knows the other partitions'.
        let endpoint = (options.endpoint.as_str() != DEFAULT_ENDPOINT).then_some(options.endpoint);
        Ok(Route53::new(Route53Options {
            endpoint,
            timeout: options.timeout,
            retries: options.retries,
            ..settings
        }))
    })
}

/// Route 53's own directives, as options with the HTTP ones at their defaults.
fn settings(block: &mut Block<'_>) -> Option<Route53Options> {
    let access_key_id = block.custom("access_key_id", Secret::from_node).optional();
    let secret_access_key = block
        .custom("secret_access_key", Secret::from_node)
        .optional();
    let session_token = block.custom("session_token", Secret::from_node).optional();
    let region = block
        .custom("region", region)
        .default(DEFAULT_REGION.to_owned());
    let profile = block.custom("profile", non_empty).optional();
    let hosted_zone_id = block.custom("hosted_zone_id", hosted_zone_id).optional();
    let wait_insync = block.flag("wait_insync").default(true);
    // Pairs are checked on the directives present (one with a bad value is reported by itself).
    let node = block.node();
    let find = |name: &str| node.children().iter().find(|n| n.name == name);
    match (find("access_key_id"), find("secret_access_key")) {
        (Some(n), None) => block.error(Error::at(
            &n.pos,
            "access_key_id needs secret_access_key too",
        )),
        (None, Some(n)) => block.error(Error::at(
            &n.pos,
            "secret_access_key needs access_key_id too",
        )),
        (None, None) => {
            if let Some(n) = find("session_token") {
                block.error(Error::at(
                    &n.pos,
                    "session_token needs access_key_id and secret_access_key",
                ));
            }
        }
        (Some(_), Some(_)) => {
            if let Some(n) = find("profile") {
                block.error(Error::at(
                    &n.pos,
                    "profile selects credentials of the shared config files: use it or access_key_id, not both",
                ));
            }
        }
    }
    let keys = match (access_key_id, secret_access_key) {
        (Some(access_key_id), Some(secret_access_key)) => Some(AccessKey {
            access_key_id,
            secret_access_key,
            session_token,
        }),
        _ => None,
    };
    Some(Route53Options {
        keys,
        region,
        profile,
        hosted_zone_id,
        wait_insync,
        endpoint: None,
        timeout: DEFAULT_TIMEOUT,
        retries: DEFAULT_RETRIES,
    })
}

fn non_empty(node: &Node) -> Result<String, Error> {
    let value = single(node)?;
    if value.trim().is_empty() {
        return Err(Error::at(
            node.arg_pos(0),
            format!("{} is empty", node.name),
        ));
    }
    Ok(value.to_owned())
}

/// A region name: lowercase letters, digits and hyphens (`us-east-1`, `cn-north-1`).
fn region(node: &Node) -> Result<String, Error> {
    let value = non_empty(node)?;
    if !value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(Error::at(
            node.arg_pos(0),
            format!("region {value:?} is not a region name such as us-east-1"),
        ));
    }
    Ok(value)
}

/// A hosted zone id, with or without the `/hostedzone/` prefix the API puts on ids.
fn hosted_zone_id(node: &Node) -> Result<String, Error> {
    let value = non_empty(node)?;
    let id = value.strip_prefix("/hostedzone/").unwrap_or(&value);
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Error::at(
            node.arg_pos(0),
            format!("hosted_zone_id {value:?} is not a hosted zone id such as Z1D633PJN98FT9"),
        ));
    }
    Ok(id.to_owned())
}

/// Route 53 with one set of credentials.
#[derive(Debug)]
pub struct Route53 {
    options: Route53Options,
    /// Built at first use: the credential chain is set up asynchronously.
    client: tokio::sync::OnceCell<aws_sdk_route53::Client>,
    /// Held across each read-modify-write of an RRset, so that two values presented at once
    /// (a wildcard and its apex) do not overwrite each other.
    writing: tokio::sync::Mutex<()>,
}

/// A hosted zone: its id (without `/hostedzone/`) and name (with its dot).
struct Zone {
    id: String,
    name: String,
}

impl Route53 {
    pub fn new(options: Route53Options) -> Route53 {
        Route53 {
            options,
            client: tokio::sync::OnceCell::new(),
            writing: tokio::sync::Mutex::new(()),
        }
    }

    async fn client(&self) -> &aws_sdk_route53::Client {
        self.client
            .get_or_init(|| async {
                let options = &self.options;
                let region = Region::new(options.region.clone());
                let mut config = match &options.keys {
                    Some(keys) => aws_sdk_route53::Config::builder()
                        .behavior_version(BehaviorVersion::latest())
                        .region(region)
                        .credentials_provider(Credentials::new(
                            keys.access_key_id.expose(),
                            keys.secret_access_key.expose(),
                            keys.session_token.as_ref().map(|t| t.expose().to_owned()),
                            None,
                            "madmail-config",
                        )),
                    None => {
                        let mut loader =
                            aws_config::defaults(BehaviorVersion::latest()).region(region);
                        if let Some(profile) = &options.profile {
                            loader = loader.profile_name(profile);
                        }
                        aws_sdk_route53::config::Builder::from(&loader.load().await)
                    }
                };
                config = config
                    .retry_config(
                        RetryConfig::standard()
                            .with_max_attempts(options.retries.saturating_add(1)),
                    )
                    .timeout_config(
                        TimeoutConfig::builder()
                            .operation_attempt_timeout(options.timeout)
                            .connect_timeout(options.timeout.min(Duration::from_secs(10)))
                            .build(),
                    );
                if let Some(endpoint) = &options.endpoint {
                    config = config.endpoint_url(sdk_endpoint(endpoint));
                }
                aws_sdk_route53::Client::from_conf(config.build())
            })
            .await
    }

    fn failed(&self, call: &Call<'_>, message: impl Into<String>) -> DnsError {
        DnsError::Failed {
            provider: PROVIDER.into(),
            zone: call.zone.into(),
            operation: call.operation.into(),
            message: message.into(),
        }
    }

    /// An SDK error as a [`DnsError`]: refused credentials are [`DnsError::Unauthorized`].
    fn error<E>(&self, call: &Call<'_>, error: &SdkError<E, HttpResponse>) -> DnsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let (message, refused) = describe(error);
        if refused {
            DnsError::Unauthorized {
                provider: PROVIDER.into(),
                zone: call.zone.into(),
                operation: call.operation.into(),
                message,
            }
        } else {
            self.failed(call, message)
        }
    }

    /// The public hosted zone named `name` (absolute), if there is one.
    async fn zone_named(&self, call: &Call<'_>, name: &str) -> Result<Option<Zone>, DnsError> {
        let client = self.client().await;
        let mut dns_name = name.to_owned();
        let mut zone_id: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let reply = client
                .list_hosted_zones_by_name()
                .dns_name(&dns_name)
                .set_hosted_zone_id(zone_id.clone())
                .max_items(ZONES_PER_PAGE)
                .send()
                .await
                .map_err(|e| self.error(call, &e))?;
            // Zones come in order starting at `dns_name` (AWS; moto filters on it): those
            // named so come first, a public and a private one may share a name.
            for zone in reply.hosted_zones() {
                if names::bare(zone.name()) != names::bare(name) {
                    return Ok(None);
                }
                if !zone.config().is_some_and(|c| c.private_zone()) {
                    return Ok(Some(Zone {
                        id: trim_id(zone.id()).to_owned(),
                        name: absolute(zone.name()),
                    }));
                }
            }
            match (
                reply.is_truncated(),
                reply.next_dns_name(),
                reply.next_hosted_zone_id(),
            ) {
                (true, Some(next), Some(id)) if names::bare(next) == names::bare(name) => {
                    dns_name = next.to_owned();
                    zone_id = Some(id.to_owned());
                }
                _ => return Ok(None),
            }
        }
        Err(self.failed(call, format!("the zone listing has over {MAX_PAGES} pages")))
    }

    /// The hosted zone `hosted_zone_id` names.
    async fn configured_zone(&self, call: &Call<'_>, id: &str) -> Result<Zone, DnsError> {
        let reply = self
            .client()
            .await
            .get_hosted_zone()
            .id(id)
            .send()
            .await
            .map_err(|e| self.error(call, &e))?;
        let zone = reply
            .hosted_zone()
            .ok_or_else(|| self.failed(call, "GetHostedZone sent no hosted zone"))?;
        Ok(Zone {
            id: trim_id(zone.id()).to_owned(),
            name: absolute(zone.name()),
        })
    }

    /// The id of the hosted zone `zone`.
    async fn zone_id(&self, call: &Call<'_>, zone: &str) -> Result<String, DnsError> {
        if let Some(id) = &self.options.hosted_zone_id {
            return Ok(id.clone());
        }
        self.zone_named(call, &absolute(zone))
            .await?
            .map(|z| z.id)
            .ok_or_else(|| DnsError::NoZone {
                provider: PROVIDER.into(),
                name: zone.into(),
            })
    }

    /// The TXT set of `name` (absolute) in the zone, if there is one.
    async fn txt_set(
        &self,
        call: &Call<'_>,
        zone_id: &str,
        name: &str,
    ) -> Result<Option<ResourceRecordSet>, DnsError> {
        // The name and type are where the listing starts, not a filter.
        let reply = self
            .client()
            .await
            .list_resource_record_sets()
            .hosted_zone_id(zone_id)
            .start_record_name(name)
            .start_record_type(RrType::Txt)
            .max_items(1)
            .send()
            .await
            .map_err(|e| self.error(call, &e))?;
        Ok(reply
            .resource_record_sets()
            .iter()
            .find(|set| {
                set.r#type() == &RrType::Txt
                    && same_name(set.name(), name)
                    && set.set_identifier().is_none()
            })
            .cloned())
    }

    /// Sends one change; follows it until it is `INSYNC` when `wait_insync` is on.
    async fn change(
        &self,
        call: &Call<'_>,
        zone_id: &str,
        action: ChangeAction,
        set: ResourceRecordSet,
    ) -> Result<(), ChangeError> {
        let change = Change::builder()
            .action(action)
            .resource_record_set(set)
            .build()
            .map_err(|e| self.failed(call, format!("building the change: {e}")))?;
        let batch = ChangeBatch::builder()
            .comment("madmail dns-01 challenge")
            .changes(change)
            .build()
            .map_err(|e| self.failed(call, format!("building the change: {e}")))?;
        let client = self.client().await;
        let reply = client
            .change_resource_record_sets()
            .hosted_zone_id(zone_id)
            .change_batch(batch)
            .send()
            .await
            .map_err(|e| {
                if e.code() == Some("InvalidChangeBatch") || e.code() == Some("InvalidInput") {
                    ChangeError::Refused(self.error(call, &e))
                } else {
                    ChangeError::Other(self.error(call, &e))
                }
            })?;
        if let Some(info) = reply.change_info()
            && self.options.wait_insync
            && info.status() != &ChangeStatus::Insync
        {
            self.wait_insync(call, info.id()).await;
        }
        Ok(())
    }

    /// Polls `GetChange` until the change is `INSYNC`. It was accepted, so nothing here fails
    /// the operation: a change still pending after [`INSYNC_TIMEOUT`], or an account without
    /// `route53:GetChange`, leaves the wait to the propagation check.
    async fn wait_insync(&self, call: &Call<'_>, id: &str) {
        let client = self.client().await;
        let deadline = Instant::now() + INSYNC_TIMEOUT;
        let mut wait = FIRST_POLL;
        loop {
            if Instant::now() + wait > deadline {
                tracing::warn!(
                    provider = PROVIDER,
                    zone = call.zone,
                    change = id,
                    "the change is not INSYNC after {} s; leaving it to the propagation check",
                    INSYNC_TIMEOUT.as_secs()
                );
                return;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(MAX_POLL);
            match client.get_change().id(trim_id(id)).send().await {
                Ok(reply)
                    if reply
                        .change_info()
                        .is_some_and(|i| i.status() == &ChangeStatus::Insync) =>
                {
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(
                        provider = PROVIDER,
                        zone = call.zone,
                        error = %self.error(call, &e),
                        "cannot follow the change; leaving it to the propagation check"
                    );
                    return;
                }
            }
        }
    }
}

/// A refused change, sorted by what the caller makes of it.
enum ChangeError {
    /// `InvalidChangeBatch` / `InvalidInput`: the set is not as the change expected.
    Refused(DnsError),
    Other(DnsError),
}

impl From<DnsError> for ChangeError {
    fn from(error: DnsError) -> ChangeError {
        ChangeError::Other(error)
    }
}

impl ChangeError {
    fn into_error(self) -> DnsError {
        match self {
            ChangeError::Refused(e) | ChangeError::Other(e) => e,
        }
    }
}

#[async_trait]
impl DnsProvider for Route53 {
    fn name(&self) -> &str {
        PROVIDER
    }

    async fn zone_for(&self, fqdn: &str) -> Result<String, DnsError> {
        let call = Call::new("list zones", "-");
        let no_zone = || DnsError::NoZone {
            provider: PROVIDER.into(),
            name: fqdn.into(),
        };
        if let Some(id) = &self.options.hosted_zone_id {
            let zone = self.configured_zone(&call, id).await?;
            return if names::in_zone(fqdn, &zone.name) {
                Ok(zone.name)
            } else {
                Err(no_zone())
            };
        }
        // The name and each of its parents, longest first: the first hosted zone wins.
        let bare = names::bare(fqdn);
        let mut candidate = bare.as_str();
        loop {
            if let Some(zone) = self.zone_named(&call, &absolute(candidate)).await? {
                return Ok(zone.name);
            }
            match candidate.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => candidate = parent,
                _ => return Err(no_zone()),
            }
        }
    }

    async fn append(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let call = Call::new("create TXT record", zone);
        if !names::in_zone(&record.fqdn, zone) {
            return Err(self.failed(&call, format!("{} is not in the zone", record.fqdn)));
        }
        let _writing = self.writing.lock().await;
        let zone_id = self.zone_id(&call, zone).await?;
        let name = absolute(&record.fqdn);
        let existing = self.txt_set(&call, &zone_id, &name).await?;
        if existing.as_ref().is_some_and(|s| holds(s, &record.value)) {
            return Ok(());
        }
        // An RRset has one TTL: an existing set keeps its own, a new one gets the record's.
        let (ttl, mut values) = match &existing {
            Some(set) => (
                set.ttl().unwrap_or(record.ttl.as_secs() as i64),
                set.resource_records()
                    .iter()
                    .map(|r| r.value().to_owned())
                    .collect(),
            ),
            None => (
                i64::try_from(record.ttl.as_secs()).unwrap_or(i64::MAX),
                Vec::new(),
            ),
        };
        values.push(txt_data(&record.value));
        let set = txt_set(&name, ttl, &values).map_err(|e| self.failed(&call, e))?;
        self.change(&call, &zone_id, ChangeAction::Upsert, set)
            .await
            .map_err(ChangeError::into_error)?;
        tracing::debug!(provider = PROVIDER, zone, name = %name, "TXT value added");
        Ok(())
    }

    async fn delete(&self, zone: &str, record: &TxtRecord) -> Result<(), DnsError> {
        let call = Call::new("delete TXT record", zone);
        let _writing = self.writing.lock().await;
        let zone_id = self.zone_id(&call, zone).await?;
        let name = absolute(&record.fqdn);
        let mut last_error = None;
        for _ in 0..DELETE_ATTEMPTS {
            let Some(set) = self.txt_set(&call, &zone_id, &name).await? else {
                return Ok(());
            };
            if !holds(&set, &record.value) {
                return Ok(());
            }
            let rest: Vec<String> = set
                .resource_records()
                .iter()
                .map(|r| r.value().to_owned())
                .filter(|v| names::unquote_txt(v) != record.value)
                .collect();
            let result = if rest.is_empty() {
                // A DELETE must name the set exactly as it is.
                self.change(&call, &zone_id, ChangeAction::Delete, set)
                    .await
            } else {
                let ttl = set.ttl().unwrap_or(300);
                let set = txt_set(&name, ttl, &rest).map_err(|e| self.failed(&call, e))?;
                self.change(&call, &zone_id, ChangeAction::Upsert, set)
                    .await
            };
            match result {
                Ok(()) => {
                    tracing::debug!(provider = PROVIDER, zone, name = %name, "TXT value removed");
                    return Ok(());
                }
                // The set changed between the read and the change (or is gone): read again.
                Err(ChangeError::Refused(e)) => last_error = Some(e),
                Err(ChangeError::Other(e)) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| self.failed(&call, "the TXT set kept changing")))
    }
}

/// A TXT set of `values` (zone-file syntax) at `name`.
fn txt_set(name: &str, ttl: i64, values: &[String]) -> Result<ResourceRecordSet, String> {
    let mut builder = ResourceRecordSet::builder()
        .name(name)
        .r#type(RrType::Txt)
        .ttl(ttl);
    for value in values {
        let record = ResourceRecord::builder()
            .value(value)
            .build()
            .map_err(|e| format!("building the record set: {e}"))?;
        builder = builder.resource_records(record);
    }
    builder
        .build()
        .map_err(|e| format!("building the record set: {e}"))
}

/// Whether `set` has the TXT value `value`.
fn holds(set: &ResourceRecordSet, value: &str) -> bool {
    set.resource_records()
        .iter()
        .any(|r| names::unquote_txt(r.value()) == value)
}

/// A TXT value in zone-file syntax, as Route 53 wants it: quoted, `"` and `\` escaped, in
/// strings of at most 255 bytes.
fn txt_data(value: &str) -> String {
    let mut strings = Vec::new();
    let mut current = String::new();
    for c in value.chars() {
        if current.len() + c.len_utf8() > TXT_STRING {
            strings.push(names::quote_txt(&current));
            current.clear();
        }
        current.push(c);
    }
    strings.push(names::quote_txt(&current));
    strings.join(" ")
}

/// `name` lowercase with a trailing dot.
fn absolute(name: &str) -> String {
    format!("{}.", names::bare(name))
}

/// Route 53 returns names with `*` (and other odd characters) as `\NNN` octal escapes.
fn same_name(listed: &str, name: &str) -> bool {
    names::bare(&unescape(listed)) == names::bare(name)
}

fn unescape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let digits = rest.get(i + 1..i + 4);
        match digits.and_then(|d| u8::from_str_radix(d, 8).ok()) {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// An id without the `/hostedzone/` or `/change/` prefix the API puts on ids.
fn trim_id(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

/// The SDK's endpoint URL: `endpoint` without a trailing `/` or the API's version path.
fn sdk_endpoint(endpoint: &Url) -> String {
    let text = endpoint.as_str().trim_end_matches('/');
    text.strip_suffix(VERSION_PATH)
        .map(|t| t.trim_end_matches('/'))
        .unwrap_or(text)
        .to_owned()
}

/// An SDK error as one line, and whether it means refused credentials.
fn describe<E>(error: &SdkError<E, HttpResponse>) -> (String, bool)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match error {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = error.code().unwrap_or_default();
            let message = error.message().unwrap_or_default();
            let mut text = format!("HTTP {status}");
            for part in [code, message] {
                if !part.is_empty() {
                    text.push_str(": ");
                    text.push_str(part);
                }
            }
            if code.is_empty() && message.is_empty() {
                // Not an error document the SDK knows: quote the body's start.
                let body = service.raw().body().bytes().unwrap_or_default();
                let excerpt: String = one_line(&String::from_utf8_lossy(body))
                    .chars()
                    .take(BODY_EXCERPT)
                    .collect();
                if !excerpt.is_empty() {
                    text = format!("{text}: {excerpt}");
                }
            }
            let refused = CODES_AUTH.contains(&code) || status == 403;
            (text, refused)
        }
        SdkError::TimeoutError(_) => ("request timed out".to_owned(), false),
        other => {
            let text = error_chain(other);
            // Credentials that cannot be found or loaded are refused credentials too.
            let refused = text.contains("loading credentials")
                || text.contains("no providers in chain provided credentials");
            (text, refused)
        }
    }
}

/// An error and its sources on one line (without the SDK's Debug dumps, which can hold
/// whole responses).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    one_line(&text)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use madmail_libdns_http::{HttpOptions, parse_endpoint};

    #[test]
    fn defaults_are_those_of_every_http_provider() {
        let options = HttpOptions::with_endpoint(parse_endpoint(DEFAULT_ENDPOINT).unwrap());
        assert_eq!(options.timeout, DEFAULT_TIMEOUT);
        assert_eq!(options.retries, DEFAULT_RETRIES);
    }

    #[test]
    fn names_and_values() {
        assert!(same_name("\\052.example.org.", "*.example.org"));
        assert!(same_name(
            "_acme-challenge.Example.org.",
            "_acme-challenge.example.org."
        ));
        assert_eq!(unescape("a\\0"), "a\\0");
        assert_eq!(trim_id("/hostedzone/Z123"), "Z123");
        assert_eq!(trim_id("C2682N5HXP0BZ4"), "C2682N5HXP0BZ4");
        assert_eq!(txt_data("abc"), "\"abc\"");
        let long = "x".repeat(300);
        assert_eq!(
            txt_data(&long),
            format!("\"{}\" \"{}\"", "x".repeat(255), "x".repeat(45))
        );
        assert_eq!(names::unquote_txt(&txt_data(&long)), long);
    }

    #[test]
    fn endpoints_for_the_sdk() {
        let endpoint_for_sdk = |value: &str| parse_endpoint(value).map(|url| sdk_endpoint(&url));
        assert_eq!(
            endpoint_for_sdk(DEFAULT_ENDPOINT).unwrap(),
            "https://route53.amazonaws.com"
        );
        assert_eq!(
            endpoint_for_sdk("http://127.0.0.1:5000/2013-04-01/").unwrap(),
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            endpoint_for_sdk("http://127.0.0.1:5000/proxy").unwrap(),
            "http://127.0.0.1:5000/proxy"
        );
    }
}
