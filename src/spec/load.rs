//! Reads every YAML document under a spec directory into typed documents. Each document is
//! parsed on its own, so one bad document fails only itself; every failure names the file, the
//! line and the field.

use super::types::{API_VERSION, FunctionDoc, Header, TenantDoc};
use super::{Location, SpecError};
use std::path::{Path, PathBuf};

/// Largest spec file read; anything bigger is an operator mistake, not a spec.
const MAX_SPEC_FILE: u64 = 4 << 20;

/// A parsed document and where it came from.
#[derive(Debug)]
pub enum Document {
    Tenant(TenantDoc, Location),
    Function(Box<FunctionDoc>, Location),
}

/// All `.yaml`/`.yml` files below `root`, sorted so that loading is deterministic.
/// Hidden directories (`.git`) and `target` directories are skipped.
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

/// Parses every document of every spec file under `root`; returns the good ones and an error per
/// bad one.
pub fn load_documents(root: &Path) -> (Vec<Document>, Vec<SpecError>) {
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    let files = match spec_files(root) {
        Ok(files) => files,
        Err(e) => return (docs, vec![e]),
    };
    for path in files {
        let file = relative(root, &path);
        match read_spec_file(&path) {
            Ok(text) => parse_file(&file, &text, &mut docs, &mut errors),
            Err(message) => errors.push(SpecError::new(Location::file(file), message)),
        }
    }
    (docs, errors)
}

fn read_spec_file(path: &Path) -> Result<String, String> {
    let len = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?.len();
    if len > MAX_SPEC_FILE {
        return Err(format!("file is {len} bytes; spec files are limited to {MAX_SPEC_FILE}"));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))
}

/// Parses the documents of one file's text.
pub fn parse_file(file: &Path, text: &str, docs: &mut Vec<Document>, errors: &mut Vec<SpecError>) {
    for (line, padded) in split_documents(text) {
        let at = Location::at(file.to_path_buf(), line);
        match parse_document(&padded, &at) {
            Ok(Some(doc)) => docs.push(doc),
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
}

/// Splits a multi-document YAML text at `---` lines. Each piece is returned with the line it
/// starts on and padded with blank lines, so the YAML parser reports lines of the whole file.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    let mut has_content = false;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let separator = line == "---" || line.starts_with("--- ") || line == "...";
        if separator {
            if has_content {
                pieces.push((start, std::mem::take(&mut current)));
            }
            current = "\n".repeat(number);
            start = number + 1;
            has_content = false;
            continue;
        }
        if !has_content && !line.trim().is_empty() && !line.trim_start().starts_with('#') {
            has_content = true;
            start = number;
        }
        current.push_str(line);
        current.push('\n');
    }
    if has_content {
        pieces.push((start, current));
    }
    pieces
}

fn parse_document(text: &str, at: &Location) -> Result<Option<Document>, SpecError> {
    let header: Header = serde_norway::from_str(text).map_err(|e| match e.to_string() {
        m if m.starts_with("invalid type") => SpecError::new(
            at.clone(),
            "a document must be a mapping with apiVersion, kind, metadata and spec".into(),
        ),
        _ => yaml_error(at, e),
    })?;
    match header.api_version.as_deref() {
        Some(API_VERSION) => {}
        Some(other) => {
            return Err(SpecError::field(
                at.clone(),
                "apiVersion",
                format!("unsupported apiVersion {other:?}, expected {API_VERSION:?}"),
            ));
        }
        None => {
            return Err(SpecError::field(
                at.clone(),
                "apiVersion",
                format!("missing field, expected {API_VERSION:?}"),
            ));
        }
    }
    match header.kind.as_deref() {
        Some("Tenant") => parse_typed(text, at).map(|doc| Some(Document::Tenant(doc, at.clone()))),
        Some("Function") => {
            parse_typed(text, at).map(|doc| Some(Document::Function(Box::new(doc), at.clone())))
        }
        Some(other) => Err(SpecError::field(
            at.clone(),
            "kind",
            format!("unknown kind {other:?}, expected \"Tenant\" or \"Function\""),
        )),
        None => Err(SpecError::field(
            at.clone(),
            "kind",
            "missing field, expected \"Tenant\" or \"Function\"".into(),
        )),
    }
}

/// Parses a document as `T`, naming the exact field of the first error.
fn parse_typed<T: serde::de::DeserializeOwned>(text: &str, at: &Location) -> Result<T, SpecError> {
    serde_path_to_error::deserialize(serde_norway::Deserializer::from_str(text)).map_err(|e| {
        let field = e.path().to_string();
        let mut error = yaml_error(at, e.into_inner());
        // The parser names the mapping that holds the bad value; name the value's own field.
        let message = match error.message.split_once(": ") {
            Some((parent, rest)) if field.starts_with(parent) && field != "." => format!("{field}: {rest}"),
            _ if field != "." && !error.message.contains(": ") => format!("{field}: {}", error.message),
            _ => error.message.clone(),
        };
        error.message = message;
        error
    })
}

/// Turns a YAML error into a spec error with the exact line and column and the field path that
/// the parser reported, without repeating the position in the message.
fn yaml_error(at: &Location, error: serde_norway::Error) -> SpecError {
    let mut location = at.clone();
    if let Some(mark) = error.location() {
        location.line = Some(mark.line());
        location.column = Some(mark.column());
    }
    SpecError::new(location, without_position(&error.to_string()))
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
    }

    #[test]
    fn splits_documents_and_keeps_file_line_numbers() {
        let text = "# comment\n---\na: 1\n---\n\n---\nb: 2\n";
        let pieces = split_documents(text);
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0].0, 3);
        assert_eq!(pieces[1].0, 7);
        assert_eq!(pieces[1].1.lines().count(), 7, "padded to the document's own line");
    }
}
