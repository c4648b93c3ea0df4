//! Schema-guided conversion between JSON documents and Avro values.
//!
//! Mappings produce canonical records as JSON objects; this module turns them into exactly the
//! Avro value the schema describes (unions resolved, logical types set, defaults filled), and
//! back. It never panics on input: every mismatch is a [`ConvertError`] naming the field path.

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::Name;
use apache_avro::types::Value as Avro;
use serde_json::Value as Json;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("field '{path}': expected {expected}, got {got}")]
    Type {
        path: String,
        expected: String,
        got: String,
    },
    #[error("field '{path}' is not in the schema")]
    UnknownField { path: String },
    #[error("field '{path}' is required by the schema")]
    Missing { path: String },
    #[error("field '{path}': {message}")]
    Unsupported { path: String, message: String },
}

impl ConvertError {
    /// The dotted field path the error concerns.
    pub fn path(&self) -> &str {
        match self {
            ConvertError::Type { path, .. }
            | ConvertError::UnknownField { path }
            | ConvertError::Missing { path }
            | ConvertError::Unsupported { path, .. } => path,
        }
    }
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

fn collect_names<'s>(schema: &'s Schema, names: &mut HashMap<Name, &'s Schema>) {
    match schema {
        Schema::Record(r) => {
            names.insert(r.name.clone(), schema);
            for f in &r.fields {
                collect_names(&f.schema, names);
            }
        }
        Schema::Enum(e) => {
            names.insert(e.name.clone(), schema);
        }
        Schema::Fixed(f) => {
            names.insert(f.name.clone(), schema);
        }
        Schema::Array(a) => collect_names(&a.items, names),
        Schema::Map(m) => collect_names(&m.types, names),
        Schema::Union(u) => {
            for v in u.variants() {
                collect_names(v, names);
            }
        }
        _ => {}
    }
}

/// Converts a JSON document into the Avro value `schema` describes.
pub fn json_to_avro(value: &Json, schema: &Schema) -> Result<Avro, ConvertError> {
    let mut names = HashMap::new();
    collect_names(schema, &mut names);
    Converter { names }.to_avro(value, schema, "")
}

struct Converter<'s> {
    names: HashMap<Name, &'s Schema>,
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

impl<'s> Converter<'s> {
    fn type_err(path: &str, expected: &str, got: &Json) -> ConvertError {
        ConvertError::Type {
            path: path.to_string(),
            expected: expected.to_string(),
            got: kind(got).to_string(),
        }
    }

    fn int(path: &str, v: &Json) -> Result<i64, ConvertError> {
        v.as_i64().ok_or_else(|| Self::type_err(path, "integer", v))
    }

    fn to_avro(&self, v: &Json, schema: &'s Schema, path: &str) -> Result<Avro, ConvertError> {
        Ok(match schema {
            Schema::Null => match v {
                Json::Null => Avro::Null,
                _ => return Err(Self::type_err(path, "null", v)),
            },
            Schema::Boolean => Avro::Boolean(
                v.as_bool()
                    .ok_or_else(|| Self::type_err(path, "boolean", v))?,
            ),
            Schema::Int => {
                let n = Self::int(path, v)?;
                Avro::Int(i32::try_from(n).map_err(|_| Self::type_err(path, "32-bit integer", v))?)
            }
            Schema::Date => {
                let n = Self::int(path, v)?;
                Avro::Date(i32::try_from(n).map_err(|_| Self::type_err(path, "date (days)", v))?)
            }
            Schema::Long => Avro::Long(Self::int(path, v)?),
            Schema::TimestampMillis => Avro::TimestampMillis(Self::int(path, v)?),
            Schema::TimestampMicros => Avro::TimestampMicros(Self::int(path, v)?),
            Schema::Float => Avro::Float(
                v.as_f64()
                    .ok_or_else(|| Self::type_err(path, "number", v))? as f32,
            ),
            Schema::Double => Avro::Double(
                v.as_f64()
                    .ok_or_else(|| Self::type_err(path, "number", v))?,
            ),
            Schema::String => Avro::String(
                v.as_str()
                    .ok_or_else(|| Self::type_err(path, "string", v))?
                    .to_string(),
            ),
            Schema::Uuid(_) => Avro::String(
                v.as_str()
                    .ok_or_else(|| Self::type_err(path, "uuid string", v))?
                    .to_string(),
            ),
            Schema::Bytes => Avro::Bytes(Self::bytes(v, path)?),
            Schema::Fixed(f) => {
                let b = Self::bytes(v, path)?;
                if b.len() != f.size {
                    return Err(Self::type_err(path, &format!("{} bytes", f.size), v));
                }
                Avro::Fixed(f.size, b)
            }
            Schema::Enum(e) => {
                let s = v
                    .as_str()
                    .ok_or_else(|| Self::type_err(path, "enum symbol", v))?;
                let idx =
                    e.symbols
                        .iter()
                        .position(|x| x == s)
                        .ok_or_else(|| ConvertError::Type {
                            path: path.to_string(),
                            expected: format!("one of {}", e.symbols.join(", ")),
                            got: format!("'{s}'"),
                        })?;
                Avro::Enum(idx as u32, s.to_string())
            }
            Schema::Array(a) => {
                let items = v
                    .as_array()
                    .ok_or_else(|| Self::type_err(path, "array", v))?;
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    out.push(self.to_avro(item, &a.items, &format!("{path}[{i}]"))?);
                }
                Avro::Array(out)
            }
            Schema::Map(m) => {
                let obj = v
                    .as_object()
                    .ok_or_else(|| Self::type_err(path, "object", v))?;
                let mut out = HashMap::with_capacity(obj.len());
                for (k, item) in obj {
                    out.insert(k.clone(), self.to_avro(item, &m.types, &join(path, k))?);
                }
                Avro::Map(out)
            }
            Schema::Union(u) => {
                let variants = u.variants();
                if v.is_null()
                    && let Some(i) = variants.iter().position(|s| matches!(s, Schema::Null))
                {
                    return Ok(Avro::Union(i as u32, Box::new(Avro::Null)));
                }
                let mut first_err = None;
                for (i, s) in variants.iter().enumerate() {
                    if matches!(s, Schema::Null) {
                        continue;
                    }
                    match self.to_avro(v, s, path) {
                        Ok(inner) => return Ok(Avro::Union(i as u32, Box::new(inner))),
                        Err(e) => {
                            first_err.get_or_insert(e);
                        }
                    }
                }
                return Err(first_err.unwrap_or_else(|| Self::type_err(path, "null", v)));
            }
            Schema::Record(r) => {
                let obj = v
                    .as_object()
                    .ok_or_else(|| Self::type_err(path, "object", v))?;
                for k in obj.keys() {
                    if !r.lookup.contains_key(k) {
                        return Err(ConvertError::UnknownField {
                            path: join(path, k),
                        });
                    }
                }
                let mut fields = Vec::with_capacity(r.fields.len());
                for f in &r.fields {
                    let fpath = join(path, &f.name);
                    let value = match obj.get(&f.name) {
                        Some(x) => self.to_avro(x, &f.schema, &fpath)?,
                        None => match (&f.default, &f.schema) {
                            (Some(d), _) => self.to_avro(d, &f.schema, &fpath)?,
                            (None, Schema::Union(u))
                                if u.variants().iter().any(|s| matches!(s, Schema::Null)) =>
                            {
                                self.to_avro(&Json::Null, &f.schema, &fpath)?
                            }
                            _ => return Err(ConvertError::Missing { path: fpath }),
                        },
                    };
                    fields.push((f.name.clone(), value));
                }
                Avro::Record(fields)
            }
            Schema::Ref { name } => {
                let target = self
                    .names
                    .get(name)
                    .ok_or_else(|| ConvertError::Unsupported {
                        path: path.to_string(),
                        message: format!("unknown named type {name}"),
                    })?;
                return self.to_avro(v, target, path);
            }
            other => {
                return Err(ConvertError::Unsupported {
                    path: path.to_string(),
                    message: format!("schema type {other:?} is not used by the hub"),
                });
            }
        })
    }

    fn bytes(v: &Json, path: &str) -> Result<Vec<u8>, ConvertError> {
        match v {
            Json::String(s) => Ok(s.as_bytes().to_vec()),
            Json::Array(items) => items
                .iter()
                .map(|x| {
                    x.as_u64()
                        .and_then(|n| u8::try_from(n).ok())
                        .ok_or_else(|| Self::type_err(path, "byte (0..=255)", x))
                })
                .collect(),
            _ => Err(Self::type_err(path, "bytes", v)),
        }
    }
}

/// Converts an Avro value back into JSON: unions unwrapped, logical types as their numbers,
/// bytes as an array of numbers.
pub fn avro_to_json(value: &Avro) -> Json {
    match value {
        Avro::Null => Json::Null,
        Avro::Boolean(b) => Json::Bool(*b),
        Avro::Int(n) | Avro::Date(n) | Avro::TimeMillis(n) => Json::from(*n),
        Avro::Long(n)
        | Avro::TimestampMillis(n)
        | Avro::TimestampMicros(n)
        | Avro::TimestampNanos(n)
        | Avro::LocalTimestampMillis(n)
        | Avro::LocalTimestampMicros(n)
        | Avro::LocalTimestampNanos(n)
        | Avro::TimeMicros(n) => Json::from(*n),
        Avro::Float(x) => {
            serde_json::Number::from_f64(f64::from(*x)).map_or(Json::Null, Json::Number)
        }
        Avro::Double(x) => serde_json::Number::from_f64(*x).map_or(Json::Null, Json::Number),
        Avro::Bytes(b) | Avro::Fixed(_, b) => {
            Json::Array(b.iter().map(|x| Json::from(*x)).collect())
        }
        Avro::String(s) => Json::String(s.clone()),
        Avro::Enum(_, s) => Json::String(s.clone()),
        Avro::Uuid(u) => Json::String(u.to_string()),
        Avro::Union(_, inner) => avro_to_json(inner),
        Avro::Array(items) => Json::Array(items.iter().map(avro_to_json).collect()),
        Avro::Map(m) => Json::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), avro_to_json(v)))
                .collect(),
        ),
        Avro::Record(fields) => Json::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), avro_to_json(v)))
                .collect(),
        ),
        other => Json::String(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SCHEMA: &str = r#"{"type":"record","name":"T","fields":[
        {"name":"id","type":"string"},
        {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"n","type":["null","int"],"default":null},
        {"name":"tags","type":{"type":"array","items":"string"},"default":[]},
        {"name":"addr","type":["null",{"type":"record","name":"A","fields":[{"name":"city","type":["null","string"],"default":null}]}],"default":null}
    ]}"#;

    #[test]
    fn json_round_trips_through_avro_with_defaults_filled() {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let v = json_to_avro(&json!({"id":"x","at":5,"addr":{"city":"Austin"}}), &schema).unwrap();
        assert!(v.validate(&schema));
        assert_eq!(
            avro_to_json(&v),
            json!({"id":"x","at":5,"n":null,"tags":[],"addr":{"city":"Austin"}})
        );
    }

    #[test]
    fn mismatches_name_the_field() {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let e = json_to_avro(&json!({"id":"x","at":"soon"}), &schema).unwrap_err();
        assert_eq!(e.path(), "at");
        let e = json_to_avro(&json!({"id":"x","at":1,"bogus":1}), &schema).unwrap_err();
        assert_eq!(
            e,
            ConvertError::UnknownField {
                path: "bogus".into()
            }
        );
        let e = json_to_avro(&json!({"at":1}), &schema).unwrap_err();
        assert_eq!(e, ConvertError::Missing { path: "id".into() });
        let e = json_to_avro(&json!({"id":"x","at":1,"n":1e12}), &schema).unwrap_err();
        assert_eq!(e.path(), "n");
        let e = json_to_avro(&json!({"id":"x","at":1,"addr":{"city":3}}), &schema).unwrap_err();
        assert_eq!(e.path(), "addr.city");
    }
}
