//! Rocket.Chat documents (reference §6) as typed views that borrow from the text they were
//! read from, for `mapping` to turn into domain types.
//!
//! The same structs read a DDP frame's text (`serde_json::from_str`, strings borrowed unless
//! escaped) and a REST answer already parsed into a `Value` ([`read`]), so both paths share one
//! mapping. Every field is lenient: absent, `null` or of an unexpected type, it reads as
//! unknown rather than failing the whole document, exactly as looking the key up in a `Value`
//! and asking for a string (or number) did. A field that is itself a document or a list is
//! lenient the same way. What still fails a read is text that is not JSON, JSON nested beyond
//! serde_json's recursion limit, and a key given twice in one object.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use chrono::{DateTime, TimeZone, Utc};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A string field: `None` when absent, `null` or not a string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Text<'a>(pub Option<Cow<'a, str>>);

impl Text<'_> {
    /// The string, if the field is one.
    pub(crate) fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// A count: `None` unless a non-negative integer (what `Value::as_u64` accepts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Count(pub Option<u64>);

/// A date in any of Rocket.Chat's dialects: an ISO string (REST), `{"$date": ms}` (DDP's
/// EJSON) or bare milliseconds; `None` for anything else.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Date(pub Option<DateTime<Utc>>);

/// A nested document: `None` unless the field is a JSON object.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Lenient<T>(pub Option<T>);

/// A list: `None` unless the field is a JSON array; elements are read as `T`, which should
/// be lenient itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct List<T>(pub Option<Vec<T>>);

impl<T> List<T> {
    /// The elements, none when the field is not a list.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().flatten()
    }
}

/// The positional `args` of a DDP stream event: the first two read as `A` and `B` (defaults
/// when missing or when `args` is not an array), the rest skipped unread.
#[derive(Debug, Default)]
pub(crate) struct Args<A, B = IgnoredAny>(pub A, pub B);

/// A message document.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct MessageDoc<'a> {
    #[serde(rename = "_id", borrow)]
    pub id: Text<'a>,
    #[serde(borrow)]
    pub rid: Text<'a>,
    #[serde(borrow)]
    pub msg: Text<'a>,
    /// The system message type; absent on what users wrote.
    #[serde(borrow)]
    pub t: Text<'a>,
    /// The thread's root message.
    #[serde(borrow)]
    pub tmid: Text<'a>,
    pub ts: Date,
    #[serde(rename = "editedAt")]
    pub edited_at: Date,
    /// The author.
    #[serde(borrow)]
    pub u: Lenient<AuthorDoc<'a>>,
    #[serde(borrow)]
    pub file: Lenient<FileDoc<'a>>,
    #[serde(borrow)]
    pub files: List<Lenient<FileDoc<'a>>>,
}

/// A message's author (`u`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct AuthorDoc<'a> {
    #[serde(rename = "_id", borrow)]
    pub id: Text<'a>,
    #[serde(borrow)]
    pub username: Text<'a>,
    #[serde(borrow)]
    pub name: Text<'a>,
}

/// A file attached to a message.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct FileDoc<'a> {
    #[serde(rename = "_id", borrow)]
    pub id: Text<'a>,
    #[serde(borrow)]
    pub name: Text<'a>,
    /// The MIME type.
    #[serde(rename = "type", borrow)]
    pub mime: Text<'a>,
    pub size: Count,
}

/// A room document, the same for every member.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct RoomDoc<'a> {
    #[serde(rename = "_id", borrow)]
    pub id: Text<'a>,
    #[serde(borrow)]
    pub rid: Text<'a>,
    /// The room type letter.
    #[serde(borrow)]
    pub t: Text<'a>,
    #[serde(borrow)]
    pub fname: Text<'a>,
    #[serde(borrow)]
    pub name: Text<'a>,
    /// The members of a direct room.
    #[serde(borrow)]
    pub usernames: List<Text<'a>>,
    #[serde(rename = "lastMessage", borrow)]
    pub last_message: Lenient<MessageDoc<'a>>,
    #[serde(rename = "_updatedAt")]
    pub updated_at: Date,
    pub ts: Date,
}

/// A subscription document: one user's view of a room.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct SubscriptionDoc<'a> {
    #[serde(borrow)]
    pub rid: Text<'a>,
    /// The room type letter.
    #[serde(borrow)]
    pub t: Text<'a>,
    #[serde(borrow)]
    pub name: Text<'a>,
    #[serde(borrow)]
    pub fname: Text<'a>,
    pub unread: Count,
    #[serde(rename = "_updatedAt")]
    pub updated_at: Date,
}

/// A document of which only the id matters (`deleteMessage`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct IdDoc<'a> {
    #[serde(rename = "_id", borrow)]
    pub id: Text<'a>,
}

/// Reads a document out of a REST answer; a value that is not an object reads as a document
/// with every field unknown, as looking keys up in it did.
pub(crate) fn read<'a, T>(value: &'a Value) -> T
where
    T: Deserialize<'a> + Default,
{
    // A `Value` cannot hold a key twice and its depth was checked when it was parsed, so the
    // read cannot fail; the default covers it all the same.
    Lenient::<T>::deserialize(value)
        .ok()
        .and_then(|lenient| lenient.0)
        .unwrap_or_default()
}

/// Reads past the rest of an array, checking only that it is JSON.
fn skip_seq<'de, A: SeqAccess<'de>>(seq: A) -> Result<(), A::Error> {
    IgnoredAny.visit_seq(seq).map(drop)
}

/// Reads past the rest of an object, likewise.
fn skip_map<'de, A: MapAccess<'de>>(map: A) -> Result<(), A::Error> {
    IgnoredAny.visit_map(map).map(drop)
}

/// A string, a whole number, or anything else (read past and forgotten).
enum Scalar<'a> {
    Str(Cow<'a, str>),
    Unsigned(u64),
    Signed(i64),
    Other,
}

struct ScalarVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for ScalarVisitor<'a> {
    type Value = Scalar<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::Unsigned(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Signed(v))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(seq).map(|()| Scalar::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        skip_map(map).map(|()| Scalar::Other)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor(PhantomData))
    }
}

impl Scalar<'_> {
    /// The number as `Value::as_i64` reads it.
    fn as_i64(&self) -> Option<i64> {
        match *self {
            Scalar::Signed(n) => Some(n),
            Scalar::Unsigned(n) => i64::try_from(n).ok(),
            Scalar::Str(_) | Scalar::Other => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Text(match Scalar::deserialize(deserializer)? {
            Scalar::Str(text) => Some(text),
            _ => None,
        }))
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Count(match Scalar::deserialize(deserializer)? {
            Scalar::Unsigned(n) => Some(n),
            Scalar::Signed(n) => u64::try_from(n).ok(),
            Scalar::Str(_) | Scalar::Other => None,
        }))
    }
}

fn from_millis(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

struct DateVisitor;

impl<'de> Visitor<'de> for DateVisitor {
    type Value = Date;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a date")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Date(
            DateTime::parse_from_rfc3339(v)
                .ok()
                .map(|d| d.with_timezone(&Utc)),
        ))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Date(i64::try_from(v).ok().and_then(from_millis)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Date(from_millis(v)))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Date(None))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Date(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Date(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(seq).map(|()| Date(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // EJSON: `{"$date": ms}`; other keys are read past.
        let mut date = None;
        while let Some(key) = map.next_key::<Text>()? {
            if key.get() == Some("$date") {
                date = map.next_value::<Scalar>()?.as_i64().and_then(from_millis);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Date(date))
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DateVisitor)
    }
}

struct LenientVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for LenientVisitor<T> {
    type Value = Lenient<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|doc| Lenient(Some(doc)))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Lenient(None))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Lenient(None))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Lenient(None))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Lenient(None))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Lenient(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Lenient(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        // Not an object; serde's derive would otherwise read an array positionally as one.
        skip_seq(seq).map(|()| Lenient(None))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LenientVisitor(PhantomData))
    }
}

struct ListVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
    type Value = List<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(List(Some(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        skip_map(map).map(|()| List(None))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(List(None))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(List(None))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(List(None))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(List(None))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(List(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(List(None))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ListVisitor(PhantomData))
    }
}

struct ArgsVisitor<A, B>(PhantomData<(A, B)>);

impl<'de, A, B> Visitor<'de> for ArgsVisitor<A, B>
where
    A: Deserialize<'de> + Default,
    B: Deserialize<'de> + Default,
{
    type Value = Args<A, B>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the args of a stream event")
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        let first = seq.next_element()?;
        let second = match first {
            Some(_) => seq.next_element()?,
            None => None,
        };
        skip_seq(seq)?;
        Ok(Args(first.unwrap_or_default(), second.unwrap_or_default()))
    }

    fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
        skip_map(map).map(|()| Args::default())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Args::default())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Args::default())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Args::default())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Args::default())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Args::default())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Args::default())
    }
}

impl<'de, A, B> Deserialize<'de> for Args<A, B>
where
    A: Deserialize<'de> + Default,
    B: Deserialize<'de> + Default,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ArgsVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_of_the_wrong_type_read_as_unknown() {
        let text = r#"{"_id": 5, "rid": "r\"1", "msg": ["x"], "ts": {"$date": 1714557600000, "x": 1},
            "editedAt": true, "u": "bob", "files": [7, {"_id": "f"}], "tmid": null}"#;
        let doc: MessageDoc = serde_json::from_str(text).unwrap();
        assert_eq!(doc.id.get(), None);
        assert_eq!(doc.rid.get(), Some("r\"1"));
        assert_eq!(doc.msg.get(), None);
        assert_eq!(doc.ts.0.map(|d| d.timestamp_millis()), Some(1714557600000));
        assert_eq!(doc.edited_at, Date(None));
        assert!(doc.u.0.is_none());
        let files: Vec<_> = doc.files.iter().map(|f| f.0.is_some()).collect();
        assert_eq!(files, [false, true]);
        assert_eq!(doc.tmid.get(), None);
    }

    #[test]
    fn unescaped_strings_are_borrowed_and_escaped_ones_still_read() {
        let doc: IdDoc = serde_json::from_str(r#"{"_id": "plain"}"#).unwrap();
        assert!(matches!(doc.id.0, Some(Cow::Borrowed("plain"))));
        let doc: IdDoc = serde_json::from_str(r#"{"_id": "caf\u00e9"}"#).unwrap();
        assert_eq!(doc.id.get(), Some("café"));
    }

    #[test]
    fn dates_read_in_every_dialect() {
        let check = |value: Value, expected: Option<i64>| {
            let date = Date::deserialize(&value).unwrap();
            assert_eq!(date.0.map(|d| d.timestamp_millis()), expected, "{value}");
            let date: Date = serde_json::from_str(&value.to_string()).unwrap();
            assert_eq!(date.0.map(|d| d.timestamp_millis()), expected, "{value}");
        };
        check(json!("2024-05-01T10:00:00.000Z"), Some(1714557600000));
        check(json!({"$date": 1714557600000_i64}), Some(1714557600000));
        check(json!(1714557600000_i64), Some(1714557600000));
        check(json!(-1), Some(-1));
        check(json!("yesterday"), None);
        check(json!({"$date": "2024"}), None);
        check(json!(1.5), None);
        check(json!(u64::MAX), None);
        check(json!([1]), None);
    }

    #[test]
    fn args_read_the_first_two_and_skip_the_rest() {
        let Args(method, doc): Args<Text, Lenient<IdDoc>> =
            serde_json::from_str(r#"["updated", {"_id": "a"}, {"more": [1, 2]}, 3]"#).unwrap();
        assert_eq!(method.get(), Some("updated"));
        assert_eq!(doc.0.unwrap().id.get(), Some("a"));
        let Args(method, doc): Args<Text, Lenient<IdDoc>> =
            serde_json::from_str(r#"{"not": "args"}"#).unwrap();
        assert_eq!((method.get(), doc.0.is_none()), (None, true));
        let Args(first, _): Args<Count> = serde_json::from_str("[]").unwrap();
        assert_eq!(first, Count(None));
    }

    #[test]
    fn objects_are_not_read_from_arrays_and_counts_are_non_negative_integers() {
        let array = json!(["r1", "c", "name"]);
        let doc: SubscriptionDoc = read(&array);
        assert_eq!(doc.rid.get(), None);
        for (unread, expected) in [
            (json!(3), Some(3)),
            (json!(-1), None),
            (json!(1.5), None),
            (json!("3"), None),
        ] {
            let value = json!({ "unread": unread });
            let doc: SubscriptionDoc = read(&value);
            assert_eq!(doc.unread, Count(expected), "{unread}");
        }
    }

    #[test]
    fn a_key_given_twice_fails_the_read() {
        assert!(serde_json::from_str::<IdDoc>(r#"{"_id": "a", "_id": "b"}"#).is_err());
    }
}
