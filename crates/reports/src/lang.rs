//! The reader's language (SPEC §4: Brazilian Portuguese by default, English on request) as
//! reports need it: the words of titles and headers, and numbers and dates in the locale's
//! format (`1.234,56` and `31/12/2026` in pt-BR, `1,234.56` and `2026-12-31` in English).
//!
//! Owns: formatting for people (PDF, sheet titles). Must not: format machine-readable output
//! (CSV cells and XLSX numbers stay plain numbers; see [`crate::csv_out::CsvStyle`]).

use chrono::{NaiveDate, NaiveDateTime};

/// A report's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum Lang {
    #[default]
    PtBr,
    En,
}

impl Lang {
    /// `pt-BR`, `pt`, `pt_BR` or `en` (any case; `en-US` too). `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase().replace('_', "-");
        match s.as_str() {
            "pt-br" | "pt" => Some(Self::PtBr),
            _ if s == "en" || s.starts_with("en-") => Some(Self::En),
            _ => None,
        }
    }

    pub const fn code(self) -> &'static str {
        match self {
            Self::PtBr => "pt-BR",
            Self::En => "en",
        }
    }

    /// `v` with `decimals` places, thousands grouped: `1.234,56` (pt-BR) or `1,234.56` (en).
    pub fn number(self, v: f64, decimals: usize) -> String {
        let (group, point) = match self {
            Self::PtBr => ('.', ','),
            Self::En => (',', '.'),
        };
        if !v.is_finite() {
            return v.to_string();
        }
        let plain = format!("{:.*}", decimals, v.abs());
        let (int, frac) = plain.split_once('.').unwrap_or((plain.as_str(), ""));
        let mut out = String::with_capacity(plain.len() + plain.len() / 3 + 1);
        // "-0,00" would say a rounded tiny negative is below zero: only a shown non-zero gets a sign.
        if v < 0.0 && plain.bytes().any(|b| b.is_ascii_digit() && b != b'0') {
            out.push('-');
        }
        for (i, c) in int.chars().enumerate() {
            if i > 0 && (int.len() - i) % 3 == 0 {
                out.push(group);
            }
            out.push(c);
        }
        if !frac.is_empty() {
            out.push(point);
            out.push_str(frac);
        }
        out
    }

    /// A share as a percentage with one decimal: `0.975` → `97,5 %` / `97.5%`.
    pub fn percent(self, share: f64) -> String {
        match self {
            Self::PtBr => format!("{} %", self.number(share * 100.0, 1)),
            Self::En => format!("{}%", self.number(share * 100.0, 1)),
        }
    }

    /// A signed change in percent: `+12,5 %`, `-3.0%`.
    pub fn change(self, share: f64) -> String {
        let sign = if share > 0.0 { "+" } else { "" };
        format!("{sign}{}", self.percent(share))
    }

    pub fn date(self, d: NaiveDate) -> String {
        match self {
            Self::PtBr => d.format("%d/%m/%Y").to_string(),
            Self::En => d.format("%Y-%m-%d").to_string(),
        }
    }

    pub fn datetime(self, t: NaiveDateTime) -> String {
        match self {
            Self::PtBr => t.format("%d/%m/%Y %H:%M").to_string(),
            Self::En => t.format("%Y-%m-%d %H:%M").to_string(),
        }
    }

    /// The spreadsheet number format for dates (Excel shows it as written, whatever its locale).
    pub const fn xlsx_date(self) -> &'static str {
        match self {
            Self::PtBr => "dd/mm/yyyy",
            Self::En => "yyyy-mm-dd",
        }
    }

    pub const fn xlsx_datetime(self) -> &'static str {
        match self {
            Self::PtBr => "dd/mm/yyyy hh:mm",
            Self::En => "yyyy-mm-dd hh:mm",
        }
    }

    /// The words of a report, by key.
    pub fn t(self, key: Text) -> &'static str {
        let (pt, en) = match key {
            Text::ReportTitle => ("Relatório de consumo", "Consumption report"),
            Text::Tenant => ("Conta", "Tenant"),
            Text::Scope => ("Escopo", "Scope"),
            Text::Period => ("Período", "Period"),
            Text::Zone => ("Fuso horário", "Time zone"),
            Text::Bucket => ("Agrupamento", "Grouping"),
            Text::Generated => ("Gerado em", "Generated"),
            Text::Start => ("Início", "Start"),
            Text::End => ("Fim", "End"),
            Text::Consumption => ("Consumo", "Consumption"),
            Text::Readings => ("Leituras", "Readings"),
            Text::Expected => ("Esperadas", "Expected"),
            Text::Completeness => ("Completude", "Completeness"),
            Text::Status => ("Situação", "Status"),
            Text::Incomplete => ("incompleto", "incomplete"),
            Text::Projection => ("projeção", "projection"),
            Text::Summary => ("Resumo", "Summary"),
            Text::Series => ("Série", "Series"),
            Text::Unit => ("Unidade", "Unit"),
            Text::Total => ("Total", "Total"),
            Text::Share => ("Participação", "Share"),
            Text::IncompleteBuckets => ("Períodos incompletos", "Incomplete buckets"),
            Text::Comparison => ("Comparação de períodos", "Period comparison"),
            Text::ThisPeriod => ("Este período", "This period"),
            Text::PreviousPeriod => ("Período anterior", "Previous period"),
            Text::YearAgo => ("Um ano antes", "A year earlier"),
            Text::Change => ("Variação", "Change"),
            Text::ProjectionTitle => ("Projeção do mês", "Month-end projection"),
            Text::Month => ("Mês", "Month"),
            Text::SoFar => ("Até agora", "So far"),
            Text::Projected => ("Projeção no fim do mês", "Projected at month end"),
            Text::Elapsed => ("Decorrido", "Elapsed"),
            Text::Notes => ("Notas", "Notes"),
            Text::NoteIncomplete => (
                "Períodos marcados como incompletos receberam menos leituras que o intervalo de envio dos gateways promete; o consumo deles pode estar subestimado.",
                "Buckets marked incomplete received fewer readings than the gateways' reporting interval promises; their consumption may be understated.",
            ),
            Text::NoteAllComplete => (
                "Todos os períodos receberam as leituras esperadas.",
                "Every bucket received the readings expected.",
            ),
            Text::NoteProjection => (
                "A projeção estende o consumo até agora, no mesmo ritmo, até o fim do mês; não é uma medição.",
                "The projection extends the consumption so far at the same rate to the end of the month; it is not a measurement.",
            ),
            Text::NoteChange => (
                "A variação só é mostrada quando o período comparado tem consumo maior que zero.",
                "The change is shown only where the compared period's consumption is above zero.",
            ),
            Text::NoData => ("Sem dados de consumo neste escopo.", "No consumption data in this scope."),
            Text::Hour => ("hora", "hour"),
            Text::Day => ("dia", "day"),
            Text::Week => ("semana ISO", "ISO week"),
            Text::CalendarMonth => ("mês", "month"),
            Text::BillingMonth => ("mês de faturamento a partir do dia", "billing month from day"),
            Text::AllTenant => ("toda a conta", "whole tenant"),
            Text::Gateway => ("gateway", "gateway"),
            Text::Device => ("dispositivo", "device"),
            Text::Devices => ("dispositivos", "devices"),
            Text::DevicesColumn => ("Dispositivos", "Devices"),
            Text::Medium => ("meio", "medium"),
        };
        match self {
            Self::PtBr => pt,
            Self::En => en,
        }
    }
}

/// Every phrase a report prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Text {
    ReportTitle,
    Tenant,
    Scope,
    Period,
    Zone,
    Bucket,
    Generated,
    Start,
    End,
    Consumption,
    Readings,
    Expected,
    Completeness,
    Status,
    Incomplete,
    Projection,
    Summary,
    Series,
    Unit,
    Total,
    Share,
    IncompleteBuckets,
    Comparison,
    ThisPeriod,
    PreviousPeriod,
    YearAgo,
    Change,
    ProjectionTitle,
    Month,
    SoFar,
    Projected,
    Elapsed,
    Notes,
    NoteIncomplete,
    NoteAllComplete,
    NoteProjection,
    NoteChange,
    NoData,
    Hour,
    Day,
    Week,
    CalendarMonth,
    BillingMonth,
    AllTenant,
    Gateway,
    Device,
    Devices,
    DevicesColumn,
    Medium,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_each_locale() {
        assert_eq!(Lang::PtBr.number(1234.555, 2), "1.234,56");
        assert_eq!(Lang::En.number(1234.555, 2), "1,234.56");
        assert_eq!(Lang::PtBr.number(1_234_567.0, 0), "1.234.567");
        assert_eq!(Lang::En.number(-1234.5, 1), "-1,234.5");
        assert_eq!(Lang::En.number(-0.001, 2), "0.00");
        assert_eq!(Lang::PtBr.number(93.0, 2), "93,00");
        assert_eq!(Lang::PtBr.number(123.0, 2), "123,00");
        assert_eq!(Lang::PtBr.percent(0.975), "97,5 %");
        assert_eq!(Lang::En.change(0.125), "+12.5%");
    }

    #[test]
    fn language_names() {
        assert_eq!(Lang::parse("pt-BR"), Some(Lang::PtBr));
        assert_eq!(Lang::parse("en-US"), Some(Lang::En));
        assert_eq!(Lang::parse("fr"), None);
    }
}
