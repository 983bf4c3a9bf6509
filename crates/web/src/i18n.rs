//! Languages and locale formatting. Brazilian Portuguese is the default; English is chosen by
//! the user's setting, else by a language cookie (for pages before login), else by
//! `Accept-Language`. Every user-facing string goes through `rust-i18n` (`locales/*.yml`).

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tds_domain::ValidationError;

/// Cookie that remembers the language picked on the login page.
pub const LANG_COOKIE: &str = "tds_lang";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum Lang {
    #[default]
    PtBr,
    En,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::PtBr, Lang::En];

    pub const fn code(self) -> &'static str {
        match self {
            Self::PtBr => "pt-BR",
            Self::En => "en",
        }
    }

    /// The language's own name, as shown in the language picker.
    pub const fn native_name(self) -> &'static str {
        match self {
            Self::PtBr => "Português (Brasil)",
            Self::En => "English",
        }
    }

    /// Parses a stored setting or a language tag (`pt`, `pt-BR`, `en-US`, …).
    pub fn parse(tag: &str) -> Option<Self> {
        let primary = tag.trim().split(['-', '_']).next().unwrap_or("").to_ascii_lowercase();
        match primary.as_str() {
            "pt" => Some(Self::PtBr),
            "en" => Some(Self::En),
            _ => None,
        }
    }

    /// The first supported language of an `Accept-Language` header, by quality.
    pub fn from_accept_language(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get(axum::http::header::ACCEPT_LANGUAGE)?.to_str().ok()?;
        let mut tags: Vec<(f32, &str)> = value
            .split(',')
            .filter_map(|part| {
                let mut it = part.split(';');
                let tag = it.next()?.trim();
                let q = it
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .and_then(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                Some((q, tag))
            })
            .collect();
        // Stable sort keeps the header's order among equal qualities.
        tags.sort_by(|a, b| b.0.total_cmp(&a.0));
        tags.into_iter().find_map(|(_, tag)| Self::parse(tag))
    }

    /// A translated string.
    pub fn t(self, key: &str) -> String {
        rust_i18n::t!(key, locale = self.code()).into_owned()
    }

    /// A translated string with `%{name}` placeholders filled in.
    pub fn tf(self, key: &str, args: &[(&str, &str)]) -> String {
        let mut text = self.t(key);
        for (name, value) in args {
            text = text.replace(&format!("%{{{name}}}"), value);
        }
        text
    }

    /// An integer with the locale's digit grouping (`12.345` / `12,345`).
    pub fn int(self, n: i64) -> String {
        let sep = match self {
            Self::PtBr => '.',
            Self::En => ',',
        };
        group_digits(&n.unsigned_abs().to_string(), sep, n < 0)
    }

    /// A decimal number with up to `decimals` fraction digits (trailing zeros dropped).
    pub fn decimal(self, x: f64, decimals: usize) -> String {
        if !x.is_finite() {
            return x.to_string();
        }
        let text = format!("{:.*}", decimals, x.abs());
        let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
        let frac = frac.trim_end_matches('0');
        let (group, point) = match self {
            Self::PtBr => ('.', ','),
            Self::En => (',', '.'),
        };
        let negative = x < 0.0 && (int != "0" || !frac.is_empty());
        let mut out = group_digits(int, group, negative);
        if !frac.is_empty() {
            out.push(point);
            out.push_str(frac);
        }
        out
    }

    /// A date and time in the tenant's zone, in the locale's order.
    pub fn datetime(self, at: DateTime<Utc>, zone: Tz) -> String {
        let local = at.with_timezone(&zone);
        match self {
            Self::PtBr => local.format("%d/%m/%Y %H:%M:%S").to_string(),
            Self::En => local.format("%Y-%m-%d %H:%M:%S").to_string(),
        }
    }

    pub fn date(self, date: chrono::NaiveDate) -> String {
        match self {
            Self::PtBr => date.format("%d/%m/%Y").to_string(),
            Self::En => date.format("%Y-%m-%d").to_string(),
        }
    }

    /// A domain validation error in this language, naming the rule that was broken.
    pub fn validation(self, error: &ValidationError) -> String {
        use ValidationError as V;
        match error {
            V::Required { .. } => self.t("validation.required"),
            V::TooLong { max, .. } => self.tf("validation.too_long", &[("max", &max.to_string())]),
            V::ControlCharacter { .. } => self.t("validation.control"),
            V::Mac { value } => self.tf("validation.mac", &[("value", value)]),
            V::Code { value, max, .. } => {
                self.tf("validation.code", &[("value", value), ("max", &max.to_string())])
            }
            V::Cnpj { value, .. } => self.tf("validation.cnpj", &[("value", value)]),
            V::Email { value } => self.tf("validation.email", &[("value", value)]),
            V::Choice { value, expected, .. } => {
                self.tf("validation.choice", &[("value", value), ("expected", expected)])
            }
            V::Unit { value, .. } => self.tf("validation.unit", &[("value", value)]),
            V::OutOfRange { value, min, max, .. } => {
                self.tf("validation.range", &[("value", value), ("min", min), ("max", max)])
            }
            V::NotANumber { value, .. } => self.tf("validation.number", &[("value", value)]),
            V::TimeZone { value } => self.tf("validation.timezone", &[("value", value)]),
            V::Date { value } => self.tf("validation.date", &[("value", value)]),
            V::Time { value } => self.tf("validation.time", &[("value", value)]),
            V::Meter { value, .. } => self.tf("validation.meter", &[("value", value)]),
            V::NotPositive { value, .. } => self.tf("validation.not_positive", &[("value", value)]),
            V::Rule { value, reason, .. } => {
                self.tf("validation.rule", &[("value", value), ("reason", reason)])
            }
            V::RuleParams { kind, reason } => {
                self.tf("validation.rule_params", &[("kind", kind), ("reason", reason)])
            }
        }
    }
}

fn group_digits(digits: &str, sep: char, negative: bool) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if negative {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(sep);
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn numbers_follow_the_locale() {
        assert_eq!(Lang::PtBr.int(1_234_567), "1.234.567");
        assert_eq!(Lang::En.int(1_234_567), "1,234,567");
        assert_eq!(Lang::En.int(-999), "-999");
        assert_eq!(Lang::PtBr.decimal(1234.5, 3), "1.234,5");
        assert_eq!(Lang::En.decimal(1234.5, 3), "1,234.5");
        assert_eq!(Lang::En.decimal(-0.0001, 2), "0");
        assert_eq!(Lang::PtBr.decimal(-12.25, 2), "-12,25");
    }

    #[test]
    fn accept_language_picks_the_best_supported_tag() {
        let mut h = HeaderMap::new();
        h.insert("accept-language", HeaderValue::from_static("fr-FR, en-US;q=0.8, pt-BR;q=0.9"));
        assert_eq!(Lang::from_accept_language(&h), Some(Lang::PtBr));
        h.insert("accept-language", HeaderValue::from_static("de, en;q=0.5"));
        assert_eq!(Lang::from_accept_language(&h), Some(Lang::En));
        h.insert("accept-language", HeaderValue::from_static("de"));
        assert_eq!(Lang::from_accept_language(&h), None);
    }

    #[test]
    fn every_key_is_translated_into_both_languages() {
        // rust-i18n falls back to pt-BR, so a missing English line would silently show
        // Portuguese: check the file itself, key by key.
        let text = include_str!("../locales/app.yml");
        let mut keys = 0;
        let mut current: Option<(&str, bool, bool)> = None;
        let check = |entry: Option<(&str, bool, bool)>| {
            if let Some((key, pt, en)) = entry {
                assert!(pt && en, "{key}: pt-BR {pt}, en {en}");
            }
        };
        for line in text.lines().filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')) {
            if !line.starts_with(' ') {
                check(current.take());
                if !line.starts_with("_version") {
                    current = Some((line.trim_end_matches(':'), false, false));
                    keys += 1;
                }
            } else if let Some(entry) = current.as_mut() {
                entry.1 |= line.trim_start().starts_with("pt-BR:");
                entry.2 |= line.trim_start().starts_with("en:");
            }
        }
        check(current);
        assert!(keys > 50, "only {keys} keys found");
        assert_eq!(Lang::En.t("nav.home"), "Home");
        assert_eq!(Lang::PtBr.t("nav.home"), "Início");
    }

    #[test]
    fn dates_are_shown_in_the_tenant_zone() {
        let at = DateTime::parse_from_rfc3339("2026-01-15T12:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(Lang::PtBr.datetime(at, chrono_tz::America::Sao_Paulo), "15/01/2026 09:00:00");
        assert_eq!(Lang::En.datetime(at, chrono_tz::America::New_York), "2026-01-15 07:00:00");
    }
}
