//! `evaler languages`: what the judge can compile and run here, with the
//! installed version of each toolchain or a plain "missing".

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use evaler_server::languages::LanguageSet;

#[derive(Args, Debug)]
pub struct LanguagesArgs {
    /// Language definitions [default: $EVALER_LANGUAGES, else the bundled languages.toml].
    #[arg(long, value_name = "FILE")]
    languages: Option<PathBuf>,
    /// One JSON object per language instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn main(args: LanguagesArgs) -> Result<i32> {
    let set = match &args.languages {
        Some(path) => {
            LanguageSet::load(path).with_context(|| format!("loading {}", path.display()))?
        }
        None => LanguageSet::from_env_or_bundled().context("loading the language definitions")?,
    };
    // Version commands are independent and some (javac, pypy3) take a
    // while: ask them all at once.
    let versions: Vec<Option<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = set
            .iter()
            .map(|lang| s.spawn(move || lang.installed_version()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(None))
            .collect()
    });
    let mut missing = 0;
    for (lang, version) in set.iter().zip(&versions) {
        if version.is_none() {
            missing += 1;
        }
        if args.json {
            let value = serde_json::json!({
                "key": lang.key,
                "aliases": lang.aliases,
                "name": lang.name,
                "installed": version.is_some(),
                "version": version,
            });
            println!("{value}");
        } else {
            let aliases = if lang.aliases.is_empty() {
                String::new()
            } else {
                format!(" ({})", lang.aliases.join(", "))
            };
            println!(
                "{:<24} {:<28} {}",
                format!("{}{aliases}", lang.key),
                lang.name,
                version.as_deref().unwrap_or("missing")
            );
        }
    }
    if missing > 0 && !args.json {
        eprintln!(
            "{missing} language(s) missing: install them with `bash .ci/install.sh` (Debian)"
        );
    }
    Ok(0)
}
