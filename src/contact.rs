//! The contact addresses every family checks the same way: a plain email address and an
//! E.164 phone number. Below `api`, `parties` and `identity`, which all use them (a cart's
//! contact, a party's contactMedium, a sign-up's address), so that an address one accepts
//! the others accept too.

/// A plain address: `local@domain`, the local part of letters, digits and `.!#$%&'*+/=?^_`{|}~-`
/// (no leading, trailing or double dot), the domain of two or more DNS labels, the last
/// alphabetic. No quoted local parts, no IP literals.
pub fn email_ok(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = s.len() <= 254
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && labels
            .last()
            .is_some_and(|t| t.len() >= 2 && t.bytes().all(|b| b.is_ascii_alphabetic()));
    local_ok && domain_ok
}

/// E.164 with its `+`: 8 to 15 digits, not starting with 0.
pub fn phone_ok(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|d| {
        (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_addresses_and_e164_numbers() {
        for ok in [
            "ana@example.com",
            "a.b+c@shop.example.es",
            "x_y-z@a-b.example",
        ] {
            assert!(email_ok(ok), "{ok}");
        }
        for bad in [
            "",
            "ana",
            "ana@",
            "@example.com",
            ".ana@example.com",
            "a..b@example.com",
            "ana@localhost",
            "ana@example.c0m",
            "ana@-x.example",
            "\"a b\"@example.com",
            "ana@[127.0.0.1]",
        ] {
            assert!(!email_ok(bad), "{bad}");
        }
        assert!(!email_ok(&format!("{}@example.com", "a".repeat(65))));
        for ok in ["+34600000001", "+12025550123", "+123456789012345"] {
            assert!(phone_ok(ok), "{ok}");
        }
        for bad in [
            "34600000001",
            "+0600000001",
            "+1234567",
            "+1234567890123456",
            "+3460000000a",
        ] {
            assert!(!phone_ok(bad), "{bad}");
        }
    }
}
