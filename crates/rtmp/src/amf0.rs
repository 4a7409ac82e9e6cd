//! AMF0 (Action Message Format 0): every type of the spec, decoded and encoded.
//!
//! rml_rtmp's AMF0 decoder rejects Date, LongString, TypedObject and Reference, and a real
//! encoder's `connect` object may hold any of them, so longhaul owns this codec.

use bytes::BytesMut;

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
}

/// Decodes one value from the front of `input`, advancing it.
pub fn decode(input: &mut &[u8]) -> Result<Amf0Value, Amf0Error> {
    let _ = input;
    unimplemented!("filled in by the AMF0 implementation")
}

/// Decodes every value in `input`.
pub fn decode_all(input: &[u8]) -> Result<Vec<Amf0Value>, Amf0Error> {
    let mut rest = input;
    let mut values = Vec::new();
    while !rest.is_empty() {
        values.push(decode(&mut rest)?);
    }
    Ok(values)
}

/// Appends the encoding of `value` to `out`.
pub fn encode(value: &Amf0Value, out: &mut BytesMut) {
    let _ = (value, out);
    unimplemented!("filled in by the AMF0 implementation")
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
