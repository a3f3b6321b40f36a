//! The earlier conversation a mail program quotes below (or above) an answer: found so that
//! previews show what is new. The message itself keeps everything.

/// `text` without the quoted earlier conversation: cut at the first line that starts a
/// quote — a line beginning with `>`, an attribution ("Am 3. März 2025 um 10:00 schrieb Jana
/// <…>:", "On Mon, Mar 3, 2025 at 10:00 AM Jana <…> wrote:", also wrapped over two lines), or
/// an Outlook-style separator ("-----Original Message-----", "-----Ursprüngliche
/// Nachricht-----", a `Von:`/`From:` line followed by `Gesendet:`/`Sent:`). Trailing
/// whitespace is trimmed. When nothing new would remain (the whole text is a quote), the text
/// as it is.
pub fn without_quoted(text: &str) -> &str {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut offset = 0;
    for (i, line) in lines.iter().enumerate() {
        let l = line.trim();
        let next = lines.get(i + 1).map(|n| n.trim()).unwrap_or("");
        let prev = if i > 0 { lines[i - 1].trim() } else { "" };
        let lower = l.to_lowercase();
        let starts_quote = l.starts_with('>')
            || is_attribution(l)
            || lower == "-----original message-----"
            || lower == "-----ursprüngliche nachricht-----"
            || lower.starts_with("-----original message")
            || lower.starts_with("-----ursprüngliche nachricht")
            || ((lower.starts_with("von:") || lower.starts_with("from:")) && {
                let n = next.to_lowercase();
                n.starts_with("gesendet:")
                    || n.starts_with("sent:")
                    || n.starts_with("datum:")
                    || n.starts_with("date:")
            });
        // "On Mon, 3 Mar 2025 Jana <…>\nwrote:": the attribution began on the line before.
        let wrapped = !starts_quote && i > 0 && !is_attribution(prev) && is_attribution(&format!("{prev} {l}"));
        if starts_quote || wrapped {
            let cut = if wrapped { offset - lines[i - 1].len() } else { offset };
            let kept = text[..cut].trim_end();
            return if kept.is_empty() { text.trim_end() } else { kept };
        }
        offset += line.len();
    }
    text.trim_end()
}

/// "On … wrote:", "Am … schrieb …:", "Le … a écrit :".
fn is_attribution(line: &str) -> bool {
    let lower = line.to_lowercase();
    (line.starts_with("On ") && lower.ends_with("wrote:"))
        || (line.starts_with("Am ") && lower.contains(" schrieb") && lower.ends_with(':'))
        || (line.starts_with("Le ") && (lower.ends_with("a écrit :") || lower.ends_with("a écrit:")))
}

/// The first `max` characters of what is new in `text` (see [`without_quoted`]), on one line.
pub fn preview(text: &str, max: usize) -> String {
    let new = without_quoted(text);
    let one_line: String = new.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_conversation_is_cut_at_its_first_line() {
        let cases: &[(&str, &str)] = &[
            ("Danke, passt so.\n\n> Ihre Rechnung ist unterwegs.\n> Gruß", "Danke, passt so."),
            ("Danke!\n\nAm 3. März 2025 um 10:00 schrieb Kundenservice <support@firma.de>:\n> Hallo", "Danke!"),
            ("Thanks!\r\n\r\nOn Mon, Mar 3, 2025 at 10:00 AM Support <s@f.de> wrote:\r\n> Hi", "Thanks!"),
            ("Thanks!\n\nOn Mon, Mar 3, 2025 at 10:00 AM Support\n<s@f.de> wrote:\n> Hi", "Thanks!"),
            ("Gern.\n\nAm Mo., 3. März 2025 um 10:00 Uhr schrieb Support\n<s@f.de>:\n> Hallo", "Gern."),
            ("Bitte kündigen.\n\n-----Ursprüngliche Nachricht-----\nVon: Support\nBetreff: x", "Bitte kündigen."),
            ("Please cancel.\n\n-----Original Message-----\nFrom: Support", "Please cancel."),
            ("Anbei.\n\nVon: Kundenservice <s@f.de>\nGesendet: Montag, 3. März 2025 10:00\nAn: ich", "Anbei."),
            ("Ein Satz ohne Zitat.\nZweite Zeile.\n", "Ein Satz ohne Zitat.\nZweite Zeile."),
            // Only a quote: the text as it is, not nothing.
            ("> nur zitiert\n> zweite Zeile", "> nur zitiert\n> zweite Zeile"),
            // Words that merely look like it are not quotes.
            ("Ich schrieb Ihnen schon: bitte melden Sie sich.", "Ich schrieb Ihnen schon: bitte melden Sie sich."),
            (
                "Von: heute an gilt die neue Adresse.\nBitte notieren.",
                "Von: heute an gilt die neue Adresse.\nBitte notieren.",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(without_quoted(text), *want, "{text:?}");
        }
    }

    #[test]
    fn a_preview_is_one_line_of_what_is_new() {
        assert_eq!(preview("Danke,\n  passt   so.\n\n> alt", 160), "Danke, passt so.");
        assert_eq!(preview("äöü ".repeat(100).as_str(), 8), "äöü äöü …");
    }
}
