//! From the catalog's policy messages to the edge's compiled policies,
//! with the defaults the contract states for unset fields.

use std::time::Duration;

use gateway_proto::catalog::v1 as pb;

use super::positive;
use crate::breaker::BreakerPolicy;
use crate::health::HealthPolicy;
use crate::retry::RetryPolicy;

fn count(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

/// `None` when retries are off (at most one attempt).
pub fn retry(policy: Option<&pb::RetryPolicy>) -> Option<RetryPolicy> {
    let policy = policy.filter(|policy| policy.max_attempts > 1)?;
    let initial = positive(policy.initial_backoff.as_ref()).unwrap_or(Duration::from_millis(25));
    Some(RetryPolicy {
        max_attempts: count(policy.max_attempts),
        statuses: policy
            .retry_on_statuses
            .iter()
            .filter_map(|status| u16::try_from(*status).ok())
            .collect(),
        on_connect_failure: policy.retry_on_connect_failure,
        initial_backoff: initial,
        max_backoff: positive(policy.max_backoff.as_ref()).unwrap_or(initial * 10),
        non_idempotent: policy.retry_non_idempotent,
    })
}

/// `None` when the breaker is off or has no trip condition.
pub fn breaker(policy: Option<&pb::CircuitBreaker>) -> Option<BreakerPolicy> {
    let policy = policy.filter(|policy| policy.enabled)?;
    if policy.consecutive_failures <= 0 && policy.failure_rate_percent <= 0 {
        return None;
    }
    Some(BreakerPolicy {
        consecutive_failures: count(policy.consecutive_failures),
        failure_rate_percent: count(policy.failure_rate_percent).min(100),
        min_requests: count(policy.min_requests),
        window: positive(policy.window.as_ref()).unwrap_or(Duration::from_secs(10)),
        open_for: positive(policy.open_duration.as_ref()).unwrap_or(Duration::from_secs(30)),
        half_open_requests: count(policy.half_open_requests).max(1),
    })
}

/// `None` when health checking is off.
pub fn health(policy: Option<&pb::HealthCheck>) -> Option<HealthPolicy> {
    let policy = policy.filter(|policy| policy.enabled)?;
    Some(HealthPolicy {
        path: if policy.path.is_empty() {
            "/".to_owned()
        } else {
            policy.path.clone()
        },
        interval: positive(policy.interval.as_ref()).unwrap_or(Duration::from_secs(10)),
        timeout: positive(policy.timeout.as_ref()).unwrap_or(Duration::from_secs(2)),
        healthy_threshold: count(policy.healthy_threshold).max(1),
        unhealthy_threshold: count(policy.unhealthy_threshold).max(1),
        expected: policy
            .expected_statuses
            .iter()
            .filter_map(|status| u16::try_from(*status).ok())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_or_off_policies_compile_to_nothing() {
        assert_eq!(retry(None), None);
        assert_eq!(
            retry(Some(&pb::RetryPolicy {
                max_attempts: 1,
                ..Default::default()
            })),
            None
        );
        assert_eq!(breaker(Some(&pb::CircuitBreaker::default())), None);
        assert_eq!(
            breaker(Some(&pb::CircuitBreaker {
                enabled: true,
                ..Default::default()
            })),
            None,
            "no trip condition"
        );
        assert_eq!(health(Some(&pb::HealthCheck::default())), None);
    }

    #[test]
    fn defaults_fill_unset_fields() {
        let compiled = breaker(Some(&pb::CircuitBreaker {
            enabled: true,
            consecutive_failures: 3,
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(compiled.open_for, Duration::from_secs(30));
        assert_eq!(compiled.half_open_requests, 1);
        let compiled = health(Some(&pb::HealthCheck {
            enabled: true,
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(compiled.path, "/");
        let compiled = retry(Some(&pb::RetryPolicy {
            max_attempts: 3,
            retry_on_statuses: vec![503],
            ..Default::default()
        }))
        .unwrap();
        assert_eq!(compiled.statuses, [503]);
        assert!(compiled.max_backoff >= compiled.initial_backoff);
    }
}
