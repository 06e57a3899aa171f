//! Generated code for the gateway's gRPC contracts (`proto/gateway/*/v1`).
//!
//! Only this crate runs code generation; every service and client depends on
//! it, so the wire types are the same everywhere.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// Encoded `FileDescriptorSet` of every gateway proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/gateway_descriptor.bin"));

pub mod identity {
    pub mod v1 {
        tonic::include_proto!("gateway.identity.v1");
    }
}

pub mod catalog {
    pub mod v1 {
        tonic::include_proto!("gateway.catalog.v1");
    }
}

pub mod quota {
    pub mod v1 {
        tonic::include_proto!("gateway.quota.v1");
    }
}

pub mod usage {
    pub mod v1 {
        tonic::include_proto!("gateway.usage.v1");
    }
}

/// `google.protobuf.Timestamp` from the microseconds since the epoch that
/// every store keeps.
pub fn timestamp_from_micros(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        // rem_euclid keeps nanos in 0..1e9 for times before 1970 too.
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1_000).unwrap_or_default(),
    }
}

/// Microseconds since the epoch of a `google.protobuf.Timestamp`,
/// saturating instead of overflowing.
pub fn micros_from_timestamp(timestamp: &prost_types::Timestamp) -> i64 {
    timestamp
        .seconds
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(timestamp.nanos) / 1_000)
}

/// `google.protobuf.Duration` of a span in microseconds.
pub fn duration_from_micros(micros: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1_000).unwrap_or_default(),
    }
}

/// Microseconds of a `google.protobuf.Duration`, saturating instead of
/// overflowing.
pub fn micros_from_duration(duration: &prost_types::Duration) -> i64 {
    duration
        .seconds
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(duration.nanos) / 1_000)
}

/// The RPC names of `service` (e.g. `"CatalogService"`) in the contracts,
/// so tests can hold every RPC to a rule (access policy, coverage).
pub fn rpc_names(service: &str) -> Vec<String> {
    use prost::Message as _;
    prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET)
        .map(|descriptors| {
            descriptors
                .file
                .iter()
                .flat_map(|file| &file.service)
                .filter(|candidate| candidate.name() == service)
                .flat_map(|candidate| {
                    candidate
                        .method
                        .iter()
                        .map(|method| method.name().to_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_names_come_from_the_contracts() {
        let names = rpc_names("IdentityService");
        assert!(names.iter().any(|name| name == "AuthenticateKey"));
        assert!(rpc_names("NoSuchService").is_empty());
    }

    #[test]
    fn timestamps_round_trip_through_micros() {
        for micros in [0, 1, 1_700_000_000_123_456, -1, -1_500_000] {
            assert_eq!(
                micros_from_timestamp(&timestamp_from_micros(micros)),
                micros
            );
        }
        let before_epoch = timestamp_from_micros(-1);
        assert_eq!(
            (before_epoch.seconds, before_epoch.nanos),
            (-1, 999_999_000)
        );
    }
}
