//! Stage: access. An API's maintenance mode and client IP lists, compiled
//! once per snapshot change and applied by two built-in plugins before
//! admission: no quota is spent and no upstream is called for a request
//! they refuse.

use std::net::IpAddr;
use std::time::Duration;

use gateway_proto::catalog::v1 as pb;
use http::{HeaderValue, Response, StatusCode, header};
use ipnet::IpNet;

use crate::body::EdgeBody;
use crate::plugin::{EdgePlugin, RequestInfo};
use crate::policy::positive;
use crate::problem::response as problem;

#[derive(Debug, Default, Clone)]
pub struct Access {
    /// The operator's message and Retry-After while in maintenance.
    maintenance: Option<(String, Duration)>,
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

fn nets(entries: &[String]) -> Vec<IpNet> {
    entries
        .iter()
        .filter_map(|entry| {
            entry
                .parse::<IpNet>()
                .ok()
                .or_else(|| entry.parse::<IpAddr>().ok().map(IpNet::from))
        })
        .collect()
}

impl Access {
    pub fn compile(policy: Option<&pb::AccessPolicy>) -> Self {
        let Some(policy) = policy else {
            return Self::default();
        };
        Self {
            maintenance: policy.maintenance.then(|| {
                let message = if policy.maintenance_message.is_empty() {
                    "the API is down for maintenance".to_owned()
                } else {
                    policy.maintenance_message.clone()
                };
                let retry = positive(policy.maintenance_retry_after.as_ref())
                    .unwrap_or(Duration::from_secs(60));
                (message, retry)
            }),
            allow: nets(&policy.allow_cidrs),
            deny: nets(&policy.deny_cidrs),
        }
    }

    /// Deny first, then the allow-list (empty = everyone).
    pub fn admits(&self, ip: IpAddr) -> bool {
        let ip = gateway_egress::canonical(ip);
        let listed = |nets: &[IpNet]| nets.iter().any(|net| net.contains(&ip));
        !listed(&self.deny) && (self.allow.is_empty() || listed(&self.allow))
    }
}

/// 503 with the operator's message while the API is in maintenance.
pub struct Maintenance;

impl EdgePlugin for Maintenance {
    fn name(&self) -> &str {
        "maintenance"
    }

    fn on_request(&self, request: &RequestInfo<'_>) -> Option<Response<EdgeBody>> {
        let (message, retry) = request.api.access.maintenance.as_ref()?;
        let mut response = problem(
            StatusCode::SERVICE_UNAVAILABLE,
            message.clone(),
            request.request_id,
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(retry.as_secs().max(1)),
        );
        Some(response)
    }
}

/// 403 for a client address the API's lists refuse.
pub struct ClientAddresses;

impl EdgePlugin for ClientAddresses {
    fn name(&self) -> &str {
        "client-addresses"
    }

    fn on_request(&self, request: &RequestInfo<'_>) -> Option<Response<EdgeBody>> {
        if request.api.access.admits(request.remote_ip) {
            return None;
        }
        metrics::counter!("edge_refused_total", "reason" => "client_address").increment(1);
        Some(problem(
            StatusCode::FORBIDDEN,
            "this API does not accept requests from your address",
            request.request_id,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_wins_over_allow_and_an_empty_allow_list_admits_all() {
        let access = Access::compile(Some(&pb::AccessPolicy {
            allow_cidrs: vec!["10.0.0.0/8".to_owned(), "127.0.0.1".to_owned()],
            deny_cidrs: vec!["10.9.0.0/16".to_owned()],
            ..Default::default()
        }));
        assert!(access.admits("10.1.2.3".parse().unwrap()));
        assert!(access.admits("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!access.admits("10.9.1.1".parse().unwrap()));
        assert!(!access.admits("192.0.2.1".parse().unwrap()));
        let open = Access::compile(None);
        assert!(open.admits("192.0.2.1".parse().unwrap()));
        let denied = Access::compile(Some(&pb::AccessPolicy {
            deny_cidrs: vec!["192.0.2.0/24".to_owned()],
            ..Default::default()
        }));
        assert!(!denied.admits("192.0.2.1".parse().unwrap()));
        assert!(denied.admits("198.51.100.1".parse().unwrap()));
    }

    #[test]
    fn maintenance_has_a_message_and_a_wait() {
        let access = Access::compile(Some(&pb::AccessPolicy {
            maintenance: true,
            ..Default::default()
        }));
        let (message, retry) = access.maintenance.unwrap();
        assert_eq!(message, "the API is down for maintenance");
        assert_eq!(retry, Duration::from_secs(60));
    }
}
