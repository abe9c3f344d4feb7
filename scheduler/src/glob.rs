//! Shell-glob matching as `fnmatch(pattern, string, 0)` does it, which is what OpenNebula's
//! requirement expressions use for `VAR = "pattern"`.
//!
//! `*` matches any run of characters (slashes and leading dots included: no FNM_PATHNAME or
//! FNM_PERIOD), `?` one character, `[...]` one character of a set (`[!...]` or `[^...]`
//! negated, ranges `a-z`, a leading `]` is literal, classes `[:alpha:]` and friends), and `\x`
//! the character `x`. A `[` without its closing `]` is a literal `[`, as in glibc.

/// Whether `text` matches the glob `pattern`.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    // Fast paths for the common shapes: no wildcard at all, or a trailing `*` only.
    if !pattern.contains(['*', '?', '[', '\\']) {
        return pattern == text;
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    matches(&p, &t)
}

/// One step of the pattern: what a single position of the text must be.
enum Item {
    Char(char),
    Any,
    Set { negated: bool, end: usize },
}

/// The pattern element starting at `p[i]` and the index just after it.
fn item(p: &[char], i: usize) -> (Item, usize) {
    match p[i] {
        '?' => (Item::Any, i + 1),
        '\\' if i + 1 < p.len() => (Item::Char(p[i + 1]), i + 2),
        '[' => match set_end(p, i) {
            Some(end) => {
                let negated = matches!(p.get(i + 1), Some('!' | '^'));
                (Item::Set { negated, end }, end + 1)
            }
            None => (Item::Char('['), i + 1),
        },
        c => (Item::Char(c), i + 1),
    }
}

/// The index of the `]` closing the set that opens at `p[open]`, if there is one.
fn set_end(p: &[char], open: usize) -> Option<usize> {
    let mut i = open + 1;
    if matches!(p.get(i), Some('!' | '^')) {
        i += 1;
    }
    // A `]` right after the opening (or its negation) is a member, not the end.
    if p.get(i) == Some(&']') {
        i += 1;
    }
    while i < p.len() {
        match p[i] {
            ']' => return Some(i),
            '[' if p.get(i + 1) == Some(&':') => {
                // Skip a whole `[:class:]`, whose `]` does not close the set.
                match (i + 2..p.len().saturating_sub(1)).find(|&j| p[j] == ':' && p[j + 1] == ']') {
                    Some(j) => i = j + 2,
                    None => i += 1,
                }
            }
            '\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}

fn in_set(p: &[char], open: usize, end: usize, c: char) -> bool {
    let mut i = open + 1;
    if matches!(p.get(i), Some('!' | '^')) {
        i += 1;
    }
    while i < end {
        if p[i] == '['
            && p.get(i + 1) == Some(&':')
            && let Some(j) = (i + 2..end).find(|&j| p[j] == ':' && p.get(j + 1) == Some(&']'))
        {
            let name: String = p[i + 2..j].iter().collect();
            if class_has(&name, c) {
                return true;
            }
            i = j + 2;
            continue;
        }
        let (lo, next) = if p[i] == '\\' && i + 1 < end {
            (p[i + 1], i + 2)
        } else {
            (p[i], i + 1)
        };
        // A range `lo-hi`; a `-` first or last in the set is literal.
        if next + 1 < end && p[next] == '-' {
            let (hi, after) = if p[next + 1] == '\\' && next + 2 < end {
                (p[next + 2], next + 3)
            } else {
                (p[next + 1], next + 2)
            };
            if lo <= c && c <= hi {
                return true;
            }
            i = after;
        } else {
            if lo == c {
                return true;
            }
            i = next;
        }
    }
    false
}

fn class_has(name: &str, c: char) -> bool {
    match name {
        "alpha" => c.is_ascii_alphabetic(),
        "digit" => c.is_ascii_digit(),
        "alnum" => c.is_ascii_alphanumeric(),
        "upper" => c.is_ascii_uppercase(),
        "lower" => c.is_ascii_lowercase(),
        "space" => c.is_ascii_whitespace(),
        "blank" => c == ' ' || c == '\t',
        "punct" => c.is_ascii_punctuation(),
        "xdigit" => c.is_ascii_hexdigit(),
        "cntrl" => c.is_ascii_control(),
        "print" => c.is_ascii_graphic() || c == ' ',
        "graph" => c.is_ascii_graphic(),
        _ => false,
    }
}

/// The classic matcher with one backtracking point: every element but `*` consumes exactly one
/// character, so retrying from the last `*` with one more character swallowed is complete.
fn matches(p: &[char], t: &[char]) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi + 1, ti));
            pi += 1;
            continue;
        }
        if pi < p.len() {
            let (it, next) = item(p, pi);
            let ok = match it {
                Item::Char(c) => c == t[ti],
                Item::Any => true,
                Item::Set { negated, end } => in_set(p, pi, end, t[ti]) != negated,
            };
            if ok {
                pi = next;
                ti += 1;
                continue;
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob_match as m;

    #[test]
    fn literals_and_wildcards() {
        assert!(m("kvm", "kvm"));
        assert!(!m("kvm", "kvm2"));
        assert!(m("", ""));
        assert!(!m("", "x"));
        assert!(m("*", ""));
        assert!(m("*", "anything/at all"));
        assert!(m("node*", "node12"));
        assert!(!m("node*", "xnode"));
        assert!(m("*12", "node12"));
        assert!(m("n*e*2", "node12"));
        assert!(!m("n*e*3", "node12"));
        assert!(m("no?e1?", "node12"));
        assert!(!m("no?e1?", "node1"));
        assert!(m("a*b*c", "aXXbYYbZZc"));
        assert!(m("**x", "abx"));
    }

    #[test]
    fn sets() {
        assert!(m("host[0-9]", "host7"));
        assert!(!m("host[0-9]", "hostx"));
        assert!(m("host[!0-9]", "hostx"));
        assert!(m("host[^0-9]", "hostx"));
        assert!(!m("host[!0-9]", "host3"));
        assert!(m("[abc]", "b"));
        assert!(m("[]a]", "]"));
        assert!(m("[!]a]", "x"));
        assert!(m("[a-]", "-"));
        assert!(m("[[:digit:]]x", "5x"));
        assert!(!m("[[:digit:]]x", "ax"));
        assert!(m("[[:alpha:]_]*", "_tail"));
        // An unterminated set is a literal `[`.
        assert!(m("a[b", "a[b"));
        assert!(!m("a[b", "ab"));
    }

    #[test]
    fn escapes() {
        assert!(m("a\\*", "a*"));
        assert!(!m("a\\*", "ab"));
        assert!(m("\\?", "?"));
        assert!(m("[\\]]", "]"));
    }

    #[test]
    fn unicode_counts_characters() {
        assert!(m("h?st", "höst"));
        assert!(m("*ö", "höö"));
    }
}
