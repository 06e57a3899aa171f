//! Money: the signed-in user's balance and ledger, redeeming a voucher;
//! for admins, crediting a user's balance (with an idempotency key, so a
//! resubmitted form credits once) and the tenant's vouchers.

use axum::Form;
use axum::extract::{Query, State};
use axum::response::Response;
use gateway_proto::quota::v1 as quota;
use maud::{Markup, html};
use serde::Deserialize;

use crate::AppState;
use crate::clients::authed;
use crate::layout::{self, csrf, field, notice, usd};
use crate::pages::{Paging, micros, pager, time};
use crate::session::Session;

fn owner(user_id: &str) -> Option<quota::BalanceOwner> {
    Some(quota::BalanceOwner {
        kind: quota::BalanceOwnerKind::User.into(),
        id: user_id.to_owned(),
    })
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Query(paging): Query<Paging>,
) -> Response {
    layout::shown(
        &session,
        "Balance",
        balance_page(&state, &session, &paging, None).await,
    )
}

async fn balance_page(
    state: &AppState,
    session: &Session,
    paging: &Paging,
    said: Option<Markup>,
) -> Result<Markup, tonic::Status> {
    let mut client = state.clients.quota();
    let token = Some(session.token.as_str());
    let balance = client
        .get_balance(authed(
            token,
            quota::GetBalanceRequest {
                owner: owner(&session.user_id),
            },
        ))
        .await?
        .into_inner();
    let request = quota::ListLedgerEntriesRequest {
        owner: owner(&session.user_id),
        page_size: 50,
        page_token: paging.page.clone(),
        ..Default::default()
    };
    let ledger = client
        .list_ledger_entries(authed(token, request))
        .await?
        .into_inner();
    Ok(html! {
        @if let Some(said) = said { (said) }
        section.cards {
            div.card { h2 { "Balance" } p.figure #balance { (usd(balance.balance_micros)) } }
            div.card { h2 { "Held for requests in flight" } p.figure { (usd(balance.reserved_micros)) } }
        }
        h2 { "Redeem a voucher" }
        form method="post" action="/balance/redeem" {
            (csrf(session))
            (field("code", "Voucher code", "text", "", None))
            button type="submit" { "Redeem" }
        }
        h2 { "Ledger" }
        @if ledger.entries.is_empty() { p { "No entries yet." } } @else {
            table #ledger {
                thead { tr { th { "Time" } th { "Kind" } th { "Amount" } th { "Balance after" } th { "Reason" } } }
                tbody { @for entry in &ledger.entries { (ledger_row(entry)) } }
            }
            (pager("/balance", &ledger.next_page_token))
        }
        @if session.is_admin() { (credit_form(session)) }
    })
}

fn ledger_row(entry: &quota::LedgerEntry) -> Markup {
    let kind = match entry.kind() {
        quota::LedgerEntryKind::Adjustment => "adjustment",
        quota::LedgerEntryKind::Voucher => "voucher",
        quota::LedgerEntryKind::Usage => "usage",
        quota::LedgerEntryKind::Unspecified => "",
    };
    html! {
        tr {
            td { (time(entry.create_time.as_ref())) }
            td { (kind) }
            td { (usd(entry.amount_micros)) }
            td { (usd(entry.balance_after_micros)) }
            td { (entry.reason) }
        }
    }
}

fn credit_form(session: &Session) -> Markup {
    html! {
        h2 { "Adjust a user's balance" }
        form method="post" action="/balance/adjust" {
            (csrf(session))
            input type="hidden" name="idempotency_key" value=(fresh_idempotency_key());
            (field("user_id", "User id", "text", &session.user_id, None))
            (field("amount", "Amount in USD (negative to debit)", "text", "", None))
            (field("reason", "Reason", "text", "", None))
            button type="submit" { "Adjust" }
        }
    }
}

/// A fresh idempotency key for one rendering of a form.
fn fresh_idempotency_key() -> String {
    use rand::RngCore as _;
    let mut bytes = [0_u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[derive(Debug, Default, Deserialize)]
pub struct RedeemForm {
    #[serde(default)]
    code: String,
}

pub async fn redeem(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<RedeemForm>,
) -> Response {
    let request = quota::RedeemVoucherRequest {
        code: form.code.trim().to_owned(),
        user_id: String::new(),
    };
    let said = match state
        .clients
        .quota()
        .redeem_voucher(authed(Some(&session.token), request))
        .await
    {
        Ok(redeemed) => notice(
            "ok",
            &format!(
                "Redeemed: {} credited.",
                usd(redeemed.into_inner().amount_micros)
            ),
        ),
        Err(status) => match layout::refusal_notice(&status) {
            Some(said) => said,
            None => return layout::signed_out(),
        },
    };
    layout::shown(
        &session,
        "Balance",
        balance_page(&state, &session, &Paging::default(), Some(said)).await,
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct AdjustForm {
    #[serde(default)]
    idempotency_key: String,
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    reason: String,
}

pub async fn adjust(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<AdjustForm>,
) -> Response {
    let amount = form.amount.trim();
    let (negative, digits) = amount
        .strip_prefix('-')
        .map_or((false, amount), |rest| (true, rest));
    let said = match micros(digits) {
        None => notice("error", "The amount must be in USD, e.g. 10.00 or -2.50."),
        Some(value) => {
            let request = quota::AdjustBalanceRequest {
                owner: owner(form.user_id.trim()),
                amount_micros: if negative { -value } else { value },
                reason: form.reason.trim().to_owned(),
                idempotency_key: form.idempotency_key,
            };
            match state
                .clients
                .quota()
                .adjust_balance(authed(Some(&session.token), request))
                .await
            {
                Ok(_) => notice("ok", "The balance is adjusted."),
                Err(status) => match layout::refusal_notice(&status) {
                    Some(said) => said,
                    None => return layout::signed_out(),
                },
            }
        }
    };
    layout::shown(
        &session,
        "Balance",
        balance_page(&state, &session, &Paging::default(), Some(said)).await,
    )
}

pub async fn vouchers(
    State(state): State<AppState>,
    session: Session,
    Query(paging): Query<Paging>,
) -> Response {
    layout::shown(
        &session,
        "Vouchers",
        vouchers_page(&state, &session, &paging, None).await,
    )
}

async fn vouchers_page(
    state: &AppState,
    session: &Session,
    paging: &Paging,
    said: Option<Markup>,
) -> Result<Markup, tonic::Status> {
    let request = quota::ListVouchersRequest {
        page_size: 50,
        page_token: paging.page.clone(),
        ..Default::default()
    };
    let listed = state
        .clients
        .quota()
        .list_vouchers(authed(Some(&session.token), request))
        .await?
        .into_inner();
    Ok(html! {
        @if let Some(said) = said { (said) }
        @if listed.vouchers.is_empty() { p { "No vouchers yet." } } @else {
            table {
                thead { tr { th { "Code" } th { "Amount" } th { "Used" } th { "Expires" } } }
                tbody {
                    @for voucher in &listed.vouchers {
                        tr {
                            td { code { "…" (voucher.code) } }
                            td { (usd(voucher.amount_micros)) }
                            td { (voucher.use_count) " of " (voucher.max_uses) }
                            td { (time(voucher.expire_time.as_ref())) }
                        }
                    }
                }
            }
            (pager("/vouchers", &listed.next_page_token))
        }
        h2 { "New voucher" }
        form method="post" action="/vouchers" {
            (csrf(session))
            (field("amount", "Amount in USD", "text", "", None))
            (field("max_uses", "Uses (distinct users)", "number", "1", None))
            button type="submit" { "Create voucher" }
        }
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct VoucherForm {
    #[serde(default)]
    amount: String,
    #[serde(default)]
    max_uses: String,
}

pub async fn create_voucher(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<VoucherForm>,
) -> Response {
    let voucher = quota::Voucher {
        amount_micros: micros(&form.amount).unwrap_or(0),
        max_uses: form.max_uses.trim().parse().unwrap_or(0),
        ..Default::default()
    };
    let request = quota::CreateVoucherRequest {
        voucher: Some(voucher),
    };
    let said = match state
        .clients
        .quota()
        .create_voucher(authed(Some(&session.token), request))
        .await
    {
        Ok(created) => {
            let code = created.into_inner().voucher.unwrap_or_default().code;
            html! {
                (notice("ok", "Copy the code now: it is shown only this once."))
                div.secret { code #new-voucher { (code) } button type="button" data-copy="new-voucher" { "Copy" } }
            }
        }
        Err(status) => match layout::refusal_notice(&status) {
            Some(said) => said,
            None => return layout::signed_out(),
        },
    };
    layout::shown(
        &session,
        "Vouchers",
        vouchers_page(&state, &session, &Paging::default(), Some(said)).await,
    )
}
