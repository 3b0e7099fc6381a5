//! docs/config.md stays true to the code: every key the configuration
//! accepts is documented, every documented key is accepted, and every topic
//! config Skiff knows is listed.

use skiff_broker::config::{BrokerConfig, ConfigSources};
use skiff_broker::topic_config::{ENFORCED, NO_EFFECT};

fn docs() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/config.md");
    std::fs::read_to_string(path).expect("docs/config.md exists")
}

fn load(set: &str) -> Result<BrokerConfig, String> {
    BrokerConfig::load(&ConfigSources {
        file: None,
        sets: vec![set.to_string()],
        env: false,
    })
    .map_err(|e| e.to_string())
}

/// The fields serde expects in the section `prefix` (from its "unknown
/// field ..., expected one of ..." error).
fn fields_of(prefix: &str) -> Vec<String> {
    let err = load(&format!("{prefix}zz_not_a_key=1")).expect_err("unknown key rejected");
    let list = err
        .split_once("expected")
        .unwrap_or_else(|| panic!("no field list in {err:?}"))
        .1;
    // The names are quoted in backticks; keep what looks like a key.
    list.split('`')
        .filter(|f| {
            !f.is_empty()
                && f.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .map(|f| format!("{prefix}{f}"))
        .collect()
}

#[test]
fn every_accepted_key_is_documented() {
    let docs = docs();
    let sections = [
        "",
        "storage.",
        "storage.wal.",
        "storage.upload.",
        "storage.block_cache.",
        "compaction.",
        "groups.",
        "object_store.",
        "object_store.retry.",
        "metadata.",
    ];
    let mut checked = 0;
    for prefix in sections {
        for key in fields_of(prefix) {
            // Sections themselves are documented by their keys.
            let section = format!("{key}.");
            if sections.contains(&section.as_str()) {
                continue;
            }
            assert!(
                docs.contains(&format!("| `{key}` |")),
                "{key} is missing from docs/config.md"
            );
            checked += 1;
        }
    }
    assert!(checked > 60, "only {checked} keys found");
}

#[test]
fn every_documented_key_is_accepted() {
    let docs = docs();
    let (settings, _topics) = docs
        .split_once("## Topic configs")
        .expect("a topic configs section");
    let mut checked = 0;
    for line in settings.lines() {
        let Some(key) = line
            .strip_prefix("| `")
            .and_then(|l| l.split_once("` |"))
            .map(|(k, _)| k)
        else {
            continue;
        };
        if let Err(e) = load(&format!("{key}=[[")) {
            assert!(
                !e.contains("unknown field"),
                "docs/config.md documents {key}, which the code does not know: {e}"
            );
        }
        checked += 1;
    }
    assert!(checked > 60, "only {checked} documented keys");
}

#[test]
fn every_topic_config_is_documented() {
    let docs = docs();
    let (_, topics) = docs
        .split_once("## Topic configs")
        .expect("a topic configs section");
    for def in ENFORCED.iter().chain(NO_EFFECT) {
        assert!(
            topics.contains(&format!("| `{}` |", def.name)),
            "topic config {} is missing from docs/config.md",
            def.name
        );
    }
}
