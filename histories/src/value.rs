//! Values that JSON numbers, strings, arrays and objects cannot hold as they
//! are, encoded so that two values are equal (`==` on `serde_json::Value`,
//! which is how every checker compares them) exactly when Jepsen (Clojure's
//! `=`) would call them equal.
//!
//! Each encoding is a one-entry object whose key starts with `$`, a form no
//! recorder writes on its own:
//!
//! | value | encoding |
//! |---|---|
//! | an integer outside `i64` and `u64` | `{"$int": "<decimal digits, optional leading ->"}` (no `+`, no leading zeros) |
//! | a set | `{"$set": [elements]}`, without duplicates, sorted by their JSON text |
//! | a map with a key that is not a string | `{"$map": [[key, value], ...]}`, sorted by the keys' JSON text |
//!
//! Integers inside `i64`/`u64` stay JSON numbers, so the encoding costs
//! nothing on the values histories hold. The EDN importer adds keywords,
//! symbols, characters and tagged literals (see
//! [`crate::import::edn`]). In faultline's own JSONL an integer literal past
//! 64 bits, which `serde_json` would round to a float (so that 2^64 and
//! 2^64+1 compared equal), is read as `{"$int": ...}` too: only a line with
//! a run of 19 or more digits is searched for one, so the common line costs
//! one quick scan.

use serde_json::{Map, Value};

/// The key of an integer outside `i64` and `u64`.
pub const INT: &str = "$int";
/// The key of a set.
pub const SET: &str = "$set";
/// The key of a map with keys other than strings.
pub const MAP: &str = "$map";

/// The fewest digits of an integer that may not fit `i64` or `u64`: 18
/// digits always fit.
const DIGITS_MAY_OVERFLOW: usize = 19;

/// An encoded value: `{"<key>": inner}`.
pub fn tagged(key: &str, inner: Value) -> Value {
    let mut object = Map::new();
    object.insert(key.to_owned(), inner);
    Value::Object(object)
}

/// An integer written in decimal (`-`/`+` sign allowed, leading zeros
/// allowed) as a JSON number when it fits `i64` or `u64`, else as
/// `{"$int": "<canonical digits>"}`. `None` when `text` is no integer.
pub fn integer(text: &str) -> Option<Value> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = digits.trim_start_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let canonical = if negative && digits != "0" {
        format!("-{digits}")
    } else {
        digits.to_owned()
    };
    if let Ok(i) = canonical.parse::<i64>() {
        return Some(Value::from(i));
    }
    if let Ok(u) = canonical.parse::<u64>() {
        return Some(Value::from(u));
    }
    Some(tagged(INT, Value::String(canonical)))
}

/// A set of `elements`: duplicates dropped and the rest sorted by JSON
/// text, so two sets of the same elements are equal whatever their order.
pub fn set(elements: Vec<Value>) -> Value {
    let mut keyed: Vec<(String, Value)> = elements.into_iter().map(|v| (v.to_string(), v)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.dedup_by(|a, b| a.0 == b.0);
    tagged(SET, Value::Array(keyed.into_iter().map(|(_, v)| v).collect()))
}

/// A map of `entries`: a JSON object when every key is a string (objects
/// compare regardless of order), else `{"$map": [[k, v], ...]}` sorted by
/// the keys' JSON text. Of two entries with one key, the later one stays,
/// as in a map literal read twice.
pub fn map(entries: Vec<(Value, Value)>) -> Value {
    if entries.iter().all(|(k, _)| k.is_string()) {
        let object = entries
            .into_iter()
            .filter_map(|(k, v)| match k {
                Value::String(k) => Some((k, v)),
                _ => None,
            })
            .collect();
        return Value::Object(object);
    }
    let mut keyed: Vec<(String, Value, Value)> = entries.into_iter().map(|(k, v)| (k.to_string(), k, v)).collect();
    // A stable sort, then keeping the last of equal keys.
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut pairs: Vec<(String, Value, Value)> = Vec::with_capacity(keyed.len());
    for entry in keyed {
        match pairs.last_mut() {
            Some(last) if last.0 == entry.0 => *last = entry,
            _ => pairs.push(entry),
        }
    }
    let pairs = pairs.into_iter().map(|(_, k, v)| Value::Array(vec![k, v])).collect();
    tagged(MAP, Value::Array(pairs))
}

/// True when `text` holds `run` ASCII digits in a row. Looks at about one
/// byte in `run` where digits are rare: a non-digit at the last position of
/// a candidate run rules out every run that would cover it.
pub fn has_digit_run(text: &[u8], run: usize) -> bool {
    if run == 0 {
        return true;
    }
    let mut start = 0;
    while let Some(&last) = text.get(start + run - 1) {
        if !last.is_ascii_digit() {
            start += run;
            continue;
        }
        match text[start..start + run - 1].iter().rposition(|b| !b.is_ascii_digit()) {
            None => return true,
            Some(k) => start += k + 1,
        }
    }
    false
}

/// A JSON text with every integer literal outside `i64`/`u64` replaced by
/// `{"$int":"<digits>"}`, or `None` when it has none (the common case, found
/// by a scan for a run of 19 digits). Strings are copied untouched.
pub fn exact_json_integers(text: &[u8]) -> Option<Vec<u8>> {
    if !has_digit_run(text, DIGITS_MAY_OVERFLOW) {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() + 32);
    let mut changed = false;
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        if b == b'"' {
            let end = string_end(text, i);
            out.extend_from_slice(&text[i..end]);
            i = end;
        } else if b == b'-' || b.is_ascii_digit() {
            let end = number_end(text, i);
            let token = &text[i..end];
            match big_json_integer(token) {
                Some(digits) => {
                    out.extend_from_slice(format!("{{\"{INT}\":\"{digits}\"}}").as_bytes());
                    changed = true;
                }
                None => out.extend_from_slice(token),
            }
            i = end;
        } else {
            out.push(b);
            i += 1;
        }
    }
    changed.then_some(out)
}

/// The index just past the string that opens at `start` (or the end of the
/// text, for a string left open: the JSON parser reports it).
fn string_end(text: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < text.len() {
        match text[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    text.len()
}

/// The index just past the number token that starts at `start`.
fn number_end(text: &[u8], start: usize) -> usize {
    let rest = &text[start + 1..];
    let len = rest
        .iter()
        .position(|b| !matches!(b, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-'))
        .unwrap_or(rest.len());
    start + 1 + len
}

/// The token's text when it is a JSON integer literal (`-`? then `0` or a
/// digit run without leading zero) that fits neither `i64` nor `u64`.
fn big_json_integer(token: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(token).ok()?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    let literal = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
    let fits = text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok();
    (literal && !fits).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TWO_64: &str = "18446744073709551616";

    #[test]
    fn integers_are_numbers_when_they_fit_and_exact_text_when_not() {
        assert_eq!(integer("42"), Some(json!(42)));
        assert_eq!(integer("+007"), Some(json!(7)));
        assert_eq!(integer("-0"), Some(json!(0)));
        assert_eq!(integer("18446744073709551615"), Some(json!(u64::MAX)));
        assert_eq!(integer("-9223372036854775808"), Some(json!(i64::MIN)));
        assert_eq!(integer(TWO_64), Some(json!({"$int": TWO_64})));
        assert_eq!(integer("00018446744073709551616"), Some(json!({"$int": TWO_64})));
        assert_eq!(
            integer("-9223372036854775809"),
            Some(json!({"$int": "-9223372036854775809"}))
        );
        assert_ne!(integer(TWO_64), integer("18446744073709551617"));
        assert_eq!(integer("1.5"), None);
        assert_eq!(integer("-"), None);
    }

    #[test]
    fn sets_ignore_order_and_duplicates() {
        assert_eq!(set(vec![json!(2), json!(1), json!(2)]), json!({"$set": [1, 2]}));
        assert_eq!(set(vec![json!(1), json!(2)]), set(vec![json!(2), json!(1)]));
        assert_ne!(set(vec![json!(1), json!(2)]), json!([1, 2]));
    }

    #[test]
    fn maps_ignore_order() {
        let a = map(vec![(json!("x"), json!(1)), (json!("y"), json!(2))]);
        assert_eq!(a, json!({"x": 1, "y": 2}));
        let b = map(vec![
            (json!(2), json!("b")),
            (json!(1), json!("a")),
            (json!(2), json!("c")),
        ]);
        assert_eq!(b, json!({"$map": [[1, "a"], [2, "c"]]}));
        assert_eq!(b, map(vec![(json!(1), json!("a")), (json!(2), json!("c"))]));
    }

    /// The canonical orders above rest on objects printing their keys in
    /// one order whatever order they were built in: serde_json's
    /// `preserve_order` feature, which breaks that, must stay off.
    #[test]
    fn objects_print_alike_whatever_their_key_order() {
        let a: Value = serde_json::from_str(r#"{"a":1,"b":2}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b":2,"a":1}"#).unwrap();
        assert_eq!(a.to_string(), b.to_string());
        assert_eq!(set(vec![a.clone(), b]), json!({"$set": [a]}));
    }

    #[test]
    fn finds_digit_runs() {
        for (text, run, want) in [
            ("", 3, false),
            ("12", 3, false),
            ("123", 3, true),
            ("a12b123", 3, true),
            ("12a12a12", 3, false),
            ("1234567890123456789", 19, true),
            ("x:123456789012345678,y:1", 19, false),
            ("{\"time\":123456789012345678901}", 19, true),
        ] {
            assert_eq!(has_digit_run(text.as_bytes(), run), want, "{text} {run}");
        }
    }

    #[test]
    fn rewrites_only_big_integer_literals() {
        let line = format!(
            r#"{{"a":{TWO_64},"b":"{TWO_64}","c":[-{TWO_64},1.8446744073709551616e19,18446744073709551615],"d":"\"{TWO_64}"}}"#
        );
        let out = String::from_utf8(exact_json_integers(line.as_bytes()).unwrap()).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["a"], json!({"$int": TWO_64}));
        assert_eq!(v["b"], json!(TWO_64));
        assert_eq!(v["c"][0], json!({"$int": format!("-{TWO_64}")}));
        assert_eq!(v["c"][1], json!(1.8446744073709552e19));
        assert_eq!(v["c"][2], json!(u64::MAX));
        assert_eq!(v["d"], json!(format!("\"{TWO_64}")));
        assert_eq!(exact_json_integers(br#"{"a":"18446744073709551616"}"#), None);
        assert_eq!(exact_json_integers(br#"{"a":1}"#), None);
    }
}
