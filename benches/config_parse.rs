//! The config loader on hostile input (issue 13): a flat mapping of N keys (each key checked for
//! duplicates; before the fix a linear search, so the time grew with N squared) and the
//! "billion laughs" alias document (before the fix: copied until memory ran out). The time per
//! key must stay flat as N grows.
//!
//! Run: `cargo bench --bench config_parse`.

use divan::counter::ItemsCount;
use divan::{Bencher, black_box};

fn main() {
    divan::main();
}

/// A valid config whose `service::resource` has `keys` entries.
fn flat(keys: usize) -> String {
    let mut text = String::from(
        "receivers:\n  linuxutil: {}\nexporters:\n  debug: {}\nservice:\n  pipelines:\n    metrics: {receivers: [linuxutil], exporters: [debug]}\n  resource:\n",
    );
    for i in 0..keys {
        text.push_str(&format!("    k{i:07}: v\n"));
    }
    text
}

/// `config::load_str` of [`flat`]: parse, duplicate-key index, positions, substitution.
#[divan::bench(args = [20_000, 40_000, 400_000], sample_count = 5)]
fn flat_mapping(bencher: Bencher, keys: usize) {
    let text = flat(keys);
    bencher.counter(ItemsCount::new(keys)).bench(|| black_box(fovea::config::load_str("big.yaml", &text).is_ok()));
}

/// The nine-level alias document, refused at the alias that crosses the copy bound.
#[divan::bench(sample_count = 20)]
fn alias_bomb_refused(bencher: Bencher) {
    let mut text = String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for pair in names.windows(2) {
        let refs = vec![format!("*{}", pair[0]); 9].join(",");
        text.push_str(&format!("{}: &{} [{refs}]\n", pair[1], pair[1]));
    }
    bencher.bench(|| black_box(fovea::config::load_str("bomb.yaml", &text).is_err()));
}

/// The YAML parser's events alone (saphyr-parser), for the share of the loader's time that is
/// not fovea's.
#[divan::bench(args = [20_000, 400_000], sample_count = 3)]
fn events_only(bencher: Bencher, keys: usize) {
    let text = flat(keys);
    bencher.counter(ItemsCount::new(keys)).bench(|| {
        let mut parser = saphyr_parser::Parser::new_from_str(&text);
        let mut n = 0;
        while let Some(Ok(_)) = parser.next_event() {
            n += 1;
        }
        black_box(n)
    });
}
