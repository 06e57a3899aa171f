//! People of the tenant: users (create with a password; enable, disable;
//! the role select is a SUPERADMIN's, as identity allows) and groups with
//! their members.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use gateway_proto::identity::v1 as id;
use maud::{Markup, html};
use serde::Deserialize;

use crate::AppState;
use crate::clients::authed;
use crate::layout::{self, csrf, field, page};
use crate::pages::{Paging, pager, time};
use crate::session::Session;

fn role_name(role: id::Role) -> &'static str {
    match role {
        id::Role::User => "user",
        id::Role::Admin => "admin",
        id::Role::Superadmin => "superadmin",
        id::Role::Unspecified => "",
    }
}

pub async fn users(
    State(state): State<AppState>,
    session: Session,
    Query(paging): Query<Paging>,
) -> Response {
    users_page(&state, &session, &paging, None).await
}

async fn users_page(
    state: &AppState,
    session: &Session,
    paging: &Paging,
    said: Option<Markup>,
) -> Response {
    let request = id::ListUsersRequest {
        page_size: 50,
        page_token: paging.page.clone(),
        ..Default::default()
    };
    let listed = match state
        .clients
        .identity()
        .list_users(authed(Some(&session.token), request))
        .await
    {
        Ok(listed) => listed.into_inner(),
        Err(status) => return layout::refused(session, "Users", &status),
    };
    let body = html! {
        @if let Some(said) = said { (said) }
        table #users {
            thead { tr { th { "Username" } th { "Email" } th { "Role" } th { "Id" } th { "Last login" } th { "State" } th { "Actions" } } }
            tbody { @for user in &listed.users { (user_row(session, user)) } }
        }
        (pager("/users", &listed.next_page_token))
        h2 { "New user" }
        form method="post" action="/users" {
            (csrf(session))
            (field("username", "Username", "text", "", None))
            (field("email", "Email", "email", "", None))
            (field("password", "Password", "password", "", None))
            div.field {
                label for="role" { "Role" }
                select id="role" name="role" {
                    option value="user" { "User" }
                    option value="admin" { "Admin" }
                }
            }
            button type="submit" { "Create user" }
        }
    };
    page(session, "Users", body).into_response()
}

fn user_row(session: &Session, user: &id::User) -> Markup {
    let toggle = if user.disabled {
        ("enable", "Enable")
    } else {
        ("disable", "Disable")
    };
    html! {
        tr {
            td { (user.username) }
            td { (user.email) }
            td {
                @if session.is_superadmin() {
                    form.inline method="post" action=(format!("/users/{}/role", user.id)) {
                        (csrf(session))
                        label.hidden for=(format!("role-{}", user.id)) { "Role of " (user.username) }
                        select id=(format!("role-{}", user.id)) name="role" {
                            @for role in ["user", "admin", "superadmin"] {
                                option value=(role) selected[role_name(user.role()) == role] { (role) }
                            }
                        }
                        button type="submit" { "Set" }
                    }
                } @else { (role_name(user.role())) }
            }
            td { code { (user.id) } }
            td { (time(user.last_login_time.as_ref())) }
            td { @if user.disabled { "disabled" } @else { "active" } }
            td {
                form.inline method="post" action=(format!("/users/{}/{}", user.id, toggle.0)) {
                    (csrf(session))
                    button type="submit" aria-label=(format!("{} {}", toggle.1, user.username)) { (toggle.1) }
                }
            }
        }
    }
}

fn role_of(name: &str) -> id::Role {
    match name {
        "admin" => id::Role::Admin,
        "superadmin" => id::Role::Superadmin,
        _ => id::Role::User,
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct UserForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    role: String,
}

pub async fn create_user(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<UserForm>,
) -> Response {
    let user = id::User {
        username: form.username.trim().to_owned(),
        email: form.email.trim().to_owned(),
        role: role_of(&form.role).into(),
        ..Default::default()
    };
    let request = id::CreateUserRequest {
        user: Some(user),
        password: form.password,
    };
    let result = state
        .clients
        .identity()
        .create_user(authed(Some(&session.token), request))
        .await;
    after(&state, &session, result.map(drop)).await
}

async fn after(state: &AppState, session: &Session, result: Result<(), tonic::Status>) -> Response {
    match result {
        Ok(()) => Redirect::to("/users").into_response(),
        Err(status) => match layout::refusal_notice(&status) {
            Some(said) => users_page(state, session, &Paging::default(), Some(said)).await,
            None => layout::signed_out(),
        },
    }
}

#[derive(Debug, Deserialize)]
pub struct UserAction {
    id: String,
    verb: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    role: String,
}

/// `disable`, `enable` or `role`: one field of the user, by mask.
pub async fn act(
    State(state): State<AppState>,
    session: Session,
    Path(UserAction { id, verb }): Path<UserAction>,
    Form(form): Form<ActionForm>,
) -> Response {
    let (user, mask) = match verb.as_str() {
        "disable" | "enable" => (
            id::User {
                id,
                disabled: verb == "disable",
                ..Default::default()
            },
            "disabled",
        ),
        "role" => (
            id::User {
                id,
                role: role_of(&form.role).into(),
                ..Default::default()
            },
            "role",
        ),
        _ => {
            return layout::refused(
                &session,
                "Users",
                &tonic::Status::not_found("no such action"),
            );
        }
    };
    let request = id::UpdateUserRequest {
        user: Some(user),
        update_mask: Some(prost_types::FieldMask {
            paths: vec![mask.to_owned()],
        }),
    };
    let result = state
        .clients
        .identity()
        .update_user(authed(Some(&session.token), request))
        .await;
    after(&state, &session, result.map(drop)).await
}

pub async fn groups(State(state): State<AppState>, session: Session) -> Response {
    groups_page(&state, &session, None).await
}

async fn groups_page(state: &AppState, session: &Session, said: Option<Markup>) -> Response {
    let mut identity = state.clients.identity();
    let token = Some(session.token.as_str());
    let listed = match identity
        .list_groups(authed(token, id::ListGroupsRequest::default()))
        .await
    {
        Ok(listed) => listed.into_inner().groups,
        Err(status) => return layout::refused(session, "Groups", &status),
    };
    let mut sections = Vec::new();
    for group in &listed {
        let request = id::ListGroupMembersRequest {
            group_id: group.id.clone(),
            ..Default::default()
        };
        let members = identity
            .list_group_members(authed(token, request))
            .await
            .map(|answer| answer.into_inner().members)
            .unwrap_or_default();
        sections.push(group_section(session, group, &members));
    }
    let body = html! {
        @if let Some(said) = said { (said) }
        @if listed.is_empty() { p { "No groups yet." } }
        @for section in sections { (section) }
        h2 { "New group" }
        form method="post" action="/groups" {
            (csrf(session))
            (field("name", "Name", "text", "", None))
            (field("priority", "Priority (higher is tried first)", "number", "0", None))
            button type="submit" { "Create group" }
        }
    };
    page(session, "Groups", body).into_response()
}

fn group_section(session: &Session, group: &id::Group, members: &[id::GroupMember]) -> Markup {
    html! {
        section.group {
            h2 { (group.name) " (priority " (group.priority) ")" }
            p { "Id " code { (group.id) } }
            ul { @for member in members { li { (member.username) " " code { (member.user_id) } } } }
            form method="post" action=(format!("/groups/{}/members", group.id)) {
                (csrf(session))
                (field(&format!("member-{}", group.id), "Add a member by user id", "text", "", None))
                button type="submit" { "Add member" }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct GroupForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    priority: String,
}

pub async fn create_group(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<GroupForm>,
) -> Response {
    let group = id::Group {
        name: form.name.trim().to_owned(),
        priority: form.priority.trim().parse().unwrap_or(0),
        ..Default::default()
    };
    let request = id::CreateGroupRequest { group: Some(group) };
    let result = state
        .clients
        .identity()
        .create_group(authed(Some(&session.token), request))
        .await;
    group_result(&state, &session, result.map(drop)).await
}

async fn group_result(
    state: &AppState,
    session: &Session,
    result: Result<(), tonic::Status>,
) -> Response {
    match result {
        Ok(()) => Redirect::to("/groups").into_response(),
        Err(status) => match layout::refusal_notice(&status) {
            Some(said) => groups_page(state, session, Some(said)).await,
            None => layout::signed_out(),
        },
    }
}

pub async fn add_member(
    State(state): State<AppState>,
    session: Session,
    Path(group_id): Path<String>,
    Form(form): Form<std::collections::HashMap<String, String>>,
) -> Response {
    let user_id = form
        .get(&format!("member-{group_id}"))
        .map_or("", String::as_str)
        .trim()
        .to_owned();
    let request = id::AddGroupMemberRequest { group_id, user_id };
    let result = state
        .clients
        .identity()
        .add_group_member(authed(Some(&session.token), request))
        .await;
    group_result(&state, &session, result.map(drop)).await
}
