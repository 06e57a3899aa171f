//! Request path normalisation before routing: duplicate slashes merged,
//! dot segments removed (RFC 3986 5.2.4), and anything that could climb out
//! of the API's root, or that a backend might decode into a path separator
//! or a dot segment, refused.

use std::borrow::Cow;

/// Segments that identify the API (`/{tenant}/{api}`): dot segments may
/// never remove them.
const ROOT_SEGMENTS: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path climbs above the API's root")]
    AboveRoot,
    #[error("the path contains an encoded slash or backslash (%2F, %5C)")]
    EncodedSeparator,
    #[error("the path contains an encoded dot segment (%2E)")]
    EncodedDotSegment,
    #[error("the path contains a backslash")]
    Backslash,
}

/// The normalised path; borrowed when nothing needed changing (the
/// common case costs one scan).
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    let mut clean = true;
    for (index, byte) in bytes.iter().enumerate() {
        match byte {
            b'\\' => return Err(PathError::Backslash),
            b'%' => clean &= !encoded_dot(&bytes[index..])?,
            b'/' if matches!(bytes.get(index + 1), Some(b'/' | b'.')) => clean = false,
            _ => {}
        }
    }
    if clean {
        return Ok(Cow::Borrowed(path));
    }
    rebuild(path).map(Cow::Owned)
}

/// Refuses an encoded separator; true for an encoded dot, which may form
/// a dot segment.
fn encoded_dot(escape: &[u8]) -> Result<bool, PathError> {
    match escape.get(1..3) {
        Some([b'2', b'f' | b'F'] | [b'5', b'c' | b'C']) => Err(PathError::EncodedSeparator),
        Some([b'2', b'e' | b'E']) => Ok(true),
        _ => Ok(false),
    }
}

/// Whether `segment` decodes to `.` or `..` through `%2E` escapes.
fn encoded_dot_segment(segment: &str) -> bool {
    let decoded = segment.replace("%2e", ".").replace("%2E", ".");
    decoded != segment && (decoded == "." || decoded == "..")
}

fn rebuild(path: &str) -> Result<String, PathError> {
    let mut kept: Vec<&str> = Vec::new();
    for segment in path.split('/').filter(|segment| !segment.is_empty()) {
        match segment {
            "." => {}
            ".." => {
                if kept.len() <= ROOT_SEGMENTS {
                    return Err(PathError::AboveRoot);
                }
                kept.pop();
            }
            segment if encoded_dot_segment(segment) => {
                return Err(PathError::EncodedDotSegment);
            }
            segment => kept.push(segment),
        }
    }
    // A path ending in a slash or a dot segment names a directory, as RFC
    // 3986 resolves it.
    let last = path.rsplit('/').next().unwrap_or_default();
    let directory = matches!(last, "" | "." | "..");
    let mut normalized = String::with_capacity(path.len());
    for segment in &kept {
        normalized.push('/');
        normalized.push_str(segment);
    }
    if normalized.is_empty() || directory {
        normalized.push('/');
    }
    Ok(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(path: &str) -> String {
        normalize(path).unwrap().into_owned()
    }

    #[test]
    fn clean_paths_are_borrowed_unchanged() {
        for path in [
            "/acme/echo/v1/items",
            "/acme/echo/",
            "/acme/echo/a.b/c%20d",
            "/",
        ] {
            assert!(
                matches!(normalize(path), Ok(Cow::Borrowed(p)) if p == path),
                "{path}"
            );
        }
    }

    #[test]
    fn duplicate_slashes_merge_and_dot_segments_resolve() {
        assert_eq!(ok("/acme//echo///v1//items"), "/acme/echo/v1/items");
        assert_eq!(ok("/acme/echo/./v1/items"), "/acme/echo/v1/items");
        assert_eq!(ok("/acme/echo/v1/../v2/items"), "/acme/echo/v2/items");
        assert_eq!(ok("/acme/echo/v1/.."), "/acme/echo/");
        assert_eq!(ok("/acme/echo/v1/."), "/acme/echo/v1/");
        assert_eq!(ok("/acme/echo/v1/items/"), "/acme/echo/v1/items/");
        assert_eq!(ok("/acme/echo/v1//"), "/acme/echo/v1/");
        assert_eq!(ok("/acme/echo/..."), "/acme/echo/...");
        assert_eq!(ok("/acme/echo/.hidden"), "/acme/echo/.hidden");
    }

    #[test]
    fn climbing_above_the_api_root_is_refused() {
        for path in [
            "/demo/echo/../../../etc/passwd",
            "/demo/echo/..",
            "/demo/echo/v1/../../x",
            "/demo/../other/x",
            "/../acme/echo",
        ] {
            assert_eq!(normalize(path), Err(PathError::AboveRoot), "{path}");
        }
    }

    #[test]
    fn encoded_separators_and_dot_segments_are_refused() {
        for path in [
            "/acme/echo/a%2fb",
            "/acme/echo/a%2Fb",
            "/acme/echo/a%5cb",
            "/acme/echo/%5C",
        ] {
            assert_eq!(normalize(path), Err(PathError::EncodedSeparator), "{path}");
        }
        for path in [
            "/acme/echo/%2e%2e/x",
            "/acme/echo/.%2E/x",
            "/acme/echo/%2e/x",
            "/acme/echo/v1/%2E%2e",
        ] {
            assert_eq!(normalize(path), Err(PathError::EncodedDotSegment), "{path}");
        }
        assert_eq!(normalize("/acme/echo/a\\b"), Err(PathError::Backslash));
        // An encoded dot inside a name is just a dot.
        assert_eq!(ok("/acme/echo/file%2etxt"), "/acme/echo/file%2etxt");
    }
}
