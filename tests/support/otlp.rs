//! Reads an OTLP `ExportTraceServiceRequest` (protobuf) into the shape of
//! OTLP/JSON, as a collector would decode it: a protobuf wire reader of its
//! own (independent of herald's encoder) and the field numbers of
//! `opentelemetry/proto/{collector/trace,trace,resource,common}/v1`.
//! Unknown fields fail the decoding, so nothing herald sends goes unseen.

use serde_json::{Map, Value, json};

/// One field's value on the wire.
#[derive(Debug)]
enum Wire {
    Varint(u64),
    Fixed64(u64),
    Bytes(Vec<u8>),
    Fixed32(u32),
}

fn varint(bytes: &[u8], at: &mut usize) -> u64 {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = bytes[*at];
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
    }
    panic!("varint too long");
}

/// Every field of a message, in order.
fn fields(bytes: &[u8]) -> Vec<(u64, Wire)> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < bytes.len() {
        let key = varint(bytes, &mut at);
        let value = match key & 7 {
            0 => Wire::Varint(varint(bytes, &mut at)),
            1 => {
                let v = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
                at += 8;
                Wire::Fixed64(v)
            }
            2 => {
                let len = varint(bytes, &mut at) as usize;
                let v = bytes[at..at + len].to_vec();
                at += len;
                Wire::Bytes(v)
            }
            5 => {
                let v = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
                at += 4;
                Wire::Fixed32(v)
            }
            other => panic!("wire type {other}"),
        };
        out.push((key >> 3, value));
    }
    out
}

fn bytes(wire: &Wire) -> &[u8] {
    match wire {
        Wire::Bytes(b) => b,
        other => panic!("expected bytes, got {other:?}"),
    }
}

fn text(wire: &Wire) -> Value {
    Value::String(String::from_utf8(bytes(wire).to_vec()).expect("utf-8"))
}

fn hex(wire: &Wire) -> Value {
    Value::String(bytes(wire).iter().map(|b| format!("{b:02x}")).collect())
}

/// Decodes a message with `decode(field, wire) -> (json name, value,
/// repeated)`.
fn message(data: &[u8], decode: impl Fn(u64, &Wire) -> (&'static str, Value, bool)) -> Value {
    let mut out = Map::new();
    for (field, wire) in fields(data) {
        let (name, value, repeated) = decode(field, &wire);
        if repeated {
            out.entry(name)
                .or_insert_with(|| Value::Array(Vec::new()))
                .as_array_mut()
                .expect("array")
                .push(value);
        } else {
            assert!(out.insert(name.into(), value).is_none(), "{name} twice");
        }
    }
    Value::Object(out)
}

fn any_value(data: &[u8]) -> Value {
    message(data, |field, wire| match field {
        1 => ("stringValue", text(wire), false),
        other => panic!("AnyValue field {other}"),
    })
}

fn key_value(data: &[u8]) -> Value {
    message(data, |field, wire| match field {
        1 => ("key", text(wire), false),
        2 => ("value", any_value(bytes(wire)), false),
        other => panic!("KeyValue field {other}"),
    })
}

fn varint_of(wire: &Wire) -> Value {
    match wire {
        Wire::Varint(v) => json!(v),
        other => panic!("expected a varint, got {other:?}"),
    }
}

fn span(data: &[u8]) -> Value {
    message(data, |field, wire| match field {
        1 => ("traceId", hex(wire), false),
        2 => ("spanId", hex(wire), false),
        3 => ("traceState", text(wire), false),
        4 => ("parentSpanId", hex(wire), false),
        5 => ("name", text(wire), false),
        6 => ("kind", varint_of(wire), false),
        7 | 8 => match wire {
            Wire::Fixed64(v) => (
                if field == 7 {
                    "startTimeUnixNano"
                } else {
                    "endTimeUnixNano"
                },
                json!(v.to_string()),
                false,
            ),
            other => panic!("time as {other:?}"),
        },
        9 => ("attributes", key_value(bytes(wire)), true),
        15 => (
            "status",
            message(bytes(wire), |field, wire| match field {
                2 => ("message", text(wire), false),
                3 => ("code", varint_of(wire), false),
                other => panic!("Status field {other}"),
            }),
            false,
        ),
        16 => match wire {
            Wire::Fixed32(v) => ("flags", json!(v), false),
            other => panic!("flags as {other:?}"),
        },
        other => panic!("Span field {other}"),
    })
}

/// The request as OTLP/JSON (times as decimal strings, IDs in hex).
pub fn decode_traces(data: &[u8]) -> Value {
    message(data, |field, wire| match field {
        1 => (
            "resourceSpans",
            message(bytes(wire), |field, wire| match field {
                1 => (
                    "resource",
                    message(bytes(wire), |field, wire| match field {
                        1 => ("attributes", key_value(bytes(wire)), true),
                        other => panic!("Resource field {other}"),
                    }),
                    false,
                ),
                2 => (
                    "scopeSpans",
                    message(bytes(wire), |field, wire| match field {
                        1 => (
                            "scope",
                            message(bytes(wire), |field, wire| match field {
                                1 => ("name", text(wire), false),
                                2 => ("version", text(wire), false),
                                other => panic!("InstrumentationScope field {other}"),
                            }),
                            false,
                        ),
                        2 => ("spans", span(bytes(wire)), true),
                        3 => ("schemaUrl", text(wire), false),
                        other => panic!("ScopeSpans field {other}"),
                    }),
                    true,
                ),
                3 => ("schemaUrl", text(wire), false),
                other => panic!("ResourceSpans field {other}"),
            }),
            true,
        ),
        other => panic!("ExportTraceServiceRequest field {other}"),
    })
}
