//! Grouping accuracy of the template miner, and how its constants were chosen.
//!
//! ```text
//! loghub_accuracy [DIR] [--corpus TSV]... [--verbose] [--set KNOB=N]...  # GA/PA per set
//! loghub_accuracy [DIR] [--corpus TSV]... --loo         # leave-one-system-out selection
//! ```
//!
//! `DIR` holds Loghub 2k sets (`NAME/NAME_2k.log_structured.csv`); a corpus is a labelled TSV
//! (`EVENT<TAB>message`, `#` comments). `--loo` chooses every constant of
//! [`opsloop_logs::miner::Tuning`] by coordinate ascent of the mean GA over all sets but one,
//! then reports the GA of the set that was left out under the constants chosen without it.
use std::collections::HashMap;

use opsloop_logs::miner::{MinerConfig, TemplateMiner, Tuning};

/// One labelled set: messages with their true event ids and templates.
struct Set {
    name: String,
    messages: Vec<String>,
    events: Vec<String>,
    templates: Vec<String>,
    /// Only Loghub sets are left out in turn; corpora always help choose.
    held_out_candidate: bool,
}

fn load_loghub(dir: &str) -> anyhow::Result<Vec<Set>> {
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    let mut sets = Vec::new();
    for name in names {
        let path = format!("{dir}/{name}/{name}_2k.log_structured.csv");
        if !std::path::Path::new(&path).exists() {
            continue;
        }
        let mut rdr = csv::Reader::from_path(&path)?;
        let headers = rdr.headers()?.clone();
        let col = |n: &str| headers.iter().position(|h| h == n).unwrap_or(0);
        let (ci, ei, ti) = (col("Content"), col("EventId"), col("EventTemplate"));
        let mut set = Set {
            name,
            messages: Vec::new(),
            events: Vec::new(),
            templates: Vec::new(),
            held_out_candidate: true,
        };
        for rec in rdr.records() {
            let rec = rec?;
            set.messages.push(rec[ci].to_string());
            set.events.push(rec[ei].to_string());
            set.templates.push(rec[ti].to_string());
        }
        sets.push(set);
    }
    Ok(sets)
}

fn load_corpus(path: &str) -> anyhow::Result<Set> {
    let text = std::fs::read_to_string(path)?;
    let mut set = Set {
        name: std::path::Path::new(path)
            .file_stem()
            .map_or("corpus".into(), |s| s.to_string_lossy().to_string()),
        messages: Vec::new(),
        events: Vec::new(),
        templates: Vec::new(),
        held_out_candidate: false,
    };
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Some((event, message)) = line.split_once('\t') else {
            anyhow::bail!("{path}:{}: no tab between event and message", n + 1);
        };
        set.events.push(event.to_string());
        set.messages.push(message.to_string());
        set.templates.push(String::new());
    }
    Ok(set)
}

/// GA, PA (strict) and PA with runs of `<*>` as one, and the number of templates.
struct Score {
    ga: f64,
    pa: f64,
    pa_runs: f64,
    templates: usize,
    truth: usize,
    wrong: Vec<WrongGroup>,
}

/// A true event not grouped right: its template, its size, and the predicted templates (with
/// their sizes) its messages went to.
type WrongGroup = (String, usize, Vec<(String, usize)>);

fn runs_as_one(s: &str) -> String {
    // `<*>` followed by any number of (whitespace, `<*>`): one `<*>` (the anchors' convention).
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(i) = rest.find("<*>") {
        out.push_str(&rest[..i]);
        out.push_str("<*>");
        rest = &rest[i + 3..];
        loop {
            let trimmed = rest.trim_start();
            match trimmed.strip_prefix("<*>") {
                Some(after) => rest = after,
                None => break,
            }
        }
    }
    out.push_str(rest);
    out
}

fn score(set: &Set, tuning: Tuning, verbose: bool) -> Score {
    let mut miner = TemplateMiner::new(MinerConfig {
        tuning,
        ..MinerConfig::default()
    });
    let ids: Vec<_> = set.messages.iter().map(|m| miner.add(m).id).collect();
    let ids: Vec<_> = ids
        .into_iter()
        .map(|id| miner.resolve(id).map_or(id, |t| t.id()))
        .collect();
    let mut truth: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut pred: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, (e, id)) in set.events.iter().zip(&ids).enumerate() {
        truth.entry(e).or_default().push(i);
        pred.entry(id.0).or_default().push(i);
    }
    let n = set.messages.len().max(1) as f64;
    let mut correct = 0;
    let (mut pa, mut pa_runs) = (0, 0);
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    for (i, (e, id)) in set.events.iter().zip(&ids).enumerate() {
        if truth[e.as_str()] == pred[&id.0] {
            correct += 1;
        }
        let text = miner.resolve(*id).map(|t| t.text()).unwrap_or("");
        if norm(text) == norm(&set.templates[i]) {
            pa += 1;
        }
        if runs_as_one(text) == runs_as_one(&set.templates[i]) {
            pa_runs += 1;
        }
    }
    let mut wrong = Vec::new();
    if verbose {
        let mut groups: Vec<_> = pred
            .iter()
            .filter(|(_, v)| truth[set.events[v[0]].as_str()] != **v)
            .collect();
        groups.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        for (k, v) in groups.into_iter().take(12) {
            let mut comp: HashMap<&str, usize> = HashMap::new();
            for &i in v {
                *comp.entry(set.events[i].as_str()).or_default() += 1;
            }
            let text = miner
                .resolve(opsloop_logs::miner::TemplateId(*k))
                .map_or(String::new(), |t| t.text().to_string());
            let mut comp: Vec<(String, usize)> = comp
                .into_iter()
                .map(|(e, c)| {
                    let example = set.events.iter().position(|x| x == e).unwrap_or(0);
                    (
                        format!("{e} (truth {}) {}", truth[e].len(), set.messages[example]),
                        c,
                    )
                })
                .collect();
            comp.sort_by_key(|(_, c)| std::cmp::Reverse(*c));
            wrong.push((text, v.len(), comp));
        }
    }
    Score {
        ga: correct as f64 / n,
        pa: pa as f64 / n,
        pa_runs: pa_runs as f64 / n,
        templates: pred.len(),
        truth: truth.len(),
        wrong,
    }
}

/// The constants and the values each may take in the selection.
fn knobs() -> Vec<(&'static str, Vec<usize>)> {
    vec![
        ("variants", vec![2, 3, 4, 5, 6]),
        ("name_variants", vec![3, 4, 5, 6, 8, 12, 1_000_000]),
        ("upper_variants", vec![3, 4, 6, 8, 12, 16, 1_000_000]),
        ("field_variants", vec![2, 3, 4, 5, 6]),
        ("head_variants", vec![2, 3, 4, 5, 6, 8]),
        ("head_context", vec![2, 3, 4, 5, 6, 7, 8]),
        ("quoted_variants", vec![2, 3, 4, 6]),
        ("value_runs", vec![0, 1]),
        ("seen_as_parameter", vec![0, 1]),
        ("keep_prose", vec![0, 1]),
        ("rare_words", vec![0, 1]),
        ("many_values", vec![8, 12, 16, 24, 1_000_000]),
        ("numbered_names", vec![0, 1]),
        ("verb_forms", vec![0, 1]),
        ("head_identifiers", vec![0, 1]),
        ("rare_count", vec![1, 2, 3, 4]),
        ("rare_share", vec![25, 34, 50, 67, 75]),
        ("max_repeats", vec![4, 6, 8, 12, 16]),
        ("phrases", vec![0, 1]),
        ("dotted_names", vec![0, 1]),
        ("quoted_word_variants", vec![2, 3, 4, 5, 6]),
        ("compound_variants", vec![2, 3, 4, 5, 6]),
        ("annotations", vec![0, 1]),
    ]
}

fn get(t: &Tuning, knob: &str) -> usize {
    match knob {
        "variants" => t.variants,
        "name_variants" => t.name_variants,
        "upper_variants" => t.upper_variants,
        "field_variants" => t.field_variants,
        "head_variants" => t.head_variants,
        "head_context" => t.head_context,
        "quoted_variants" => t.quoted_variants,
        "value_runs" => usize::from(t.value_runs),
        "seen_as_parameter" => usize::from(t.seen_as_parameter),
        "keep_prose" => usize::from(t.keep_prose),
        "rare_words" => usize::from(t.rare_words),
        "many_values" => t.many_values,
        "numbered_names" => usize::from(t.numbered_names),
        "verb_forms" => usize::from(t.verb_forms),
        "head_identifiers" => usize::from(t.head_identifiers),
        "rare_count" => t.rare_count as usize,
        "rare_share" => t.rare_share as usize,
        "max_repeats" => t.max_repeats as usize,
        "phrases" => usize::from(t.phrases),
        "dotted_names" => usize::from(t.dotted_names),
        "quoted_word_variants" => t.quoted_word_variants,
        "compound_variants" => t.compound_variants,
        "annotations" => usize::from(t.annotations),
        _ => 0,
    }
}

fn set(t: &mut Tuning, knob: &str, v: usize) {
    match knob {
        "variants" => t.variants = v,
        "name_variants" => t.name_variants = v,
        "upper_variants" => t.upper_variants = v,
        "field_variants" => t.field_variants = v,
        "head_variants" => t.head_variants = v,
        "head_context" => t.head_context = v,
        "quoted_variants" => t.quoted_variants = v,
        "value_runs" => t.value_runs = v != 0,
        "seen_as_parameter" => t.seen_as_parameter = v != 0,
        "keep_prose" => t.keep_prose = v != 0,
        "rare_words" => t.rare_words = v != 0,
        "many_values" => t.many_values = v,
        "numbered_names" => t.numbered_names = v != 0,
        "verb_forms" => t.verb_forms = v != 0,
        "head_identifiers" => t.head_identifiers = v != 0,
        "rare_count" => t.rare_count = v as u64,
        "rare_share" => t.rare_share = v as u32,
        "max_repeats" => t.max_repeats = v as u64,
        "phrases" => t.phrases = v != 0,
        "dotted_names" => t.dotted_names = v != 0,
        "quoted_word_variants" => t.quoted_word_variants = v,
        "compound_variants" => t.compound_variants = v,
        "annotations" => t.annotations = v != 0,
        _ => {}
    }
}

fn show(t: &Tuning) -> String {
    knobs()
        .iter()
        .map(|(k, _)| format!("{k}={}", get(t, k)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A starting point of the selection, owing nothing to the defaults: every count at the
/// middle of its range, every rule off (or, for the second start, on).
fn neutral(rules: usize) -> Tuning {
    let mut t = Tuning::default();
    for (knob, values) in knobs() {
        let v = if values == [0, 1] {
            rules
        } else {
            values[values.len() / 2]
        };
        set(&mut t, knob, v);
    }
    t
}

/// Coordinate ascent of the mean GA over `sets` from two starts ([`neutral`] with every rule
/// off, and with every rule on), keeping the better end (the first on a tie); ties within an
/// ascent keep the current value. One start alone gets stuck where two constants must change
/// together (a count and the rule that makes it safe).
fn choose(sets: &[&Set]) -> (Tuning, f64) {
    let (off, off_score) = ascend(sets, neutral(0));
    let (on, on_score) = ascend(sets, neutral(1));
    if on_score > off_score + 1e-9 {
        (on, on_score)
    } else {
        (off, off_score)
    }
}

fn ascend(sets: &[&Set], start: Tuning) -> (Tuning, f64) {
    let mean =
        |t: Tuning| sets.iter().map(|s| score(s, t, false).ga).sum::<f64>() / sets.len() as f64;
    let mut best = start;
    let mut best_score = mean(best);
    for _ in 0..3 {
        let mut moved = false;
        for (knob, values) in knobs() {
            for v in values {
                if v == get(&best, knob) {
                    continue;
                }
                let mut t = best;
                set(&mut t, knob, v);
                let s = mean(t);
                if s > best_score + 1e-9 {
                    best = t;
                    best_score = s;
                    moved = true;
                }
            }
        }
        if !moved {
            break;
        }
    }
    (best, best_score)
}

fn main() -> anyhow::Result<()> {
    let mut dir = "../shared/data/loghub-2k".to_string();
    let mut corpora = Vec::new();
    let (mut loo, mut verbose) = (false, std::env::var("VERBOSE").is_ok());
    // Constants other than the defaults, for the in-sample table (`--set variants=6`).
    let mut tuning = Tuning::default();
    let mut overridden = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--loo" => loo = true,
            "--verbose" => verbose = true,
            "--corpus" => corpora.push(args.next().unwrap_or_default()),
            "--set" => {
                let arg = args.next().unwrap_or_default();
                let known = knobs().into_iter().map(|(k, _)| k).collect::<Vec<_>>();
                let flags: Vec<&str> = knobs()
                    .into_iter()
                    .filter(|(_, values)| values == &[0, 1])
                    .map(|(k, _)| k)
                    .collect();
                match arg.split_once('=') {
                    Some((k, v)) if known.contains(&k) => {
                        let v: usize = v.parse()?;
                        if flags.contains(&k) && v > 1 {
                            anyhow::bail!("--set {k}= takes 0 or 1");
                        }
                        if !flags.contains(&k) && !(1..=1_000_000).contains(&v) {
                            anyhow::bail!("--set {k}= takes a count from 1 to 1000000");
                        }
                        set(&mut tuning, k, v);
                        overridden = true;
                    }
                    _ => anyhow::bail!("--set wants KNOB=N with KNOB one of {known:?}"),
                }
            }
            _ => dir = a,
        }
    }
    if loo && overridden {
        anyhow::bail!("--set changes the in-sample table only; --loo chooses every constant");
    }
    let mut sets = load_loghub(&dir)?;
    for c in &corpora {
        sets.push(load_corpus(c)?);
    }
    if !loo {
        let (mut sum, mut n) = (0.0, 0);
        println!("| set | GA | PA | PA, `<*>` runs as one | templates | truth |");
        println!("|---|---|---|---|---|---|");
        for s in &sets {
            let r = score(s, tuning, verbose);
            println!(
                "| {} | {:.3} | {:.3} | {:.3} | {} | {} |",
                s.name, r.ga, r.pa, r.pa_runs, r.templates, r.truth
            );
            for (text, n, comp) in &r.wrong {
                println!("    PRED n={n}: {text}");
                for (e, c) in comp.iter().take(4) {
                    println!("        {c:4} {}", &e[..e.len().min(160)]);
                }
            }
            if s.held_out_candidate {
                sum += r.ga;
                n += 1;
            }
        }
        println!(
            "average GA over the Loghub sets: {:.3}",
            sum / n.max(1) as f64
        );
        return Ok(());
    }
    println!(
        "| left out | GA, defaults | GA, constants chosen without it | constants chosen without it |"
    );
    println!("|---|---|---|---|");
    let (mut sum_in, mut sum_out, mut n) = (0.0, 0.0, 0);
    for (i, h) in sets
        .iter()
        .enumerate()
        .filter(|(_, s)| s.held_out_candidate)
    {
        let rest: Vec<&Set> = sets
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, s)| s)
            .collect();
        let (t, _) = choose(&rest);
        let out = score(h, t, false).ga;
        let inn = score(h, Tuning::default(), false).ga;
        println!("| {} | {inn:.3} | {out:.3} | {} |", h.name, show(&t));
        sum_in += inn;
        sum_out += out;
        n += 1;
    }
    println!(
        "| **average** | **{:.3}** | **{:.3}** | |",
        sum_in / n as f64,
        sum_out / n as f64
    );
    let all: Vec<&Set> = sets.iter().collect();
    let (t, s) = choose(&all);
    println!("\nchosen on all sets: {} (mean GA {s:.3})", show(&t));
    println!("defaults:           {}", show(&Tuning::default()));
    // Which constants the Loghub sets can tell apart at all: the spread of their mean GA over
    // each constant's values, the others at their defaults. A flat one is decided by the
    // corpora and the unit tests of the patterns, not by these sets.
    let loghub: Vec<&Set> = sets.iter().filter(|s| s.held_out_candidate).collect();
    let mean = |t: Tuning| {
        loghub.iter().map(|s| score(s, t, false).ga).sum::<f64>() / loghub.len().max(1) as f64
    };
    let mut flat = Vec::new();
    let mut decided = Vec::new();
    for (knob, values) in knobs() {
        let scores: Vec<f64> = values
            .iter()
            .map(|&v| {
                let mut t = Tuning::default();
                set(&mut t, knob, v);
                mean(t)
            })
            .collect();
        let spread = scores.iter().cloned().fold(f64::MIN, f64::max)
            - scores.iter().cloned().fold(f64::MAX, f64::min);
        if spread < 0.0005 {
            flat.push(knob);
        } else {
            decided.push(format!("{knob} ({spread:.3})"));
        }
    }
    println!(
        "constants the Loghub sets tell apart (spread of their mean GA over the values, the \
         rest at the defaults): {}",
        decided.join(", ")
    );
    println!("flat on the Loghub sets: {}", flat.join(", "));
    let same = show(&t) == show(&Tuning::default());
    println!(
        "the defaults {} the constants chosen on all sets",
        if same { "are" } else { "are not" }
    );
    Ok(())
}
