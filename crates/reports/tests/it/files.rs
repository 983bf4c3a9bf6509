//! The report's files read back by independent readers, not by our writers: the workbook by
//! calamine (numeric and date cell types, one sheet per section), the PDF by poppler's
//! `pdftotext` (tenant, period, zone and totals in the reader's number format) and one page
//! rendered by `pdftoppm`, the CSV by the csv crate's reader with the `;` and decimal-comma style.
//!
//! Set `TDS_REPORT_SAMPLES=DIR` to keep the PDF, the workbook and the rendered page there.

use crate::support::{History, history, now};
use calamine::{Data, DataType as _, Reader as _, Xlsx, open_workbook_from_rs};
use chrono::NaiveDate;
use std::io::Cursor;
use std::process::Command;
use tds_reports::csv_out::CsvStyle;
use tds_reports::{Compare, DayRange, Lang, Report, ReportBucket, ReportRequest, Scope};
use tds_store::Store;
use tds_testkit::conformance;

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

async fn november(store: &Store, h: &History, scope: Scope, lang: Lang) -> Report {
    let req = ReportRequest {
        tenant: h.tenant,
        scope,
        range: DayRange::new(d("2018-11-01"), d("2018-11-30"), ReportBucket::Day).unwrap(),
        bucket: ReportBucket::Day,
        compare: vec![Compare::Previous],
        lang,
        now: now(),
    };
    tds_reports::build(store, &req).await.unwrap()
}

fn keep(name: &str, bytes: &[u8]) {
    if let Ok(dir) = std::env::var("TDS_REPORT_SAMPLES") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(std::path::Path::new(&dir).join(name), bytes).unwrap();
    }
}

async fn the_workbook_has_typed_cells_one_sheet_per_section_as_calamine_reads_it(store: Store) {
    let h = history(&store).await;
    let report = november(
        &store,
        &h,
        Scope::Devices { gateway: h.mac, codes: vec![h.d01.code.clone(), h.d02.code.clone()] },
        Lang::PtBr,
    )
    .await;
    let bytes = tds_reports::xlsx::render(&report).unwrap();
    keep("report.xlsx", &bytes);
    let mut book: Xlsx<_> = open_workbook_from_rs(Cursor::new(bytes)).unwrap();
    assert_eq!(
        book.sheet_names(),
        [
            "Relatório de consumo",
            "Resumo",
            "00 D01 Medidor D01",
            "01 D02 Medidor D02",
            "Comparação de períodos",
            "Projeção do mês"
        ]
    );
    let days = book.worksheet_range("00 D01 Medidor D01").unwrap();
    assert_eq!(days.get_value((0, 2)), Some(&Data::String("Consumo (kWh)".into())));
    // Row 4 is November 4th (23 hours): a date cell, then numbers.
    let start = days.get_value((4, 0)).unwrap();
    let Data::DateTime(dt) = start else { panic!("a date cell, not {start:?}") };
    assert!(dt.is_datetime());
    assert_eq!(start.as_datetime().unwrap().date(), d("2018-11-04"));
    assert_eq!(days.get_value((4, 2)), Some(&Data::Float(69.0)));
    assert_eq!(days.get_value((4, 3)), Some(&Data::Float(276.0)));
    // November 20th: short of readings, marked in its status column.
    assert_eq!(days.get_value((20, 3)), Some(&Data::Float(240.0)));
    assert_eq!(days.get_value((20, 6)), Some(&Data::String("incompleto".into())));
    let Some(Data::Float(c)) = days.get_value((20, 5)) else { panic!("completeness is a number") };
    assert!((c - 240.0 / 288.0).abs() < 1e-12);
    // The total under the table, after a blank row.
    assert_eq!(days.get_value((32, 2)), Some(&Data::Float(2157.0)));
    let summary = book.worksheet_range("Resumo").unwrap();
    assert_eq!(summary.get_value((2, 3)), Some(&Data::Float(4314.0)));
}

fn pdftotext(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.pdf");
    std::fs::write(&path, pdf).unwrap();
    let out = Command::new("pdftotext")
        .args(["-layout"])
        .arg(&path)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

async fn the_pdf_names_tenant_period_zone_and_totals_as_pdftotext_reads_it(store: Store) {
    let h = history(&store).await;
    let report = november(&store, &h, Scope::Gateway(h.mac), Lang::PtBr).await;
    let pdf = tds_reports::pdf::render(&report).unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    keep("report-pt.pdf", &pdf);
    let text = pdftotext(&pdf);
    for want in [
        "Relatório de consumo",
        "Medições",
        "01/11/2018 – 30/11/2018",
        "America/Sao_Paulo",
        "gateway aa:bb:cc:00:14:01",
        "6.471,00",   // the gateway's November: 3 x 2157 kWh, in pt-BR's format
        "207,00",     // November 4th: 3 x 69
        "incompleto", // November 20th
        "Projeção do mês",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    // The same report in English uses English words and number format.
    let en = tds_reports::pdf::render(&november(&store, &h, Scope::Gateway(h.mac), Lang::En).await).unwrap();
    let text = pdftotext(&en);
    for want in ["Consumption report", "2018-11-01 – 2018-11-30", "6,471.00", "incomplete"] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    // One page as an image, for a person to look at (TDS_REPORT_SAMPLES).
    if let Ok(dir) = std::env::var("TDS_REPORT_SAMPLES") {
        let pdf_path = std::path::Path::new(&dir).join("report-pt.pdf");
        let out = Command::new("pdftoppm")
            .args(["-png", "-r", "60", "-f", "1", "-l", "2"])
            .arg(&pdf_path)
            .arg(std::path::Path::new(&dir).join("page"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

async fn the_csv_marks_incomplete_buckets_in_the_brazilian_style(store: Store) {
    let h = history(&store).await;
    let report =
        november(&store, &h, Scope::Devices { gateway: h.mac, codes: vec![h.d01.code.clone()] }, Lang::PtBr)
            .await;
    let mut bytes = Vec::new();
    tds_reports::csv_out::write_report(&report, CsvStyle { semicolon: true, bom: true }, &mut bytes).unwrap();
    assert!(bytes.starts_with("\u{feff}".as_bytes()));
    let mut reader = csv::ReaderBuilder::new().delimiter(b';').from_reader(&bytes[3..]);
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(header, tds_reports::csv_out::REPORT_HEADER);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 30);
    let nov20 = &rows[19];
    assert_eq!(
        nov20.iter().collect::<Vec<_>>(),
        [
            "aa:bb:cc:00:14:01",
            "D01",
            "D01 Medidor D01",
            "energy",
            "kWh",
            "2018-11-20",
            "2018-11-20",
            "72",
            "240",
            "288",
            "0,8333333333333334",
            "true",
            "America/Sao_Paulo"
        ]
    );
    assert_eq!(&rows[3][7], "69");
    assert_eq!(&rows[3][11], "false");
}

conformance!(
    the_workbook_has_typed_cells_one_sheet_per_section_as_calamine_reads_it,
    the_pdf_names_tenant_period_zone_and_totals_as_pdftotext_reads_it,
    the_csv_marks_incomplete_buckets_in_the_brazilian_style,
);
