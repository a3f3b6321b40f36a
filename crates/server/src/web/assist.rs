//! What the digital assistant shows on the case page: the analysis of an inbound message
//! (intent, language, sentiment, extracted data) with labels in the agent's language, and the
//! case's intent. Only shapes values for templates; the analysis itself is made elsewhere.

use kontor_core::{MessageAnalysis, RuleAction};
use serde_json::{json, Value};

use super::i18n::Lang;

/// (intent, German, English): the assistant's intents as agents read them.
const INTENTS: &[(&str, &str, &str)] = &[
    ("address_change", "Adressänderung", "Change of address"),
    ("bank_details_change", "Bankverbindung ändern", "Change of bank details"),
    ("invoice_question", "Frage zur Rechnung", "Invoice question"),
    ("payment_arrangement", "Zahlungsvereinbarung", "Payment arrangement"),
    ("cancellation", "Kündigung", "Cancellation"),
    ("contract_change", "Vertragsänderung", "Contract change"),
    ("complaint", "Beschwerde", "Complaint"),
    ("meter_reading", "Zählerstand", "Meter reading"),
    ("appointment", "Termin", "Appointment"),
    ("document_request", "Unterlagen anfordern", "Document request"),
    ("login_help", "Hilfe bei der Anmeldung", "Login help"),
    ("praise", "Lob", "Praise"),
    ("other", "Sonstiges", "Other"),
];

/// (entity kind, German, English): the kinds of data the assistant extracts.
const ENTITY_KINDS: &[(&str, &str, &str)] = &[
    ("iban", "IBAN", "IBAN"),
    ("bic", "BIC", "BIC"),
    ("email", "E-Mail", "E-mail"),
    ("phone", "Telefon", "Phone"),
    ("date", "Datum", "Date"),
    ("amount", "Betrag", "Amount"),
    ("address", "Adresse", "Address"),
    ("meter_reading", "Zählerstand", "Meter reading"),
    ("customer_number", "Kundennummer", "Customer number"),
    ("contract_number", "Vertragsnummer", "Contract number"),
    ("invoice_number", "Rechnungsnummer", "Invoice number"),
];

fn pick(table: &[(&str, &'static str, &'static str)], key: &str, lang: Lang) -> Option<&'static str> {
    table.iter().find(|(k, _, _)| *k == key).map(|(_, de, en)| if lang == Lang::De { *de } else { *en })
}

/// An intent as agents read it; an intent the UI does not know (a configured one) shows as
/// its name with spaces.
pub(super) fn intent_label(intent: &str, lang: Lang) -> String {
    pick(INTENTS, intent, lang).map(str::to_string).unwrap_or_else(|| intent.replace('_', " "))
}

/// The assistant's intents with their labels, for the select that sets a message's intent;
/// `current` is added when the model knows an intent the UI does not.
pub(super) fn intent_options(current: Option<&str>, lang: Lang) -> Vec<Value> {
    let mut all: Vec<Value> =
        INTENTS.iter().map(|(k, _, _)| json!({ "intent": k, "label": intent_label(k, lang) })).collect();
    if let Some(c) = current.filter(|c| !INTENTS.iter().any(|(k, _, _)| k == c)) {
        all.push(json!({ "intent": c, "label": intent_label(c, lang) }));
    }
    all
}

/// The label of an extracted value's kind (a configured pattern's name with spaces).
fn entity_label(kind: &str, lang: Lang) -> String {
    pick(ENTITY_KINDS, kind, lang).map(str::to_string).unwrap_or_else(|| kind.replace('_', " "))
}

fn language_label(code: &str, lang: Lang) -> &'static str {
    match (code, lang) {
        ("de", Lang::De) => "Deutsch",
        ("de", Lang::En) => "German",
        ("en", Lang::De) => "Englisch",
        ("en", Lang::En) => "English",
        (_, Lang::De) => "andere Sprache",
        (_, Lang::En) => "other language",
    }
}

fn sentiment_label(sentiment: &str, lang: Lang) -> &'static str {
    match (sentiment, lang) {
        ("negative", Lang::De) => "negativ",
        ("negative", Lang::En) => "negative",
        ("positive", Lang::De) => "positiv",
        ("positive", Lang::En) => "positive",
        (_, Lang::De) => "neutral",
        (_, Lang::En) => "neutral",
    }
}

/// A probability (0–1) as a whole percent, in the language's notation ("87 %" / "87%").
fn percent(p: f32, lang: Lang) -> String {
    let n = (p.clamp(0.0, 1.0) * 100.0).round() as i32;
    match lang {
        Lang::De => format!("{n} %"),
        Lang::En => format!("{n}%"),
    }
}

/// The analysis of one message as the case page's template shows it.
pub(super) fn analysis_view(a: &MessageAnalysis, lang: Lang) -> Value {
    let sentiment = match a.sentiment.as_str() {
        s @ ("negative" | "positive") => s,
        _ => "neutral",
    };
    // The model's next guesses, for the intent's tooltip ("Kündigung 81 %, Vertragsänderung 9 %").
    let alternatives = a
        .intents
        .iter()
        .map(|i| format!("{} {}", intent_label(&i.intent, lang), percent(i.confidence, lang)))
        .collect::<Vec<_>>()
        .join(", ");
    json!({
        "intent": a.intent,
        "intent_label": intent_label(&a.intent, lang),
        "by_agent": a.intent_source == "agent",
        "confidence": percent(a.intent_confidence, lang),
        "alternatives": alternatives,
        "language": a.language,
        "language_label": a.language.as_deref().map(|l| language_label(l, lang)),
        "sentiment": sentiment,
        "sentiment_label": sentiment_label(sentiment, lang),
        "entities": a.entities.iter().map(|e| json!({
            "kind": e.kind,
            "label": entity_label(&e.kind, lang),
            "value": e.value,
            "text": e.text,
        })).collect::<Vec<_>>(),
    })
}

/// Names the summary of a rule needs: teams, users, canned responses by id.
pub(super) struct RuleNames {
    pub teams: std::collections::HashMap<i64, String>,
    pub users: std::collections::HashMap<i64, String>,
    pub canned: std::collections::HashMap<i64, String>,
}

/// A rule in one line, in the page's language: "Kanal: E-Mail · Anliegen: Kündigung →
/// Team Vertrieb, Antworten brauchen Freigabe".
pub(super) fn rule_summary(rule: &kontor_core::Rule, names: &RuleNames, lang: Lang) -> String {
    let de = lang == Lang::De;
    let c = &rule.conditions;
    let mut when: Vec<String> = Vec::new();
    let list = |key_de: &str, key_en: &str, items: Vec<String>| {
        format!("{}: {}", if de { key_de } else { key_en }, items.join(", "))
    };
    if !c.channels.is_empty() {
        when.push(list("Kanal", "Channel", c.channels.iter().map(|ch| ch.as_str().to_string()).collect()));
    }
    if !c.intents.is_empty() {
        when.push(list("Anliegen", "Request", c.intents.iter().map(|i| intent_label(i, lang)).collect()));
    }
    if let Some(m) = c.min_confidence {
        when.push(format!("≥ {}", percent(m, lang)));
    }
    if !c.sentiments.is_empty() {
        when.push(list(
            "Stimmung",
            "Sentiment",
            c.sentiments.iter().map(|s| sentiment_label(s, lang).to_string()).collect(),
        ));
    }
    if !c.languages.is_empty() {
        when.push(list(
            "Sprache",
            "Language",
            c.languages.iter().map(|l| language_label(l, lang).to_string()).collect(),
        ));
    }
    if !c.keywords.is_empty() {
        when.push(list("Stichwörter", "Keywords", c.keywords.iter().map(|k| format!("„{k}“")).collect()));
    }
    if !c.customer_languages.is_empty() {
        when.push(list("Sprache des Kunden", "Customer's language", c.customer_languages.clone()));
    }
    match (c.business_hours.as_deref(), de) {
        (Some("inside"), true) => when.push("innerhalb der Geschäftszeiten".into()),
        (Some("inside"), false) => when.push("inside business hours".into()),
        (Some("outside"), true) => when.push("außerhalb der Geschäftszeiten".into()),
        (Some("outside"), false) => when.push("outside business hours".into()),
        _ => {}
    }
    if when.is_empty() {
        when.push((if de { "jede Nachricht" } else { "every message" }).into());
    }
    let name =
        |map: &std::collections::HashMap<i64, String>, id: i64| map.get(&id).cloned().unwrap_or(format!("#{id}"));
    let then: Vec<String> = rule
        .actions
        .iter()
        .map(|a| match a {
            RuleAction::SetTeam { team_id } => {
                format!("{} {}", if de { "Team" } else { "team" }, name(&names.teams, *team_id))
            }
            RuleAction::SetAssignee { user_id } => {
                format!("{} {}", if de { "zuweisen an" } else { "assign to" }, name(&names.users, *user_id))
            }
            RuleAction::SetPriority { priority } => {
                format!("{} {}", if de { "Priorität" } else { "priority" }, priority.as_str())
            }
            RuleAction::AddTag { tag } => format!("{} {tag}", if de { "Schlagwort" } else { "tag" }),
            RuleAction::AutoAnswer { canned_id } => {
                format!(
                    "{} „{}“",
                    if de { "automatisch antworten:" } else { "answer automatically:" },
                    name(&names.canned, *canned_id)
                )
            }
            RuleAction::RequireApproval => {
                (if de { "Antworten brauchen Freigabe" } else { "replies need approval" }).into()
            }
            RuleAction::MarkSpam => (if de { "als Spam schließen" } else { "close as spam" }).into(),
        })
        .collect();
    format!("{} → {}", when.join(" · "), then.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_intent_has_a_label_in_both_languages() {
        let intents = kontor_assist::analysis::INTENTS;
        for i in intents {
            let (de, en) = (intent_label(i, Lang::De), intent_label(i, Lang::En));
            assert!(!de.contains('_') && !en.contains('_'), "{i}: {de} / {en}");
        }
        assert_eq!(intent_label("bank_details_change", Lang::De), "Bankverbindung ändern");
        assert_eq!(intent_label("tariff_question", Lang::En), "tariff question", "a configured intent");
    }

    #[test]
    fn percents_and_labels_follow_the_language() {
        let table =
            [(0.873, Lang::De, "87 %"), (0.873, Lang::En, "87%"), (1.0, Lang::De, "100 %"), (-0.1, Lang::En, "0%")];
        for (p, lang, want) in table {
            assert_eq!(percent(p, lang), want);
        }
        assert_eq!(entity_label("iban", Lang::De), "IBAN");
        assert_eq!(entity_label("meter_reading", Lang::En), "Meter reading");
        assert_eq!(entity_label("policy_number", Lang::De), "policy number");
        assert_eq!(language_label("other", Lang::De), "andere Sprache");
        assert_eq!(sentiment_label("negative", Lang::De), "negativ");
    }
}
