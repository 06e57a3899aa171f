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
