//! How each layer spells a setting's value, by its type ([`Value`]).
//!
//! | type | command line / environment | file |
//! | --- | --- | --- |
//! | numbers | `65536`, `0.5` | `65536`, `0.5` |
//! | switches | the flag alone, or `true` / `false` | `true` / `false` |
//! | addresses, text, paths | as is | a string |
//! | durations | `500ms`, `10s`, `2m`, `1h`, bare seconds | the same, as a string |
//! | lists | comma-separated, or the flag repeated | an array of strings |
//! | choices (`ValueEnum`) | one of the names `--help` lists | the name, as a string |
//! | secrets | as is; `--help` never shows the variable's value | a string |
//!
//! A new type of setting needs an impl here; a new `ValueEnum` joins
//! `choice_value!`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::EnumValueParser;
use clap::{Arg, ArgAction, ArgMatches, ValueEnum};
use serde::de::DeserializeOwned;

use super::{parse_duration, EngineKind, LogFormat, OverflowArg};

/// How a setting's type is spelled in each layer.
///
/// ```
/// use fanout_server::config::Value;
/// use std::time::Duration;
///
/// assert_eq!(<Duration as Value>::parse("2m"), Ok(Duration::from_secs(120)));
/// assert_eq!(<Duration as Value>::toml("2m"), "\"2m\"");
/// assert_eq!(<Vec<String> as Value>::toml("a,b"), "[\"a\", \"b\"]");
/// ```
pub trait Value: Clone + Send + Sync + Sized + 'static {
    /// What the TOML file holds for it.
    type File: DeserializeOwned;

    /// The value from its command-line text (also environment variables and
    /// the table's defaults and examples).
    fn parse(text: &str) -> Result<Self, String>;

    /// The value from what the file held.
    fn from_file(v: Self::File) -> Result<Self, String>;

    /// The TOML spelling of a command-line text (a quoted string unless the
    /// type says otherwise); for tests and docs.
    fn toml(text: &str) -> String {
        toml_string(text)
    }

    /// The clap argument for it: by default one value, parsed by [`parse`](Value::parse).
    fn arg(arg: Arg) -> Arg {
        arg.value_parser(Self::parse).action(ArgAction::Set)
    }

    /// What clap found for it (a flag or the environment).
    fn from_matches(m: &ArgMatches, id: &str) -> Option<Self> {
        m.get_one::<Self>(id).cloned()
    }
}

/// A TOML basic string for `text` (quotes and backslashes escaped).
fn toml_string(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 2);
    s.push('"');
    for c in text.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// Types parsed by `FromStr` and held by the file as themselves (numbers are
/// bare in TOML, addresses and text are strings).
macro_rules! from_str_value {
    ($($t:ty => $toml:expr),+ $(,)?) => {$(
        impl Value for $t {
            type File = $t;
            fn parse(text: &str) -> Result<Self, String> {
                text.parse().map_err(|e| format!("{e}"))
            }
            fn from_file(v: $t) -> Result<Self, String> {
                Ok(v)
            }
            fn toml(text: &str) -> String {
                $toml(text)
            }
        }
    )+};
}

from_str_value! {
    usize => str::to_string,
    u32 => str::to_string,
    f64 => str::to_string,
    SocketAddr => toml_string,
}

/// `true` / `false`; on the command line the flag alone means `true`
/// (`--no-dashboard`), in the file a TOML boolean.
impl Value for bool {
    type File = bool;
    fn parse(text: &str) -> Result<Self, String> {
        text.parse().map_err(|_| format!("invalid value `{text}`: expected true or false"))
    }
    fn from_file(v: bool) -> Result<Self, String> {
        Ok(v)
    }
    fn toml(text: &str) -> String {
        text.to_string()
    }
    fn arg(arg: Arg) -> Arg {
        arg.value_parser(Self::parse).action(ArgAction::Set).num_args(0..=1).default_missing_value("true")
    }
}

impl Value for String {
    type File = String;
    fn parse(text: &str) -> Result<Self, String> {
        Ok(text.to_string())
    }
    fn from_file(v: String) -> Result<Self, String> {
        Ok(v)
    }
}

impl Value for PathBuf {
    type File = PathBuf;
    fn parse(text: &str) -> Result<Self, String> {
        Ok(PathBuf::from(text))
    }
    fn from_file(v: PathBuf) -> Result<Self, String> {
        Ok(v)
    }
}

/// `500ms`, `10s`, `2m`, `1h` or bare seconds, in both layers.
impl Value for Duration {
    type File = String;
    fn parse(text: &str) -> Result<Self, String> {
        parse_duration(text)
    }
    fn from_file(v: String) -> Result<Self, String> {
        parse_duration(&v)
    }
}

/// Comma-separated on the command line (and repeatable: `--x a --x b`), an
/// array in the file.
impl Value for Vec<String> {
    type File = Vec<String>;
    fn parse(text: &str) -> Result<Self, String> {
        Ok(text.split(',').map(str::to_string).collect())
    }
    fn from_file(v: Vec<String>) -> Result<Self, String> {
        Ok(v)
    }
    fn toml(text: &str) -> String {
        let items: Vec<String> = text.split(',').map(toml_string).collect();
        format!("[{}]", items.join(", "))
    }
    fn arg(arg: Arg) -> Arg {
        arg.value_parser(clap::value_parser!(String)).value_delimiter(',').action(ArgAction::Append)
    }
    fn from_matches(m: &ArgMatches, id: &str) -> Option<Self> {
        m.get_many::<String>(id).map(|v| v.cloned().collect())
    }
}

/// A secret given inline: as text, but `--help` never shows the value its
/// environment variable holds, and `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Value for Secret {
    type File = String;
    fn parse(text: &str) -> Result<Self, String> {
        Ok(Secret(text.to_string()))
    }
    fn from_file(v: String) -> Result<Self, String> {
        Ok(Secret(v))
    }
    fn arg(arg: Arg) -> Arg {
        arg.value_parser(Self::parse).action(ArgAction::Set).hide_env_values(true)
    }
}

/// One of a fixed set of names (`--help` lists them), a string in the file.
macro_rules! choice_value {
    ($($t:ty),+ $(,)?) => {$(
        impl Value for $t {
            type File = $t;
            fn parse(text: &str) -> Result<Self, String> {
                <$t as ValueEnum>::from_str(text, false)
            }
            fn from_file(v: $t) -> Result<Self, String> {
                Ok(v)
            }
            fn arg(arg: Arg) -> Arg {
                arg.value_parser(EnumValueParser::<$t>::new()).action(ArgAction::Set)
            }
        }
    )+};
}

choice_value!(EngineKind, LogFormat, OverflowArg);
