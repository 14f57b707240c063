//! Contracts for other languages, from the same catalog as the Rust (feature `yaml`): an AsyncAPI
//! 3.0 document for all services (channels = topics; messages with CloudEvents headers and JSON
//! Schema payloads) and one JSON Schema (2020-12) per event version.

use std::collections::BTreeMap;

use askama::Template;
use serde_json::{Value, json};

use crate::schema::{Catalog, EventSchema, FieldSchema, ServiceSchema, Ty, TypeDecl, TypeKind};

/// The JSON Schema of a type; named types refer to `{prefix}{Name}`.
fn ty_schema(ty: &Ty, prefix: &str) -> Value {
    match ty {
        Ty::String => json!({"type": "string"}),
        Ty::Bool => json!({"type": "boolean"}),
        Ty::Int(i) => {
            // Standard keywords only (strict validators refuse unknown formats and keywords):
            // the Rust type goes in `$comment`, the bounds are exact integers. A 64-bit value is
            // a JSON number; validators that read numbers as doubles (JavaScript) cannot tell
            // the bound from its neighbours past 2^53 (docs/schema.md, "Contracts").
            let (min, max) = i.bounds();
            let bound = |v: i128| {
                i64::try_from(v)
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::from(u64::try_from(v).unwrap_or(u64::MAX)))
            };
            json!({"type": "integer", "minimum": bound(min), "maximum": bound(max), "$comment": i.name()})
        }
        Ty::F64 => json!({"type": "number"}),
        Ty::Decimal => {
            json!({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?$", "description": "An exact decimal number."})
        }
        Ty::Uuid => json!({"type": "string", "format": "uuid"}),
        Ty::Timestamp => json!({"type": "string", "format": "date-time"}),
        Ty::Date => json!({"type": "string", "format": "date"}),
        Ty::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
        Ty::Json => json!({}),
        Ty::Named(n) => json!({"$ref": format!("{prefix}{n}")}),
        Ty::List(t) => json!({"type": "array", "items": ty_schema(t, prefix)}),
        Ty::Map(t) => json!({"type": "object", "additionalProperties": ty_schema(t, prefix)}),
    }
}

fn object(fields: &[FieldSchema], prefix: &str) -> serde_json::Map<String, Value> {
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    for f in fields {
        let mut schema = ty_schema(&f.ty, prefix);
        if f.optional {
            schema = json!({"anyOf": [schema, {"type": "null"}]});
        } else {
            required.push(Value::from(f.wire.clone()));
        }
        if let Value::Object(m) = &mut schema {
            if !f.description.is_empty() {
                m.insert("description".into(), f.description.clone().into());
            }
            if f.deprecated.is_some() {
                m.insert("deprecated".into(), true.into());
            }
        }
        properties.insert(f.wire.clone(), schema);
    }
    let mut out = serde_json::Map::new();
    out.insert("type".into(), "object".into());
    out.insert("properties".into(), properties.into());
    out.insert("required".into(), required.into());
    out
}

fn type_schema(t: &TypeDecl, prefix: &str) -> Value {
    let mut m = match &t.kind {
        TypeKind::Record(fields) => object(fields, prefix),
        TypeKind::Enum(variants) => {
            let mut m = serde_json::Map::new();
            m.insert("type".into(), "string".into());
            m.insert(
                "enum".into(),
                variants
                    .iter()
                    .map(|v| Value::from(v.wire.clone()))
                    .collect(),
            );
            m
        }
    };
    m.insert("title".into(), t.ident.clone().into());
    if !t.description.is_empty() {
        m.insert("description".into(), t.description.clone().into());
    }
    Value::Object(m)
}

/// The payload schema of an event (named types under `prefix`).
fn event_schema(e: &EventSchema, prefix: &str) -> serde_json::Map<String, Value> {
    let mut m = object(&e.fields, prefix);
    m.insert("title".into(), e.ident.clone().into());
    m.insert("description".into(), e.description.clone().into());
    m
}

/// The named types an event uses, transitively.
fn used_types<'a>(
    s: &'a ServiceSchema,
    fields: &[FieldSchema],
    out: &mut BTreeMap<String, &'a TypeDecl>,
) {
    for f in fields {
        if let Some(n) = f.ty.named()
            && !out.contains_key(n)
            && let Some(t) = s.types.iter().find(|t| t.ident == n)
        {
            out.insert(n.to_owned(), t);
            if let TypeKind::Record(inner) = &t.kind {
                used_types(s, inner, out);
            }
        }
    }
}

/// One JSON Schema per event version: `(file name, text)`, e.g.
/// `payments.payment_captured.v2.schema.json`.
pub fn json_schemas(catalog: &Catalog) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for s in &catalog.services {
        for e in &s.events {
            let mut m = serde_json::Map::new();
            m.insert(
                "$schema".into(),
                "https://json-schema.org/draft/2020-12/schema".into(),
            );
            m.insert(
                "$id".into(),
                format!("urn:eventbus:{}:{}:v{}", s.name, e.name, e.version).into(),
            );
            m.extend(event_schema(e, "#/$defs/"));
            let mut types = BTreeMap::new();
            used_types(s, &e.fields, &mut types);
            if !types.is_empty() {
                let defs: serde_json::Map<String, Value> = types
                    .iter()
                    .map(|(n, t)| (n.clone(), type_schema(t, "#/$defs/")))
                    .collect();
                m.insert("$defs".into(), defs.into());
            }
            let text = serde_json::to_string_pretty(&Value::Object(m)).unwrap_or_default();
            out.push((
                format!("{}.{}.v{}.schema.json", s.name, e.name, e.version),
                text + "\n",
            ));
        }
    }
    out
}

fn js(v: impl serde::Serialize) -> String {
    serde_json::to_string(&v).unwrap_or_else(|_| "null".into())
}

struct MessageView {
    id: String,
    bindings: String,
    name: String,
    title: String,
    summary: String,
    headers: String,
    payload: String,
    component_ref: String,
    channel_message_ref: String,
}

struct ChannelView {
    id: String,
    receive_id: String,
    groups: Option<String>,
    address: String,
    description: String,
    operation_id: String,
    summary: String,
    channel_ref: String,
    messages: Vec<MessageView>,
}

#[derive(Template)]
#[template(path = "asyncapi.json", escape = "none")]
struct AsyncApi {
    servers: Option<String>,
    security_schemes: Option<String>,
    title: String,
    description: String,
    channels: Vec<ChannelView>,
    messages: Vec<MessageView>,
    schemas: Vec<(String, String)>,
}

/// CloudEvents 1.0 Kafka binary-mode headers of a message (README, "Wire format"): what eventbus
/// producers send, and, as `required`, exactly what an eventbus consumer requires of any
/// producer (docs/consumers.md, "Records from other producers"); the others are optional, with
/// the default a consumer applies in their description.
fn headers(s: &ServiceSchema, e: &EventSchema, event_type: &str) -> Value {
    let string = |d: &str| json!({"type": "string", "minLength": 1, "description": d});
    let mut props = serde_json::Map::new();
    props.insert(
        "ce_specversion".into(),
        json!({"type": "string", "const": "1.0", "description": "CloudEvents spec version."}),
    );
    props.insert(
        "ce_id".into(),
        json!({"type": "string", "format": "uuid", "description": "The event id: a UUID (eventbus writes UUIDv7); the inbox deduplicates on it."}),
    );
    props.insert(
        "ce_source".into(),
        json!({"type": "string", "minLength": 1, "description": format!("The producing service (`{}`).", s.name)}),
    );
    props.insert(
        "ce_type".into(),
        json!({"type": "string", "const": event_type, "description": "The event type: with the schema version, it selects the consumer's Rust type."}),
    );
    props.insert(
        "ce_time".into(),
        json!({"type": "string", "format": "date-time", "description": "When the event happened (RFC 3339). Absent: the record's timestamp."}),
    );
    props.insert(
        "ce_subject".into(),
        string("The aggregate id (domain events); never empty."),
    );
    props.insert(
        "content-type".into(),
        json!({"type": "string", "pattern": "^application/([A-Za-z0-9.!#$&^_-]+\\+)?json(;.*)?$", "description": "The payload's media type: JSON. Absent: application/json."}),
    );
    props.insert(
        "ce_schemaversion".into(),
        json!({"type": "string", "const": e.version.to_string(), "description": "The schema version (a number from 1). Absent: the lowest version the consumer handles for the type."}),
    );
    props.insert(
        "ce_category".into(),
        json!({"type": "string", "const": e.category.as_str(), "description": "The event category. Absent: the category the consumer's type declares."}),
    );
    props.insert("ce_correlationid".into(), string("The correlation id."));
    props.insert(
        "ce_causationid".into(),
        string("The id of the event that caused this one."),
    );
    props.insert("ce_traceparent".into(), string("W3C trace context."));
    props.insert(
        "ce_tracestate".into(),
        string("W3C trace state: vendor data that goes with ce_traceparent."),
    );
    props.insert("ce_tenantid".into(), string("The tenant."));
    props.insert(
        "ce_tags".into(),
        string("Comma-separated labels consumers can filter on."),
    );
    json!({
        "type": "object",
        "properties": props,
        "required": ["ce_specversion", "ce_id", "ce_source", "ce_type"],
    })
}

/// A Kafka server of the document, and how clients authenticate to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Its name in the document (`production`).
    pub name: String,
    /// `host:port`.
    pub host: String,
    /// How clients authenticate.
    pub security: Security,
}

/// How clients reach a [`Server`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plaintext, no authentication.
    None,
    /// TLS (`SSL`).
    Tls,
    /// SASL/SCRAM-SHA-256 over TLS (`SASL_SSL`).
    ScramSha256,
    /// SASL/SCRAM-SHA-512 over TLS (`SASL_SSL`).
    ScramSha512,
}

impl Security {
    /// From a name: `none`, `tls`, `scram-sha-256`, `scram-sha-512`.
    pub fn parse(name: &str) -> Option<Security> {
        Some(match name.to_ascii_lowercase().as_str() {
            "none" | "plaintext" => Security::None,
            "tls" | "ssl" => Security::Tls,
            "scram-sha-256" => Security::ScramSha256,
            "scram-sha-512" => Security::ScramSha512,
            _ => return None,
        })
    }
}

/// What the AsyncAPI document carries besides the catalog: the servers, and the consumer
/// groups that receive from each topic.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The Kafka servers, with their security.
    pub servers: Vec<Server>,
    /// `(consumer group, topic)`: a receive operation per topic, with the group ids in its Kafka
    /// binding.
    pub subscriptions: Vec<(String, String)>,
}

/// The AsyncAPI 3.0 document of every service in the catalog (JSON, which is YAML too).
pub fn asyncapi(catalog: &Catalog) -> String {
    asyncapi_with(catalog, &Options::default())
}

/// The Kafka binding of a message: its partition key's schema (the key field's), or none.
fn message_bindings(e: &EventSchema, prefix: &str) -> Value {
    let key = e
        .key
        .as_ref()
        .and_then(|k| e.fields.iter().find(|f| &f.ident == k))
        .map(|f| {
            let mut schema = ty_schema(&f.ty, prefix);
            if let Value::Object(m) = &mut schema {
                m.insert(
                    "description".into(),
                    format!("The record key: the `{}` field, as text.", f.wire).into(),
                );
                // The key is the field's text form, whatever its JSON type.
                m.insert("type".into(), "string".into());
                m.retain(|k, _| matches!(k.as_str(), "type" | "format" | "description"));
            }
            schema
        })
        .unwrap_or_else(
            || json!({"type": "null", "description": "No key: records spread over partitions."}),
        );
    json!({"kafka": {"key": key, "bindingVersion": "0.5.0"}})
}

/// The document's servers and security schemes (absent without servers).
fn servers(options: &Options) -> (Option<String>, Option<String>) {
    if options.servers.is_empty() {
        return (None, None);
    }
    let mut servers = serde_json::Map::new();
    let mut schemes = serde_json::Map::new();
    for server in &options.servers {
        let (protocol, scheme) = match server.security {
            Security::None => ("kafka", None),
            Security::Tls => ("kafka-secure", None),
            Security::ScramSha256 => (
                "kafka-secure",
                Some(("scramSha256", "SASL/SCRAM-SHA-256 over TLS (SASL_SSL).")),
            ),
            Security::ScramSha512 => (
                "kafka-secure",
                Some(("scramSha512", "SASL/SCRAM-SHA-512 over TLS (SASL_SSL).")),
            ),
        };
        let mut entry = json!({
            "host": server.host,
            "protocol": protocol,
            "description": match server.security {
                Security::None => "Plaintext.",
                Security::Tls => "TLS (SSL).",
                _ => "SASL over TLS.",
            },
        });
        if let Some((kind, description)) = scheme {
            schemes.insert(
                kind.into(),
                json!({"type": kind, "description": description}),
            );
            entry["security"] = json!([{"$ref": format!("#/components/securitySchemes/{kind}")}]);
        }
        servers.insert(server.name.clone(), entry);
    }
    let schemes = (!schemes.is_empty()).then(|| js(Value::Object(schemes)));
    (Some(js(Value::Object(servers))), schemes)
}

/// The AsyncAPI 3.0 document of the catalog, with `options`' servers and subscriptions.
pub fn asyncapi_with(catalog: &Catalog, options: &Options) -> String {
    let mut channels: BTreeMap<String, ChannelView> = BTreeMap::new();
    let mut messages = Vec::new();
    let mut schemas: BTreeMap<String, String> = BTreeMap::new();
    for s in &catalog.services {
        for t in &s.types {
            schemas
                .entry(format!("{}.{}", s.name, t.ident))
                .or_insert_with(|| {
                    js(type_schema(t, &format!("#/components/schemas/{}.", s.name)))
                });
        }
        for e in &s.events {
            let id = format!("{}.{}.v{}", s.name, e.name, e.version);
            let channel_id = e.topic.clone();
            let event_type = match (&e.category, &e.aggregate) {
                (crate::Category::Domain, Some(a)) => format!("{}.{a}.{}", s.name, e.name),
                _ => format!("{}.{}", s.name, e.name),
            };
            let prefix = format!("#/components/schemas/{}.", s.name);
            let payload = event_schema(e, &prefix);
            let bindings = js(message_bindings(e, &prefix));
            let message = |component_ref: String, channel_message_ref: String| MessageView {
                id: js(&id),
                bindings: bindings.clone(),
                name: js(&e.ident),
                title: js(format!("{} v{}", e.name, e.version)),
                summary: js(&e.description),
                headers: js(headers(s, e, &event_type)),
                payload: js(Value::Object(payload.clone())),
                component_ref,
                channel_message_ref,
            };
            let channel = channels
                .entry(channel_id.clone())
                .or_insert_with(|| ChannelView {
                    id: js(&channel_id),
                    receive_id: js(format!("receive.{channel_id}")),
                    groups: {
                        let groups: Vec<&str> = options
                            .subscriptions
                            .iter()
                            .filter(|(_, topic)| *topic == e.topic)
                            .map(|(group, _)| group.as_str())
                            .collect();
                        (!groups.is_empty()).then(|| {
                            js(json!({"kafka": {"groupId": {"type": "string", "enum": groups}, "bindingVersion": "0.5.0"}}))
                        })
                    },
                    address: js(&e.topic),
                    description: js(format!(
                        "Kafka topic `{}` ({} events).",
                        e.topic,
                        e.category.as_str()
                    )),
                    operation_id: js(format!("send.{channel_id}")),
                    summary: js(format!("Publish to `{}`.", e.topic)),
                    channel_ref: js(format!("#/channels/{channel_id}")),
                    messages: Vec::new(),
                });
            channel.messages.push(message(
                js(format!("#/components/messages/{id}")),
                js(format!("#/channels/{channel_id}/messages/{id}")),
            ));
            messages.push(message(String::new(), String::new()));
        }
    }
    let names: Vec<&str> = catalog.services.iter().map(|s| s.name.as_str()).collect();
    let (servers, security_schemes) = servers(options);
    let doc = AsyncApi {
        servers,
        security_schemes,
        title: js("eventbus event catalog"),
        description: js(format!(
            "Events of the services: {}. Generated by eventbus-codegen from the YAML schemas and the derive-declared events.",
            names.join(", ")
        )),
        channels: channels.into_values().collect(),
        messages,
        schemas: schemas.into_iter().map(|(k, v)| (js(k), v)).collect(),
    };
    let text = doc.render().unwrap_or_default();
    // Re-indent through serde_json so the document is one canonical, valid JSON text.
    match serde_json::from_str::<Value>(&text) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or(text) + "\n",
        Err(_) => text,
    }
}
