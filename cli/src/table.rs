//! Tables as OpenNebula's CLI prints them (`CLIHelper::ShowTable`), with its column layout
//! rules:
//!
//! * each column has a width; values are right-aligned (or left, per column) and cut to the
//!   width, except `adjust` columns, which grow to their longest value;
//! * columns are joined by one space and each line is right-trimmed; the header is not;
//! * on a terminal the header is bold and underlined, the STAT column coloured, and
//!   `expand` columns share the terminal's spare width;
//! * `--list` picks columns, `--filter COL=VAL` (also `!=`, `<`, `<=`, `>`, `>=`, `~` for
//!   "contains", compared as text, as OpenNebula does) picks rows, `--csv` prints
//!   comma-separated values, `--no-header` drops the header.

use crate::args::ListOpts;
use crate::error::{CliError, CliResult};
use std::io::Write;

/// One column: its layout and how to compute its text for an item.
pub struct Col<'a, T> {
    pub name: &'static str,
    pub desc: &'static str,
    pub size: usize,
    pub left: bool,
    pub adjust: bool,
    pub expand: bool,
    pub value: Box<dyn Fn(&T) -> String + 'a>,
}

impl<'a, T> Col<'a, T> {
    /// A right-aligned column of `size`.
    pub fn new(
        name: &'static str,
        desc: &'static str,
        size: usize,
        value: impl Fn(&T) -> String + 'a,
    ) -> Self {
        Col {
            name,
            desc,
            size,
            left: false,
            adjust: false,
            expand: false,
            value: Box::new(value),
        }
    }

    pub fn left(mut self) -> Self {
        self.left = true;
        self
    }

    pub fn adjust(mut self) -> Self {
        self.adjust = true;
        self
    }

    pub fn expand(mut self) -> Self {
        self.expand = true;
        self
    }
}

/// A table: its columns, the default selection, and which column holds the state.
pub struct Table<'a, T> {
    pub cols: Vec<Col<'a, T>>,
    pub default: Vec<&'static str>,
    pub stat: &'static str,
}

#[derive(Clone, Copy)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
}

struct Filter {
    col: usize,
    op: Op,
    value: String,
}

fn parse_filter(expr: &str, names: &[&str]) -> CliResult<(String, Op, String)> {
    // The operator that starts first; at one position, the longest.
    const OPS: [(&str, Op); 7] = [
        ("!=", Op::Ne),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("=", Op::Eq),
        ("<", Op::Lt),
        (">", Op::Gt),
        ("~", Op::Contains),
    ];
    for (i, _) in expr.char_indices() {
        for (text, op) in OPS {
            if expr[i..].starts_with(text) && i > 0 {
                let col = expr[..i].to_ascii_uppercase();
                if !names.contains(&col.as_str()) {
                    return Err(CliError::msg(format!("Column '{}' not found", &expr[..i])));
                }
                return Ok((col, op, expr[i + text.len()..].to_owned()));
            }
        }
    }
    Err(CliError::msg(format!("Expression '{expr}' incorrect")))
}

impl Filter {
    fn matches(&self, v: &str) -> bool {
        let r = self.value.as_str();
        match self.op {
            Op::Eq => v == r,
            Op::Ne => v != r,
            Op::Lt => v < r,
            Op::Le => v <= r,
            Op::Gt => v > r,
            Op::Ge => v >= r,
            Op::Contains => v.contains(r),
        }
    }
}

/// The width of the terminal on stdout, when stdout is one.
pub fn terminal_width() -> Option<usize> {
    if !crate::stdout_is_tty() {
        return None;
    }
    // SAFETY: TIOCGWINSZ fills the winsize we own; fd 1 is stdout.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_col > 0 {
            Some(ws.ws_col as usize)
        } else {
            None
        }
    }
}

const BOLD_UNDERLINE: &str = "\x1b[1m\x1b[4m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// Prints a section header as OpenNebula's `print_header` does: bold (and underlined) on a
/// terminal, plain otherwise.
pub fn header(out: &mut dyn Write, text: &str, underline: bool) -> std::io::Result<()> {
    if crate::use_color() {
        let style = if underline { BOLD_UNDERLINE } else { BOLD };
        writeln!(out, "{style}{text}{RESET}")
    } else {
        writeln!(out, "{text}")
    }
}

fn color_state(s: &str) -> String {
    const OK: [&str; 5] = ["runn", "rdy", "on", "SUCCESS", "RUNNING"];
    const BAD: [&str; 4] = ["fail", "err", "error", "ERROR"];
    const REGULAR: [&str; 2] = ["PENDING", "WARNING"];
    let t = s.trim();
    let code = if OK.contains(&t) {
        "\x1b[32m"
    } else if BAD.contains(&t) {
        "\x1b[31m"
    } else if REGULAR.contains(&t) {
        "\x1b[33m"
    } else {
        return s.to_owned();
    };
    format!("{code}{s}{RESET}")
}

fn cut(s: &str, width: usize) -> &str {
    match s.char_indices().nth(width) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn pad(out: &mut String, s: &str, width: usize, left: bool, truncate: bool) {
    let s = if truncate { cut(s, width) } else { s };
    let n = s.chars().count();
    let fill = width.saturating_sub(n);
    if left {
        out.push_str(s);
        out.extend(std::iter::repeat_n(' ', fill));
    } else {
        out.extend(std::iter::repeat_n(' ', fill));
        out.push_str(s);
    }
}

fn csv_field(s: &str, del: &str) -> String {
    if s.contains(del) || s.contains('"') || s.contains('\n') || s.contains('\r') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

impl<T> Table<'_, T> {
    fn index(&self, name: &str) -> Option<usize> {
        self.cols.iter().position(|c| c.name == name)
    }

    /// `--describe`: each column and what it shows.
    pub fn describe(&self, out: &mut dyn Write) -> CliResult<()> {
        for c in &self.cols {
            writeln!(out, "{:<20}: {:<20}", c.name, c.desc)?;
        }
        Ok(())
    }

    /// Prints `items` as the options ask.
    pub fn print(&self, items: &[T], opts: &ListOpts, out: &mut dyn Write) -> CliResult<()> {
        let names: Vec<&str> = self.cols.iter().map(|c| c.name).collect();
        // The columns shown.
        let selected: Vec<usize> = if opts.list.is_empty() {
            self.default.iter().filter_map(|n| self.index(n)).collect()
        } else {
            let mut v = Vec::new();
            for name in &opts.list {
                let upper = name.trim().to_ascii_uppercase();
                match self.index(&upper) {
                    Some(i) => v.push(i),
                    None => {
                        return Err(CliError::msg(format!("Column {upper} not defined.")));
                    }
                }
            }
            v
        };
        let filters: Vec<Filter> = opts
            .filter
            .iter()
            .map(|f| {
                let (col, op, value) = parse_filter(f, &names)?;
                Ok(Filter {
                    col: self.index(&col).expect("checked"),
                    op,
                    value,
                })
            })
            .collect::<CliResult<_>>()?;
        let or = opts
            .operator
            .as_deref()
            .is_some_and(|o| o.eq_ignore_ascii_case("or"));

        // Compute the shown and filtered columns only.
        let mut needed: Vec<usize> = selected.clone();
        for f in &filters {
            if !needed.contains(&f.col) {
                needed.push(f.col);
            }
        }
        let mut rows: Vec<Vec<String>> = Vec::with_capacity(items.len());
        for item in items {
            let row: Vec<String> = needed.iter().map(|i| (self.cols[*i].value)(item)).collect();
            if !filters.is_empty() {
                let pos = |col: usize| needed.iter().position(|n| *n == col).expect("needed");
                let mut pass = !or;
                for f in &filters {
                    let m = f.matches(&row[pos(f.col)]);
                    if or && m {
                        pass = true;
                        break;
                    }
                    if !or && !m {
                        pass = false;
                        break;
                    }
                }
                if !pass {
                    continue;
                }
            }
            rows.push(row);
        }

        let del = opts.csv_del.as_deref().unwrap_or(",");
        if opts.csv {
            if !opts.no_header {
                let head: Vec<String> = selected
                    .iter()
                    .map(|i| csv_field(self.cols[*i].name, del))
                    .collect();
                writeln!(out, "{}", head.join(del))?;
            }
            for row in &rows {
                let line: Vec<String> = (0..selected.len())
                    .map(|k| csv_field(&row[k], del))
                    .collect();
                writeln!(out, "{}", line.join(del))?;
            }
            return Ok(());
        }

        // Widths: configured, then adjusted to the data, then --size, then expanded.
        let mut widths: Vec<usize> = selected.iter().map(|i| self.cols[*i].size).collect();
        let mut truncate: Vec<bool> = selected.iter().map(|i| !self.cols[*i].adjust).collect();
        let adjust_opt: Vec<String> = opts.adjust.iter().map(|a| a.to_ascii_uppercase()).collect();
        for (k, i) in selected.iter().enumerate() {
            let c = &self.cols[*i];
            if c.adjust || adjust_opt.iter().any(|a| a == c.name) {
                let longest = rows.iter().map(|r| r[k].chars().count()).max().unwrap_or(0);
                if longest > widths[k] {
                    widths[k] = longest;
                }
                truncate[k] = false;
            }
        }
        for s in &opts.size {
            let Some((name, size)) = s.split_once('=') else {
                return Err(CliError::msg(format!("Wrong size '{s}': use COLUMN=SIZE")));
            };
            let name = name.trim().to_ascii_uppercase();
            let size: usize = size
                .trim()
                .parse()
                .map_err(|_| CliError::msg(format!("Wrong size '{s}': use COLUMN=SIZE")))?;
            if let Some(k) = selected.iter().position(|i| self.cols[*i].name == name) {
                widths[k] = size;
                truncate[k] = true;
            }
        }
        if !opts.no_expand
            && let Some(term) = terminal_width()
        {
            let expand: Vec<usize> = (0..selected.len())
                .filter(|k| {
                    let c = &self.cols[selected[*k]];
                    c.expand || opts.expand.iter().any(|e| e.eq_ignore_ascii_case(c.name))
                })
                .collect();
            expand_widths(&mut widths, &mut truncate, &expand, term);
        }

        let color = crate::use_color();
        if !opts.no_header {
            let mut head = String::new();
            for (k, i) in selected.iter().enumerate() {
                if k > 0 {
                    head.push(' ');
                }
                let c = &self.cols[*i];
                pad(&mut head, c.name, widths[k], c.left, truncate[k]);
            }
            header(out, &head, true)?;
        }
        let stat = selected
            .iter()
            .position(|i| self.cols[*i].name == self.stat);
        let mut line = String::with_capacity(128);
        for row in &rows {
            line.clear();
            for (k, i) in selected.iter().enumerate() {
                if k > 0 {
                    line.push(' ');
                }
                let c = &self.cols[*i];
                if color && Some(k) == stat {
                    let mut cell = String::new();
                    pad(&mut cell, &row[k], widths[k], c.left, truncate[k]);
                    line.push_str(&color_state(&cell));
                } else {
                    pad(&mut line, &row[k], widths[k], c.left, truncate[k]);
                }
            }
            out.write_all(line.trim_end().as_bytes())?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }
}

/// Shares the terminal's spare width among the `expand` columns in proportion to their
/// widths (the last one takes the rounding), as OpenNebula's CLI does.
fn expand_widths(widths: &mut [usize], truncate: &mut [bool], expand: &[usize], term: usize) {
    if expand.is_empty() {
        return;
    }
    let total: usize = widths.iter().sum();
    let usable = term.saturating_sub(widths.len().saturating_sub(1));
    if usable <= total {
        return;
    }
    let spare = usable - total;
    let expand_total: usize = expand.iter().map(|k| widths[*k]).sum::<usize>().max(1);
    let mut given = 0;
    for k in expand {
        let share = (spare as f64 * widths[*k] as f64 / expand_total as f64).round() as usize;
        widths[*k] += share;
        truncate[*k] = true;
        given += share;
    }
    let last = *expand.last().expect("not empty");
    if given < spare {
        widths[last] += spare - given;
    } else if given > spare {
        widths[last] = widths[last].saturating_sub(given - spare);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table<'a>() -> Table<'a, (i64, &'static str, &'static str)> {
        Table {
            cols: vec![
                Col::new("ID", "id", 4, |r: &(i64, &str, &str)| r.0.to_string()).adjust(),
                Col::new("NAME", "name", 6, |r: &(i64, &str, &str)| r.1.to_string())
                    .left()
                    .expand(),
                Col::new("STAT", "state", 4, |r: &(i64, &str, &str)| r.2.to_string()),
            ],
            default: vec!["ID", "NAME", "STAT"],
            stat: "STAT",
        }
    }

    fn render(items: &[(i64, &'static str, &'static str)], opts: &ListOpts) -> String {
        let mut out = Vec::new();
        table().print(items, opts, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn layout_like_opennebula() {
        let items = [(123_456, "a-long-name", "runn"), (7, "b", "pend")];
        assert_eq!(
            render(&items, &ListOpts::default()),
            "    ID NAME   STAT\n123456 a-long runn\n     7 b      pend\n"
        );
    }

    #[test]
    fn list_filter_csv_no_header() {
        let items = [(1, "web", "runn"), (2, "db", "pend"), (3, "web2", "poff")];
        let opts = ListOpts {
            list: vec!["name".into(), "id".into()],
            filter: vec!["NAME~web".into()],
            no_header: true,
            ..ListOpts::default()
        };
        assert_eq!(render(&items, &opts), "web       1\nweb2      3\n");
        let opts = ListOpts {
            filter: vec!["STAT!=runn".into(), "ID=1".into()],
            operator: Some("OR".into()),
            csv: true,
            ..ListOpts::default()
        };
        assert_eq!(
            render(&items, &opts),
            "ID,NAME,STAT\n1,web,runn\n2,db,pend\n3,web2,poff\n"
        );
        let mut out = Vec::new();
        let bad = ListOpts {
            filter: vec!["NOPE=1".into()],
            ..ListOpts::default()
        };
        let e = table().print(&items, &bad, &mut out).unwrap_err();
        assert_eq!(e.to_string(), "Column 'NOPE' not found");
        let bad = ListOpts {
            list: vec!["X".into()],
            ..ListOpts::default()
        };
        let e = table().print(&items, &bad, &mut out).unwrap_err();
        assert_eq!(e.to_string(), "Column X not defined.");
    }

    #[test]
    fn expansion_fills_the_terminal() {
        let mut w = vec![4, 15, 4, 10];
        let mut t = vec![true; 4];
        expand_widths(&mut w, &mut t, &[1, 3], 60);
        assert_eq!(w.iter().sum::<usize>() + 3, 60);
        assert!(w[1] > 15 && w[3] > 10);
    }
}
