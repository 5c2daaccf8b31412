//! The offline store: every feature value ever ingested, as Parquet files in
//! the artifact store, and the point-in-time join run by DataFusion.
//!
//! Layout: `{prefix}/{entity_type}/day={YYYY-MM-DD}/{uuid}.parquet`, one
//! file per ingested batch and event day, rows sorted by (feature, entity,
//! event time), zstd-compressed. Partitioning by entity type and event day
//! lets a join read only the days its rows can see (row times minus the
//! longest ttl up to the latest row time); sorting by feature first keeps a
//! feature's values together, so Parquet's row-group statistics skip the
//! rest.
//!
//! The join is SQL over a listing table of those files: each (row, feature)
//! pair takes the value with the greatest (event time, ingestion time)
//! among those at or before the row's time, not older than the feature's
//! ttl, and (optionally) not ingested after the row's time: the rule in
//! [`crate::pit`], which the tests hold this engine to.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Float64Array, Float64Builder, Int64Array, RecordBatch, StringArray,
    StringBuilder, TimestampMicrosecondArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::Value;
use tracseq_core::{Error, Result};

use crate::definition::ValueType;
use crate::time::{self, Micros};

/// The URL the artifact store is registered under inside DataFusion.
const STORE_URL: &str = "tracseq://artifacts";
const DAY_MICROS: i64 = 86_400 * time::MICROS_PER_SECOND;

/// One value to append.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueRow {
    pub entity: String,
    /// The feature version's key, `name@version`.
    pub feature: String,
    pub value: Value,
    pub event_time: Micros,
    pub ingested_at: Micros,
}

/// A feature asked for in a join.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinFeature {
    /// `name@version`.
    pub key: String,
    pub value_type: ValueType,
    /// Microseconds.
    pub ttl: Option<i64>,
}

/// One output column of a join.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Number(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
}

/// A join's answer: one column per feature asked for, one entry per row,
/// in the rows' order.
#[derive(Debug, Clone, PartialEq)]
pub struct Joined {
    pub columns: Vec<Column>,
}

impl Joined {
    /// Row `i` as JSON values, typed by each feature's value type.
    pub fn row(&self, i: usize, features: &[JoinFeature]) -> Vec<Value> {
        self.columns
            .iter()
            .zip(features)
            .map(|(c, f)| match c {
                Column::Number(v) => v[i].map_or(Value::Null, |x| number_json(x, f.value_type)),
                Column::Text(v) => v[i].clone().map_or(Value::Null, Value::String),
            })
            .collect()
    }
}

fn number_json(x: f64, value_type: ValueType) -> Value {
    match value_type {
        ValueType::Bool => Value::Bool(x != 0.0),
        ValueType::Int if x.fract() == 0.0 && x.abs() < 9.0e15 => Value::from(x as i64),
        _ => serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number),
    }
}

/// How a JSON value is stored: numbers and booleans in `num`, text in
/// `text`, null in neither.
fn split_value(v: &Value) -> (Option<f64>, Option<&str>) {
    match v {
        Value::Number(n) => (n.as_f64(), None),
        Value::Bool(b) => (Some(if *b { 1.0 } else { 0.0 }), None),
        Value::String(s) => (None, Some(s.as_str())),
        _ => (None, None),
    }
}

/// The Parquet schema of stored values.
pub fn value_schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("feature", DataType::Utf8, false),
        Field::new("entity", DataType::Utf8, false),
        Field::new("num", DataType::Float64, true),
        Field::new("text", DataType::Utf8, true),
        Field::new("event_time", ts.clone(), false),
        Field::new("ingested_at", ts, false),
    ]))
}

fn df_error(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("offline store: {e}"))
}

/// A file the store wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenFile {
    pub path: String,
    pub rows: usize,
    pub bytes: usize,
}

/// Parquet values in an object store, joined with DataFusion.
#[derive(Clone)]
pub struct OfflineStore {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

impl OfflineStore {
    /// Values live under `prefix` (no leading or trailing `/`) in `store`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        Self {
            store,
            prefix: prefix.trim_matches('/').to_string(),
        }
    }

    fn dir(&self, entity_type: &str) -> String {
        format!("{}/{entity_type}", self.prefix)
    }

    /// Appends `values` of `entity_type`: one Parquet file per event day.
    pub async fn append(&self, entity_type: &str, values: &[ValueRow]) -> Result<Vec<WrittenFile>> {
        let mut by_day: HashMap<i64, Vec<&ValueRow>> = HashMap::new();
        for v in values {
            by_day
                .entry(v.event_time.div_euclid(DAY_MICROS))
                .or_default()
                .push(v);
        }
        let mut days: Vec<_> = by_day.into_iter().collect();
        days.sort_by_key(|(d, _)| *d);
        let mut written = Vec::with_capacity(days.len());
        for (day, mut rows) in days {
            rows.sort_by(|a, b| {
                (&a.feature, &a.entity, a.event_time, a.ingested_at).cmp(&(
                    &b.feature,
                    &b.entity,
                    b.event_time,
                    b.ingested_at,
                ))
            });
            let bytes = encode(&rows)?;
            let date = time::to_datetime(day * DAY_MICROS).format("%Y-%m-%d");
            let path = format!(
                "{}/day={date}/{}.parquet",
                self.dir(entity_type),
                uuid::Uuid::now_v7()
            );
            let len = bytes.len();
            self.store
                .put(&Path::from(path.as_str()), PutPayload::from(bytes))
                .await
                .map_err(|e| Error::Unavailable(format!("offline store: writing {path}: {e}")))?;
            written.push(WrittenFile {
                path,
                rows: rows.len(),
                bytes: len,
            });
        }
        Ok(written)
    }

    async fn context(&self, entity_type: &str) -> Result<Option<SessionContext>> {
        let ctx =
            SessionContext::new_with_config(SessionConfig::new().with_information_schema(false));
        let url = url::Url::parse(STORE_URL).map_err(df_error)?;
        ctx.register_object_store(&url, self.store.clone());
        // A listing table over no files fails; an entity type without any
        // value yet answers nulls.
        let prefix = Path::from(self.dir(entity_type));
        let mut listing = self.store.list(Some(&prefix));
        use futures::StreamExt;
        if listing.next().await.is_none() {
            return Ok(None);
        }
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(vec![("day".to_string(), DataType::Utf8)]);
        let table_url = format!("{STORE_URL}/{}/", self.dir(entity_type));
        ctx.register_listing_table("vals", &table_url, options, Some(value_schema()), None)
            .await
            .map_err(df_error)?;
        Ok(Some(ctx))
    }

    /// The point-in-time join of `rows` (entity, time) with `features`.
    pub async fn join(
        &self,
        entity_type: &str,
        entities: &[String],
        times: &[Micros],
        features: &[JoinFeature],
        exclude_ingested_after: bool,
    ) -> Result<Joined> {
        if entities.len() != times.len() {
            return Err(Error::Internal(
                "join: entities and times differ in length".into(),
            ));
        }
        let n = entities.len();
        let mut columns: Vec<Column> = features
            .iter()
            .map(|f| match f.value_type {
                ValueType::String => Column::Text(vec![None; n]),
                _ => Column::Number(vec![None; n]),
            })
            .collect();
        if n == 0 || features.is_empty() {
            return Ok(Joined { columns });
        }
        let Some(ctx) = self.context(entity_type).await? else {
            return Ok(Joined { columns });
        };
        // The rows as one in-memory partition per core, so the join's
        // probe side runs in parallel.
        let rows_schema = Arc::new(Schema::new(vec![
            Field::new("row_id", DataType::UInt64, false),
            Field::new("entity", DataType::Utf8, false),
            Field::new("ts", DataType::Int64, false),
        ]));
        let parts = std::thread::available_parallelism()
            .map_or(1, |p| p.get())
            .clamp(1, 64);
        let chunk = n.div_ceil(parts).max(1);
        let mut partitions = Vec::with_capacity(parts);
        for start in (0..n).step_by(chunk) {
            let end = (start + chunk).min(n);
            let batch = RecordBatch::try_new(
                rows_schema.clone(),
                vec![
                    Arc::new(UInt64Array::from_iter_values(start as u64..end as u64)) as ArrayRef,
                    Arc::new(StringArray::from_iter_values(&entities[start..end])),
                    Arc::new(Int64Array::from(times[start..end].to_vec())),
                ],
            )
            .map_err(df_error)?;
            partitions.push(vec![batch]);
        }
        let rows = MemTable::try_new(rows_schema, partitions).map_err(df_error)?;
        ctx.register_table("rows", Arc::new(rows))
            .map_err(df_error)?;
        let ttls = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("feature", DataType::Utf8, false),
                Field::new("fidx", DataType::UInt64, false),
                Field::new("ttl", DataType::Int64, true),
            ])),
            vec![
                Arc::new(StringArray::from_iter_values(
                    features.iter().map(|f| f.key.as_str()),
                )) as ArrayRef,
                Arc::new(UInt64Array::from_iter_values(0..features.len() as u64)),
                Arc::new(Int64Array::from_iter(features.iter().map(|f| f.ttl))),
            ],
        )
        .map_err(df_error)?;
        ctx.register_batch("wanted", ttls).map_err(df_error)?;
        // Only the days a row can see: from the earliest row time minus
        // the longest ttl (or all history) to the latest row time.
        let max_t = times.iter().copied().max().unwrap_or_default();
        let min_t = times.iter().copied().min().unwrap_or_default();
        let day = |t: Micros| time::to_datetime(t).format("%Y-%m-%d").to_string();
        let mut day_filter = format!("v.day <= '{}'", day(max_t));
        if features.iter().all(|f| f.ttl.is_some()) {
            let longest = features
                .iter()
                .filter_map(|f| f.ttl)
                .max()
                .unwrap_or_default();
            day_filter.push_str(&format!(
                " AND v.day >= '{}'",
                day(min_t.saturating_sub(longest))
            ));
        }
        let ingested = if exclude_ingested_after {
            " AND CAST(v.ingested_at AS BIGINT) <= r.ts"
        } else {
            ""
        };
        let sql = format!(
            "SELECT row_id, fidx, num, text FROM (
               SELECT r.row_id, w.fidx, v.num, v.text,
                      ROW_NUMBER() OVER (PARTITION BY r.row_id, w.fidx
                                         ORDER BY v.event_time DESC, v.ingested_at DESC) AS rn
               FROM rows r
               JOIN vals v ON v.entity = r.entity
               JOIN wanted w ON w.feature = v.feature
               WHERE {day_filter}
                 AND CAST(v.event_time AS BIGINT) <= r.ts
                 AND (w.ttl IS NULL OR CAST(v.event_time AS BIGINT) >= r.ts - w.ttl){ingested}
             ) WHERE rn = 1"
        );
        let batches = ctx
            .sql(&sql)
            .await
            .map_err(df_error)?
            .collect()
            .await
            .map_err(df_error)?;
        for batch in &batches {
            let row_id = column::<UInt64Array>(batch, 0)?;
            let fidx = column::<UInt64Array>(batch, 1)?;
            let num = column::<Float64Array>(batch, 2)?;
            let text = column::<StringArray>(batch, 3)?;
            for k in 0..batch.num_rows() {
                let (r, f) = (row_id.value(k) as usize, fidx.value(k) as usize);
                match columns.get_mut(f) {
                    Some(Column::Number(v)) => v[r] = num.is_valid(k).then(|| num.value(k)),
                    Some(Column::Text(v)) => {
                        v[r] = text.is_valid(k).then(|| text.value(k).to_string())
                    }
                    None => {}
                }
            }
        }
        Ok(Joined { columns })
    }
}

fn column<T: 'static>(batch: &RecordBatch, i: usize) -> Result<&T> {
    batch.column(i).as_any().downcast_ref::<T>().ok_or_else(|| {
        Error::Internal(format!(
            "offline store: unexpected type of result column {i}"
        ))
    })
}

/// Parquet bytes of `rows` (already sorted).
fn encode(rows: &[&ValueRow]) -> Result<Vec<u8>> {
    let mut feature = StringBuilder::new();
    let mut entity = StringBuilder::new();
    let mut num = Float64Builder::with_capacity(rows.len());
    let mut text = StringBuilder::new();
    let mut event = Vec::with_capacity(rows.len());
    let mut ingested = Vec::with_capacity(rows.len());
    for r in rows {
        feature.append_value(&r.feature);
        entity.append_value(&r.entity);
        let (n, t) = split_value(&r.value);
        num.append_option(n);
        text.append_option(t);
        event.push(r.event_time);
        ingested.push(r.ingested_at);
    }
    let ts =
        |v: Vec<i64>| Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC")) as ArrayRef;
    let batch = RecordBatch::try_new(
        value_schema(),
        vec![
            Arc::new(feature.finish()) as ArrayRef,
            Arc::new(entity.finish()),
            Arc::new(num.finish()),
            Arc::new(text.finish()),
            ts(event),
            ts(ingested),
        ],
    )
    .map_err(df_error)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(df_error)?))
        .build();
    let mut out = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut out, value_schema(), Some(props)).map_err(df_error)?;
    writer.write(&batch).map_err(df_error)?;
    writer.close().map_err(df_error)?;
    Ok(out)
}

#[cfg(test)]
#[path = "offline_tests.rs"]
mod tests;
