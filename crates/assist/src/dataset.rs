//! Labelled examples from a CSV file with a header: the text and the label columns are named
//! (default `text` and `label`).

use std::path::Path;

/// `(text, label)` pairs read from `path`. Rows with an empty text or label are skipped and
/// counted; a missing column or an unreadable file is an error that says which.
pub fn read_csv(path: &Path, text_column: &str, label_column: &str) -> Result<(Vec<(String, String)>, usize), String> {
    let mut reader =
        csv::ReaderBuilder::new().flexible(false).from_path(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let headers = reader.headers().map_err(|e| format!("{}: {e}", path.display()))?.clone();
    let find = |name: &str| {
        headers.iter().position(|h| h.trim() == name).ok_or_else(|| {
            format!(
                "{}: no column {name:?} (columns: {})",
                path.display(),
                headers.iter().collect::<Vec<_>>().join(", ")
            )
        })
    };
    let (t, l) = (find(text_column)?, find(label_column)?);
    let mut out = Vec::new();
    let mut skipped = 0;
    for (n, row) in reader.records().enumerate() {
        let row = row.map_err(|e| format!("{} row {}: {e}", path.display(), n + 2))?;
        match (row.get(t).map(str::trim), row.get(l).map(str::trim)) {
            (Some(text), Some(label)) if !text.is_empty() && !label.is_empty() => {
                out.push((text.to_string(), label.to_string()))
            }
            _ => skipped += 1,
        }
    }
    if out.is_empty() {
        return Err(format!("{}: no labelled rows", path.display()));
    }
    Ok((out, skipped))
}
