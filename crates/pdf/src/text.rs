//! The two faces shipped with the binary (DejaVu Sans and DejaVu Sans Bold, an open font:
//! `fonts/LICENSE-DejaVu.txt`), their metrics, and the text a page may show.
//!
//! Layout measures with the fonts' horizontal advances (no kerning, so a measured line is never
//! shorter than the drawn one) and breaks lines at spaces, or inside a word too long for its box.

use std::sync::LazyLock;

pub(crate) const REGULAR: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
pub(crate) const BOLD: &[u8] = include_bytes!("../fonts/DejaVuSans-Bold.ttf");

/// Regular or bold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    Regular,
    Bold,
}

struct Faces {
    regular: ttf_parser::Face<'static>,
    bold: ttf_parser::Face<'static>,
}

static FACES: LazyLock<Faces> = LazyLock::new(|| Faces {
    regular: ttf_parser::Face::parse(REGULAR, 0).expect("the shipped regular face parses"),
    bold: ttf_parser::Face::parse(BOLD, 0).expect("the shipped bold face parses"),
});

fn face(weight: Weight) -> &'static ttf_parser::Face<'static> {
    match weight {
        Weight::Regular => &FACES.regular,
        Weight::Bold => &FACES.bold,
    }
}

/// The text as the face can show it: tabs and line ends become spaces, other control
/// characters go, and a character the face has no glyph for becomes `?` (PDF/A refuses the
/// `.notdef` glyph, and a missing glyph would otherwise fail the whole document).
pub fn printable(text: &str, weight: Weight) -> String {
    let f = face(weight);
    text.chars()
        .filter_map(|c| match c {
            '\t' | '\n' | '\r' => Some(' '),
            c if c.is_control() => None,
            c if f.glyph_index(c).is_some() => Some(c),
            _ => Some('?'),
        })
        .collect()
}

/// Each character of `text` (already printable) as the face's glyph: its id, its advance in
/// em (the font's units over its units per em), and the bytes of `text` it shows. One glyph per
/// character, no shaping: Latin, Greek and Cyrillic in DejaVu need none, and shaping every cell
/// of a 5,000-row table would cost more than everything else together.
pub(crate) fn glyphs(text: &str, weight: Weight) -> Vec<(u16, f32, std::ops::Range<usize>)> {
    let f = face(weight);
    let em = f32::from(f.units_per_em());
    text.char_indices()
        .filter_map(|(i, c)| {
            let g = f.glyph_index(c)?;
            let advance = f.glyph_hor_advance(g).map_or(0.0, f32::from) / em;
            Some((g.0, advance, i..i + c.len_utf8()))
        })
        .collect()
}

/// Width of `text` (already printable) at `size` points.
pub fn width(text: &str, size: f32, weight: Weight) -> f32 {
    let f = face(weight);
    let units: u32 =
        text.chars().map(|c| f.glyph_index(c).and_then(|g| f.glyph_hor_advance(g)).map_or(0, u32::from)).sum();
    units as f32 * size / f32::from(f.units_per_em())
}

/// `text` broken into lines no wider than `max_width`: at spaces, at its own line ends, and
/// inside a word only when the word alone is too wide. Lines are printable.
pub fn wrap(text: &str, size: f32, weight: Weight, max_width: f32) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        for word in paragraph.split(' ').filter(|w| !w.is_empty()) {
            let word = printable(word, weight);
            let candidate = if line.is_empty() { word.clone() } else { format!("{line} {word}") };
            if width(&candidate, size, weight) <= max_width {
                line = candidate;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            if width(&word, size, weight) <= max_width {
                line = word;
                continue;
            }
            // A word wider than the box (a hash, a long identifier): broken where it must be.
            for c in word.chars() {
                let mut next = line.clone();
                next.push(c);
                if width(&next, size, weight) > max_width && !line.is_empty() {
                    lines.push(std::mem::replace(&mut line, c.to_string()));
                } else {
                    line = next;
                }
            }
        }
        lines.push(line);
    }
    lines
}

/// `lines` cut to at most `max` lines, the last one ending in an ellipsis when something was cut.
pub fn clamp(mut lines: Vec<String>, max: usize, size: f32, weight: Weight, max_width: f32) -> Vec<String> {
    if lines.len() <= max {
        return lines;
    }
    lines.truncate(max);
    if let Some(last) = lines.last_mut() {
        while !last.is_empty() && width(&format!("{last}…"), size, weight) > max_width {
            last.pop();
        }
        last.push('…');
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_at_spaces_and_inside_long_words() {
        let lines = wrap("Security of processing and the confidentiality of systems", 10.0, Weight::Regular, 120.0);
        assert!(lines.len() > 1, "{lines:?}");
        assert!(lines.iter().all(|l| width(l, 10.0, Weight::Regular) <= 120.0), "{lines:?}");
        assert_eq!(lines.join(" "), "Security of processing and the confidentiality of systems");

        let hash = "a".repeat(200);
        let lines = wrap(&hash, 10.0, Weight::Regular, 100.0);
        assert!(lines.len() > 1 && lines.iter().all(|l| width(l, 10.0, Weight::Regular) <= 100.0));
        assert_eq!(lines.concat(), hash);
    }

    #[test]
    fn keeps_line_ends_and_replaces_what_the_face_cannot_show() {
        assert_eq!(wrap("one\ntwo", 10.0, Weight::Regular, 500.0), ["one", "two"]);
        // DejaVu has Latin, Greek, Cyrillic, arrows and dashes; it has no CJK.
        assert_eq!(printable("Ωmega → ü — 数\u{7}", Weight::Bold), "Ωmega → ü — ?");
        let clamped = clamp(vec!["a".into(), "b".into(), "c".into()], 2, 10.0, Weight::Regular, 100.0);
        assert_eq!(clamped, ["a", "b…"]);
    }
}
