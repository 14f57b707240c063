//! Contracts for other languages, from the same catalog as the Rust (feature `yaml`): an AsyncAPI
//! 3.0 document for all services (channels = topics; messages with CloudEvents headers and JSON
//! Schema payloads) and one JSON Schema (2020-12) per event version.

use std::collections::BTreeMap;

use askama::Template;
use serde_json::{Value, json};

use crate::schema::{
    Catalog, EventSchema, FieldSchema, IntTy, ServiceSchema, Ty, TypeDecl, TypeKind,
};

/// The JSON Schema of a type; named types refer to `{prefix}{Name}`.
fn ty_schema(ty: &Ty, prefix: &str) -> Value {
    match ty {
        Ty::String => json!({"type": "string"}),
        Ty::Bool => json!({"type": "boolean"}),
        Ty::Int(i) => {
            let (min, max): (i128, i128) = match i {
                IntTy::I32 => (i32::MIN.into(), i32::MAX.into()),
                IntTy::I64 => (i64::MIN.into(), i64::MAX.into()),
                IntTy::U32 => (0, u32::MAX.into()),
                IntTy::U64 => (0, u64::MAX.into()),
            };
            json!({"type": "integer", "format": i.name(), "minimum": min as f64, "maximum": max as f64})
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
    title: String,
    description: String,
    channels: Vec<ChannelView>,
    messages: Vec<MessageView>,
    schemas: Vec<(String, String)>,
}

/// CloudEvents 1.0 Kafka binary-mode headers of a message (README, "Wire format").
fn headers(s: &ServiceSchema, e: &EventSchema, event_type: &str) -> Value {
    let string = |d: &str| json!({"type": "string", "description": d});
    let mut props = serde_json::Map::new();
    props.insert(
        "ce_specversion".into(),
        json!({"type": "string", "const": "1.0"}),
    );
    props.insert(
        "ce_id".into(),
        json!({"type": "string", "format": "uuid", "description": "The event id (UUIDv7)."}),
    );
    props.insert(
        "ce_source".into(),
        json!({"type": "string", "description": format!("The producing service (`{}`).", s.name)}),
    );
    props.insert(
        "ce_type".into(),
        json!({"type": "string", "const": event_type}),
    );
    props.insert(
        "ce_time".into(),
        json!({"type": "string", "format": "date-time"}),
    );
    props.insert(
        "ce_subject".into(),
        string("The aggregate id (domain events)."),
    );
    props.insert(
        "content-type".into(),
        json!({"type": "string", "const": "application/json"}),
    );
    props.insert(
        "ce_schemaversion".into(),
        json!({"type": "string", "const": e.version.to_string()}),
    );
    props.insert(
        "ce_category".into(),
        json!({"type": "string", "const": e.category.as_str()}),
    );
    props.insert("ce_correlationid".into(), string("The correlation id."));
    props.insert(
        "ce_causationid".into(),
        string("The id of the event that caused this one."),
    );
    props.insert("ce_traceparent".into(), string("W3C trace context."));
    json!({
        "type": "object",
        "properties": props,
        "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "content-type"],
    })
}

/// The AsyncAPI 3.0 document of every service in the catalog (JSON, which is YAML too).
pub fn asyncapi(catalog: &Catalog) -> String {
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
            let payload = event_schema(e, &format!("#/components/schemas/{}.", s.name));
            let message = |component_ref: String, channel_message_ref: String| MessageView {
                id: js(&id),
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
    let doc = AsyncApi {
        title: js("eventbus event catalog"),
        description: js(format!(
            "Events of the services: {}. Generated by eventbus-codegen from the YAML schemas.",
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
