//! A function's MCP `inputSchema`, compiled: JSON Schema 2020-12 unless the schema names another
//! draft with `$schema` (as MCP 2025-11-25 says of schemas without one). Compiled once, when a
//! spec is resolved to refuse a schema that does not compile and when the MCP endpoint first
//! calls a revision; then each call's arguments are checked against it before the function runs.
//! A schema never reads anything: a `$ref` outside the schema itself (a file, a URL) is refused.

use boon::{CompileError, Compiler, Draft, ErrorKind, SchemaIndex, Schemas, UrlLoader, ValidationError};
use serde_json::Value;
use std::error::Error;

/// Where the schema is placed for the compiler: a name only, never loaded (a base that relative
/// references resolve against, so that they reach [`NoLoading`] and are refused by name).
const LOCATION: &str = "gojinn:///inputSchema.json";

/// A compiled `inputSchema`.
pub struct ToolSchema {
    schemas: Schemas,
    index: SchemaIndex,
}

impl std::fmt::Debug for ToolSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ToolSchema")
    }
}

/// Refuses every `$ref` to a document other than the schema itself.
struct NoLoading;

impl UrlLoader for NoLoading {
    fn load(&self, url: &str) -> Result<Value, Box<dyn Error>> {
        Err(format!("{url} is not loaded: an inputSchema's $ref must point inside the schema").into())
    }
}

impl ToolSchema {
    /// Compiles `schema`, or says what is wrong with it and where (a JSON pointer into it).
    pub fn compile(schema: &Value) -> Result<Self, String> {
        let mut compiler = Compiler::new();
        compiler.set_default_draft(Draft::V2020_12);
        compiler.use_loader(Box::new(NoLoading));
        let mut schemas = Schemas::new();
        let compiled = match compiler.add_resource(LOCATION, schema.clone()) {
            Ok(()) => compiler.compile(LOCATION, &mut schemas),
            Err(error) => Err(error),
        };
        match compiled {
            Ok(index) => Ok(Self { schemas, index }),
            Err(CompileError::ValidationError { src, .. }) => {
                Err(format!("not a valid JSON Schema: {}", describe(&src)))
            }
            Err(error) => Err(format!("{error:#}")),
        }
    }

    /// Ok when `arguments` match the schema; else the first field that does not (a JSON pointer
    /// into the arguments) and what is wrong with it.
    pub fn check(&self, arguments: &Value) -> Result<(), String> {
        self.schemas.validate(arguments, self.index).map_err(|error| describe(&error))
    }
}

/// The innermost reason of a validation error, as `{pointer}: {what}`; a missing or unexpected
/// property is named in the pointer.
fn describe(error: &ValidationError) -> String {
    let error = innermost(error);
    let mut pointer = error.instance_location.to_string();
    let named = match &error.kind {
        ErrorKind::Required { want } => want.first().map(|field| field.to_string()),
        ErrorKind::AdditionalProperties { got } => got.first().map(|field| field.to_string()),
        _ => None,
    };
    if let Some(field) = named {
        pointer.push('/');
        pointer.push_str(&field.replace('~', "~0").replace('/', "~1"));
    }
    // "anyOf failed" alone says nothing: add what the first alternative wanted.
    let reason = match (&error.kind, error.causes.first()) {
        (ErrorKind::AnyOf | ErrorKind::OneOf(None), Some(first)) => {
            format!("{} ({})", error.kind, innermost(first).kind)
        }
        (kind, _) => kind.to_string(),
    };
    match pointer.as_str() {
        "" => format!("(the whole value): {reason}"),
        _ => format!("{pointer}: {reason}"),
    }
}

/// The error below the wrappers (a group of errors, the schema, a `$ref`) that says what is wrong.
fn innermost<'e, 's, 'v>(mut error: &'e ValidationError<'s, 'v>) -> &'e ValidationError<'s, 'v> {
    while matches!(error.kind, ErrorKind::Group | ErrorKind::Schema { .. } | ErrorKind::Reference { .. }) {
        let Some(cause) = error.causes.first() else { break };
        error = cause;
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn echo() -> ToolSchema {
        ToolSchema::compile(&json!({
            "type": "object",
            "properties": {
                "name": { "type": "string" },
                "tags": { "type": "array", "items": { "$ref": "#/$defs/tag" } }
            },
            "required": ["name"],
            "additionalProperties": false,
            "$defs": { "tag": { "type": "string", "maxLength": 3 } }
        }))
        .unwrap()
    }

    #[test]
    fn arguments_that_match_pass() {
        assert_eq!(echo().check(&json!({ "name": "x", "tags": ["a", "bcd"] })), Ok(()));
    }

    #[test]
    fn a_mismatch_names_the_field_as_a_json_pointer() {
        let schema = echo();
        let cases = [
            (json!({}), "/name: missing properties 'name'"),
            (json!({ "name": 5 }), "/name: want string, but got number"),
            (json!({ "name": "x", "tags": ["a", "long"] }), "/tags/1: "),
            (json!({ "name": "x", "a/b": 1 }), "/a~1b: additionalProperties 'a/b' not allowed"),
            (json!("text"), "(the whole value): want object, but got string"),
        ];
        for (arguments, expected) in cases {
            let error = schema.check(&arguments).unwrap_err();
            assert!(error.starts_with(expected), "{arguments}: {error:?} does not start with {expected:?}");
        }
    }

    #[test]
    fn a_schema_that_does_not_compile_says_where() {
        let error =
            ToolSchema::compile(&json!({ "type": "object", "properties": { "n": { "type": "strnig" } } }))
                .unwrap_err();
        assert!(error.contains("/properties/n/type"), "{error}");
        let error = ToolSchema::compile(&json!({ "type": "object", "minProperties": -1 })).unwrap_err();
        assert!(error.contains("/minProperties"), "{error}");
    }

    #[test]
    fn a_schema_reads_no_file_and_no_url() {
        for reference in ["file:///etc/passwd", "https://example.com/schema.json", "other.json"] {
            let schema = json!({ "type": "object", "properties": { "a": { "$ref": reference } } });
            let error = ToolSchema::compile(&schema).unwrap_err();
            assert!(
                error.contains("is not loaded: an inputSchema's $ref must point inside"),
                "{reference}: {error}"
            );
        }
    }

    #[test]
    fn an_older_draft_named_by_dollar_schema_is_honoured() {
        let schema = ToolSchema::compile(&json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": { "n": { "type": "integer", "exclusiveMinimum": 0 } }
        }))
        .unwrap();
        assert!(schema.check(&json!({ "n": 0 })).unwrap_err().starts_with("/n: "));
        assert_eq!(schema.check(&json!({ "n": 1 })), Ok(()));
    }
}
