//! End-user identities as Subscription-Id (RFC 8506 sections 8.46-8.48).
//!
//! ```text
//! tel:+34671999000         -> END_USER_E164 (0)    "34671999000"   (digits, no '+')
//! sip:alice@example.com    -> END_USER_SIP_URI (2) "sip:alice@example.com"
//! imsi:214011234567890     -> END_USER_IMSI (1)    "214011234567890"
//! nai:alice@example.com    -> END_USER_NAI (3)     "alice@example.com"
//! private:acct-42          -> END_USER_PRIVATE (4) "acct-42"
//! +34671999000             -> END_USER_E164 (0)    (a bare E.164 number, as CAMARA sends it)
//! ```

use std::fmt;

use thiserror::Error;

use crate::diameter::codec::{AvpBuf, AvpCode};

/// Subscription-Id-Type values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SubscriptionType {
    EndUserE164 = 0,
    EndUserImsi = 1,
    EndUserSipUri = 2,
    EndUserNai = 3,
    EndUserPrivate = 4,
}

impl SubscriptionType {
    pub fn from_value(v: i32) -> Option<Self> {
        Some(match v {
            0 => Self::EndUserE164,
            1 => Self::EndUserImsi,
            2 => Self::EndUserSipUri,
            3 => Self::EndUserNai,
            4 => Self::EndUserPrivate,
            _ => return None,
        })
    }
}

/// A subscriber as the OCS knows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SubscriptionId {
    pub kind: SubscriptionType,
    pub data: String,
}

/// Why an end-user identifier is refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("invalid end-user identifier \"{input}\": {reason}")]
pub struct SubscriptionError {
    pub input: String,
    pub reason: &'static str,
}

impl SubscriptionId {
    /// Parses an end-user URI (see the module documentation for the forms).
    pub fn parse(uri: &str) -> Result<Self, SubscriptionError> {
        let err = |reason| SubscriptionError {
            input: uri.chars().take(128).collect(),
            reason,
        };
        let uri = uri.trim();
        if uri.is_empty() {
            return Err(err("empty"));
        }
        if uri.len() > 256 {
            return Err(err("longer than 256 characters"));
        }
        let (scheme, rest) = match uri.split_once(':') {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None if uri.starts_with('+') => ("tel".to_string(), uri),
            None => {
                return Err(err(
                    "expected tel:, sip:, imsi:, nai: or private: (or +<E.164 number>)",
                ));
            }
        };
        match scheme.as_str() {
            "tel" => {
                // RFC 3966 visual separators are tolerated; parameters (";...") are not kept.
                let number = rest.split(';').next().unwrap_or_default();
                let digits: String = number
                    .trim_start_matches('+')
                    .chars()
                    .filter(|c| !matches!(c, '-' | '.' | ' ' | '(' | ')'))
                    .collect();
                if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                    return Err(err("a tel: number holds digits only"));
                }
                if !(5..=15).contains(&digits.len()) {
                    return Err(err("an E.164 number has 5 to 15 digits"));
                }
                if digits.starts_with('0') {
                    return Err(err("an E.164 number starts with a country code (not 0)"));
                }
                Ok(Self {
                    kind: SubscriptionType::EndUserE164,
                    data: digits,
                })
            }
            "sip" | "sips" => {
                let Some((user, host)) = rest.split_once('@') else {
                    return Err(err("a sip: URI needs user@host"));
                };
                if user.is_empty()
                    || host.is_empty()
                    || host.contains(char::is_whitespace)
                    || user.contains(char::is_whitespace)
                {
                    return Err(err("a sip: URI needs user@host"));
                }
                Ok(Self {
                    kind: SubscriptionType::EndUserSipUri,
                    data: format!("{scheme}:{rest}"),
                })
            }
            "imsi" => {
                if !(6..=15).contains(&rest.len()) || !rest.chars().all(|c| c.is_ascii_digit()) {
                    return Err(err("an IMSI has 6 to 15 digits"));
                }
                Ok(Self {
                    kind: SubscriptionType::EndUserImsi,
                    data: rest.to_string(),
                })
            }
            "nai" => {
                if !rest.contains('@') || rest.contains(char::is_whitespace) {
                    return Err(err("a NAI is user@realm"));
                }
                Ok(Self {
                    kind: SubscriptionType::EndUserNai,
                    data: rest.to_string(),
                })
            }
            "private" | "acr" => {
                if rest.is_empty() || rest.contains(char::is_control) {
                    return Err(err("a private identifier must not be empty"));
                }
                Ok(Self {
                    kind: SubscriptionType::EndUserPrivate,
                    data: rest.to_string(),
                })
            }
            _ => Err(err(
                "expected tel:, sip:, imsi:, nai: or private: (or +<E.164 number>)",
            )),
        }
    }

    /// The Subscription-Id AVP.
    pub fn to_avp(&self) -> AvpBuf {
        AvpBuf::grouped(
            AvpCode::SUBSCRIPTION_ID,
            vec![
                AvpBuf::enumerated(AvpCode::SUBSCRIPTION_ID_TYPE, self.kind as i32),
                AvpBuf::utf8(AvpCode::SUBSCRIPTION_ID_DATA, &self.data),
            ],
        )
    }

    /// A canonical key: `tel:34671999000`, `sip:alice@example.com`, ...
    pub fn key(&self) -> String {
        match self.kind {
            SubscriptionType::EndUserE164 => format!("tel:{}", self.data),
            SubscriptionType::EndUserImsi => format!("imsi:{}", self.data),
            SubscriptionType::EndUserSipUri => self.data.clone(),
            SubscriptionType::EndUserNai => format!("nai:{}", self.data),
            SubscriptionType::EndUserPrivate => format!("private:{}", self.data),
        }
    }
}

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let t = SubscriptionId::parse("tel:+34671999000").unwrap();
        assert_eq!(
            (t.kind, t.data.as_str()),
            (SubscriptionType::EndUserE164, "34671999000")
        );
        assert_eq!(SubscriptionId::parse("tel:34671999000").unwrap(), t);
        assert_eq!(SubscriptionId::parse("+34671999000").unwrap(), t);
        assert_eq!(SubscriptionId::parse("tel:+34-671-999-000").unwrap(), t);
        assert_eq!(t.key(), "tel:34671999000");
        let s = SubscriptionId::parse("sip:alice@example.com").unwrap();
        assert_eq!(
            (s.kind, s.data.as_str()),
            (SubscriptionType::EndUserSipUri, "sip:alice@example.com")
        );
        assert_eq!(
            SubscriptionId::parse("imsi:214011234567890").unwrap().kind,
            SubscriptionType::EndUserImsi
        );
        assert_eq!(
            SubscriptionId::parse("nai:bob@realm.example").unwrap().data,
            "bob@realm.example"
        );
        assert_eq!(
            SubscriptionId::parse("private:acct-42").unwrap().kind,
            SubscriptionType::EndUserPrivate
        );
    }

    #[test]
    fn refusals() {
        for bad in [
            "",
            "tel:",
            "tel:+12",
            "tel:+1234567890123456",
            "tel:+34abc",
            "tel:0034671999000",
            "sip:alice",
            "sip:@host",
            "imsi:12ab",
            "nai:bob",
            "mailto:x@y",
            "34671999000",
            "private:",
        ] {
            assert!(SubscriptionId::parse(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("sip:{}@x", "a".repeat(300));
        assert!(SubscriptionId::parse(&long).is_err());
    }
}
