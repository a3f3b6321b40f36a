//! How values are shown on the staff pages: ages, channel names, delivery errors, HTML mail.

use kontor_core::{Channel, Timestamp};

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

/// HTML e-mail bodies: no scripts, styles, forms or remote content.
pub fn sanitize_html(html: &str) -> String {
    ammonia::Builder::default()
        .url_schemes(["http", "https", "mailto", "tel"].into_iter().collect())
        .rm_tags(["img"])
        .link_rel(Some("noopener noreferrer nofollow"))
        .clean(html)
        .to_string()
}
