//! Measures how deeply a YAML text nests before anything is built from it. The YAML scanner
//! spends time proportional to the flow nesting depth on every token, so 400 KB of `[[[[...`
//! takes minutes to parse; counting brackets by hand would be fooled by quotes, comments and
//! block scalars. So this asks the very scanner the parser uses (libyaml's, as ported by
//! `unsafe-libyaml-norway`, which serde_norway is built on) for tokens one at a time, and stops at
//! the first token that nests deeper than the limit: the work stays linear in the text.

use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use unsafe_libyaml_norway as unsafe_yaml;

/// The first line (1-based) on which `text` nests more than `max` collections deep, counting
/// flow (`[`, `{`) and block collections alike; `None` when it never does or does not scan (the
/// parser then reports the syntax error).
pub(super) fn too_deep(text: &str, max: usize) -> Option<usize> {
    let mut scanner = Scanner::new(text)?;
    let mut depth = 0usize;
    loop {
        let (kind, line) = scanner.next()?;
        match kind {
            unsafe_yaml::YAML_FLOW_SEQUENCE_START_TOKEN
            | unsafe_yaml::YAML_FLOW_MAPPING_START_TOKEN
            | unsafe_yaml::YAML_BLOCK_SEQUENCE_START_TOKEN
            | unsafe_yaml::YAML_BLOCK_MAPPING_START_TOKEN => {
                depth += 1;
                if depth > max {
                    return Some(line + 1);
                }
            }
            unsafe_yaml::YAML_FLOW_SEQUENCE_END_TOKEN
            | unsafe_yaml::YAML_FLOW_MAPPING_END_TOKEN
            | unsafe_yaml::YAML_BLOCK_END_TOKEN => {
                depth = depth.saturating_sub(1);
            }
            unsafe_yaml::YAML_STREAM_END_TOKEN => return None,
            _ => {}
        }
    }
}

/// A libyaml scanner over a borrowed text. The parser struct is a raw heap allocation that never
/// moves (libyaml keeps a pointer to it as its read handler's data) and is only ever reached
/// through this one pointer; it is deleted and freed on drop.
struct Scanner<'text> {
    parser: NonNull<unsafe_yaml::yaml_parser_t>,
    _text: PhantomData<&'text str>,
}

impl<'text> Scanner<'text> {
    fn new(text: &'text str) -> Option<Self> {
        let raw = Box::into_raw(Box::<unsafe_yaml::yaml_parser_t>::new_uninit())
            .cast::<unsafe_yaml::yaml_parser_t>();
        // SAFETY: `raw` is a fresh allocation the size of a parser, which `initialize` fills (or
        // leaves unused on failure, when it is freed as the uninitialized box it is); the input
        // pointer stays valid while the scanner lives, as the scanner borrows `text`.
        unsafe {
            if unsafe_yaml::yaml_parser_initialize(raw).fail {
                drop(Box::from_raw(raw.cast::<MaybeUninit<unsafe_yaml::yaml_parser_t>>()));
                return None;
            }
            unsafe_yaml::yaml_parser_set_encoding(raw, unsafe_yaml::YAML_UTF8_ENCODING);
            unsafe_yaml::yaml_parser_set_input_string(raw, text.as_ptr(), text.len() as u64);
            Some(Self { parser: NonNull::new_unchecked(raw), _text: PhantomData })
        }
    }

    /// The next token's type and (0-based) line; `None` on a scan error.
    fn next(&mut self) -> Option<(unsafe_yaml::yaml_token_type_t, usize)> {
        let mut token = MaybeUninit::<unsafe_yaml::yaml_token_t>::uninit();
        // SAFETY: the parser was initialized in `new`; `scan` zeroes the token and, on success,
        // fills it; a filled token owns allocations that `yaml_token_delete` frees.
        unsafe {
            if unsafe_yaml::yaml_parser_scan(self.parser.as_ptr(), token.as_mut_ptr()).fail {
                return None;
            }
            let token = token.as_mut_ptr();
            let scanned = ((*token).type_, (*token).start_mark.line as usize);
            unsafe_yaml::yaml_token_delete(token);
            Some(scanned)
        }
    }
}

impl Drop for Scanner<'_> {
    fn drop(&mut self) {
        let raw = self.parser.as_ptr();
        // SAFETY: the parser was initialized in `new`; it is deleted (its buffers freed) and its
        // allocation freed once, here.
        unsafe {
            unsafe_yaml::yaml_parser_delete(raw);
            drop(Box::from_raw(raw.cast::<MaybeUninit<unsafe_yaml::yaml_parser_t>>()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn counts_flow_and_block_nesting_but_not_brackets_in_scalars() {
        assert_eq!(too_deep("a: [[1]]", 3), None);
        assert_eq!(too_deep("a: [[1]]", 2), Some(1));
        assert_eq!(too_deep("a:\n  b:\n    c: 1\n", 3), None);
        assert_eq!(too_deep("a:\n  b:\n    c: 1\n", 2), Some(3));
        let quoted = "a: \"[[[[[[\"\nb: '{{{{{{'\nc: |\n  [[[[[[\n# [[[[[[\nd: x [[[[[[\n";
        assert_eq!(too_deep(quoted, 1), None);
        let hidden = "a: \"]]]]\"\nb: [[[[\"]]]]\", [[[['x]]]]']]]]]]]]]]\n";
        // The mapping and eight flow sequences: the quoted closers close nothing.
        assert_eq!(too_deep(hidden, 9), None);
        assert_eq!(too_deep(hidden, 8), Some(2), "quoted closers do not hide real openers");
    }

    #[test]
    fn deep_flow_nesting_is_stopped_at_the_limit_in_linear_time() {
        let text = format!("a: {}{}", "[".repeat(200_000), "]".repeat(200_000));
        let started = Instant::now();
        assert_eq!(too_deep(&text, 64), Some(1));
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    }

    #[test]
    fn a_scan_error_is_left_to_the_parser() {
        assert_eq!(too_deep("a: \"unterminated", 4), None);
        assert_eq!(too_deep("", 4), None);
    }
}
