//! The tonic adapter for `gateway.identity.v1.IdentityService`.
//!
//! RPCs not implemented yet answer UNIMPLEMENTED through the generated
//! default methods.

use gateway_proto::identity::v1::identity_service_server::IdentityService;

use crate::store::IdentityStore;

pub struct IdentityGrpc {
    #[allow(dead_code)] // read by the RPCs as they are implemented
    store: IdentityStore,
}

impl IdentityGrpc {
    pub fn new(store: IdentityStore) -> Self {
        Self { store }
    }
}

#[tonic::async_trait]
impl IdentityService for IdentityGrpc {}
