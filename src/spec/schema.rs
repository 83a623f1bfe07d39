//! The JSON Schema (draft 2020-12) of a spec document, for editors and CI linters: one schema that
//! accepts a `Tenant` or a `Function` document (`oneOf`, told apart by the `kind` const).
//!
//! The document structs derive it with schemars from the same serde attributes the parser uses
//! (unknown fields are errors, defaults make fields optional); the values with hand-written
//! `Deserialize` impls (names, sizes, durations, digests, route paths, environment names,
//! replicas) get their schemas here, written to accept what those impls accept. Two checks are
//! looser than the parser: a size's overflow, and a duration of zero. A few checks that happen
//! after parsing (an explicit `maxConcurrency` must be at least 1) are in the schema too. What
//! needs the whole spec set (references, quotas, route conflicts) is not.

use super::cors::{CorsHeader, CorsMethod, CorsOrigin};
use super::names::Name;
use super::quantity::{ByteSize, Span};
use super::types::{
    API_VERSION, EnvName, FunctionDoc, Replicas, RoutePath, RoutePrefix, Sha256Hex, TenantDoc,
};
use schemars::{JsonSchema, Schema, SchemaGenerator, generate::SchemaSettings, json_schema};
use std::borrow::Cow;

/// `$id` of the schema.
pub const SCHEMA_ID: &str = "https://gojinn.dev/schemas/v1/spec.json";

/// A [`Name`]: a DNS label.
pub const NAME_PATTERN: &str = "^[a-z]([a-z0-9-]*[a-z0-9])?$";
/// A [`ByteSize`] written as text: a whole number with an optional unit (whitespace around it is
/// trimmed).
pub const BYTE_SIZE_PATTERN: &str = r"^\s*[0-9]+(k|M|G|T|Ki|Mi|Gi|Ti)?\s*$";
/// A [`Span`]: one or more `<number><unit>` parts, the units humantime accepts.
pub const SPAN_PATTERN: &str = r"^\s*([0-9]+(\.[0-9]+)?\s*(nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|months|month|M|years|year|yrs|yr|y)\s*)+$";
/// A [`Sha256Hex`]: 64 lowercase hex digits.
pub const SHA256_PATTERN: &str = "^[0-9a-f]{64}$";
/// A [`RoutePath`]: `/`, segments of unreserved characters or `{param}`, an optional final
/// `{*rest}`; an empty last segment is a trailing slash.
pub const ROUTE_PATH_PATTERN: &str =
    r"^/(([A-Za-z0-9._~-]+|\{[A-Za-z0-9_]+\})/)*([A-Za-z0-9._~-]*|\{[A-Za-z0-9_]+\}|\{\*[A-Za-z0-9_]+\})$";
/// Paths the platform reserves, refused by [`RoutePath`].
pub const RESERVED_ROUTE_PATTERN: &str = "^/_gojinn(/|$)";
/// A [`RoutePrefix`]: one or more literal segments, an optional trailing slash.
pub const ROUTE_PREFIX_PATTERN: &str = r"^(/[A-Za-z0-9._~-]+)+/?$";
/// Prefixes the platform reserves, refused by [`RoutePrefix`] in any letter case.
pub const RESERVED_PREFIX_PATTERN: &str = "^/_[Gg][Oo][Jj][Ii][Nn][Nn](/|$)";
/// A [`CorsOrigin`]: `scheme://host[:port]` (a DNS name, an IPv4 or a bracketed IPv6 address),
/// or `*`.
pub const CORS_ORIGIN_PATTERN: &str =
    r"^(\*|[A-Za-z][A-Za-z0-9+.-]*://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?)$";
/// A [`CorsMethod`] or [`CorsHeader`]: an HTTP token (which `*` is too).
pub const HTTP_TOKEN_PATTERN: &str = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$";
/// An [`EnvName`].
pub const ENV_NAME_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";

/// The JSON Schema of one spec document (`gojinn schema`).
pub fn schema() -> serde_json::Value {
    let mut generator: SchemaGenerator = SchemaSettings::draft2020_12().for_deserialize().into_generator();
    let tenant = generator.subschema_for::<TenantDoc>();
    let function = generator.subschema_for::<FunctionDoc>();
    let definitions = generator.take_definitions(true);
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Gojinn spec document",
        "description": format!(
            "One YAML document of a Gojinn spec repository (apiVersion {API_VERSION}): a Tenant or a Function."
        ),
        "oneOf": [tenant, function],
        "$defs": definitions,
    })
}

/// `impl JsonSchema for $ty`: the schema named `$name` (its key in `$defs`), with the body given.
macro_rules! value_schemas {
    ($($ty:ty as $name:literal => $body:tt)*) => {
        $(
            impl JsonSchema for $ty {
                fn schema_name() -> Cow<'static, str> {
                    $name.into()
                }

                fn json_schema(_: &mut SchemaGenerator) -> Schema {
                    json_schema!($body)
                }
            }
        )*
    };
}

value_schemas! {
    Name as "Name" => {
        "description": "Lowercase letters, digits and '-', starting with a letter and not ending with '-' (a DNS label).",
        "type": "string",
        "minLength": 1,
        "maxLength": Name::MAX_LEN,
        "pattern": NAME_PATTERN,
    }

    ByteSize as "ByteSize" => {
        "description": "A byte size: a number of bytes, or a whole number with a unit: Ki, Mi, Gi, Ti (binary) or k, M, G, T (decimal), e.g. 64Mi.",
        "oneOf": [
            { "type": "integer", "minimum": 0 },
            { "type": "string", "pattern": BYTE_SIZE_PATTERN },
        ],
    }

    Span as "Duration" => {
        "description": "A duration greater than zero, with units: 500ms, 2s, 1m 30s.",
        "type": "string",
        "pattern": SPAN_PATTERN,
    }

    Replicas as "Replicas" => {
        "description": "JetStream replicas for the tenant's streams and buckets; absent: the reconciling node's cluster.replicas (default 1).",
        "type": "integer",
        "enum": [1, 3, 5],
    }

    Sha256Hex as "Sha256" => {
        "description": "A sha256 digest: 64 lowercase hex digits.",
        "type": "string",
        "pattern": SHA256_PATTERN,
    }

    RoutePath as "RoutePath" => {
        "description": "An absolute URL path: '/' followed by segments of letters, digits and '-._~', {param} or a final {*rest}. Paths under /_gojinn are reserved.",
        "type": "string",
        "pattern": ROUTE_PATH_PATTERN,
        "not": { "pattern": RESERVED_ROUTE_PATTERN },
    }

    RoutePrefix as "RoutePrefix" => {
        "description": "A path prefix granted to the tenant for declared routes: '/' followed by segments of letters, digits and '-._~' (no {param}). '/api' grants '/api' and every path below it, not '/apix'. Not under /_gojinn.",
        "type": "string",
        "pattern": ROUTE_PREFIX_PATTERN,
        "not": { "pattern": RESERVED_PREFIX_PATTERN },
    }

    CorsOrigin as "CorsOrigin" => {
        "description": "An origin allowed to call the tenant's functions: scheme://host[:port], without a path (not even a trailing '/'); or '*' alone, any origin (never with allowCredentials).",
        "type": "string",
        "pattern": CORS_ORIGIN_PATTERN,
    }

    CorsMethod as "CorsMethod" => {
        "description": "An HTTP method name, case-sensitive (standard methods in uppercase); or '*' alone, any method (never with allowCredentials).",
        "type": "string",
        "pattern": HTTP_TOKEN_PATTERN,
    }

    CorsHeader as "CorsHeader" => {
        "description": "An HTTP header name; or '*' alone, any header (never with allowCredentials).",
        "type": "string",
        "pattern": HTTP_TOKEN_PATTERN,
    }

    EnvName as "EnvName" => {
        "description": "An environment variable name: letters, digits and '_', not starting with a digit.",
        "type": "string",
        "pattern": ENV_NAME_PATTERN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::path::Path;

    /// A validator for the subset of JSON Schema that [`schema`] uses. `pattern` and
    /// `patternProperties` keys are not checked here (there is no regex engine among the
    /// dependencies); the patterns are pinned by `patterns_match_the_parsers` instead.
    fn validate(root: &Value, schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
        let schema = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => return errors.push(format!("{path}: not allowed")),
            Value::Object(schema) => schema,
            other => panic!("not a schema: {other}"),
        };
        if let Some(Value::String(reference)) = schema.get("$ref") {
            let name = reference.strip_prefix("#/$defs/").expect("local reference");
            let target = &root["$defs"][name];
            assert!(!target.is_null(), "dangling {reference}");
            validate(root, target, value, path, errors);
        }
        if let Some(expected) = schema.get("type") {
            let types: Vec<&str> = match expected {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().map(|t| t.as_str().unwrap()).collect(),
                other => panic!("bad type {other}"),
            };
            let actual = match value {
                Value::Null => "null",
                Value::Bool(_) => "boolean",
                Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            };
            if !types.iter().any(|t| *t == actual || (*t == "number" && actual == "integer")) {
                return errors.push(format!("{path}: expected {types:?}, found {value}"));
            }
        }
        if let Some(expected) = schema.get("const")
            && expected != value
        {
            errors.push(format!("{path}: expected {expected}, found {value}"));
        }
        if let Some(Value::Array(options)) = schema.get("enum")
            && !options.contains(value)
        {
            errors.push(format!("{path}: {value} is not one of {options:?}"));
        }
        if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), value.as_f64())
            && n < min
        {
            errors.push(format!("{path}: {n} is less than {min}"));
        }
        if let (Some(max), Some(n)) = (schema.get("maximum").and_then(Value::as_f64), value.as_f64())
            && n > max
        {
            errors.push(format!("{path}: {n} is more than {max}"));
        }
        if let Value::String(s) = value {
            let len = s.chars().count() as u64;
            if schema.get("minLength").and_then(Value::as_u64).is_some_and(|min| len < min)
                || schema.get("maxLength").and_then(Value::as_u64).is_some_and(|max| len > max)
            {
                errors.push(format!("{path}: length of {s:?} is out of bounds"));
            }
        }
        let matching = |options: &Value| -> usize {
            let options = options.as_array().expect("array of schemas");
            options
                .iter()
                .filter(|option| {
                    let mut sub = Vec::new();
                    validate(root, option, value, path, &mut sub);
                    sub.is_empty()
                })
                .count()
        };
        if let Some(options) = schema.get("oneOf")
            && matching(options) != 1
        {
            errors.push(format!("{path}: {value} must match exactly one of {options}"));
        }
        if let Some(options) = schema.get("anyOf")
            && matching(options) == 0
        {
            errors.push(format!("{path}: {value} matches none of {options}"));
        }
        if let Some(Value::Array(all)) = schema.get("allOf") {
            for option in all {
                validate(root, option, value, path, errors);
            }
        }
        if let Value::Object(map) = value {
            let properties = schema.get("properties").and_then(Value::as_object);
            for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
                if !map.contains_key(required.as_str().unwrap()) {
                    errors.push(format!("{path}: missing {required}"));
                }
            }
            for (key, item) in map {
                let at = format!("{path}.{key}");
                if let Some(property) = properties.and_then(|p| p.get(key)) {
                    validate(root, property, item, &at, errors);
                } else if let Some(Value::Object(patterns)) = schema.get("patternProperties") {
                    for property in patterns.values() {
                        validate(root, property, item, &at, errors);
                    }
                } else if let Some(additional) = schema.get("additionalProperties") {
                    validate(root, additional, item, &at, errors);
                }
            }
        }
        if let Value::Array(items) = value {
            let len = items.len() as u64;
            if schema.get("minItems").and_then(Value::as_u64).is_some_and(|min| len < min)
                || schema.get("maxItems").and_then(Value::as_u64).is_some_and(|max| len > max)
            {
                errors.push(format!("{path}: {len} items are out of bounds"));
            }
        }
        if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
            for (i, item) in items.iter().enumerate() {
                validate(root, item_schema, item, &format!("{path}[{i}]"), errors);
            }
        }
    }

    fn errors(value: &Value) -> Vec<String> {
        let root = schema();
        let mut errors = Vec::new();
        validate(&root, &root, value, "", &mut errors);
        errors
    }

    /// Every document of every YAML file in `dir`, as JSON.
    fn documents(dir: &Path) -> Vec<(String, Value)> {
        let mut docs = Vec::new();
        for path in crate::spec::spec_files(dir).unwrap() {
            let text = std::fs::read_to_string(&path).unwrap();
            for (i, doc) in serde_norway::Deserializer::from_str(&text).enumerate() {
                let value: Value = serde::Deserialize::deserialize(doc).unwrap();
                if !value.is_null() {
                    docs.push((format!("{}#{i}", path.display()), value));
                }
            }
        }
        docs
    }

    fn yaml(text: &str) -> Value {
        serde_norway::from_str(text).unwrap()
    }

    #[test]
    fn is_one_of_tenant_and_function() {
        let schema = schema();
        assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert_eq!(
            schema["oneOf"],
            json!([{ "$ref": "#/$defs/TenantDoc" }, { "$ref": "#/$defs/FunctionDoc" }])
        );
        let defs = &schema["$defs"];
        for (doc, kind) in [("TenantDoc", "Tenant"), ("FunctionDoc", "Function")] {
            let properties = &defs[doc]["properties"];
            assert_eq!(properties["apiVersion"]["const"], API_VERSION, "{doc}");
            assert_eq!(properties["kind"]["const"], kind, "{doc}");
            assert_eq!(defs[doc]["additionalProperties"], false, "{doc}");
        }
        assert_eq!(defs["TenantDoc"]["required"], json!(["apiVersion", "kind", "metadata"]));
        assert_eq!(defs["FunctionDoc"]["required"], json!(["apiVersion", "kind", "metadata", "spec"]));
        assert_eq!(defs["Replicas"]["enum"], json!([1, 3, 5]));
        assert_eq!(
            defs["Method"]["enum"],
            json!(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
        );
        // Round-trips as JSON text.
        let text = serde_json::to_string_pretty(&schema).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), schema);
    }

    #[test]
    fn every_reference_resolves_and_every_value_type_is_described() {
        fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        out.push(r);
                    }
                    map.values().for_each(|v| refs(v, out));
                }
                Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let schema = schema();
        let mut all = Vec::new();
        refs(&schema, &mut all);
        for r in all {
            let name = r.strip_prefix("#/$defs/").unwrap();
            assert!(schema["$defs"].get(name).is_some(), "{r}");
        }
        let defs = &schema["$defs"];
        assert_eq!(defs["Name"]["pattern"], NAME_PATTERN);
        assert_eq!(defs["Name"]["maxLength"], 63);
        assert_eq!(defs["ByteSize"]["oneOf"][1]["pattern"], BYTE_SIZE_PATTERN);
        assert_eq!(defs["Duration"]["pattern"], SPAN_PATTERN);
        assert_eq!(defs["Sha256"]["pattern"], SHA256_PATTERN);
        assert_eq!(defs["RoutePath"]["pattern"], ROUTE_PATH_PATTERN);
        assert_eq!(defs["RoutePrefix"]["pattern"], ROUTE_PREFIX_PATTERN);
        assert_eq!(defs["CorsOrigin"]["pattern"], CORS_ORIGIN_PATTERN);
        assert_eq!(defs["CorsHeader"]["pattern"], HTTP_TOKEN_PATTERN);
        assert_eq!(defs["Cors"]["required"], json!(["allowOrigins", "allowMethods"]));
        let env = &defs["FunctionSpec"]["properties"]["env"];
        assert_eq!(env["additionalProperties"], false, "{env}");
        assert!(env["patternProperties"].get(ENV_NAME_PATTERN).is_some(), "{env}");
    }

    #[test]
    fn accepts_the_examples_and_the_full_fixture() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut docs = documents(&root.join("tests/fixtures/specs/valid-full"));
        let text = std::fs::read_to_string(root.join("examples/specs.yaml")).unwrap();
        for (i, doc) in serde_norway::Deserializer::from_str(&text).enumerate() {
            let value: Value = serde::Deserialize::deserialize(doc).unwrap();
            docs.push((format!("examples/specs.yaml#{i}"), value));
        }
        assert!(docs.len() >= 9, "{}", docs.len());
        for (name, doc) in &docs {
            assert_eq!(errors(doc), Vec::<String>::new(), "{name}: {doc}");
        }
    }

    #[test]
    fn rejects_invalid_documents() {
        let bad = [
            // Unknown fields, at any depth.
            "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: { name: beta, namespace: x }",
            "apiVersion: gojinn.dev/v1\nkind: Function\nmetadata: { name: f, tenant: a }\n\
             spec: { module: { path: m.wasm }, limits: { memroy: 64Mi } }",
            // Values.
            "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: { name: two }\nspec: { replicas: 2 }",
            "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: { name: a }\nspec: { quotas: { maxConcurrency: 0 } }",
            "apiVersion: gojinn.dev/v1\nkind: Function\nmetadata: { name: f, tenant: a }\n\
             spec: { module: { path: m.wasm }, routes: [{ path: /m, methods: [FETCH] }] }",
            "apiVersion: gojinn.dev/v1\nkind: Function\nmetadata: { name: f, tenant: a }\n\
             spec: { module: { path: m.wasm }, limits: { timeout: 5 } }",
            "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: { name: abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij1234 }",
            // Required fields, header values.
            "apiVersion: gojinn.dev/v1\nkind: Function\nmetadata: { name: f, tenant: a }",
            "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: {}",
            "apiVersion: gojinn.dev/v2\nkind: Tenant\nmetadata: { name: a }",
            "apiVersion: gojinn.dev/v1\nkind: Job\nmetadata: { name: a }",
            "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: { name: a }\n\
             spec: { apiKeys: [{ name: ci, sha256: \"0000000000000000000000000000000000000000000000000000000000000000\", scope: invoke }] }",
            "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: { name: a }\n\
             spec: { apiKeys: [{ name: ci, sha256: \"0000000000000000000000000000000000000000000000000000000000000000\", scopes: [admin] }] }",
            "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: { name: a }\n\
             spec: { cors: { allowOrigins: [https://a.example], allowMethods: [GET], allowOrigin: [x] } }",
            "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: { name: a }\n\
             spec: { cors: { allowOrigins: [], allowMethods: [GET] } }",
            "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: { name: a }\n\
             spec: { cors: { allowOrigins: [https://a.example] } }",
            "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: { name: a }\n\
             spec: { cors: { allowOrigins: [https://a.example], allowMethods: [GET], maxAge: 10 } }",
            // A Tenant's spec under kind Function and vice versa.
            "apiVersion: gojinn.dev/v1\nkind: Function\nmetadata: { name: a }\nspec: { replicas: 3 }",
        ];
        for text in bad {
            assert!(!errors(&yaml(text)).is_empty(), "accepted:\n{text}");
        }
        let good = "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: { name: a, keep: true }\n\
                    spec: { replicas: 5, quotas: { maxMemory: 1073741824, kvMaxBytes: 100Mi }, routePrefixes: [/api, /v2/shop/],\
                    apiKeys: [{ name: ci, sha256: \"0000000000000000000000000000000000000000000000000000000000000000\" },\
                    { name: reader, sha256: \"1111111111111111111111111111111111111111111111111111111111111111\", scopes: [jobs, receipts] }] }";
        assert_eq!(errors(&yaml(good)), Vec::<String>::new());
        let cors = "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: { name: a }\n\
                    spec: { cors: { allowOrigins: ['https://app.example.com', 'http://localhost:5173', 'https://[::1]:8443'], \
                    allowMethods: [GET, POST], allowHeaders: [content-type], exposeHeaders: [gojinn-receipt], \
                    maxAge: 10m, allowCredentials: true } }";
        assert_eq!(errors(&yaml(cors)), Vec::<String>::new());
        let any = "apiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: { name: a }\n\
                   spec: { cors: { allowOrigins: ['*'], allowMethods: ['*'] } }";
        assert_eq!(errors(&yaml(any)), Vec::<String>::new());
    }

    /// The duration pattern lists exactly units humantime parses (the other patterns are
    /// transcriptions of short hand-written checks; see their Deserialize impls).
    #[test]
    fn duration_units_are_humantime_units() {
        let units = SPAN_PATTERN.split_once(r"?\s*(").unwrap().1.split_once(r")\s*)").unwrap().0;
        assert!(units.split('|').count() > 30, "{units}");
        for unit in units.split('|') {
            assert!(humantime::parse_duration(&format!("1{unit}")).is_ok(), "{unit}");
            assert!(humantime::parse_duration(&format!("2{unit} 1{unit}")).is_ok(), "{unit}");
        }
    }
}
