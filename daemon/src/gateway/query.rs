//! Finding an access token in a query string, the way the servers behind the gateway would
//! read it. Pure, so it can be fuzzed.
//!
//! A parameter is a token when its name, read as servers read names, is `access_token`:
//! parameters are separated by `&` or `;`, the name ends at the first `=`, `+` is a space,
//! `%XX` is decoded once, case is ignored (with the two non-ASCII letters that fold to ASCII
//! ones: `ſ` to `s`, the Kelvin sign to `k`), and, as PHP does, `.` and ` ` stand for `_`
//! and `access_token[...]` is `access_token`.

const TOKEN_PARAMETER: &[u8] = b"access_token";

/// True when `query` (without the `?`) has an `access_token` parameter in any spelling that
/// a server could take for it.
pub fn has_access_token(query: &str) -> bool {
    query
        .split(['&', ';'])
        .any(|pair| is_token_name(pair.split('=').next().unwrap_or(pair)))
}

/// `%XX` decoded once (a malformed escape is kept as is), `+` as a space.
fn percent_decode(raw: &str) -> Vec<u8> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        let escaped = (byte == b'%')
            .then(|| bytes.get(at + 1..at + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(decoded) => {
                out.push(decoded);
                at += 3;
            }
            None => {
                out.push(if byte == b'+' { b' ' } else { byte });
                at += 1;
            }
        }
    }
    out
}

fn is_token_name(raw: &str) -> bool {
    let decoded = percent_decode(raw);
    let name = String::from_utf8_lossy(&decoded);
    let mut folded = Vec::with_capacity(name.len());
    for ch in name.chars() {
        let ch = match ch {
            '\u{17f}' => 's',
            '\u{212a}' => 'k',
            '.' | ' ' => '_',
            other => other.to_ascii_lowercase(),
        };
        if ch == '[' {
            // `access_token[]` and `access_token[x]`: PHP reads an array named access_token.
            return folded == TOKEN_PARAMETER && name.contains(']');
        }
        if !ch.is_ascii() || folded.len() == TOKEN_PARAMETER.len() {
            return false;
        }
        folded.push(ch as u8);
    }
    folded == TOKEN_PARAMETER
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_access_token_is_found() {
        for query in [
            "access_token=abc",
            "access_token",
            "access_token=",
            "a=1&access_token=abc",
            "a=1;access_token=abc",
            "a=1&b=2;access_token=abc&c=3",
            "ACCESS_TOKEN=abc",
            "Access_Token=abc",
            "access%5Ftoken=abc",
            "access%5ftoken=abc",
            "%61ccess_token=abc",
            "%41%43%43%45%53%53%5F%54%4F%4B%45%4E=abc",
            "access.token=abc",
            "access+token=abc",
            "access%20token=abc",
            "access_token[]=abc",
            "access_token[0]=abc",
            "access_token%5B%5D=abc",
            "acce%C5%BF%C5%BF_token=abc",
            "access_to%E2%84%AAen=abc",
            "&&access_token=abc",
            "access_token==abc",
        ] {
            assert!(has_access_token(query), "{query:?} should be found");
        }
    }

    #[test]
    fn other_parameters_pass() {
        for query in [
            "",
            "a=1",
            "my_access_token=abc",
            "access_tokens=abc",
            "access_token_=abc",
            "xaccess_token=abc",
            "access-token=abc",
            "accesstoken=abc",
            "a=access_token",
            "a=1&b=access_token",
            "access%5=abc",
            "access_token[=abc",
            "%zzaccess_token=abc",
            "access_tok%",
            "\u{e9}access_token=1",
        ] {
            assert!(!has_access_token(query), "{query:?} should pass");
        }
    }
}
