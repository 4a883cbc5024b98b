//! Reversible escaping of host ids into a provider's narrower alphabet of names.
//!
//! The gateway keeps no table from host ids to provider accounts: each adapter names an
//! account by escaping the host id. Bytes the provider allows stand for themselves; every
//! other byte of the id's UTF-8, the escape character included, becomes the escape character
//! and two hex digits. Only the canonical form reads back, so each host id has exactly one
//! name and each name at most one host id.

use crate::UserId;

/// One provider's escaping rule.
#[derive(Debug, Clone, Copy)]
pub struct IdEscaping {
    /// The byte that starts an escape; never plain.
    pub escape: u8,
    /// Whether the hex digits are upper case (else lower case).
    pub upper_hex: bool,
    /// Whether a byte stands for itself.
    pub plain: fn(u8) -> bool,
}

impl IdEscaping {
    /// `text` escaped by the rule.
    pub fn escape(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for byte in text.bytes() {
            if (self.plain)(byte) {
                out.push(char::from(byte));
            } else if self.upper_hex {
                out.push_str(&format!("{}{byte:02X}", char::from(self.escape)));
            } else {
                out.push_str(&format!("{}{byte:02x}", char::from(self.escape)));
            }
        }
        out
    }

    /// The host user id `name` escapes, when `name` is the canonical escape of one.
    pub fn user_for(&self, name: &str) -> Option<UserId> {
        let bytes = name.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b if b == self.escape => {
                    let hex = name.get(i + 1..i + 3)?;
                    let wrong_case = if self.upper_hex {
                        hex.chars().any(|c| c.is_ascii_lowercase())
                    } else {
                        hex.chars().any(|c| c.is_ascii_uppercase())
                    };
                    if wrong_case {
                        return None;
                    }
                    let byte = u8::from_str_radix(hex, 16).ok()?;
                    if (self.plain)(byte) {
                        return None;
                    }
                    out.push(byte);
                    i += 3;
                }
                b if (self.plain)(b) => {
                    out.push(b);
                    i += 1;
                }
                _ => return None,
            }
        }
        UserId::parse(String::from_utf8(out).ok()?).ok()
    }
}
