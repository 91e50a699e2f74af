//! A small aligned-table formatter for human output.

use mcpd_protocol::terminal::{Keep, escape};

/// Rows of cells printed in columns padded to the widest cell, two spaces apart. The last
/// column is not padded, so lines carry no trailing spaces. Cells are one line each, with
/// control characters escaped (their text often comes from servers).
#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<I, S>(headers: I) -> Table
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Table {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are blank and extra cells are dropped.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut cells: Vec<String> = cells.into_iter().map(Into::into).collect();
        cells.resize(self.headers.len(), String::new());
        // A cell on one line keeps the table aligned; other controls are shown escaped.
        for cell in &mut cells {
            if cell.contains(['\n', '\r', '\t']) {
                *cell = cell.replace(['\n', '\r', '\t'], " ");
            }
            if let std::borrow::Cow::Owned(escaped) = escape(cell, Keep::Nothing) {
                *cell = escaped;
            }
        }
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row (header first), each ending in a newline.
    pub fn render(&self) -> String {
        let width = |cell: &str| cell.chars().count();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                if i + 1 < row.len() {
                    line.extend(std::iter::repeat_n(' ', w - width(cell)));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A duration as a short human string: `45s`, `12m3s`, `5h2m`, `3d4h`.
pub fn short_duration(ms: u64) -> String {
    let secs = ms / 1000;
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s}s"),
        (0, _, _) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_the_widest_cell() {
        let mut t = Table::new(["NAME", "STATE", "PORT"]);
        t.row(["echo", "running", "5000"]);
        t.row(["a-much-longer-name", "failed", "-"]);
        assert_eq!(
            t.render(),
            "NAME                STATE    PORT\n\
             echo                running  5000\n\
             a-much-longer-name  failed   -\n"
        );
    }

    #[test]
    fn no_trailing_spaces_and_short_rows_are_padded() {
        let mut t = Table::new(["A", "B", "LAST"]);
        t.row(["x"]);
        t.row(["y", "z", ""]);
        let out = t.render();
        assert!(out.lines().all(|l| !l.ends_with(' ')), "{out:?}");
        assert_eq!(out, "A  B  LAST\nx\ny  z\n");
    }

    #[test]
    fn wide_characters_count_as_one_and_newlines_are_flattened() {
        let mut t = Table::new(["N", "D"]);
        t.row(["héllo", "line1\nline2"]);
        t.row(["ab", "x"]);
        assert_eq!(t.render(), "N      D\nhéllo  line1 line2\nab     x\n");
    }

    #[test]
    fn control_characters_in_cells_are_escaped() {
        let mut t = Table::new(["N", "D"]);
        t.row(["\x1b[31mred", "\u{202e}txt.exe\u{9b}"]);
        assert_eq!(
            t.render(),
            "N            D\n\\x1b[31mred  \\u{202e}txt.exe\\u{9b}\n"
        );
    }

    #[test]
    fn header_only_table() {
        let t = Table::new(["NAME", "STATE"]);
        assert!(t.is_empty());
        assert_eq!(t.render(), "NAME  STATE\n");
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(short_duration(999), "0s");
        assert_eq!(short_duration(45_000), "45s");
        assert_eq!(short_duration(723_000), "12m3s");
        assert_eq!(short_duration(5 * 3_600_000 + 120_000), "5h2m");
        assert_eq!(short_duration(3 * 86_400_000 + 4 * 3_600_000), "3d4h");
    }
}
