//! Human-written quantities in specs: byte sizes (`64Mi`, `1Gi`, `500k`) and durations
//! (`500ms`, `2m`). Both keep the text they were written as for error messages and plans.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A byte size written as a number with an optional Kubernetes-style suffix: binary `Ki`, `Mi`,
/// `Gi`, `Ti` or decimal `k`, `M`, `G`, `T`. A bare number is bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (digits, suffix) = text.split_at(split);
        let number: u64 = digits.parse().map_err(|_| {
            format!("invalid size {text:?}: expected a whole number with an optional unit like 64Mi")
        })?;
        let unit: u64 = match suffix {
            "" => 1,
            "k" => 1_000,
            "M" => 1_000_000,
            "G" => 1_000_000_000,
            "T" => 1_000_000_000_000,
            "Ki" => 1 << 10,
            "Mi" => 1 << 20,
            "Gi" => 1 << 30,
            "Ti" => 1 << 40,
            other => {
                return Err(format!(
                    "invalid size {text:?}: unknown unit {other:?} (use Ki, Mi, Gi, Ti, k, M, G or T)"
                ));
            }
        };
        number.checked_mul(unit).map(ByteSize).ok_or_else(|| format!("invalid size {text:?}: too large"))
    }

    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(de)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(t) => ByteSize::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

/// A duration written the humantime way: `500ms`, `2s`, `1m 30s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(pub Duration);

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        let duration = humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!("invalid duration {text:?}: {e} (write e.g. 500ms, 2s or 1m)"))
        })?;
        if duration.is_zero() {
            return Err(serde::de::Error::custom(format!(
                "invalid duration {text:?}: must be greater than zero"
            )));
        }
        Ok(Span(duration))
    }
}

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_and_decimal_units() {
        assert_eq!(ByteSize::parse("64Mi").unwrap().bytes(), 64 << 20);
        assert_eq!(ByteSize::parse("1Gi").unwrap().bytes(), 1 << 30);
        assert_eq!(ByteSize::parse("500k").unwrap().bytes(), 500_000);
        assert_eq!(ByteSize::parse("4096").unwrap().bytes(), 4096);
    }

    #[test]
    fn rejects_unknown_units_and_overflow() {
        assert!(ByteSize::parse("64MB").unwrap_err().contains("unknown unit"));
        assert!(ByteSize::parse("Mi").is_err());
        assert!(ByteSize::parse("99999999999999Ti").unwrap_err().contains("too large"));
    }
}
