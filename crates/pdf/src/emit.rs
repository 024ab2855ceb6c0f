//! The laid-out pages drawn with `krilla`, each with its footer ("Page N of M"), an outline of
//! the headings, metadata, validated as PDF/A-2b.

use krilla::color::rgb;
use krilla::configure::{Configuration, Validator};
use krilla::destination::XyzDestination;
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::metadata::{DateTime, Metadata};
use krilla::outline::{Outline, OutlineNode};
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::surface::Surface;
use krilla::text::{Font, GlyphId, KrillaGlyph};
use krilla::{Data, SerializeSettings};

use crate::PdfError;
use crate::layout::{Document, FOOTER_BASELINE, INK, MARGIN_X, MUTED, Op, PAGE_HEIGHT, PAGE_WIDTH, Rgb};
use crate::text::{self, BOLD, REGULAR, Weight};

fn color(c: Rgb) -> rgb::Color {
    rgb::Color::new(c.0, c.1, c.2)
}

fn fill(c: Rgb) -> Fill {
    Fill { paint: color(c).into(), ..Fill::default() }
}

struct Fonts {
    regular: Font,
    bold: Font,
}

impl Fonts {
    fn get(&self, weight: Weight) -> Font {
        match weight {
            Weight::Regular => self.regular.clone(),
            Weight::Bold => self.bold.clone(),
        }
    }
}

fn draw(surface: &mut Surface, fonts: &Fonts, op: &Op) {
    match op {
        Op::Text { x, y, size, weight, color: c, text } => {
            if text.is_empty() {
                return;
            }
            surface.set_stroke(None);
            surface.set_fill(Some(fill(*c)));
            let glyphs: Vec<KrillaGlyph> = text::glyphs(text, *weight)
                .into_iter()
                .map(|(id, advance, range)| {
                    KrillaGlyph::new(GlyphId::new(id.into()), advance, 0.0, 0.0, 0.0, range, None)
                })
                .collect();
            surface.draw_glyphs(Point::from_xy(*x, *y), &glyphs, fonts.get(*weight), text, *size, false);
        }
        Op::Rect { x, y, w, h, fill: c } => {
            let Some(rect) = Rect::from_xywh(*x, *y, *w, *h) else { return };
            let mut path = PathBuilder::new();
            path.push_rect(rect);
            if let Some(path) = path.finish() {
                surface.set_stroke(None);
                surface.set_fill(Some(fill(*c)));
                surface.draw_path(&path);
            }
        }
        Op::Line { points, width, color: c } => {
            let mut path = PathBuilder::new();
            for (i, &(x, y)) in points.iter().enumerate() {
                if i == 0 { path.move_to(x, y) } else { path.line_to(x, y) }
            }
            if let Some(path) = path.finish() {
                surface.set_fill(None);
                surface.set_stroke(Some(Stroke { paint: color(*c).into(), width: *width, ..Stroke::default() }));
                surface.draw_path(&path);
            }
        }
    }
}

fn date(t: time::OffsetDateTime) -> DateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    DateTime::new(t.year().clamp(0, 9999) as u16)
        .month(u8::from(t.month()))
        .day(t.day())
        .hour(t.hour())
        .minute(t.minute())
        .second(t.second())
        .utc_offset_hour(0)
        .utc_offset_minute(0)
}

pub(crate) fn write(doc: Document) -> Result<Vec<u8>, PdfError> {
    let font = |data: &'static [u8]| {
        Font::new(Data::from(data), 0).ok_or_else(|| PdfError::Write("the shipped font did not load".into()))
    };
    let fonts = Fonts { regular: font(REGULAR)?, bold: font(BOLD)? };
    let settings = SerializeSettings {
        configuration: Configuration::new_with_validator(Validator::A2_B),
        // Nothing here is tagged; leaving tagging on would only add an empty structure tree.
        enable_tagging: false,
        ..SerializeSettings::default()
    };
    let mut pdf = krilla::Document::new_with(settings);
    let total = doc.pages.len();
    let footer = text::printable(&doc.meta.footer, Weight::Regular);
    let footer_size = 7.5;
    for (i, ops) in doc.pages.iter().enumerate() {
        let settings = PageSettings::from_wh(PAGE_WIDTH, PAGE_HEIGHT)
            .ok_or_else(|| PdfError::Write("the page size is not valid".into()))?;
        let mut page = pdf.start_page_with(settings);
        let mut surface = page.surface();
        for op in ops {
            draw(&mut surface, &fonts, op);
        }
        let number = format!("Page {} of {total}", i + 1);
        let number_width = text::width(&number, footer_size, Weight::Regular);
        let room = PAGE_WIDTH - 2.0 * MARGIN_X - number_width - 16.0;
        let footer_line =
            text::clamp(text::wrap(&footer, footer_size, Weight::Regular, room), 1, footer_size, Weight::Regular, room);
        for op in [
            Op::Line {
                points: vec![(MARGIN_X, FOOTER_BASELINE - 12.0), (PAGE_WIDTH - MARGIN_X, FOOTER_BASELINE - 12.0)],
                width: 0.4,
                color: MUTED,
            },
            Op::Text {
                x: MARGIN_X,
                y: FOOTER_BASELINE,
                size: footer_size,
                weight: Weight::Regular,
                color: MUTED,
                text: footer_line.concat(),
            },
            Op::Text {
                x: PAGE_WIDTH - MARGIN_X - number_width,
                y: FOOTER_BASELINE,
                size: footer_size,
                weight: Weight::Regular,
                color: INK,
                text: number,
            },
        ] {
            draw(&mut surface, &fonts, &op);
        }
        surface.finish();
        page.finish();
    }
    let mut outline = Outline::new();
    for b in &doc.bookmarks {
        outline.push_child(OutlineNode::new(b.title.clone(), XyzDestination::new(b.page, Point::from_xy(0.0, b.y))));
    }
    pdf.set_outline(outline);
    let meta = &doc.meta;
    pdf.set_metadata(
        Metadata::new()
            .title(meta.title.clone())
            .description(meta.subject.clone())
            .authors(vec![meta.author.clone()])
            .creator("Custos".to_owned())
            .language("en".to_owned())
            .creation_date(date(meta.created))
            .document_id(meta.document_id.clone()),
    );
    pdf.finish().map_err(|e| PdfError::Write(format!("{e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Column, LineChart, Meta};

    fn meta() -> Meta {
        Meta {
            title: "Board report".into(),
            subject: "A test".into(),
            author: "Custos".into(),
            created: time::macros::datetime!(2026-12-07 10:00 UTC),
            document_id: "abc123".into(),
            footer: "Board report — content sha256 abc123".into(),
        }
    }

    fn sample() -> Document {
        let mut doc = Document::new(meta());
        doc.title_page("Board report", "ASSESSMENT", &[("Status".into(), "DRAFT".into())], "Small print");
        doc.heading("Summary");
        doc.paragraph("Ωmega and 数 in one line.");
        doc.line_chart(&LineChart {
            points: vec![("2026-12-01".into(), 20.0), ("2026-12-02".into(), 35.5), ("2026-12-03".into(), 50.0)],
            y_min: 0.0,
            y_max: 100.0,
            unit: "%".into(),
            height: 150.0,
        });
        doc.heading("Gaps");
        let rows: Vec<Vec<String>> =
            (0..300).map(|i| vec![format!("REQ-{i}"), format!("Requirement number {i}"), "HIGH".into()]).collect();
        doc.table(&[Column::left("Id", 1.0), Column::left("Title", 3.0), Column::right("Priority", 1.0)], &rows);
        doc
    }

    #[test]
    fn writes_a_valid_pdf_a_with_its_pages_numbered() {
        let doc = sample();
        let pages = doc.page_count();
        assert!(pages >= 4, "300 rows run over several pages: {pages}");
        let bytes = doc.finish().expect("PDF/A-2b validation passes");
        assert!(bytes.starts_with(b"%PDF-1.7"));
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("pdfaid:part>2<") || text.contains("pdfaid:part=\"2\""), "PDF/A-2 declared in XMP");
        assert!(text.contains("FontFile2"), "the font is embedded");
    }

    #[test]
    fn the_same_content_gives_the_same_bytes() {
        assert_eq!(sample().finish().unwrap(), sample().finish().unwrap());
    }
}
