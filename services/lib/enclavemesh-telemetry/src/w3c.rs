//! The W3C `traceparent` header (Trace Context, level 1), read and written by hand.
//!
//! Every served call reads one and every outgoing call writes one, with or without an
//! exporter. OpenTelemetry's `TraceContextPropagator` does the same through the global
//! propagator's lock, a `HashMap` of fields and several `String`s per call (~1.5 µs here);
//! this is a fixed 55-byte format, so a parser over the bytes and a formatter into a
//! stack buffer do it in tens of nanoseconds. `tracestate`, which our own programs never
//! send, is passed through by OpenTelemetry's parser.

use std::str::FromStr as _;

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

/// Header names.
pub(crate) const TRACEPARENT: &str = "traceparent";
pub(crate) const TRACESTATE: &str = "tracestate";

/// Length of a version-00 `traceparent`: `00-` + 32 + `-` + 16 + `-` + 2.
const LEN: usize = 55;

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        // The spec allows lowercase only.
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn decode<const N: usize>(hex: &[u8]) -> Option<[u8; N]> {
    if hex.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *o = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
    }
    Some(out)
}

/// The remote span context in a `traceparent` value (and `tracestate`, if any); `None`
/// for anything malformed: a bad header never fails a request, it starts a new trace.
pub(crate) fn parse(traceparent: &[u8], tracestate: Option<&str>) -> Option<SpanContext> {
    if traceparent.len() < LEN || traceparent[2] != b'-' || traceparent[35] != b'-' || traceparent[52] != b'-' {
        return None;
    }
    let [version] = decode::<1>(&traceparent[..2])?;
    // Version ff is forbidden; 00 has exactly 55 bytes; a later version may append
    // fields after a dash, which a version-00 reader ignores.
    match version {
        0xff => return None,
        0 if traceparent.len() != LEN => return None,
        _ if traceparent.len() > LEN && traceparent[LEN] != b'-' => return None,
        _ => {}
    }
    let trace_id = TraceId::from_bytes(decode::<16>(&traceparent[3..35])?);
    let span_id = SpanId::from_bytes(decode::<8>(&traceparent[36..52])?);
    let [flags] = decode::<1>(&traceparent[53..55])?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let state = tracestate.and_then(|s| TraceState::from_str(s).ok()).unwrap_or_default();
    Some(SpanContext::new(trace_id, span_id, TraceFlags::new(flags) & TraceFlags::SAMPLED, true, state))
}

/// The `traceparent` value for `sc` (version 00), or `None` if `sc` is not valid.
pub(crate) fn format(sc: &SpanContext) -> Option<[u8; LEN]> {
    if !sc.is_valid() {
        return None;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'-'; LEN];
    let mut put = |at: usize, bytes: &[u8]| {
        for (i, b) in bytes.iter().enumerate() {
            out[at + 2 * i] = HEX[usize::from(b >> 4)];
            out[at + 2 * i + 1] = HEX[usize::from(b & 0x0f)];
        }
    };
    put(0, &[0]);
    put(3, &sc.trace_id().to_bytes());
    put(36, &sc.span_id().to_bytes());
    put(53, &[(sc.trace_flags() & TraceFlags::SAMPLED).to_u8()]);
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test: a panic is a failed test
    use super::*;
    use opentelemetry::propagation::TextMapPropagator as _;
    use opentelemetry::trace::TraceContextExt as _;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use std::collections::HashMap;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// What OpenTelemetry's own propagator makes of the same header.
    fn reference(tp: &str) -> SpanContext {
        let carrier = HashMap::from([(TRACEPARENT.to_string(), tp.to_string())]);
        TraceContextPropagator::new().extract(&carrier).span().span_context().clone()
    }

    #[test]
    fn parses_and_formats_like_opentelemetrys_propagator() {
        let sc = parse(GOOD.as_bytes(), None).unwrap();
        assert_eq!(sc, reference(GOOD));
        assert!(sc.is_remote() && sc.is_sampled());
        assert_eq!(&format(&sc).unwrap()[..], GOOD.as_bytes());
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert_eq!(parse(unsampled.as_bytes(), None).unwrap(), reference(unsampled));
        // Only the sampled bit is kept, as the propagator does.
        let other_bits = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03";
        assert_eq!(parse(other_bits.as_bytes(), None).unwrap().trace_flags(), TraceFlags::SAMPLED);
        // A later version's extra fields are ignored.
        let v1 = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
        assert_eq!(parse(v1.as_bytes(), None).unwrap().trace_id(), sc.trace_id());
    }

    #[test]
    fn malformed_headers_start_a_new_trace() {
        for bad in [
            "",
            "zz-not-a-traceparent",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-trailing",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        ] {
            assert!(parse(bad.as_bytes(), None).is_none(), "{bad}");
            assert!(!reference(bad).is_valid(), "the reference disagrees on {bad}");
        }
        assert!(format(&SpanContext::empty_context()).is_none());
    }

    #[test]
    fn tracestate_is_kept() {
        let sc = parse(GOOD.as_bytes(), Some("vendor=abc,other=1")).unwrap();
        assert_eq!(sc.trace_state().get("vendor"), Some("abc"));
        // A malformed tracestate drops the state, not the parent.
        let sc = parse(GOOD.as_bytes(), Some("not a list entry")).unwrap();
        assert_eq!(sc.trace_state().header(), "");
    }
}
