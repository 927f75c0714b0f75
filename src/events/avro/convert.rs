//! An Avro value as a JSON event document: the bridge that lets Avro events
//! take the same path as JSON ones (DESIGN §5).
//!
//! The top-level value must be a record; each of its fields becomes a member
//! of a JSON object, in schema order, so `type`, `data`, `id` and
//! `timestamp` are read by the shared JSON code and fields it does not know
//! (an evolved schema's additions) are ignored there.
//!
//! Values map to JSON like this:
//! - `null`, `boolean`, `int`, `long`, `float`, `double`: the JSON literal or
//!   number. NaN and infinities have no JSON form and are an error.
//! - `string`, `enum` (its symbol), `uuid`: a JSON string.
//! - `bytes`, `fixed`: a base64 string (RFC 4648, padded). Avro's own JSON
//!   encoding (one code point per byte) is not what a webhook receiver
//!   expects.
//! - `array`: an array; `map`: an object with its keys sorted, so the same
//!   event always produces the same bytes; `record`: an object in field
//!   order; a union: its branch's value, unwrapped.
//! - `decimal`, `big-decimal`: a JSON number with exactly the value's digits.
//! - `timestamp-millis`/`-micros`/`-nanos`: an RFC 3339 string in UTC with 3,
//!   6 or 9 fractional digits; the `local-timestamp-*` kinds the same without
//!   `Z`; `date`: `YYYY-MM-DD`; `time-millis`/`-micros`: `HH:MM:SS.fff[fff]`;
//!   `duration`: `{"months","days","millis"}`.
//!
//! The field `data` is special: when it is a string (as in
//! `topology/schemas/event.avsc`), the string is JSON text and is embedded
//! as it is, after checking that it is exactly one JSON value; anything else
//! is converted by the rules above.

use std::fmt::Write as _;

use apache_avro::Schema;
use apache_avro::schema::{DecimalSchema, NamesRef};
use apache_avro::types::Value;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::value::RawValue;
use time::{Date, OffsetDateTime, Time};

use crate::events::MAX_NESTING_DEPTH;

/// Why an Avro value has no JSON event document.
#[derive(Debug, thiserror::Error)]
pub enum AvroJsonError {
    #[error("the value is not an Avro record")]
    NotARecord,
    #[error("field `data` is a string but not one JSON value")]
    DataNotJson(#[source] serde_json::Error),
    #[error("field `{field}` holds {value}, which JSON cannot represent")]
    NonFiniteNumber { field: String, value: f64 },
    #[error("field `{field}` holds a date or time outside what RFC 3339 can write")]
    TimeOutOfRange { field: String },
    #[error("the value nests arrays, maps and records deeper than {MAX_NESTING_DEPTH} levels")]
    TooDeep,
    #[error("field `{field}` does not match its schema")]
    SchemaMismatch { field: String },
}

/// The JSON text of the event record `value`, written with `schema`, whose
/// named types `names` resolves.
pub(crate) fn event_document(
    value: &Value,
    schema: &Schema,
    names: &NamesRef<'_>,
) -> Result<Vec<u8>, AvroJsonError> {
    let (Value::Record(fields), Schema::Record(record)) = (value, resolve(schema, names)) else {
        return Err(AvroJsonError::NotARecord);
    };
    let mut writer = JsonWriter {
        out: Vec::with_capacity(256),
        names,
    };
    writer.out.push(b'{');
    for (i, (name, field_value)) in fields.iter().enumerate() {
        let field_schema = field_schema(record, i, name)?;
        if i > 0 {
            writer.out.push(b',');
        }
        writer.string(name);
        writer.out.push(b':');
        if name == "data" {
            writer.data(field_value, field_schema, name)?;
        } else {
            writer.value(field_value, field_schema, name, 1)?;
        }
    }
    writer.out.push(b'}');
    Ok(writer.out)
}

/// The schema of the `index`th field of a decoded record, which apache-avro
/// produces in schema order; the name is checked rather than assumed.
fn field_schema<'s>(
    record: &'s apache_avro::schema::RecordSchema,
    index: usize,
    name: &str,
) -> Result<&'s Schema, AvroJsonError> {
    match record.fields.get(index) {
        Some(field) if field.name == name => Ok(&field.schema),
        _ => record
            .lookup
            .get(name)
            .and_then(|&i| record.fields.get(i))
            .map(|field| &field.schema)
            .ok_or_else(|| AvroJsonError::SchemaMismatch {
                field: name.to_owned(),
            }),
    }
}

/// Follows a reference to the named schema it stands for.
fn resolve<'s>(schema: &'s Schema, names: &NamesRef<'s>) -> &'s Schema {
    match schema {
        Schema::Ref { name } => names.get(name).copied().unwrap_or(schema),
        _ => schema,
    }
}

struct JsonWriter<'n, 's> {
    out: Vec<u8>,
    names: &'n NamesRef<'s>,
}

impl<'s> JsonWriter<'_, 's> {
    /// The `data` field: JSON text when it is a string, else converted.
    fn data(
        &mut self,
        value: &Value,
        schema: &'s Schema,
        field: &str,
    ) -> Result<(), AvroJsonError> {
        if let (Value::Union(index, inner), Schema::Union(union)) =
            (value, resolve(schema, self.names))
        {
            let branch = union.variants().get(*index as usize).ok_or_else(|| {
                AvroJsonError::SchemaMismatch {
                    field: field.to_owned(),
                }
            })?;
            return self.data(inner, branch, field);
        }
        match value {
            Value::String(text) => {
                // Parsing as a RawValue proves the text is exactly one JSON
                // value; embedding it unchecked would let `1,"id":"x"` add
                // members to the event object.
                let raw: &RawValue =
                    serde_json::from_str(text).map_err(AvroJsonError::DataNotJson)?;
                self.out.extend_from_slice(raw.get().as_bytes());
                Ok(())
            }
            _ => self.value(value, schema, field, 1),
        }
    }

    /// Any value, `depth` being the nesting level of the container it is in.
    fn value(
        &mut self,
        value: &Value,
        schema: &'s Schema,
        field: &str,
        depth: usize,
    ) -> Result<(), AvroJsonError> {
        let schema = resolve(schema, self.names);
        let mismatch = || AvroJsonError::SchemaMismatch {
            field: field.to_owned(),
        };
        match value {
            Value::Null => self.out.extend_from_slice(b"null"),
            Value::Boolean(b) => self
                .out
                .extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Int(n) => self.display(n),
            Value::Long(n) => self.display(n),
            Value::Float(x) => self.float(f64::from(*x), x, field)?,
            Value::Double(x) => self.float(*x, x, field)?,
            Value::Bytes(bytes) | Value::Fixed(_, bytes) => self.string(&BASE64.encode(bytes)),
            Value::String(text) | Value::Enum(_, text) => self.string(text),
            Value::Uuid(uuid) => self.string(&uuid.to_string()),
            Value::Union(index, inner) => {
                let Schema::Union(union) = schema else {
                    return Err(mismatch());
                };
                let branch = union.variants().get(*index as usize).ok_or_else(mismatch)?;
                self.value(inner, branch, field, depth)?;
            }
            Value::Array(items) => {
                let Schema::Array(array) = schema else {
                    return Err(mismatch());
                };
                let depth = deeper(depth)?;
                self.out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    self.value(item, &array.items, field, depth)?;
                }
                self.out.push(b']');
            }
            Value::Map(entries) => {
                let Schema::Map(map) = schema else {
                    return Err(mismatch());
                };
                let depth = deeper(depth)?;
                let mut keys: Vec<&String> = entries.keys().collect();
                keys.sort_unstable();
                self.out.push(b'{');
                for (i, key) in keys.into_iter().enumerate() {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    self.string(key);
                    self.out.push(b':');
                    self.value(&entries[key], &map.types, field, depth)?;
                }
                self.out.push(b'}');
            }
            Value::Record(fields) => {
                let Schema::Record(record) = schema else {
                    return Err(mismatch());
                };
                let depth = deeper(depth)?;
                self.out.push(b'{');
                for (i, (name, inner)) in fields.iter().enumerate() {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    self.string(name);
                    self.out.push(b':');
                    self.value(inner, field_schema(record, i, name)?, field, depth)?;
                }
                self.out.push(b'}');
            }
            Value::Decimal(decimal) => {
                let Schema::Decimal(DecimalSchema { scale, .. }) = schema else {
                    return Err(mismatch());
                };
                let unscaled = Vec::<u8>::try_from(decimal).map_err(|_| mismatch())?;
                let digits = num_bigint::BigInt::from_signed_bytes_be(&unscaled).to_string();
                self.out
                    .extend_from_slice(with_decimal_point(&digits, *scale).as_bytes());
            }
            Value::BigDecimal(decimal) => {
                // bigdecimal prints plain digits or an exponent form such as
                // 1E+5, both valid JSON numbers.
                self.display(decimal);
            }
            Value::Date(days) => {
                let date = Date::from_julian_day(UNIX_EPOCH_JULIAN_DAY + days)
                    .ok()
                    .filter(|d| (0..=9999).contains(&d.year()))
                    .ok_or_else(|| out_of_range(field))?;
                self.string(&format_date(date));
            }
            Value::TimeMillis(millis) => {
                let nanos = i64::from(*millis) * 1_000_000;
                self.string(&format_time(nanos, 3).ok_or_else(|| out_of_range(field))?);
            }
            Value::TimeMicros(micros) => {
                let nanos = micros
                    .checked_mul(1_000)
                    .ok_or_else(|| out_of_range(field))?;
                self.string(&format_time(nanos, 6).ok_or_else(|| out_of_range(field))?);
            }
            Value::TimestampMillis(t) => {
                self.instant(i128::from(*t) * 1_000_000, 3, true, field)?
            }
            Value::TimestampMicros(t) => self.instant(i128::from(*t) * 1_000, 6, true, field)?,
            Value::TimestampNanos(t) => self.instant(i128::from(*t), 9, true, field)?,
            Value::LocalTimestampMillis(t) => {
                self.instant(i128::from(*t) * 1_000_000, 3, false, field)?
            }
            Value::LocalTimestampMicros(t) => {
                self.instant(i128::from(*t) * 1_000, 6, false, field)?
            }
            Value::LocalTimestampNanos(t) => self.instant(i128::from(*t), 9, false, field)?,
            Value::Duration(duration) => {
                let months = u32::from(duration.months());
                let days = u32::from(duration.days());
                let millis = u32::from(duration.millis());
                self.display(format_args!(
                    r#"{{"months":{months},"days":{days},"millis":{millis}}}"#
                ));
            }
        }
        Ok(())
    }

    fn float(
        &mut self,
        x: f64,
        shortest: &impl serde::Serialize,
        field: &str,
    ) -> Result<(), AvroJsonError> {
        if !x.is_finite() {
            return Err(AvroJsonError::NonFiniteNumber {
                field: field.to_owned(),
                value: x,
            });
        }
        // serde_json prints the shortest text that reads back as the same
        // f32 or f64 (0.1f32 as 0.1, not 0.10000000149011612).
        serde_json::to_writer(&mut self.out, shortest)
            .expect("a finite float serialises into a Vec");
        Ok(())
    }

    fn instant(
        &mut self,
        nanos: i128,
        fraction_digits: usize,
        utc: bool,
        field: &str,
    ) -> Result<(), AvroJsonError> {
        let text =
            format_instant(nanos, fraction_digits, utc).ok_or_else(|| out_of_range(field))?;
        self.string(&text);
        Ok(())
    }

    fn string(&mut self, text: &str) {
        // Serialising a &str cannot fail, and writing to a Vec has no I/O error.
        serde_json::to_writer(&mut self.out, text).expect("a string serialises into a Vec");
    }

    fn display(&mut self, value: impl std::fmt::Display) {
        let mut text = String::new();
        // Writing to a String cannot fail.
        write!(text, "{value}").expect("formatting into a String");
        self.out.extend_from_slice(text.as_bytes());
    }
}

/// The Julian day number of 1970-01-01, day 0 of Avro's `date`.
const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

fn deeper(depth: usize) -> Result<usize, AvroJsonError> {
    let depth = depth + 1;
    if depth > MAX_NESTING_DEPTH {
        Err(AvroJsonError::TooDeep)
    } else {
        Ok(depth)
    }
}

fn out_of_range(field: &str) -> AvroJsonError {
    AvroJsonError::TimeOutOfRange {
        field: field.to_owned(),
    }
}

/// `digits` (an integer, maybe negative) divided by 10^`scale`, in plain
/// decimal notation.
fn with_decimal_point(digits: &str, scale: usize) -> String {
    if scale == 0 {
        return digits.to_owned();
    }
    let (sign, magnitude) = match digits.strip_prefix('-') {
        Some(magnitude) => ("-", magnitude),
        None => ("", digits),
    };
    if magnitude.len() > scale {
        let (whole, fraction) = magnitude.split_at(magnitude.len() - scale);
        format!("{sign}{whole}.{fraction}")
    } else {
        format!("{sign}0.{}{magnitude}", "0".repeat(scale - magnitude.len()))
    }
}

fn format_date(date: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// A time of day `nanos` after midnight, or `None` outside one day.
fn format_time(nanos: i64, fraction_digits: usize) -> Option<String> {
    if !(0..86_400 * 1_000_000_000).contains(&nanos) {
        return None;
    }
    let seconds = nanos / 1_000_000_000;
    let time = Time::from_hms_nano(
        u8::try_from(seconds / 3600).ok()?,
        u8::try_from(seconds / 60 % 60).ok()?,
        u8::try_from(seconds % 60).ok()?,
        u32::try_from(nanos % 1_000_000_000).ok()?,
    )
    .ok()?;
    Some(format_clock(time, fraction_digits))
}

fn format_clock(time: Time, fraction_digits: usize) -> String {
    let fraction = format!("{:09}", time.nanosecond());
    format!(
        "{:02}:{:02}:{:02}.{}",
        time.hour(),
        time.minute(),
        time.second(),
        &fraction[..fraction_digits]
    )
}

/// An instant `nanos` after the Unix epoch in RFC 3339 form (UTC, `Z`), or
/// without a zone for local timestamps; `None` outside years 0000–9999.
fn format_instant(nanos: i128, fraction_digits: usize, utc: bool) -> Option<String> {
    let instant = OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?;
    if !(0..=9999).contains(&instant.year()) {
        return None;
    }
    Some(format!(
        "{}T{}{}",
        format_date(instant.date()),
        format_clock(instant.time(), fraction_digits),
        if utc { "Z" } else { "" }
    ))
}

#[cfg(test)]
mod tests;
