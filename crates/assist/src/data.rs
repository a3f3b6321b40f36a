//! The assistant's data files (phrase list, lexicon): tab-separated, `#` comments and blank
//! lines skipped.

/// The rows of a tab-separated file with exactly `N` columns, each with its line number
/// (from 1); a row with another number of columns is an error naming its line.
pub(crate) fn rows<const N: usize>(tsv: &str) -> Result<Vec<(usize, [&str; N])>, String> {
    let mut out = Vec::new();
    for (n, line) in tsv.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        let row: [&str; N] =
            cols.try_into().map_err(|_| format!("line {}: {N} tab-separated columns expected", n + 1))?;
        out.push((n + 1, row));
    }
    Ok(out)
}
