//! The words of alert emails and chat messages, in Brazilian Portuguese (the default) and
//! English: subject, body and a short chat text, from a [`Notice`]. Times are shown in the
//! tenant's zone, numbers in the language's format.
//!
//! Must not: decide who is told or when. Whatever comes from users (alert messages, names) is
//! put on one line and shortened in a subject, so that it cannot add headers or lines there.

use chrono::{DateTime, Utc};
use tds_domain::Severity;
use tds_domain::alerts::notice::NoticeTarget;
use tds_domain::alerts::{Language, Notice, NoticeEvent};

const SUBJECT_MESSAGE_MAX: usize = 120;

fn severity(lang: Language, s: Severity) -> &'static str {
    match (lang, s) {
        (Language::PtBr, Severity::Info) => "INFORMATIVO",
        (Language::PtBr, Severity::Warning) => "ATENÇÃO",
        (Language::PtBr, Severity::Critical) => "CRÍTICO",
        (Language::En, Severity::Info) => "INFO",
        (Language::En, Severity::Warning) => "WARNING",
        (Language::En, Severity::Critical) => "CRITICAL",
    }
}

fn event(lang: Language, e: NoticeEvent) -> &'static str {
    match (lang, e) {
        (Language::PtBr, NoticeEvent::Raised) => "Alerta disparado",
        (Language::PtBr, NoticeEvent::Cleared) => "Alerta normalizado",
        (Language::PtBr, NoticeEvent::Acknowledged) => "Alerta reconhecido",
        (Language::PtBr, NoticeEvent::Reminder) => "Lembrete: alerta crítico ainda ativo",
        (Language::PtBr, NoticeEvent::Test) => "Mensagem de teste",
        (Language::En, NoticeEvent::Raised) => "Alert raised",
        (Language::En, NoticeEvent::Cleared) => "Alert cleared",
        (Language::En, NoticeEvent::Acknowledged) => "Alert acknowledged",
        (Language::En, NoticeEvent::Reminder) => "Reminder: critical alert still active",
        (Language::En, NoticeEvent::Test) => "Test message",
    }
}

/// Labels of the body's lines, by language.
struct Labels {
    severity: &'static str,
    tenant: &'static str,
    target: &'static str,
    value: &'static str,
    raised: &'static str,
    acknowledged: &'static str,
    comment: &'static str,
    cleared: &'static str,
    rule: &'static str,
    open: &'static str,
    device: &'static str,
    gateway: &'static str,
    medium: &'static str,
    whole_tenant: &'static str,
    footer: &'static str,
}

const PT: Labels = Labels {
    severity: "Severidade",
    tenant: "Conta",
    target: "Alvo",
    value: "Valor",
    raised: "Disparado em",
    acknowledged: "Reconhecido em",
    comment: "Comentário",
    cleared: "Normalizado em",
    rule: "Regra",
    open: "Abrir",
    device: "Dispositivo",
    gateway: "gateway",
    medium: "Meio",
    whole_tenant: "toda a conta",
    footer: "Você recebe este email pelas preferências de alerta da sua conta no TDS (Meu perfil).",
};

const EN: Labels = Labels {
    severity: "Severity",
    tenant: "Tenant",
    target: "Target",
    value: "Value",
    raised: "Raised at",
    acknowledged: "Acknowledged at",
    comment: "Comment",
    cleared: "Cleared at",
    rule: "Rule",
    open: "Open",
    device: "Device",
    gateway: "gateway",
    medium: "Medium",
    whole_tenant: "the whole tenant",
    footer: "You receive this email because of your alert preferences in TDS (My profile).",
};

const fn labels(lang: Language) -> &'static Labels {
    match lang {
        Language::PtBr => &PT,
        Language::En => &EN,
    }
}

/// One line, no control characters.
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().trim().to_owned()
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(max.saturating_sub(1)).collect();
    short.push('…');
    short
}

fn time(lang: Language, at: DateTime<Utc>, zone: &str) -> String {
    let tz: chrono_tz::Tz = zone.parse().unwrap_or(chrono_tz::America::Sao_Paulo);
    let local = at.with_timezone(&tz);
    match lang {
        Language::PtBr => format!("{} ({zone})", local.format("%d/%m/%Y %H:%M")),
        Language::En => format!("{} ({zone})", local.format("%Y-%m-%d %H:%M")),
    }
}

/// Up to three decimals without trailing zeros; a decimal comma in Portuguese.
pub fn number(lang: Language, value: f64) -> String {
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    match lang {
        Language::PtBr => text.replace('.', ","),
        Language::En => text.to_owned(),
    }
}

fn target(lang: Language, t: &NoticeTarget) -> String {
    let l = labels(lang);
    let gateway = t.gateway.as_ref().map(|g| format!("{} {} ({})", l.gateway, one_line(&g.name), g.mac));
    match (&t.device, gateway) {
        (Some(d), Some(g)) => format!("{} {} \"{}\", {g}", l.device, d.code, one_line(&d.name)),
        (Some(d), None) => format!("{} {} \"{}\"", l.device, d.code, one_line(&d.name)),
        (None, Some(g)) => capitalise(&g),
        (None, None) => match &t.medium {
            Some(m) => format!("{}: {m}", l.medium),
            None => l.whole_tenant.to_owned(),
        },
    }
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// `[TDS] CRÍTICO: <message>`; a clear, acknowledgement, reminder or test says so first.
pub fn subject(lang: Language, n: &Notice) -> String {
    let message = shorten(&one_line(&n.alert.message), SUBJECT_MESSAGE_MAX);
    let sev = severity(lang, n.alert.severity);
    match n.event {
        NoticeEvent::Raised => format!("[TDS] {sev}: {message}"),
        NoticeEvent::Test => format!("[TDS] {}", event(lang, n.event)),
        other => format!("[TDS] {} — {sev}: {message}", event(lang, other)),
    }
}

/// The plain-text body: what, where, the value, the times in the tenant's zone, the link.
pub fn body(lang: Language, n: &Notice) -> String {
    let l = labels(lang);
    let zone = n.tenant.timezone.as_str();
    let mut lines = vec![
        format!("{}: {}", event(lang, n.event), one_line(&n.alert.message)),
        String::new(),
        format!("{}: {}", l.severity, severity(lang, n.alert.severity)),
        format!("{}: {}", l.tenant, one_line(&n.tenant.name)),
        format!("{}: {}", l.target, target(lang, &n.target)),
    ];
    if let Some(v) = n.alert.value {
        lines.push(format!("{}: {}", l.value, number(lang, v)));
    }
    lines.push(format!("{}: {}", l.raised, time(lang, n.alert.raised_at, zone)));
    if let Some(at) = n.alert.acknowledged_at {
        let by =
            n.alert.acknowledged_by.as_deref().map(|b| format!(" — {}", one_line(b))).unwrap_or_default();
        lines.push(format!("{}: {}{by}", l.acknowledged, time(lang, at, zone)));
    }
    if let Some(c) = &n.alert.comment {
        lines.push(format!("{}: {}", l.comment, one_line(c)));
    }
    if let Some(at) = n.alert.cleared_at {
        lines.push(format!("{}: {}", l.cleared, time(lang, at, zone)));
    }
    lines.push(format!("{}: {}", l.rule, one_line(&n.rule.name)));
    lines.push(String::new());
    lines.push(format!("{}: {}", l.open, n.links.alert));
    lines.push(String::new());
    lines.push(format!("-- \n{}", l.footer));
    lines.join("\n") + "\n"
}

/// The short text of a chat message (Telegram, WhatsApp): subject, target, link.
pub fn chat_text(lang: Language, n: &Notice) -> String {
    let mut lines = vec![subject(lang, n), target(lang, &n.target)];
    if let Some(v) = n.alert.value {
        lines.push(format!("{}: {}", labels(lang).value, number(lang, v)));
    }
    lines.push(n.links.alert.clone());
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tds_domain::alerts::notice::{NoticeDevice, NoticeGateway, NoticeTenant, test_notice};

    fn notice(event: NoticeEvent) -> Notice {
        let now = DateTime::parse_from_rfc3339("2026-03-01T15:04:00Z").unwrap().with_timezone(&Utc);
        let mut n = test_notice(
            NoticeTenant { id: 1, name: "Acme".into(), timezone: "America/Sao_Paulo".into() },
            "https://tds.example.com",
            now,
        );
        n.event = event;
        n.alert.id = 9;
        n.alert.severity = Severity::Critical;
        n.alert.message = "Consumo diário acima do limite\r\nBcc: x@evil".into();
        n.alert.value = Some(1234.5);
        n.target.kind = "device".into();
        n.target.device = Some(NoticeDevice { code: "HD-01".into(), name: "Hidrômetro".into() });
        n.target.gateway = Some(NoticeGateway { mac: "aa:bb:cc:00:00:01".into(), name: "Bloco A".into() });
        n.links.alert = "https://tds.example.com/alerts/9".into();
        n
    }

    #[test]
    fn subjects_by_language_and_event_stay_on_one_line() {
        let n = notice(NoticeEvent::Raised);
        assert_eq!(subject(Language::PtBr, &n), "[TDS] CRÍTICO: Consumo diário acima do limite  Bcc: x@evil");
        assert_eq!(subject(Language::En, &n), "[TDS] CRITICAL: Consumo diário acima do limite  Bcc: x@evil");
        assert!(
            subject(Language::PtBr, &notice(NoticeEvent::Cleared))
                .starts_with("[TDS] Alerta normalizado — CRÍTICO:")
        );
        assert!(subject(Language::En, &notice(NoticeEvent::Reminder)).starts_with("[TDS] Reminder"));
        let mut long = notice(NoticeEvent::Raised);
        long.alert.message = "x".repeat(500);
        assert!(subject(Language::En, &long).chars().count() < 150);
    }

    #[test]
    fn the_body_shows_target_value_local_times_and_the_link() {
        let pt = body(Language::PtBr, &notice(NoticeEvent::Raised));
        assert!(pt.contains("Dispositivo HD-01 \"Hidrômetro\", gateway Bloco A (aa:bb:cc:00:00:01)"), "{pt}");
        assert!(pt.contains("Valor: 1234,5"), "{pt}");
        assert!(pt.contains("Disparado em: 01/03/2026 12:04 (America/Sao_Paulo)"), "{pt}");
        assert!(pt.contains("Abrir: https://tds.example.com/alerts/9"), "{pt}");
        let en = body(Language::En, &notice(NoticeEvent::Raised));
        assert!(en.contains("Raised at: 2026-03-01 12:04 (America/Sao_Paulo)"), "{en}");
        assert!(en.contains("Value: 1234.5"), "{en}");
    }

    #[test]
    fn numbers() {
        assert_eq!(number(Language::PtBr, 2.0), "2");
        assert_eq!(number(Language::PtBr, 0.125), "0,125");
        assert_eq!(number(Language::En, 10.5), "10.5");
    }

    #[test]
    fn chat_text_is_short() {
        let text = chat_text(Language::PtBr, &notice(NoticeEvent::Raised));
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(text.ends_with("https://tds.example.com/alerts/9"));
    }
}
