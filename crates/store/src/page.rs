//! Pagination of lists: every list query takes a [`Page`] and returns the total with the items;
//! and the `LIKE` pattern of a list's search box.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub number: u32,
    pub size: u32,
}

impl Page {
    pub const MAX_SIZE: u32 = 500;

    /// Page `number` (1-based) of `size` items; out-of-range values are clamped.
    pub fn new(number: u32, size: u32) -> Self {
        Self { number: number.max(1), size: size.clamp(1, Self::MAX_SIZE) }
    }

    pub fn limit(self) -> i64 {
        i64::from(self.size)
    }

    pub fn offset(self) -> i64 {
        i64::from(self.number - 1) * i64::from(self.size)
    }
}

impl Default for Page {
    fn default() -> Self {
        Self::new(1, 50)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub page: u32,
    pub size: u32,
}

impl<T> Paged<T> {
    pub fn pages(&self) -> i64 {
        (self.total + i64::from(self.size) - 1) / i64::from(self.size)
    }
}

/// The `LIKE` pattern matching text that contains `search`, lower-cased, for columns compared as
/// `lower(column) LIKE pattern`; `None` for a blank search. `%`, `_` and `\` are dropped rather
/// than escaped (the two databases escape differently, and no code or name needs them).
pub(crate) fn contains_pattern(search: &str) -> Option<String> {
    let s = search.trim();
    if s.is_empty() {
        return None;
    }
    Some(format!("%{}%", s.to_lowercase().replace(['\\', '%', '_'], "")))
}
