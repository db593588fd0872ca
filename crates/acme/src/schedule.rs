//! When to renew and when to retry: pure functions of times, tested without a clock.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Why a renewal is due when it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RenewalReason {
    /// A moment inside the window the CA suggested (ACME renewal information, RFC 9773).
    Ari,
    /// `not_after - renew_before`.
    RenewBefore,
    /// A third of the lifetime left (neither ARI nor `renew_before`).
    Ratio,
}

impl RenewalReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RenewalReason::Ari => "ari",
            RenewalReason::RenewBefore => "renew_before",
            RenewalReason::Ratio => "ratio",
        }
    }
}

/// The renewal time of a certificate valid from `not_before` to `not_after`: the earliest of
/// the moment chosen inside the ARI window and `not_after - renew_before`; with neither, when
/// a third of the lifetime remains.
pub fn renewal_time(
    not_before: SystemTime,
    not_after: SystemTime,
    renew_before: Option<Duration>,
    ari_choice: Option<SystemTime>,
) -> (SystemTime, RenewalReason) {
    let by_margin = renew_before.map(|margin| {
        (
            not_after
                .checked_sub(margin)
                .filter(|t| *t >= not_before)
                .unwrap_or(not_before),
            RenewalReason::RenewBefore,
        )
    });
    let by_ari = ari_choice.map(|t| (t, RenewalReason::Ari));
    match (by_ari, by_margin) {
        (Some(a), Some(m)) => {
            if m.0 < a.0 {
                m
            } else {
                a
            }
        }
        (Some(a), None) => a,
        (None, Some(m)) => m,
        (None, None) => {
            let lifetime = not_after.duration_since(not_before).unwrap_or_default();
            (not_after - lifetime / 3, RenewalReason::Ratio)
        }
    }
}

/// How long to wait after the `failures`-th consecutive failed attempt (1-based): about 1m,
/// 2m, 5m, 10m, 20m, 30m, 1h, then every 6h (as certmagic).
pub fn retry_delay(failures: u32) -> Duration {
    const STEPS: [u64; 8] = [60, 120, 300, 600, 1200, 1800, 3600, 6 * 3600];
    let index = (failures.max(1) - 1) as usize;
    Duration::from_secs(STEPS[index.min(STEPS.len() - 1)])
}

/// After this long of consecutive failures, retries stop being announced as temporary: the
/// loader keeps trying every 6 hours but logs at error level (certmagic gives up after 30
/// days; giving up would only let the certificate expire).
pub const FAILING_FOR_LONG: Duration = Duration::from_secs(30 * 24 * 3600);

/// A uniformly random moment in `[start, end]`; `random` is any random number.
pub fn pick_in_window(start: SystemTime, end: SystemTime, random: u64) -> SystemTime {
    let Ok(width) = end.duration_since(start) else {
        return start;
    };
    let width_ms = u64::try_from(width.as_millis()).unwrap_or(u64::MAX);
    if width_ms == 0 {
        return start;
    }
    start + Duration::from_millis(random % (width_ms + 1))
}

/// A random number from the system's generator (aws-lc-rs).
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // Failure is not expected; a fixed value only makes the choice less spread.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86400);

    fn t(days: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + DAY * days as u32
    }

    #[test]
    fn a_third_of_the_lifetime_without_ari_or_margin() {
        assert_eq!(
            renewal_time(t(0), t(90), None, None),
            (t(60), RenewalReason::Ratio)
        );
    }

    #[test]
    fn renew_before_counts_back_from_expiry() {
        assert_eq!(
            renewal_time(t(0), t(90), Some(DAY * 10), None),
            (t(80), RenewalReason::RenewBefore)
        );
        // A margin longer than the lifetime means "now-ish": the start of validity.
        assert_eq!(renewal_time(t(10), t(20), Some(DAY * 30), None).0, t(10));
    }

    #[test]
    fn earliest_of_ari_and_margin() {
        assert_eq!(
            renewal_time(t(0), t(90), Some(DAY * 10), Some(t(70))),
            (t(70), RenewalReason::Ari)
        );
        assert_eq!(
            renewal_time(t(0), t(90), Some(DAY * 30), Some(t(70))),
            (t(60), RenewalReason::RenewBefore)
        );
        // ARI alone wins over the ratio, even when later.
        assert_eq!(
            renewal_time(t(0), t(90), None, Some(t(75))),
            (t(75), RenewalReason::Ari)
        );
    }

    #[test]
    fn backoff_steps() {
        let minutes: Vec<u64> = (1..=10).map(|n| retry_delay(n).as_secs() / 60).collect();
        assert_eq!(minutes, [1, 2, 5, 10, 20, 30, 60, 360, 360, 360]);
        assert_eq!(retry_delay(0), retry_delay(1));
    }

    #[test]
    fn window_choice_stays_inside() {
        let (start, end) = (t(60), t(62));
        for r in [0, 1, 12345, u64::MAX, random_u64(), random_u64()] {
            let picked = pick_in_window(start, end, r);
            assert!(picked >= start && picked <= end);
        }
        assert_eq!(pick_in_window(start, end, 0), start);
        assert_eq!(pick_in_window(end, start, 7), end, "inverted window");
    }
}
