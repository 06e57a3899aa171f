//! The tonic adapter for `gateway.catalog.v1.CatalogService`.
//!
//! RPCs not implemented yet answer UNIMPLEMENTED through the generated
//! default methods.

use gateway_proto::catalog::v1::catalog_service_server::CatalogService;

use crate::store::CatalogStore;

pub struct CatalogGrpc {
    #[allow(dead_code)] // read by the RPCs as they are implemented
    store: CatalogStore,
}

impl CatalogGrpc {
    pub fn new(store: CatalogStore) -> Self {
        Self { store }
    }
}

#[tonic::async_trait]
impl CatalogService for CatalogGrpc {}
