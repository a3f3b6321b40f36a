//! The classifier on the shared public data sets (`../shared/data/intents`, read in place):
//! BANKING77 (English, 77 intents) and MASSIVE German (60 intents), train → test. Prints the
//! figures; the floors are well below what the model reaches, to catch a broken model, not to
//! be a benchmark (`kontor assist eval` and docs/benchmarks.md are).

use std::path::{Path, PathBuf};
use std::time::Instant;

use kontor_assist::classifier::{train, TrainOptions};
use kontor_assist::dataset::read_csv;
use kontor_assist::eval::evaluate;

fn data() -> Option<PathBuf> {
    let dir = std::env::var_os("KONTOR_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
        .join("intents");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: the shared data is not at {} (set KONTOR_SHARED_DATA)", dir.display());
        None
    }
}

fn run(set: &str, label: &str, floor: f64) {
    let Some(dir) = data() else { return };
    let (train_set, _) = read_csv(&dir.join(set).join("train.csv"), "text", label).unwrap();
    let (test_set, _) = read_csv(&dir.join(set).join("test.csv"), "text", label).unwrap();
    let started = Instant::now();
    let model = train(&train_set, &TrainOptions::default()).unwrap();
    let trained = started.elapsed();
    let e = evaluate(&model, &test_set);
    eprintln!(
        "{set}: {} train, {} test, accuracy {:.4}, macro-F1 {:.4}, {:.3} ms/message, trained in {:.1} s",
        train_set.len(),
        e.n,
        e.accuracy,
        e.macro_f1,
        e.ms_per_message,
        trained.as_secs_f64()
    );
    assert!(e.accuracy >= floor, "{set}: accuracy {} below {floor}", e.accuracy);
}

#[test]
fn banking77_is_learned() {
    run("banking77", "category", 0.80);
}

#[test]
fn massive_german_is_learned() {
    run("massive_de", "intent", 0.75);
}

#[test]
fn the_built_in_seed_set_covers_every_intent_in_both_languages_and_generalises() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/intents_seed.csv");
    let (all, skipped) = read_csv(&path, "text", "label").unwrap();
    assert_eq!(skipped, 0);
    let (with_lang, _) = read_csv(&path, "text", "language").unwrap();
    let intents = kontor_assist::analysis::INTENTS;
    for intent in intents {
        for lang in ["de", "en"] {
            let n = all.iter().zip(&with_lang).filter(|((_, l), (_, g))| l == intent && g == lang).count();
            assert!(n >= 40, "{intent}/{lang}: {n} examples");
        }
    }
    // Every fifth example held out: what the model makes of wordings it never saw.
    let (train_set, test_set): (Vec<_>, Vec<_>) = all.iter().cloned().enumerate().partition(|(i, _)| i % 5 != 0);
    let train_set: Vec<_> = train_set.into_iter().map(|(_, x)| x).collect();
    let test_set: Vec<_> = test_set.into_iter().map(|(_, x)| x).collect();
    let model = train(&train_set, &TrainOptions::default()).unwrap();
    let e = evaluate(&model, &test_set);
    eprintln!(
        "seed set: {} train, {} held out, accuracy {:.4}, macro-F1 {:.4}",
        train_set.len(),
        e.n,
        e.accuracy,
        e.macro_f1
    );
    assert!(e.accuracy >= 0.7, "held-out accuracy {}", e.accuracy);
}
