//! A notification channel's configuration (SPEC §5), parsed from the JSON object the store keeps
//! into a typed, validated value, and what a webhook delivery posts.
//!
//! Owns: the shape of each kind's config, its limits, and the webhook presets. A preset is data
//! (a URL, a body template and headers), never a code path of its own: [`WebhookConfig::request`]
//! renders any preset into one [`WebhookRequest`] that a single sender posts.
//!
//! For the chat presets the channel's secret is the provider's token (Telegram's bot token,
//! WhatsApp Cloud API's access token), so that it is stored like every secret (never shown,
//! never in the JSON config) and not repeated; it still keys the `X-TDS-Signature`, which those
//! providers ignore.
//!
//! Must not: send anything or read the store. Errors name the form field they belong to.

use crate::{Email, ValidationError};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::fmt;

/// At most this many addresses in an email channel.
pub const MAX_ADDRESSES: usize = 20;
/// Longest webhook URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// Longest chat id, phone number id or recipient number.
const MAX_ID_LEN: usize = 64;
/// Where the token goes in a preset's URL or headers.
const TOKEN: &str = "{token}";
/// Where the message text goes in a preset's body template.
const TEXT: &str = "{text}";

/// Language of a channel's messages (chat text, an email channel's emails).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub enum Language {
    #[default]
    #[serde(rename = "pt-BR")]
    PtBr,
    #[serde(rename = "en")]
    En,
}

impl Language {
    /// `en…` is English; anything else is Brazilian Portuguese, the default.
    pub fn from_tag(tag: &str) -> Self {
        if tag.trim().to_ascii_lowercase().starts_with("en") { Self::En } else { Self::PtBr }
    }
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::PtBr => "pt-BR",
            Self::En => "en",
        }
    }
}

/// An email channel: extra addresses told about the tenant's alerts (members are told by their
/// own preferences).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmailConfig {
    pub addresses: Vec<Email>,
    pub language: Language,
}

/// Which provider a webhook speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// The [`super::notice::Notice`] JSON, signed: for the tenant's own systems.
    Generic,
    /// Telegram Bot API `sendMessage`: `{"chat_id", "text"}`; the secret is the bot token.
    Telegram,
    /// WhatsApp Cloud API `messages`, text type; the secret is the bearer access token.
    Whatsapp,
}

impl Preset {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Generic => "generic",
            Self::Telegram => "telegram",
            Self::Whatsapp => "whatsapp",
        }
    }
}

/// How a webhook's body is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyTemplate {
    /// The notice JSON exactly as stored.
    Notice,
    /// This JSON, with every string equal to `{text}` replaced by the message text.
    Json(Value),
}

/// A webhook channel: a preset rendered to a URL, a body template and headers.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct WebhookConfig {
    pub preset: Preset,
    /// May hold `{token}` (Telegram), filled from the secret when sending.
    url: String,
    body: BodyTemplate,
    /// Extra headers; values may hold `{token}`.
    headers: Vec<(String, String)>,
    pub language: Language,
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("preset", &self.preset)
            .field("url", &self.url)
            .field("language", &self.language)
            .finish_non_exhaustive()
    }
}

/// A channel's configuration, by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ChannelConfig {
    Email(EmailConfig),
    Webhook(WebhookConfig),
}

/// What a webhook delivery posts. `Debug` hides the URL and headers (a Telegram URL and a
/// WhatsApp header hold the token).
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl fmt::Debug for WebhookRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookRequest").field("body", &self.body).finish_non_exhaustive()
    }
}

fn rule(field: &'static str, value: impl Into<String>, reason: &str) -> ValidationError {
    ValidationError::Rule { field, value: value.into(), reason: reason.to_owned() }
}

fn text<'a>(config: &'a Map<String, Value>, field: &'static str) -> Result<Option<&'a str>, ValidationError> {
    match config.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim())),
        Some(other) => Err(rule(field, other.to_string(), "must be text")),
    }
}

fn required<'a>(config: &'a Map<String, Value>, field: &'static str) -> Result<&'a str, ValidationError> {
    text(config, field)?.ok_or(ValidationError::Required { field })
}

/// A chat id, phone number id or phone number: short, no spaces or control characters.
fn identifier(config: &Map<String, Value>, field: &'static str) -> Result<String, ValidationError> {
    let value = required(config, field)?;
    if value.chars().count() > MAX_ID_LEN {
        return Err(ValidationError::TooLong { field, len: value.chars().count(), max: MAX_ID_LEN });
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control() || c == '/' || c == '?' || c == '#') {
        return Err(rule(field, value, "must not contain spaces, '/', '?' or '#'"));
    }
    Ok(value.to_owned())
}

/// An absolute `http` or `https` URL with a host, at most [`MAX_URL_LEN`] characters.
pub fn check_url(field: &'static str, value: &str) -> Result<String, ValidationError> {
    if value.len() > MAX_URL_LEN {
        return Err(ValidationError::TooLong { field, len: value.chars().count(), max: MAX_URL_LEN });
    }
    // Checked on the text with the token placeholder already in it: braces are fine in a path.
    let parsed = url::Url::parse(value).map_err(|e| rule(field, value, &format!("is not a URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(rule(field, value, "must start with http:// or https://"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(rule(field, value, "has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(rule(field, value, "must not hold a user name or password (use the secret)"));
    }
    Ok(value.to_owned())
}

fn language(config: &Map<String, Value>) -> Result<Language, ValidationError> {
    match text(config, "language")? {
        None => Ok(Language::default()),
        Some("pt-BR" | "pt" | "pt-br") => Ok(Language::PtBr),
        Some("en") => Ok(Language::En),
        Some(other) => {
            Err(ValidationError::Choice { field: "language", value: other.to_owned(), expected: "pt-BR, en" })
        }
    }
}

fn object(config: &Value) -> Result<&Map<String, Value>, ValidationError> {
    config.as_object().ok_or_else(|| rule("config", config.to_string(), "must be a JSON object"))
}

impl EmailConfig {
    /// `{"addresses": ["ana@acme.com.br", …], "language": "pt-BR"}`: 1 to [`MAX_ADDRESSES`]
    /// valid, distinct addresses.
    pub fn parse(config: &Value) -> Result<Self, ValidationError> {
        let config = object(config)?;
        let list: Vec<Value> = match config.get("addresses") {
            None | Some(Value::Null) => return Err(ValidationError::Required { field: "addresses" }),
            Some(Value::Array(list)) => list.clone(),
            // A form's text area: one address per line, or separated by commas.
            Some(Value::String(s)) => s
                .split([',', ';', '\n'])
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(|a| Value::String(a.to_owned()))
                .collect(),
            Some(other) => return Err(rule("addresses", other.to_string(), "must be a list of addresses")),
        };
        if list.is_empty() {
            return Err(ValidationError::Required { field: "addresses" });
        }
        if list.len() > MAX_ADDRESSES {
            return Err(ValidationError::out_of_range("addresses", list.len(), 1, MAX_ADDRESSES));
        }
        let mut addresses: Vec<Email> = Vec::with_capacity(list.len());
        for item in &list {
            let Value::String(s) = item else {
                return Err(rule("addresses", item.to_string(), "must be an email address"));
            };
            let email =
                Email::parse(s).map_err(|_| rule("addresses", s.as_str(), "is not an email address"))?;
            if !addresses.contains(&email) {
                addresses.push(email);
            }
        }
        Ok(Self { addresses, language: language(config)? })
    }

    pub fn to_json(&self) -> Value {
        json!({
            "addresses": self.addresses.iter().map(Email::as_str).collect::<Vec<_>>(),
            "language": self.language.as_str(),
        })
    }
}

impl WebhookConfig {
    /// By `preset` (default `generic`):
    /// - `generic`: `{"url": "https://…"}`;
    /// - `telegram`: `{"chat_id": "-100…"}` (and optionally `url`, for a self-hosted Bot API
    ///   server, with `{token}` where the bot token goes);
    /// - `whatsapp`: `{"phone_number_id": "…", "to": "5511…"}` (optionally `url`).
    ///
    /// Each may have `"language": "pt-BR" | "en"` for the chat text.
    pub fn parse(config: &Value) -> Result<Self, ValidationError> {
        let config = object(config)?;
        let language = language(config)?;
        let preset = match text(config, "preset")? {
            None | Some("generic") => Preset::Generic,
            Some("telegram") => Preset::Telegram,
            Some("whatsapp") => Preset::Whatsapp,
            Some(other) => {
                return Err(ValidationError::Choice {
                    field: "preset",
                    value: other.to_owned(),
                    expected: "generic, telegram, whatsapp",
                });
            }
        };
        let url_or = |default: String| -> Result<String, ValidationError> {
            check_url("url", text(config, "url")?.map_or(default.as_str(), |u| u))
        };
        Ok(match preset {
            Preset::Generic => Self {
                preset,
                url: check_url("url", required(config, "url")?)?,
                body: BodyTemplate::Notice,
                headers: Vec::new(),
                language,
            },
            Preset::Telegram => {
                let chat_id = identifier(config, "chat_id")?;
                Self {
                    preset,
                    url: url_or(format!("https://api.telegram.org/bot{TOKEN}/sendMessage"))?,
                    body: BodyTemplate::Json(json!({"chat_id": chat_id, "text": TEXT})),
                    headers: Vec::new(),
                    language,
                }
            }
            Preset::Whatsapp => {
                let phone = identifier(config, "phone_number_id")?;
                let to = identifier(config, "to")?;
                Self {
                    preset,
                    url: url_or(format!("https://graph.facebook.com/v19.0/{phone}/messages"))?,
                    body: BodyTemplate::Json(json!({
                        "messaging_product": "whatsapp",
                        "to": to,
                        "type": "text",
                        "text": {"body": TEXT},
                    })),
                    headers: vec![("Authorization".to_owned(), format!("Bearer {TOKEN}"))],
                    language,
                }
            }
        })
    }

    /// What to post for a notice: `notice_json` is the stored notice (a generic webhook's body,
    /// byte for byte), `text` its wording for people (chat presets), `secret` the channel's.
    pub fn request(&self, secret: &str, notice_json: &str, text: &str) -> WebhookRequest {
        let body = match &self.body {
            BodyTemplate::Notice => notice_json.to_owned(),
            BodyTemplate::Json(template) => fill(template, text).to_string(),
        };
        WebhookRequest {
            url: self.url.replace(TOKEN, secret),
            headers: self.headers.iter().map(|(k, v)| (k.clone(), v.replace(TOKEN, secret))).collect(),
            body,
        }
    }

    /// Whether the body is the notice JSON (else a chat preset's text message).
    pub fn posts_notice(&self) -> bool {
        self.body == BodyTemplate::Notice
    }
}

/// The template with every string equal to `{text}` replaced by `text`.
fn fill(template: &Value, text: &str) -> Value {
    match template {
        Value::String(s) if s == TEXT => Value::String(text.to_owned()),
        Value::Array(items) => Value::Array(items.iter().map(|v| fill(v, text)).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), fill(v, text))).collect()),
        other => other.clone(),
    }
}

impl ChannelConfig {
    /// Parses a stored or submitted config for a channel of `kind` (`email` or `webhook`).
    pub fn parse(kind: &str, config: &Value) -> Result<Self, ValidationError> {
        match kind {
            "email" => EmailConfig::parse(config).map(Self::Email),
            "webhook" => WebhookConfig::parse(config).map(Self::Webhook),
            other => Err(ValidationError::Choice {
                field: "kind",
                value: other.to_owned(),
                expected: "email, webhook",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn field_of(e: &ValidationError) -> &'static str {
        e.field().unwrap_or_else(|| panic!("no field in {e:?}"))
    }

    #[test]
    fn email_configs() {
        let ok =
            EmailConfig::parse(&json!({"addresses": ["a@acme.com.br", "b@acme.com.br", "a@acme.com.br"]}))
                .unwrap();
        assert_eq!(ok.addresses.len(), 2);
        assert_eq!(ok.language, Language::PtBr);
        let lines =
            EmailConfig::parse(&json!({"addresses": "a@x.com\n b@y.com, ", "language": "en"})).unwrap();
        assert_eq!(lines.addresses.len(), 2);
        assert_eq!(lines.language, Language::En);
        assert_eq!(EmailConfig::parse(&lines.to_json()).unwrap(), lines);
        let many: Vec<String> = (0..21).map(|i| format!("u{i}@x.com")).collect();
        for (config, field) in [
            (json!({}), "addresses"),
            (json!({"addresses": []}), "addresses"),
            (json!({"addresses": ["not an address"]}), "addresses"),
            (json!({"addresses": [1]}), "addresses"),
            (json!({"addresses": many}), "addresses"),
            (json!({"addresses": ["a@x.com"], "language": "fr"}), "language"),
            (json!([]), "config"),
        ] {
            let e = EmailConfig::parse(&config).unwrap_err();
            assert_eq!(field_of(&e), field, "{config}: {e}");
        }
    }

    #[test]
    fn webhook_configs_and_their_errors() {
        let long = format!("https://x.example/{}", "a".repeat(MAX_URL_LEN));
        for (config, field) in [
            (json!({}), "url"),
            (json!({"url": "ftp://x.example/"}), "url"),
            (json!({"url": "file:///etc/passwd"}), "url"),
            (json!({"url": "not a url"}), "url"),
            (json!({"url": "https://user:pw@x.example/"}), "url"),
            (json!({"url": long}), "url"),
            (json!({"url": 5}), "url"),
            (json!({"preset": "slack", "url": "https://x.example/"}), "preset"),
            (json!({"preset": "telegram"}), "chat_id"),
            (json!({"preset": "telegram", "chat_id": "a b"}), "chat_id"),
            (json!({"preset": "whatsapp", "to": "5511"}), "phone_number_id"),
            (json!({"preset": "whatsapp", "phone_number_id": "123"}), "to"),
            (json!({"preset": "whatsapp", "phone_number_id": "1/../2", "to": "5511"}), "phone_number_id"),
        ] {
            let e = WebhookConfig::parse(&config).unwrap_err();
            assert_eq!(field_of(&e), field, "{config}: {e}");
        }
        assert!(WebhookConfig::parse(&json!({"url": "http://127.0.0.1:8080/hook"})).is_ok());
    }

    #[test]
    fn a_generic_webhook_posts_the_notice_as_stored() {
        let config = WebhookConfig::parse(&json!({"url": "https://hooks.acme.example/tds"})).unwrap();
        let request = config.request("s3cret", r#"{"schema":"tds.alert.v1"}"#, "ignored");
        assert_eq!(request.url, "https://hooks.acme.example/tds");
        assert_eq!(request.body, r#"{"schema":"tds.alert.v1"}"#);
        assert!(request.headers.is_empty());
        assert!(config.posts_notice());
    }

    #[test]
    fn telegram_is_a_url_and_a_body_template() {
        let config = WebhookConfig::parse(&json!({"preset": "telegram", "chat_id": "-1001234"})).unwrap();
        let request = config.request("123:ABC", "{}", "CRÍTICO: \"vazamento\"");
        assert_eq!(request.url, "https://api.telegram.org/bot123:ABC/sendMessage");
        let body: Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(body, json!({"chat_id": "-1001234", "text": "CRÍTICO: \"vazamento\""}));
        assert!(!format!("{request:?}").contains("123:ABC"));
        let own = WebhookConfig::parse(&json!({"preset": "telegram", "chat_id": "7", "url": "http://127.0.0.1:9/bot{token}/sendMessage"})).unwrap();
        assert_eq!(own.request("T", "{}", "x").url, "http://127.0.0.1:9/botT/sendMessage");
    }

    #[test]
    fn whatsapp_is_a_url_a_body_template_and_a_bearer_header() {
        let config = WebhookConfig::parse(&json!({"preset": "whatsapp", "phone_number_id": "1055", "to": "5511999990000", "language": "en"})).unwrap();
        let request = config.request("EAAG", "{}", "hello");
        assert_eq!(request.url, "https://graph.facebook.com/v19.0/1055/messages");
        assert_eq!(request.headers, vec![("Authorization".to_owned(), "Bearer EAAG".to_owned())]);
        let body: Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(
            body,
            json!({"messaging_product": "whatsapp", "to": "5511999990000", "type": "text", "text": {"body": "hello"}})
        );
        assert_eq!(config.language, Language::En);
    }

    #[test]
    fn channel_config_by_kind() {
        assert!(matches!(
            ChannelConfig::parse("email", &json!({"addresses": ["a@x.com"]})),
            Ok(ChannelConfig::Email(_))
        ));
        assert!(matches!(
            ChannelConfig::parse("webhook", &json!({"url": "https://x.example"})),
            Ok(ChannelConfig::Webhook(_))
        ));
        assert!(ChannelConfig::parse("sms", &json!({})).is_err());
        assert_eq!(Language::from_tag("en-US"), Language::En);
        assert_eq!(Language::from_tag("pt-BR"), Language::PtBr);
    }
}
