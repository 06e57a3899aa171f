//! The tonic adapter for `gateway.identity.v1.IdentityService`: wire types
//! in, [`Directory`] calls, wire types out. No decisions are made here.

use std::sync::Arc;

use gateway_auth::{Access, Caller, Role};
use gateway_proto::identity::v1 as pb;
use gateway_proto::identity::v1::identity_service_server::IdentityService;
use gateway_runtime::CancellationToken;
use gateway_storage::page::Page;
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status};

use crate::directory::{
    Authentication, Directory, KeyRequest, KeyStatus, Mask, Principal, Session,
};
use crate::error::IdentityError;
use crate::store::{
    ApiKey, Change, ChangeKind, Client, ClientUpdate, Group, GroupUpdate, LoginMethod, Member,
    Tenant, User, UserUpdate,
};
use crate::watch;

pub struct IdentityGrpc {
    directory: Arc<Directory>,
    shutdown: CancellationToken,
}

impl IdentityGrpc {
    pub fn new(directory: Arc<Directory>, shutdown: CancellationToken) -> Self {
        Self {
            directory,
            shutdown,
        }
    }
}

/// Who may call each RPC; finer checks (own tenant, own keys) are the
/// directory's. An RPC missing here is refused (deny by default).
pub fn access_policy(method: &str) -> Option<Access> {
    Some(match method {
        "SignUp" | "Login" | "GetPublicKeys" => Access::Open,
        "GetUser" | "ChangePassword" | "GetGroup" | "ListGroups" | "CreateApiKey" | "GetApiKey"
        | "ListApiKeys" | "UpdateApiKey" | "DeleteApiKey" | "FreezeApiKey" | "UnfreezeApiKey" => {
            Access::Authenticated
        }
        "GetTenant" | "GetTenantBySlug" | "ListTenants" | "UpdateTenant" | "CreateUser"
        | "ListUsers" | "UpdateUser" | "DeleteUser" | "CreateGroup" | "UpdateGroup"
        | "DeleteGroup" | "AddGroupMember" | "RemoveGroupMember" | "ListGroupMembers"
        | "CreateClient" | "GetClient" | "ListClients" | "UpdateClient" | "DeleteClient" => {
            Access::Admin
        }
        "CreateTenant" | "DeleteTenant" | "AuthenticateKey" | "WatchKeys" => Access::Superadmin,
        _ => return None,
    })
}

fn page(page_size: i32, page_token: &str) -> Result<Page, Status> {
    Page::new(page_size, page_token).map_err(|error| Status::invalid_argument(error.to_string()))
}

fn mask(update_mask: Option<prost_types::FieldMask>) -> Mask {
    update_mask.map(|mask| mask.paths).unwrap_or_default()
}

fn required<T>(value: Option<T>, field: &'static str) -> Result<T, Status> {
    value.ok_or_else(|| Status::invalid_argument(format!("{field}: is required")))
}

fn timestamp(micros: i64) -> Option<prost_types::Timestamp> {
    Some(gateway_proto::timestamp_from_micros(micros))
}

fn optional_timestamp(micros: Option<i64>) -> Option<prost_types::Timestamp> {
    micros.map(gateway_proto::timestamp_from_micros)
}

fn role_to_proto(role: Role) -> pb::Role {
    match role {
        Role::User => pb::Role::User,
        Role::Admin => pb::Role::Admin,
        Role::Superadmin => pb::Role::Superadmin,
    }
}

fn role_from_proto(role: i32) -> Option<Role> {
    match pb::Role::try_from(role).ok()? {
        pb::Role::User => Some(Role::User),
        pb::Role::Admin => Some(Role::Admin),
        pb::Role::Superadmin => Some(Role::Superadmin),
        pb::Role::Unspecified => None,
    }
}

fn tenant_to_proto(tenant: Tenant) -> pb::Tenant {
    pb::Tenant {
        id: tenant.id,
        slug: tenant.slug,
        name: tenant.name,
        create_time: timestamp(tenant.created_at),
        update_time: timestamp(tenant.updated_at),
    }
}

fn user_to_proto(user: User) -> pb::User {
    pb::User {
        id: user.id,
        tenant_id: user.tenant_id,
        username: user.username,
        email: user.email,
        role: role_to_proto(user.role).into(),
        disabled: user.disabled,
        login_method: match user.login_method {
            LoginMethod::Password => pb::LoginMethod::Password,
            LoginMethod::Ldap => pb::LoginMethod::Ldap,
        }
        .into(),
        create_time: timestamp(user.created_at),
        update_time: timestamp(user.updated_at),
        last_login_time: optional_timestamp(user.last_login_at),
    }
}

fn group_to_proto(group: Group) -> pb::Group {
    pb::Group {
        id: group.id,
        tenant_id: group.tenant_id,
        name: group.name,
        priority: group.priority,
        description: group.description,
        completion_cache: group.completion_cache,
        create_time: timestamp(group.created_at),
        update_time: timestamp(group.updated_at),
    }
}

fn member_to_proto(member: Member) -> pb::GroupMember {
    pb::GroupMember {
        group_id: member.group_id,
        user_id: member.user_id,
        username: member.username,
        create_time: timestamp(member.created_at),
    }
}

fn key_to_proto(key: ApiKey) -> pb::ApiKey {
    pb::ApiKey {
        id: key.id,
        tenant_id: key.tenant_id,
        user_id: key.user_id,
        name: key.name,
        prefix: key.prefix,
        group_id: key.group_id,
        spend_limit_micros: key.spend_limit_micros,
        plan_id: key.plan_id,
        expire_time: optional_timestamp(key.expire_at),
        frozen: key.frozen,
        allowed_models: key.allowed_models,
        allowed_ips: key.allowed_ips,
        completion_cache: key.completion_cache,
        last_used_time: optional_timestamp(key.last_used_at),
        create_time: timestamp(key.created_at),
        update_time: timestamp(key.updated_at),
    }
}

fn key_request(key: pb::ApiKey) -> KeyRequest {
    KeyRequest {
        tenant_id: key.tenant_id,
        user_id: key.user_id,
        name: key.name,
        group_id: key.group_id.filter(|group| !group.is_empty()),
        spend_limit_micros: key.spend_limit_micros,
        plan_id: key.plan_id,
        expire_at: key
            .expire_time
            .as_ref()
            .map(gateway_proto::micros_from_timestamp),
        allowed_models: key.allowed_models,
        allowed_ips: key.allowed_ips,
        completion_cache: key.completion_cache,
    }
}

fn client_to_proto(client: Client) -> pb::Client {
    pb::Client {
        id: client.id,
        tenant_id: client.tenant_id,
        name: client.name,
        client_id: client.client_id,
        plan_id: client.plan_id,
        create_time: timestamp(client.created_at),
        update_time: timestamp(client.updated_at),
    }
}

fn principal_to_proto(principal: Principal) -> pb::Principal {
    let key = principal.key;
    pb::Principal {
        tenant_id: key.tenant_id,
        tenant_slug: principal.tenant_slug,
        user_id: key.user_id,
        username: principal.username,
        key_id: key.id,
        role: role_to_proto(principal.role).into(),
        groups: principal
            .groups
            .into_iter()
            .map(|group| pb::PrincipalGroup {
                id: group.id,
                name: group.name,
                priority: group.priority,
                completion_cache: group.completion_cache,
            })
            .collect(),
        key_group_id: key.group_id,
        plan_id: key.plan_id,
        spend_limit_micros: key.spend_limit_micros,
        expire_time: optional_timestamp(key.expire_at),
        frozen: key.frozen,
        allowed_models: key.allowed_models,
        allowed_ips: key.allowed_ips,
        completion_cache: key.completion_cache,
        client: principal.client.map(|client| pb::PrincipalClient {
            id: client.id,
            client_id: client.client_id,
            plan_id: client.plan_id,
        }),
    }
}

fn status_to_proto(status: KeyStatus) -> pb::KeyStatus {
    match status {
        KeyStatus::Active => pb::KeyStatus::Active,
        KeyStatus::Unknown => pb::KeyStatus::Unknown,
        KeyStatus::Expired => pb::KeyStatus::Expired,
        KeyStatus::Frozen => pb::KeyStatus::Frozen,
        KeyStatus::UserDisabled => pb::KeyStatus::UserDisabled,
        KeyStatus::IpNotAllowed => pb::KeyStatus::IpNotAllowed,
        KeyStatus::ClientUnknown => pb::KeyStatus::ClientUnknown,
    }
}

fn change_to_proto(change: Change) -> pb::KeyChange {
    let kind = match change.kind {
        ChangeKind::KeyCreated => pb::KeyChangeKind::KeyCreated,
        ChangeKind::KeyUpdated => pb::KeyChangeKind::KeyUpdated,
        ChangeKind::KeyFrozen => pb::KeyChangeKind::KeyFrozen,
        ChangeKind::KeyUnfrozen => pb::KeyChangeKind::KeyUnfrozen,
        ChangeKind::KeyDeleted => pb::KeyChangeKind::KeyDeleted,
        ChangeKind::UserUpdated => pb::KeyChangeKind::UserUpdated,
        ChangeKind::UserDisabled => pb::KeyChangeKind::UserDisabled,
        ChangeKind::UserDeleted => pb::KeyChangeKind::UserDeleted,
        ChangeKind::MembershipChanged => pb::KeyChangeKind::MembershipChanged,
        ChangeKind::GroupUpdated => pb::KeyChangeKind::GroupUpdated,
        ChangeKind::GroupDeleted => pb::KeyChangeKind::GroupDeleted,
        ChangeKind::ClientCreated => pb::KeyChangeKind::ClientCreated,
        ChangeKind::ClientUpdated => pb::KeyChangeKind::ClientUpdated,
        ChangeKind::ClientDeleted => pb::KeyChangeKind::ClientDeleted,
        ChangeKind::TenantUpdated => pb::KeyChangeKind::TenantUpdated,
        ChangeKind::TenantDeleted => pb::KeyChangeKind::TenantDeleted,
    };
    pb::KeyChange {
        version: change.version,
        kind: kind.into(),
        tenant_id: change.tenant_id,
        user_id: change.user_id,
        key_id: change.key_id,
        key_sha256: change.key_sha256,
        group_id: change.group_id,
        client_id: change.client_id,
        change_time: timestamp(change.created_at),
    }
}

fn session_parts(session: Session) -> (String, Option<prost_types::Timestamp>, pb::User) {
    (
        session.token.token,
        timestamp(session.token.expires_at_secs.saturating_mul(1_000_000)),
        user_to_proto(session.user),
    )
}

type GrpcResult<T> = Result<Response<T>, Status>;

fn ok<T>(value: T) -> GrpcResult<T> {
    Ok(Response::new(value))
}

#[tonic::async_trait]
impl IdentityService for IdentityGrpc {
    async fn create_tenant(
        &self,
        request: Request<pb::CreateTenantRequest>,
    ) -> GrpcResult<pb::CreateTenantResponse> {
        let tenant = required(request.into_inner().tenant, "tenant")?;
        let tenant = self
            .directory
            .create_tenant(&tenant.slug, &tenant.name)
            .await?;
        ok(pb::CreateTenantResponse {
            tenant: Some(tenant_to_proto(tenant)),
        })
    }

    async fn get_tenant(
        &self,
        request: Request<pb::GetTenantRequest>,
    ) -> GrpcResult<pb::GetTenantResponse> {
        let caller = Caller::of(&request);
        let tenant = self
            .directory
            .get_tenant(&caller, &request.into_inner().id)
            .await?;
        ok(pb::GetTenantResponse {
            tenant: Some(tenant_to_proto(tenant)),
        })
    }

    async fn get_tenant_by_slug(
        &self,
        request: Request<pb::GetTenantBySlugRequest>,
    ) -> GrpcResult<pb::GetTenantBySlugResponse> {
        let caller = Caller::of(&request);
        let tenant = self
            .directory
            .get_tenant_by_slug(&caller, &request.into_inner().slug)
            .await?;
        ok(pb::GetTenantBySlugResponse {
            tenant: Some(tenant_to_proto(tenant)),
        })
    }

    async fn list_tenants(
        &self,
        request: Request<pb::ListTenantsRequest>,
    ) -> GrpcResult<pb::ListTenantsResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let page = page(request.page_size, &request.page_token)?;
        let mut tenants = self.directory.list_tenants(&caller, &page).await?;
        let next_page_token = page.finish(&mut tenants, |tenant| &tenant.id);
        ok(pb::ListTenantsResponse {
            tenants: tenants.into_iter().map(tenant_to_proto).collect(),
            next_page_token,
        })
    }

    async fn update_tenant(
        &self,
        request: Request<pb::UpdateTenantRequest>,
    ) -> GrpcResult<pb::UpdateTenantResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let tenant = required(request.tenant, "tenant")?;
        let tenant = self
            .directory
            .update_tenant(
                &caller,
                &tenant.id,
                &tenant.slug,
                &tenant.name,
                &mask(request.update_mask),
            )
            .await?;
        ok(pb::UpdateTenantResponse {
            tenant: Some(tenant_to_proto(tenant)),
        })
    }

    async fn delete_tenant(
        &self,
        request: Request<pb::DeleteTenantRequest>,
    ) -> GrpcResult<pb::DeleteTenantResponse> {
        self.directory
            .delete_tenant(&request.into_inner().id)
            .await?;
        ok(pb::DeleteTenantResponse {})
    }

    async fn sign_up(&self, request: Request<pb::SignUpRequest>) -> GrpcResult<pb::SignUpResponse> {
        let request = request.into_inner();
        let (tenant, session) = self
            .directory
            .sign_up(
                &request.tenant_slug,
                &request.tenant_name,
                &request.username,
                &request.email,
                &request.password,
            )
            .await?;
        let (access_token, expire_time, user) = session_parts(session);
        ok(pb::SignUpResponse {
            tenant: Some(tenant_to_proto(tenant)),
            user: Some(user),
            access_token,
            token_type: "Bearer".to_owned(),
            expire_time,
        })
    }

    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> GrpcResult<pb::CreateUserResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let user = required(request.user, "user")?;
        let role = if user.role == 0 {
            None
        } else {
            Some(
                role_from_proto(user.role)
                    .ok_or_else(|| Status::invalid_argument("user.role: unknown role"))?,
            )
        };
        let user = self
            .directory
            .create_user(
                &caller,
                &user.tenant_id,
                &user.username,
                &user.email,
                role,
                &request.password,
            )
            .await?;
        ok(pb::CreateUserResponse {
            user: Some(user_to_proto(user)),
        })
    }

    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> GrpcResult<pb::GetUserResponse> {
        let caller = Caller::of(&request);
        let user = self
            .directory
            .get_user(&caller, &request.into_inner().id)
            .await?;
        ok(pb::GetUserResponse {
            user: Some(user_to_proto(user)),
        })
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> GrpcResult<pb::ListUsersResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let page = page(request.page_size, &request.page_token)?;
        let mut users = self
            .directory
            .list_users(&caller, &page, &request.tenant_id, &request.group_id)
            .await?;
        let next_page_token = page.finish(&mut users, |user| &user.id);
        ok(pb::ListUsersResponse {
            users: users.into_iter().map(user_to_proto).collect(),
            next_page_token,
        })
    }

    async fn update_user(
        &self,
        request: Request<pb::UpdateUserRequest>,
    ) -> GrpcResult<pb::UpdateUserResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let user = required(request.user, "user")?;
        let changes = UserUpdate {
            username: Some(user.username),
            email: Some(user.email),
            role: role_from_proto(user.role),
            disabled: Some(user.disabled),
        };
        let user = self
            .directory
            .update_user(&caller, &user.id, changes, &mask(request.update_mask))
            .await?;
        ok(pb::UpdateUserResponse {
            user: Some(user_to_proto(user)),
        })
    }

    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> GrpcResult<pb::DeleteUserResponse> {
        let caller = Caller::of(&request);
        self.directory
            .delete_user(&caller, &request.into_inner().id)
            .await?;
        ok(pb::DeleteUserResponse {})
    }

    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> GrpcResult<pb::ChangePasswordResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        self.directory
            .change_password(
                &caller,
                &request.user_id,
                &request.current_password,
                &request.new_password,
            )
            .await?;
        ok(pb::ChangePasswordResponse {})
    }

    async fn login(&self, request: Request<pb::LoginRequest>) -> GrpcResult<pb::LoginResponse> {
        let request = request.into_inner();
        let ldap = request.method == i32::from(pb::LoginMethod::Ldap);
        let session = self
            .directory
            .login(
                &request.tenant_slug,
                &request.username,
                &request.password,
                ldap,
            )
            .await?;
        let (access_token, expire_time, user) = session_parts(session);
        ok(pb::LoginResponse {
            access_token,
            token_type: "Bearer".to_owned(),
            expire_time,
            user: Some(user),
        })
    }

    async fn get_public_keys(
        &self,
        _request: Request<pb::GetPublicKeysRequest>,
    ) -> GrpcResult<pb::GetPublicKeysResponse> {
        let (keys, issuer) = self.directory.public_keys();
        ok(pb::GetPublicKeysResponse {
            keys: keys
                .iter()
                .map(|key| pb::PublicKey {
                    kid: key.kid.clone(),
                    algorithm: key.algorithm.clone(),
                    public_key_pem: key.public_key_pem.clone(),
                    create_time: timestamp(key.created_at),
                    expire_time: None,
                    active: key.active,
                })
                .collect(),
            issuer: issuer.to_owned(),
        })
    }

    async fn create_group(
        &self,
        request: Request<pb::CreateGroupRequest>,
    ) -> GrpcResult<pb::CreateGroupResponse> {
        let caller = Caller::of(&request);
        let group = required(request.into_inner().group, "group")?;
        let group = self
            .directory
            .create_group(
                &caller,
                &group.tenant_id,
                &group.name,
                &group.description,
                (group.priority, group.completion_cache),
            )
            .await?;
        ok(pb::CreateGroupResponse {
            group: Some(group_to_proto(group)),
        })
    }

    async fn get_group(
        &self,
        request: Request<pb::GetGroupRequest>,
    ) -> GrpcResult<pb::GetGroupResponse> {
        let caller = Caller::of(&request);
        let group = self
            .directory
            .get_group(&caller, &request.into_inner().id)
            .await?;
        ok(pb::GetGroupResponse {
            group: Some(group_to_proto(group)),
        })
    }

    async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> GrpcResult<pb::ListGroupsResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let page = page(request.page_size, &request.page_token)?;
        let mut groups = self
            .directory
            .list_groups(&caller, &page, &request.tenant_id, &request.user_id)
            .await?;
        let next_page_token = page.finish(&mut groups, |group| &group.id);
        ok(pb::ListGroupsResponse {
            groups: groups.into_iter().map(group_to_proto).collect(),
            next_page_token,
        })
    }

    async fn update_group(
        &self,
        request: Request<pb::UpdateGroupRequest>,
    ) -> GrpcResult<pb::UpdateGroupResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let group = required(request.group, "group")?;
        let changes = GroupUpdate {
            name: Some(group.name),
            description: Some(group.description),
            priority: Some(group.priority),
            completion_cache: Some(group.completion_cache),
        };
        let group = self
            .directory
            .update_group(&caller, &group.id, changes, &mask(request.update_mask))
            .await?;
        ok(pb::UpdateGroupResponse {
            group: Some(group_to_proto(group)),
        })
    }

    async fn delete_group(
        &self,
        request: Request<pb::DeleteGroupRequest>,
    ) -> GrpcResult<pb::DeleteGroupResponse> {
        let caller = Caller::of(&request);
        self.directory
            .delete_group(&caller, &request.into_inner().id)
            .await?;
        ok(pb::DeleteGroupResponse {})
    }

    async fn add_group_member(
        &self,
        request: Request<pb::AddGroupMemberRequest>,
    ) -> GrpcResult<pb::AddGroupMemberResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let member = self
            .directory
            .add_group_member(&caller, &request.group_id, &request.user_id)
            .await?;
        ok(pb::AddGroupMemberResponse {
            member: Some(member_to_proto(member)),
        })
    }

    async fn remove_group_member(
        &self,
        request: Request<pb::RemoveGroupMemberRequest>,
    ) -> GrpcResult<pb::RemoveGroupMemberResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        self.directory
            .remove_group_member(&caller, &request.group_id, &request.user_id)
            .await?;
        ok(pb::RemoveGroupMemberResponse {})
    }

    async fn list_group_members(
        &self,
        request: Request<pb::ListGroupMembersRequest>,
    ) -> GrpcResult<pb::ListGroupMembersResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let page = page(request.page_size, &request.page_token)?;
        let mut members = self
            .directory
            .list_group_members(&caller, &request.group_id, &page)
            .await?;
        let next_page_token = page.finish(&mut members, |member| &member.user_id);
        ok(pb::ListGroupMembersResponse {
            members: members.into_iter().map(member_to_proto).collect(),
            next_page_token,
        })
    }

    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> GrpcResult<pb::CreateApiKeyResponse> {
        let caller = Caller::of(&request);
        let key = required(request.into_inner().api_key, "api_key")?;
        let (key, plaintext) = self
            .directory
            .create_api_key(&caller, key_request(key))
            .await?;
        ok(pb::CreateApiKeyResponse {
            api_key: Some(key_to_proto(key)),
            key: plaintext,
        })
    }

    async fn get_api_key(
        &self,
        request: Request<pb::GetApiKeyRequest>,
    ) -> GrpcResult<pb::GetApiKeyResponse> {
        let caller = Caller::of(&request);
        let key = self
            .directory
            .get_api_key(&caller, &request.into_inner().id)
            .await?;
        ok(pb::GetApiKeyResponse {
            api_key: Some(key_to_proto(key)),
        })
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> GrpcResult<pb::ListApiKeysResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let page = page(request.page_size, &request.page_token)?;
        let mut keys = self
            .directory
            .list_api_keys(
                &caller,
                &page,
                &request.tenant_id,
                &request.user_id,
                &request.group_id,
            )
            .await?;
        let next_page_token = page.finish(&mut keys, |key| &key.id);
        ok(pb::ListApiKeysResponse {
            api_keys: keys.into_iter().map(key_to_proto).collect(),
            next_page_token,
        })
    }

    async fn update_api_key(
        &self,
        request: Request<pb::UpdateApiKeyRequest>,
    ) -> GrpcResult<pb::UpdateApiKeyResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let key = required(request.api_key, "api_key")?;
        let id = key.id.clone();
        let key = self
            .directory
            .update_api_key(&caller, &id, key_request(key), &mask(request.update_mask))
            .await?;
        ok(pb::UpdateApiKeyResponse {
            api_key: Some(key_to_proto(key)),
        })
    }

    async fn delete_api_key(
        &self,
        request: Request<pb::DeleteApiKeyRequest>,
    ) -> GrpcResult<pb::DeleteApiKeyResponse> {
        let caller = Caller::of(&request);
        self.directory
            .delete_api_key(&caller, &request.into_inner().id)
            .await?;
        ok(pb::DeleteApiKeyResponse {})
    }

    async fn freeze_api_key(
        &self,
        request: Request<pb::FreezeApiKeyRequest>,
    ) -> GrpcResult<pb::FreezeApiKeyResponse> {
        let caller = Caller::of(&request);
        let key = self
            .directory
            .set_api_key_frozen(&caller, &request.into_inner().id, true)
            .await?;
        ok(pb::FreezeApiKeyResponse {
            api_key: Some(key_to_proto(key)),
        })
    }

    async fn unfreeze_api_key(
        &self,
        request: Request<pb::UnfreezeApiKeyRequest>,
    ) -> GrpcResult<pb::UnfreezeApiKeyResponse> {
        let caller = Caller::of(&request);
        let key = self
            .directory
            .set_api_key_frozen(&caller, &request.into_inner().id, false)
            .await?;
        ok(pb::UnfreezeApiKeyResponse {
            api_key: Some(key_to_proto(key)),
        })
    }

    async fn create_client(
        &self,
        request: Request<pb::CreateClientRequest>,
    ) -> GrpcResult<pb::CreateClientResponse> {
        let caller = Caller::of(&request);
        let client = required(request.into_inner().client, "client")?;
        let client = self
            .directory
            .create_client(
                &caller,
                &client.tenant_id,
                &client.name,
                &client.client_id,
                &client.plan_id,
            )
            .await?;
        ok(pb::CreateClientResponse {
            client: Some(client_to_proto(client)),
        })
    }

    async fn get_client(
        &self,
        request: Request<pb::GetClientRequest>,
    ) -> GrpcResult<pb::GetClientResponse> {
        let caller = Caller::of(&request);
        let client = self
            .directory
            .get_client(&caller, &request.into_inner().id)
            .await?;
        ok(pb::GetClientResponse {
            client: Some(client_to_proto(client)),
        })
    }

    async fn list_clients(
        &self,
        request: Request<pb::ListClientsRequest>,
    ) -> GrpcResult<pb::ListClientsResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let page = page(request.page_size, &request.page_token)?;
        let mut clients = self
            .directory
            .list_clients(&caller, &page, &request.tenant_id)
            .await?;
        let next_page_token = page.finish(&mut clients, |client| &client.id);
        ok(pb::ListClientsResponse {
            clients: clients.into_iter().map(client_to_proto).collect(),
            next_page_token,
        })
    }

    async fn update_client(
        &self,
        request: Request<pb::UpdateClientRequest>,
    ) -> GrpcResult<pb::UpdateClientResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let client = required(request.client, "client")?;
        let changes = ClientUpdate {
            name: Some(client.name),
            client_id: Some(client.client_id),
            plan_id: Some(client.plan_id),
        };
        let client = self
            .directory
            .update_client(&caller, &client.id, changes, &mask(request.update_mask))
            .await?;
        ok(pb::UpdateClientResponse {
            client: Some(client_to_proto(client)),
        })
    }

    async fn delete_client(
        &self,
        request: Request<pb::DeleteClientRequest>,
    ) -> GrpcResult<pb::DeleteClientResponse> {
        let caller = Caller::of(&request);
        self.directory
            .delete_client(&caller, &request.into_inner().id)
            .await?;
        ok(pb::DeleteClientResponse {})
    }

    async fn authenticate_key(
        &self,
        request: Request<pb::AuthenticateKeyRequest>,
    ) -> GrpcResult<pb::AuthenticateKeyResponse> {
        let request = request.into_inner();
        let Authentication {
            status,
            principal,
            version,
        } = self
            .directory
            .authenticate_key(
                &request.key_sha256,
                request.client_id.as_deref(),
                request.remote_ip.as_deref(),
            )
            .await?;
        ok(pb::AuthenticateKeyResponse {
            status: status_to_proto(status).into(),
            principal: principal.map(principal_to_proto),
            version,
        })
    }

    async fn watch_keys(
        &self,
        request: Request<pb::WatchKeysRequest>,
    ) -> GrpcResult<tonic::codegen::BoxStream<pb::WatchKeysResponse>> {
        let from_version = request.into_inner().from_version;
        let receiver = watch::spawn(
            self.directory.store().clone(),
            self.directory.changed(),
            from_version,
            self.shutdown.clone(),
        );
        let stream = tokio_stream::wrappers::ReceiverStream::new(receiver).map(|batch| {
            batch
                .map(|batch| pb::WatchKeysResponse {
                    changes: batch.changes.into_iter().map(change_to_proto).collect(),
                    reset: batch.reset,
                    version: batch.version,
                })
                .map_err(|error: IdentityError| Status::from(error))
        });
        ok(Box::pin(stream))
    }
}
