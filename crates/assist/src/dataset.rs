//! Labelled examples from a CSV file with a header: the text and the label columns are named
//! (default `text` and `label`).

use std::path::Path;

/// `(text, label)` pairs read from `path`. Rows with an empty text or label are skipped and
/// counted; a missing column or an unreadable file is an error that says which.
pub fn read_csv(path: &Path, text_column: &str, label_column: &str) -> Result<(Vec<(String, String)>, usize), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    read_csv_from(file, &path.display().to_string(), text_column, label_column)
}

/// [`read_csv`] from any reader; `name` stands for it in error messages.
pub fn read_csv_from(
    input: impl std::io::Read,
    name: &str,
    text_column: &str,
    label_column: &str,
) -> Result<(Vec<(String, String)>, usize), String> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(input);
    let headers = reader.headers().map_err(|e| format!("{name}: {e}"))?.clone();
    let find = |column: &str| {
        headers.iter().position(|h| h.trim() == column).ok_or_else(|| {
            format!("{name}: no column {column:?} (columns: {})", headers.iter().collect::<Vec<_>>().join(", "))
        })
    };
    let (t, l) = (find(text_column)?, find(label_column)?);
    let mut out = Vec::new();
    let mut skipped = 0;
    for (n, row) in reader.records().enumerate() {
        let row = row.map_err(|e| format!("{name} row {}: {e}", n + 2))?;
        match (row.get(t).map(str::trim), row.get(l).map(str::trim)) {
            (Some(text), Some(label)) if !text.is_empty() && !label.is_empty() => {
                out.push((text.to_string(), label.to_string()))
            }
            _ => skipped += 1,
        }
    }
    if out.is_empty() {
        return Err(format!("{name}: no labelled rows"));
    }
    Ok((out, skipped))
}
