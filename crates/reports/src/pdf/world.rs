//! The smallest typst world a report needs: one main source (the template), one data file, the
//! fonts `typst-assets` embeds, and a fixed "today" (the report's own time, so that the same
//! report renders the same bytes). No file system, no packages, no system fonts.
//!
//! Owns: typst's `World` and the compile-to-PDF call. The font book is built once per process.

use crate::ReportError;
use chrono::{DateTime, Datelike as _, Utc};
use std::sync::LazyLock;
use typst::diag::{FileError, FileResult, SourceDiagnostic};
use typst::foundations::{Bytes, Datetime, Duration};
use typst::syntax::{FileId, RootedPath, Source, VirtualPath, VirtualRoot};
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;
use typst::{Library, LibraryExt as _, World};
use typst_layout::PagedDocument;

/// The embedded fonts and their book, parsed once.
static FONTS: LazyLock<(LazyHash<FontBook>, Vec<Font>)> = LazyLock::new(|| {
    let fonts: Vec<Font> = typst_assets::fonts().flat_map(|data| Font::iter(Bytes::new(data))).collect();
    (LazyHash::new(FontBook::from_fonts(&fonts)), fonts)
});

static LIBRARY: LazyLock<LazyHash<Library>> = LazyLock::new(|| LazyHash::new(Library::default()));

struct ReportWorld {
    main: Source,
    data_id: FileId,
    data: Bytes,
    today: DateTime<Utc>,
}

fn file_id(path: &str) -> Result<FileId, ReportError> {
    let vpath = VirtualPath::new(path).map_err(|e| ReportError::render("PDF", format!("{e:?}")))?;
    Ok(FileId::new(RootedPath::new(VirtualRoot::Project, vpath)))
}

impl World for ReportWorld {
    fn library(&self) -> &LazyHash<Library> {
        &LIBRARY
    }

    fn book(&self) -> &LazyHash<FontBook> {
        &FONTS.0
    }

    fn main(&self) -> FileId {
        self.main.id()
    }

    fn source(&self, id: FileId) -> FileResult<Source> {
        if id == self.main.id() { Ok(self.main.clone()) } else { Err(FileError::AccessDenied) }
    }

    fn file(&self, id: FileId) -> FileResult<Bytes> {
        if id == self.data_id {
            Ok(self.data.clone())
        } else if id == self.main.id() {
            Ok(Bytes::from_string(self.main.text().to_owned()))
        } else {
            Err(FileError::AccessDenied)
        }
    }

    fn font(&self, index: usize) -> Option<Font> {
        FONTS.1.get(index).cloned()
    }

    fn today(&self, _offset: Option<Duration>) -> Option<Datetime> {
        let d = self.today.date_naive();
        Datetime::from_ymd(d.year(), d.month() as u8, d.day() as u8)
    }
}

fn describe(errors: &[SourceDiagnostic]) -> String {
    errors.iter().map(|e| e.message.to_string()).collect::<Vec<_>>().join("; ")
}

/// Compiles `template` with `data` as `data.json` beside it into PDF bytes.
pub(super) fn compile(template: &str, data: Vec<u8>, today: DateTime<Utc>) -> Result<Vec<u8>, ReportError> {
    let world = ReportWorld {
        main: Source::new(file_id("/report.typ")?, template.to_owned()),
        data_id: file_id("/data.json")?,
        data: Bytes::new(data),
        today,
    };
    let doc: PagedDocument =
        typst::compile(&world).output.map_err(|e| ReportError::render("PDF", describe(&e)))?;
    typst_pdf::pdf(&doc, &typst_pdf::PdfOptions::default())
        .map_err(|e| ReportError::render("PDF", describe(&e)))
}
