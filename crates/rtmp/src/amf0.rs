//! AMF0 (Action Message Format 0): every type of the spec, decoded and encoded.
//!
//! rml_rtmp's AMF0 decoder rejects Date, LongString, TypedObject and Reference, and a real
//! encoder's `connect` object may hold any of them, so longhaul owns this codec.
//!
//! Decoding reads only what is there: lengths and counts from the peer never size an
//! allocation (vectors grow with the values actually decoded), nesting is bounded by
//! [`MAX_DEPTH`], the number of values one call decodes by [`MAX_VALUES`] (a decoded value
//! takes tens of bytes for one byte of input, so this bounds the memory amplification),
//! and strings are decoded as lossy UTF-8 (a bad byte becomes U+FFFD, not an error).

use bytes::{BufMut, BytesMut};

/// One AMF0 value. Objects keep their properties in wire order.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf0Value {
    Number(f64),
    Boolean(bool),
    String(String),
    Object(Vec<(String, Amf0Value)>),
    Null,
    Undefined,
    /// Index into the table of complex objects seen earlier in the same message.
    Reference(u16),
    EcmaArray(Vec<(String, Amf0Value)>),
    StrictArray(Vec<Amf0Value>),
    /// Milliseconds since the epoch and a time zone (in minutes, spec says "reserved, 0").
    Date {
        millis: f64,
        time_zone: i16,
    },
    LongString(String),
    Unsupported,
    XmlDocument(String),
    TypedObject {
        class_name: String,
        properties: Vec<(String, Amf0Value)>,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Amf0Error {
    #[error("AMF0 input ends inside a value (needed {needed} more bytes)")]
    Truncated { needed: usize },
    #[error("unknown AMF0 type marker 0x{0:02x}")]
    UnknownMarker(u8),
    #[error("AMF0 type marker 0x{0:02x} is reserved and cannot be decoded")]
    ReservedMarker(u8),
    #[error("AMF3 values (avmplus marker 0x11) are not supported")]
    Amf3NotSupported,
    #[error("AMF0 values nested deeper than {0} levels")]
    TooDeep(usize),
    #[error("AMF0 object-end marker outside an object")]
    UnexpectedObjectEnd,
    #[error("more than {0} AMF0 values in one input")]
    TooManyValues(usize),
}

/// Deepest nesting of objects/arrays the decoder follows. Real `connect` objects and
/// `onMetaData` nest two or three levels; each level is one recursive call, so 64 bounds
/// the stack a peer can make us use (a few KiB) while leaving room for any real payload.
pub const MAX_DEPTH: usize = 64;

/// Most values one [`decode`] or [`decode_all`] call decodes, nested ones included.
/// Each costs `size_of::<Amf0Value>()` (56 bytes) or more, from as little as one byte of
/// input (a Null in a strict array): 16384 values bound a decode to about 1.3 MiB,
/// whatever the input. Real commands hold tens of values; an `onMetaData` with a keyframe
/// index of a six-hour recording about 11000. [`decode_all_with_limit`] takes another bound.
pub const MAX_VALUES: usize = 16 * 1024;

/// First capacity of a strict array's vector: its count comes from the peer, so it only
/// sizes the first allocation up to this; longer arrays grow as their values decode.
const STRICT_ARRAY_INITIAL_CAPACITY: usize = 16;

/// Type markers (AMF0 spec, section 2.1).
pub mod marker {
    pub const NUMBER: u8 = 0x00;
    pub const BOOLEAN: u8 = 0x01;
    pub const STRING: u8 = 0x02;
    pub const OBJECT: u8 = 0x03;
    pub const MOVIECLIP: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const UNDEFINED: u8 = 0x06;
    pub const REFERENCE: u8 = 0x07;
    pub const ECMA_ARRAY: u8 = 0x08;
    pub const OBJECT_END: u8 = 0x09;
    pub const STRICT_ARRAY: u8 = 0x0A;
    pub const DATE: u8 = 0x0B;
    pub const LONG_STRING: u8 = 0x0C;
    pub const UNSUPPORTED: u8 = 0x0D;
    pub const RECORDSET: u8 = 0x0E;
    pub const XML_DOCUMENT: u8 = 0x0F;
    pub const TYPED_OBJECT: u8 = 0x10;
    pub const AVMPLUS: u8 = 0x11;
}

/// Checked reads; `input` only advances on success.
struct Reader<'a> {
    buf: &'a [u8],
    /// Values this reader may still decode.
    budget: usize,
    /// The bound `budget` started from (for the error).
    max_values: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], max_values: usize) -> Self {
        Self {
            buf,
            budget: max_values,
            max_values,
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Amf0Error> {
        if self.buf.len() < n {
            return Err(Amf0Error::Truncated {
                needed: n - self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, Amf0Error> {
        Ok(self.take(1)?[0])
    }
    fn peek_u8(&self) -> Option<u8> {
        self.buf.first().copied()
    }
    fn u16(&mut self) -> Result<u16, Amf0Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, Amf0Error> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn f64(&mut self) -> Result<f64, Amf0Error> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_be_bytes(a))
    }
    fn utf8(&mut self, len: usize) -> Result<String, Amf0Error> {
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }
    fn short_string(&mut self) -> Result<String, Amf0Error> {
        let len = usize::from(self.u16()?);
        self.utf8(len)
    }
    fn long_string(&mut self) -> Result<String, Amf0Error> {
        let len = usize::try_from(self.u32()?).unwrap_or(usize::MAX);
        self.utf8(len)
    }

    fn value(&mut self, depth: usize) -> Result<Amf0Value, Amf0Error> {
        self.budget = self
            .budget
            .checked_sub(1)
            .ok_or(Amf0Error::TooManyValues(self.max_values))?;
        let m = self.u8()?;
        Ok(match m {
            marker::NUMBER => Amf0Value::Number(self.f64()?),
            marker::BOOLEAN => Amf0Value::Boolean(self.u8()? != 0),
            marker::STRING => Amf0Value::String(self.short_string()?),
            marker::OBJECT => Amf0Value::Object(self.properties(depth + 1, 0)?),
            marker::NULL => Amf0Value::Null,
            marker::UNDEFINED => Amf0Value::Undefined,
            marker::REFERENCE => Amf0Value::Reference(self.u16()?),
            marker::ECMA_ARRAY => {
                // The count is only a hint (encoders get it wrong); the end marker rules.
                let hint = self.u32()?;
                Amf0Value::EcmaArray(self.properties(depth + 1, hint)?)
            }
            marker::OBJECT_END => return Err(Amf0Error::UnexpectedObjectEnd),
            marker::STRICT_ARRAY => {
                let count = usize::try_from(self.u32()?).unwrap_or(usize::MAX);
                if depth + 1 > MAX_DEPTH {
                    return Err(Amf0Error::TooDeep(MAX_DEPTH));
                }
                // Every element takes at least one byte: a count beyond what is left
                // cannot be satisfied, and must not size an allocation.
                if count > self.buf.len() {
                    return Err(Amf0Error::Truncated {
                        needed: count - self.buf.len(),
                    });
                }
                let mut items = Vec::with_capacity(count.min(STRICT_ARRAY_INITIAL_CAPACITY));
                for _ in 0..count {
                    items.push(self.value(depth + 1)?);
                }
                Amf0Value::StrictArray(items)
            }
            marker::DATE => {
                let millis = self.f64()?;
                let b = self.take(2)?;
                Amf0Value::Date {
                    millis,
                    time_zone: i16::from_be_bytes([b[0], b[1]]),
                }
            }
            marker::LONG_STRING => Amf0Value::LongString(self.long_string()?),
            marker::UNSUPPORTED => Amf0Value::Unsupported,
            marker::XML_DOCUMENT => Amf0Value::XmlDocument(self.long_string()?),
            marker::TYPED_OBJECT => {
                let class_name = self.short_string()?;
                let properties = self.properties(depth + 1, 0)?;
                Amf0Value::TypedObject {
                    class_name,
                    properties,
                }
            }
            marker::MOVIECLIP | marker::RECORDSET => return Err(Amf0Error::ReservedMarker(m)),
            marker::AVMPLUS => return Err(Amf0Error::Amf3NotSupported),
            other => return Err(Amf0Error::UnknownMarker(other)),
        })
    }

    /// Properties up to the empty key + object-end marker. `ecma_hint` (ECMA arrays
    /// only): when the input ends cleanly after at least that many properties, the
    /// missing end marker is forgiven (some old encoders leave it out).
    fn properties(
        &mut self,
        depth: usize,
        ecma_hint: u32,
    ) -> Result<Vec<(String, Amf0Value)>, Amf0Error> {
        if depth > MAX_DEPTH {
            return Err(Amf0Error::TooDeep(MAX_DEPTH));
        }
        let mut props = Vec::new();
        loop {
            if ecma_hint > 0 && self.buf.is_empty() && props.len() >= ecma_hint as usize {
                return Ok(props);
            }
            let key = self.short_string()?;
            if key.is_empty() && self.peek_u8() == Some(marker::OBJECT_END) {
                self.buf = &self.buf[1..];
                return Ok(props);
            }
            let value = self.value(depth)?;
            props.push((key, value));
        }
    }
}

/// Decodes one value from the front of `input`, advancing it. On error `input` is left
/// where it was. At most [`MAX_VALUES`] values (nested ones included).
pub fn decode(input: &mut &[u8]) -> Result<Amf0Value, Amf0Error> {
    let mut r = Reader::new(input, MAX_VALUES);
    let v = r.value(0)?;
    *input = r.buf;
    Ok(v)
}

/// Decodes every value in `input`: at most [`MAX_VALUES`] values in all.
pub fn decode_all(input: &[u8]) -> Result<Vec<Amf0Value>, Amf0Error> {
    decode_all_with_limit(input, MAX_VALUES)
}

/// Decodes every value in `input`, at most `max_values` values in all (nested ones
/// included): [`Amf0Error::TooManyValues`] beyond.
pub fn decode_all_with_limit(input: &[u8], max_values: usize) -> Result<Vec<Amf0Value>, Amf0Error> {
    let mut r = Reader::new(input, max_values);
    let mut values = Vec::new();
    while !r.buf.is_empty() {
        values.push(r.value(0)?);
    }
    Ok(values)
}

/// Reads a String or LongString from the front of `input`, advancing it. `None` (and
/// `input` untouched) when the next value is anything else or is truncated: nothing else
/// is decoded, so looking at the name of a data message costs nothing more.
pub fn decode_string(input: &mut &[u8]) -> Option<String> {
    let mut r = Reader::new(input, 1);
    let s = match r.u8().ok()? {
        marker::STRING => r.short_string().ok()?,
        marker::LONG_STRING => r.long_string().ok()?,
        _ => return None,
    };
    *input = r.buf;
    Some(s)
}

/// Longest string an AMF0 String (and an object key or class name) can hold.
const SHORT_STRING_MAX: usize = u16::MAX as usize;

/// The longest prefix of `s` that fits in `max` bytes and ends on a char boundary.
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Writes a u16-length string. Keys and class names cannot be longer than 65535 bytes in
/// AMF0; a longer one is cut at a char boundary (only our own code builds such values).
fn put_short_string(s: &str, out: &mut BytesMut) {
    let s = clip(s, SHORT_STRING_MAX);
    out.put_u16(s.len() as u16);
    out.put_slice(s.as_bytes());
}

/// Writes a u32-length string; beyond 4 GiB it is cut (no RTMP message is that long).
fn put_long_string(s: &str, out: &mut BytesMut) {
    let s = clip(s, u32::MAX as usize);
    out.put_u32(s.len() as u32);
    out.put_slice(s.as_bytes());
}

fn put_properties(props: &[(String, Amf0Value)], out: &mut BytesMut) {
    for (k, v) in props {
        put_short_string(k, out);
        encode(v, out);
    }
    out.put_u16(0);
    out.put_u8(marker::OBJECT_END);
}

/// Appends the encoding of `value` to `out`. A `String` longer than 65535 bytes is
/// written as a LongString (its only valid encoding).
pub fn encode(value: &Amf0Value, out: &mut BytesMut) {
    match value {
        Amf0Value::Number(n) => {
            out.put_u8(marker::NUMBER);
            out.put_f64(*n);
        }
        Amf0Value::Boolean(b) => {
            out.put_u8(marker::BOOLEAN);
            out.put_u8(u8::from(*b));
        }
        Amf0Value::String(s) if s.len() > SHORT_STRING_MAX => {
            out.put_u8(marker::LONG_STRING);
            put_long_string(s, out);
        }
        Amf0Value::String(s) => {
            out.put_u8(marker::STRING);
            put_short_string(s, out);
        }
        Amf0Value::Object(props) => {
            out.put_u8(marker::OBJECT);
            put_properties(props, out);
        }
        Amf0Value::Null => out.put_u8(marker::NULL),
        Amf0Value::Undefined => out.put_u8(marker::UNDEFINED),
        Amf0Value::Reference(i) => {
            out.put_u8(marker::REFERENCE);
            out.put_u16(*i);
        }
        Amf0Value::EcmaArray(props) => {
            out.put_u8(marker::ECMA_ARRAY);
            out.put_u32(u32::try_from(props.len()).unwrap_or(u32::MAX));
            put_properties(props, out);
        }
        Amf0Value::StrictArray(items) => {
            out.put_u8(marker::STRICT_ARRAY);
            out.put_u32(u32::try_from(items.len()).unwrap_or(u32::MAX));
            for v in items {
                encode(v, out);
            }
        }
        Amf0Value::Date { millis, time_zone } => {
            out.put_u8(marker::DATE);
            out.put_f64(*millis);
            out.put_i16(*time_zone);
        }
        Amf0Value::LongString(s) => {
            out.put_u8(marker::LONG_STRING);
            put_long_string(s, out);
        }
        Amf0Value::Unsupported => out.put_u8(marker::UNSUPPORTED),
        Amf0Value::XmlDocument(s) => {
            out.put_u8(marker::XML_DOCUMENT);
            put_long_string(s, out);
        }
        Amf0Value::TypedObject {
            class_name,
            properties,
        } => {
            out.put_u8(marker::TYPED_OBJECT);
            put_short_string(class_name, out);
            put_properties(properties, out);
        }
    }
}

/// Appends the encoding of each value in order.
pub fn encode_all(values: &[Amf0Value], out: &mut BytesMut) {
    for v in values {
        encode(v, out);
    }
}

impl Amf0Value {
    /// The string of a String or LongString.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(s) | Amf0Value::LongString(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(n) => Some(*n),
            _ => None,
        }
    }
    /// Looks up a property of an Object, EcmaArray or TypedObject (first match).
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        match self {
            Amf0Value::Object(p) | Amf0Value::EcmaArray(p) => {
                p.iter().find(|(k, _)| k == key).map(|(_, v)| v)
            }
            Amf0Value::TypedObject { properties, .. } => {
                properties.iter().find(|(k, _)| k == key).map(|(_, v)| v)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Amf0Value as V;

    fn enc(v: &Amf0Value) -> Vec<u8> {
        let mut b = BytesMut::new();
        encode(v, &mut b);
        b.to_vec()
    }

    fn round_trip(v: Amf0Value) {
        let bytes = enc(&v);
        let mut input = &bytes[..];
        assert_eq!(decode(&mut input).as_ref(), Ok(&v), "bytes {bytes:02x?}");
        assert!(input.is_empty(), "trailing bytes after {v:?}");
    }

    fn props() -> Vec<(String, Amf0Value)> {
        vec![
            ("app".into(), V::String("live".into())),
            ("n".into(), V::Number(3.5)),
            (
                "inner".into(),
                V::Object(vec![("b".into(), V::Boolean(true))]),
            ),
        ]
    }

    #[test]
    fn round_trip_every_type() {
        round_trip(V::Number(0.0));
        round_trip(V::Number(-1.25e300));
        round_trip(V::Number(f64::INFINITY));
        round_trip(V::Boolean(true));
        round_trip(V::Boolean(false));
        round_trip(V::String(String::new()));
        round_trip(V::String("héllo wörld".into()));
        round_trip(V::Object(vec![]));
        round_trip(V::Object(props()));
        round_trip(V::Null);
        round_trip(V::Undefined);
        round_trip(V::Reference(0x1234));
        round_trip(V::EcmaArray(vec![]));
        round_trip(V::EcmaArray(props()));
        round_trip(V::StrictArray(vec![]));
        round_trip(V::StrictArray(vec![
            V::Number(1.0),
            V::String("x".into()),
            V::Null,
        ]));
        round_trip(V::Date {
            millis: 1.7e12,
            time_zone: -60,
        });
        round_trip(V::LongString("short but long".into()));
        round_trip(V::LongString("x".repeat(70_000)));
        round_trip(V::Unsupported);
        round_trip(V::XmlDocument("<a b='c'/>".into()));
        round_trip(V::TypedObject {
            class_name: "flex.Msg".into(),
            properties: props(),
        });
        round_trip(V::TypedObject {
            class_name: String::new(),
            properties: vec![],
        });
    }

    #[test]
    fn exact_wire_bytes() {
        assert_eq!(enc(&V::Number(1.0)), [0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(enc(&V::Boolean(true)), [0x01, 0x01]);
        assert_eq!(enc(&V::String("ab".into())), [0x02, 0, 2, b'a', b'b']);
        assert_eq!(enc(&V::Object(vec![])), [0x03, 0, 0, 0x09]);
        assert_eq!(enc(&V::EcmaArray(vec![])), [0x08, 0, 0, 0, 0, 0, 0, 0x09]);
        assert_eq!(
            enc(&V::StrictArray(vec![V::Null])),
            [0x0a, 0, 0, 0, 1, 0x05]
        );
        assert_eq!(enc(&V::Reference(2)), [0x07, 0, 2]);
        assert_eq!(enc(&V::LongString("a".into())), [0x0c, 0, 0, 0, 1, b'a']);
        assert_eq!(enc(&V::XmlDocument("a".into())), [0x0f, 0, 0, 0, 1, b'a']);
        assert_eq!(enc(&V::Unsupported), [0x0d]);
        assert_eq!(enc(&V::Undefined), [0x06]);
        assert_eq!(
            enc(&V::Date {
                millis: 0.0,
                time_zone: 1
            }),
            [0x0b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(
            enc(&V::TypedObject {
                class_name: "C".into(),
                properties: vec![]
            }),
            [0x10, 0, 1, b'C', 0, 0, 0x09]
        );
    }

    #[test]
    fn long_string_value_is_written_as_long_string() {
        let s = "y".repeat(65_536);
        let bytes = enc(&V::String(s.clone()));
        assert_eq!(bytes[0], marker::LONG_STRING);
        assert_eq!(&bytes[1..5], &65_536u32.to_be_bytes());
        assert_eq!(decode_all(&bytes), Ok(vec![V::LongString(s)]));
        // Exactly 65535 still fits a String.
        let s = "z".repeat(65_535);
        assert_eq!(enc(&V::String(s.clone()))[0], marker::STRING);
        round_trip(V::String(s));
    }

    #[test]
    fn lossy_utf8() {
        let bytes = [0x02, 0, 3, b'a', 0xff, b'b'];
        assert_eq!(decode_all(&bytes), Ok(vec![V::String("a\u{fffd}b".into())]));
    }

    #[test]
    fn ecma_array_count_is_only_a_hint() {
        // Count says 5, one property, then the end marker.
        let bytes = [0x08, 0, 0, 0, 5, 0, 1, b'k', 0x05, 0, 0, 0x09];
        assert_eq!(
            decode_all(&bytes),
            Ok(vec![V::EcmaArray(vec![("k".into(), V::Null)])])
        );
        // Count says 0 but two properties follow.
        let bytes = [
            0x08, 0, 0, 0, 0, 0, 1, b'a', 0x05, 0, 1, b'b', 0x06, 0, 0, 0x09,
        ];
        assert_eq!(
            decode_all(&bytes),
            Ok(vec![V::EcmaArray(vec![
                ("a".into(), V::Null),
                ("b".into(), V::Undefined)
            ])])
        );
        // End marker missing, but the input ends after `count` properties.
        let bytes = [0x08, 0, 0, 0, 1, 0, 1, b'k', 0x05];
        assert_eq!(
            decode_all(&bytes),
            Ok(vec![V::EcmaArray(vec![("k".into(), V::Null)])])
        );
    }

    #[test]
    fn errors() {
        let dec = |b: &[u8]| decode_all(b);
        assert_eq!(dec(&[0x00, 1, 2]), Err(Amf0Error::Truncated { needed: 6 }));
        assert_eq!(dec(&[0x01]), Err(Amf0Error::Truncated { needed: 1 }));
        assert_eq!(
            dec(&[0x02, 0, 5, b'a']),
            Err(Amf0Error::Truncated { needed: 4 })
        );
        assert_eq!(dec(&[0x02, 0]), Err(Amf0Error::Truncated { needed: 1 }));
        assert_eq!(
            dec(&[0x03, 0, 1, b'k']),
            Err(Amf0Error::Truncated { needed: 1 })
        );
        assert_eq!(dec(&[0x03, 0, 0]), Err(Amf0Error::Truncated { needed: 1 }));
        assert_eq!(dec(&[0x07, 0]), Err(Amf0Error::Truncated { needed: 1 }));
        assert_eq!(dec(&[0x08, 0, 0]), Err(Amf0Error::Truncated { needed: 2 }));
        assert_eq!(
            dec(&[0x0b, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(Amf0Error::Truncated { needed: 1 })
        );
        assert_eq!(
            dec(&[0x0c, 0, 0, 0, 9, b'a']),
            Err(Amf0Error::Truncated { needed: 8 })
        );
        assert_eq!(
            dec(&[0x0f, 0, 0, 0]),
            Err(Amf0Error::Truncated { needed: 1 })
        );
        assert_eq!(
            dec(&[0x10, 0, 2, b'C']),
            Err(Amf0Error::Truncated { needed: 1 })
        );
        assert_eq!(dec(&[0x04]), Err(Amf0Error::ReservedMarker(0x04)));
        assert_eq!(dec(&[0x0e]), Err(Amf0Error::ReservedMarker(0x0e)));
        assert_eq!(dec(&[0x11, 0x01]), Err(Amf0Error::Amf3NotSupported));
        assert_eq!(dec(&[0x12]), Err(Amf0Error::UnknownMarker(0x12)));
        assert_eq!(dec(&[0xff]), Err(Amf0Error::UnknownMarker(0xff)));
        assert_eq!(dec(&[0x09]), Err(Amf0Error::UnexpectedObjectEnd));
        // Object-end as a property value.
        assert_eq!(
            dec(&[0x03, 0, 1, b'k', 0x09]),
            Err(Amf0Error::UnexpectedObjectEnd)
        );
        // A huge strict array count with nothing behind it: an error, no allocation.
        assert_eq!(
            dec(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x05]),
            Err(Amf0Error::Truncated {
                needed: 0xffff_ffff - 1
            })
        );
        // A huge long string length.
        assert!(matches!(
            dec(&[0x0c, 0xff, 0xff, 0xff, 0xff]),
            Err(Amf0Error::Truncated { .. })
        ));
    }

    #[test]
    fn value_budget_bounds_memory_not_legal_input() {
        // A strict array of n nulls: 5 + n bytes of input, n decoded values.
        fn nulls(n: u32) -> Vec<u8> {
            let mut b = vec![0x0a];
            b.extend_from_slice(&n.to_be_bytes());
            b.resize(5 + n as usize, 0x05);
            b
        }
        // Large but legal: the array and its elements fit the budget.
        let legal = nulls(MAX_VALUES as u32 - 1);
        let Ok(values) = decode_all(&legal) else {
            panic!("a {}-element array decodes", MAX_VALUES - 1)
        };
        assert!(matches!(&values[..], [V::StrictArray(items)] if items.len() == MAX_VALUES - 1));
        // One more value is refused, and so are many more, without a count-sized allocation.
        assert_eq!(
            decode_all(&nulls(MAX_VALUES as u32)),
            Err(Amf0Error::TooManyValues(MAX_VALUES))
        );
        assert_eq!(
            decode_all(&nulls(1_000_000)),
            Err(Amf0Error::TooManyValues(MAX_VALUES))
        );
        let mut one = &nulls(1_000_000)[..];
        assert_eq!(decode(&mut one), Err(Amf0Error::TooManyValues(MAX_VALUES)));
        // The budget is shared by all the values of one decode_all call, objects included.
        let mut many = Vec::new();
        for _ in 0..MAX_VALUES / 2 {
            many.extend_from_slice(&[0x03, 0, 1, b'k', 0x05, 0, 0, 0x09]);
        }
        assert!(decode_all(&many).is_ok());
        many.extend_from_slice(&[0x05]);
        assert_eq!(decode_all(&many), Err(Amf0Error::TooManyValues(MAX_VALUES)));
        // Another bound on request.
        assert_eq!(
            decode_all_with_limit(&nulls(3), 3),
            Err(Amf0Error::TooManyValues(3))
        );
        assert_eq!(decode_all_with_limit(&nulls(3), 4).map(|v| v.len()), Ok(1));
    }

    #[test]
    fn decode_string_reads_only_strings() {
        let mut input = &[0x02, 0, 2, b'o', b'k', 0x05][..];
        assert_eq!(decode_string(&mut input), Some("ok".into()));
        assert_eq!(input, &[0x05]);
        let mut input = &[0x0c, 0, 0, 0, 1, b'L'][..];
        assert_eq!(decode_string(&mut input), Some("L".into()));
        for bad in [
            &[0x05][..],
            &[0x02, 0, 3, b'a'],
            &[],
            &[0x0a, 0xff, 0xff, 0xff, 0xff],
        ] {
            let mut input = bad;
            assert_eq!(decode_string(&mut input), None);
            assert_eq!(input, bad);
        }
    }

    #[test]
    fn input_untouched_on_error() {
        let bytes = [0x05, 0x02, 0, 9, b'a'];
        let mut input = &bytes[..];
        assert_eq!(decode(&mut input), Ok(V::Null));
        assert!(decode(&mut input).is_err());
        assert_eq!(input.len(), 4);
    }

    #[test]
    fn depth_limit() {
        fn nested(depth: usize, open: &[u8]) -> Vec<u8> {
            let mut b = Vec::new();
            for _ in 0..depth {
                b.extend_from_slice(open);
            }
            b.push(0x05);
            b
        }
        // Objects: `{ "k": { "k": ... null } }` without the closing markers.
        let obj = [0x03, 0, 1, b'k'];
        assert_eq!(
            decode_all(&nested(MAX_DEPTH + 1, &obj)),
            Err(Amf0Error::TooDeep(MAX_DEPTH))
        );
        // At the limit it is only truncated (the closing markers are missing).
        assert!(matches!(
            decode_all(&nested(MAX_DEPTH, &obj)),
            Err(Amf0Error::Truncated { .. })
        ));
        // A full, closed nesting of MAX_DEPTH objects decodes.
        let mut v = V::Null;
        for _ in 0..MAX_DEPTH {
            v = V::Object(vec![("k".into(), v)]);
        }
        round_trip(v);
        // Strict arrays of one element, ECMA arrays and typed objects count too.
        let arr = [0x0a, 0, 0, 0, 1];
        assert_eq!(
            decode_all(&nested(MAX_DEPTH + 1, &arr)),
            Err(Amf0Error::TooDeep(MAX_DEPTH))
        );
        assert!(decode_all(&nested(MAX_DEPTH, &arr)).is_ok());
        let ecma = [0x08, 0, 0, 0, 1, 0, 1, b'k'];
        assert_eq!(
            decode_all(&nested(MAX_DEPTH + 1, &ecma)),
            Err(Amf0Error::TooDeep(MAX_DEPTH))
        );
        let typed = [0x10, 0, 1, b'C', 0, 1, b'k'];
        assert_eq!(
            decode_all(&nested(MAX_DEPTH + 1, &typed)),
            Err(Amf0Error::TooDeep(MAX_DEPTH))
        );
        // Deep garbage does not overflow the stack.
        assert_eq!(
            decode_all(&obj.repeat(100_000)),
            Err(Amf0Error::TooDeep(MAX_DEPTH))
        );
    }

    // Hand-written wire helpers for the connect test (independent of `encode`).
    fn w_str(b: &mut Vec<u8>, s: &str) {
        b.push(0x02);
        b.extend_from_slice(&(s.len() as u16).to_be_bytes());
        b.extend_from_slice(s.as_bytes());
    }
    fn w_key(b: &mut Vec<u8>, s: &str) {
        b.extend_from_slice(&(s.len() as u16).to_be_bytes());
        b.extend_from_slice(s.as_bytes());
    }
    fn w_num(b: &mut Vec<u8>, n: f64) {
        b.push(0x00);
        b.extend_from_slice(&n.to_be_bytes());
    }

    /// The body of an ffmpeg 7 (`-rtmp_enhanced_codecs hvc1,av01`, libavformat/rtmpproto.c)
    /// style `connect` command, written out byte by byte.
    #[test]
    fn ffmpeg_enhanced_connect_command() {
        let mut b = Vec::new();
        w_str(&mut b, "connect");
        w_num(&mut b, 1.0);
        b.push(0x03);
        w_key(&mut b, "app");
        w_str(&mut b, "kLive/?t=abc");
        w_key(&mut b, "type");
        w_str(&mut b, "nonprivate");
        w_key(&mut b, "flashVer");
        w_str(&mut b, "FMLE/3.0 (compatible; Lavf61.7.100)");
        w_key(&mut b, "tcUrl");
        w_str(&mut b, "rtmp://h:1935/kLive/?t=abc");
        w_key(&mut b, "fourCcList");
        b.push(0x0a);
        b.extend_from_slice(&2u32.to_be_bytes());
        w_str(&mut b, "hvc1");
        w_str(&mut b, "av01");
        w_key(&mut b, "capsEx");
        w_num(&mut b, 1.0);
        w_key(&mut b, "videoFourCcInfoMap");
        b.push(0x03);
        w_key(&mut b, "hvc1");
        w_num(&mut b, 1.0);
        b.extend_from_slice(&[0, 0, 0x09]);
        w_key(&mut b, "startTime");
        b.push(0x0b);
        b.extend_from_slice(&0.0f64.to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&[0, 0, 0x09]);

        let vals = decode_all(&b).expect("decodes");
        assert_eq!(vals.len(), 3);
        assert_eq!(vals[0].as_str(), Some("connect"));
        assert_eq!(vals[1].as_number(), Some(1.0));
        let obj = &vals[2];
        assert_eq!(
            obj.get("app").and_then(|v| v.as_str()),
            Some("kLive/?t=abc")
        );
        assert_eq!(
            obj.get("tcUrl").and_then(|v| v.as_str()),
            Some("rtmp://h:1935/kLive/?t=abc")
        );
        assert_eq!(
            obj.get("fourCcList"),
            Some(&V::StrictArray(vec![
                V::String("hvc1".into()),
                V::String("av01".into())
            ]))
        );
        assert_eq!(obj.get("capsEx").and_then(|v| v.as_number()), Some(1.0));
        assert_eq!(
            obj.get("videoFourCcInfoMap").and_then(|m| m.get("hvc1")),
            Some(&V::Number(1.0))
        );
        assert_eq!(
            obj.get("startTime"),
            Some(&V::Date {
                millis: 0.0,
                time_zone: 0
            })
        );
        // Re-encoding gives the same bytes.
        let mut out = BytesMut::new();
        encode_all(&vals, &mut out);
        assert_eq!(&out[..], &b[..]);
    }
}
