//! Identifiers and secrets as newtypes, parsed once at the edge.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The identifier was empty or only white space.
    #[error("must not be empty")]
    Empty,
    /// The identifier was longer than we accept.
    #[error("must be at most {max} characters")]
    TooLong {
        /// The longest accepted length, in characters.
        max: usize,
    },
    /// The identifier contained a control character.
    #[error("must not contain control characters")]
    ControlCharacter,
}

/// Longest identifier accepted from a host application; provider ids are far shorter.
pub const MAX_ID_LEN: usize = 128;

/// Unicode `Cc`, the characters `char::is_control` is true of, as the inside of a JSON Schema
/// (ECMA-262) pattern's character class.
pub const CONTROL_CHARS: &str = r"\u0000-\u001f\u007f-\u009f";

/// Unicode `White_Space`, what `char::is_whitespace` is true of and `str::trim` drops, as the
/// inside of a pattern's character class.
pub const WHITE_SPACE_CHARS: &str =
    r"\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// The rule of [`check_id`] as a JSON Schema (ECMA-262) pattern, for the OpenAPI document: no
/// control character anywhere, and at least one character that is neither that nor white
/// space. The length limit, [`MAX_ID_LEN`] characters, goes beside it as `maxLength`.
pub fn id_pattern() -> String {
    let (cc, ws) = (CONTROL_CHARS, WHITE_SPACE_CHARS);
    format!("^[^{cc}]*[^{cc}{ws}][^{cc}]*$")
}

fn check_id(value: &str) -> Result<(), IdError> {
    if value.trim().is_empty() {
        return Err(IdError::Empty);
    }
    if value.chars().count() > MAX_ID_LEN {
        return Err(IdError::TooLong { max: MAX_ID_LEN });
    }
    if value.chars().any(char::is_control) {
        return Err(IdError::ControlCharacter);
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses an identifier: non-empty, at most [`MAX_ID_LEN`] characters, no control characters.
            pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                check_id(&value)?;
                Ok(Self(value))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

id_type!(
    /// A user id of the host application (the JWT's user claim), never a provider id.
    UserId
);
id_type!(
    /// A user id inside the provider; only adapters and the session service see it.
    ProviderUserId
);
id_type!(
    /// A room id as the provider assigns it, opaque to the host.
    RoomId
);
id_type!(
    /// A message id as the provider assigns it (or as the client proposed it).
    MessageId
);
id_type!(
    /// An uploaded file's id in the provider.
    FileId
);

macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// `Debug` and `Display` never show the value, so it cannot end up in a log by accident.
        #[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a secret value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The secret itself, for the one place that must send it.
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(<redacted>)", stringify!($name))
            }
        }
    };
}

secret_type!(
    /// A provider session token.
    AuthToken
);
secret_type!(
    /// A provider account password.
    Password
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_once_at_the_edge() {
        assert_eq!(UserId::parse("alice").unwrap().as_str(), "alice");
        assert_eq!(UserId::parse("  "), Err(IdError::Empty));
        assert_eq!(UserId::parse("a\nb"), Err(IdError::ControlCharacter));
        assert_eq!(
            UserId::parse("x".repeat(MAX_ID_LEN + 1)),
            Err(IdError::TooLong { max: MAX_ID_LEN })
        );
        assert!(UserId::parse("ü".repeat(MAX_ID_LEN)).is_ok());
    }

    #[test]
    fn secrets_never_print() {
        let token = AuthToken::new("s3cret");
        assert_eq!(format!("{token:?}"), "AuthToken(<redacted>)");
        assert_eq!(token.expose(), "s3cret");
    }
}
