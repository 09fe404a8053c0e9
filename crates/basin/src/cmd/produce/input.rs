//! Input parsing for `basin produce`: one record per line, with the key taken
//! from a JSON field (`--key-field`) or split off by a separator
//! (`--key-separator`), or no key at all.

use std::borrow::Cow;
use std::io::{self, BufRead};

use anyhow::{anyhow, bail, Result};

/// Where a line's key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMode {
    /// No key; the whole line is the value.
    None,
    /// The named top-level field of the JSON line; the whole line is the value.
    Field(String),
    /// `key<sep>value`: split at the first separator.
    Separator(Vec<u8>),
}

/// One parsed input line.
#[derive(Debug, PartialEq, Eq)]
pub struct LineRecord<'a> {
    pub key: Option<Cow<'a, [u8]>>,
    pub value: &'a [u8],
}

/// Read the next line into `buf` without its `\n` / `\r\n`; false at EOF.
pub fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<bool> {
    buf.clear();
    if reader.read_until(b'\n', buf)? == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    Ok(true)
}

/// Split line number `line_no` (1-based) into key and value.
pub fn parse_line<'a>(mode: &KeyMode, line: &'a [u8], line_no: u64) -> Result<LineRecord<'a>> {
    let key = match mode {
        KeyMode::None => None,
        KeyMode::Field(field) => Some(Cow::Owned(json_key(field, line, line_no)?)),
        KeyMode::Separator(sep) => return split_key(sep, line, line_no),
    };
    Ok(LineRecord { key, value: line })
}

/// The bytes of `field` in a JSON object line (strings unquoted).
fn json_key(field: &str, line: &[u8], line_no: u64) -> Result<Vec<u8>> {
    let doc: serde_json::Value = serde_json::from_slice(line)
        .map_err(|e| anyhow!("line {line_no}: not valid JSON ({e})"))?;
    match doc.get(field) {
        None | Some(serde_json::Value::Null) => {
            bail!("line {line_no}: no key field {field:?} in the JSON object")
        }
        Some(serde_json::Value::String(s)) => Ok(s.as_bytes().to_vec()),
        Some(other) => Ok(other.to_string().into_bytes()),
    }
}

/// `key<sep>value`, split at the first separator.
fn split_key<'a>(sep: &[u8], line: &'a [u8], line_no: u64) -> Result<LineRecord<'a>> {
    let at = find(line, sep).ok_or_else(|| {
        anyhow!(
            "line {line_no}: no key separator {:?}",
            String::from_utf8_lossy(sep)
        )
    })?;
    Ok(LineRecord {
        key: Some(Cow::Borrowed(&line[..at])),
        value: &line[at + sep.len()..],
    })
}

/// Position of the first `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(record: &LineRecord<'_>) -> Option<Vec<u8>> {
        record.key.as_ref().map(|k| k.to_vec())
    }

    #[test]
    fn reads_lines_without_terminators() {
        let mut input: &[u8] = b"a\r\nb\n\nc";
        let mut buf = Vec::new();
        let mut lines = Vec::new();
        while read_line(&mut input, &mut buf).unwrap() {
            lines.push(String::from_utf8(buf.clone()).unwrap());
        }
        assert_eq!(lines, ["a", "b", "", "c"]);
    }

    #[test]
    fn json_field_keys() {
        let mode = KeyMode::Field("id".into());
        let r = parse_line(&mode, br#"{"id":"u1","n":1}"#, 1).unwrap();
        assert_eq!(key_of(&r), Some(b"u1".to_vec()));
        assert_eq!(r.value, br#"{"id":"u1","n":1}"#);
        let r = parse_line(&mode, br#"{"id":42}"#, 2).unwrap();
        assert_eq!(key_of(&r), Some(b"42".to_vec()));
    }

    #[test]
    fn json_errors_name_the_line() {
        let mode = KeyMode::Field("id".into());
        let err = parse_line(&mode, b"not json", 7).unwrap_err().to_string();
        assert!(err.starts_with("line 7: not valid JSON"), "{err}");
        let err = parse_line(&mode, br#"{"other":1}"#, 9)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 9") && err.contains("\"id\""), "{err}");
    }

    #[test]
    fn separator_keys() {
        let mode = KeyMode::Separator(b"::".to_vec());
        let r = parse_line(&mode, b"k1::v::1", 1).unwrap();
        assert_eq!(key_of(&r), Some(b"k1".to_vec()));
        assert_eq!(r.value, b"v::1");
        let err = parse_line(&mode, b"no separator", 3)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("line 3:"), "{err}");
    }

    #[test]
    fn keyless_lines() {
        let r = parse_line(&KeyMode::None, b"hello", 1).unwrap();
        assert_eq!(r.key, None);
        assert_eq!(r.value, b"hello");
    }
}
