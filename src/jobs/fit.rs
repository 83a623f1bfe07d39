//! Fits a job's result into what the state backend stores for one job
//! ([`crate::state::Jobs::max_job_bytes`]: on NATS the server's `max_payload`). A result past it
//! is never dropped, nor left to fail its record's write until the job is run again: the
//! response envelope keeps its status and headers, its body is cut to fit, and the job records
//! an error saying how large the response was and where it was cut.

use crate::state::Outcome;
use serde_json::Value;

/// What fits of `outcome` in `max` bytes of serialized result: a success whose result is larger
/// becomes [`Outcome::Truncated`]; anything else is returned as it is.
pub fn fit(outcome: Outcome, max: usize) -> Outcome {
    let Outcome::Succeeded { result } = outcome else { return outcome };
    let size = serialized_len(&result);
    if size <= max {
        return Outcome::Succeeded { result };
    }
    let (result, kept) = cut(result, size, max);
    let error = format!(
        "the function's response is {size} bytes, more than the {max} bytes the state backend stores \
         for a job's result: it is kept with its body cut to its first {kept} bytes"
    );
    Outcome::Truncated { result, error }
}

fn serialized_len(value: &Value) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |bytes| bytes.len())
}

/// `result` (of `size` serialized bytes) with its body cut from the end until it fits in `max`,
/// and the length of the body kept. A text body is cut character by character, counting each
/// as JSON writes it (escapes included); a `body_b64` at a multiple of four, so what is kept
/// still decodes. When even an empty body does not fit (headers past the bound), only the
/// status is kept.
fn cut(mut result: Value, size: usize, max: usize) -> (Value, usize) {
    let excess = size - max;
    let status = result.get("status").cloned().unwrap_or(Value::Null);
    if let Some(envelope) = result.as_object_mut() {
        if let Some(Value::String(body)) = envelope.get_mut("body") {
            let mut removed = 0;
            let mut keep = body.len();
            for (at, c) in body.char_indices().rev() {
                if removed >= excess {
                    break;
                }
                removed += json_len(c);
                keep = at;
            }
            body.truncate(keep);
        } else if let Some(Value::String(body)) = envelope.get_mut("body_b64") {
            body.truncate(body.len().saturating_sub(excess) / 4 * 4);
        }
        let kept = ["body", "body_b64"].iter().find_map(|f| envelope.get(*f)?.as_str().map(str::len));
        if serialized_len(&result) <= max {
            return (result, kept.unwrap_or(0));
        }
    }
    (serde_json::json!({ "status": status }), 0)
}

/// Bytes `c` takes in a JSON string, as serde_json writes it.
fn json_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if c < ' ' => 6,
        c => c.len_utf8(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn truncated(outcome: Outcome) -> (Value, String) {
        match outcome {
            Outcome::Truncated { result, error } => (result, error),
            other => panic!("not truncated: {other:?}"),
        }
    }

    #[test]
    fn a_result_at_the_bound_is_kept_whole_and_one_byte_more_is_cut_to_fit() {
        let result = json!({ "status": 200, "headers": { "a": ["b"] }, "body": "x".repeat(100) });
        let size = serialized_len(&result);
        match fit(Outcome::Succeeded { result: result.clone() }, size) {
            Outcome::Succeeded { result: kept } => assert_eq!(kept, result),
            other => panic!("cut at its bound: {other:?}"),
        }
        let (cut, error) = truncated(fit(Outcome::Succeeded { result }, size - 1));
        assert_eq!(serialized_len(&cut), size - 1);
        assert_eq!((&cut["status"], &cut["headers"]), (&json!(200), &json!({ "a": ["b"] })));
        assert_eq!(cut["body"], "x".repeat(99));
        assert_eq!(
            error,
            format!(
                "the function's response is {size} bytes, more than the {} bytes the state backend stores \
                 for a job's result: it is kept with its body cut to its first 99 bytes",
                size - 1
            )
        );
    }

    #[test]
    fn escaped_multibyte_and_base64_bodies_are_cut_where_they_stay_valid() {
        let escaped = json!({ "status": 200, "body": "\"é\n".repeat(50) });
        let (cut, _) = truncated(fit(Outcome::Succeeded { result: escaped }, 60));
        assert!(serialized_len(&cut) <= 60, "{cut}");
        assert!(cut["body"].as_str().unwrap().starts_with("\"é\n"));

        let binary = json!({ "status": 200, "body_b64": "QUJD".repeat(40) });
        let (cut, _) = truncated(fit(Outcome::Succeeded { result: binary }, 80));
        let kept = cut["body_b64"].as_str().unwrap();
        assert!(serialized_len(&cut) <= 80 && kept.len() % 4 == 0 && !kept.is_empty(), "{cut}");
    }

    #[test]
    fn headers_past_the_bound_leave_the_status_and_failures_are_untouched() {
        let result = json!({ "status": 201, "headers": { "h": ["v".repeat(500)] }, "body": "" });
        let (cut, error) = truncated(fit(Outcome::Succeeded { result }, 100));
        assert_eq!(cut, json!({ "status": 201 }));
        assert!(error.ends_with("cut to its first 0 bytes"), "{error}");
        let failed = fit(Outcome::Failed { error: "e".repeat(500) }, 10);
        assert!(matches!(failed, Outcome::Failed { error } if error.len() == 500));
    }
}
