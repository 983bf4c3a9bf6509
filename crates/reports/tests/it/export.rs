//! The raw readings export: every stored reading of the range with UTC and local times, as CSV
//! and as XLSX (date cells, read back by calamine), device by device in time order.

use crate::support::{history, utc};
use calamine::{Data, DataType as _, Reader as _, Xlsx, open_workbook};
use tds_reports::csv_out::CsvStyle;
use tds_reports::export::{HEADER, ReadingsQuery};
use tds_store::Store;
use tds_testkit::conformance;

async fn readings_export_as_csv_and_xlsx_with_utc_and_local_times(store: Store) {
    let h = history(&store).await;
    // November 20th, local (-02): D01 has 240 readings, D02 288.
    let q = ReadingsQuery {
        tenant: h.tenant,
        gateway: Some(h.mac),
        device: None,
        from: utc("2018-11-20T02:00:00Z"),
        to: utc("2018-11-21T02:00:00Z"),
    };
    let mut bytes = Vec::new();
    let rows = tds_reports::export::csv(&store, &q, CsvStyle::default(), &mut bytes).await.unwrap();
    assert_eq!(rows, 240 + 288);
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), HEADER);
    let all: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(all.len(), 528);
    assert_eq!(
        all[0].iter().collect::<Vec<_>>(),
        ["aa:bb:cc:00:14:01", "D01", "2018-11-20T02:00:00Z", "2018-11-20T00:00:00-02:00", "2653", "kWh"]
    );
    assert_eq!(&all[240][1], "D02", "device by device");

    // One device, as a workbook.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("readings.xlsx");
    let q = ReadingsQuery { device: Some(h.d02.code.clone()), ..q };
    assert_eq!(tds_reports::export::xlsx(&store, &q, &path).await.unwrap(), 288);
    let mut book: Xlsx<_> = open_workbook(&path).unwrap();
    let sheet = book.worksheet_range("Leituras 1").unwrap();
    assert_eq!(sheet.height(), 289);
    let utc_cell = sheet.get_value((1, 2)).unwrap();
    assert!(matches!(utc_cell, Data::DateTime(_)), "{utc_cell:?}");
    assert_eq!(utc_cell.as_datetime().unwrap().to_string(), "2018-11-20 02:00:00");
    assert_eq!(sheet.get_value((1, 3)).unwrap().as_datetime().unwrap().to_string(), "2018-11-20 00:00:00");
    assert!(matches!(sheet.get_value((1, 4)), Some(Data::Float(_))));

    let bad = ReadingsQuery { device: Some(h.d01.code.clone()), gateway: None, ..q };
    assert!(tds_reports::export::csv(&store, &bad, CsvStyle::default(), Vec::new()).await.is_err());
}

conformance!(readings_export_as_csv_and_xlsx_with_utc_and_local_times);
