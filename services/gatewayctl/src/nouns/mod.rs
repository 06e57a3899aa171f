//! One [`Resource`](crate::resource::Resource) per noun: its RPCs, columns
//! and name flags. The verbs themselves are in `resource`.

mod catalog;
mod identity;
mod quota;

pub use catalog::{Apis, Channels, GroupPrices, Multipliers, Prices};
pub use identity::{Clients, Groups, Keys, Tenants, Users};
pub use quota::{Plans, Rules};

/// Every page of a List RPC (at the service's page size): `$items` of
/// each answer until no next token.
macro_rules! all_pages {
    ($client:expr, $method:ident, $request:expr, $items:ident) => {{
        let mut client = $client;
        let mut request = $request;
        let mut items = Vec::new();
        loop {
            let page = client.$method(request.clone()).await?.into_inner();
            items.extend(page.$items);
            if page.next_page_token.is_empty() {
                break items;
            }
            request.page_token = page.next_page_token;
        }
    }};
}
pub(crate) use all_pages;

/// The message an answer must carry; a missing one is the service's bug.
pub(crate) fn present<T>(message: Option<T>, what: &str) -> crate::error::CliResult<T> {
    message.ok_or_else(|| {
        crate::error::CliError::new(
            crate::error::Exit::Failure,
            format!("the answer carried no {what}"),
        )
    })
}

pub(crate) fn mask(paths: Vec<String>) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask { paths })
}
