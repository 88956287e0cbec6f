//! The machinery behind the settings table: one declaration per setting,
//! from which the command line, the environment, the file and the defaults
//! are all derived.
//!
//! # Layers
//!
//! A setting named `max_message_size` is, without another word written:
//!
//! | layer | spelling | precedence |
//! | --- | --- | --- |
//! | flag | `--max-message-size` | 1 (highest) |
//! | environment | `FANOUT_MAX_MESSAGE_SIZE` | 2 |
//! | TOML file | `max_message_size = …` | 3 |
//! | default | `default "65536"` in the table | 4 |
//!
//! clap resolves the first two (an `Arg` with `long` and `env`, built here
//! at run time from the name: clap's derive cannot prefix env names, see
//! clap-rs/clap#3221), serde the third ([`FileConfig`](super::FileConfig),
//! `deny_unknown_fields`), and [`settings!`] generates the merge that takes
//! the first layer that has a value and hands it to the entry's *apply*
//! closure, which writes it into [`Settings`].
//!
//! # Values
//!
//! A setting's type says how each layer spells it ([`Value`]): a duration is
//! `10s` on the command line and the string `"10s"` in the file, a list is
//! comma-separated on the command line and an array in the file, a choice
//! lists its possible values in `--help`. A default is written as a user
//! would write the flag and parsed by the same parser, so the table, `--help`
//! and `docs/config.md` show one text and a default a user could not type
//! cannot exist.
//!
//! # Errors
//!
//! A bad flag or environment value is clap's error (exit code 2, naming the
//! flag); a bad file value names its key (`drain_timeout: duration ...`); an
//! unknown file key is serde's error naming it. Nothing is checked twice:
//! range checks stay where the value is used (`WsConfig::validate`, the
//! checks in `Settings::merge`).

use clap::Arg;

use super::{Settings, Value};

/// The prefix of every environment variable.
pub const ENV_PREFIX: &str = "FANOUT_";

/// What a setting is when no layer gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// This value, as a user would type the flag.
    Default(&'static str),
    /// No value (the setting's type is an `Option`); the text says what
    /// that means, for `docs/config.md` (`—`, `off`, `any`).
    Unset(&'static str),
}

/// One setting, as the table declares it.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// Its name: the file's key; the flag and the environment variable are
    /// derived from it ([`flag`](Spec::flag), [`env`](Spec::env)).
    pub name: &'static str,
    /// Its doc comment: `--help` and the meaning column of `docs/config.md`.
    pub doc: &'static str,
    /// When no layer gives it.
    pub fallback: Fallback,
    /// A value other than the default, valid on its own; for tests.
    pub example: &'static str,
    /// The TOML spelling of a command-line text ([`Value::toml`]).
    pub toml: fn(&str) -> String,
}

impl Spec {
    /// `--max-message-size` for `max_message_size`.
    pub fn flag(&self) -> String {
        format!("--{}", self.name.replace('_', "-"))
    }

    /// `FANOUT_MAX_MESSAGE_SIZE` for `max_message_size`.
    pub fn env(&self) -> String {
        format!("{ENV_PREFIX}{}", self.name.to_ascii_uppercase())
    }

    /// The doc comment as one line.
    pub fn doc_line(&self) -> String {
        self.doc.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
    }

    /// Its row of the reference table in `docs/config.md`.
    pub fn docs_row(&self) -> String {
        let default = match self.fallback {
            Fallback::Default(t) => format!("`{t}`"),
            Fallback::Unset(t) => t.to_string(),
        };
        format!("| `{}` | `{}` | {default} | {} |", self.flag(), self.env(), self.doc_line())
    }

    /// Its clap argument, before the type's own parser is set.
    pub(super) fn arg(&self) -> Arg {
        let help = match self.fallback {
            Fallback::Default(t) => format!("{} [default: {t}]", self.doc_line()),
            Fallback::Unset(_) => self.doc_line(),
        };
        Arg::new(self.name)
            .long(self.name.replace('_', "-"))
            .env(self.env())
            .value_name(self.name.to_ascii_uppercase())
            .help(help)
    }
}

/// The reference table of `docs/config.md`: its header, `--config`, and one
/// row per setting ([`Spec::docs_row`]).
///
/// ```
/// let table = fanout_server::config::reference_table();
/// assert!(table.contains("| `--max-message-size` | `FANOUT_MAX_MESSAGE_SIZE` | `65536` |"));
/// ```
pub fn reference_table() -> String {
    let mut t = String::from("| flag | env | default | meaning |\n| --- | --- | --- | --- |\n");
    t.push_str("| `--config` | `FANOUT_CONFIG` | — | TOML file |\n");
    for spec in super::SETTINGS {
        t.push_str(&spec.docs_row());
        t.push('\n');
    }
    t
}

/// What an entry's apply closure may return: nothing, or a clear error.
pub trait Applied {
    /// The closure's outcome as a `Result`.
    fn into_result(self) -> Result<(), String>;
}

impl Applied for () {
    fn into_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl Applied for Result<(), String> {
    fn into_result(self) -> Result<(), String> {
        self
    }
}

/// Calls an entry's apply closure (the bound gives the closure its types).
pub(super) fn apply<V, R: Applied>(
    s: &mut Settings,
    v: V,
    f: impl FnOnce(&mut Settings, V) -> R,
) -> Result<(), String> {
    f(s, v).into_result()
}

/// The first layer that has a value: the command line or environment (clap
/// already put the flag first), else the file's, named in its error.
pub(super) fn layered<T: Value>(
    name: &str,
    cli: Option<T>,
    file: Option<T::File>,
) -> Result<Option<T>, String> {
    match cli {
        Some(v) => Ok(Some(v)),
        None => file.map(T::from_file).transpose().map_err(|e| format!("{name}: {e}")),
    }
}

/// A built-in default, parsed as a flag would be.
pub(super) fn default_of<T: Value>(name: &str, text: &str) -> Result<T, String> {
    T::parse(text).map_err(|e| format!("{name}: built-in default `{text}`: {e}"))
}

/// Declares every setting once; see `table.rs` for the one invocation and
/// how to add a setting.
///
/// Each entry is
///
/// ```text
/// /// Doc: `--help` and docs/config.md's meaning column.
/// name: Type, default "text" | unset "docs text", example "text" => |s, v| apply;
/// ```
///
/// and the block `file_only { ... }` lists the file's keys that no flag has
/// (`[[topics]]`). It generates [`Cli`](super::Cli) (clap, with `Parser`),
/// [`FileConfig`](super::FileConfig) (serde, unknown keys refused),
/// [`SETTINGS`](super::SETTINGS) (the declarations, for docs and tests) and
/// `apply_layers`, the merge.
macro_rules! settings {
    (
        file_only { $( $(#[$fmeta:meta])* $fname:ident : $fty:ty ),* $(,)? }
        $(
            $(#[doc = $doc:literal])+
            $name:ident : $ty:ty, $fb:ident $fbtext:literal, example $example:literal => $apply:expr;
        )+
    ) => {
        /// The `fanout-server` command line: `--config` and one flag per
        /// setting, each also read from `FANOUT_<NAME>` (clap puts the flag
        /// first). `None`: neither gave it.
        #[derive(Default, Debug)]
        pub struct Cli {
            /// TOML config file.
            pub config: Option<std::path::PathBuf>,
            $( $(#[doc = $doc])+ pub $name: Option<$ty>, )+
        }

        /// The TOML file: one key per setting, named as the setting (the
        /// flag with `_` for `-`), and the file-only keys. An unknown key is
        /// an error.
        #[derive(serde::Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        pub struct FileConfig {
            $( $(#[$fmeta])* pub(super) $fname: $fty, )*
            $( pub(super) $name: Option<<$ty as $crate::config::Value>::File>, )+
        }

        /// Every setting, in the order of `--help` and `docs/config.md`.
        pub const SETTINGS: &[$crate::config::Spec] = &[$(
            $crate::config::Spec {
                name: stringify!($name),
                doc: concat!($($doc, "\n"),+),
                fallback: settings!(@fallback $fb $fbtext),
                example: $example,
                toml: <$ty as $crate::config::Value>::toml,
            },
        )+];

        impl clap::CommandFactory for Cli {
            fn command() -> clap::Command {
                let mut specs = SETTINGS.iter();
                clap::Command::new("fanout-server")
                    .version(env!("CARGO_PKG_VERSION"))
                    .about("fanout WebSocket fan-out server")
                    .arg(
                        clap::Arg::new("config")
                            .long("config")
                            .env("FANOUT_CONFIG")
                            .value_name("CONFIG")
                            .value_parser(clap::value_parser!(std::path::PathBuf))
                            .help("TOML config file"),
                    )
                    $( .arg(<$ty as $crate::config::Value>::arg(
                        specs.next().expect("one spec per setting").arg(),
                    )) )+
            }

            fn command_for_update() -> clap::Command {
                Self::command()
            }
        }

        impl clap::FromArgMatches for Cli {
            fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
                Ok(Cli {
                    config: m.get_one::<std::path::PathBuf>("config").cloned(),
                    $( $name: <$ty as $crate::config::Value>::from_matches(m, stringify!($name)), )+
                })
            }

            fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
                *self = Self::from_arg_matches(m)?;
                Ok(())
            }
        }

        impl clap::Parser for Cli {}

        /// Resolves every setting (flag or environment, file, default) and
        /// applies it to `s`, in the table's order.
        pub(super) fn apply_layers(
            cli: Cli,
            file: &mut FileConfig,
            s: &mut $crate::config::Settings,
        ) -> Result<(), String> {
            $(
                let (given, in_file) = (cli.$name, file.$name.take());
                let v = $crate::config::layers::layered::<$ty>(stringify!($name), given, in_file)?;
                let v = settings!(@resolve $fb $fbtext, $ty, $name, v);
                $crate::config::layers::apply(s, v, $apply)?;
            )+
            Ok(())
        }
    };
    (@fallback default $text:literal) => { $crate::config::Fallback::Default($text) };
    (@fallback unset $text:literal) => { $crate::config::Fallback::Unset($text) };
    (@resolve default $text:literal, $ty:ty, $name:ident, $v:ident) => {
        match $v {
            Some(v) => v,
            None => $crate::config::layers::default_of::<$ty>(stringify!($name), $text)?,
        }
    };
    (@resolve unset $text:literal, $ty:ty, $name:ident, $v:ident) => { $v };
}

pub(super) use settings;
