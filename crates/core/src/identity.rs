//! Normalising the addresses by which customers are recognised.

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use utoipa::ToSchema;

/// The kind of an identity's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    Email,
    Phone,
    /// An id in another system (CRM customer number, portal account, ...).
    ExternalId,
    WhatsappId,
    TelegramId,
    MessengerId,
    InstagramId,
}

impl IdentityKind {
    /// Every kind.
    pub const ALL: &'static [IdentityKind] = &[
        IdentityKind::Email,
        IdentityKind::Phone,
        IdentityKind::ExternalId,
        IdentityKind::WhatsappId,
        IdentityKind::TelegramId,
        IdentityKind::MessengerId,
        IdentityKind::InstagramId,
    ];

    /// The wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Email => "email",
            IdentityKind::Phone => "phone",
            IdentityKind::ExternalId => "external_id",
            IdentityKind::WhatsappId => "whatsapp_id",
            IdentityKind::TelegramId => "telegram_id",
            IdentityKind::MessengerId => "messenger_id",
            IdentityKind::InstagramId => "instagram_id",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("not a valid e-mail address")]
    Email,
    #[error("not a valid phone number")]
    Phone,
    #[error("must not be empty and at most 256 characters")]
    Length,
    #[error("must not contain control or invisible characters (at position {0})")]
    Invisible(usize),
    #[error("unknown default region {0:?}")]
    Region(String),
}

/// Normalises an address of the given kind: Unicode NFC throughout; e-mail case-folded
/// (Unicode default case folding, so `JOSÉ@` and `josé@` in either normal form are one
/// address), phone numbers in E.164 (numbers without a country code are read in
/// `default_region`, e.g. "DE"), provider ids trimmed. Control characters and invisible
/// ones (zero-width spaces, joiners, bidirectional marks, ...) are refused in every kind: two
/// addresses that look the same must be the same identity.
pub fn normalise_identity(kind: IdentityKind, raw: &str, default_region: &str) -> Result<String, IdentityError> {
    if let Some(at) = raw.chars().position(|c| is_invisible(c) || (c.is_whitespace() && c != ' ')) {
        return Err(IdentityError::Invisible(at));
    }
    let raw = raw.trim();
    if raw.is_empty() || raw.chars().count() > 256 {
        return Err(IdentityError::Length);
    }
    let nfc: String = raw.nfc().collect();
    match kind {
        IdentityKind::Email => normalise_email(&nfc),
        IdentityKind::Phone | IdentityKind::WhatsappId => normalise_phone(&nfc, default_region),
        _ => Ok(nfc),
    }
}

/// Control characters, and code points that are invisible by definition (Unicode's
/// Default_Ignorable_Code_Point: zero-width space and joiners, soft hyphen, bidirectional
/// marks and overrides, variation selectors, fillers, tags, the byte order mark, ...).
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c as u32,
            0x00AD | 0x034F | 0x061C | 0x115F..=0x1160 | 0x17B4..=0x17B5 | 0x180B..=0x180F
            | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F | 0xFEFF
            | 0xFFA0 | 0xFFF0..=0xFFF8 | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0000..=0xE0FFF)
}

fn normalise_email(raw: &str) -> Result<String, IdentityError> {
    // Case folding can leave text that is no longer in NFC (e.g. with composed capitals).
    let folded: String = caseless::default_case_fold_str(raw).nfc().collect();
    let parsed: email_address::EmailAddress = folded.parse().map_err(|_| IdentityError::Email)?;
    // Display names ("Anna <a@b>") are not accepted here: the address alone is an identity.
    if parsed.email() != folded || !parsed.domain().contains('.') {
        return Err(IdentityError::Email);
    }
    Ok(folded)
}

fn normalise_phone(raw: &str, default_region: &str) -> Result<String, IdentityError> {
    let region: phonenumber::country::Id =
        default_region.to_uppercase().parse().map_err(|_| IdentityError::Region(default_region.to_string()))?;
    // "0049..." is a common way to write the international prefix in Germany.
    let cleaned = raw.strip_prefix("00").map(|r| format!("+{r}"));
    let input = cleaned.as_deref().unwrap_or(raw);
    let number = phonenumber::parse(Some(region), input).map_err(|_| IdentityError::Phone)?;
    if !phonenumber::is_valid(&number) {
        return Err(IdentityError::Phone);
    }
    Ok(number.format().mode(phonenumber::Mode::E164).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalised_per_kind() {
        let cases: &[(IdentityKind, &str, Result<&str, IdentityError>)] = &[
            (IdentityKind::Email, "Anna.Schmidt@Example.DE", Ok("anna.schmidt@example.de")),
            (IdentityKind::Email, " x@y.com ", Ok("x@y.com")),
            (IdentityKind::Email, "not-an-address", Err(IdentityError::Email)),
            (IdentityKind::Email, "a@localhost", Err(IdentityError::Email)),
            (IdentityKind::Email, "Anna <a@b.de>", Err(IdentityError::Email)),
            (IdentityKind::Phone, "+49 170 1234567", Ok("+491701234567")),
            (IdentityKind::Phone, "0170 1234567", Ok("+491701234567")),
            (IdentityKind::Phone, "0049 170 1234567", Ok("+491701234567")),
            (IdentityKind::Phone, "+44 20 7946 0958", Ok("+442079460958")),
            (IdentityKind::Phone, "12", Err(IdentityError::Phone)),
            (IdentityKind::Phone, "hello", Err(IdentityError::Phone)),
            (IdentityKind::ExternalId, " crm-4711 ", Ok("crm-4711")),
            (IdentityKind::ExternalId, "   ", Err(IdentityError::Length)),
            // One address however its letters are composed or capitalised.
            (IdentityKind::Email, "jos\u{e9}@example.de", Ok("jos\u{e9}@example.de")),
            (IdentityKind::Email, "jose\u{301}@example.de", Ok("jos\u{e9}@example.de")),
            (IdentityKind::Email, "JOSE\u{301}@EXAMPLE.DE", Ok("jos\u{e9}@example.de")),
            (IdentityKind::Email, "J\u{d3}SE@example.de", Ok("j\u{f3}se@example.de")),
            (IdentityKind::Email, "STRASSE@example.de", Ok("strasse@example.de")),
            (IdentityKind::Email, "stra\u{df}e@example.de", Ok("strasse@example.de")),
            (IdentityKind::Email, "\u{212a}elvin@example.de", Ok("kelvin@example.de")),
            (IdentityKind::ExternalId, "crm-e\u{301}", Ok("crm-\u{e9}")),
            // Invisible and control characters are refused, wherever they stand.
            (IdentityKind::Email, "\u{200b}anna@example.de", Err(IdentityError::Invisible(0))),
            (IdentityKind::Email, "an\u{200d}na@example.de", Err(IdentityError::Invisible(2))),
            (IdentityKind::Email, "anna@example.de\u{feff}", Err(IdentityError::Invisible(15))),
            (IdentityKind::Email, "anna\u{202e}@example.de", Err(IdentityError::Invisible(4))),
            (IdentityKind::Email, "anna@exa\u{ad}mple.de", Err(IdentityError::Invisible(8))),
            (IdentityKind::Email, "anna\u{7}@example.de", Err(IdentityError::Invisible(4))),
            (IdentityKind::Email, "anna@example.de\n", Err(IdentityError::Invisible(15))),
            (IdentityKind::ExternalId, "crm\u{0}1", Err(IdentityError::Invisible(3))),
            (IdentityKind::ExternalId, "crm\u{2060}1", Err(IdentityError::Invisible(3))),
            (IdentityKind::Phone, "+49 170\u{200b} 1234567", Err(IdentityError::Invisible(7))),
            (IdentityKind::Phone, "+49\t170 1234567", Err(IdentityError::Invisible(3))),
        ];
        for (kind, raw, want) in cases {
            let got = normalise_identity(*kind, raw, "DE");
            assert_eq!(got.as_deref().map_err(Clone::clone), want.clone(), "{kind:?} {raw:?}");
        }
    }

    #[test]
    fn default_region_changes_how_national_numbers_are_read() {
        assert_eq!(normalise_identity(IdentityKind::Phone, "0664 1234567", "AT").as_deref(), Ok("+436641234567"));
        assert!(matches!(normalise_identity(IdentityKind::Phone, "0170 1234567", "XX"), Err(IdentityError::Region(_))));
    }
}
