//! Set-based statements for imports: the placeholders of chunked `IN (…)` lookups and of
//! multi-row `VALUES`, and chunk sizes that keep every statement well within both databases'
//! limits on bound parameters (SQLite 32,766; PostgreSQL 65,535).

/// Values per `IN (…)` lookup.
pub(crate) const LOOKUP: usize = 500;
/// Rows per multi-row insert (at most 20 parameters each).
pub(crate) const INSERT_ROWS: usize = 250;

/// `$first, $first+1, …` (`count` placeholders), for `IN (…)`.
pub(crate) fn list(first: usize, count: usize) -> String {
    let mut out = String::with_capacity(count * 6);
    for i in 0..count {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('$');
        out.push_str(&(first + i).to_string());
    }
    out
}

/// `(before $a, …, $a+per_row-1 after), (…)` for `rows` rows whose own parameters start at
/// `first`; `before` and `after` hold what every row shares (literals, or parameters below
/// `first`).
pub(crate) fn values(rows: usize, first: usize, per_row: usize, before: &str, after: &str) -> String {
    (0..rows)
        .map(|r| format!("({before}{}{after})", list(first + r * per_row, per_row)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_on_from_the_first() {
        assert_eq!(list(2, 3), "$2, $3, $4");
        assert_eq!(list(1, 0), "");
        assert_eq!(values(2, 3, 2, "$1, ", ", 'x'"), "($1, $3, $4, 'x'), ($1, $5, $6, 'x')");
    }
}
