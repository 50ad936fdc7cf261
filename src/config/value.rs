//! How values read and print: durations as human strings (`"250ms"`,
//! `"20s"`, `"1m30s"`), and [`Toggle`] for settings that are on by default
//! and can be turned `"off"`.

use std::{fmt, marker::PhantomData, time::Duration};

use serde::{
    de::{self, value::MapAccessDeserializer, MapAccess, Visitor},
    Deserialize, Deserializer, Serialize, Serializer,
};

/// A setting that is either turned off (`"off"` or `false` in a file) or
/// on with its value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Toggle<T> {
    /// Turned off.
    Off,
    /// On, with these settings.
    On(T),
}

impl<T> Toggle<T> {
    /// The value when on.
    pub fn as_on(&self) -> Option<&T> {
        match self {
            Self::Off => None,
            Self::On(value) => Some(value),
        }
    }
}

const OFF: &str = "off";

impl<T: Serialize> Serialize for Toggle<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Off => serializer.serialize_str(OFF),
            Self::On(value) => value.serialize(serializer),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Toggle<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ToggleVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ToggleVisitor<T> {
            type Value = Toggle<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"off\", or the setting's value")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v == OFF {
                    Ok(Toggle::Off)
                } else {
                    T::deserialize(de::value::StrDeserializer::new(v)).map(Toggle::On)
                }
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                if v {
                    T::deserialize(de::value::BoolDeserializer::new(v)).map(Toggle::On)
                } else {
                    Ok(Toggle::Off)
                }
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                T::deserialize(de::value::U64Deserializer::new(v)).map(Toggle::On)
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                T::deserialize(de::value::I64Deserializer::new(v)).map(Toggle::On)
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                T::deserialize(de::value::F64Deserializer::new(v)).map(Toggle::On)
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Toggle::On)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(Toggle::On)
            }
        }

        deserializer.deserialize_any(ToggleVisitor(PhantomData))
    }
}

/// Prints a duration the way it reads back: `250ms`, `20s`, `1m 30s`.
pub(crate) fn format_duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

fn parse_duration<E: de::Error>(text: &str) -> Result<Duration, E> {
    humantime::parse_duration(text).map_err(|error| {
        E::custom(format_args!(
            "{text:?} is not a duration ({error}); write e.g. \"250ms\", \"20s\" or \"1m30s\""
        ))
    })
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"250ms\", \"20s\" or \"1m30s\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        parse_duration(v)
    }
}

/// A required duration (`#[serde(with = "duration")]`).
pub(crate) mod duration {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_str(DurationVisitor)
    }
}

/// An optional duration (`#[serde(default, with = "optional_duration")]`).
pub(crate) mod optional_duration {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        d.deserialize_str(DurationVisitor).map(Some)
    }
}

/// An optional duration that may be `"off"`
/// (`#[serde(default, with = "optional_toggle_duration")]`).
pub(crate) mod optional_toggle_duration {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        d: &Option<Toggle<Duration>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(Toggle::On(d)) => s.serialize_str(&format_duration(*d)),
            Some(Toggle::Off) => s.serialize_str(OFF),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Toggle<Duration>>, D::Error> {
        struct ToggleDuration;

        impl Visitor<'_> for ToggleDuration {
            type Value = Toggle<Duration>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"20s\", or \"off\"")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v == OFF {
                    Ok(Toggle::Off)
                } else {
                    parse_duration(v).map(Toggle::On)
                }
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                if v {
                    Err(E::invalid_value(de::Unexpected::Bool(v), &self))
                } else {
                    Ok(Toggle::Off)
                }
            }
        }

        d.deserialize_any(ToggleDuration).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_prints_the_way_it_reads_back() {
        for duration in [
            Duration::ZERO,
            Duration::from_micros(1_500),
            Duration::from_millis(250),
            Duration::from_millis(1_500),
            Duration::from_secs(90),
            Duration::from_secs(31 * 86_400),
        ] {
            let text = format_duration(duration);
            let parsed: Duration = parse_duration::<de::value::Error>(&text).unwrap_or_default();
            assert_eq!(parsed, duration, "{text}");
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "1m 30s");
    }

    #[test]
    fn off_and_false_turn_a_toggle_off_and_anything_else_is_its_value() {
        let read = |json: &str| serde_json::from_str::<Toggle<u32>>(json).ok();
        assert_eq!(read("\"off\""), Some(Toggle::Off));
        assert_eq!(read("false"), Some(Toggle::Off));
        assert_eq!(read("3"), Some(Toggle::On(3)));
        assert_eq!(read("\"on\""), None);
    }
}
