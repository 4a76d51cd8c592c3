//! Request ids: what becomes `x-error-id`. A client-sent id is echoed only when it is usable,
//! and only its safe characters; otherwise the host makes one up with [`RequestIds`].

/// Longest id kept.
pub const MAX_LEN: usize = 128;

/// The id to use for a request whose `x-request-id` (or the host's equivalent) is `sent`:
/// its safe characters if it has any letter or digit, else `None` (make one up).
pub fn from_client(sent: Option<&str>) -> Option<String> {
    let sent = sent?;
    if sent.len() > MAX_LEN * 4 || !sent.bytes().any(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let id = sanitize(sent);
    (!id.is_empty()).then_some(id)
}

/// Keeps only what is safe in a header and a log line: letters, digits, `-_.:`.
pub fn sanitize(id: &str) -> String {
    id.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')).take(MAX_LEN).collect()
}

/// Ids for requests that came without one: `ag-<instance tag>-<sequence>`, unique per instance.
#[derive(Clone, Debug)]
pub struct RequestIds {
    tag: u32,
    seq: u64,
}

impl RequestIds {
    /// `tag` tells instances apart (a random number per VM or isolate).
    pub fn new(tag: u32) -> RequestIds {
        RequestIds { tag, seq: 0 }
    }

    pub fn next_id(&mut self) -> String {
        self.seq = self.seq.wrapping_add(1);
        format!("ag-{:08x}-{:x}", self.tag, self.seq)
    }

    /// The client's id when usable, else a new one.
    pub fn for_request(&mut self, sent: Option<&str>) -> String {
        from_client(sent).unwrap_or_else(|| self.next_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_kept_only_when_usable_and_made_safe() {
        assert_eq!(from_client(Some("abc-1")).as_deref(), Some("abc-1"));
        assert_eq!(from_client(Some("a\r\nb c")).as_deref(), Some("abc"));
        assert_eq!(from_client(Some("--")), None);
        assert_eq!(from_client(Some("")), None);
        assert_eq!(from_client(None), None);
        assert_eq!(from_client(Some(&"x".repeat(300))).map(|s| s.len()), Some(MAX_LEN));
        // Longer than four times the kept length is not an id at all (not worth sanitising).
        assert_eq!(from_client(Some(&"x".repeat(MAX_LEN * 4))).map(|s| s.len()), Some(MAX_LEN));
        assert_eq!(from_client(Some(&"x".repeat(MAX_LEN * 4 + 1))), None);
        let mut ids = RequestIds::new(0xdead_beef);
        assert_eq!(ids.next_id(), "ag-deadbeef-1");
        assert_eq!(ids.for_request(Some("!!")), "ag-deadbeef-2");
        assert_eq!(ids.for_request(Some("req-9")), "req-9");
    }
}
