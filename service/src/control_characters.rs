//! Control characters in what a client sends: refused with a 422 naming the
//! field, before any handler sees them.
//!
//! PostgreSQL refuses a NUL in text, so a NUL that reached a query answered
//! 500; the other control characters (C0, DEL, C1) are never meaningful in
//! names, symbols, addresses, tokens or filters, and only make logs and
//! exports lie. Every JSON body's strings, as the body's type parsed them
//! ([`fields_in_json`], run by [`crate::body::parse`]; keys the type ignores
//! are not looked at) and every query parameter ([`refuse_in_query`])
//! are checked; path parameters are ids that fail to parse on their own.

use poem::{Endpoint, IntoResponse, Request, Response, Result};
use serde_json::Value;

use crate::error::{ApiError, ErrorDetail};

const PROBLEM: &str = "must not contain control characters";

fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// The fields (`body.a.b[2]`) of every string or key in `value` holding a
/// control character, in the body's order of keys.
pub fn fields_in_json(value: &Value) -> Vec<String> {
    fn walk(value: &Value, path: &str, found: &mut Vec<String>) {
        match value {
            Value::String(text) if has_control(text) => found.push(path.to_owned()),
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    walk(item, &format!("{path}[{index}]"), found);
                }
            }
            Value::Object(fields) => {
                for (key, item) in fields {
                    let field = format!("{path}.{}", key.escape_debug());
                    if has_control(key) {
                        found.push(field);
                    } else {
                        walk(item, &field, found);
                    }
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(value, "body", &mut found);
    found
}

/// The 422 naming each of `fields`.
pub fn refused(fields: &[String]) -> ApiError {
    ApiError::validation(
        fields
            .iter()
            .map(|field| ErrorDetail {
                field: field.clone(),
                problem: PROBLEM.to_owned(),
            })
            .collect(),
    )
}

/// Answers 422 naming `query.<name>` when a query parameter's name or value
/// holds a control character (percent-encoded or not).
pub async fn refuse_in_query<E: Endpoint>(endpoint: E, request: Request) -> Result<Response> {
    if let Some(query) = request.uri().query() {
        let fields: Vec<String> = url::form_urlencoded::parse(query.as_bytes())
            .filter(|(name, value)| has_control(name) || has_control(value))
            .map(|(name, _)| format!("query.{}", name.escape_debug()))
            .collect();
        if !fields.is_empty() {
            return Ok(refused(&fields).into_response());
        }
    }
    endpoint
        .call(request)
        .await
        .map(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_control_character_is_named_by_its_path() {
        assert!(fields_in_json(&json!({"name": "Acme", "n": 1})).is_empty());
        assert_eq!(fields_in_json(&json!({"name": "Ac\u{0}me"})), ["body.name"]);
        assert_eq!(
            fields_in_json(&json!({
                "a": {"emails": ["x@example.com", "y\u{1b}@example.com"]},
                "k\u{85}": "v",
                "z": "\n",
            })),
            ["body.a.emails[1]", "body.k\\u{85}", "body.z"]
        );
        // Unusual but printable text passes: bidi marks, emoji, combining marks.
        assert!(fields_in_json(&json!({"name": "\u{202e}ẞ😀e\u{301}"})).is_empty());
    }
}
