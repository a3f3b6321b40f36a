//! Domain types shared by every layer.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Timestamp;

/// Defines a string-backed enum with `as_str`, `parse` and the list of allowed values.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every allowed value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire and database spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the wire spelling; `None` for anything else.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }

            /// The allowed spellings joined by ", " (for error messages).
            pub fn allowed() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// Where a case stands.
    CaseStatus { Open => "open", Pending => "pending", Resolved => "resolved", Closed => "closed" }
}

impl CaseStatus {
    /// Open and pending cases take new messages without being re-opened.
    pub fn is_active(self) -> bool {
        matches!(self, CaseStatus::Open | CaseStatus::Pending)
    }
}

string_enum! {
    /// How urgent a case is.
    Priority { Low => "low", Normal => "normal", High => "high", Urgent => "urgent" }
}

string_enum! {
    /// Whether a message came from the customer or went to them.
    Direction { In => "in", Out => "out" }
}

string_enum! {
    /// The path a message took.
    Channel {
        Api => "api", Email => "email", Sms => "sms", Whatsapp => "whatsapp",
        Telegram => "telegram", Messenger => "messenger", Instagram => "instagram",
        Webchat => "webchat", Portal => "portal", Phone => "phone", Letter => "letter",
        /// Internal notes never leave the house.
        Note => "note"
    }
}

string_enum! {
    /// Delivery state of an outbound message.
    DeliveryState {
        Queued => "queued", Sent => "sent", Delivered => "delivered", Read => "read", Failed => "failed",
        /// Held until a second staff user approves it (four-eyes); not sent yet.
        PendingApproval => "pending_approval",
        /// Rejected in the four-eyes approval; never sent.
        Rejected => "rejected"
    }
}

string_enum! {
    /// What a staff user or API token may do.
    Role {
        Admin => "admin", Agent => "agent",
        /// API tokens only: may post inbound messages (`POST /api/v1/inbound`) and nothing else.
        Ingest => "ingest"
    }
}

impl Role {
    /// The roles a staff user can have (`ingest` is for API tokens only).
    pub const STAFF: &'static [Role] = &[Role::Admin, Role::Agent];

    /// True if a staff user may have this role.
    pub fn is_staff(self) -> bool {
        Role::STAFF.contains(&self)
    }
}

string_enum! {
    /// What an event in the log records (its `type`).
    EventKind {
        MessageReceived => "message.received", MessageCreated => "message.created",
        MessageRecorded => "message.recorded", MessageDelivery => "message.delivery",
        NoteAdded => "note.added",
        CaseCreated => "case.created", CaseUpdated => "case.updated", CaseMerged => "case.merged",
        CustomerCreated => "customer.created", CustomerUpdated => "customer.updated",
        CustomerMerged => "customer.merged",
        UserCreated => "user.created", UserUpdated => "user.updated",
        UserPasswordChanged => "user.password_changed",
        TokenCreated => "token.created", TokenRevoked => "token.revoked",
        TeamCreated => "team.created", TeamUpdated => "team.updated", TeamDeleted => "team.deleted",
        TeamMemberAdded => "team.member_added", TeamMemberRemoved => "team.member_removed",
        CannedCreated => "canned.created", CannedUpdated => "canned.updated", CannedDeleted => "canned.deleted",
        SettingsUpdated => "settings.updated",
        /// The assistant analysed an inbound message (language, intent, entities, sentiment).
        MessageAnalysed => "message.analysed",
        /// Something needs a person's attention now (a negative message on a public channel).
        AlertRaised => "alert.raised",
        /// A reply is held for four-eyes approval.
        ApprovalRequested => "approval.requested",
        /// A held reply was approved (and queued) or rejected.
        ApprovalDecided => "approval.decided",
        RuleCreated => "rule.created", RuleUpdated => "rule.updated", RuleDeleted => "rule.deleted"
    }
}

impl EventKind {
    /// Kinds that put a message into a case (their payload names it by `message_id`).
    pub const MESSAGES: &'static [EventKind] =
        &[EventKind::MessageReceived, EventKind::MessageCreated, EventKind::MessageRecorded, EventKind::NoteAdded];
}

/// A person or organisation the company talks with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Customer {
    pub id: i64,
    pub name: Option<String>,
    pub language: Option<String>,
    /// Set when this customer was merged into another one.
    pub merged_into: Option<i64>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub identities: Vec<Identity>,
}

/// One address by which a customer can be reached or recognised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Identity {
    pub id: i64,
    pub customer_id: i64,
    pub kind: IdentityKind,
    /// Normalised: e-mail lower-cased, phone in E.164, provider ids as given.
    pub address: String,
    pub created_at: Timestamp,
}

pub use crate::identity::IdentityKind;

/// A matter ("Vorgang") in which messages with one customer are threaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Case {
    pub id: i64,
    pub customer_id: i64,
    pub subject: Option<String>,
    pub status: CaseStatus,
    pub priority: Priority,
    pub assignee_id: Option<i64>,
    pub team_id: Option<i64>,
    pub tags: Vec<String>,
    /// Channel of the message that opened the case.
    pub channel: Channel,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub first_response_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    pub last_message_at: Option<Timestamp>,
    /// Id of the newest event that touched this case (a view is current if it saw this).
    pub last_event_id: i64,
    /// What the customer wants: the first inbound message's intent, until an agent sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    /// `model` or `agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent_source: Option<String>,
    /// Every reply in this case needs four-eyes approval: the name of the rule that asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_rule: Option<String>,
    /// Something needs attention (a negative message on a public channel): the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
}

/// A rule of the digital assistant: when an analysed inbound message meets all its
/// conditions, its actions are taken (rules run in `position` order; disabled ones do not).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Rule {
    pub id: i64,
    pub name: String,
    pub position: i64,
    pub enabled: bool,
    pub conditions: RuleConditions,
    pub actions: Vec<RuleAction>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a message must meet; an empty list or an absent value is no condition. Lists match
/// when any of their values does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RuleConditions {
    pub channels: Vec<Channel>,
    pub intents: Vec<String>,
    /// The model is at least this sure of the intent (0–1).
    #[schema(minimum = 0, maximum = 1)]
    pub min_confidence: Option<f32>,
    /// `negative`, `neutral`, `positive`.
    pub sentiments: Vec<String>,
    /// The message's language: `de`, `en`, `other`.
    pub languages: Vec<String>,
    /// Words or phrases in the subject or text (case-insensitive).
    pub keywords: Vec<String>,
    /// The customer's language as stored with the customer.
    pub customer_languages: Vec<String>,
    /// `inside` or `outside` the business hours (the `business_hours` setting).
    #[schema(pattern = "^(inside|outside)$")]
    pub business_hours: Option<String>,
}

/// What a rule does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleAction {
    SetTeam {
        team_id: i64,
    },
    SetAssignee {
        user_id: i64,
    },
    SetPriority {
        priority: Priority,
    },
    AddTag {
        tag: String,
    },
    /// Answers with this canned response (as an automatic answer, with its safeguards).
    AutoAnswer {
        canned_id: i64,
    },
    /// Every reply in the case needs a second staff user's approval.
    RequireApproval,
    /// Tags the case `spam` and closes it.
    MarkSpam,
}

/// A file attached to a message: its bytes in Kontor's encrypted blob store (downloadable at
/// `GET /api/v1/attachments/{id}`), or a link to where the sending system keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Attachment {
    /// Set once stored; absent on attachments of messages stored before attachments had ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    /// A link kept as given (never fetched); absent when Kontor holds the bytes.
    pub url: Option<String>,
    /// SHA-256 (hex) of the bytes Kontor holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The blob store's id of the bytes (internal; never serialised).
    #[serde(skip)]
    #[schema(ignore)]
    pub blob_id: Option<String>,
}

impl Attachment {
    /// A link to a file the sending system keeps.
    pub fn link(filename: String, content_type: String, size: i64, url: Option<String>) -> Self {
        Attachment { id: None, filename, content_type, size, url, sha256: None, blob_id: None }
    }
}

/// One message in a case, in either direction, or an internal note.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Message {
    pub id: i64,
    pub case_id: i64,
    pub customer_id: i64,
    pub direction: Direction,
    /// True for internal notes, which customers never see.
    pub internal: bool,
    pub channel: Channel,
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
    pub provider_message_id: Option<String>,
    /// Staff user who wrote an outbound message or note.
    pub author_id: Option<i64>,
    pub delivery_state: Option<DeliveryState>,
    pub delivery_error: Option<String>,
    pub created_at: Timestamp,
    /// Length of a recorded phone call (channel `phone`), in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<i64>,
    /// Sent by a machine (auto-reply, out-of-office, list or bulk mail): never answered
    /// automatically.
    #[serde(default)]
    pub auto_submitted: bool,
    /// Further recipients (e-mail `Cc`: those of a reply, or those a received mail named).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cc: Vec<String>,
    /// The recipients a received mail named (e-mail `To`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    /// The raw source of a received mail is kept: `GET /api/v1/messages/{id}/raw`.
    #[serde(default)]
    pub has_raw_source: bool,
    /// Where the raw source is kept (the blob store's id; never shown).
    #[serde(skip)]
    #[schema(ignore)]
    pub raw_blob_id: Option<String>,
    /// Sent by the assistant by itself (an automatic answer), not written by a person.
    #[serde(default)]
    pub automatic: bool,
    /// What the digital assistant found in an inbound message, once it has analysed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<MessageAnalysis>,
}

/// The digital assistant's analysis of a message: language, intent, extracted data, sentiment.
/// Every field has a default, so analyses stored by an earlier version stay readable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MessageAnalysis {
    /// `de`, `en` or `other`; absent when the text is too short to tell.
    #[serde(default)]
    pub language: Option<String>,
    /// The recognised intent (one of the assistant's intents, e.g. `bank_details_change`);
    /// an agent's correction replaces the model's.
    #[serde(default)]
    pub intent: String,
    /// How sure the model is of it (0–1); 1 once an agent set it.
    #[serde(default)]
    pub intent_confidence: f32,
    /// `model`, or `agent` once a staff user set or corrected it.
    #[serde(default)]
    pub intent_source: String,
    /// The model's best intents, most likely first (up to three).
    #[serde(default)]
    pub intents: Vec<IntentScore>,
    /// `negative`, `neutral` or `positive`.
    #[serde(default)]
    pub sentiment: String,
    /// −1 (very negative) … +1 (very positive).
    #[serde(default)]
    pub sentiment_score: f32,
    /// Data found in the text, with spans in Unicode characters.
    #[serde(default)]
    pub entities: Vec<ExtractedEntity>,
    #[serde(default = "Timestamp::epoch")]
    pub analysed_at: Timestamp,
}

/// An intent with the model's probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IntentScore {
    pub intent: String,
    pub confidence: f32,
}

/// A value found in a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExtractedEntity {
    /// `iban`, `bic`, `email`, `phone`, `date`, `amount`, `address`, `meter_reading`, or the
    /// name of a configured pattern (`customer_number`, …).
    pub kind: String,
    /// Normalised (an IBAN without spaces, a date as `YYYY-MM-DD`, a phone number in E.164).
    pub value: String,
    /// As written.
    pub text: String,
    /// Start and end (exclusive), in Unicode characters.
    pub start: usize,
    pub end: usize,
    /// 0–1.
    pub confidence: f32,
    /// The parts of an address (`street`, `number`, `postcode`, `city`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub fields: std::collections::BTreeMap<String, String>,
}

/// A group of staff users that cases can be routed to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Team {
    pub id: i64,
    pub name: String,
}

/// A person working in Kontor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StaffUser {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub created_at: Timestamp,
    /// Deactivated users cannot sign in; their sessions end.
    pub active: bool,
}

/// A prepared answer that agents insert into a reply, by title or shortcut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CannedResponse {
    pub id: i64,
    pub title: String,
    /// Typed in the composer to insert the body (lower case, no spaces; unique when set).
    pub shortcut: Option<String>,
    pub body: String,
    /// Language of the body (`de`, `en`, ...); `None` for responses usable in any language.
    pub language: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One row of the append-only event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    pub id: i64,
    /// Dotted type such as `message.received` or `case.updated`.
    #[serde(rename = "type")]
    pub kind: String,
    pub case_id: Option<i64>,
    pub customer_id: Option<i64>,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_their_wire_spelling() {
        for s in CaseStatus::ALL {
            assert_eq!(CaseStatus::parse(s.as_str()), Some(*s));
        }
        for s in DeliveryState::ALL {
            assert_eq!(DeliveryState::parse(s.as_str()), Some(*s));
        }
        assert_eq!(CaseStatus::parse("sleeping"), None);
        assert_eq!(Role::allowed(), "admin, agent, ingest");
        assert!(Role::Admin.is_staff() && Role::Agent.is_staff() && !Role::Ingest.is_staff());
    }
}
