//! The HTML part of every email: the text part laid out in the hosted pages' look (product name,
//! accent colour), with codes set large and links made clickable. Built from the text, so the
//! two parts never say different things; every piece of text is HTML-escaped.

/// The operator's look, from `pages.*`.
#[derive(Clone)]
pub struct Look {
    pub product: String,
    /// Validated `#rrggbb`.
    pub accent: String,
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// A line that is a code (what the reader types in): 6 to 10 digits, or a `prt_` reset token.
fn is_code(line: &str) -> bool {
    let t = line.trim();
    ((6..=10).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit())) || (t.starts_with("prt_") && !t.contains(' '))
}

/// One line of text: `http(s)://` words become links (their text escaped, their `href` too).
fn line_html(line: &str, accent: &str) -> String {
    line.split(' ')
        .map(|word| {
            let url = word.trim_end_matches(['.', ',', ')']);
            let rest = &word[url.len()..];
            if (url.starts_with("https://") || url.starts_with("http://")) && !url.contains(['"', '<', '>']) {
                format!("<a href=\"{}\" style=\"color:{accent}\">{}</a>{}", escape(url), escape(url), escape(rest))
            } else if is_code(url) {
                format!(
                    "<strong style=\"font:600 22px ui-monospace,Menlo,Consolas,monospace;letter-spacing:2px\">{}</strong>{}",
                    escape(url),
                    escape(rest)
                )
            } else {
                escape(word)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn render(look: &Look, subject: &str, text: &str) -> String {
    let accent = &look.accent;
    let mut body = String::new();
    for para in text.split("\n\n") {
        let lines: Vec<&str> = para.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.len() == 1 && is_code(lines[0]) {
            body.push_str(&format!(
                "<p style=\"font:600 28px/1.2 ui-monospace,Menlo,Consolas,monospace;letter-spacing:3px;padding:12px 16px;background:#f5f7fa;border-radius:8px;word-break:break-all\">{}</p>",
                escape(lines[0].trim())
            ));
        } else if !lines.is_empty() {
            let html: Vec<String> = lines.iter().map(|l| line_html(l, accent)).collect();
            body.push_str(&format!("<p style=\"margin:0 0 16px\">{}</p>", html.join("<br>")));
        }
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{subject}</title></head>\
<body style=\"margin:0;background:#f5f7fa;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1b1f24\">\
<div style=\"max-width:520px;margin:24px auto;background:#fff;border:1px solid #d6dbe1;border-radius:10px;padding:24px\">\
<p style=\"margin:0 0 16px;font-weight:700;font-size:18px;color:{accent}\">{product}</p>{body}</div></body></html>",
        subject = escape(subject),
        product = escape(&look.product),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_links_and_escaping() {
        let look = Look { product: "Acme <Login>".into(), accent: "#112233".into() };
        let html = render(
            &look,
            "Your code",
            "Your code is below.\n\n123456\n\nOpen https://x.example/reset-password?token=prt_a&b=<c>. <b>not bold</b>",
        );
        assert!(html.contains("Acme &lt;Login&gt;"), "{html}");
        assert!(html.contains(">123456</p>"), "{html}");
        assert!(html.contains("&lt;b&gt;not bold&lt;/b&gt;") && !html.contains("<b>"), "{html}");
        // A URL with markup in it is not made a link.
        assert!(!html.contains("href=\"https://x.example/reset-password?token=prt_a&amp;b=&lt;c&gt;\""), "{html}");
        let html = render(&look, "s", "Your code is 654321. It expires.");
        assert!(html.contains(">654321</strong>."), "{html}");
        let html = render(&look, "s", "Open https://x.example/reset-password?token=prt_abc.");
        assert!(html.contains("<a href=\"https://x.example/reset-password?token=prt_abc\" style=\"color:#112233\">"), "{html}");
    }
}
