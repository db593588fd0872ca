//! Zone discovery: which zone holds a name, for providers that cannot list their zones.

use hickory_proto::rr::{Name, RData, RecordType};

use crate::DnsError;
use crate::lookup::{Resolvers, fqdn_string, parse_name};

/// The closest zone enclosing `fqdn` (lowercase, with a trailing dot), found by asking
/// `resolvers` for SOA records from `fqdn` up towards the root.
///
/// A name that is a CNAME is never a zone apex, and the SOA a resolver returns with it belongs
/// to the alias's target: the walk then goes on with the parent, so the zone found is the one
/// holding the name itself (where an update must go), not the one it points to. A negative
/// answer (NXDOMAIN or no SOA at that name) carries the enclosing zone's SOA in its authority
/// section, which ends the walk early; a referral (NS records without SOA) names the delegated
/// zone.
pub async fn find_zone(fqdn: &str, resolvers: &Resolvers) -> Result<String, DnsError> {
    let name = parse_name(fqdn)?;
    let mut candidate = name.clone();
    loop {
        let response = resolvers.query(&candidate, RecordType::SOA).await?;
        if response
            .answers
            .iter()
            .any(|r| r.name == candidate && matches!(r.data, RData::SOA(_)))
        {
            return Ok(fqdn_string(&candidate));
        }
        // The answer section is empty for a negative answer (a CNAME would be in it).
        if response.answers.is_empty()
            && let Some(zone) = enclosing(&response.authorities, &candidate, RecordType::SOA)
                .or_else(|| enclosing(&response.authorities, &candidate, RecordType::NS))
        {
            return Ok(fqdn_string(&zone));
        }
        candidate = candidate.base_name();
        if candidate.is_root() {
            return Err(DnsError::NoZone {
                provider: "dns".into(),
                name: fqdn_string(&name),
            });
        }
    }
}

/// The owner of a `rtype` record in `records` that is `name` or one of its ancestors (but not
/// the root).
fn enclosing(
    records: &[hickory_proto::rr::Record],
    name: &Name,
    rtype: RecordType,
) -> Option<Name> {
    records
        .iter()
        .filter(|r| r.record_type() == rtype && !r.name.is_root() && r.name.zone_of(name))
        .map(|r| r.name.clone())
        .max_by_key(Name::num_labels)
}
