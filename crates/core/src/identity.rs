//! Normalising the addresses by which customers are recognised.

use serde::{Deserialize, Serialize};
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
    #[error("unknown default region {0:?}")]
    Region(String),
}

/// Normalises an address of the given kind: e-mail lower-cased, phone numbers in E.164
/// (numbers without a country code are read in `default_region`, e.g. "DE"), provider ids
/// trimmed.
pub fn normalise_identity(kind: IdentityKind, raw: &str, default_region: &str) -> Result<String, IdentityError> {
    let raw = raw.trim();
    if raw.is_empty() || raw.chars().count() > 256 {
        return Err(IdentityError::Length);
    }
    match kind {
        IdentityKind::Email => normalise_email(raw),
        IdentityKind::Phone | IdentityKind::WhatsappId => normalise_phone(raw, default_region),
        _ => Ok(raw.to_string()),
    }
}

fn normalise_email(raw: &str) -> Result<String, IdentityError> {
    let lower = raw.to_lowercase();
    let parsed: email_address::EmailAddress = lower.parse().map_err(|_| IdentityError::Email)?;
    // Display names ("Anna <a@b>") are not accepted here: the address alone is an identity.
    if parsed.email() != lower || !parsed.domain().contains('.') {
        return Err(IdentityError::Email);
    }
    Ok(lower)
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
