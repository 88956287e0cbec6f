use super::*;
use clap::{CommandFactory, Parser};
use fanout_ws::WsConfig;

#[test]
fn durations() {
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
    assert!(parse_duration("x").is_err());
    assert!(parse_duration("5d").is_err());
}

#[test]
fn precedence_flag_over_file_over_default() {
    let file: FileConfig = toml::from_str(
        "listen = \"127.0.0.1:9000\"\nmax_message_size = 1000\nping_interval = \"5s\"\npong_timeout = \"6s\"\n",
    )
    .unwrap();
    let cli = Cli::try_parse_from(["fanout-server", "--max-message-size", "2000"]).unwrap();
    let s = Settings::merge(cli, file).unwrap();
    assert_eq!(s.listen, "127.0.0.1:9000".parse().unwrap());
    assert_eq!(s.ws.max_message_size, 2000);
    assert_eq!(s.ws.ping_interval, Duration::from_secs(5));
    assert_eq!(s.ws.max_subscriptions, 64);
}

#[test]
fn send_buffer_defaults_to_64k_and_zero_means_kernel() {
    let s = Settings::merge(Cli::try_parse_from(["fanout-server"]).unwrap(), FileConfig::default()).unwrap();
    assert_eq!(s.ws.send_buffer_size, Some(64 * 1024));
    let cli = Cli::try_parse_from(["fanout-server", "--send-buffer-size", "0"]).unwrap();
    assert_eq!(Settings::merge(cli, FileConfig::default()).unwrap().ws.send_buffer_size, None);
    let file: FileConfig = toml::from_str("send_buffer_size = 8192").unwrap();
    let s = Settings::merge(Cli::try_parse_from(["fanout-server"]).unwrap(), file).unwrap();
    assert_eq!(s.ws.send_buffer_size, Some(8192));
}

/// Issue 14, item 14: a huge duration used to panic (`from_secs_f64`) or
/// pass and panic later (`Instant + Duration`); every one is an error now.
#[test]
fn huge_durations_are_errors_not_panics() {
    for d in ["1e300", "1e20s", "18446744073709551616", "400d", "9000h", "inf", "NaN"] {
        assert!(parse_duration(d).is_err(), "{d}");
    }
    assert_eq!(parse_duration("8760h"), Ok(fanout_ws::MAX_DURATION));
    let cli = Cli::try_parse_from(["fanout-server", "--ping-interval", "1e18"]);
    assert!(cli.is_err(), "refused by the flag's parser");
    let file: FileConfig = toml::from_str("drain_timeout = \"1e300s\"").unwrap();
    let e = Settings::merge(Cli::try_parse_from(["fanout-server"]).unwrap(), file).unwrap_err();
    assert!(e.contains("drain_timeout"), "{e}");
}

#[test]
fn secrets_from_files_and_not_both() {
    let dir = std::env::temp_dir();
    let p = dir.join(format!("fanout-cfg-{}-jwt", std::process::id()));
    std::fs::write(&p, format!("{}\n", "j".repeat(32))).unwrap();
    let k = dir.join(format!("fanout-cfg-{}-key", std::process::id()));
    std::fs::write(&k, "api-key-from-file\n").unwrap();
    let cli = Cli::try_parse_from([
        "fanout-server",
        "--jwt-secret-file",
        p.to_str().unwrap(),
        "--api-key-file",
        k.to_str().unwrap(),
    ])
    .unwrap();
    let s = Settings::merge(cli, FileConfig::default()).unwrap();
    assert_eq!(s.ws.jwt_secret, Some("j".repeat(32)));
    assert_eq!(s.api_key.as_deref(), Some("api-key-from-file"));
    let both =
        Cli::try_parse_from(["fanout-server", "--api-key", "x", "--api-key-file", k.to_str().unwrap()])
            .unwrap();
    assert!(Settings::merge(both, FileConfig::default()).unwrap_err().contains("not both"));
    let short = Cli::try_parse_from(["fanout-server", "--jwt-secret", "short"]).unwrap();
    assert!(Settings::merge(short, FileConfig::default()).unwrap_err().contains("32 bytes"));
}

#[test]
fn history_flags_file_and_topic_rules() {
    let none = |args: &[&str]| Settings::merge(Cli::try_parse_from(args).unwrap(), FileConfig::default());
    let d = none(&["fanout-server"]).unwrap();
    assert_eq!(
        (d.history.history_size, d.history.history_ttl),
        (128, Duration::from_secs(300)),
        "on by default"
    );
    let s = none(&["fanout-server", "--history-size", "0"]).unwrap();
    assert_eq!(s.history.history_size, 0);
    let file: FileConfig = toml::from_str(
        "history_ttl = \"1m\"\n[[topics]]\npattern = \"prices.*\"\nhistory_size = 1000\noverflow = \"conflate\"\n\
         [[topics]]\npattern = \"chat.*\"\nhistory_ttl = \"10s\"\n",
    )
    .unwrap();
    let s = Settings::merge(Cli::try_parse_from(["fanout-server"]).unwrap(), file).unwrap();
    assert_eq!(s.history.history_ttl, Duration::from_secs(60));
    assert_eq!(
        s.topic_rules,
        vec![
            TopicRule {
                pattern: "prices.*".into(),
                options: TopicOptions {
                    history_size: 1000,
                    history_ttl: Duration::from_secs(60),
                    overflow: Some(fanout_core::Overflow::Conflate),
                    shared_log: 256,
                    shared_log_from: 256
                }
            },
            TopicRule {
                pattern: "chat.*".into(),
                options: TopicOptions {
                    history_size: 128,
                    history_ttl: Duration::from_secs(10),
                    overflow: None,
                    shared_log: 256,
                    shared_log_from: 256
                }
            },
        ],
        "unset keys of a rule come from the flags and top-level keys"
    );
    // Bad settings are clear errors at start.
    let bad = |toml_text: &str| {
        let f: FileConfig = toml::from_str(toml_text).unwrap();
        Settings::merge(Cli::try_parse_from(["fanout-server"]).unwrap(), f).unwrap_err()
    };
    assert!(bad("history_ttl = \"0s\"").contains("history_ttl"));
    assert!(bad("history_size = 2000000").contains("at most"));
    assert!(bad("[[topics]]\npattern = \"\"\n").contains("pattern"));
    // A `*` inside a segment is no pattern (it used to match `user.420`).
    let e = bad("[[topics]]\npattern = \"user.*\"\n[[topics]]\npattern = \"user.42*\"\n");
    assert!(e.contains("topics[1]") && e.contains("whole segment"), "{e}");
    assert!(
        toml::from_str::<FileConfig>("[[topics]]\npattern = \"a\"\noverflow = \"squash\"\n").is_err(),
        "an unknown policy is refused"
    );
}

#[test]
fn slow_consumer_settings_from_flag_file_and_default() {
    let s = Settings::merge(Cli::try_parse_from(["fanout-server"]).unwrap(), FileConfig::default()).unwrap();
    assert_eq!(s.ws.max_queued_bytes, 4 * 1024 * 1024);
    assert_eq!(s.ws.slow_consumer_timeout, Duration::from_secs(10));
    let file: FileConfig =
        toml::from_str("max_queued_bytes = 65536\nslow_consumer_timeout = \"3s\"\n").unwrap();
    let cli = Cli::try_parse_from(["fanout-server", "--slow-consumer-timeout", "500ms"]).unwrap();
    let s = Settings::merge(cli, file).unwrap();
    assert_eq!(s.ws.max_queued_bytes, 65536);
    assert_eq!(s.ws.slow_consumer_timeout, Duration::from_millis(500));
    let cli = Cli::try_parse_from(["fanout-server", "--max-queued-bytes", "10"]).unwrap();
    assert!(Settings::merge(cli, FileConfig::default()).unwrap_err().contains("max_queued_bytes"));
}

#[test]
fn unknown_file_keys_are_errors() {
    assert!(toml::from_str::<FileConfig>("lisen = \"x\"").is_err());
}

#[test]
fn bad_values_are_errors() {
    let cli = Cli::try_parse_from(["fanout-server", "--pong-timeout", "0s"]).unwrap();
    assert!(Settings::merge(cli, FileConfig::default()).unwrap_err().contains("pong_timeout"));
}

/// clap's own checks of the generated command (unique flags, ids, values).
#[test]
fn the_command_is_well_formed() {
    Cli::command().debug_assert();
}

/// The server's defaults for the transport are `WsConfig`'s own: a library
/// user and the server get the same gateway from `default()`.
#[test]
fn server_defaults_are_the_transports() {
    assert_eq!(format!("{:?}", Settings::default().ws), format!("{:?}", WsConfig::default()));
}

/// Every setting's default parses, and every example is another value.
#[test]
fn defaults_parse_and_examples_differ() {
    let d = Settings::default();
    assert_eq!(d.ws.pong_timeout, Duration::from_secs(20), "the --help text used to say 60s");
    for spec in SETTINGS {
        if let Fallback::Default(text) = spec.fallback {
            assert_ne!(text, spec.example, "{}: the example must differ from the default", spec.name);
        }
    }
}

/// `docs/config.md`'s reference table is the settings table, row for row:
/// flags, environment variables, defaults and meanings cannot drift from
/// what the server does. `UPDATE_DOCS=1` rewrites it instead of failing.
#[test]
fn docs_reference_is_the_settings_table() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("| flag | env | default | meaning |").expect("the reference table's header");
    let len = text[start..].find("\n\n").expect("a blank line after the table") + 1;
    let want = reference_table();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, format!("{}{want}{}", &text[..start], &text[start + len..])).unwrap();
        return;
    }
    assert_eq!(
        &text[start..start + len],
        want,
        "docs/config.md differs from the settings table (table.rs); run \
         `UPDATE_DOCS=1 cargo test -p fanout-server --lib docs_reference` to rewrite it"
    );
}

/// The example file of `docs/config.md` uses only keys the table declares,
/// with values of their types (its secret files do not exist here, so it is
/// parsed, not merged).
#[test]
fn docs_example_file_parses() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.md");
    let text = std::fs::read_to_string(path).unwrap();
    let start = text.find("## Example file").unwrap();
    let body = &text[start..];
    let open = body.find("```toml\n").unwrap() + "```toml\n".len();
    let close = open + body[open..].find("```").unwrap();
    let f: FileConfig = toml::from_str(&body[open..close]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.topics.map(|t| t.len()), Some(2));
}

#[test]
fn dashboard_on_at_root_moved_or_off() {
    let parse = |args: &[&str], file: &str| {
        Settings::merge(Cli::try_parse_from(args).unwrap(), toml::from_str(file).unwrap())
    };
    assert_eq!(parse(&["fanout-server"], "").unwrap().dashboard(), Some("/"));
    let s = parse(&["fanout-server", "--dashboard-path", "/ops"], "").unwrap();
    assert_eq!(s.dashboard(), Some("/ops"));
    assert_eq!(parse(&["fanout-server"], "dashboard_path = \"/d\"").unwrap().dashboard(), Some("/d"));
    assert_eq!(parse(&["fanout-server", "--no-dashboard"], "").unwrap().dashboard(), None);
    assert_eq!(parse(&["fanout-server", "--no-dashboard", "false"], "").unwrap().dashboard(), Some("/"));
    assert_eq!(parse(&["fanout-server"], "no_dashboard = true").unwrap().dashboard(), None);
    assert!(parse(&["fanout-server", "--dashboard-path", "ops"], "").unwrap_err().contains("dashboard_path"));
    assert!(parse(&["fanout-server", "--dashboard-path", "/ws"], "").unwrap_err().contains("dashboard_path"));
}
