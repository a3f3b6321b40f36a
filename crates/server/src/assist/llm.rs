//! Reply drafts from a language model over an OpenAI-compatible chat completions API.

/// Checks a configured base URL: `http` or `https`, with a host.
pub fn check_base_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("{url:?} must be an http or https URL with a host"));
    }
    Ok(())
}
