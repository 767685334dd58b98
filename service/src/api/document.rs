//! The OpenAPI document as served at `/openapi.json`: poem-openapi's, plus
//! the rule every request string is held to and no attribute can state once
//! for all: no control characters (see `crate::control_characters`, which
//! refuses them in every JSON string and query parameter). Each string a
//! request may carry — a query or path parameter, a field of a request body
//! however deep — gets that rule as its `pattern`, unless it already has a
//! pattern, an enumeration or a format (ids, times, files) that excludes
//! them. An optional field of a request body is also `nullable`: serde reads
//! `null` as its absence. Generated clients and fuzzers then send what the
//! server takes.
//!
//! Swagger UI (`/docs`) shows poem-openapi's document, without these patterns:
//! its page is built inside poem-openapi from that document.

use std::collections::HashSet;

use serde_json::{Value, json};

/// No C0 control, DEL or C1 control: the characters `char::is_control` names.
/// Written for ECMAScript, Python and Rust regular expressions alike.
pub const NO_CONTROL_CHARACTERS: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$";

/// The served document: `spec` (poem-openapi's JSON) with the request
/// strings' pattern.
pub fn with_request_string_patterns(spec: &str) -> String {
    let mut document: Value = match serde_json::from_str(spec) {
        Ok(document) => document,
        Err(_) => return spec.to_owned(),
    };
    let mut request_schemas = Vec::new();
    if let Some(paths) = document["paths"].as_object_mut() {
        for operation in paths.values_mut().filter_map(Value::as_object_mut) {
            // `get_mut`, never indexing: indexing a missing key inserts it.
            for operation in operation.values_mut() {
                for parameter in operation
                    .get_mut("parameters")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    if let Some(schema) = parameter.get_mut("schema") {
                        constrain(schema, &mut request_schemas);
                    }
                }
                for media in operation
                    .pointer_mut("/requestBody/content")
                    .and_then(Value::as_object_mut)
                    .into_iter()
                    .flat_map(|content| content.values_mut())
                {
                    if let Some(schema) = media.get_mut("schema") {
                        constrain(schema, &mut request_schemas);
                    }
                }
            }
        }
    }
    // Named schemas a request refers to, and the ones they refer to in turn.
    let mut done = HashSet::new();
    while let Some(name) = request_schemas.pop() {
        if !done.insert(name.clone()) {
            continue;
        }
        if let Some(schema) = document
            .get_mut("components")
            .and_then(|components| components.get_mut("schemas"))
            .and_then(|schemas| schemas.get_mut(&name))
        {
            constrain(schema, &mut request_schemas);
        }
    }
    serde_json::to_string(&document).unwrap_or_else(|_| spec.to_owned())
}

/// Adds the pattern to `schema` if it is an unconstrained string, or to the
/// strings inside it; collects the named schemas it refers to.
fn constrain(schema: &mut Value, referred: &mut Vec<String>) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if let Some(name) = object
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|reference| reference.strip_prefix("#/components/schemas/"))
    {
        referred.push(name.to_owned());
        return;
    }
    let is_string = object.get("type").and_then(Value::as_str) == Some("string");
    let constrained = ["pattern", "enum", "format", "const"]
        .iter()
        .any(|key| object.contains_key(*key));
    if is_string && !constrained {
        object.insert("pattern".into(), json!(NO_CONTROL_CHARACTERS));
    }
    for key in ["items", "additionalProperties"] {
        if let Some(inner) = object.get_mut(key) {
            constrain(inner, referred);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for inner in object
            .get_mut(key)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            constrain(inner, referred);
        }
    }
    let required: HashSet<String> = object
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|name| name.as_str().map(str::to_owned))
        .collect();
    for (name, inner) in object
        .get_mut("properties")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|properties| properties.iter_mut())
    {
        constrain(inner, referred);
        // serde reads an optional field's `null` as its absence.
        if !required.contains(name)
            && let Some(property) = inner.as_object_mut()
            && !property.contains_key("$ref")
        {
            property.insert("nullable".into(), json!(true));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_strings_get_the_pattern_and_nothing_else_does() {
        let spec = json!({
            "paths": {"/y": {"get": {"responses": {}}}, "/x": {"post": {
                "parameters": [
                    {"name": "q", "schema": {"type": "string"}},
                    {"name": "id", "schema": {"type": "string", "format": "uuid"}},
                    {"name": "n", "schema": {"type": "integer"}},
                ],
                "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/In"}}}},
                "responses": {"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Out"}}}}},
            }}},
            "components": {"schemas": {
                "In": {"type": "object", "properties": {
                    "name": {"type": "string"},
                    "year": {"type": "string", "pattern": "^\\d{4}$"},
                    "kind": {"type": "string", "enum": ["a"]},
                    "inner": {"$ref": "#/components/schemas/Inner"},
                    "emails": {"type": "array", "items": {"type": "string"}},
                }},
                "Inner": {"type": "object", "properties": {"note": {"type": "string"}}},
                "Out": {"type": "object", "properties": {"name": {"type": "string"}}},
            }},
        });
        let served: Value =
            serde_json::from_str(&with_request_string_patterns(&spec.to_string())).unwrap();
        let pattern = json!(NO_CONTROL_CHARACTERS);
        assert_eq!(
            served["paths"]["/y"],
            json!({"get": {"responses": {}}}),
            "nothing added"
        );
        let parameters = &served["paths"]["/x"]["post"]["parameters"];
        assert_eq!(parameters[0]["schema"]["pattern"], pattern);
        assert!(parameters[1]["schema"].get("pattern").is_none());
        assert!(parameters[2]["schema"].get("pattern").is_none());
        let schemas = &served["components"]["schemas"];
        assert_eq!(schemas["In"]["properties"]["name"]["pattern"], pattern);
        assert_eq!(
            schemas["In"]["properties"]["year"]["pattern"],
            json!("^\\d{4}$")
        );
        assert!(schemas["In"]["properties"]["kind"].get("pattern").is_none());
        assert_eq!(
            schemas["In"]["properties"]["emails"]["items"]["pattern"],
            pattern
        );
        assert_eq!(schemas["Inner"]["properties"]["note"]["pattern"], pattern);
        assert_eq!(schemas["In"]["properties"]["name"]["nullable"], json!(true));
        assert!(
            schemas["Out"]["properties"]["name"]
                .get("pattern")
                .is_none()
        );
    }
}
