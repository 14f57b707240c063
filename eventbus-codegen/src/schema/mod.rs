//! YAML event schemas (feature `yaml`): the format documented in `docs/schema.md`.
//!
//! [`load`] reads schema files into a [`Catalog`], checking them with the same rules as the derive
//! (the rules of [`crate::check`]) plus the rules only a file can break (unknown keys and types,
//! duplicates, collisions, keywords). Every problem of a run is reported, each at
//! `file:line:column`. The [`rust`] emitter turns a service into struct declarations carrying the
//! derives; [`crate::contracts`] into AsyncAPI and JSON Schema; [`lock`] guards evolution.

mod diagnostic;
pub mod lock;
mod node;
mod read;
pub mod rust;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub use diagnostic::{Diagnostic, Diagnostics, Error};
pub use read::load;

use crate::model::{Category, FileLocation};

/// A field's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ty {
    /// `string`.
    String,
    /// `bool`.
    Bool,
    /// `i32`, `i64`, `u32`, `u64`.
    Int(IntTy),
    /// `f64`.
    F64,
    /// `decimal`: an exact decimal, a JSON string.
    Decimal,
    /// `uuid`.
    Uuid,
    /// `timestamp`: RFC 3339.
    Timestamp,
    /// `date`: `YYYY-MM-DD`.
    Date,
    /// `bytes`: base64.
    Bytes,
    /// `json`: any JSON value.
    Json,
    /// A record or enum declared under `types:` (here or in an imported file).
    Named(String),
    /// `list<T>`.
    List(Box<Ty>),
    /// `map<string, T>`: a JSON object.
    Map(Box<Ty>),
}

/// The integer types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntTy {
    /// `i8`.
    I8,
    /// `i16`.
    I16,
    /// `i32`.
    I32,
    /// `i64`.
    I64,
    /// `u8`.
    U8,
    /// `u16`.
    U16,
    /// `u32`.
    U32,
    /// `u64`.
    U64,
}

impl IntTy {
    /// Every integer type.
    pub const ALL: [IntTy; 8] = [
        IntTy::I8,
        IntTy::I16,
        IntTy::I32,
        IntTy::I64,
        IntTy::U8,
        IntTy::U16,
        IntTy::U32,
        IntTy::U64,
    ];

    /// The Rust and schema name.
    pub fn name(self) -> &'static str {
        match self {
            IntTy::I8 => "i8",
            IntTy::I16 => "i16",
            IntTy::I32 => "i32",
            IntTy::I64 => "i64",
            IntTy::U8 => "u8",
            IntTy::U16 => "u16",
            IntTy::U32 => "u32",
            IntTy::U64 => "u64",
        }
    }

    /// The type of this name (`"u32"`).
    pub fn parse(name: &str) -> Option<IntTy> {
        IntTy::ALL.into_iter().find(|i| i.name() == name)
    }

    /// The smallest and largest value, exactly.
    pub fn bounds(self) -> (i128, i128) {
        match self {
            IntTy::I8 => (i8::MIN.into(), i8::MAX.into()),
            IntTy::I16 => (i16::MIN.into(), i16::MAX.into()),
            IntTy::I32 => (i32::MIN.into(), i32::MAX.into()),
            IntTy::I64 => (i64::MIN.into(), i64::MAX.into()),
            IntTy::U8 => (0, u8::MAX.into()),
            IntTy::U16 => (0, u16::MAX.into()),
            IntTy::U32 => (0, u32::MAX.into()),
            IntTy::U64 => (0, u64::MAX.into()),
        }
    }
}

impl Ty {
    /// The declared type this type names, through lists and maps (`[Money]` → `Money`).
    pub fn named(&self) -> Option<&str> {
        match self {
            Ty::Named(n) => Some(n),
            Ty::List(t) | Ty::Map(t) => t.named(),
            _ => None,
        }
    }

    /// The type as written in a schema (`list<Money>`), also its form in the lock file.
    pub fn schema_name(&self) -> String {
        match self {
            Ty::String => "string".into(),
            Ty::Bool => "bool".into(),
            Ty::Int(i) => i.name().into(),
            Ty::F64 => "f64".into(),
            Ty::Decimal => "decimal".into(),
            Ty::Uuid => "uuid".into(),
            Ty::Timestamp => "timestamp".into(),
            Ty::Date => "date".into(),
            Ty::Bytes => "bytes".into(),
            Ty::Json => "json".into(),
            Ty::Named(n) => n.clone(),
            Ty::List(t) => format!("list<{}>", t.schema_name()),
            Ty::Map(t) => format!("map<string, {}>", t.schema_name()),
        }
    }

    /// True when a field of this type can be a partition key.
    pub fn can_be_key(&self) -> bool {
        matches!(self, Ty::String | Ty::Bool | Ty::Int(_) | Ty::Uuid)
    }
}

/// One field of an event or record.
#[derive(Debug, Clone)]
pub struct FieldSchema {
    /// The Rust field name (`r#type` for a raw identifier).
    pub ident: String,
    /// The name on the wire (JSON).
    pub wire: String,
    /// Its type.
    pub ty: Ty,
    /// May be absent (`Option<T>`; missing on the wire decodes as `None`).
    pub optional: bool,
    /// Deprecated, with the note telling what to use instead.
    pub deprecated: Option<String>,
    /// The description (a `#[doc]`).
    pub description: String,
    /// Where it is declared.
    pub at: FileLocation,
}

/// A record or an enum declared under `types:`.
#[derive(Debug, Clone)]
pub struct TypeDecl {
    /// The Rust type name.
    pub ident: String,
    /// The description.
    pub description: String,
    /// Fields or variants.
    pub kind: TypeKind,
    /// Where it is declared.
    pub at: FileLocation,
}

/// What a declared type is.
#[derive(Debug, Clone)]
pub enum TypeKind {
    /// A record: a JSON object.
    Record(Vec<FieldSchema>),
    /// An enum of names: a JSON string, one of the wire names.
    Enum(Vec<Variant>),
}

/// One value of an enum.
#[derive(Debug, Clone)]
pub struct Variant {
    /// The Rust variant name.
    pub ident: String,
    /// The value on the wire.
    pub wire: String,
}

/// How a service's domain events are routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// One topic per event type (`domain.{service}.{aggregate}.{event}`), the seed's AD-004.
    PerEvent,
    /// One topic per aggregate (`domain.{service}.{aggregate}`): order per aggregate id.
    PerAggregate,
}

/// An aggregate of a service.
#[derive(Debug, Clone)]
pub struct Aggregate {
    /// Its name (a topic segment).
    pub name: String,
    /// The description.
    pub description: String,
    /// Its routing.
    pub routing: Routing,
    /// The field name holding its id in its events (default `{aggregate}_id`).
    pub id_field: String,
    /// The topic type, for per-aggregate routing (`OrderTopic`).
    pub topic_ident: String,
    /// Where it is declared.
    pub at: FileLocation,
}

/// One event version.
#[derive(Debug, Clone)]
pub struct EventSchema {
    /// The Rust type name.
    pub ident: String,
    /// The wire name.
    pub name: String,
    /// The schema version.
    pub version: u32,
    /// The category.
    pub category: Category,
    /// The description.
    pub description: String,
    /// Domain: the aggregate.
    pub aggregate: Option<String>,
    /// Integration: the target service.
    pub target: Option<String>,
    /// Audit: the audit category.
    pub audit_category: Option<String>,
    /// Notification: channel and kind.
    pub channel: Option<String>,
    /// Notification: the kind.
    pub kind: Option<String>,
    /// A fixed topic name, when set.
    pub topic_name: Option<String>,
    /// The shared topic type, for per-aggregate routing.
    pub topic_type: Option<String>,
    /// The field roles: `(role, field)`.
    pub roles: Vec<(crate::model::FieldRole, String)>,
    /// The payload's fields.
    pub fields: Vec<FieldSchema>,
    /// The full topic name.
    pub topic: String,
    /// The partition key's field, if any.
    pub key: Option<String>,
    /// Where it is declared.
    pub at: FileLocation,
}

/// Where a service's events are declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// In a YAML schema: `Config` generates their Rust.
    Yaml,
    /// With the derives, in Rust sources (`Config::sources`): already Rust; in the contracts and
    /// the lock only.
    Derive,
}

/// One service: a schema file, resolved, or the derive-declared events of a service.
#[derive(Debug, Clone)]
pub struct ServiceSchema {
    /// Where its events are declared.
    pub origin: Origin,
    /// The file (for derive events, the file declaring the service type).
    pub file: PathBuf,
    /// The service name (a topic segment).
    pub name: String,
    /// The service type's name (`Payments`).
    pub ident: String,
    /// `service_type:`: the path of an existing `#[derive(Service)]` type the events belong to;
    /// no service type is generated then.
    pub rust_type: Option<String>,
    /// The description.
    pub description: String,
    /// Whether it is the crate's default service (`#[service(default)]`).
    pub default: bool,
    /// Its aggregates.
    pub aggregates: Vec<Aggregate>,
    /// Its types, then the types of the files it imports.
    pub types: Vec<TypeDecl>,
    /// Its events.
    pub events: Vec<EventSchema>,
}

/// Every service found under the schema paths.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// The services, by file order.
    pub services: Vec<ServiceSchema>,
    /// Every file and directory read (for `cargo:rerun-if-changed`).
    pub inputs: Vec<PathBuf>,
    /// The file texts, for showing lines in later diagnostics (the lock check).
    pub(crate) sources: BTreeMap<Arc<str>, Arc<str>>,
    /// The `#[derive(Service)]` types found in Rust sources: `(service name, type name, where)`.
    pub(crate) rust_services: Vec<(String, String, FileLocation)>,
}

impl Catalog {
    /// Adds `other`'s services, inputs and sources.
    pub fn merge(&mut self, other: Catalog) {
        self.services.extend(other.services);
        self.inputs.extend(other.inputs);
        self.sources.extend(other.sources);
        self.rust_services.extend(other.rust_services);
    }

    /// A diagnostic at `at`, showing its line.
    pub(crate) fn diagnostic(&self, at: &FileLocation, message: String) -> Diagnostic {
        let line_text = self
            .sources
            .get(&at.file)
            .and_then(|text| {
                text.lines()
                    .nth(usize::try_from(at.line.saturating_sub(1)).unwrap_or(0))
            })
            .unwrap_or_default()
            .to_owned();
        Diagnostic {
            at: at.clone(),
            message,
            line_text,
        }
    }
}
