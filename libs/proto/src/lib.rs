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

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC`, as the console
/// and gatewayctl show times.
pub fn utc_text(seconds: i64) -> String {
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Howard Hinnant's days-to-civil: the proleptic Gregorian date of a day
/// count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
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
