//! Escaping text for the three places the report puts it: HTML text and
//! attributes, XML (JUnit), and JSON inside a `<script>` element.
//!
//! Every string that comes from a history or a verdict (values, keys, error
//! messages, test names) is untrusted: a value `</script><script>...` must
//! show as text, never run. These functions are the only way text enters a
//! page, so the promise holds in one place.

/// Escapes `s` for HTML text and double- or single-quoted attributes.
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes `s` for XML 1.0 text and attributes. Characters XML 1.0 cannot
/// carry at all (most control characters) become U+FFFD, so the file always
/// parses.
pub fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Makes serialized JSON safe inside `<script type="application/json">`:
/// `<` becomes `\u003c`, so no `</script>` or `<!--` can close or confuse the
/// element, and U+2028/U+2029 are escaped for older parsers. The result is
/// still the same JSON value.
pub fn json_in_script(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// At most `max_chars` characters of `s`, with an ellipsis when cut.
pub fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        None => s.to_owned(),
        Some((at, _)) => format!("{}…", &s[..at]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_markup_and_quotes() {
        assert_eq!(
            html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn xml_replaces_characters_xml_cannot_carry() {
        assert_eq!(xml("a\u{1}b<c>\n"), "a\u{FFFD}b&lt;c&gt;\n");
    }

    #[test]
    fn json_in_script_cannot_close_the_element_and_stays_json() {
        let json = serde_json::to_string(&serde_json::json!({"v": "</script><script>alert(1)</script>"})).unwrap();
        let safe = json_in_script(&json);
        assert!(!safe.contains("</"), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["v"], "</script><script>alert(1)</script>");
    }

    #[test]
    fn truncate_counts_characters_not_bytes() {
        assert_eq!(truncate("héllo", 2), "hé…");
        assert_eq!(truncate("hé", 2), "hé");
    }
}
