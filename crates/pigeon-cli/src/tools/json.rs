//! A small JSON tree for `pigeon-sub -F %j` / `%J`: parsing payloads and printing them the way
//! `mosquitto_sub` prints them (key order kept, numbers as C's `%.15g`, tabs with `--pretty`).

/// A JSON value; objects keep their keys' order (and duplicates).
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Number(f64),
    /// A string, as bytes (payloads need not be UTF-8).
    String(Vec<u8>),
    /// An array.
    Array(Vec<Json>),
    /// An object.
    Object(Vec<(Vec<u8>, Json)>),
}

impl Json {
    /// A string value.
    pub fn str(s: impl AsRef<[u8]>) -> Json {
        Json::String(s.as_ref().to_vec())
    }

    /// Serializes: compact, or with newlines and tabs when `pretty`.
    pub fn print(&self, pretty: bool) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out, pretty, 0);
        out
    }

    fn write(&self, out: &mut Vec<u8>, pretty: bool, depth: usize) {
        match self {
            Json::Null => out.extend_from_slice(b"null"),
            Json::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Json::Number(n) => out.extend_from_slice(number(*n).as_bytes()),
            Json::String(s) => quote(s, out),
            Json::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                        if pretty {
                            out.push(b' ');
                        }
                    }
                    item.write(out, pretty, depth + 1);
                }
                out.push(b']');
            }
            Json::Object(members) => {
                out.push(b'{');
                if pretty {
                    out.push(b'\n');
                }
                for (i, (key, value)) in members.iter().enumerate() {
                    if pretty {
                        out.extend(std::iter::repeat_n(b'\t', depth + 1));
                    }
                    quote(key, out);
                    out.push(b':');
                    if pretty {
                        out.push(b'\t');
                    }
                    value.write(out, pretty, depth + 1);
                    if i + 1 < members.len() {
                        out.push(b',');
                    }
                    if pretty {
                        out.push(b'\n');
                    }
                }
                if pretty {
                    out.extend(std::iter::repeat_n(b'\t', depth));
                }
                out.push(b'}');
            }
        }
    }

    /// Parses a JSON text (leading white space allowed, anything after the value ignored).
    pub fn parse(text: &[u8]) -> Option<Json> {
        let mut p = Parser { s: text, i: 0 };
        p.value(0)
    }
}

/// A string with JSON's escapes; bytes from 0x20 up, '"' and '\\' aside, are copied.
fn quote(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0C => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..0x20 => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// A number as C's `%1.15g`, or `%1.17g` when 15 digits do not give it back; `null` when it
/// is not finite.
pub fn number(n: f64) -> String {
    if !n.is_finite() {
        return "null".to_owned();
    }
    let short = g_format(n, 15);
    if short.parse::<f64>().ok() == Some(n) {
        short
    } else {
        g_format(n, 17)
    }
}

/// C's `%.{precision}g`.
fn g_format(n: f64, precision: usize) -> String {
    if n == 0.0 {
        return if n.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let sci = format!("{:.*e}", precision - 1, n);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let p = i32::try_from(precision).unwrap_or(17);
    if exp < -4 || exp >= p {
        let mantissa = trim_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
    } else {
        let decimals = usize::try_from(p - 1 - exp).unwrap_or(0);
        trim_zeros(&format!("{n:.decimals$}")).to_owned()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &[u8]) -> bool {
        if self.s[self.i..].starts_with(lit) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Option<Json> {
        if depth > 1000 {
            return None;
        }
        self.skip_ws();
        let v = match *self.s.get(self.i)? {
            b'n' if self.eat(b"null") => Json::Null,
            b't' if self.eat(b"true") => Json::Bool(true),
            b'f' if self.eat(b"false") => Json::Bool(false),
            b'"' => Json::String(self.string()?),
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                self.skip_ws();
                if self.eat(b"]") {
                    return Some(Json::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.skip_ws();
                    if self.eat(b",") {
                        continue;
                    }
                    if self.eat(b"]") {
                        break;
                    }
                    return None;
                }
                Json::Array(items)
            }
            b'{' => {
                self.i += 1;
                let mut members = Vec::new();
                self.skip_ws();
                if self.eat(b"}") {
                    return Some(Json::Object(members));
                }
                loop {
                    self.skip_ws();
                    if self.s.get(self.i) != Some(&b'"') {
                        return None;
                    }
                    let key = self.string()?;
                    self.skip_ws();
                    if !self.eat(b":") {
                        return None;
                    }
                    members.push((key, self.value(depth + 1)?));
                    self.skip_ws();
                    if self.eat(b",") {
                        continue;
                    }
                    if self.eat(b"}") {
                        break;
                    }
                    return None;
                }
                Json::Object(members)
            }
            b'-' | b'0'..=b'9' => {
                let start = self.i;
                while let Some(b'0'..=b'9' | b'+' | b'-' | b'.' | b'e' | b'E') = self.s.get(self.i)
                {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.i]).ok()?;
                Json::Number(text.parse().ok()?)
            }
            _ => return None,
        };
        Some(v)
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.s.get(self.i..self.i + 4)?;
        let v = u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()?;
        self.i += 4;
        Some(v)
    }

    fn string(&mut self) -> Option<Vec<u8>> {
        self.i += 1; // the opening quote
        let mut out = Vec::new();
        loop {
            let b = *self.s.get(self.i)?;
            self.i += 1;
            match b {
                b'"' => return Some(out),
                b'\\' => {
                    let e = *self.s.get(self.i)?;
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0C),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut c = self.hex4()?;
                            if (0xD800..0xDC00).contains(&c) {
                                if !self.eat(b"\\u") {
                                    return None;
                                }
                                let low = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&low) {
                                    return None;
                                }
                                c = 0x10000 + ((c - 0xD800) << 10) + (low - 0xDC00);
                            }
                            let ch = char::from_u32(c)?;
                            let mut buf = [0; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return None,
                    }
                }
                _ => out.push(b),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_like_c() {
        for (n, s) in [
            (27.0, "27"),
            (0.1, "0.1"),
            (1e300, "1e+300"),
            (-0.0, "-0"),
            (123_456_789_012.0, "123456789012"),
            (1.5e-7, "1.5e-07"),
            (1e15, "1e+15"),
            (123_456_789_012_345.0, "123456789012345"),
        ] {
            assert_eq!(number(n), s);
        }
    }

    #[test]
    fn round_trip() {
        let text = br#" {"x": 27.0, "y":[true,false,null,"s\u00e9\n\u0001/"], "o":{}} trailing"#;
        let v = Json::parse(text).unwrap();
        assert_eq!(
            String::from_utf8(v.print(false)).unwrap(),
            "{\"x\":27,\"y\":[true,false,null,\"s\u{e9}\\n\\u0001/\"],\"o\":{}}"
        );
        assert_eq!(
            String::from_utf8(v.print(true)).unwrap(),
            "{\n\t\"x\":\t27,\n\t\"y\":\t[true, false, null, \"s\u{e9}\\n\\u0001/\"],\n\t\"o\":\t{\n\t}\n}"
        );
        assert!(Json::parse(b"{\"a\":}").is_none());
        assert!(Json::parse(b"retained one").is_none());
    }
}
