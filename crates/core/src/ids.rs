//! Ids of the main records, one type per kind, so that a user id cannot be passed where a
//! case id belongs.
//!
//! Each is a plain `i64` inside: JSON shows the number alone (`#[serde(transparent)]`), the
//! OpenAPI document an `integer` (`int64`). Make one from a number with the kind's name
//! (`CaseId(7)`), where the number's kind is known: reading a column, parsing a path.
//!
//! ```
//! use kontor_core::{CaseId, UserId};
//!
//! fn mark_seen(user: UserId, case: CaseId) -> String {
//!     format!("user {user} saw case {case}")
//! }
//! assert_eq!(mark_seen(UserId(3), CaseId(7)), "user 3 saw case 7");
//! assert_eq!(serde_json::to_string(&CaseId(7)).unwrap(), "7");
//! ```
//!
//! Swapped arguments do not compile:
//!
//! ```compile_fail,E0308
//! use kontor_core::{CaseId, UserId};
//!
//! fn mark_seen(user: UserId, case: CaseId) {}
//! let (user, case) = (UserId(3), CaseId(7));
//! mark_seen(case, user);
//! ```

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Defines an id type over `i64`.
macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $name {
            /// The number (for SQL parameters, URLs and JSON built by hand).
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl From<$name> for i64 {
            fn from(id: $name) -> i64 {
                id.0
            }
        }

        /// The number alone, as in URLs and messages (`case 7`).
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = std::num::ParseIntError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

id_type! {
    /// The id of a [`Case`](crate::Case).
    CaseId
}

id_type! {
    /// The id of a [`Customer`](crate::Customer).
    CustomerId
}

id_type! {
    /// The id of a [`Message`](crate::Message).
    MessageId
}

id_type! {
    /// The id of a [`StaffUser`](crate::StaffUser).
    UserId
}

id_type! {
    /// The id of a [`Team`](crate::Team).
    TeamId
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::PartialSchema;

    #[test]
    fn ids_are_plain_numbers_in_json_text_and_schema() {
        assert_eq!(serde_json::to_value(CaseId(7)).unwrap(), serde_json::json!(7));
        assert_eq!(serde_json::from_value::<UserId>(serde_json::json!(3)).unwrap(), UserId(3));
        assert!(serde_json::from_value::<UserId>(serde_json::json!("3")).is_err());
        assert_eq!(serde_json::to_value(Some(TeamId(2))).unwrap(), serde_json::json!(2));
        assert_eq!(CustomerId(12).to_string(), "12");
        assert_eq!("42".parse::<MessageId>(), Ok(MessageId(42)));
        assert!("x".parse::<MessageId>().is_err());
        assert_eq!(i64::from(CaseId(5)), CaseId(5).get());
        let schema = serde_json::to_value(CaseId::schema()).unwrap();
        assert_eq!(schema, serde_json::json!({ "type": "integer", "format": "int64" }));
    }
}
