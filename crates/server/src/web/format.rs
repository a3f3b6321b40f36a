//! How values are shown on the staff pages: ages, channel names, delivery errors, HTML mail,
//! e-mail subjects and addresses.

use kontor_core::{Channel, Customer, IdentityKind, Timestamp};

use super::i18n::Lang;

/// How long ago, briefly ("5 min", "3 h", "2 d").
pub(super) fn age(t: Timestamp) -> String {
    let secs = (Timestamp::now().as_unix_seconds() - t.as_unix_seconds()).max(0);
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86400 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86400),
    }
}

/// A channel's short label with a symbol, in the page's language.
pub(super) fn channel_label(c: Channel, lang: Lang) -> String {
    let de = lang == Lang::De;
    let (icon, name) = match c {
        Channel::Api => ("⇄", "API"),
        Channel::Email => ("✉", if de { "E-Mail" } else { "E-mail" }),
        Channel::Sms => ("✆", "SMS"),
        Channel::Whatsapp => ("◉", "WhatsApp"),
        Channel::Telegram => ("➤", "Telegram"),
        Channel::Messenger => ("◌", "Messenger"),
        Channel::Instagram => ("◎", "Instagram"),
        Channel::Webchat => ("☰", "Web-Chat"),
        Channel::Portal => ("⌂", "Portal"),
        Channel::Phone => ("☎", if de { "Telefon" } else { "Phone" }),
        Channel::Letter => ("✉", if de { "Brief" } else { "Letter" }),
        Channel::Note => ("✎", if de { "Notiz" } else { "Note" }),
    };
    format!("{icon} {name}")
}

/// The delivery errors Kontor itself words, in the page's language (a provider's own text
/// after the known start stays as it came).
pub(super) fn delivery_error_text(error: &str, lang: Lang) -> String {
    if lang == Lang::En {
        return error.to_string();
    }
    const GERMAN: &[(&str, &str)] = &[
        ("the API channel has no webhook_url configured", "Für den API-Kanal ist keine Webhook-Adresse eingerichtet"),
        ("webhook answered ", "Der Webhook antwortete "),
        ("webhook unreachable: ", "Webhook nicht erreichbar: "),
        ("no outbound adapter for channel ", "Für diesen Kanal gibt es noch keinen Versand: "),
    ];
    for (en, de) in GERMAN {
        if let Some(rest) = error.strip_prefix(en) {
            return format!("{de}{rest}");
        }
    }
    error.to_string()
}

/// The subject a reply starts with: `Re: ` before the case's subject, unless it already
/// says it answers (`Re:`, `AW:`, `Antw:`, `SV:`, as the e-mail channel recognises them);
/// empty without a subject.
pub(super) fn reply_subject(subject: Option<&str>) -> String {
    let s = subject.map(str::trim).unwrap_or("");
    if s.is_empty() {
        return String::new();
    }
    let lower = s.to_lowercase();
    if ["re:", "aw:", "antw:", "sv:"].iter().any(|p| lower.starts_with(p)) {
        s.to_string()
    } else {
        format!("Re: {s}")
    }
}

/// The customer's e-mail address that mail goes to (the first one, as the e-mail channel
/// sends), with the name: `Jana Müller <jana@kunde.example>`.
pub(super) fn customer_mailbox(customer: &Customer) -> Option<String> {
    let address = customer.identities.iter().find(|i| i.kind == IdentityKind::Email)?.address.as_str();
    Some(match customer.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) => format!("{name} <{address}>"),
        None => address.to_string(),
    })
}

/// A moment the status JSON gives as Unix seconds or as RFC 3339: (RFC 3339, age).
pub(super) fn moment(v: &serde_json::Value) -> Option<(String, String)> {
    let t = match v {
        serde_json::Value::Number(n) => Timestamp::from_unix_seconds(n.as_i64()?),
        serde_json::Value::String(s) => Timestamp::parse_rfc3339(s).ok()?,
        _ => return None,
    };
    Some((t.to_string(), age(t)))
}

/// HTML e-mail bodies: no scripts, styles, forms or remote content.
pub fn sanitize_html(html: &str) -> String {
    ammonia::Builder::default()
        .url_schemes(["http", "https", "mailto", "tel"].into_iter().collect())
        .rm_tags(["img"])
        .link_rel(Some("noopener noreferrer nofollow"))
        .clean(html)
        .to_string()
}
