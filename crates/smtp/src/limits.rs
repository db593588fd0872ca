//! maddy's `limits` group: rate and concurrency limits on messages, for all messages of an
//! endpoint (`all`), per client IP (`ip`) or per sender domain (`source`).
//!
//! ```text
//! limits {
//!     all rate 20 1s        # at most 20 messages per second through the endpoint
//!     all concurrency 100   # at most 100 transactions at once
//!     ip rate 5 1m          # 5 messages per minute per client address
//!     ip concurrency 2
//!     source rate 10 1m     # per sender domain
//! }
//! ```
//!
//! A message takes its share when MAIL FROM is accepted and gives back its concurrency slots
//! when the transaction ends. A client waits up to five seconds for a slot or token, as in
//! maddy, and then gets `451 4.4.5`. `destination` limits are accepted but do nothing on an
//! endpoint (as maddy documents): they only matter for outbound targets.
//!
//! The rate is a token bucket holding `burst` tokens and refilled at `burst` per `period`, so
//! `rate 20 1m` admits 20 messages in a burst and 20 per minute on average.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use madmail_config::{Error, Node};
use madmail_module::{
    Built, Capabilities, Capability, Ctx, Definition, Errors, Kind, ModuleSpec, values,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a message waits for its share before the client is told to come back later.
const MAX_WAIT: Duration = Duration::from_secs(5);

/// Keys (addresses, domains) tracked per scope at most; past that, new keys are refused until
/// idle ones can be forgotten. maddy uses the same bound.
const MAX_KEYS: usize = 20_010;

pub const SPEC: ModuleSpec = ModuleSpec {
    name: "limits",
    kind: Kind::Named,
    build,
    summary: "rate and concurrency limits shared by endpoints (limits &name)",
};

fn build(def: &Definition<'_>, _ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    if let Some(extra) = def.args.first() {
        return Err(Errors::at(&extra.pos, "limits takes no arguments"));
    }
    let limits = Arc::new(Limits::parse(def.node)?);
    Ok(Built::new(Capabilities::new().with::<Limits>(limits)))
}

impl Capability for Limits {
    const DESCRIPTION: &'static str = "a limits group";
}

/// The `limits` directive of an endpoint: `limits { ... }` or `limits &name`.
pub(crate) fn directive(node: &Node, ctx: &mut Ctx<'_>) -> Result<Arc<Limits>, Errors> {
    if node.args.is_empty() {
        return Ok(Arc::new(Limits::parse(node)?));
    }
    ctx.module_from::<Limits>(node, 0, "")
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind2 {
    Rate { burst: u32, period: Duration },
    Concurrency(u32),
}

/// A set of limits, possibly shared by several endpoints.
#[derive(Debug, Default)]
pub struct Limits {
    all: LimiterSet,
    ip: Option<Keyed<IpAddr>>,
    source: Option<Keyed<String>>,
}

impl Limits {
    pub(crate) fn parse(node: &Node) -> Result<Limits, Errors> {
        let mut errors = Errors::new();
        let (mut all, mut ip, mut source) = (Vec::new(), Vec::new(), Vec::new());
        for child in node.children() {
            if child.children.is_some() {
                errors.push(Error::at(
                    &child.pos,
                    format!("{} takes no block", child.name),
                ));
                continue;
            }
            let kind = match parse_kind(child) {
                Ok(k) => k,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            match child.name.as_str() {
                "all" => all.push(kind),
                "ip" => ip.push(kind),
                "source" => source.push(kind),
                "destination" => tracing::warn!(
                    at = %child.pos,
                    "destination limits do nothing on an endpoint; set them on the outbound target"
                ),
                other => errors.push(Error::at(
                    &child.pos,
                    format!("unknown limit scope {other}: use all, ip, source or destination"),
                )),
            }
        }
        errors.into_result(())?;
        Ok(Limits {
            all: LimiterSet::new(&all),
            ip: (!ip.is_empty()).then(|| Keyed::new(ip)),
            source: (!source.is_empty()).then(|| Keyed::new(source)),
        })
    }

    /// Takes one message's share for a client at `ip` sending as `source_domain`; `None` when
    /// that is not possible within the wait bound.
    pub(crate) async fn take_message(
        &self,
        ip: Option<IpAddr>,
        source_domain: &str,
    ) -> Option<MessagePermit> {
        let deadline = Instant::now() + MAX_WAIT;
        let mut permits = Vec::new();
        self.all.take(deadline, &mut permits).await?;
        if let (Some(keyed), Some(ip)) = (&self.ip, ip) {
            keyed.get(ip)?.take(deadline, &mut permits).await?;
        }
        if let Some(keyed) = &self.source {
            keyed
                .get(source_domain.to_ascii_lowercase())?
                .take(deadline, &mut permits)
                .await?;
        }
        Some(MessagePermit { _permits: permits })
    }
}

fn parse_kind(child: &Node) -> Result<Kind2, Error> {
    let args = child.arg_values();
    let number = |i: usize| -> Result<u32, Error> {
        let v = args.get(i).copied().unwrap_or_default();
        v.parse::<u32>().map_err(|_| {
            Error::at(
                child.arg_pos(i),
                format!(
                    "{} {}: expected a whole number, not {v:?}",
                    child.name, args[0]
                ),
            )
        })
    };
    match args.as_slice() {
        [] => Err(Error::at(
            &child.pos,
            format!(
                "{}: expected rate BURST [PERIOD] or concurrency MAX",
                child.name
            ),
        )),
        ["rate"] => Err(Error::at(
            &child.pos,
            format!("{} rate: expected BURST [PERIOD]", child.name),
        )),
        ["rate", _] => Ok(Kind2::Rate {
            burst: number(1)?,
            period: Duration::from_secs(1),
        }),
        ["rate", _, period] => {
            let period = values::duration(period)
                .map_err(|e| Error::at(child.arg_pos(2), format!("{} rate: {e}", child.name)))?;
            if period.is_zero() {
                return Err(Error::at(
                    child.arg_pos(2),
                    format!("{} rate: the period must be longer than 0", child.name),
                ));
            }
            Ok(Kind2::Rate {
                burst: number(1)?,
                period,
            })
        }
        ["concurrency", _] => Ok(Kind2::Concurrency(number(1)?)),
        ["rate" | "concurrency", ..] => Err(Error::at(
            child.arg_pos(if args[0] == "rate" { 3 } else { 2 }),
            format!("{} {}: too many arguments", child.name, args[0]),
        )),
        [other, ..] => Err(Error::at(
            child.arg_pos(0),
            format!("unknown limit kind {other}: use rate or concurrency"),
        )),
    }
}

/// Concurrency slots a transaction holds until it ends.
#[derive(Debug)]
pub(crate) struct MessagePermit {
    _permits: Vec<OwnedSemaphorePermit>,
}

/// The limits of one scope (or of one key within a scope).
#[derive(Debug, Default)]
struct LimiterSet {
    rates: Vec<RateBucket>,
    slots: Vec<Arc<Semaphore>>,
}

impl LimiterSet {
    fn new(kinds: &[Kind2]) -> LimiterSet {
        let mut set = LimiterSet::default();
        for kind in kinds {
            match *kind {
                // maddy treats a burst of 0 as "no limit".
                Kind2::Rate { burst: 0, .. } => {}
                Kind2::Rate { burst, period } => set.rates.push(RateBucket::new(burst, period)),
                Kind2::Concurrency(max) => {
                    set.slots.push(Arc::new(Semaphore::new(max as usize)));
                }
            }
        }
        set
    }

    async fn take(&self, deadline: Instant, permits: &mut Vec<OwnedSemaphorePermit>) -> Option<()> {
        let mut wait = Duration::ZERO;
        for rate in &self.rates {
            wait = wait.max(rate.reserve(Instant::now(), deadline)?);
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        for slots in &self.slots {
            let permit = tokio::time::timeout_at(deadline.into(), slots.clone().acquire_owned())
                .await
                .ok()?
                .ok()?;
            permits.push(permit);
        }
        Some(())
    }

    /// Whether this set is in the state a new one would be in (so it can be forgotten).
    fn is_idle(&self, now: Instant) -> bool {
        self.rates.iter().all(|r| r.is_full(now))
            // Permits out and waiting acquisitions each hold a clone of the semaphore's Arc.
            && self.slots.iter().all(|s| Arc::strong_count(s) == 1)
    }
}

/// One limiter set per key, created on first use and forgotten when idle.
#[derive(Debug)]
struct Keyed<K> {
    kinds: Vec<Kind2>,
    sets: Mutex<KeyedState<K>>,
}

#[derive(Debug)]
struct KeyedState<K> {
    by_key: HashMap<K, Arc<LimiterSet>>,
    next_sweep: usize,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    fn new(kinds: Vec<Kind2>) -> Keyed<K> {
        Keyed {
            kinds,
            sets: Mutex::new(KeyedState {
                by_key: HashMap::new(),
                next_sweep: 1024,
            }),
        }
    }

    fn get(&self, key: K) -> Option<Arc<LimiterSet>> {
        let mut state = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = state.by_key.get(&key) {
            return Some(set.clone());
        }
        if state.by_key.len() >= state.next_sweep {
            let now = Instant::now();
            // A set in use has another Arc clone (held by a waiting `take`) or slots out.
            state
                .by_key
                .retain(|_, set| Arc::strong_count(set) > 1 || !set.is_idle(now));
            state.next_sweep = (state.by_key.len() * 2).clamp(1024, MAX_KEYS);
        }
        if state.by_key.len() >= MAX_KEYS {
            return None;
        }
        let set = Arc::new(LimiterSet::new(&self.kinds));
        state.by_key.insert(key, set.clone());
        Some(set)
    }
}

/// A token bucket: `capacity` tokens, refilled continuously at `capacity` per `period`.
#[derive(Debug)]
struct RateBucket {
    capacity: f64,
    per_second: f64,
    /// Tokens (may be negative: reserved by waiting clients) and when they were counted.
    state: Mutex<(f64, Instant)>,
}

impl RateBucket {
    fn new(burst: u32, period: Duration) -> RateBucket {
        let capacity = f64::from(burst);
        RateBucket {
            capacity,
            per_second: capacity / period.as_secs_f64(),
            state: Mutex::new((capacity, Instant::now())),
        }
    }

    fn refill(&self, state: &mut (f64, Instant), now: Instant) {
        let elapsed = now.saturating_duration_since(state.1).as_secs_f64();
        state.0 = (state.0 + elapsed * self.per_second).min(self.capacity);
        state.1 = now;
    }

    /// Takes a token, returning how long to wait before using it, or `None` (taking nothing)
    /// when that would be past `deadline`.
    fn reserve(&self, now: Instant, deadline: Instant) -> Option<Duration> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.refill(&mut state, now);
        let wait = if state.0 >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - state.0) / self.per_second)
        };
        if now + wait > deadline {
            return None;
        }
        state.0 -= 1.0;
        Some(wait)
    }

    fn is_full(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.refill(&mut state, now);
        state.0 >= self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_admits_burst_then_paces() {
        let bucket = RateBucket::new(2, Duration::from_secs(10));
        let now = Instant::now();
        let far = now + Duration::from_secs(60);
        assert_eq!(bucket.reserve(now, far), Some(Duration::ZERO));
        assert_eq!(bucket.reserve(now, far), Some(Duration::ZERO));
        // Third token: 5 s away (2 per 10 s).
        let wait = bucket.reserve(now, far).unwrap();
        assert!(wait > Duration::from_secs(4) && wait <= Duration::from_secs(5));
        // A fourth would be 10 s away: past a 6 s deadline, so refused and not taken.
        assert_eq!(bucket.reserve(now, now + Duration::from_secs(6)), None);
        assert!(!bucket.is_full(now));
        assert!(bucket.is_full(now + Duration::from_secs(30)));
    }

    #[tokio::test]
    async fn concurrency_slots_are_released_with_the_permit() {
        let set = LimiterSet::new(&[Kind2::Concurrency(1)]);
        let deadline = Instant::now() + Duration::from_millis(50);
        let mut first = Vec::new();
        assert!(set.take(deadline, &mut first).await.is_some());
        let mut second = Vec::new();
        assert!(set.take(deadline, &mut second).await.is_none());
        drop(first);
        let deadline = Instant::now() + Duration::from_millis(50);
        assert!(set.take(deadline, &mut second).await.is_some());
    }

    #[test]
    fn idle_keys_are_forgotten() {
        let keyed: Keyed<u32> = Keyed::new(vec![Kind2::Rate {
            burst: 1,
            period: Duration::from_secs(3600),
        }]);
        for k in 0..2000 {
            let set = keyed.get(k).unwrap();
            // Use one token: the set is no longer idle and must be kept.
            if k == 0 {
                set.rates[0]
                    .reserve(Instant::now(), Instant::now())
                    .unwrap();
            }
        }
        let state = keyed.sets.lock().unwrap();
        assert!(state.by_key.len() < 2000, "idle sets were swept");
        assert!(state.by_key.contains_key(&0), "a used bucket is kept");
    }
}
