//! Where the gateway may connect on a tenant's behalf.
//!
//! Tenants register upstream URLs, so every outbound connection is an SSRF
//! vector. The policy refuses loopback, private, link-local, multicast and
//! every other special-purpose address unless the operator's `[egress]
//! allow` list opens it. The edge applies it to the address it actually
//! connects to (after DNS); the catalog applies it to literal addresses at
//! registration, so a tenant learns at once.

mod class;

pub use class::{AddressClass, canonical, classify};

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The shared `[egress]` section, read by the edge and the catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressConfig {
    /// What the policy opens despite being special-purpose: CIDRs
    /// (`10.1.0.0/16`), single addresses (`10.1.2.3`) or one port of one
    /// address (`127.0.0.1:8081`, `[::1]:8081`). Env
    /// `GATEWAY_EGRESS_ALLOW`, comma-separated.
    pub allow: Vec<String>,
}

impl EgressConfig {
    pub fn validate(&self, problems: &mut Vec<String>) {
        for entry in &self.allow {
            if let Err(message) = Allowed::parse(entry) {
                problems.push(format!("egress.allow: {message}"));
            }
        }
    }
}

/// One entry of the allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Allowed {
    Net(IpNet),
    Socket(SocketAddr),
}

impl Allowed {
    fn parse(entry: &str) -> Result<Self, String> {
        let entry = entry.trim();
        if let Ok(socket) = entry.parse::<SocketAddr>() {
            return Ok(Self::Socket(canonical_socket(socket)));
        }
        if let Ok(net) = entry.parse::<IpNet>() {
            return Ok(Self::Net(net.trunc()));
        }
        entry
            .parse::<IpAddr>()
            .map(|ip| Self::Net(IpNet::from(canonical(ip))))
            .map_err(|_| {
                format!("{entry:?} is not a CIDR, an IP address or an IP address with a port")
            })
    }

    fn permits(&self, addr: SocketAddr) -> bool {
        match self {
            Self::Net(net) => class::net_contains(net, addr.ip()),
            Self::Socket(socket) => *socket == canonical_socket(addr),
        }
    }

    fn permits_ip(&self, ip: IpAddr) -> bool {
        match self {
            Self::Net(net) => class::net_contains(net, ip),
            Self::Socket(socket) => socket.ip() == canonical(ip),
        }
    }
}

fn canonical_socket(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical(addr.ip()), addr.port())
}

/// A connection the policy does not allow. Its message never names the
/// address: it reaches clients, and the address is internal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the upstream address is not allowed by the egress policy")]
pub struct Refused {
    pub class: AddressClass,
}

/// The compiled `[egress]` policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    allowed: Vec<Allowed>,
}

impl EgressPolicy {
    /// Refuses every special-purpose address.
    pub fn strict() -> Self {
        Self::default()
    }

    pub fn from_config(config: &EgressConfig) -> Result<Self, String> {
        let allowed = config
            .allow
            .iter()
            .map(|entry| Allowed::parse(entry))
            .collect::<Result<_, _>>()?;
        Ok(Self { allowed })
    }

    /// Opens exactly one address and port (`gatewayd --demo`, tests).
    #[must_use]
    pub fn allowing(mut self, addr: SocketAddr) -> Self {
        self.allowed.push(Allowed::Socket(canonical_socket(addr)));
        self
    }

    /// Opens a CIDR or address, as a config entry would.
    pub fn allow_entry(mut self, entry: &str) -> Result<Self, String> {
        self.allowed.push(Allowed::parse(entry)?);
        Ok(self)
    }

    /// Whether the edge may connect to `addr`.
    pub fn check(&self, addr: SocketAddr) -> Result<(), Refused> {
        match classify(addr.ip()) {
            None => Ok(()),
            Some(_) if self.allowed.iter().any(|entry| entry.permits(addr)) => Ok(()),
            Some(class) => Err(Refused { class }),
        }
    }

    /// Whether some port of `ip` may be connected to: the filter on DNS
    /// answers, before the port is known to the resolver. The connector
    /// checks the full address again once connected.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refused> {
        match classify(ip) {
            None => Ok(()),
            Some(_) if self.allowed.iter().any(|entry| entry.permits_ip(ip)) => Ok(()),
            Some(class) => Err(Refused { class }),
        }
    }

    /// The registration-time check of an upstream URL: a literal address
    /// in any spelling a URL parser or `inet_aton` accepts (`0x7f.1`,
    /// `2130706433`, `[::ffff:127.0.0.1]`) and `localhost` names are
    /// judged like the address they mean. Other names are checked when the
    /// edge connects. The message names the class, for the tenant.
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        let parsed = url::Url::parse(url).map_err(|error| format!("is not a URL: {error}"))?;
        let port = parsed.port_or_known_default().unwrap_or(80);
        let ip = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(url::Host::Domain(name)) if is_localhost(name) => {
                IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
            }
            Some(url::Host::Domain(_)) | None => return Ok(()),
        };
        self.check(SocketAddr::new(ip, port)).map_err(|refused| {
            format!(
                "points at a {} address, which the egress policy does not allow \
                 (an operator can open it with [egress] allow)",
                refused.class
            )
        })
    }
}

/// RFC 6761: `localhost` and names under it are loopback.
fn is_localhost(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn strict_refuses_special_addresses_and_admits_public_ones() {
        let policy = EgressPolicy::strict();
        assert_eq!(
            policy.check(addr("127.0.0.1:9090")),
            Err(Refused {
                class: AddressClass::Loopback
            })
        );
        assert!(policy.check(addr("[::ffff:169.254.169.254]:80")).is_err());
        assert!(policy.check(addr("93.184.215.14:443")).is_ok());
        assert!(policy.check(addr("[2606:4700::1111]:443")).is_ok());
    }

    #[test]
    fn the_allow_list_opens_exactly_what_it_names() {
        let config = EgressConfig {
            allow: vec!["10.1.0.0/16".to_owned(), "127.0.0.1:8081".to_owned()],
        };
        let policy = EgressPolicy::from_config(&config).unwrap();
        assert!(policy.check(addr("10.1.200.3:80")).is_ok());
        assert!(policy.check(addr("10.2.0.1:80")).is_err());
        assert!(policy.check(addr("127.0.0.1:8081")).is_ok());
        assert!(policy.check(addr("[::ffff:127.0.0.1]:8081")).is_ok());
        assert!(policy.check(addr("127.0.0.1:9090")).is_err());
        assert!(policy.check(addr("127.0.0.2:8081")).is_err());
        // The resolver filter lets the address through; the port is judged
        // once connected.
        assert!(policy.check_ip("127.0.0.1".parse().unwrap()).is_ok());
        assert!(policy.check_ip("127.0.0.2".parse().unwrap()).is_err());

        let loopback = EgressPolicy::strict().allow_entry("127.0.0.0/8").unwrap();
        assert!(loopback.check(addr("127.9.9.9:1")).is_ok());
        assert!(loopback.check(addr("[::ffff:127.0.0.1]:1")).is_ok());
        assert!(loopback.check(addr("[::1]:1")).is_err());
    }

    #[test]
    fn bad_allow_entries_are_config_errors() {
        let config = EgressConfig {
            allow: vec!["10.0.0.0/33".to_owned(), "internal".to_owned()],
        };
        let mut problems = Vec::new();
        config.validate(&mut problems);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("egress.allow: \"10.0.0.0/33\""));
    }

    #[test]
    fn literal_urls_in_odd_spellings_are_judged_as_their_address() {
        let policy = EgressPolicy::strict();
        for url in [
            "http://127.0.0.1:9090/metrics",
            "http://0x7f.1/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::1]:8080/",
            "http://localhost:9090/",
            "http://api.LOCALHOST./",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.5/",
            "http://[fd00::5]/",
            "http://0.0.0.0/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
        ] {
            let refused = policy.check_url(url);
            assert!(refused.is_err(), "{url}");
        }
        assert!(
            policy
                .check_url("http://127.0.0.1:9090/")
                .unwrap_err()
                .starts_with("points at a loopback address")
        );
        for url in [
            "https://api.openai.com/v1",
            "http://93.184.215.14/",
            "http://upstream/",
        ] {
            assert!(policy.check_url(url).is_ok(), "{url}");
        }
        let open = policy.allowing(addr("127.0.0.1:9000"));
        assert!(open.check_url("http://127.0.0.1:9000/base").is_ok());
        assert!(open.check_url("http://127.0.0.1:9090/").is_err());
    }
}
