//! `retrain_intents`: trains the intent model on the built-in seed set and every example
//! agents gave (off the async threads), and stores it with the job's completion; every node
//! uses it from its next look for a newer model (a few seconds).

use kontor_store::assist::{RetrainIntents, TrainedModel};

use super::{Job, JobResult, JobRun};
use crate::AppState;

#[async_trait::async_trait]
impl Job for RetrainIntents {
    async fn run(&self, state: &AppState, run: JobRun) -> JobResult {
        let examples = match state.store.training_examples().await {
            Ok(e) => e,
            Err(e) => return JobResult::retry(state, &run, e.to_string()),
        };
        let count = examples.len() as i64;
        let trained = tokio::task::spawn_blocking(move || {
            let pairs: Vec<(String, String)> = examples.into_iter().map(|e| (e.text, e.label)).collect();
            let model = kontor_assist::analysis::train_with(&pairs)?;
            let mut bytes = Vec::new();
            model.save(&mut bytes).map_err(|e| format!("cannot write the model: {e}"))?;
            Ok::<_, String>(bytes)
        })
        .await;
        match trained {
            Ok(Ok(bytes)) => {
                tracing::info!(examples = count, bytes = bytes.len(), "Trained a new intent model.");
                JobResult::done().with_effect(TrainedModel { bytes, examples: count }.into_effect())
            }
            Ok(Err(e)) => JobResult::fail(format!("training failed: {e}")),
            Err(e) => JobResult::retry(state, &run, format!("training stopped: {e}")),
        }
    }
}
