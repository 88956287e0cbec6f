//! Every setting through every layer, table-driven: for each entry of the
//! settings table, its flag, its `FANOUT_*` variable and its file key each
//! reach `Settings`, they rank flag > environment > file > default, and the
//! default is what `Settings::default()` holds.
//!
//! The flag and variable names are spelled here from the setting's name
//! (`--max-message-size`, `FANOUT_MAX_MESSAGE_SIZE`), not taken from the
//! table, so a change of how names are derived fails here. One test in its
//! own binary: it sets environment variables, which any test running beside
//! it that parses a command line would see.

use std::path::Path;

use clap::Parser;
use fanout_server::config::{Cli, Fallback, FileConfig, Spec, SETTINGS};
use fanout_server::Settings;

/// The settings a command line and a file give, as `Debug` shows them
/// (every field, secrets as `<redacted>`).
fn merged(args: &[&str], toml_text: &str) -> Result<String, String> {
    let cli = Cli::try_parse_from(std::iter::once("fanout-server").chain(args.iter().copied()))
        .map_err(|e| e.to_string())?;
    let file: FileConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
    Settings::merge(cli, file).map(|s| format!("{s:?}"))
}

/// The spec's example; a `*_file` setting's names a file holding a line
/// that is a valid API key, JWT secret and `kid=secret` keys file at once.
fn example(spec: &Spec, dir: &Path) -> String {
    if !spec.name.ends_with("_file") {
        return spec.example.to_string();
    }
    let path = dir.join(spec.name);
    std::fs::write(&path, format!("kid={}\n", "k".repeat(32))).unwrap();
    path.to_str().unwrap().to_string()
}

/// One test, as the process's environment is shared by all of them.
#[test]
fn settings_table() {
    no_setting_is_shadowed_by_another();
    every_setting_through_every_layer();
}

fn every_setting_through_every_layer() {
    let dir = std::env::temp_dir().join(format!("fanout-config-layers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for spec in SETTINGS {
        assert!(std::env::var_os(spec.env()).is_none(), "{} is set in this environment", spec.env());
    }
    let base = merged(&[], "").unwrap();
    assert_eq!(base, format!("{:?}", Settings::default()));
    assert!(SETTINGS.len() >= 50, "every setting of docs/config.md is in the table");
    for spec in SETTINGS {
        let name = spec.name;
        let flag = format!("--{}", name.replace('_', "-"));
        let env = format!("FANOUT_{}", name.to_uppercase());
        let key = |text: &str| format!("{name} = {}\n", (spec.toml)(text));
        let x = example(spec, &dir);

        let by_flag = merged(&[&flag, &x], "").unwrap_or_else(|e| panic!("{flag} {x}: {e}"));
        assert_ne!(by_flag, base, "{flag} {x} changes nothing");
        let by_file = merged(&[], &key(&x)).unwrap_or_else(|e| panic!("{}: {e}", key(&x)));
        assert_eq!(by_file, by_flag, "{name} in the file lands elsewhere than {flag}");

        std::env::set_var(&env, &x);
        let by_env = merged(&[], "").unwrap_or_else(|e| panic!("{env}={x}: {e}"));
        assert_eq!(by_env, by_flag, "{env} lands elsewhere than {flag}");
        if let Fallback::Default(d) = spec.fallback {
            assert_eq!(merged(&[], &key(d)).unwrap(), by_flag, "{env} must beat the file");
            assert_eq!(merged(&[&flag, d], "").unwrap(), base, "{flag} must beat {env}");
        }
        std::env::remove_var(&env);

        if let Fallback::Default(d) = spec.fallback {
            assert_eq!(merged(&[&flag, d], "").unwrap(), base, "{name}'s default is not `{d}`");
            assert_eq!(merged(&[&flag, &x], &key(d)).unwrap(), by_flag, "{flag} must beat the file");
            assert_eq!(merged(&[&flag, d], &key(&x)).unwrap(), base, "{flag} must beat the file");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Each setting writes a field of its own: with every example given at
/// once, leaving any one out changes the result. (When two entries write
/// one field, the earlier is overwritten by the later and has no effect
/// here.) The `*_file` settings are left out: two of them may not be given
/// with their inline twins.
fn no_setting_is_shadowed_by_another() {
    let given: Vec<&Spec> = SETTINGS.iter().filter(|s| !s.name.ends_with("_file")).collect();
    let args = |skip: Option<&str>| -> Vec<String> {
        given
            .iter()
            .filter(|s| Some(s.name) != skip)
            .flat_map(|s| [format!("--{}", s.name.replace('_', "-")), s.example.to_string()])
            .collect()
    };
    let with = |skip| {
        let a = args(skip);
        merged(&a.iter().map(String::as_str).collect::<Vec<_>>(), "").unwrap()
    };
    let everything = with(None);
    for spec in &given {
        assert_ne!(with(Some(spec.name)), everything, "{} has no effect of its own", spec.name);
    }
}
