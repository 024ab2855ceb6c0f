//! Documents as PDF/A-2b (a kernel crate, no database): what a report a board member reads needs
//! — a title page, headings (the document's outline), paragraphs, facts, tables whose header
//! repeats on every page they run over, a line chart — laid out on A4 pages, numbered "page N
//! of M", with an open font embedded (DejaVu Sans, shipped with the binary, subset into each
//! document).
//!
//! * [`Document`] lays out: each call places its block at once, so a table of 5,000 rows is
//!   broken into pages as it is added; the pages are kept as lists of drawing operations
//!   ([`layout`]) until [`Document::finish`], which knows the page count for the footers.
//! * [`emit`] draws those pages with `krilla` and validates the file against PDF/A-2b (archived
//!   for years, a report must render the same way later: fonts embedded, colours
//!   device-independent, metadata in XMP).
//! * [`text`] — the faces, their metrics, line breaking.
//!
//! The same content gives the same bytes (the creation date and document id are the caller's),
//! so a rendering can be made again and compared.

mod emit;
pub mod layout;
pub mod text;

pub use layout::{Align, Column, Document, LineChart};
use time::OffsetDateTime;

/// What the file says about itself (its information dictionary and XMP metadata) and what each
/// page's footer shows.
#[derive(Debug, Clone)]
pub struct Meta {
    pub title: String,
    pub subject: String,
    pub author: String,
    /// When the content was made (not when the file was written: re-rendering gives the same file).
    pub created: OffsetDateTime,
    /// A stable identifier of the content (a digest, say): the file's id.
    pub document_id: String,
    /// Left-hand footer text on every page; the right-hand side is "Page N of M".
    pub footer: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("the PDF could not be written: {0}")]
    Write(String),
}
