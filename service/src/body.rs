//! JSON request bodies that fail with a field name: [`JsonBody`] and [`Validate`].
//!
//! poem-openapi's own `Json<T>` reports a wrong type or a missing field without
//! saying which field. `JsonBody<T>` documents the same schema (`T`'s) but
//! parses with serde, tracking the path, and then runs `T`'s own checks, so
//! every problem comes back as a 422 naming `body.<field>`.

use poem::{FromRequest, Request, RequestBody};
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::{ToJSON, Type};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorDetail};

/// The largest JSON body any operation takes: requests are a few fields.
const MAX_JSON_BODY: usize = 64 * 1024;

/// Field problems found by [`Validate::validate`].
#[derive(Debug, Default)]
pub struct Problems(Vec<ErrorDetail>);

impl Problems {
    /// Records that `field` (a name inside the body) has `problem`.
    pub fn add(&mut self, field: &str, problem: impl Into<String>) {
        self.0.push(ErrorDetail {
            field: format!("body.{field}"),
            problem: problem.into(),
        });
    }

    /// Checks a required text's length in characters, after trimming.
    pub fn text(&mut self, field: &str, value: &str, min: usize, max: usize) {
        let length = value.trim().chars().count();
        if length < min || length > max {
            self.add(
                field,
                format!("must be {min} to {max} characters, got {length}"),
            );
        }
    }

    pub fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.0))
        }
    }
}

/// Checks a parsed body beyond its types (lengths, ranges, formats).
pub trait Validate {
    fn validate(&self, problems: &mut Problems);
}

/// A JSON body of type `T`, parsed and validated.
pub struct JsonBody<T>(pub T);

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = "application/json";

    fn check_content_type(content_type: &str) -> bool {
        content_type
            .parse::<mime::Mime>()
            .is_ok_and(|mime| mime.type_() == "application" && mime.subtype() == "json")
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: DeserializeOwned + ToJSON + Validate + Send> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let body = poem::Body::from_request(request, body).await?;
        let data = body.into_bytes_limit(MAX_JSON_BODY).await.map_err(|_| {
            ApiError::PayloadTooLarge(poem_openapi::payload::Json(crate::error::ErrorBody::new(
                "payload_too_large",
                format!("A JSON body may be at most {MAX_JSON_BODY} bytes."),
            )))
        })?;
        Ok(Self(parse(&data)?))
    }
}

poem_openapi::impl_apirequest_for_payload!(JsonBody<T>, T: Type + DeserializeOwned + ToJSON + Validate + Send);

/// Parses and validates `data` as a `T`.
pub fn parse<T: DeserializeOwned + ToJSON + Validate>(data: &[u8]) -> Result<T, ApiError> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("The request needs a JSON body."));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(data);
    let value: T = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(value) => {
            if let Err(error) = deserializer.end() {
                return Err(ApiError::bad_request(format!(
                    "The body is not valid JSON: {error}."
                )));
            }
            value
        }
        Err(error) => {
            let inner = error.inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(ApiError::bad_request(format!(
                    "The body is not valid JSON: {inner}."
                )));
            }
            let message = strip_position(&inner.to_string());
            let path = error.path().to_string();
            // serde names a missing field only in its message.
            let field = match message.strip_prefix("missing field `") {
                Some(rest) => {
                    let name = rest.trim_end_matches('`');
                    if path == "." {
                        name.to_owned()
                    } else {
                        format!("{path}.{name}")
                    }
                }
                None if path == "." => String::new(),
                None => path,
            };
            let field = if field.is_empty() {
                "body".to_owned()
            } else {
                format!("body.{field}")
            };
            let problem = if message.starts_with("missing field") {
                "is required".to_owned()
            } else {
                message
            };
            return Err(ApiError::validation(vec![ErrorDetail { field, problem }]));
        }
    };
    // The fields as parsed, so keys the type ignores are not checked.
    if let Some(parsed) = value.to_json() {
        let fields = crate::control_characters::fields_in_json(&parsed);
        if !fields.is_empty() {
            return Err(crate::control_characters::refused(&fields));
        }
    }
    let mut problems = Problems::default();
    value.validate(&mut problems);
    problems.into_result()?;
    Ok(value)
}

/// serde_json's messages end with " at line L column C": noise for one field.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, poem_openapi::Object)]
    struct Sample {
        name: String,
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize, poem_openapi::Object)]
    struct Inner {
        count: u32,
    }

    impl Validate for Sample {
        fn validate(&self, problems: &mut Problems) {
            problems.text("name", &self.name, 1, 5);
        }
    }

    fn details(error: ApiError) -> (u16, Vec<(String, String)>) {
        match error {
            ApiError::Validation(body) => (
                422,
                body.0
                    .details
                    .into_iter()
                    .map(|d| (d.field, d.problem))
                    .collect(),
            ),
            ApiError::BadRequest(_) => (400, Vec::new()),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn names_missing_mistyped_and_invalid_fields() {
        let missing = parse::<Sample>(br#"{}"#).unwrap_err();
        assert_eq!(
            details(missing),
            (422, vec![("body.name".into(), "is required".into())])
        );
        let mistyped = parse::<Sample>(br#"{"name": 3}"#).unwrap_err();
        let (status, fields) = details(mistyped);
        assert_eq!(status, 422);
        assert_eq!(fields[0].0, "body.name");
        assert!(
            fields[0].1.starts_with("invalid type: integer `3`"),
            "{fields:?}"
        );
        let nested = parse::<Sample>(br#"{"name": "a", "inner": {"count": -1}}"#).unwrap_err();
        assert_eq!(details(nested).1[0].0, "body.inner.count");
        let too_long = parse::<Sample>(br#"{"name": "abcdefg"}"#).unwrap_err();
        assert_eq!(
            details(too_long).1,
            vec![(
                "body.name".into(),
                "must be 1 to 5 characters, got 7".into()
            )]
        );
    }

    #[test]
    fn malformed_json_is_a_bad_request() {
        assert_eq!(details(parse::<Sample>(b"{").unwrap_err()).0, 400);
        assert_eq!(details(parse::<Sample>(b"").unwrap_err()).0, 400);
        assert_eq!(
            details(parse::<Sample>(br#"{"name":"a"} trailing"#).unwrap_err()).0,
            400
        );
        let parsed = parse::<Sample>(br#"{"name":"abc","inner":{"count":2}}"#).unwrap();
        assert_eq!(parsed.inner.map(|inner| inner.count), Some(2));
    }
}
