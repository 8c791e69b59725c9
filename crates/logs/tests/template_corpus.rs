//! The miner on the labelled corpus of realistic lines (`corpus/labelled.tsv`, written for
//! this project: web servers, databases, Kubernetes components, systemd, JVM services): its
//! grouping accuracy with the default settings, and template ids that stay the same across
//! runs and across a saved state.

use std::collections::HashMap;

use opsloop_logs::miner::{MinerConfig, MinerState, TemplateId, TemplateMiner};

/// (true event, message) pairs of the corpus.
fn corpus() -> Vec<(String, String)> {
    let text = include_str!("corpus/labelled.tsv");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| match l.split_once('\t') {
            Some((event, message)) => (event.to_string(), message.to_string()),
            None => panic!("corpus lines are EVENT<TAB>message, not {l:?}"),
        })
        .collect()
}

/// Grouping accuracy: the share of messages whose predicted group holds exactly the messages
/// of their true group.
fn grouping_accuracy(truth: &[&str], predicted: &[TemplateId]) -> f64 {
    let mut by_truth: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut by_predicted: HashMap<TemplateId, Vec<usize>> = HashMap::new();
    for (i, (t, p)) in truth.iter().zip(predicted).enumerate() {
        by_truth.entry(t).or_default().push(i);
        by_predicted.entry(*p).or_default().push(i);
    }
    let correct: usize = by_predicted
        .values()
        .filter(|members| by_truth[truth[members[0]]] == **members)
        .map(Vec::len)
        .sum();
    correct as f64 / truth.len() as f64
}

fn mine(miner: &mut TemplateMiner, messages: &[&str]) -> Vec<TemplateId> {
    messages.iter().map(|m| miner.add(m).id).collect()
}

/// The corpus mined with the defaults: each line's final template id (ids are final only at
/// the end, since templates generalise as messages come).
fn final_ids(messages: &[&str]) -> Vec<TemplateId> {
    let mut miner = TemplateMiner::new(MinerConfig::default());
    mine(&mut miner, messages)
        .into_iter()
        .map(|id| miner.resolve(id).map_or(id, |t| t.id()))
        .collect()
}

#[test]
fn the_labelled_corpus_is_grouped_as_labelled() {
    let lines = corpus();
    assert!(lines.len() > 500, "corpus too small: {}", lines.len());
    let truth: Vec<&str> = lines.iter().map(|(e, _)| e.as_str()).collect();
    let messages: Vec<&str> = lines.iter().map(|(_, m)| m.as_str()).collect();
    let ids = final_ids(&messages);
    let ga = grouping_accuracy(&truth, &ids);
    assert!(
        ga >= 0.99,
        "grouping accuracy {ga:.3} on the labelled corpus"
    );
}

#[test]
fn a_lower_case_lifecycle_in_the_corpus_stays_apart() {
    // The CI runner's job states (`created`, `pending`, `running`, `success`, ...) first
    // appear in one burst, each once, amid the rest of the corpus: each is its own event.
    let lines = corpus();
    let messages: Vec<&str> = lines.iter().map(|(_, m)| m.as_str()).collect();
    let ids = final_ids(&messages);
    let mut templates_of: HashMap<&str, Vec<TemplateId>> = HashMap::new();
    let mut events_of: HashMap<TemplateId, Vec<&str>> = HashMap::new();
    for ((event, _), id) in lines.iter().zip(&ids) {
        templates_of.entry(event).or_default().push(*id);
        events_of.entry(*id).or_default().push(event);
    }
    let states: Vec<&str> = templates_of
        .keys()
        .copied()
        .filter(|e| e.starts_with("ci-"))
        .collect();
    assert!(
        states.len() >= 6,
        "the corpus has the lifecycle: {states:?}"
    );
    for state in states {
        let ids = &templates_of[state];
        assert!(ids.iter().all(|id| *id == ids[0]), "{state} split");
        assert!(
            events_of[&ids[0]].iter().all(|e| *e == state),
            "{state} shares its template with {:?}",
            events_of[&ids[0]]
                .iter()
                .find(|e| **e != state)
                .copied()
                .unwrap_or_default()
        );
    }
}

#[test]
fn template_ids_are_the_same_in_every_run() {
    let lines = corpus();
    let messages: Vec<&str> = lines.iter().map(|(_, m)| m.as_str()).collect();
    let a = mine(&mut TemplateMiner::new(MinerConfig::default()), &messages);
    let b = mine(&mut TemplateMiner::new(MinerConfig::default()), &messages);
    assert_eq!(a, b);
}

#[test]
fn template_ids_survive_a_saved_state() {
    let lines = corpus();
    let messages: Vec<&str> = lines.iter().map(|(_, m)| m.as_str()).collect();
    let (first, second) = messages.split_at(messages.len() / 2);

    let mut before = TemplateMiner::new(MinerConfig::default());
    let first_ids = mine(&mut before, first);
    let state = before.snapshot();
    assert!(
        !state.aliases.is_empty(),
        "the first half folds templates, so the state carries aliases"
    );
    let saved = serde_json::to_string(&state).unwrap();

    let mut after = TemplateMiner::new(MinerConfig::default());
    after
        .restore(serde_json::from_str::<MinerState>(&saved).unwrap())
        .unwrap();
    // Every id emitted before the restart still names a template, through an alias when it
    // was folded into another one.
    for id in &first_ids {
        assert!(
            after.resolve(*id).is_some(),
            "id {id} lost across the state"
        );
        assert_eq!(
            after.resolve(*id).map(|t| t.id()),
            before.resolve(*id).map(|t| t.id())
        );
    }
    // The same messages get the same templates after the restart as before it (checked on
    // a restart of its own: seeing them twice would change how often each value occurred).
    let mut probe = TemplateMiner::new(MinerConfig::default());
    probe
        .restore(serde_json::from_str::<MinerState>(&saved).unwrap())
        .unwrap();
    for (m, id) in first.iter().zip(&first_ids) {
        let again = probe.add(m).id;
        assert_eq!(
            Some(again),
            before.resolve(*id).map(|t| t.id()),
            "{m:?} changed template across the state"
        );
    }
    // And the rest of the input is grouped as well as in one uninterrupted run.
    let truth: Vec<&str> = lines.iter().map(|(e, _)| e.as_str()).collect();
    let mut ids: Vec<TemplateId> = first_ids;
    ids.extend(mine(&mut after, second));
    let ids: Vec<TemplateId> = ids
        .into_iter()
        .map(|id| after.resolve(id).map_or(id, |t| t.id()))
        .collect();
    let ga = grouping_accuracy(&truth, &ids);
    assert!(ga >= 0.99, "grouping accuracy {ga:.3} across a saved state");
    // The rest gets the very templates an uninterrupted run gives it.
    let uninterrupted = mine(&mut before, second);
    let restarted = &ids[first.len()..];
    for ((m, a), b) in second.iter().zip(&uninterrupted).zip(restarted) {
        assert_eq!(
            before.resolve(*a).map(|t| t.id()),
            Some(*b),
            "{m:?} got another template after the restart"
        );
    }
}
