//! Typed identifiers and validated names: once one of these exists, it is valid.

use std::fmt;

use uuid::Uuid;

use super::ValidationError;

macro_rules! uuid_id {
    ($name:ident, $what:literal) => {
        #[doc = concat!("Identifier of ", $what, ": a UUIDv7, so ids sort by creation time.")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            /// Parses the 32-hex-digit form that `Display` writes (hyphens are accepted too).
            pub fn parse(s: &str) -> Option<Self> {
                Uuid::try_parse(s).ok().map(Self)
            }

            /// The 16 bytes a store keeps.
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }

            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                Uuid::from_slice(bytes).ok().map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0.simple())
            }
        }
    };
}

uuid_id!(ReceiverId, "a receiver");
uuid_id!(ExecutionId, "an execution");
uuid_id!(ApiTokenId, "an API token");
uuid_id!(JobId, "a job");
uuid_id!(AuditId, "an audit entry");

/// Checks a user-supplied name: not blank, bounded, and free of control characters,
/// so it can be shown in logs, tables and the UI without surprises.
fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(ValidationError::new(field, format!("{field} must not be empty")));
    }
    if value.chars().count() > max {
        return Err(ValidationError::new(field, format!("{field} must be at most {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(ValidationError::new(field, format!("{field} must not contain control characters")));
    }
    // Line and paragraph separators end a line in YAML and some terminals; direction
    // overrides make a name read differently from what it is.
    let hidden = |c: char| matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if value.chars().any(hidden) {
        return Err(ValidationError::new(
            field,
            format!("{field} must not contain line or paragraph separators or text-direction controls"),
        ));
    }
    Ok(())
}

macro_rules! text_newtype {
    ($name:ident, $field:literal, $max:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, ValidationError> {
                let value = value.trim();
                check_text($field, value, $max)?;
                Ok(Self(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_newtype!(ReceiverName, "name", 128, "A receiver's name, unique within its project.");
text_newtype!(TokenName, "name", 128, "An API token's name: who acted, in the audit log.");
text_newtype!(
    ServiceId,
    "serviceId",
    255,
    "A service's id on its backend (a local service name, `stack/service`, ...)."
);

/// A service on a named backend, `backend/service`: what per-service rules (cooldown) key on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey(String);

impl ServiceKey {
    pub fn new(backend: &str, service: &ServiceId) -> Self {
        Self(format!("{backend}/{service}"))
    }

    /// Reads a key a store kept; only stores call this.
    pub fn from_stored(value: String) -> Self {
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A project (tenant) name: lowercase letters, digits, `-` and `_`, as it appears in URLs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectName(String);

impl ProjectName {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        let ok = !value.is_empty()
            && value.len() <= 63
            && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(ValidationError::new("projectId", "project names are 1 to 63 characters of a-z, 0-9, '-' and '_'"))
        }
    }

    pub fn default_project() -> Self {
        Self("default".to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_display() {
        let id = ReceiverId::generate();
        assert_eq!(ReceiverId::parse(&id.to_string()), Some(id));
        assert_eq!(ReceiverId::parse("not-an-id"), None);
    }

    #[test]
    fn ids_round_trip_through_bytes() {
        let id = ExecutionId::generate();
        assert_eq!(ExecutionId::from_slice(id.as_bytes()), Some(id));
        assert_eq!(ExecutionId::from_slice(&[1, 2, 3]), None);
    }

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(ReceiverName::parse("  web-up ").unwrap().as_str(), "web-up");
        assert!(ReceiverName::parse("   ").is_err());
        assert!(ReceiverName::parse("a\nb").is_err());
        assert!(ReceiverName::parse(&"x".repeat(129)).is_err());
        // Issue 10: a U+2028 broke out of a YAML comment line.
        assert!(ReceiverName::parse("a\u{2028}evil: 1").is_err());
        assert!(ReceiverName::parse("a\u{2029}b").is_err());
        assert!(ReceiverName::parse("abc\u{202e}fdp.exe").is_err());
    }

    #[test]
    fn project_names_are_url_safe() {
        assert!(ProjectName::parse("team-a_1").is_ok());
        assert!(ProjectName::parse("Team").is_err());
        assert!(ProjectName::parse("a/b").is_err());
        assert!(ProjectName::parse("").is_err());
    }
}
