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

/// What a size field takes, for error messages.
const SIZE: &str = "a size such as 64Mi or a number of bytes";

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(SIZE)
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(n))
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<ByteSize, E> {
                u64::try_from(n).map(ByteSize).map_err(|_| E::custom(format!("expected {SIZE}, got {n}")))
            }

            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<ByteSize, E> {
                Err(E::custom(format!("expected {SIZE}, got {n}")))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<ByteSize, E> {
                ByteSize::parse(text).map_err(E::custom)
            }
        }
        de.deserialize_any(Visitor)
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

/// What a duration field takes, for error messages.
const DURATION: &str = "a duration such as 500ms, 2s or 1m";

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = String;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(DURATION)
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<String, E> {
                Err(E::custom(format!("expected {DURATION} (with a unit), got {n}")))
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<String, E> {
                Err(E::custom(format!("expected {DURATION}, got {n}")))
            }

            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<String, E> {
                Err(E::custom(format!("expected {DURATION}, got {n}")))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<String, E> {
                Ok(text.to_owned())
            }
        }
        let text = de.deserialize_any(Visitor)?;
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

    #[test]
    fn sizes_and_durations_of_the_wrong_type_say_what_is_expected() {
        let size = |yaml: &str| serde_norway::from_str::<ByteSize>(yaml).map_err(|e| e.to_string());
        assert_eq!(size("4096"), Ok(ByteSize(4096)));
        assert_eq!(size("1Mi"), Ok(ByteSize(1 << 20)));
        assert!(
            size("-1").unwrap_err().starts_with("expected a size such as 64Mi or a number of bytes, got -1")
        );
        assert!(
            size("1.5")
                .unwrap_err()
                .starts_with("expected a size such as 64Mi or a number of bytes, got 1.5")
        );
        assert!(size("[1]").unwrap_err().contains("expected a size such as 64Mi"));
        let span = |yaml: &str| serde_norway::from_str::<Span>(yaml).map_err(|e| e.to_string());
        assert_eq!(span("2s"), Ok(Span(Duration::from_secs(2))));
        assert!(
            span("5")
                .unwrap_err()
                .starts_with("expected a duration such as 500ms, 2s or 1m (with a unit), got 5")
        );
        assert!(span("-5").unwrap_err().starts_with("expected a duration such as 500ms, 2s or 1m, got -5"));
        assert!(span("true").unwrap_err().contains("expected a duration such as 500ms"));
    }
}
