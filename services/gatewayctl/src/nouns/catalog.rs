//! The catalog's nouns: APIs, AI channels, model prices, group multipliers
//! and group prices.

use gateway_proto::catalog::v1 as pb;

use super::{all_pages, mask, present};
use crate::ctx::Ctx;
use crate::error::CliResult;
use crate::resolve::RefKind;
use crate::resource::{Filter, Ref, Resource};

pub struct Apis;

impl Resource for Apis {
    type Message = pb::Api;
    const NOUN: &'static str = "api";
    const NAME_FIELD: Option<&'static str> = Some("name");
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("ID", "id"),
        ("NAME", "name"),
        ("SLUG", "slug"),
        ("UPSTREAMS", "upstreams.url"),
        ("AUTH", "auth.mode"),
        ("ENABLED", "enabled"),
    ];
    const REFS: &'static [Ref] = &[Ref {
        flag: "plan",
        field: "auth.plan_id",
        kind: RefKind::Plan,
        many: false,
    }];
    // The secret is the value of upstream_auth's header.
    const SECRET: bool = true;

    fn id(message: &pb::Api) -> &str {
        &message.id
    }
    fn name(message: &pb::Api) -> String {
        message.name.clone()
    }
    async fn list(ctx: &Ctx, filter: &Filter) -> CliResult<Vec<pb::Api>> {
        let request = pb::ListApisRequest {
            tenant_id: filter.tenant_id.clone().unwrap_or_default(),
            ..Default::default()
        };
        Ok(all_pages!(ctx.catalog(), list_apis, request, apis))
    }
    async fn create(
        ctx: &Ctx,
        api: pb::Api,
        secret: Option<String>,
    ) -> CliResult<(pb::Api, Option<String>)> {
        let request = pb::CreateApiRequest {
            api: Some(api),
            upstream_auth_secret: secret.unwrap_or_default(),
        };
        Ok((
            present(
                ctx.catalog().create_api(request).await?.into_inner().api,
                "api",
            )?,
            None,
        ))
    }
    async fn update(
        ctx: &Ctx,
        api: pb::Api,
        paths: Vec<String>,
        secret: Option<String>,
    ) -> CliResult<pb::Api> {
        let request = pb::UpdateApiRequest {
            api: Some(api),
            update_mask: mask(paths),
            upstream_auth_secret: secret,
        };
        present(
            ctx.catalog().update_api(request).await?.into_inner().api,
            "api",
        )
    }
    async fn delete(ctx: &Ctx, id: &str) -> CliResult<()> {
        ctx.catalog()
            .delete_api(pb::DeleteApiRequest { id: id.into() })
            .await?;
        Ok(())
    }
}

pub struct Channels;

impl Resource for Channels {
    type Message = pb::Channel;
    const NOUN: &'static str = "channel";
    const NAME_FIELD: Option<&'static str> = Some("name");
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("ID", "id"),
        ("NAME", "name"),
        ("PROVIDER", "provider"),
        ("BASE URL", "base_url"),
        ("MODELS", "models"),
        ("PRIORITY", "priority"),
        ("WEIGHT", "weight"),
        ("ENABLED", "enabled"),
        ("KEY", "secret_hint"),
    ];
    const REFS: &'static [Ref] = &[Ref {
        flag: "group",
        field: "allowed_group_ids",
        kind: RefKind::Group,
        many: true,
    }];
    const FILTERS: &'static [&'static str] = &["model"];
    // The secret is the provider's API key.
    const SECRET: bool = true;

    fn id(message: &pb::Channel) -> &str {
        &message.id
    }
    fn name(message: &pb::Channel) -> String {
        message.name.clone()
    }
    async fn list(ctx: &Ctx, filter: &Filter) -> CliResult<Vec<pb::Channel>> {
        let request = pb::ListChannelsRequest {
            tenant_id: filter.tenant_id.clone().unwrap_or_default(),
            model: filter.model.clone().unwrap_or_default(),
            ..Default::default()
        };
        Ok(all_pages!(ctx.catalog(), list_channels, request, channels))
    }
    async fn create(
        ctx: &Ctx,
        channel: pb::Channel,
        secret: Option<String>,
    ) -> CliResult<(pb::Channel, Option<String>)> {
        let request = pb::CreateChannelRequest {
            channel: Some(channel),
            secret: secret.unwrap_or_default(),
        };
        Ok((
            present(
                ctx.catalog()
                    .create_channel(request)
                    .await?
                    .into_inner()
                    .channel,
                "channel",
            )?,
            None,
        ))
    }
    async fn update(
        ctx: &Ctx,
        channel: pb::Channel,
        paths: Vec<String>,
        secret: Option<String>,
    ) -> CliResult<pb::Channel> {
        let request = pb::UpdateChannelRequest {
            channel: Some(channel),
            update_mask: mask(paths),
            secret,
        };
        present(
            ctx.catalog()
                .update_channel(request)
                .await?
                .into_inner()
                .channel,
            "channel",
        )
    }
    async fn delete(ctx: &Ctx, id: &str) -> CliResult<()> {
        ctx.catalog()
            .delete_channel(pb::DeleteChannelRequest { id: id.into() })
            .await?;
        Ok(())
    }
}

const PRICE_MONEY: &[(&str, &str)] = &[
    ("input-price", "input_micros_per_million_tokens"),
    ("output-price", "output_micros_per_million_tokens"),
    (
        "cached-input-price",
        "cached_input_micros_per_million_tokens",
    ),
];

pub struct Prices;

impl Resource for Prices {
    type Message = pb::ModelPrice;
    const NOUN: &'static str = "price";
    const NAME_FIELD: Option<&'static str> = Some("model");
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("ID", "id"),
        ("MODEL", "model"),
        ("TENANT", "tenant_id"),
        ("INPUT /1M", "input_micros_per_million_tokens"),
        ("OUTPUT /1M", "output_micros_per_million_tokens"),
        ("CACHED /1M", "cached_input_micros_per_million_tokens"),
    ];
    const FILTERS: &'static [&'static str] = &["model"];
    const MONEY: &'static [(&'static str, &'static str)] = PRICE_MONEY;
    const EMPTY_TENANT_IS_GLOBAL: bool = true;

    fn id(message: &pb::ModelPrice) -> &str {
        &message.id
    }
    fn name(message: &pb::ModelPrice) -> String {
        message.model.clone()
    }
    async fn list(ctx: &Ctx, filter: &Filter) -> CliResult<Vec<pb::ModelPrice>> {
        let request = pb::ListModelPricesRequest {
            tenant_id: filter.tenant_id.clone().unwrap_or_default(),
            model: filter.model.clone().unwrap_or_default(),
            ..Default::default()
        };
        Ok(all_pages!(
            ctx.catalog(),
            list_model_prices,
            request,
            model_prices
        ))
    }
    async fn create(
        ctx: &Ctx,
        price: pb::ModelPrice,
        _secret: Option<String>,
    ) -> CliResult<(pb::ModelPrice, Option<String>)> {
        let request = pb::CreateModelPriceRequest {
            model_price: Some(price),
        };
        Ok((
            present(
                ctx.catalog()
                    .create_model_price(request)
                    .await?
                    .into_inner()
                    .model_price,
                "price",
            )?,
            None,
        ))
    }
    async fn update(
        ctx: &Ctx,
        price: pb::ModelPrice,
        paths: Vec<String>,
        _secret: Option<String>,
    ) -> CliResult<pb::ModelPrice> {
        let request = pb::UpdateModelPriceRequest {
            model_price: Some(price),
            update_mask: mask(paths),
        };
        present(
            ctx.catalog()
                .update_model_price(request)
                .await?
                .into_inner()
                .model_price,
            "price",
        )
    }
    async fn delete(ctx: &Ctx, id: &str) -> CliResult<()> {
        ctx.catalog()
            .delete_model_price(pb::DeleteModelPriceRequest { id: id.into() })
            .await?;
        Ok(())
    }
}

pub struct Multipliers;

impl Resource for Multipliers {
    type Message = pb::GroupMultiplier;
    const NOUN: &'static str = "multiplier";
    // Known by its group: `multipliers get gold`.
    const NAME_FIELD: Option<&'static str> = None;
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("ID", "id"),
        ("GROUP", "group_id"),
        ("MULTIPLIER PPM", "multiplier_ppm"),
    ];
    const REFS: &'static [Ref] = &[Ref {
        flag: "group",
        field: "group_id",
        kind: RefKind::Group,
        many: false,
    }];
    const FILTERS: &'static [&'static str] = &["group"];

    async fn canonical(ctx: &Ctx, reference: &str) -> CliResult<String> {
        crate::resolve::id_of(ctx, RefKind::Group, reference).await
    }
    fn id(message: &pb::GroupMultiplier) -> &str {
        &message.id
    }
    fn name(message: &pb::GroupMultiplier) -> String {
        message.group_id.clone()
    }
    async fn list(ctx: &Ctx, filter: &Filter) -> CliResult<Vec<pb::GroupMultiplier>> {
        let request = pb::ListGroupMultipliersRequest {
            tenant_id: filter.tenant_id.clone().unwrap_or_default(),
            group_id: filter.group_id.clone().unwrap_or_default(),
            ..Default::default()
        };
        Ok(all_pages!(
            ctx.catalog(),
            list_group_multipliers,
            request,
            group_multipliers
        ))
    }
    async fn create(
        ctx: &Ctx,
        multiplier: pb::GroupMultiplier,
        _secret: Option<String>,
    ) -> CliResult<(pb::GroupMultiplier, Option<String>)> {
        let request = pb::CreateGroupMultiplierRequest {
            group_multiplier: Some(multiplier),
        };
        let answer = ctx.catalog().create_group_multiplier(request).await?;
        Ok((
            present(answer.into_inner().group_multiplier, "multiplier")?,
            None,
        ))
    }
    async fn update(
        ctx: &Ctx,
        multiplier: pb::GroupMultiplier,
        paths: Vec<String>,
        _secret: Option<String>,
    ) -> CliResult<pb::GroupMultiplier> {
        let request = pb::UpdateGroupMultiplierRequest {
            group_multiplier: Some(multiplier),
            update_mask: mask(paths),
        };
        present(
            ctx.catalog()
                .update_group_multiplier(request)
                .await?
                .into_inner()
                .group_multiplier,
            "multiplier",
        )
    }
    async fn delete(ctx: &Ctx, id: &str) -> CliResult<()> {
        ctx.catalog()
            .delete_group_multiplier(pb::DeleteGroupMultiplierRequest { id: id.into() })
            .await?;
        Ok(())
    }
}

pub struct GroupPrices;

impl Resource for GroupPrices {
    type Message = pb::GroupPrice;
    const NOUN: &'static str = "group price";
    const NAME_FIELD: Option<&'static str> = Some("model");
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("ID", "id"),
        ("GROUP", "group_id"),
        ("MODEL", "model"),
        ("INPUT /1M", "input_micros_per_million_tokens"),
        ("OUTPUT /1M", "output_micros_per_million_tokens"),
        ("CACHED /1M", "cached_input_micros_per_million_tokens"),
    ];
    const REFS: &'static [Ref] = &[Ref {
        flag: "group",
        field: "group_id",
        kind: RefKind::Group,
        many: false,
    }];
    const MONEY: &'static [(&'static str, &'static str)] = PRICE_MONEY;
    const FILTERS: &'static [&'static str] = &["group", "model"];

    /// `gold/gpt-4o` -> `<gold's id>/gpt-4o`.
    async fn canonical(ctx: &Ctx, reference: &str) -> CliResult<String> {
        let Some((group, model)) = reference.rsplit_once('/') else {
            return Ok(reference.to_owned());
        };
        let group = crate::resolve::id_of(ctx, RefKind::Group, group).await?;
        Ok(format!("{group}/{model}"))
    }
    fn id(message: &pb::GroupPrice) -> &str {
        &message.id
    }
    /// `group-id/model`; commands also take `group-name/model`.
    fn name(message: &pb::GroupPrice) -> String {
        format!("{}/{}", message.group_id, message.model)
    }
    async fn list(ctx: &Ctx, filter: &Filter) -> CliResult<Vec<pb::GroupPrice>> {
        let request = pb::ListGroupPricesRequest {
            tenant_id: filter.tenant_id.clone().unwrap_or_default(),
            group_id: filter.group_id.clone().unwrap_or_default(),
            model: filter.model.clone().unwrap_or_default(),
            ..Default::default()
        };
        Ok(all_pages!(
            ctx.catalog(),
            list_group_prices,
            request,
            group_prices
        ))
    }
    async fn create(
        ctx: &Ctx,
        price: pb::GroupPrice,
        _secret: Option<String>,
    ) -> CliResult<(pb::GroupPrice, Option<String>)> {
        let request = pb::CreateGroupPriceRequest {
            group_price: Some(price),
        };
        Ok((
            present(
                ctx.catalog()
                    .create_group_price(request)
                    .await?
                    .into_inner()
                    .group_price,
                "group price",
            )?,
            None,
        ))
    }
    async fn update(
        ctx: &Ctx,
        price: pb::GroupPrice,
        paths: Vec<String>,
        _secret: Option<String>,
    ) -> CliResult<pb::GroupPrice> {
        let request = pb::UpdateGroupPriceRequest {
            group_price: Some(price),
            update_mask: mask(paths),
        };
        present(
            ctx.catalog()
                .update_group_price(request)
                .await?
                .into_inner()
                .group_price,
            "group price",
        )
    }
    async fn delete(ctx: &Ctx, id: &str) -> CliResult<()> {
        ctx.catalog()
            .delete_group_price(pb::DeleteGroupPriceRequest { id: id.into() })
            .await?;
        Ok(())
    }
}
