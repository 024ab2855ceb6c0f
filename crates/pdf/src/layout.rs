//! Layout: blocks placed on A4 pages top to bottom (origin top left, y downwards, points), each
//! page kept as the drawing operations [`crate::emit`] replays.

use crate::text::{self, Weight};
use crate::{Meta, PdfError};

pub(crate) const PAGE_WIDTH: f32 = 595.28;
pub(crate) const PAGE_HEIGHT: f32 = 841.89;
pub(crate) const MARGIN_X: f32 = 50.0;
const MARGIN_TOP: f32 = 56.0;
/// Content ends here; the footer sits below.
const CONTENT_BOTTOM: f32 = PAGE_HEIGHT - 64.0;
pub(crate) const FOOTER_BASELINE: f32 = PAGE_HEIGHT - 34.0;
pub(crate) const CONTENT_WIDTH: f32 = PAGE_WIDTH - 2.0 * MARGIN_X;

pub(crate) const INK: Rgb = Rgb(0x1f, 0x29, 0x37);
pub(crate) const MUTED: Rgb = Rgb(0x64, 0x74, 0x8b);
const ACCENT: Rgb = Rgb(0x1d, 0x4e, 0xd8);
const RULE: Rgb = Rgb(0xcb, 0xd5, 0xe1);
const HEADER_FILL: Rgb = Rgb(0xe8, 0xee, 0xf5);
const GRID: Rgb = Rgb(0xe2, 0xe8, 0xf0);

const BODY_SIZE: f32 = 10.0;
const TABLE_SIZE: f32 = 8.5;
const CELL_PAD: f32 = 4.0;
/// A cell shows at most this many lines (the last ends in "…" when cut): one row never fills a page.
const CELL_MAX_LINES: usize = 12;

fn leading(size: f32) -> f32 {
    size * 1.3
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rgb(pub u8, pub u8, pub u8);

/// One drawing operation.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// Text on its baseline at (x, y).
    Text { x: f32, y: f32, size: f32, weight: Weight, color: Rgb, text: String },
    /// A filled rectangle.
    Rect { x: f32, y: f32, w: f32, h: f32, fill: Rgb },
    /// A stroked polyline.
    Line { points: Vec<(f32, f32)>, width: f32, color: Rgb },
}

/// A heading's place: the document's outline (bookmarks) lists them.
#[derive(Debug, Clone)]
pub(crate) struct Bookmark {
    pub title: String,
    pub page: usize,
    pub y: f32,
}

/// How a column's text sits in its cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table column: its header, its share of the width (relative to the others) and alignment.
#[derive(Debug, Clone)]
pub struct Column {
    pub title: String,
    pub share: f32,
    pub align: Align,
}

impl Column {
    pub fn left(title: &str, share: f32) -> Column {
        Column { title: title.to_owned(), share, align: Align::Left }
    }

    pub fn right(title: &str, share: f32) -> Column {
        Column { title: title.to_owned(), share, align: Align::Right }
    }
}

/// A line chart of values over labelled points (dates, say), the y axis from `y_min` to `y_max`.
#[derive(Debug, Clone)]
pub struct LineChart {
    pub points: Vec<(String, f64)>,
    pub y_min: f64,
    pub y_max: f64,
    /// Appended to the y axis' labels ("%").
    pub unit: String,
    pub height: f32,
}

/// A document being laid out.
pub struct Document {
    pub(crate) meta: Meta,
    pub(crate) pages: Vec<Vec<Op>>,
    pub(crate) bookmarks: Vec<Bookmark>,
    y: f32,
}

impl Document {
    pub fn new(meta: Meta) -> Document {
        Document { meta, pages: vec![Vec::new()], bookmarks: Vec::new(), y: MARGIN_TOP }
    }

    fn page(&mut self) -> &mut Vec<Op> {
        self.pages.last_mut().expect("a document always has a page")
    }

    fn text(&mut self, x: f32, y: f32, size: f32, weight: Weight, color: Rgb, text: String) {
        self.page().push(Op::Text { x, y, size, weight, color, text });
    }

    fn rule(&mut self, x1: f32, x2: f32, y: f32, color: Rgb) {
        self.page().push(Op::Line { points: vec![(x1, y), (x2, y)], width: 0.6, color });
    }

    /// Starts a new page (unless the current one is still empty).
    pub fn page_break(&mut self) {
        if !self.page().is_empty() {
            self.pages.push(Vec::new());
        }
        self.y = MARGIN_TOP;
    }

    /// Moves to a new page unless `height` more points fit on this one.
    fn keep(&mut self, height: f32) {
        if self.y + height > CONTENT_BOTTOM {
            self.page_break();
        }
    }

    /// A title page: the title large, a subtitle, facts (label and value) and a closing note in
    /// small print; the next block starts a new page.
    pub fn title_page(&mut self, title: &str, subtitle: &str, facts: &[(String, String)], note: &str) {
        self.page_break();
        self.y = 190.0;
        for line in text::wrap(title, 26.0, Weight::Bold, CONTENT_WIDTH) {
            self.text(MARGIN_X, self.y, 26.0, Weight::Bold, INK, line);
            self.y += leading(26.0);
        }
        self.y += 4.0;
        for line in text::wrap(subtitle, 13.0, Weight::Regular, CONTENT_WIDTH) {
            self.text(MARGIN_X, self.y, 13.0, Weight::Regular, ACCENT, line);
            self.y += leading(13.0);
        }
        self.y += 10.0;
        let y = self.y;
        self.page().push(Op::Rect { x: MARGIN_X, y, w: 60.0, h: 3.0, fill: ACCENT });
        self.y += 34.0;
        self.facts(facts);
        if !note.is_empty() {
            self.y = self.y.max(CONTENT_BOTTOM - 90.0);
            for line in text::wrap(note, 8.0, Weight::Regular, CONTENT_WIDTH) {
                self.text(MARGIN_X, self.y, 8.0, Weight::Regular, MUTED, line);
                self.y += leading(8.0);
            }
        }
        self.page_break();
    }

    /// A section heading, listed in the document's outline; never left alone at a page's foot.
    pub fn heading(&mut self, title: &str) {
        self.keep(90.0);
        if self.y > MARGIN_TOP {
            self.y += 14.0;
        }
        let size = 15.0;
        self.y += size;
        let page = self.pages.len() - 1;
        self.bookmarks.push(Bookmark { title: text::printable(title, Weight::Bold), page, y: self.y - size - 4.0 });
        for (i, line) in text::wrap(title, size, Weight::Bold, CONTENT_WIDTH).into_iter().enumerate() {
            if i > 0 {
                self.y += leading(size);
            }
            self.text(MARGIN_X, self.y, size, Weight::Bold, INK, line);
        }
        self.y += 6.0;
        self.rule(MARGIN_X, MARGIN_X + CONTENT_WIDTH, self.y, RULE);
        self.y += 12.0;
    }

    /// A paragraph of body text.
    pub fn paragraph(&mut self, body: &str) {
        for line in text::wrap(body, BODY_SIZE, Weight::Regular, CONTENT_WIDTH) {
            self.keep(leading(BODY_SIZE));
            self.y += BODY_SIZE;
            self.text(MARGIN_X, self.y, BODY_SIZE, Weight::Regular, INK, line);
            self.y += leading(BODY_SIZE) - BODY_SIZE;
        }
        self.y += 6.0;
    }

    /// Facts: a label and its value per line, the values aligned.
    pub fn facts(&mut self, facts: &[(String, String)]) {
        let label_width = facts
            .iter()
            .map(|(label, _)| text::width(&text::printable(label, Weight::Regular), BODY_SIZE, Weight::Regular))
            .fold(0.0f32, f32::max)
            .min(CONTENT_WIDTH * 0.45)
            + 12.0;
        for (label, value) in facts {
            let labels = text::wrap(label, BODY_SIZE, Weight::Regular, label_width - 12.0);
            let values = text::wrap(value, BODY_SIZE, Weight::Bold, CONTENT_WIDTH - label_width);
            let lines = labels.len().max(values.len());
            self.keep(lines as f32 * leading(BODY_SIZE));
            for i in 0..lines {
                self.y += BODY_SIZE;
                if let Some(l) = labels.get(i) {
                    self.text(MARGIN_X, self.y, BODY_SIZE, Weight::Regular, MUTED, l.clone());
                }
                if let Some(v) = values.get(i) {
                    self.text(MARGIN_X + label_width, self.y, BODY_SIZE, Weight::Bold, INK, v.clone());
                }
                self.y += leading(BODY_SIZE) - BODY_SIZE;
            }
            self.y += 2.0;
        }
        self.y += 6.0;
    }

    /// A table: its header on a tinted band, repeated at the top of every page the rows run
    /// onto; cells wrap (at most [`CELL_MAX_LINES`] lines).
    pub fn table(&mut self, columns: &[Column], rows: &[Vec<String>]) {
        let total: f32 = columns.iter().map(|c| c.share.max(0.01)).sum();
        let widths: Vec<f32> = columns.iter().map(|c| c.share.max(0.01) / total * CONTENT_WIDTH).collect();
        let lay = |cells: &[String], weight: Weight| -> Vec<Vec<String>> {
            widths
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let cell = cells.get(i).map(String::as_str).unwrap_or("");
                    let lines = text::wrap(cell, TABLE_SIZE, weight, w - 2.0 * CELL_PAD);
                    text::clamp(lines, CELL_MAX_LINES, TABLE_SIZE, weight, w - 2.0 * CELL_PAD)
                })
                .collect()
        };
        let height = |cells: &[Vec<String>]| {
            cells.iter().map(Vec::len).max().unwrap_or(1).max(1) as f32 * leading(TABLE_SIZE) + 2.0 * CELL_PAD
        };
        let header_titles: Vec<String> = columns.iter().map(|c| c.title.clone()).collect();
        let header = lay(&header_titles, Weight::Bold);
        let header_height = height(&header);
        let draw_row = |doc: &mut Document, cells: &[Vec<String>], weight: Weight, h: f32, band: bool| {
            if band {
                let y = doc.y;
                doc.page().push(Op::Rect { x: MARGIN_X, y, w: CONTENT_WIDTH, h, fill: HEADER_FILL });
            }
            let mut x = MARGIN_X;
            for ((lines, w), column) in cells.iter().zip(&widths).zip(columns) {
                let mut baseline = doc.y + CELL_PAD + TABLE_SIZE;
                for line in lines {
                    let at = match column.align {
                        Align::Left => x + CELL_PAD,
                        Align::Right => x + w - CELL_PAD - text::width(line, TABLE_SIZE, weight),
                    };
                    doc.text(at, baseline, TABLE_SIZE, weight, INK, line.clone());
                    baseline += leading(TABLE_SIZE);
                }
                x += w;
            }
            doc.y += h;
            doc.rule(MARGIN_X, MARGIN_X + CONTENT_WIDTH, doc.y, GRID);
        };
        self.keep(header_height + leading(TABLE_SIZE) + 2.0 * CELL_PAD);
        draw_row(self, &header, Weight::Bold, header_height, true);
        for row in rows {
            let cells = lay(row, Weight::Regular);
            let h = height(&cells);
            if self.y + h > CONTENT_BOTTOM {
                self.page_break();
                draw_row(self, &header, Weight::Bold, header_height, true);
            }
            draw_row(self, &cells, Weight::Regular, h, false);
        }
        self.y += 12.0;
    }

    /// A line chart: gridlines with the y axis' values, the line through the points (marked when
    /// there are few), the first, last and some labels between on the x axis.
    pub fn line_chart(&mut self, chart: &LineChart) {
        let label = 8.0;
        let axis_width = 36.0;
        let plot_h = chart.height.max(60.0);
        self.keep(plot_h + 30.0);
        let top = self.y + 6.0;
        let left = MARGIN_X + axis_width;
        let plot_w = CONTENT_WIDTH - axis_width - 8.0;
        let span = (chart.y_max - chart.y_min).max(f64::EPSILON);
        let y_of = |v: f64| top + plot_h - ((v.clamp(chart.y_min, chart.y_max) - chart.y_min) / span) as f32 * plot_h;
        for step in 0..=4 {
            let v = chart.y_min + span * f64::from(step) / 4.0;
            let y = y_of(v);
            self.rule(left, left + plot_w, y, if step == 0 { RULE } else { GRID });
            let tick = format!("{}{}", trim_number(v), chart.unit);
            let w = text::width(&tick, label, Weight::Regular);
            self.text(left - 6.0 - w, y + label * 0.35, label, Weight::Regular, MUTED, tick);
        }
        let n = chart.points.len();
        let x_of = |i: usize| if n <= 1 { left + plot_w / 2.0 } else { left + plot_w * i as f32 / (n - 1) as f32 };
        let points: Vec<(f32, f32)> = chart.points.iter().enumerate().map(|(i, (_, v))| (x_of(i), y_of(*v))).collect();
        if points.len() > 1 {
            self.page().push(Op::Line { points: points.clone(), width: 1.6, color: ACCENT });
        }
        if n <= 40 {
            for &(x, y) in &points {
                self.page().push(Op::Rect { x: x - 2.0, y: y - 2.0, w: 4.0, h: 4.0, fill: ACCENT });
            }
        }
        // At most six x labels, first and last always, none overlapping.
        let wanted = n.min(6);
        let mut last_right = f32::MIN;
        for k in 0..wanted {
            let i = if wanted <= 1 { 0 } else { k * (n - 1) / (wanted - 1) };
            let text = text::printable(&chart.points[i].0, Weight::Regular);
            let w = text::width(&text, label, Weight::Regular);
            let x = (x_of(i) - w / 2.0).clamp(left, left + plot_w - w);
            if x > last_right + 4.0 {
                self.text(x, top + plot_h + 12.0, label, Weight::Regular, MUTED, text);
                last_right = x + w;
            }
        }
        self.y = top + plot_h + 28.0;
    }

    /// The file: the pages drawn, each with its footer, as PDF/A-2b.
    pub fn finish(self) -> Result<Vec<u8>, PdfError> {
        crate::emit::write(self)
    }

    /// How many pages the document has so far.
    pub fn page_count(&self) -> usize {
        self.pages.len()
    }
}

/// 12.5 → "12.5", 50.0 → "50".
fn trim_number(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
}
