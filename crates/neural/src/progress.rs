//! A terminal progress bar (indicatif, on stderr) for [`NeuralModel::train`](crate::NeuralModel::train).

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::TrainProgress;

/// Draws training progress on stderr: epoch, batch, loss and validation accuracy.
#[derive(Debug)]
pub struct ProgressBarReporter {
    bar: ProgressBar,
}

impl Default for ProgressBarReporter {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressBarReporter {
    /// A new bar (hidden when stderr is not a terminal).
    pub fn new() -> Self {
        let bar = ProgressBar::new(0);
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} batches {msg} ({elapsed})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        ProgressBarReporter { bar }
    }

    /// Shows one report.
    pub fn report(&mut self, p: TrainProgress) {
        self.bar.set_length(p.batches as u64);
        self.bar.set_position(p.batch as u64);
        self.bar
            .set_prefix(format!("epoch {}/{}", p.epoch, p.max_epochs));
        let val = match (p.val_accuracy, p.val_loss) {
            (Some(a), Some(l)) => format!(" val acc {a:.4} val loss {l:.4}"),
            _ => String::new(),
        };
        self.bar.set_message(format!("loss {:.4}{val}", p.loss));
        if p.epoch_done {
            self.bar
                .println(format!("epoch {}: loss {:.4}{val}", p.epoch, p.loss));
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
