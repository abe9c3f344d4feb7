//! OpenNebula's requirement and rank expressions: parsed once into an AST, evaluated against
//! many hosts or datastores through a [`Resolver`].
//!
//! Requirements (`SCHED_REQUIREMENTS`, `AUTOMATIC_REQUIREMENTS`, the DS variants) are boolean:
//!
//! ```text
//! expr  := unary (('&' | '|') unary)*        & and | share one level, left-associative
//! unary := '!' unary | '(' expr ')' | VAR op value
//! op    := '=' | '!=' | '>' | '<' | '@>'
//! value := number | string
//! ```
//!
//! `VAR = number` compares numerically; `VAR = string` (quoted or bare word) is a shell glob
//! (`*`, `?`, `[...]`); `!=` negates either; `>`/`<` take numbers only; `VAR @> value` is true
//! when any of the attribute's values matches (for multi-valued paths such as `CLUSTERS/ID`).
//! A missing attribute makes any comparison false (`!=` included), and so does comparing with
//! the empty string `""`. An empty expression is true. Names are `[A-Za-z][A-Za-z0-9_]*`;
//! anything else (paths like `CLUSTERS/ID`, raw paths like `/HOST/TEMPLATE/X`) is quoted.
//!
//! Ranks (`SCHED_RANK`, `SCHED_DS_RANK`, policy ranks) are arithmetic: numbers, attributes
//! (missing = 0, non-numeric text = 0), `+ - * /`, unary `-`, parentheses; empty = 0.
//!
//! Differences from OpenNebula's flex/bison parser, all on inputs it mishandles: an unknown
//! character is an error here (OpenNebula's lexer echoes and skips it), `A-5` is a
//! subtraction (OpenNebula lexes `-5` as a number and fails), numbers are 64-bit (OpenNebula
//! parses attribute values into a C `int`, so memory sizes above 2 TB never compare), and a
//! rank keeps its fraction (OpenNebula truncates it to an int, which makes more ties).

use crate::glob::glob_match;
use std::fmt;

/// Index of a variable in an expression's [`Requirement::vars`] / [`Rank::vars`].
pub type VarId = usize;

/// An expression that does not parse, with the 1-based character column of the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} at column {column}")]
pub struct ExprError {
    pub message: String,
    pub column: usize,
}

/// One value of an attribute as a resolver hands it to the evaluator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Val<'a> {
    /// Text from the XML document, interpreted by the comparison (number prefix or glob).
    Text(&'a str),
    /// A figure the scheduler keeps itself (capacity used during the pass).
    Int(i64),
}

/// Where an expression finds its attributes: a host, a datastore, a test map.
pub trait Resolver {
    /// The first value of variable `var` (document order), `None` when it is missing.
    fn first(&self, var: VarId) -> Option<Val<'_>>;
    /// Calls `f` on the values of `var` in order until it returns true; whether it did.
    fn any(&self, var: VarId, f: &mut dyn FnMut(Val<'_>) -> bool) -> bool;
}

// ------------------------------------------------------------------------------------------
// Lexer

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// A bare word or a quoted string (OpenNebula's STRING); the flag says it was quoted.
    Str(String, bool),
    /// `""`, which OpenNebula's lexer turns into a null string.
    Empty,
    Int(i64),
    Float(f64),
    Sym(char),
    End,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Str(s, true) => write!(f, "\"{s}\""),
            Tok::Str(s, false) => write!(f, "'{s}'"),
            Tok::Empty => f.write_str("\"\""),
            Tok::Int(n) => write!(f, "{n}"),
            Tok::Float(x) => write!(f, "{x}"),
            Tok::Sym(c) => write!(f, "'{c}'"),
            Tok::End => f.write_str("end of expression"),
        }
    }
}

fn lex(text: &str) -> Result<Vec<(Tok, usize)>, ExprError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |message: String, at: usize| ExprError {
        message,
        column: at + 1,
    };
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if "@!&|=><()*+/-".contains(c) {
            out.push((Tok::Sym(c), start + 1));
            i += 1;
        } else if c.is_ascii_alphabetic() {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((Tok::Str(chars[start..i].iter().collect(), false), start + 1));
        } else if c == '"' {
            let Some(len) = chars[i + 1..].iter().position(|&c| c == '"') else {
                return Err(err("unterminated string".into(), start));
            };
            let s: String = chars[i + 1..i + 1 + len].iter().collect();
            i += len + 2;
            out.push((
                if s.is_empty() {
                    Tok::Empty
                } else {
                    Tok::Str(s, true)
                },
                start + 1,
            ));
        } else if c.is_ascii_digit() {
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let float = i + 1 < chars.len() && chars[i] == '.' && chars[i + 1].is_ascii_digit();
            if float {
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let s: String = chars[start..i].iter().collect();
            let tok = if float {
                Tok::Float(
                    s.parse()
                        .map_err(|_| err(format!("bad number {s}"), start))?,
                )
            } else {
                Tok::Int(
                    s.parse()
                        .map_err(|_| err(format!("number {s} is too large"), start))?,
                )
            };
            out.push((tok, start + 1));
        } else {
            return Err(err(format!("unexpected character '{c}'"), start));
        }
    }
    out.push((Tok::End, chars.len() + 1));
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
    vars: Vec<String>,
}

impl Parser {
    fn new(text: &str) -> Result<Self, ExprError> {
        Ok(Parser {
            toks: lex(text)?,
            at: 0,
            vars: Vec::new(),
        })
    }

    fn peek(&self) -> &Tok {
        &self.toks[self.at].0
    }

    fn column(&self) -> usize {
        self.toks[self.at].1
    }

    fn next(&mut self) -> Tok {
        let t = self.toks[self.at].0.clone();
        if self.at + 1 < self.toks.len() {
            self.at += 1;
        }
        t
    }

    fn eat(&mut self, c: char) -> bool {
        if *self.peek() == Tok::Sym(c) {
            self.next();
            true
        } else {
            false
        }
    }

    fn fail<T>(&self, expected: &str) -> Result<T, ExprError> {
        Err(ExprError {
            message: format!("unexpected {}, expected {expected}", self.peek()),
            column: self.column(),
        })
    }

    fn var(&mut self, name: String) -> VarId {
        match self.vars.iter().position(|v| *v == name) {
            Some(i) => i,
            None => {
                self.vars.push(name);
                self.vars.len() - 1
            }
        }
    }

    fn at_end(&self) -> bool {
        *self.peek() == Tok::End
    }
}

// ------------------------------------------------------------------------------------------
// Requirements

/// The literal on the right of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Int(i64),
    Float(f64),
    /// A glob pattern.
    Str(String),
    /// `""`: every comparison with it is false, as in OpenNebula.
    Empty,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Lt,
    /// `@>`: any of the values.
    AnyOf,
}

#[derive(Clone, Debug, PartialEq)]
enum BoolNode {
    Cmp { var: VarId, op: CmpOp, lit: Literal },
    And(Box<BoolNode>, Box<BoolNode>),
    Or(Box<BoolNode>, Box<BoolNode>),
    Not(Box<BoolNode>),
}

/// A parsed boolean requirement.
#[derive(Clone, Debug, PartialEq)]
pub struct Requirement {
    text: String,
    root: Option<BoolNode>,
    vars: Vec<String>,
}

impl Requirement {
    pub fn parse(text: &str) -> Result<Requirement, ExprError> {
        let mut p = Parser::new(text)?;
        let root = if p.at_end() {
            None
        } else {
            let e = bool_seq(&mut p)?;
            if !p.at_end() {
                return p.fail("'&', '|' or the end");
            }
            Some(e)
        };
        Ok(Requirement {
            text: text.to_string(),
            root,
            vars: p.vars,
        })
    }

    /// The expression as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the expression is empty (always true).
    pub fn is_empty(&self) -> bool {
        self.root.is_none()
    }

    /// The attribute names it reads; [`VarId`]s index this list.
    pub fn vars(&self) -> &[String] {
        &self.vars
    }

    pub fn eval(&self, r: &dyn Resolver) -> bool {
        self.root.as_ref().is_none_or(|n| eval_bool(n, r))
    }
}

fn bool_seq(p: &mut Parser) -> Result<BoolNode, ExprError> {
    let mut left = bool_unary(p)?;
    loop {
        if p.eat('&') {
            left = BoolNode::And(Box::new(left), Box::new(bool_unary(p)?));
        } else if p.eat('|') {
            left = BoolNode::Or(Box::new(left), Box::new(bool_unary(p)?));
        } else {
            return Ok(left);
        }
    }
}

fn bool_unary(p: &mut Parser) -> Result<BoolNode, ExprError> {
    if p.eat('!') {
        return Ok(BoolNode::Not(Box::new(bool_unary(p)?)));
    }
    if p.eat('(') {
        let e = bool_seq(p)?;
        if !p.eat(')') {
            return p.fail("')'");
        }
        return Ok(e);
    }
    let name = match p.peek() {
        Tok::Str(s, _) => s.clone(),
        _ => return p.fail("an attribute name, '!' or '('"),
    };
    p.next();
    let op = match p.peek() {
        Tok::Sym('=') => CmpOp::Eq,
        Tok::Sym('>') => CmpOp::Gt,
        Tok::Sym('<') => CmpOp::Lt,
        Tok::Sym('!') => {
            p.next();
            if *p.peek() != Tok::Sym('=') {
                return p.fail("'=' after '!'");
            }
            CmpOp::Ne
        }
        Tok::Sym('@') => {
            p.next();
            if *p.peek() != Tok::Sym('>') {
                return p.fail("'>' after '@'");
            }
            CmpOp::AnyOf
        }
        _ => return p.fail("'=', '!=', '>', '<' or '@>'"),
    };
    p.next();
    let negative = p.eat('-');
    let lit = match p.peek().clone() {
        Tok::Int(n) => Literal::Int(if negative { -n } else { n }),
        Tok::Float(x) => Literal::Float(if negative { -x } else { x }),
        Tok::Str(s, _) if !negative => Literal::Str(s),
        Tok::Empty if !negative => Literal::Empty,
        _ => return p.fail(if negative { "a number" } else { "a value" }),
    };
    if matches!(op, CmpOp::Gt | CmpOp::Lt) && matches!(lit, Literal::Str(_) | Literal::Empty) {
        return p.fail("a number ('>' and '<' compare numbers)");
    }
    p.next();
    let var = p.var(name);
    Ok(BoolNode::Cmp { var, op, lit })
}

fn eval_bool(n: &BoolNode, r: &dyn Resolver) -> bool {
    match n {
        BoolNode::And(a, b) => eval_bool(a, r) && eval_bool(b, r),
        BoolNode::Or(a, b) => eval_bool(a, r) || eval_bool(b, r),
        BoolNode::Not(a) => !eval_bool(a, r),
        BoolNode::Cmp { var, op, lit } => compare(*var, *op, lit, r),
    }
}

fn compare(var: VarId, op: CmpOp, lit: &Literal, r: &dyn Resolver) -> bool {
    match lit {
        Literal::Empty => false,
        Literal::Int(n) => {
            let n = *n;
            if op == CmpOp::AnyOf {
                return r.any(var, &mut |v| as_int(v) == Some(n));
            }
            let Some(v) = r.first(var).and_then(as_int) else {
                return false;
            };
            match op {
                CmpOp::Eq => v == n,
                CmpOp::Ne => v != n,
                CmpOp::Gt => v > n,
                CmpOp::Lt => v < n,
                CmpOp::AnyOf => unreachable!("handled above"),
            }
        }
        Literal::Float(x) => {
            let x = *x;
            if op == CmpOp::AnyOf {
                return r.any(var, &mut |v| as_float(v) == Some(x));
            }
            let Some(v) = r.first(var).and_then(as_float) else {
                return false;
            };
            match op {
                CmpOp::Eq => v == x,
                CmpOp::Ne => v != x,
                CmpOp::Gt => v > x,
                CmpOp::Lt => v < x,
                CmpOp::AnyOf => unreachable!("handled above"),
            }
        }
        Literal::Str(pattern) => {
            let glob = |v: Val<'_>| match v {
                Val::Text(t) => glob_match(pattern, t),
                Val::Int(n) => glob_match(pattern, &n.to_string()),
            };
            match op {
                CmpOp::AnyOf => r.any(var, &mut |v| glob(v)),
                CmpOp::Eq => r.first(var).is_some_and(glob),
                CmpOp::Ne => r.first(var).is_some_and(|v| !glob(v)),
                // The parser refuses strings with > and <.
                CmpOp::Gt | CmpOp::Lt => false,
            }
        }
    }
}

/// An attribute value read as an integer the way `istream >> int` does: leading blanks, an
/// optional sign, digits; whatever follows is ignored; no digits (or overflow) is no number.
pub fn leading_int(s: &str) -> Option<i64> {
    let s = s.trim_start();
    let b = s.as_bytes();
    let mut end = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let digits = b[end..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    end += digits;
    s[..end].parse().ok()
}

/// An attribute value read as a float the way `istream >> float` does: the longest numeric
/// prefix (sign, digits, fraction, exponent).
pub fn leading_float(s: &str) -> Option<f64> {
    let s = s.trim_start();
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let int_digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    i += int_digits;
    let mut frac_digits = 0;
    if b.get(i) == Some(&b'.') {
        frac_digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if int_digits + frac_digits > 0 {
            i += 1 + frac_digits;
        }
    }
    if int_digits + frac_digits == 0 {
        return None;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let exp = b[j..].iter().take_while(|c| c.is_ascii_digit()).count();
        if exp > 0 {
            i = j + exp;
        }
    }
    s[..i].parse().ok()
}

fn as_int(v: Val<'_>) -> Option<i64> {
    match v {
        Val::Text(t) => leading_int(t),
        Val::Int(n) => Some(n),
    }
}

fn as_float(v: Val<'_>) -> Option<f64> {
    match v {
        Val::Text(t) => leading_float(t),
        Val::Int(n) => Some(n as f64),
    }
}

// ------------------------------------------------------------------------------------------
// Ranks

#[derive(Clone, Debug, PartialEq)]
enum ArithNode {
    Num(f64),
    Var(VarId),
    Neg(Box<ArithNode>),
    Bin(char, Box<ArithNode>, Box<ArithNode>),
}

/// A parsed arithmetic rank: higher is better.
#[derive(Clone, Debug, PartialEq)]
pub struct Rank {
    text: String,
    root: Option<ArithNode>,
    vars: Vec<String>,
}

impl Rank {
    pub fn parse(text: &str) -> Result<Rank, ExprError> {
        let mut p = Parser::new(text)?;
        let root = if p.at_end() {
            None
        } else {
            let e = arith_sum(&mut p)?;
            if !p.at_end() {
                return p.fail("an operator or the end");
            }
            Some(e)
        };
        Ok(Rank {
            text: text.to_string(),
            root,
            vars: p.vars,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn vars(&self) -> &[String] {
        &self.vars
    }

    /// Whether the rank reads no attribute at all (a constant: every candidate ties).
    pub fn is_constant(&self) -> bool {
        self.vars.is_empty()
    }

    /// The value; NaN (0/0) counts as the lowest rank.
    pub fn eval(&self, r: &dyn Resolver) -> f64 {
        let v = self.root.as_ref().map_or(0.0, |n| eval_arith(n, r));
        if v.is_nan() { f64::NEG_INFINITY } else { v }
    }
}

fn arith_sum(p: &mut Parser) -> Result<ArithNode, ExprError> {
    let mut left = arith_product(p)?;
    loop {
        let op = match p.peek() {
            Tok::Sym(c @ ('+' | '-')) => *c,
            _ => return Ok(left),
        };
        p.next();
        left = ArithNode::Bin(op, Box::new(left), Box::new(arith_product(p)?));
    }
}

fn arith_product(p: &mut Parser) -> Result<ArithNode, ExprError> {
    let mut left = arith_factor(p)?;
    loop {
        let op = match p.peek() {
            Tok::Sym(c @ ('*' | '/')) => *c,
            _ => return Ok(left),
        };
        p.next();
        left = ArithNode::Bin(op, Box::new(left), Box::new(arith_factor(p)?));
    }
}

fn arith_factor(p: &mut Parser) -> Result<ArithNode, ExprError> {
    if p.eat('-') {
        return Ok(ArithNode::Neg(Box::new(arith_factor(p)?)));
    }
    if p.eat('(') {
        let e = arith_sum(p)?;
        if !p.eat(')') {
            return p.fail("')'");
        }
        return Ok(e);
    }
    let node = match p.peek().clone() {
        Tok::Int(n) => ArithNode::Num(n as f64),
        Tok::Float(x) => ArithNode::Num(x),
        Tok::Str(name, _) => ArithNode::Var(p.var(name)),
        _ => return p.fail("a number, an attribute name, '-' or '('"),
    };
    p.next();
    Ok(node)
}

fn eval_arith(n: &ArithNode, r: &dyn Resolver) -> f64 {
    match n {
        ArithNode::Num(x) => *x,
        ArithNode::Var(v) => r.first(*v).and_then(as_float).unwrap_or(0.0),
        ArithNode::Neg(a) => -eval_arith(a, r),
        ArithNode::Bin(op, a, b) => {
            let (a, b) = (eval_arith(a, r), eval_arith(b, r));
            match op {
                '+' => a + b,
                '-' => a - b,
                '*' => a * b,
                _ => a / b,
            }
        }
    }
}

// ------------------------------------------------------------------------------------------

/// A resolver over `(name, value)` pairs, for tests and tools: every pair whose name matches
/// is a value of that attribute, in the given order.
pub struct MapResolver<'a> {
    pairs: &'a [(&'a str, &'a str)],
    vars: &'a [String],
}

impl<'a> MapResolver<'a> {
    pub fn new(vars: &'a [String], pairs: &'a [(&'a str, &'a str)]) -> Self {
        MapResolver { pairs, vars }
    }
}

impl Resolver for MapResolver<'_> {
    fn first(&self, var: VarId) -> Option<Val<'_>> {
        let name = self.vars.get(var)?;
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| Val::Text(v))
    }

    fn any(&self, var: VarId, f: &mut dyn FnMut(Val<'_>) -> bool) -> bool {
        let Some(name) = self.vars.get(var) else {
            return false;
        };
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .any(|(_, v)| f(Val::Text(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &[(&str, &str)] = &[
        ("ID", "4"),
        ("NAME", "node-04.example"),
        ("CLUSTER_ID", "100"),
        ("HYPERVISOR", "kvm"),
        ("CPUSPEED", "2400"),
        ("FREE_CPU", "750.5"),
        ("ARCH", "x86_64"),
        ("LABELS", "ssd,gpu"),
        ("CLUSTERS/ID", "0"),
        ("CLUSTERS/ID", "100"),
        ("ODD", "12abc"),
        ("NEG", "-3"),
        ("EMPTY", ""),
    ];

    fn req(text: &str) -> bool {
        let r = Requirement::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        r.eval(&MapResolver::new(r.vars(), HOST))
    }

    fn rank(text: &str) -> f64 {
        let r = Rank::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        r.eval(&MapResolver::new(r.vars(), HOST))
    }

    fn req_err(text: &str) -> ExprError {
        Requirement::parse(text).expect_err(text)
    }

    #[test]
    fn empty_requirement_is_true_and_empty_rank_is_zero() {
        assert!(req(""));
        assert!(req("   \t"));
        assert!(Requirement::parse("").unwrap().is_empty());
        assert_eq!(rank(""), 0.0);
    }

    #[test]
    fn integer_comparisons() {
        assert!(req("ID = 4"));
        assert!(!req("ID = 5"));
        assert!(req("ID != 5"));
        assert!(!req("ID != 4"));
        assert!(req("CPUSPEED > 2000"));
        assert!(!req("CPUSPEED > 2400"));
        assert!(req("CPUSPEED < 2401"));
        assert!(!req("CPUSPEED < 2400"));
        assert!(req("NEG < -2"));
        assert!(req("NEG = -3"));
        // istream >> int reads the leading number.
        assert!(req("ODD = 12"));
        assert!(req("FREE_CPU = 750"));
        // Non-numeric text is no number: every comparison is false.
        assert!(!req("HYPERVISOR = 0"));
        assert!(!req("HYPERVISOR != 0"));
        assert!(!req("EMPTY < 1"));
    }

    #[test]
    fn float_comparisons() {
        assert!(req("FREE_CPU = 750.5"));
        assert!(req("FREE_CPU > 750.4"));
        assert!(req("FREE_CPU < 750.6"));
        assert!(req("FREE_CPU != 1.5"));
        assert!(req("CPUSPEED > 2399.5"));
        assert!(req("NEG > -3.5"));
    }

    #[test]
    fn missing_attribute_is_false_for_every_operator() {
        for text in [
            "NOPE = 1",
            "NOPE != 1",
            "NOPE > 1",
            "NOPE < 1",
            "NOPE @> 1",
            "NOPE = \"x\"",
            "NOPE != \"x\"",
            "NOPE = 1.5",
            "NOPE != 1.5",
        ] {
            assert!(!req(text), "{text}");
        }
        assert!(req("!(NOPE = 1)"));
    }

    #[test]
    fn string_globs() {
        assert!(req("HYPERVISOR = kvm"));
        assert!(req("HYPERVISOR = \"kvm\""));
        assert!(!req("HYPERVISOR = \"KVM\""));
        assert!(req("HYPERVISOR != xen"));
        assert!(!req("HYPERVISOR != kvm"));
        assert!(req("NAME = \"node-*\""));
        assert!(req("NAME = \"node-0?.example\""));
        assert!(req("NAME = \"node-0[0-4]*\""));
        assert!(!req("NAME = \"node-0[5-9]*\""));
        assert!(req("NAME != \"web*\""));
        assert!(req("ARCH = \"x86_64\""));
        assert!(req("LABELS = \"*gpu*\""));
        // The empty string compares false with every operator.
        assert!(!req("EMPTY = \"\""));
        assert!(!req("HYPERVISOR = \"\""));
        assert!(!req("HYPERVISOR != \"\""));
        assert!(!req("HYPERVISOR @> \"\""));
        // A quoted number is a glob on the text.
        assert!(req("ID = \"4\""));
        assert!(req("CPUSPEED = \"24*\""));
    }

    #[test]
    fn any_of() {
        assert!(req("\"CLUSTERS/ID\" @> 100"));
        assert!(req("\"CLUSTERS/ID\" @> 0"));
        assert!(!req("\"CLUSTERS/ID\" @> 7"));
        assert!(req("\"CLUSTERS/ID\" @> \"1*\""));
        assert!(req("CLUSTER_ID @> 100"));
        assert!(req("FREE_CPU @> 750.5"));
        assert!(req("\"CLUSTERS/ID\" @ > 0"), "two tokens, blanks allowed");
        // `=` looks at the first value only.
        assert!(req("\"CLUSTERS/ID\" = 0"));
        assert!(!req("\"CLUSTERS/ID\" = 100"));
    }

    #[test]
    fn boolean_operators_share_one_precedence_left_to_right() {
        assert!(req("ID = 4 & HYPERVISOR = kvm"));
        assert!(!req("ID = 4 & HYPERVISOR = xen"));
        assert!(req("ID = 5 | HYPERVISOR = kvm"));
        assert!(!req("ID = 5 | HYPERVISOR = xen"));
        assert!(req("!(ID = 5)"));
        assert!(req("! ID = 5"));
        assert!(req("!!(ID = 4)"));
        // Left to right: (true | false) & false = false; C-like precedence would say true.
        assert!(!req("ID = 4 | ID = 5 & ID = 6"));
        // (false & false) | true = true.
        assert!(req("ID = 5 & ID = 6 | ID = 4"));
        // ! binds to the next operand only: (!false) & false = false.
        assert!(!req("!ID = 5 & ID = 6"));
        // Parentheses group.
        assert!(req("ID = 4 | (ID = 5 & ID = 6)"));
        assert!(req("(CLUSTER_ID = 100) & !(PIN_POLICY = PINNED)"));
        assert!(!req("(CLUSTER_ID = 0) & !(PIN_POLICY = PINNED)"));
    }

    #[test]
    fn lexing_details() {
        assert!(req("ID=4&CPUSPEED>2000"));
        assert!(req("ID\n=\n4"));
        assert!(req("ID ! = 5"), "'!' '=' are two tokens");
        assert!(req("\"ID\" = 4"), "quoted names");
        let r = Requirement::parse("A = 1 & B = x | A = 2").unwrap();
        assert_eq!(r.vars(), ["A", "B"]);
        assert_eq!(r.text(), "A = 1 & B = x | A = 2");
    }

    #[test]
    fn requirement_errors_have_positions() {
        let e = req_err("ID = ");
        assert_eq!(e.column, 6);
        assert!(e.message.contains("expected a value"), "{e}");
        let e = req_err("ID 4");
        assert_eq!(e.column, 4);
        assert!(e.message.contains("'='"), "{e}");
        let e = req_err("(ID = 4");
        assert!(e.message.contains("')'"), "{e}");
        assert_eq!(e.column, 8);
        assert_eq!(req_err("ID = 4 ID = 5").column, 8);
        assert_eq!(req_err("ID = \"open").column, 6);
        assert!(req_err("ID = \"open").message.contains("unterminated"));
        assert_eq!(req_err("ID = 4 # x").column, 8);
        assert!(req_err("NAME > abc").message.contains("compare numbers"));
        assert!(req_err("ID ! 4").message.contains("'=' after '!'"));
        assert!(req_err("ID @ 4").message.contains("'>' after '@'"));
        assert!(req_err("ID = - x").message.contains("a number"));
        assert!(req_err("& ID = 4").message.contains("attribute name"));
        assert!(
            req_err("ID = 99999999999999999999")
                .message
                .contains("too large")
        );
        assert!(req_err("ID = 4 &").message.contains("end of expression"));
        assert_eq!(
            req_err("ID = 4 &").to_string(),
            "unexpected end of expression, expected an attribute name, '!' or '(' at column 9"
        );
        assert!(
            req_err("CLUSTERS/ID @> 0")
                .message
                .contains("unexpected '/'")
        );
    }

    #[test]
    fn rank_arithmetic() {
        assert_eq!(rank("4"), 4.0);
        assert_eq!(rank("2.5"), 2.5);
        assert_eq!(rank("CPUSPEED"), 2400.0);
        assert_eq!(rank("FREE_CPU"), 750.5);
        assert_eq!(rank("- CPUSPEED"), -2400.0);
        assert_eq!(rank("-CPUSPEED + 100"), -2300.0);
        assert_eq!(rank("1 + 2 * 3"), 7.0);
        assert_eq!(rank("(1 + 2) * 3"), 9.0);
        assert_eq!(rank("10 - 4 - 3"), 3.0, "left-associative");
        assert_eq!(rank("24 / 4 / 2"), 3.0);
        assert_eq!(rank("CPUSPEED-400"), 2000.0, "binary minus without blanks");
        assert_eq!(rank("--2"), 2.0);
        assert_eq!(rank("ID * 10 + CPUSPEED / 100"), 64.0);
        // Missing attributes and non-numbers are 0.
        assert_eq!(rank("NOPE"), 0.0);
        assert_eq!(rank("HYPERVISOR + 1"), 1.0);
        assert_eq!(rank("ODD"), 12.0);
        assert_eq!(rank("\"CLUSTERS/ID\""), 0.0, "first value");
        // Division by zero: infinities; 0/0 is the lowest rank.
        assert_eq!(rank("1 / 0"), f64::INFINITY);
        assert_eq!(rank("0 / 0"), f64::NEG_INFINITY);
    }

    #[test]
    fn rank_errors() {
        let e = Rank::parse("CPUSPEED +").unwrap_err();
        assert_eq!(e.column, 11);
        assert!(Rank::parse("(1 + 2").unwrap_err().message.contains("')'"));
        assert!(
            Rank::parse("1 2")
                .unwrap_err()
                .message
                .contains("an operator")
        );
        assert!(Rank::parse("A = 1").is_err());
        assert!(Rank::parse("\"\"").is_err());
        assert!(Rank::parse("A & B").is_err());
    }

    #[test]
    fn number_prefixes() {
        assert_eq!(leading_int(" 42abc"), Some(42));
        assert_eq!(leading_int("-7"), Some(-7));
        assert_eq!(leading_int("+7"), Some(7));
        assert_eq!(leading_int("2.9"), Some(2));
        assert_eq!(leading_int("x1"), None);
        assert_eq!(leading_int(""), None);
        assert_eq!(leading_int("-"), None);
        assert_eq!(leading_float("2.5GB"), Some(2.5));
        assert_eq!(leading_float(".5"), Some(0.5));
        assert_eq!(leading_float("5."), Some(5.0));
        assert_eq!(leading_float("1e3x"), Some(1000.0));
        assert_eq!(leading_float("1e"), Some(1.0));
        assert_eq!(leading_float("."), None);
        assert_eq!(leading_float("abc"), None);
    }

    #[test]
    fn live_values_compare_as_numbers_and_text() {
        struct Live;
        impl Resolver for Live {
            fn first(&self, _: VarId) -> Option<Val<'_>> {
                Some(Val::Int(12))
            }
            fn any(&self, _: VarId, f: &mut dyn FnMut(Val<'_>) -> bool) -> bool {
                f(Val::Int(12))
            }
        }
        let r = Requirement::parse("RUNNING_VMS > 10 & RUNNING_VMS = \"1?\"").unwrap();
        assert!(r.eval(&Live));
        assert!(Requirement::parse("X @> 12.0").unwrap().eval(&Live));
        assert_eq!(Rank::parse("-X").unwrap().eval(&Live), -12.0);
    }
}
