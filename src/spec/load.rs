//! Reads every YAML document under a spec directory into typed documents. Each document is
//! parsed on its own, so one bad document fails only itself; every failure names the file, the
//! line and the field. Loading is linear in the size of the specs and bounded: files are read
//! through [`SpecRoot`] (regular files inside the root, at most `limits.bytesPerSpecFile`
//! bytes), a file holds at most `limits.documentsPerSpecFile` documents (the node's [`Bounds`]),
//! and a document nests at most [`MAX_NESTING`] deep, checked before the YAML parser builds
//! anything from it.

use super::bounds::Bounds;
use super::files::SpecRoot;
use super::types::{API_VERSION, FunctionDoc, Header, TenantDoc};
use super::{Location, SpecError, depth};
use std::path::{Path, PathBuf};

/// Deepest nesting of collections in one document. A Function with an MCP input schema is a
/// dozen levels deep; the YAML deserializer stops at 128.
pub const MAX_NESTING: usize = 64;

/// A parsed document and where it came from.
#[derive(Debug)]
pub enum Document {
    Tenant(TenantDoc, Location),
    Function(Box<FunctionDoc>, Location),
}

/// All `.yaml`/`.yml` files below `root`, sorted so that loading is deterministic.
/// Hidden directories (`.git`) and `target` directories are skipped, and so are symlinks to
/// directories (a loop, or a way out of the root).
pub fn spec_files(root: &Path) -> Result<Vec<PathBuf>, SpecError> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            SpecError::new(Location::file(relative(root, &dir)), format!("cannot read directory: {e}"))
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                if !name.starts_with('.') && name != "target" {
                    dirs.push(path);
                }
            } else if name.ends_with(".yaml") || name.ends_with(".yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Parses every document of every spec file under `root`, within the node's `bounds`; returns the
/// good ones and an error per bad one.
pub fn load_documents(root: &Path, bounds: &Bounds) -> (Vec<Document>, Vec<SpecError>) {
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    let files = match spec_files(root) {
        Ok(files) => files,
        Err(e) => return (docs, vec![e]),
    };
    let spec_root = match SpecRoot::open(root) {
        Ok(spec_root) => spec_root,
        Err(e) => {
            return (docs, vec![SpecError::new(Location::file(PathBuf::new()), format!("cannot read: {e}"))]);
        }
    };
    for path in files {
        let file = relative(root, &path);
        match read_spec_file(&spec_root, &path, bounds.bytes_per_spec_file) {
            Ok(text) => parse_file(&file, &text, bounds, &mut docs, &mut errors),
            Err(message) => errors.push(SpecError::new(Location::file(file), message)),
        }
    }
    (docs, errors)
}

fn read_spec_file(root: &SpecRoot, path: &Path, max_bytes: u64) -> Result<String, String> {
    let bytes = root.read(path, max_bytes).map_err(|e| match e.kind() {
        std::io::ErrorKind::FileTooLarge => format!(
            "the file is larger than the {max_bytes} bytes a spec file may hold (limits.bytesPerSpecFile); \
             split it into several files"
        ),
        _ => format!("cannot read the spec file: {e}"),
    })?;
    String::from_utf8(bytes)
        .map_err(|e| format!("the spec file is not UTF-8 (at byte {})", e.utf8_error().valid_up_to()))
}

/// Parses the documents of one file's text, at most `bounds.documents_per_spec_file` of them.
pub fn parse_file(
    file: &Path,
    text: &str,
    bounds: &Bounds,
    docs: &mut Vec<Document>,
    errors: &mut Vec<SpecError>,
) {
    let max = bounds.documents_per_spec_file;
    let Some(pieces) = split_documents(text, max as usize) else {
        let message = format!(
            "the file holds more than the {max} documents a spec file may hold \
             (limits.documentsPerSpecFile); split it into several files"
        );
        return errors.push(SpecError::new(Location::file(file.to_path_buf()), message));
    };
    for piece in pieces {
        let at = Location::at(file.to_path_buf(), piece.start);
        if let Some(line) = depth::too_deep(piece.text, MAX_NESTING) {
            let message = format!("the document nests more than {MAX_NESTING} levels deep");
            errors
                .push(SpecError::new(Location::at(file.to_path_buf(), piece.first_line + line - 1), message));
            continue;
        }
        match parse_document(&piece, &at) {
            Ok(Some(doc)) => docs.push(doc),
            Ok(None) => {}
            Err(problems) => errors.extend(problems),
        }
    }
}

/// One document's text, a slice of its file.
struct Piece<'a> {
    text: &'a str,
    /// The file line of the text's first line.
    first_line: usize,
    /// The file line the document's content starts on (after blank and comment lines).
    start: usize,
}

/// Splits a multi-document YAML text at `---` lines (and `...`), keeping only pieces with content;
/// `None` when there are more than `max` of them. Linear: pieces are slices of the text (each
/// starting with its separator line), and a parser's line in a piece is mapped back to the file
/// by the piece's first line.
fn split_documents(text: &str, max: usize) -> Option<Vec<Piece<'_>>> {
    let mut pieces = Vec::new();
    let (mut begin, mut first_line, mut start) = (0, 1, None);
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let number = index + 1;
        let bare = line.trim_end_matches(['\n', '\r']);
        let separator = bare == "---" || bare.starts_with("--- ") || bare == "...";
        if separator {
            if let Some(start) = start.take() {
                if pieces.len() == max {
                    return None;
                }
                pieces.push(Piece { text: &text[begin..offset], first_line, start });
            }
            // The separator stays in the next piece: a marker the parser reads as the document's
            // start, so no position in the document is the piece's very first one.
            begin = offset;
            first_line = number;
        } else if start.is_none() && !bare.trim().is_empty() && !bare.trim_start().starts_with('#') {
            start = Some(number);
        }
        offset += line.len();
    }
    if let Some(start) = start {
        if pieces.len() == max {
            return None;
        }
        pieces.push(Piece { text: &text[begin..], first_line, start });
    }
    Some(pieces)
}

fn parse_document(piece: &Piece<'_>, at: &Location) -> Result<Option<Document>, Vec<SpecError>> {
    let header: Header = serde_norway::from_str(piece.text).map_err(|e| match e.to_string() {
        m if m.starts_with("invalid type") => vec![SpecError::new(
            at.clone(),
            "a document must be a mapping with apiVersion, kind, metadata and spec".into(),
        )],
        _ => vec![yaml_error(piece, at, e)],
    })?;
    match header.api_version.as_deref() {
        Some(API_VERSION) => {}
        Some(other) => {
            return Err(vec![SpecError::field(
                at.clone(),
                "apiVersion",
                format!("unsupported apiVersion {other:?}, expected {API_VERSION:?}"),
            )]);
        }
        None => {
            return Err(vec![SpecError::field(
                at.clone(),
                "apiVersion",
                format!("missing field, expected {API_VERSION:?}"),
            )]);
        }
    }
    let about = |errors: Vec<SpecError>| match named_resource(&header) {
        Some(resource) => errors.into_iter().map(|e| e.about(resource.clone())).collect(),
        None => errors,
    };
    match header.kind.as_deref() {
        Some("Tenant") => {
            parse_typed(piece, at).map(|doc| Some(Document::Tenant(doc, at.clone()))).map_err(about)
        }
        Some("Function") => parse_typed(piece, at)
            .map(|doc| Some(Document::Function(Box::new(doc), at.clone())))
            .map_err(about),
        Some(other) => Err(vec![SpecError::field(
            at.clone(),
            "kind",
            format!("unknown kind {other:?}, expected \"Tenant\" or \"Function\""),
        )]),
        None => Err(vec![SpecError::field(
            at.clone(),
            "kind",
            "missing field, expected \"Tenant\" or \"Function\"".into(),
        )]),
    }
}

/// The resource an invalid document describes, when its kind and metadata name one.
fn named_resource(header: &Header) -> Option<String> {
    let metadata = header.metadata.as_ref()?;
    let name = |key: &str| {
        let value = metadata.get(key)?.as_str()?;
        super::Name::new(value).ok().map(|name| name.to_string())
    };
    match header.kind.as_deref()? {
        "Tenant" => Some(super::tenant_resource(&name("name")?)),
        "Function" => Some(super::function_resource(&name("tenant")?, &name("name")?)),
        _ => None,
    }
}

/// Most problems reported for one document.
const MAX_PROBLEMS: usize = 32;

/// Parses a document as `T`, reporting every problem with its line and field. The parser stops
/// at the first problem, so the line holding it is blanked out (the line count stays) and the
/// document parsed again, until it parses or [`MAX_PROBLEMS`] are found. What a blanked line
/// causes is not reported as another problem: a required field now missing, or a problem of the
/// document as a whole, ends the search; a mapping left empty is blanked too, quietly.
fn parse_typed<T: serde::de::DeserializeOwned>(
    piece: &Piece<'_>,
    at: &Location,
) -> Result<T, Vec<SpecError>> {
    let mut errors: Vec<SpecError> = Vec::new();
    let mut text = piece.text.to_owned();
    let mut blanked_keys: Vec<String> = Vec::new();
    let mut blanked_lines = std::collections::BTreeSet::new();
    loop {
        let problem = match parse_once::<T>(&text, piece, at) {
            Ok(doc) if errors.is_empty() => return Ok(doc),
            Ok(_) => return Err(errors),
            Err(problem) => problem,
        };
        // A field left without its value by blanking: blank that too, quietly.
        let emptied = !errors.is_empty() && problem.error.message.ends_with("got unit value");
        let consequence = !errors.is_empty()
            && (problem.field.is_none()
                || blanked_keys
                    .iter()
                    .any(|key| problem.error.message.contains(&format!("missing field `{key}`"))));
        let repeated = errors.contains(&problem.error);
        if (consequence || repeated) && !emptied {
            return Err(errors);
        }
        if !emptied {
            errors.push(problem.error);
        }
        // Each line is blanked at most once, so this ends.
        let Some(line) =
            problem.line.filter(|line| errors.len() < MAX_PROBLEMS && blanked_lines.insert(*line))
        else {
            return Err(errors);
        };
        match blank_line(&text, line) {
            Some((blanked, key)) => {
                text = blanked;
                blanked_keys.extend(key);
            }
            None => return Err(errors),
        }
    }
}

/// The first problem of one parse.
struct Problem {
    error: SpecError,
    /// The line of the piece it is on.
    line: Option<usize>,
    /// The path of the field it is about; `None` for the document as a whole.
    field: Option<String>,
}

/// One parse of `text` (a piece's text, possibly with lines blanked).
fn parse_once<T: serde::de::DeserializeOwned>(
    text: &str,
    piece: &Piece<'_>,
    at: &Location,
) -> Result<T, Box<Problem>> {
    serde_path_to_error::deserialize(serde_norway::Deserializer::from_str(text)).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        let line = inner.location().map(|mark| mark.line());
        let mut error = yaml_error(piece, at, inner);
        // The parser names the mapping that holds the bad value; name the value's own field.
        let message = match error.message.split_once(": ") {
            Some((parent, rest)) if field.starts_with(parent) && field != "." => format!("{field}: {rest}"),
            _ if field != "." && !error.message.contains(": ") => format!("{field}: {}", error.message),
            _ => error.message.clone(),
        };
        error.message = message;
        Box::new(Problem { error, line, field: (field != ".").then_some(field) })
    })
}

/// `text` with its (1-based) `line` replaced by spaces, and the mapping key that line held.
fn blank_line(text: &str, line: usize) -> Option<(String, Option<String>)> {
    let mut out = String::with_capacity(text.len());
    let mut key = None;
    let mut found = false;
    for (index, content) in text.split_inclusive('\n').enumerate() {
        if index + 1 == line {
            found = true;
            let bare = content.trim_end_matches(['\n', '\r']);
            key =
                bare.trim_start().trim_start_matches("- ").split_once(':').map(|(k, _)| k.trim().to_owned());
            out.push_str(&" ".repeat(bare.len()));
            out.push_str(&content[bare.len()..]);
        } else {
            out.push_str(content);
        }
    }
    found.then_some((out, key))
}

/// Turns a YAML error into a spec error with the exact line (of the file) and column and the
/// field path that the parser reported, without repeating the position in the message.
fn yaml_error(piece: &Piece<'_>, at: &Location, error: serde_norway::Error) -> SpecError {
    let mut location = at.clone();
    if let Some(mark) = error.location() {
        location.line = Some(piece.first_line + mark.line() - 1);
        location.column = Some(mark.column());
    }
    let message = in_words(&without_position(&error.to_string()));
    SpecError::new(location, lines_of_the_file(&message, piece.first_line - 1))
}

/// serde's "invalid type: T, expected E" and "invalid value: T `v`, expected E" as
/// "expected E, got v", with its names of primitive types in words an operator reads.
fn in_words(message: &str) -> String {
    let message = message
        .replace("expected u8", "expected a whole number from 0 to 255")
        .replace("expected u32", "expected a whole number from 0 to 4294967295")
        .replace("expected u64", "expected a whole number")
        .replace("expected i64", "expected a whole number")
        .replace("expected a boolean", "expected true or false");
    let message = match message.find("expected struct ") {
        Some(at) => {
            let name_end = message[at + "expected struct ".len()..]
                .find(|c: char| !c.is_alphanumeric())
                .map_or(message.len(), |end| at + "expected struct ".len() + end);
            format!("{}expected a mapping{}", &message[..at], &message[name_end..])
        }
        None => message,
    };
    // The parser may put the path of the mapping first: `spec.limits: invalid type: ...`.
    let Some(start) =
        ["invalid type: ", "invalid value: "].iter().find_map(|m| message.find(m).map(|at| (at, m.len())))
    else {
        return message;
    };
    let (prefix, rest) = (&message[..start.0], &message[start.0 + start.1..]);
    let Some((found, expected)) = rest.split_once(", expected ") else { return message };
    // `integer `-1`` reads better as its value alone.
    let found = match found.split_once(" `") {
        Some((_, value)) if value.ends_with('`') => &value[..value.len() - 1],
        _ => found,
    };
    format!("{prefix}expected {expected}, got {found}")
}

/// Moves every " at line N" left in a parser message (the position of the construct the problem
/// is in) from the piece's lines to the file's.
fn lines_of_the_file(text: &str, offset: usize) -> String {
    const MARK: &str = " at line ";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARK) {
        let (before, after) = rest.split_at(at + MARK.len());
        out.push_str(before);
        let digits = after.find(|c: char| !c.is_ascii_digit()).unwrap_or(after.len());
        match after[..digits].parse::<usize>() {
            Ok(line) => out.push_str(&(line + offset).to_string()),
            Err(_) => out.push_str(&after[..digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// Drops the parser's " at line L column C" from a message; the location carries it.
fn without_position(text: &str) -> String {
    let Some(start) = text.find(" at line ") else { return text.to_owned() };
    let rest = &text[start + " at line ".len()..];
    let end = rest
        .find(" column ")
        .map(|c| c + " column ".len())
        .map(|c| c + rest[c..].find(|ch: char| !ch.is_ascii_digit()).unwrap_or(rest.len() - c));
    match end {
        Some(end) => format!("{}{}", &text[..start], &rest[end..]),
        None => text.to_owned(),
    }
}

/// `path` relative to `root` for messages; unchanged when it is not below `root`.
pub fn relative(root: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(root).unwrap_or(path).to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_cut_from_parser_messages() {
        assert_eq!(without_position("bad at line 4 column 5, while parsing"), "bad, while parsing");
        assert_eq!(without_position("a: bad at line 12 column 1"), "a: bad");
        assert_eq!(without_position("nothing to cut"), "nothing to cut");
        assert_eq!(
            lines_of_the_file("bad, while parsing a map at line 3 column 1", 10),
            "bad, while parsing a map at line 13 column 1"
        );
        assert_eq!(lines_of_the_file("no position", 10), "no position");
    }

    #[test]
    fn type_errors_say_what_is_expected_and_what_was_found() {
        assert_eq!(
            in_words("invalid value: integer `-1`, expected u32"),
            "expected a whole number from 0 to 4294967295, got -1"
        );
        assert_eq!(
            in_words("invalid type: string \"x\", expected a boolean"),
            "expected true or false, got string \"x\""
        );
        assert_eq!(in_words("unknown field `x`, expected `a`"), "unknown field `x`, expected `a`");
        assert_eq!(
            in_words("invalid type: integer `5`, expected struct Limits"),
            "expected a mapping, got 5"
        );
        assert_eq!(
            in_words("spec: invalid type: integer `5`, expected u64"),
            "spec: expected a whole number, got 5"
        );
    }

    #[test]
    fn every_problem_of_a_document_is_reported_with_its_line() {
        let text = "apiVersion: gojinn.dev/v1\nkind: Function\nmetadata: { name: f, tenant: t }\nspec:\n  module: { path: m.wasm }\n  limits:\n    memory: lots\n    maxOutput: -1\n    timeout: 5\n    maxConcurrency: -2\n  colour: red\n";
        let (mut docs, mut errors) = (Vec::new(), Vec::new());
        parse_file(Path::new("f.yaml"), text, &Bounds::default(), &mut docs, &mut errors);
        assert!(docs.is_empty());
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 5, "{lines:#?}");
        assert!(
            lines[0].starts_with("f.yaml:7:")
                && lines[0].contains(": spec.limits.memory: invalid size \"lots\""),
            "{lines:#?}"
        );
        assert!(lines[1].starts_with("f.yaml:8:"), "{lines:#?}");
        assert!(
            lines[1].ends_with(
                ": spec.limits.maxOutput: expected a size such as 64Mi or a number of bytes, got -1"
            ),
            "{lines:#?}"
        );
        assert!(lines[2].starts_with("f.yaml:9:"), "{lines:#?}");
        assert!(
            lines[2].contains(
                "spec.limits.timeout: expected a duration such as 500ms, 2s or 1m (with a unit), got 5"
            ),
            "{lines:#?}"
        );
        assert!(
            lines[3].starts_with("f.yaml:10:")
                && lines[3].contains("spec.limits.maxConcurrency: expected a whole number"),
            "{lines:#?}"
        );
        assert!(
            lines[4].starts_with("f.yaml:11:") && lines[4].contains("unknown field `colour`"),
            "{lines:#?}"
        );
        assert!(errors.iter().all(|e| e.resource.as_deref() == Some("function/t/f")), "{errors:?}");
    }

    #[test]
    fn a_blanked_required_field_is_not_reported_again_as_missing() {
        let text = "apiVersion: gojinn.dev/v1\nkind: Function\nmetadata: { name: f, tenant: t }\nspec:\n  module:\n    path: [1]\n";
        let (mut docs, mut errors) = (Vec::new(), Vec::new());
        parse_file(Path::new("f.yaml"), text, &Bounds::default(), &mut docs, &mut errors);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].message.starts_with("spec.module.path:"), "{errors:#?}");
    }

    #[test]
    fn splits_documents_and_keeps_file_line_numbers() {
        let text = "# comment\n---\na: 1\n---\n\n---\nb: 2\n";
        let pieces = split_documents(text, 10).unwrap();
        assert_eq!(pieces.len(), 2);
        assert_eq!((pieces[0].first_line, pieces[0].start, pieces[0].text), (2, 3, "---\na: 1\n"));
        assert_eq!((pieces[1].first_line, pieces[1].start, pieces[1].text), (6, 7, "---\nb: 2\n"));
        assert!(split_documents(text, 1).is_none(), "two documents are more than one");
        assert_eq!(split_documents("a: 1\r\n", 1).unwrap()[0].first_line, 1);
    }

    #[test]
    fn parser_errors_name_the_line_of_the_file() {
        let text = "---\napiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: { name: a }\n---\n\napiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: { name: b, nope: 1 }\n";
        let (mut docs, mut errors) = (Vec::new(), Vec::new());
        parse_file(Path::new("t.yaml"), text, &Bounds::default(), &mut docs, &mut errors);
        assert_eq!(docs.len(), 1);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].location.line, Some(9), "{}", errors[0]);
    }

    #[test]
    fn a_file_of_exactly_the_document_bound_parses_and_one_more_fails_before_parsing() {
        let bounds = Bounds { documents_per_spec_file: 3, ..Bounds::default() };
        let tenants = |n: usize| {
            (0..n)
                .map(|i| {
                    format!("---\napiVersion: gojinn.dev/v1\nkind: Tenant\nmetadata: {{ name: t{i} }}\n")
                })
                .collect::<String>()
        };
        let (mut docs, mut errors) = (Vec::new(), Vec::new());
        parse_file(Path::new("three.yaml"), &tenants(3), &bounds, &mut docs, &mut errors);
        assert_eq!((docs.len(), errors.len()), (3, 0), "{errors:?}");
        parse_file(Path::new("four.yaml"), &tenants(4), &bounds, &mut docs, &mut errors);
        assert_eq!(docs.len(), 3, "no document of a file past the bound is parsed");
        assert_eq!(
            errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "four.yaml: the file holds more than the 3 documents a spec file may hold (limits.documentsPerSpecFile); split it into several files"
            ]
        );
    }

    #[test]
    fn too_many_documents_or_too_deep_a_document_fail_before_parsing() {
        let (mut docs, mut errors) = (Vec::new(), Vec::new());
        let max = Bounds::default().documents_per_spec_file as usize;
        parse_file(
            Path::new("many.yaml"),
            &"a: 1\n---\n".repeat(max + 1),
            &Bounds::default(),
            &mut docs,
            &mut errors,
        );
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0]
                .to_string()
                .starts_with(&format!("many.yaml: the file holds more than the {max} documents")),
            "{}",
            errors[0]
        );
        errors.clear();
        let deep = format!("# c\n---\nkind: Tenant\nx: {}\n", "[".repeat(MAX_NESTING + 1));
        parse_file(Path::new("deep.yaml"), &deep, &Bounds::default(), &mut docs, &mut errors);
        assert_eq!(
            errors[0].to_string(),
            format!("deep.yaml:4: the document nests more than {MAX_NESTING} levels deep")
        );
        assert!(docs.is_empty());
    }
}
