//! The SQL shape of the canonical entities, generated from their Avro schemas: one table per
//! entity, one column per top-level field, plus the sink's bookkeeping columns. Also the DDL of
//! the offsets and ledger tables. Identifiers come from the shipped schemas (checked here to be
//! plain names and quoted); values are always bound, never spliced into SQL.

use apache_avro::Schema;
use hub_schemas::Entity;
use serde_json::Value as Json;

use super::exec::{Backend, Val};

/// How a column is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Text,
    BigInt,
    Boolean,
    Double,
    /// Nested records, arrays, maps, bytes and multi-type unions: TEXT holding JSON.
    Json,
}

impl ColumnKind {
    fn sql_type(self, backend: Backend) -> &'static str {
        match (self, backend) {
            (ColumnKind::Text | ColumnKind::Json, _) => "TEXT",
            (ColumnKind::BigInt, _) => "BIGINT",
            (ColumnKind::Boolean, _) => "BOOLEAN",
            (ColumnKind::Double, Backend::Postgres) => "DOUBLE PRECISION",
            (ColumnKind::Double, Backend::Sqlite) => "REAL",
        }
    }

    /// The bound value for a field of a decoded document (missing means NULL).
    pub fn value(self, v: Option<&Json>) -> Val {
        let v = v.filter(|v| !v.is_null());
        match self {
            ColumnKind::Text => Val::Text(v.map(|v| match v {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            })),
            ColumnKind::BigInt => Val::I64(v.and_then(Json::as_i64)),
            ColumnKind::Boolean => Val::Bool(v.and_then(Json::as_bool)),
            ColumnKind::Double => Val::F64(v.and_then(Json::as_f64)),
            ColumnKind::Json => Val::Text(v.map(Json::to_string)),
        }
    }
}

fn kind_of(schema: &Schema) -> ColumnKind {
    match schema {
        Schema::String | Schema::Uuid(_) | Schema::Enum(_) => ColumnKind::Text,
        Schema::Int
        | Schema::Long
        | Schema::Date
        | Schema::TimeMillis
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => ColumnKind::BigInt,
        Schema::Boolean => ColumnKind::Boolean,
        Schema::Float | Schema::Double => ColumnKind::Double,
        Schema::Union(u) => {
            let non_null: Vec<&Schema> = u
                .variants()
                .iter()
                .filter(|s| !matches!(s, Schema::Null))
                .collect();
            match non_null.as_slice() {
                [one] => kind_of(one),
                _ => ColumnKind::Json,
            }
        }
        _ => ColumnKind::Json,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub kind: ColumnKind,
}

/// The envelope every canonical record starts with. A deletion overwrites these; the entity
/// fields of a tombstone that are null keep the row's last values (a soft delete that data
/// teams can still read).
const ENVELOPE: [&str; 10] = hub_schemas::ENVELOPE_FIELDS;

/// The sink's own columns, after the entity's.
pub const HUB_COLUMNS: [(&str, &str); 5] = [
    ("hub_applied_count", "BIGINT NOT NULL DEFAULT 0"),
    ("hub_written_at", "BIGINT"),
    ("hub_topic", "TEXT"),
    ("hub_partition", "INT"),
    ("hub_offset", "BIGINT"),
];

/// Bound parameters per row beyond the entity's columns (written_at, topic, partition, offset;
/// the applied count is a literal).
pub const HUB_PARAMS_PER_ROW: usize = 4;

fn is_plain_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 63
}

/// The table of one entity.
#[derive(Debug, Clone)]
pub struct TableDef {
    pub entity: Entity,
    pub table: String,
    pub columns: Vec<Column>,
}

impl TableDef {
    pub fn of(entity: Entity) -> Self {
        let Schema::Record(record) = entity.schema() else {
            panic!("the shipped {entity} schema is a record");
        };
        let columns: Vec<Column> = record
            .fields
            .iter()
            .map(|f| {
                assert!(
                    is_plain_identifier(&f.name),
                    "field name {:?} of {entity}",
                    f.name
                );
                Column {
                    name: f.name.clone(),
                    kind: kind_of(&f.schema),
                }
            })
            .collect();
        for (i, name) in ENVELOPE.iter().enumerate() {
            assert_eq!(
                columns.get(i).map(|c| c.name.as_str()),
                Some(*name),
                "{entity} envelope"
            );
        }
        TableDef {
            entity,
            table: format!("canonical_{}", entity.name()),
            columns,
        }
    }

    /// `CREATE TABLE IF NOT EXISTS canonical_<entity> (...)`.
    pub fn create_sql(&self, backend: Backend) -> String {
        let mut sql = format!("CREATE TABLE IF NOT EXISTS {} (\n", self.table);
        for c in &self.columns {
            let not_null = if c.name == "tenant_id" || c.name == "key" {
                " NOT NULL"
            } else {
                ""
            };
            sql.push_str(&format!(
                "  \"{}\" {}{not_null},\n",
                c.name,
                c.kind.sql_type(backend)
            ));
        }
        for (name, ty) in HUB_COLUMNS {
            sql.push_str(&format!("  {name} {ty},\n"));
        }
        sql.push_str("  PRIMARY KEY (\"tenant_id\", \"key\")\n)");
        sql
    }

    /// `ALTER TABLE ... ADD COLUMN` for a column a newer schema added.
    pub fn add_column_sql(&self, column: &Column, backend: Backend) -> String {
        format!(
            "ALTER TABLE {} ADD COLUMN \"{}\" {}",
            self.table,
            column.name,
            column.kind.sql_type(backend)
        )
    }

    pub fn params_per_row(&self) -> usize {
        self.columns.len() + HUB_PARAMS_PER_ROW
    }

    /// A multi-row upsert of `rows` records. A row is applied only when its version is not
    /// older than the stored one; each application increments `hub_applied_count`; the
    /// statement returns the keys of the rows it applied (the rest were stale).
    pub fn upsert_sql(&self, backend: Backend, rows: usize) -> String {
        let t = &self.table;
        let mut sql = format!("INSERT INTO {t} (");
        for c in &self.columns {
            sql.push_str(&format!("\"{}\", ", c.name));
        }
        sql.push_str(
            "hub_applied_count, hub_written_at, hub_topic, hub_partition, hub_offset) VALUES ",
        );
        let mut n = 0usize;
        let mut next = || {
            n += 1;
            backend.placeholder(n)
        };
        for r in 0..rows {
            if r > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for _ in &self.columns {
                sql.push_str(&next());
                sql.push_str(", ");
            }
            sql.push('1');
            for _ in 0..HUB_PARAMS_PER_ROW {
                sql.push_str(", ");
                sql.push_str(&next());
            }
            sql.push(')');
        }
        sql.push_str(" ON CONFLICT (\"tenant_id\", \"key\") DO UPDATE SET ");
        for c in self
            .columns
            .iter()
            .filter(|c| c.name != "tenant_id" && c.name != "key")
        {
            let n = &c.name;
            if ENVELOPE.contains(&n.as_str()) {
                sql.push_str(&format!("\"{n}\" = excluded.\"{n}\", "));
            } else {
                sql.push_str(&format!(
                    "\"{n}\" = CASE WHEN excluded.\"deleted\" THEN COALESCE(excluded.\"{n}\", {t}.\"{n}\") ELSE excluded.\"{n}\" END, "
                ));
            }
        }
        sql.push_str(&format!(
            "hub_applied_count = {t}.hub_applied_count + 1, hub_written_at = excluded.hub_written_at, \
             hub_topic = excluded.hub_topic, hub_partition = excluded.hub_partition, hub_offset = excluded.hub_offset \
             WHERE {t}.\"source_updated_at\" <= excluded.\"source_updated_at\" \
             RETURNING \"tenant_id\", \"key\""
        ));
        sql
    }
}

/// The offsets of the SQL sink: the next offset to apply, per consumer group and partition.
/// Committed in the same transaction as the rows, this is what makes the SQL sink exactly-once.
pub const CREATE_OFFSETS: &str = "CREATE TABLE IF NOT EXISTS hub_sink_offsets (
  consumer TEXT NOT NULL,
  topic TEXT NOT NULL,
  kafka_partition INT NOT NULL,
  next_offset BIGINT NOT NULL,
  PRIMARY KEY (consumer, topic, kafka_partition)
)";

/// The write ledger of API targets: what was last acknowledged per target and record.
pub const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS hub_write_ledger (
  target TEXT NOT NULL,
  tenant TEXT NOT NULL,
  entity TEXT NOT NULL,
  record_key TEXT NOT NULL,
  version BIGINT NOT NULL,
  content_hash TEXT NOT NULL,
  written_at BIGINT NOT NULL,
  PRIMARY KEY (target, tenant, entity, record_key)
)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entity_maps_to_a_table_with_typed_columns() {
        for e in Entity::ALL {
            let t = TableDef::of(e);
            assert_eq!(t.table, format!("canonical_{}", e.name()));
            assert_eq!(t.columns[6].kind, ColumnKind::BigInt, "source_updated_at");
            assert_eq!(t.columns[9].kind, ColumnKind::Boolean, "deleted");
        }
        let c = TableDef::of(Entity::Customer);
        let kind = |n: &str| c.columns.iter().find(|x| x.name == n).unwrap().kind;
        assert_eq!(kind("address"), ColumnKind::Json);
        assert_eq!(kind("date_of_birth"), ColumnKind::BigInt);
        assert_eq!(kind("email"), ColumnKind::Text);
        let ro = TableDef::of(Entity::RepairOrder);
        assert_eq!(
            ro.columns.iter().find(|x| x.name == "lines").unwrap().kind,
            ColumnKind::Json
        );
    }

    #[test]
    fn upsert_sql_numbers_placeholders_per_backend() {
        let t = TableDef::of(Entity::Part);
        let pg = t.upsert_sql(Backend::Postgres, 2);
        let last = format!("${}", 2 * t.params_per_row());
        assert!(pg.contains(&last) && !pg.contains(&format!("${}", 2 * t.params_per_row() + 1)));
        let lite = t.upsert_sql(Backend::Sqlite, 2);
        assert_eq!(lite.matches('?').count(), 2 * t.params_per_row());
        assert!(pg.contains(
            "WHERE canonical_part.\"source_updated_at\" <= excluded.\"source_updated_at\""
        ));
    }
}
