//! Scenario files: a run's flags in TOML, so a benchmark is a file that can
//! be kept and shared.
//!
//! `telehub-loadtest --scenario bench.toml` (or `telehub-loadtest chat
//! --scenario bench.toml --rate 5000`) reads the file's keys as the flags of
//! the same names, `_` for `-`, and a `scenario` key names the subcommand
//! when the command line does not. A flag on the command line wins over the
//! file. Values: strings and numbers as they are (durations as strings such
//! as `"20s"`), arrays joined with commas, `true` for a flag without a value.
//!
//! ```toml
//! scenario = "chat"
//! url = "http://127.0.0.1:8080"
//! rooms = 1000
//! rate = [10000, 20000, 25000]
//! duration = "20s"
//! json = "bench-results/chat.json"
//! ```
//!
//! The API key stays out of files: use `TELEHUB_API_KEY`.

use anyhow::Context;

/// The subcommands a file may name.
const SCENARIOS: [&str; 4] = ["chat", "idle", "baseline", "consult"];

/// `args` (the process's, program name first) with `--scenario FILE`
/// replaced by the flags the file sets and the command line does not.
pub fn expand(args: Vec<String>) -> anyhow::Result<Vec<String>> {
    let Some(at) = args.iter().position(|a| a == "--scenario" || a.starts_with("--scenario=")) else {
        return Ok(args);
    };
    let (path, taken) = match args[at].strip_prefix("--scenario=") {
        Some(path) => (path.to_owned(), 1),
        None => (args.get(at + 1).cloned().context("--scenario needs a file")?, 2),
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read scenario file {path}"))?;
    let table: toml::Table = text.parse().with_context(|| format!("{path} is not TOML"))?;
    let mut rest: Vec<String> = args[..at].iter().chain(&args[at + taken..]).cloned().collect();

    let given = |flag: &str| rest.iter().any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    let mut from_file = Vec::new();
    let mut scenario = None;
    for (key, value) in &table {
        if key == "scenario" {
            scenario =
                Some(value.as_str().context("scenario must be a string: chat, idle, baseline or consult")?.to_owned());
            continue;
        }
        anyhow::ensure!(key != "api_key", "{path}: keep the API key out of files (TELEHUB_API_KEY)");
        let flag = format!("--{}", key.replace('_', "-"));
        if given(&flag) {
            continue;
        }
        match value {
            toml::Value::Boolean(true) => from_file.push(flag),
            toml::Value::Boolean(false) => {}
            other => {
                from_file.push(flag);
                from_file.push(flag_value(key, other)?);
            }
        }
    }
    // The subcommand: the command line's, else the file's.
    let position = rest.iter().position(|a| SCENARIOS.contains(&a.as_str()));
    let insert_at = match (position, scenario) {
        (Some(i), _) => i + 1,
        (None, Some(name)) => {
            anyhow::ensure!(SCENARIOS.contains(&name.as_str()), "{path}: unknown scenario {name:?}");
            rest.insert(1.min(rest.len()), name);
            2.min(rest.len())
        }
        (None, None) => anyhow::bail!("{path} has no `scenario` key and the command line names none"),
    };
    rest.splice(insert_at..insert_at, from_file);
    Ok(rest)
}

/// A TOML value as a flag's value.
fn flag_value(key: &str, value: &toml::Value) -> anyhow::Result<String> {
    Ok(match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(x) => x.to_string(),
        toml::Value::Array(items) => {
            items.iter().map(|item| flag_value(key, item)).collect::<anyhow::Result<Vec<_>>>()?.join(",")
        }
        other => anyhow::bail!("{key}: a {} is not a flag value", other.type_str()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scenario file in the temporary folder; `arg` is its path.
    struct File(tempfile::NamedTempFile);

    impl File {
        fn arg(&self) -> String {
            self.0.path().to_str().unwrap().to_owned()
        }
    }

    fn file(text: &str) -> File {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        File(f)
    }

    fn argv(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    const BENCH: &str = r#"
scenario = "chat"
url = "http://127.0.0.1:9000"
rooms = 1000
rate = [10000, 20000]
duration = "20s"
source_addrs = ["127.0.0.2", "127.0.0.3"]
"#;

    #[test]
    fn a_file_becomes_flags_after_its_scenario() {
        let f = file(BENCH);
        let out = expand(argv(&["telehub-loadtest", "--scenario", &f.arg()])).unwrap();
        assert_eq!(
            out,
            argv(&[
                "telehub-loadtest",
                "chat",
                "--duration",
                "20s",
                "--rate",
                "10000,20000",
                "--rooms",
                "1000",
                "--source-addrs",
                "127.0.0.2,127.0.0.3",
                "--url",
                "http://127.0.0.1:9000",
            ])
        );
        // And clap takes them.
        use clap::Parser;
        let mut out = out;
        out.extend(argv(&["--api-key", "k"]));
        let cli = crate::cli::Cli::try_parse_from(out).unwrap();
        let crate::cli::Command::Chat(args) = cli.command else { panic!("chat") };
        assert_eq!((args.target.rooms, args.rate.as_slice()), (1000, &[10000.0, 20000.0][..]));
        assert_eq!(args.duration, std::time::Duration::from_secs(20));
    }

    #[test]
    fn the_command_line_wins() {
        let f = file(BENCH);
        let out = expand(argv(&["telehub-loadtest", "chat", "--rate=5000", "--scenario", &f.arg(), "--rooms", "10"]))
            .unwrap();
        assert!(!out.iter().any(|a| a == "10000,20000"), "{out:?}");
        assert_eq!(out.iter().filter(|a| a.starts_with("--rooms")).count(), 1, "{out:?}");
        assert_eq!(out.iter().filter(|a| *a == "chat").count(), 1);
        assert!(out.contains(&"--url".to_owned()), "the rest of the file still applies");
    }

    #[test]
    fn bad_files_are_refused_clearly() {
        let no_scenario = file("rooms = 3");
        let err = expand(argv(&["t", "--scenario", &no_scenario.arg()])).unwrap_err().to_string();
        assert!(err.contains("no `scenario` key"), "{err}");
        let key = file("scenario = \"chat\"\napi_key = \"secret\"");
        let err = expand(argv(&["t", "--scenario", &key.arg()])).unwrap_err().to_string();
        assert!(err.contains("TELEHUB_API_KEY"), "{err}");
        let broken = file("rooms = ");
        assert!(expand(argv(&["t", "--scenario", &broken.arg()])).unwrap_err().to_string().contains("not TOML"));
        let err = expand(argv(&["t", "--scenario", "/nonexistent.toml"])).unwrap_err().to_string();
        assert!(err.contains("cannot read"), "{err}");
        assert_eq!(expand(argv(&["t", "chat", "--rooms", "2"])).unwrap(), argv(&["t", "chat", "--rooms", "2"]));
    }

    #[test]
    fn the_consult_example_sets_storms_displays_and_the_html_report() {
        use clap::Parser;
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/consult.toml");
        let mut out = expand(argv(&["telehub-loadtest", "--scenario", path])).unwrap();
        assert!(out.windows(2).any(|w| w == ["--reconnect-share", "0.25"]), "{out:?}");
        out.extend(argv(&["--api-key", "k"]));
        let cli = crate::cli::Cli::try_parse_from(out).unwrap();
        let crate::cli::Command::Consult(args) = cli.command else { panic!("consult") };
        args.validate().unwrap();
        assert_eq!((args.reconnect_share, args.storm_at), (0.25, Some(std::time::Duration::from_secs(32))));
        assert_eq!((args.doctors, args.displays, args.clinic.as_str()), (Some(20), 20, "c-load"));
        assert_eq!(args.html.as_deref(), Some(std::path::Path::new("bench-results/consult.html")));
    }

    #[test]
    fn the_chat_example_steps_the_rate_and_holds_the_run_to_the_core_bound() {
        use clap::Parser;
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/chat.toml");
        let mut out = expand(argv(&["telehub-loadtest", "--scenario", path])).unwrap();
        out.extend(argv(&["--api-key", "k"]));
        let cli = crate::cli::Cli::try_parse_from(out).unwrap();
        let crate::cli::Command::Chat(args) = cli.command else { panic!("chat") };
        args.validate().unwrap();
        assert_eq!(args.rate, [12_500.0, 20_000.0, 25_000.0]);
        let thresholds: Vec<String> = args.target.thresholds.iter().map(ToString::to_string).collect();
        assert_eq!(thresholds, ["latency_ms.delivery.p99<50", "lost==0"]);
    }

    #[test]
    fn the_idle_example_holds_19000_sessions_in_two_processes() {
        use clap::Parser;
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/idle.toml");
        let mut out = expand(argv(&["telehub-loadtest", "--scenario", path, "--pid", "42"])).unwrap();
        out.extend(argv(&["--api-key", "k"]));
        let cli = crate::cli::Cli::try_parse_from(out).unwrap();
        let crate::cli::Command::Idle(args) = cli.command else { panic!("idle") };
        args.target.validate().unwrap();
        assert_eq!((args.target.sessions(), args.processes, args.pid), (19_000, 2, Some(42)));
        assert_eq!(args.hold, std::time::Duration::from_secs(30));
    }
}
