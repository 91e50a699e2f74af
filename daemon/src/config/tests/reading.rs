//! How often a server file's text is read: once when every block reads cleanly, again only
//! where an error needs its position or the file holds a YAML tag.

use std::sync::atomic::Ordering;

use super::*;

fn parse(text: &str) -> source::Source {
    source::Source::parse(Path::new("/srv/mcp/many.yaml"), text.to_owned()).expect("valid YAML")
}

fn servers_of(source: &source::Source, errors: &mut Vec<ConfigError>) -> Vec<ServerConfig> {
    let f = fixture();
    validate::server_file(source, &f.daemon(), &f.env, &any_binary, errors)
}

/// `count` servers with a few blocks each, as operators write them.
fn many_servers(count: usize) -> String {
    let mut text = String::from("mcp_servers:\n");
    for i in 0..count {
        text += &format!(
            "  s{i:04}:\n    binary: mcp-echo\n    description: server {i}\n    \
             restart: {{backoff: 2s}}\n    health: {{interval: 5s}}\n    \
             limits: {{memory: 64MiB}}\n"
        );
    }
    text
}

#[test]
fn a_file_whose_blocks_read_cleanly_is_parsed_once_however_many_servers_it_holds() {
    // Reading each block from the text parsed the whole file again per block: 200 servers
    // cost ~1000 parses of a 200-server file, most of a reload at 1000 servers.
    let source = parse(&many_servers(200));
    let mut errors = Vec::new();
    let servers = servers_of(&source, &mut errors);
    assert!(errors.is_empty(), "{}", show(&errors));
    assert_eq!(servers.len(), 200);
    let last = servers.iter().find(|s| s.name == "s0199").expect("s0199");
    assert_eq!(last.description, "server 199");
    assert_eq!(last.restart.backoff, Duration::from_secs(2));
    assert_eq!(last.health.interval, Duration::from_secs(5));
    assert_eq!(last.limits.memory, Some(64 << 20));
    let reads = source.text_reads.load(Ordering::Relaxed);
    assert_eq!(reads, 0, "the text was read again {reads} times");
}

#[test]
fn a_block_with_an_error_is_read_from_the_text_and_the_error_keeps_its_line() {
    let mut text = many_servers(3);
    text += "  bad:\n    binary: mcp-echo\n    restart: {backoff: soon}\n    colour: blue\n";
    let source = parse(&text);
    let mut errors = Vec::new();
    servers_of(&source, &mut errors);
    expect_errors(
        &errors,
        "many.yaml",
        &[
            (
                22,
                "invalid value for \"backoff\" in server \"bad\" restart",
            ),
            (23, "unknown key \"colour\" in server \"bad\""),
        ],
    );
}

#[test]
fn a_file_with_a_yaml_tag_or_a_key_that_is_not_a_string_is_read_from_its_text() {
    // The parsed document's reader looks through tags and the text's does not, and a number
    // key (`2024:`) is found by its text: such a file means what the text's reader makes of it.
    for (text, name, description) in [
        (
            "mcp_servers:\n  echo:\n    binary: mcp-echo\n    description: !note hello\n",
            "echo",
            "hello",
        ),
        (
            "mcp_servers:\n  2024:\n    binary: mcp-echo\n    description: year\n",
            "2024",
            "year",
        ),
    ] {
        let source = parse(text);
        let mut errors = Vec::new();
        let servers = servers_of(&source, &mut errors);
        assert!(source.text_reads.load(Ordering::Relaxed) > 0, "{text}");
        let read = servers
            .iter()
            .map(|s| (s.name.as_str(), s.description.as_str()))
            .collect::<Vec<_>>();
        assert_eq!(read, [(name, description)], "{}", show(&errors));
        assert!(errors.is_empty(), "{}", show(&errors));
    }
}

#[test]
fn every_value_of_the_fuzz_seeds_read_both_ways_means_the_same() {
    // Debug builds check each block read from the parsed document against the text's
    // reading (`Source::block`); this feeds that check every kind of YAML value in place of
    // each value of the seeds.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests-data/fuzz/config_load");
    let values = [
        "5",
        "\"5\"",
        "'5'",
        "-1",
        "1.5",
        "0x10",
        "0o17",
        ".inf",
        "70000",
        "true",
        "yes",
        "~",
        "",
        "\"\"",
        "10s",
        "\"250ms\"",
        "4MiB",
        "[a, 1]",
        "[]",
        "{a: 1}",
        "{}",
        "0660",
        "\"0660\"",
        "x\\u0000",
        "!!str 5",
        "!!int \"5\"",
        "&a 5",
        "[&b 1, *b]",
        "!custom x",
    ];
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus dir") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        for (at, line) in lines.iter().enumerate() {
            let Some((key, _)) = line.split_once(": ") else {
                continue;
            };
            for value in values {
                let mut changed = lines.clone();
                let replaced = format!("{key}: {value}");
                changed[at] = &replaced;
                crate::fuzzing::config_load(changed.join("\n").as_bytes());
                checked += 1;
            }
        }
    }
    assert!(checked > 1000, "only {checked} variants");
}
