//! Cursor pagination shared by every List RPC: `page_size` 0 means 50,
//! larger than 1000 is clamped, and the page token is an opaque cursor
//! (the last id seen; ids are UUIDv7, so id order is creation order).

/// Default and maximum page sizes of every List RPC.
pub const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i64 = 1000;

/// A validated page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Rows to return.
    pub size: i64,
    /// Return rows with an id greater than this ("" for the first page).
    pub after: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("page_size: must not be negative")]
    NegativeSize,
    #[error("page_token: not a token this service issued")]
    BadToken,
}

impl Page {
    pub fn new(page_size: i32, page_token: &str) -> Result<Self, PageError> {
        let size = match i64::from(page_size) {
            size if size < 0 => return Err(PageError::NegativeSize),
            0 => DEFAULT_PAGE_SIZE,
            size => size.min(MAX_PAGE_SIZE),
        };
        Ok(Self {
            size,
            after: decode_token(page_token)?,
        })
    }

    /// Rows to fetch: one more than the page, to know if another follows.
    pub fn fetch_limit(&self) -> i64 {
        self.size + 1
    }

    /// Trims `rows` (fetched with [`Self::fetch_limit`]) to the page and
    /// returns the token of the next page ("" on the last).
    pub fn finish<T>(&self, rows: &mut Vec<T>, id_of: impl Fn(&T) -> &str) -> String {
        let page_len = usize::try_from(self.size).unwrap_or(usize::MAX);
        if rows.len() <= page_len {
            return String::new();
        }
        rows.truncate(page_len);
        rows.last()
            .map(|row| encode_token(id_of(row)))
            .unwrap_or_default()
    }
}

const TOKEN_PREFIX: &str = "c1.";

fn encode_token(last_id: &str) -> String {
    let mut token = String::with_capacity(TOKEN_PREFIX.len() + last_id.len() * 2);
    token.push_str(TOKEN_PREFIX);
    for byte in last_id.bytes() {
        token.push_str(&format!("{byte:02x}"));
    }
    token
}

fn decode_token(token: &str) -> Result<String, PageError> {
    if token.is_empty() {
        return Ok(String::new());
    }
    let hex = token
        .strip_prefix(TOKEN_PREFIX)
        .ok_or(PageError::BadToken)?;
    if hex.len() % 2 != 0 || hex.len() > 512 {
        return Err(PageError::BadToken);
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|index| {
            u8::from_str_radix(&hex[index..index + 2], 16).map_err(|_| PageError::BadToken)
        })
        .collect::<Result<Vec<u8>, _>>()?;
    String::from_utf8(bytes).map_err(|_| PageError::BadToken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_default_and_clamp() {
        assert_eq!(Page::new(0, "").unwrap().size, 50);
        assert_eq!(Page::new(5000, "").unwrap().size, 1000);
        assert_eq!(Page::new(-1, ""), Err(PageError::NegativeSize));
    }

    #[test]
    fn token_round_trips_and_garbage_is_refused() {
        let page = Page::new(2, "").unwrap();
        let mut rows = vec!["a", "b", "c"];
        let token = page.finish(&mut rows, |row| row);
        assert_eq!(rows, ["a", "b"]);
        assert_eq!(Page::new(2, &token).unwrap().after, "b");
        let mut last = vec!["x"];
        assert_eq!(page.finish(&mut last, |row| row), "");
        assert_eq!(Page::new(2, "nonsense"), Err(PageError::BadToken));
        assert_eq!(Page::new(2, "c1.zz"), Err(PageError::BadToken));
    }
}
