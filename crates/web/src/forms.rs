//! Form handling shared by the pages: field-level error messages and the values to re-show.
//! Every form is validated on the server by the domain parsers; the message is shown next to the
//! field it belongs to, in the user's language.

use crate::i18n::Lang;
use std::collections::BTreeMap;
use tds_domain::ValidationError;

/// Error messages by field name, plus errors that belong to the whole form.
#[derive(Debug, Clone, Default)]
pub struct FieldErrors {
    fields: BTreeMap<String, String>,
    pub form: Vec<String>,
}

impl FieldErrors {
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.form.is_empty()
    }

    pub fn set(&mut self, field: &str, message: impl Into<String>) {
        self.fields.entry(field.to_owned()).or_insert_with(|| message.into());
    }

    /// The message for `field`, if it has one (templates: `errors.get("code")`).
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }

    /// The first field with a message, and the message (the API reports one field).
    pub fn first(&self) -> Option<(&str, &str)> {
        self.fields.iter().next().map(|(f, m)| (f.as_str(), m.as_str()))
    }

    /// Every field's message, by field name.
    pub fn all(&self) -> Vec<(&str, &str)> {
        self.fields.iter().map(|(f, m)| (f.as_str(), m.as_str())).collect()
    }

    pub fn has(&self, field: &str) -> bool {
        self.fields.contains_key(field)
    }

    /// Bootstrap's class for an invalid input, or nothing.
    pub fn class(&self, field: &str) -> &'static str {
        if self.has(field) { "is-invalid" } else { "" }
    }

    pub fn form_error(&mut self, message: impl Into<String>) {
        self.form.push(message.into());
    }
}

/// Parses one field, recording its error under `field` and returning `None` when it fails.
pub fn field<T>(
    errors: &mut FieldErrors,
    lang: Lang,
    field: &str,
    result: Result<T, ValidationError>,
) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            errors.set(field, lang.validation(&e));
            None
        }
    }
}

/// An optional text field: empty means `None`.
pub fn optional(input: &str) -> Option<String> {
    let trimmed = input.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}
