//! Reads an OTLP `ExportTraceServiceRequest` (protobuf) into the shape of
//! OTLP/JSON, as a collector would decode it, with `opentelemetry-proto`'s
//! messages. Decoding and encoding again must give the same bytes: nothing
//! herald sends goes unseen (an unknown field would be dropped) and the
//! encoding is protobuf's canonical one.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{Map, Value, json};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(pairs: &[KeyValue]) -> Value {
    pairs
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(text)) => json!({"stringValue": text}),
                other => panic!("attribute {} holds {other:?}, not a string", kv.key),
            };
            json!({"key": kv.key, "value": value})
        })
        .collect()
}

/// A field, left out when it holds its default (as OTLP/JSON leaves it).
fn put(map: &mut Map<String, Value>, key: &str, value: Value, default: bool) {
    if !default {
        map.insert(key.to_owned(), value);
    }
}

fn span(span: &Span) -> Value {
    let mut out = Map::new();
    put(
        &mut out,
        "traceId",
        json!(hex(&span.trace_id)),
        span.trace_id.is_empty(),
    );
    put(
        &mut out,
        "spanId",
        json!(hex(&span.span_id)),
        span.span_id.is_empty(),
    );
    put(
        &mut out,
        "traceState",
        json!(span.trace_state),
        span.trace_state.is_empty(),
    );
    put(
        &mut out,
        "parentSpanId",
        json!(hex(&span.parent_span_id)),
        span.parent_span_id.is_empty(),
    );
    put(&mut out, "name", json!(span.name), span.name.is_empty());
    put(&mut out, "kind", json!(span.kind), span.kind == 0);
    put(
        &mut out,
        "startTimeUnixNano",
        json!(span.start_time_unix_nano.to_string()),
        span.start_time_unix_nano == 0,
    );
    put(
        &mut out,
        "endTimeUnixNano",
        json!(span.end_time_unix_nano.to_string()),
        span.end_time_unix_nano == 0,
    );
    put(
        &mut out,
        "attributes",
        attributes(&span.attributes),
        span.attributes.is_empty(),
    );
    assert!(
        span.events.is_empty() && span.links.is_empty(),
        "span events and links: {span:?}"
    );
    if let Some(status) = &span.status {
        let mut s = Map::new();
        put(
            &mut s,
            "message",
            json!(status.message),
            status.message.is_empty(),
        );
        put(&mut s, "code", json!(status.code), status.code == 0);
        out.insert("status".into(), Value::Object(s));
    }
    put(&mut out, "flags", json!(span.flags), span.flags == 0);
    Value::Object(out)
}

/// The request as OTLP/JSON (times as decimal strings, IDs in hex).
pub fn decode_traces(data: &[u8]) -> Value {
    let request = ExportTraceServiceRequest::decode(data).expect("an ExportTraceServiceRequest");
    assert_eq!(
        request.encode_to_vec(),
        data,
        "the request holds fields opentelemetry-proto does not know, or is not canonical"
    );
    let resource_spans: Vec<Value> = request
        .resource_spans
        .iter()
        .map(|rs| {
            let mut out = Map::new();
            if let Some(resource) = &rs.resource {
                out.insert(
                    "resource".into(),
                    json!({"attributes": attributes(&resource.attributes)}),
                );
            }
            let scope_spans: Vec<Value> = rs
                .scope_spans
                .iter()
                .map(|ss| {
                    let mut out = Map::new();
                    if let Some(scope) = &ss.scope {
                        let mut s = Map::new();
                        put(&mut s, "name", json!(scope.name), scope.name.is_empty());
                        put(
                            &mut s,
                            "version",
                            json!(scope.version),
                            scope.version.is_empty(),
                        );
                        out.insert("scope".into(), Value::Object(s));
                    }
                    out.insert("spans".into(), ss.spans.iter().map(span).collect());
                    put(
                        &mut out,
                        "schemaUrl",
                        json!(ss.schema_url),
                        ss.schema_url.is_empty(),
                    );
                    Value::Object(out)
                })
                .collect();
            out.insert("scopeSpans".into(), Value::Array(scope_spans));
            put(
                &mut out,
                "schemaUrl",
                json!(rs.schema_url),
                rs.schema_url.is_empty(),
            );
            Value::Object(out)
        })
        .collect();
    json!({"resourceSpans": resource_spans})
}
