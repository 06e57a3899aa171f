//! The tonic adapter for `gateway.catalog.v1.CatalogService`: wire types
//! in, [`Registry`] calls, wire types out.

use std::sync::Arc;

use gateway_auth::{Access, Caller};
use gateway_proto::catalog::v1 as pb;
use gateway_proto::catalog::v1::catalog_service_server::CatalogService;
use gateway_runtime::CancellationToken;
use gateway_storage::page::Page;
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status};

use crate::catalog::Registry;
use crate::groups::Credentials;

pub struct CatalogGrpc {
    catalog: Arc<Registry>,
    shutdown: CancellationToken,
}

impl CatalogGrpc {
    pub fn new(catalog: Arc<Registry>, shutdown: CancellationToken) -> Self {
        Self { catalog, shutdown }
    }
}

/// Who may call each RPC; finer checks (own tenant, global prices) are the
/// catalog's. An RPC missing here is refused.
pub fn access_policy(method: &str) -> Option<Access> {
    Some(match method {
        "GetApi" | "ListApis" | "GetChannel" | "ListChannels" | "GetModelPrice"
        | "ListModelPrices" | "Quote" => Access::Authenticated,
        "CreateApi"
        | "UpdateApi"
        | "DeleteApi"
        | "CreateChannel"
        | "UpdateChannel"
        | "DeleteChannel"
        | "CreateModelPrice"
        | "UpdateModelPrice"
        | "DeleteModelPrice"
        | "CreateGroupMultiplier"
        | "GetGroupMultiplier"
        | "ListGroupMultipliers"
        | "UpdateGroupMultiplier"
        | "DeleteGroupMultiplier"
        | "CreateGroupPrice"
        | "GetGroupPrice"
        | "ListGroupPrices"
        | "UpdateGroupPrice"
        | "DeleteGroupPrice" => Access::Admin,
        // Snapshots carry decrypted secrets: the edge only.
        "GetSnapshot" | "WatchSnapshot" => Access::Superadmin,
        _ => return None,
    })
}

fn page(page_size: i32, page_token: &str) -> Result<Page, Status> {
    Page::new(page_size, page_token).map_err(|error| Status::invalid_argument(error.to_string()))
}

fn mask(update_mask: Option<prost_types::FieldMask>) -> Vec<String> {
    update_mask.map(|mask| mask.paths).unwrap_or_default()
}

fn required<T>(value: Option<T>, field: &'static str) -> Result<T, Status> {
    value.ok_or_else(|| Status::invalid_argument(format!("{field}: is required")))
}

fn ok<T>(value: T) -> Result<Response<T>, Status> {
    Ok(Response::new(value))
}

type GrpcResult<T> = Result<Response<T>, Status>;

macro_rules! paged {
    ($items:expr, $page:expr) => {{
        let mut items = $items;
        let next_page_token = $page.finish(&mut items, |item| item.id.as_str());
        (items, next_page_token)
    }};
}

#[tonic::async_trait]
impl CatalogService for CatalogGrpc {
    async fn create_api(
        &self,
        request: Request<pb::CreateApiRequest>,
    ) -> GrpcResult<pb::CreateApiResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let api = self
            .catalog
            .create_api(
                &caller,
                required(request.api, "api")?,
                &request.upstream_auth_secret,
            )
            .await?;
        ok(pb::CreateApiResponse { api: Some(api) })
    }

    async fn get_api(&self, request: Request<pb::GetApiRequest>) -> GrpcResult<pb::GetApiResponse> {
        let caller = Caller::of(&request);
        let api = self
            .catalog
            .get_api(&caller, &request.into_inner().id)
            .await?;
        ok(pb::GetApiResponse { api: Some(api) })
    }

    async fn list_apis(
        &self,
        request: Request<pb::ListApisRequest>,
    ) -> GrpcResult<pb::ListApisResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let page = page(request.page_size, &request.page_token)?;
        let (apis, next_page_token) = paged!(
            self.catalog
                .list_apis(&caller, &request.tenant_id, &page)
                .await?,
            page
        );
        ok(pb::ListApisResponse {
            apis,
            next_page_token,
        })
    }

    async fn update_api(
        &self,
        request: Request<pb::UpdateApiRequest>,
    ) -> GrpcResult<pb::UpdateApiResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let api = self
            .catalog
            .update_api(
                &caller,
                required(request.api, "api")?,
                &mask(request.update_mask),
                request.upstream_auth_secret.as_deref(),
            )
            .await?;
        ok(pb::UpdateApiResponse { api: Some(api) })
    }

    async fn delete_api(
        &self,
        request: Request<pb::DeleteApiRequest>,
    ) -> GrpcResult<pb::DeleteApiResponse> {
        let caller = Caller::of(&request);
        self.catalog
            .delete_api(&caller, &request.into_inner().id)
            .await?;
        ok(pb::DeleteApiResponse {})
    }

    async fn create_channel(
        &self,
        request: Request<pb::CreateChannelRequest>,
    ) -> GrpcResult<pb::CreateChannelResponse> {
        let caller = Caller::of(&request);
        let credentials = Credentials::from_metadata(request.metadata());
        let request = request.into_inner();
        let channel = self
            .catalog
            .create_channel(
                &caller,
                required(request.channel, "channel")?,
                &request.secret,
                &credentials,
            )
            .await?;
        ok(pb::CreateChannelResponse {
            channel: Some(channel),
        })
    }

    async fn get_channel(
        &self,
        request: Request<pb::GetChannelRequest>,
    ) -> GrpcResult<pb::GetChannelResponse> {
        let caller = Caller::of(&request);
        let channel = self
            .catalog
            .get_channel(&caller, &request.into_inner().id)
            .await?;
        ok(pb::GetChannelResponse {
            channel: Some(channel),
        })
    }

    async fn list_channels(
        &self,
        request: Request<pb::ListChannelsRequest>,
    ) -> GrpcResult<pb::ListChannelsResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let page = page(request.page_size, &request.page_token)?;
        let (channels, next_page_token) = paged!(
            self.catalog
                .list_channels(&caller, &request.tenant_id, &request.model, &page)
                .await?,
            page
        );
        ok(pb::ListChannelsResponse {
            channels,
            next_page_token,
        })
    }

    async fn update_channel(
        &self,
        request: Request<pb::UpdateChannelRequest>,
    ) -> GrpcResult<pb::UpdateChannelResponse> {
        let caller = Caller::of(&request);
        let credentials = Credentials::from_metadata(request.metadata());
        let request = request.into_inner();
        let channel = self
            .catalog
            .update_channel(
                &caller,
                required(request.channel, "channel")?,
                &mask(request.update_mask),
                request.secret.as_deref(),
                &credentials,
            )
            .await?;
        ok(pb::UpdateChannelResponse {
            channel: Some(channel),
        })
    }

    async fn delete_channel(
        &self,
        request: Request<pb::DeleteChannelRequest>,
    ) -> GrpcResult<pb::DeleteChannelResponse> {
        let caller = Caller::of(&request);
        self.catalog
            .delete_channel(&caller, &request.into_inner().id)
            .await?;
        ok(pb::DeleteChannelResponse {})
    }

    async fn create_model_price(
        &self,
        request: Request<pb::CreateModelPriceRequest>,
    ) -> GrpcResult<pb::CreateModelPriceResponse> {
        let caller = Caller::of(&request);
        let price = required(request.into_inner().model_price, "model_price")?;
        let model_price = self.catalog.create_model_price(&caller, price).await?;
        ok(pb::CreateModelPriceResponse {
            model_price: Some(model_price),
        })
    }

    async fn get_model_price(
        &self,
        request: Request<pb::GetModelPriceRequest>,
    ) -> GrpcResult<pb::GetModelPriceResponse> {
        let caller = Caller::of(&request);
        let model_price = self
            .catalog
            .get_model_price(&caller, &request.into_inner().id)
            .await?;
        ok(pb::GetModelPriceResponse {
            model_price: Some(model_price),
        })
    }

    async fn list_model_prices(
        &self,
        request: Request<pb::ListModelPricesRequest>,
    ) -> GrpcResult<pb::ListModelPricesResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let page = page(request.page_size, &request.page_token)?;
        let (model_prices, next_page_token) = paged!(
            self.catalog
                .list_model_prices(&caller, &request.tenant_id, &request.model, &page)
                .await?,
            page
        );
        ok(pb::ListModelPricesResponse {
            model_prices,
            next_page_token,
        })
    }

    async fn update_model_price(
        &self,
        request: Request<pb::UpdateModelPriceRequest>,
    ) -> GrpcResult<pb::UpdateModelPriceResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let model_price = self
            .catalog
            .update_model_price(
                &caller,
                required(request.model_price, "model_price")?,
                &mask(request.update_mask),
            )
            .await?;
        ok(pb::UpdateModelPriceResponse {
            model_price: Some(model_price),
        })
    }

    async fn delete_model_price(
        &self,
        request: Request<pb::DeleteModelPriceRequest>,
    ) -> GrpcResult<pb::DeleteModelPriceResponse> {
        let caller = Caller::of(&request);
        self.catalog
            .delete_model_price(&caller, &request.into_inner().id)
            .await?;
        ok(pb::DeleteModelPriceResponse {})
    }

    async fn create_group_multiplier(
        &self,
        request: Request<pb::CreateGroupMultiplierRequest>,
    ) -> GrpcResult<pb::CreateGroupMultiplierResponse> {
        let caller = Caller::of(&request);
        let credentials = Credentials::from_metadata(request.metadata());
        let multiplier = required(request.into_inner().group_multiplier, "group_multiplier")?;
        let group_multiplier = self
            .catalog
            .create_group_multiplier(&caller, multiplier, &credentials)
            .await?;
        ok(pb::CreateGroupMultiplierResponse {
            group_multiplier: Some(group_multiplier),
        })
    }

    async fn get_group_multiplier(
        &self,
        request: Request<pb::GetGroupMultiplierRequest>,
    ) -> GrpcResult<pb::GetGroupMultiplierResponse> {
        let caller = Caller::of(&request);
        let group_multiplier = self
            .catalog
            .get_group_multiplier(&caller, &request.into_inner().id)
            .await?;
        ok(pb::GetGroupMultiplierResponse {
            group_multiplier: Some(group_multiplier),
        })
    }

    async fn list_group_multipliers(
        &self,
        request: Request<pb::ListGroupMultipliersRequest>,
    ) -> GrpcResult<pb::ListGroupMultipliersResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let page = page(request.page_size, &request.page_token)?;
        let (group_multipliers, next_page_token) = paged!(
            self.catalog
                .list_group_multipliers(&caller, &request.tenant_id, &request.group_id, &page)
                .await?,
            page
        );
        ok(pb::ListGroupMultipliersResponse {
            group_multipliers,
            next_page_token,
        })
    }

    async fn update_group_multiplier(
        &self,
        request: Request<pb::UpdateGroupMultiplierRequest>,
    ) -> GrpcResult<pb::UpdateGroupMultiplierResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let group_multiplier = self
            .catalog
            .update_group_multiplier(
                &caller,
                required(request.group_multiplier, "group_multiplier")?,
                &mask(request.update_mask),
            )
            .await?;
        ok(pb::UpdateGroupMultiplierResponse {
            group_multiplier: Some(group_multiplier),
        })
    }

    async fn delete_group_multiplier(
        &self,
        request: Request<pb::DeleteGroupMultiplierRequest>,
    ) -> GrpcResult<pb::DeleteGroupMultiplierResponse> {
        let caller = Caller::of(&request);
        self.catalog
            .delete_group_multiplier(&caller, &request.into_inner().id)
            .await?;
        ok(pb::DeleteGroupMultiplierResponse {})
    }

    async fn create_group_price(
        &self,
        request: Request<pb::CreateGroupPriceRequest>,
    ) -> GrpcResult<pb::CreateGroupPriceResponse> {
        let caller = Caller::of(&request);
        let credentials = Credentials::from_metadata(request.metadata());
        let price = required(request.into_inner().group_price, "group_price")?;
        let group_price = self
            .catalog
            .create_group_price(&caller, price, &credentials)
            .await?;
        ok(pb::CreateGroupPriceResponse {
            group_price: Some(group_price),
        })
    }

    async fn get_group_price(
        &self,
        request: Request<pb::GetGroupPriceRequest>,
    ) -> GrpcResult<pb::GetGroupPriceResponse> {
        let caller = Caller::of(&request);
        let group_price = self
            .catalog
            .get_group_price(&caller, &request.into_inner().id)
            .await?;
        ok(pb::GetGroupPriceResponse {
            group_price: Some(group_price),
        })
    }

    async fn list_group_prices(
        &self,
        request: Request<pb::ListGroupPricesRequest>,
    ) -> GrpcResult<pb::ListGroupPricesResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let page = page(request.page_size, &request.page_token)?;
        let (group_prices, next_page_token) = paged!(
            self.catalog
                .list_group_prices(&caller, &request.tenant_id, &request.group_id, &page)
                .await?,
            page
        );
        ok(pb::ListGroupPricesResponse {
            group_prices,
            next_page_token,
        })
    }

    async fn update_group_price(
        &self,
        request: Request<pb::UpdateGroupPriceRequest>,
    ) -> GrpcResult<pb::UpdateGroupPriceResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let group_price = self
            .catalog
            .update_group_price(
                &caller,
                required(request.group_price, "group_price")?,
                &mask(request.update_mask),
            )
            .await?;
        ok(pb::UpdateGroupPriceResponse {
            group_price: Some(group_price),
        })
    }

    async fn delete_group_price(
        &self,
        request: Request<pb::DeleteGroupPriceRequest>,
    ) -> GrpcResult<pb::DeleteGroupPriceResponse> {
        let caller = Caller::of(&request);
        self.catalog
            .delete_group_price(&caller, &request.into_inner().id)
            .await?;
        ok(pb::DeleteGroupPriceResponse {})
    }

    async fn quote(&self, request: Request<pb::QuoteRequest>) -> GrpcResult<pb::QuoteResponse> {
        let caller = Caller::of(&request);
        ok(self.catalog.quote(&caller, &request.into_inner()).await?)
    }

    async fn get_snapshot(
        &self,
        _request: Request<pb::GetSnapshotRequest>,
    ) -> GrpcResult<pb::GetSnapshotResponse> {
        ok(pb::GetSnapshotResponse {
            snapshot: Some(self.catalog.snapshot().await?),
        })
    }

    async fn watch_snapshot(
        &self,
        request: Request<pb::WatchSnapshotRequest>,
    ) -> GrpcResult<tonic::codegen::BoxStream<pb::WatchSnapshotResponse>> {
        let receiver = crate::watch::spawn(
            Arc::clone(&self.catalog),
            request.into_inner().from_version,
            self.shutdown.clone(),
        );
        let stream = tokio_stream::wrappers::ReceiverStream::new(receiver)
            .map(|item| item.map_err(Status::from));
        ok(Box::pin(stream))
    }
}
