//! The tonic adapter for `gateway.quota.v1.QuotaService`.
//!
//! RPCs not implemented yet answer UNIMPLEMENTED through the generated
//! default methods.

use gateway_proto::quota::v1::quota_service_server::QuotaService;

use crate::store::QuotaStore;

pub struct QuotaGrpc {
    #[allow(dead_code)] // read by the RPCs as they are implemented
    store: QuotaStore,
}

impl QuotaGrpc {
    pub fn new(store: QuotaStore) -> Self {
        Self { store }
    }
}

#[tonic::async_trait]
impl QuotaService for QuotaGrpc {}
