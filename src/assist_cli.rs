//! `kontor assist train` / `kontor assist eval`: an intent model from any labelled CSV, and how
//! good it is on another.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use kontor_assist::classifier::{train, Model, TrainOptions};
use kontor_assist::dataset::read_csv;
use kontor_assist::eval::evaluate;

/// What `assist` can do.
#[derive(clap::Subcommand)]
pub enum AssistCommand {
    /// Train an intent model from a labelled CSV file (with a header line).
    Train {
        /// The labelled examples.
        #[arg(long)]
        csv: PathBuf,
        /// Where to write the model.
        #[arg(long)]
        out: PathBuf,
        /// The column holding the text.
        #[arg(long, default_value = "text")]
        text_column: String,
        /// The column holding the label.
        #[arg(long, default_value = "label")]
        label_column: String,
    },
    /// Evaluate a model on a labelled CSV file: accuracy, macro-F1, the five worst labels and
    /// the time per message.
    Eval {
        /// A model written by `kontor assist train`.
        #[arg(long)]
        model: PathBuf,
        /// The labelled examples.
        #[arg(long)]
        csv: PathBuf,
        #[arg(long, default_value = "text")]
        text_column: String,
        #[arg(long, default_value = "label")]
        label_column: String,
        /// One JSON object: `accuracy`, `macro_f1`, `ms_per_message`, `n`, `worst`.
        #[arg(long)]
        json: bool,
    },
}

/// Runs an `assist` subcommand.
pub fn run(command: AssistCommand) -> Result<()> {
    match command {
        AssistCommand::Train { csv, out, text_column, label_column } => {
            let (examples, skipped) = read_csv(&csv, &text_column, &label_column).map_err(anyhow::Error::msg)?;
            let started = Instant::now();
            let model = train(&examples, &TrainOptions::default()).map_err(anyhow::Error::msg)?;
            let took = started.elapsed();
            let mut file = std::io::BufWriter::new(
                std::fs::File::create(&out).with_context(|| format!("cannot create {}", out.display()))?,
            );
            model.save(&mut file).with_context(|| format!("cannot write {}", out.display()))?;
            drop(file);
            let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
            println!(
                "Trained on {} examples ({} labels{}) in {:.1} s; model {} ({:.1} MB).",
                examples.len(),
                model.labels().len(),
                if skipped > 0 { format!(", {skipped} rows without text or label skipped") } else { String::new() },
                took.as_secs_f64(),
                out.display(),
                size as f64 / 1_000_000.0
            );
            Ok(())
        }
        AssistCommand::Eval { model, csv, text_column, label_column, json } => {
            let started = Instant::now();
            let mut file = std::fs::File::open(&model).with_context(|| format!("cannot open {}", model.display()))?;
            let m = Model::load(&mut file).map_err(|e| anyhow::anyhow!("{}: {e}", model.display()))?;
            let loaded = started.elapsed();
            let (examples, _) = read_csv(&csv, &text_column, &label_column).map_err(anyhow::Error::msg)?;
            let e = evaluate(&m, &examples);
            if json {
                println!("{}", serde_json::to_string(&e)?);
                return Ok(());
            }
            println!("{} examples, model loaded in {:.0} ms", e.n, loaded.as_secs_f64() * 1000.0);
            println!("accuracy        {:.4}", e.accuracy);
            println!("macro-F1        {:.4}", e.macro_f1);
            println!("ms per message  {:.3}", e.ms_per_message);
            println!("worst labels (F1, precision, recall, examples):");
            for w in &e.worst {
                println!("  {:<32} {:.3}  {:.3}  {:.3}  {}", w.label, w.f1, w.precision, w.recall, w.support);
            }
            Ok(())
        }
    }
}
