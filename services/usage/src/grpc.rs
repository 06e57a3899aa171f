//! The tonic adapter for `gateway.usage.v1.UsageService`.
//!
//! RPCs not implemented yet answer UNIMPLEMENTED through the generated
//! default methods.

use gateway_proto::usage::v1::usage_service_server::UsageService;

use crate::store::UsageStore;

pub struct UsageGrpc {
    #[allow(dead_code)] // read by the RPCs as they are implemented
    store: UsageStore,
}

impl UsageGrpc {
    pub fn new(store: UsageStore) -> Self {
        Self { store }
    }
}

#[tonic::async_trait]
impl UsageService for UsageGrpc {}
