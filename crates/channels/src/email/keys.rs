//! Addresses only Kontor can make: the envelope sender of a reply (VERP,
//! `bounces+<case>.<message>-<mac>@domain`), so a bounce names the reply it is about, and the
//! case token in `Reply-To` (`support+c<case>-<mac>@domain`), so an answer finds its case. The
//! MAC (HMAC-SHA256, 40 bits in lower-case hex: relays may change the case of local parts) is
//! keyed by a key derived from the vault's master key; a forged address changes nothing.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The e-mail channel's key (from `Vault::derive_key`).
#[derive(Clone)]
pub struct MailKeys {
    key: [u8; 32],
}

impl std::fmt::Debug for MailKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MailKeys(<hidden>)")
    }
}

/// A token-like address whose MAC is wrong: forged (or made with another master key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forged;

/// What a recipient address of ours says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// A bounce of the reply `message` in `case`.
    Bounce { case: i64, message: i64 },
    /// An answer meant for `case`.
    Case(i64),
}

impl MailKeys {
    /// The label the key is derived with.
    pub const LABEL: &'static str = "kontor email addresses v1";

    pub fn new(key: [u8; 32]) -> Self {
        MailKeys { key }
    }

    fn mac10(&self, purpose: &str, value: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..5])
    }

    fn verify(&self, purpose: &str, value: &str, given: &str) -> bool {
        let want = self.mac10(purpose, value);
        // Constant-time comparison of equal-length hex strings.
        want.len() == given.len() && want.bytes().zip(given.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    /// The MAC part of Kontor's Message-ID for reply `message` of `case`: the id cannot be
    /// guessed from the (sequential) case and message numbers.
    pub fn message_id_mac(&self, case: i64, message: i64) -> String {
        self.mac10("mid", &format!("{case}.{message}"))
    }

    /// Whether `message_id` (without brackets) is one Kontor gave one of its own replies
    /// (`kontor.<case>.<message>.<mac>@…` with a valid MAC): a copy of Kontor's own mail.
    pub fn is_own_message_id(&self, message_id: &str) -> bool {
        let Some((local, _domain)) = message_id.rsplit_once('@') else { return false };
        let mut parts = local.split('.');
        let (Some("kontor"), Some(case), Some(message), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let (Ok(case), Ok(message)) = (case.parse::<i64>(), message.parse::<i64>()) else { return false };
        self.verify("mid", &format!("{case}.{message}"), mac)
    }

    /// The envelope sender of reply `message` of `case`.
    pub fn bounce_address(&self, case: i64, message: i64, domain: &str) -> String {
        let value = format!("{case}.{message}");
        format!("bounces+{value}-{}@{domain}", self.mac10("bounce", &value))
    }

    /// The `Reply-To` address of `case` (`local` is the sender's local part).
    pub fn case_address(&self, local: &str, case: i64, domain: &str) -> String {
        let value = case.to_string();
        format!("{local}+c{value}-{}@{domain}", self.mac10("case", &value))
    }

    /// What a local part says: `Some` only with a valid MAC; `Err(Forged)` for a token-like part
    /// whose MAC is wrong (a forgery), `Ok(None)` for an ordinary local part.
    pub fn read(&self, local_part: &str) -> Result<Option<Token>, Forged> {
        let lower = local_part.to_ascii_lowercase();
        let Some((_, tag)) = lower.split_once('+') else { return Ok(None) };
        let Some((value, mac)) = tag.rsplit_once('-') else { return Ok(None) };
        if lower.starts_with("bounces+") {
            let (case, message) = value.split_once('.').ok_or(Forged)?;
            let ids = (case.parse::<i64>().map_err(|_| Forged)?, message.parse::<i64>().map_err(|_| Forged)?);
            return if self.verify("bounce", value, mac) {
                Ok(Some(Token::Bounce { case: ids.0, message: ids.1 }))
            } else {
                Err(Forged)
            };
        }
        let Some(case) = value.strip_prefix('c').and_then(|c| c.parse::<i64>().ok()) else { return Ok(None) };
        if self.verify("case", &case.to_string(), mac) {
            Ok(Some(Token::Case(case)))
        } else {
            Err(Forged)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_and_forgeries_are_recognised() {
        let k = MailKeys::new([7; 32]);
        let bounce = k.bounce_address(3, 42, "support.example.de");
        let local = bounce.split('@').next().unwrap();
        assert_eq!(k.read(local), Ok(Some(Token::Bounce { case: 3, message: 42 })));
        assert_eq!(
            k.read(&local.to_ascii_uppercase()),
            Ok(Some(Token::Bounce { case: 3, message: 42 })),
            "relays may upper-case"
        );
        assert_eq!(k.read("bounces+3.43-0000000000"), Err(Forged), "forged");
        assert_eq!(k.read(&local.replace("3.42", "3.43")), Err(Forged), "another message with the same MAC");
        let case = k.case_address("support", 9, "support.example.de");
        assert!(case.starts_with("support+c9-"));
        assert_eq!(k.read(case.split('@').next().unwrap()), Ok(Some(Token::Case(9))));
        assert_eq!(k.read("support"), Ok(None));
        assert_eq!(k.read("jana+newsletter"), Ok(None), "an ordinary sub-address");
        let other = MailKeys::new([8; 32]);
        assert_eq!(other.read(local), Err(Forged), "another master key");
        let own = format!("kontor.3.42.{}@support.example.de", k.message_id_mac(3, 42));
        assert!(k.is_own_message_id(&own));
        assert!(!other.is_own_message_id(&own), "another key");
        assert!(!k.is_own_message_id("kontor.3.43.0000000000@support.example.de"), "forged");
        assert!(!k.is_own_message_id("first-4711@kunde.example"));
    }
}
