//! Identity's nouns: tenants, users, groups, keys, clients.

use gateway_proto::identity::v1 as pb;

use super::{all_pages, mask, present};
use crate::ctx::Ctx;
use crate::error::CliResult;
use crate::resolve::RefKind;
use crate::resource::{Filter, Ref, Resource};

pub struct Tenants;

impl Resource for Tenants {
    type Message = pb::Tenant;
    const NOUN: &'static str = "tenant";
    const NAME_FIELD: Option<&'static str> = Some("slug");
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("ID", "id"),
        ("SLUG", "slug"),
        ("NAME", "name"),
        ("CREATED", "create_time"),
    ];
    const TENANT_SCOPED: bool = false;

    fn id(message: &pb::Tenant) -> &str {
        &message.id
    }
    fn name(message: &pb::Tenant) -> String {
        message.slug.clone()
    }
    async fn list(ctx: &Ctx, _filter: &Filter) -> CliResult<Vec<pb::Tenant>> {
        Ok(all_pages!(
            ctx.identity(),
            list_tenants,
            pb::ListTenantsRequest::default(),
            tenants
        ))
    }
    async fn create(
        ctx: &Ctx,
        tenant: pb::Tenant,
        _secret: Option<String>,
    ) -> CliResult<(pb::Tenant, Option<String>)> {
        let answer = ctx
            .identity()
            .create_tenant(pb::CreateTenantRequest {
                tenant: Some(tenant),
            })
            .await?;
        Ok((present(answer.into_inner().tenant, "tenant")?, None))
    }
    async fn update(
        ctx: &Ctx,
        tenant: pb::Tenant,
        paths: Vec<String>,
        _secret: Option<String>,
    ) -> CliResult<pb::Tenant> {
        let request = pb::UpdateTenantRequest {
            tenant: Some(tenant),
            update_mask: mask(paths),
        };
        present(
            ctx.identity()
                .update_tenant(request)
                .await?
                .into_inner()
                .tenant,
            "tenant",
        )
    }
    async fn delete(ctx: &Ctx, id: &str) -> CliResult<()> {
        ctx.identity()
            .delete_tenant(pb::DeleteTenantRequest { id: id.into() })
            .await?;
        Ok(())
    }
}

pub struct Users;

impl Resource for Users {
    type Message = pb::User;
    const NOUN: &'static str = "user";
    const NAME_FIELD: Option<&'static str> = Some("username");
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("ID", "id"),
        ("USERNAME", "username"),
        ("ROLE", "role"),
        ("EMAIL", "email"),
        ("DISABLED", "disabled"),
        ("LOGIN", "login_method"),
    ];
    const FILTERS: &'static [&'static str] = &["group"];
    // The secret is a new user's password.
    const SECRET: bool = true;

    fn id(message: &pb::User) -> &str {
        &message.id
    }
    fn name(message: &pb::User) -> String {
        message.username.clone()
    }
    async fn list(ctx: &Ctx, filter: &Filter) -> CliResult<Vec<pb::User>> {
        let request = pb::ListUsersRequest {
            tenant_id: filter.tenant_id.clone().unwrap_or_default(),
            group_id: filter.group_id.clone().unwrap_or_default(),
            ..Default::default()
        };
        Ok(all_pages!(ctx.identity(), list_users, request, users))
    }
    async fn create(
        ctx: &Ctx,
        user: pb::User,
        password: Option<String>,
    ) -> CliResult<(pb::User, Option<String>)> {
        let request = pb::CreateUserRequest {
            user: Some(user),
            password: password.unwrap_or_default(),
        };
        Ok((
            present(
                ctx.identity().create_user(request).await?.into_inner().user,
                "user",
            )?,
            None,
        ))
    }
    async fn update(
        ctx: &Ctx,
        user: pb::User,
        paths: Vec<String>,
        password: Option<String>,
    ) -> CliResult<pb::User> {
        if password.is_some() {
            return Err(crate::error::CliError::usage(
                "a password is changed with `gatewayctl users passwd`, not update",
            ));
        }
        let request = pb::UpdateUserRequest {
            user: Some(user),
            update_mask: mask(paths),
        };
        present(
            ctx.identity().update_user(request).await?.into_inner().user,
            "user",
        )
    }
    async fn delete(ctx: &Ctx, id: &str) -> CliResult<()> {
        ctx.identity()
            .delete_user(pb::DeleteUserRequest { id: id.into() })
            .await?;
        Ok(())
    }
}

pub struct Groups;

impl Resource for Groups {
    type Message = pb::Group;
    const NOUN: &'static str = "group";
    const NAME_FIELD: Option<&'static str> = Some("name");
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("ID", "id"),
        ("NAME", "name"),
        ("PRIORITY", "priority"),
        ("CACHE", "completion_cache"),
        ("DESCRIPTION", "description"),
    ];
    const FILTERS: &'static [&'static str] = &["user"];

    fn id(message: &pb::Group) -> &str {
        &message.id
    }
    fn name(message: &pb::Group) -> String {
        message.name.clone()
    }
    async fn list(ctx: &Ctx, filter: &Filter) -> CliResult<Vec<pb::Group>> {
        let request = pb::ListGroupsRequest {
            tenant_id: filter.tenant_id.clone().unwrap_or_default(),
            user_id: filter.user_id.clone().unwrap_or_default(),
            ..Default::default()
        };
        Ok(all_pages!(ctx.identity(), list_groups, request, groups))
    }
    async fn create(
        ctx: &Ctx,
        group: pb::Group,
        _secret: Option<String>,
    ) -> CliResult<(pb::Group, Option<String>)> {
        let answer = ctx
            .identity()
            .create_group(pb::CreateGroupRequest { group: Some(group) })
            .await?;
        Ok((present(answer.into_inner().group, "group")?, None))
    }
    async fn update(
        ctx: &Ctx,
        group: pb::Group,
        paths: Vec<String>,
        _secret: Option<String>,
    ) -> CliResult<pb::Group> {
        let request = pb::UpdateGroupRequest {
            group: Some(group),
            update_mask: mask(paths),
        };
        present(
            ctx.identity()
                .update_group(request)
                .await?
                .into_inner()
                .group,
            "group",
        )
    }
    async fn delete(ctx: &Ctx, id: &str) -> CliResult<()> {
        ctx.identity()
            .delete_group(pb::DeleteGroupRequest { id: id.into() })
            .await?;
        Ok(())
    }
}

pub struct Keys;

impl Resource for Keys {
    type Message = pb::ApiKey;
    const NOUN: &'static str = "key";
    const NAME_FIELD: Option<&'static str> = Some("name");
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("ID", "id"),
        ("NAME", "name"),
        ("PREFIX", "prefix"),
        ("USER", "user_id"),
        ("GROUP", "group_id"),
        ("SPEND LIMIT", "spend_limit_micros"),
        ("FROZEN", "frozen"),
        ("EXPIRES", "expire_time"),
        ("LAST USED", "last_used_time"),
    ];
    const REFS: &'static [Ref] = &[
        Ref {
            flag: "user",
            field: "user_id",
            kind: RefKind::User,
            many: false,
        },
        Ref {
            flag: "group",
            field: "group_id",
            kind: RefKind::Group,
            many: false,
        },
        Ref {
            flag: "plan",
            field: "plan_id",
            kind: RefKind::Plan,
            many: false,
        },
    ];
    const FILTERS: &'static [&'static str] = &["user", "group"];
    const MONEY: &'static [(&'static str, &'static str)] = &[("spend-limit", "spend_limit_micros")];

    fn id(message: &pb::ApiKey) -> &str {
        &message.id
    }
    fn name(message: &pb::ApiKey) -> String {
        message.name.clone()
    }
    async fn list(ctx: &Ctx, filter: &Filter) -> CliResult<Vec<pb::ApiKey>> {
        let request = pb::ListApiKeysRequest {
            tenant_id: filter.tenant_id.clone().unwrap_or_default(),
            user_id: filter.user_id.clone().unwrap_or_default(),
            group_id: filter.group_id.clone().unwrap_or_default(),
            ..Default::default()
        };
        Ok(all_pages!(ctx.identity(), list_api_keys, request, api_keys))
    }
    async fn create(
        ctx: &Ctx,
        key: pb::ApiKey,
        _secret: Option<String>,
    ) -> CliResult<(pb::ApiKey, Option<String>)> {
        let answer = ctx
            .identity()
            .create_api_key(pb::CreateApiKeyRequest { api_key: Some(key) })
            .await?;
        let answer = answer.into_inner();
        Ok((present(answer.api_key, "key")?, Some(answer.key)))
    }
    async fn update(
        ctx: &Ctx,
        key: pb::ApiKey,
        paths: Vec<String>,
        _secret: Option<String>,
    ) -> CliResult<pb::ApiKey> {
        let request = pb::UpdateApiKeyRequest {
            api_key: Some(key),
            update_mask: mask(paths),
        };
        present(
            ctx.identity()
                .update_api_key(request)
                .await?
                .into_inner()
                .api_key,
            "key",
        )
    }
    async fn delete(ctx: &Ctx, id: &str) -> CliResult<()> {
        ctx.identity()
            .delete_api_key(pb::DeleteApiKeyRequest { id: id.into() })
            .await?;
        Ok(())
    }
}

pub struct Clients;

impl Resource for Clients {
    type Message = pb::Client;
    const NOUN: &'static str = "client";
    const NAME_FIELD: Option<&'static str> = Some("name");
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("ID", "id"),
        ("NAME", "name"),
        ("CLIENT ID", "client_id"),
        ("PLAN", "plan_id"),
    ];
    const REFS: &'static [Ref] = &[Ref {
        flag: "plan",
        field: "plan_id",
        kind: RefKind::Plan,
        many: false,
    }];

    fn id(message: &pb::Client) -> &str {
        &message.id
    }
    fn name(message: &pb::Client) -> String {
        message.name.clone()
    }
    async fn list(ctx: &Ctx, filter: &Filter) -> CliResult<Vec<pb::Client>> {
        let request = pb::ListClientsRequest {
            tenant_id: filter.tenant_id.clone().unwrap_or_default(),
            ..Default::default()
        };
        Ok(all_pages!(ctx.identity(), list_clients, request, clients))
    }
    async fn create(
        ctx: &Ctx,
        client: pb::Client,
        _secret: Option<String>,
    ) -> CliResult<(pb::Client, Option<String>)> {
        let answer = ctx
            .identity()
            .create_client(pb::CreateClientRequest {
                client: Some(client),
            })
            .await?;
        Ok((present(answer.into_inner().client, "client")?, None))
    }
    async fn update(
        ctx: &Ctx,
        client: pb::Client,
        paths: Vec<String>,
        _secret: Option<String>,
    ) -> CliResult<pb::Client> {
        let request = pb::UpdateClientRequest {
            client: Some(client),
            update_mask: mask(paths),
        };
        present(
            ctx.identity()
                .update_client(request)
                .await?
                .into_inner()
                .client,
            "client",
        )
    }
    async fn delete(ctx: &Ctx, id: &str) -> CliResult<()> {
        ctx.identity()
            .delete_client(pb::DeleteClientRequest { id: id.into() })
            .await?;
        Ok(())
    }
}
