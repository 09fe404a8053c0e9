//! JSON encoding of events, written by hand into a reusable `Vec<u8>`:
//! one object per event with snake_case fields, ids and prices as numbers,
//! times as `"YYYY-MM-DD HH:MM:SS.mmm"` strings (UTC, no zone), which
//! Arrow's JSON reader decodes as `Timestamp(Millisecond, None)` and DuckDB
//! as `TIMESTAMP`.

use super::model::{Auction, Bid, Event, Person};

impl Event {
    /// Append the event as one JSON object (no newline) to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Event::Person(p) => p.write_json(out),
            Event::Auction(a) => a.write_json(out),
            Event::Bid(b) => b.write_json(out),
        }
    }

    /// The event as one JSON object (no newline).
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(256);
        self.write_json(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Person {
    /// Append `{"id":..,"name":..,...}` to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = Object::open(out);
        o.number("id", self.id);
        o.string("name", &self.name);
        o.string("email_address", &self.email_address);
        o.string("credit_card", &self.credit_card);
        o.string("city", &self.city);
        o.string("state", &self.state);
        o.time("date_time", self.date_time);
        o.string("extra", &self.extra);
        o.close();
    }
}

impl Auction {
    /// Append `{"id":..,"item_name":..,...}` to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = Object::open(out);
        o.number("id", self.id);
        o.string("item_name", &self.item_name);
        o.string("description", &self.description);
        o.number("initial_bid", self.initial_bid);
        o.number("reserve", self.reserve);
        o.time("date_time", self.date_time);
        o.time("expires", self.expires);
        o.number("seller", self.seller);
        o.number("category", self.category);
        o.string("extra", &self.extra);
        o.close();
    }
}

impl Bid {
    /// Append `{"auction":..,"bidder":..,...}` to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = Object::open(out);
        o.number("auction", self.auction);
        o.number("bidder", self.bidder);
        o.number("price", self.price);
        o.string("channel", &self.channel);
        o.string("url", &self.url);
        o.time("date_time", self.date_time);
        o.string("extra", &self.extra);
        o.close();
    }
}

/// A JSON object being written: commas between fields.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    fn open(out: &'a mut Vec<u8>) -> Object<'a> {
        out.push(b'{');
        Object { out, first: true }
    }

    /// `"name":` (field names are plain ASCII and never need escaping).
    fn field(&mut self, name: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn number(&mut self, name: &str, value: u64) {
        self.field(name);
        write_u64(value, self.out);
    }

    fn string(&mut self, name: &str, value: &str) {
        self.field(name);
        write_json_string(value, self.out);
    }

    fn time(&mut self, name: &str, micros: i64) {
        self.field(name);
        self.out.push(b'"');
        write_timestamp(micros, self.out);
        self.out.push(b'"');
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

/// Append `value` in decimal.
pub fn write_u64(value: u64, out: &mut Vec<u8>) {
    pad(value, 1, out);
}

/// Append `s` as a quoted JSON string, escaping only where needed.
pub fn write_json_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.extend_from_slice(s.as_bytes());
    } else {
        s.bytes().for_each(|b| escape_byte(b, out));
    }
    out.push(b'"');
}

fn escape_byte(b: u8, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        0..=0x1f => {
            out.extend_from_slice(b"\\u00");
            out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
        _ => out.push(b),
    }
}

/// Append `micros` (since the epoch, UTC) as `YYYY-MM-DD HH:MM:SS.mmm`,
/// truncated to the millisecond.
pub fn write_timestamp(micros: i64, out: &mut Vec<u8>) {
    let ms = micros.div_euclid(1000);
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (year, month, day) = civil_from_days(days);
    pad(year.max(0) as u64, 4, out);
    out.push(b'-');
    pad(u64::from(month), 2, out);
    out.push(b'-');
    pad(u64::from(day), 2, out);
    out.push(b' ');
    let secs = (ms_of_day / 1000) as u64;
    pad(secs / 3600, 2, out);
    out.push(b':');
    pad(secs / 60 % 60, 2, out);
    out.push(b':');
    pad(secs % 60, 2, out);
    out.push(b'.');
    pad((ms_of_day % 1000) as u64, 3, out);
}

/// `micros` as `YYYY-MM-DD HH:MM:SS.mmm`.
pub fn format_timestamp(micros: i64) -> String {
    let mut out = Vec::with_capacity(23);
    write_timestamp(micros, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Append `value` zero-padded to at least `width` (at most 20) digits.
fn pad(mut value: u64, width: usize, out: &mut Vec<u8>) {
    let mut digits = [b'0'; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i.min(digits.len() - width.min(20))..]);
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_match_chrono() {
        let samples = [
            0,
            1_767_225_600_000_000,
            1_767_225_600_123_999,
            951_782_400_000_000 - 1, // just before 2000-02-29
            -1,
            253_402_300_799_999_999,
            -62_167_219_200_000_000,
        ];
        for micros in samples {
            let expected = chrono::DateTime::from_timestamp_micros(micros)
                .unwrap()
                .naive_utc()
                .format("%Y-%m-%d %H:%M:%S%.3f")
                .to_string();
            assert_eq!(format_timestamp(micros), expected, "{micros}");
        }
    }

    #[test]
    fn strings_are_escaped_only_when_needed() {
        let mut out = Vec::new();
        write_json_string("plain text", &mut out);
        write_json_string("a\"b\\c\nd\u{1}é", &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, r#""plain text""a\"b\\c\nd\u0001é""#);
        let parsed: String = serde_json::from_str(&text[12..]).unwrap();
        assert_eq!(parsed, "a\"b\\c\nd\u{1}é");
    }

    #[test]
    fn numbers() {
        let mut out = Vec::new();
        for n in [0, 7, 10, 1_000, u64::MAX] {
            out.clear();
            write_u64(n, &mut out);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
