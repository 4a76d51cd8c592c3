//! The request target as route rules see it: the path an upstream will serve, or a refusal.
//!
//! Upstreams disagree about paths, so anything two of them could read differently is refused
//! (`invalid_path`) and the rest is put in the form every common upstream serves:
//! * refused: dot segments (`..`, `.`, `%2e` spellings), encoded `/` `\` `;` and control
//!   characters, double-encoded escapes (`%252e`), a raw `\`, `#` (a fragment never belongs in
//!   a request), raw control characters, spaces and non-ASCII bytes, anything not starting with `/`;
//! * normalised for matching: path parameters (`/admin;jsessionid=1` is `/admin` to a servlet
//!   container, which also resolves `/public/..;/admin`: the `;…` part of each segment is cut
//!   before the dot-segment check), %-encoded unreserved characters decoded (`/%61dmin` is
//!   `/admin`, RFC 3986 §6.2.2.2), runs of `/` merged. The query is not part of the path.

use std::borrow::Cow;

/// The canonical path of a request target (path and query), or `None`: refuse the request.
pub fn canonical_path(target: &str) -> Option<Cow<'_, str>> {
    if memchr::memchr(b'#', target.as_bytes()).is_some() {
        return None;
    }
    let path = &target[..memchr::memchr(b'?', target.as_bytes()).unwrap_or(target.len())];
    if !path.starts_with('/') {
        return None;
    }
    // One pass over the bytes: refusals, escapes, parameters, and each segment (up to its first
    // `;`) checked for a dot segment as its closing `/` or the end is reached.
    let bytes = path.as_bytes();
    let (mut escapes, mut params, mut empty_segments) = (false, false, false);
    let (mut segment_start, mut segment_name_end) = (0, None);
    let mut i = 0;
    loop {
        let byte = bytes.get(i).copied();
        // A segment ends at a `/` or at the end of the path.
        if matches!(byte, None | Some(b'/')) && is_dot_segment(&path[segment_start..segment_name_end.unwrap_or(i)]) {
            return None;
        }
        let Some(byte) = byte else { break };
        match byte {
            b'/' => {
                empty_segments |= i > 0 && bytes[i - 1] == b'/';
                (segment_start, segment_name_end) = (i + 1, None);
                i += 1;
            }
            b'%' => {
                let decoded = hex_at(bytes, i)?;
                // `%25` + two hex digits: `%XX` again once decoded (`%252e` is `%2e` is `.`) —
                // the digits spelled plainly or as escapes of their own (`%25%32%65`, which this
                // function's decoding of unreserved characters would turn into `%25` + `2e`).
                let double_encoded = decoded == b'%' && hex_digit_at(bytes, i + 3).and_then(|next| hex_digit_at(bytes, next)).is_some();
                if matches!(decoded, b'/' | b'\\' | b';' | 0..=0x1f | 0x7f) || double_encoded {
                    return None;
                }
                escapes = true;
                i += 3;
            }
            b';' => {
                params = true;
                segment_name_end.get_or_insert(i);
                i += 1;
            }
            b'\\' | 0..=0x20 | 0x7f..=0xff => return None,
            _ => i += 1,
        }
    }
    if !escapes && !params && !empty_segments {
        return Some(Cow::Borrowed(path));
    }
    let mut out = String::with_capacity(path.len());
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len() - 1;
    for (index, segment) in segments.iter().enumerate().skip(1) {
        let segment = without_params(segment);
        // Empty segments are runs of `/`; the last one is a trailing slash and stays.
        if segment.is_empty() && index != last {
            continue;
        }
        out.push('/');
        push_decoding_unreserved(&mut out, segment);
    }
    Some(Cow::Owned(out))
}

/// A segment without its path parameters (`name;param` → `name`).
fn without_params(segment: &str) -> &str {
    segment.split_once(';').map_or(segment, |(name, _)| name)
}

/// The byte a well-formed `%XX` at `i` stands for.
fn hex_at(bytes: &[u8], i: usize) -> Option<u8> {
    if bytes.get(i) != Some(&b'%') {
        return None;
    }
    let digit = |b: u8| (b as char).to_digit(16);
    let (hi, lo) = (digit(*bytes.get(i + 1)?)?, digit(*bytes.get(i + 2)?)?);
    Some((hi * 16 + lo) as u8)
}

/// A hex digit at `i`, plain or as an escape (`%41`): where the next character starts.
fn hex_digit_at(bytes: &[u8], i: usize) -> Option<usize> {
    match hex_at(bytes, i) {
        Some(b) => b.is_ascii_hexdigit().then_some(i + 3),
        None => bytes.get(i).filter(|b| b.is_ascii_hexdigit()).map(|_| i + 1),
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Copies `segment`, decoding escapes of unreserved characters and keeping the others.
fn push_decoding_unreserved(out: &mut String, segment: &str) {
    let bytes = segment.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match hex_at(bytes, i) {
            Some(b) if is_unreserved(b) => {
                out.push(b as char);
                i += 3;
            }
            _ => {
                // The path is ASCII (checked), so every byte is a char.
                out.push(bytes[i] as char);
                i += 1;
            }
        }
    }
}

/// `.` or `..`, each dot written as `.` or `%2e` / `%2E`.
fn is_dot_segment(segment: &str) -> bool {
    let b = segment.as_bytes();
    let mut dots = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'.' {
            i += 1;
        } else if hex_at(b, i) == Some(b'.') {
            i += 3;
        } else {
            return false;
        }
        dots += 1;
    }
    dots == 1 || dots == 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(target: &str) -> Option<String> {
        canonical_path(target).map(Cow::into_owned)
    }

    #[test]
    fn canonical_forms() {
        let cases = [
            ("/", "/"),
            ("/a/b?x=../..", "/a/b"),
            ("//admin///x", "/admin/x"),
            ("/admin/", "/admin/"),
            ("/a//", "/a/"),
            ("/a%20b", "/a%20b"),
            ("/%61dmin/%7Eme%2D%5f", "/admin/~me-_"),
            ("/%C3%A9%41", "/%C3%A9A"),
            ("/a%2e/b", "/a./b"),
            ("/...", "/..."),
            ("/a.b/.c/..d", "/a.b/.c/..d"),
            ("/admin;jsessionid=1", "/admin"),
            ("/admin;x/users;y=2", "/admin/users"),
            ("/a/;x/b", "/a/b"),
            ("/%25", "/%25"),
            ("/%25zz", "/%25zz"),
            // `%25` and one hex digit, plain or escaped, is a literal `%` and a character.
            ("/100%25", "/100%25"),
            ("/%25a", "/%25a"),
            ("/%25%41", "/%25A"),
            ("/%25%7a%41", "/%25zA"),
        ];
        for (target, want) in cases {
            assert_eq!(canon(target).as_deref(), Some(want), "{target:?}");
        }
    }

    #[test]
    fn refusals() {
        for bad in [
            "a",
            "",
            "?x",
            "/public/../admin",
            "/public/..",
            "/./x",
            "/.",
            "/..",
            "/%2e%2e/admin",
            "/%2E./x",
            "/.%2e/x",
            "/%2e",
            "/a%2fb",
            "/a%2Fb",
            "/a%5Cb",
            "/a\\b",
            "/a\r\nb",
            "/a%00",
            "/a%7f",
            "/a%zz",
            "/a%2",
            "/a%",
            "/public/..;/admin",
            "/public/..;x=1/admin",
            "/public/.;/admin",
            "/public/%2e%2e;/admin",
            "/admin%3bx",
            "/admin%3B",
            "/%252e%252e/admin",
            "/%2525",
            // Double encoding with the hex digits themselves escaped: decoding the unreserved
            // characters would make `%25` + `2e` of them, `.` to an upstream decoding twice.
            "/public/%25%32%65%25%32%65/admin",
            "/public/%25%32e%252%65/admin",
            "/%25%611d",
            "/%25%41%41",
            "/public#/../admin",
            "/p?x#y",
            "/a b",
            "/é",
            "/a\tb",
            "/a\x7f",
            // A forbidden byte or escape after an allowed escape, further along the path:
            // every byte after `%XX` is still checked.
            "/ab%41%2fx",
            "/ab%41\\x",
            "/abc%41%00",
            "/abcdef%41/x%5c",
        ] {
            assert_eq!(canon(bad), None, "{bad:?} must be refused");
        }
    }

    #[test]
    fn dot_segments_by_count() {
        for (s, want) in [
            (".", true),
            ("..", true),
            ("...", false),
            ("", false),
            ("%2e", true),
            ("%2E%2e", true),
            (".%2e.", false),
            ("a.", false),
            ("%2ex", false),
            ("%2", false),
        ] {
            assert_eq!(is_dot_segment(s), want, "{s:?}");
        }
    }
}
