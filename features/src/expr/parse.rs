//! Tokenizer and recursive-descent parser of derived-feature expressions.

use super::{err, BinOp, Expr, ExprError, Func, FUNCS, MAX_DEPTH, MAX_EXPRESSION_CHARS};

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Text(String),
    Ident(String),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
}

fn tokenize(src: &str) -> Result<Vec<(Token, usize)>, ExprError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let text: String = chars[start..i].iter().collect();
            match text.parse::<f64>() {
                Ok(x) if x.is_finite() => out.push((Token::Number(x), column)),
                _ => return err(column, format!("`{text}` is not a number")),
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((Token::Ident(chars[start..i].iter().collect()), column));
        } else if c == '\'' || c == '"' {
            let start = i;
            i += 1;
            let mut text = String::new();
            while i < chars.len() && chars[i] != c {
                text.push(chars[i]);
                i += 1;
            }
            if i == chars.len() {
                return err(start + 1, "unterminated text literal");
            }
            i += 1;
            out.push((Token::Text(text), column));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = match two.as_str() {
                "<=" => Some("<="),
                ">=" => Some(">="),
                "==" => Some("=="),
                "!=" => Some("!="),
                _ => None,
            };
            if let Some(op) = op {
                out.push((Token::Op(op), column));
                i += 2;
                continue;
            }
            let token = match c {
                '+' => Token::Op("+"),
                '-' => Token::Op("-"),
                '*' => Token::Op("*"),
                '/' => Token::Op("/"),
                '^' => Token::Op("^"),
                '<' => Token::Op("<"),
                '>' => Token::Op(">"),
                '(' => Token::LParen,
                ')' => Token::RParen,
                ',' => Token::Comma,
                _ => return err(column, format!("unexpected character `{c}`")),
            };
            out.push((token, column));
            i += 1;
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(Token, usize)>,
    pos: usize,
    end_column: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(t, _)| t)
    }

    fn column(&self) -> usize {
        self.tokens
            .get(self.pos)
            .map_or(self.end_column, |(_, c)| *c)
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Some(Token::Op(o)) if *o == op)
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Ident(w)) if w == word)
    }

    fn enter(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err(
                self.column(),
                format!("nested deeper than {MAX_DEPTH} levels"),
            );
        }
        Ok(())
    }

    fn binary(op: BinOp, left: Expr, right: Expr, column: usize) -> Expr {
        Expr::Binary {
            op,
            left: Box::new(left),
            right: Box::new(right),
            column,
        }
    }

    fn or(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.and()?;
        while self.is_word("or") {
            let column = self.column();
            self.pos += 1;
            left = Self::binary(BinOp::Or, left, self.and()?, column);
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.not()?;
        while self.is_word("and") {
            let column = self.column();
            self.pos += 1;
            left = Self::binary(BinOp::And, left, self.not()?, column);
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, ExprError> {
        if self.is_word("not") {
            let column = self.column();
            self.pos += 1;
            self.enter()?;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner), column));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, ExprError> {
        let left = self.additive()?;
        let op = match self.peek() {
            Some(Token::Op("<")) => BinOp::Lt,
            Some(Token::Op("<=")) => BinOp::Le,
            Some(Token::Op(">")) => BinOp::Gt,
            Some(Token::Op(">=")) => BinOp::Ge,
            Some(Token::Op("==")) => BinOp::Eq,
            Some(Token::Op("!=")) => BinOp::Ne,
            _ => return Ok(left),
        };
        let column = self.column();
        self.pos += 1;
        let right = self.additive()?;
        if matches!(
            self.peek(),
            Some(Token::Op("<" | "<=" | ">" | ">=" | "==" | "!="))
        ) {
            return err(
                self.column(),
                "comparisons do not chain: write `a < b and b < c`",
            );
        }
        Ok(Self::binary(op, left, right, column))
    }

    fn additive(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.multiplicative()?;
        loop {
            let op = if self.is_op("+") {
                BinOp::Add
            } else if self.is_op("-") {
                BinOp::Sub
            } else {
                return Ok(left);
            };
            let column = self.column();
            self.pos += 1;
            left = Self::binary(op, left, self.multiplicative()?, column);
        }
    }

    fn multiplicative(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.unary()?;
        loop {
            let op = if self.is_op("*") {
                BinOp::Mul
            } else if self.is_op("/") {
                BinOp::Div
            } else {
                return Ok(left);
            };
            let column = self.column();
            self.pos += 1;
            left = Self::binary(op, left, self.unary()?, column);
        }
    }

    fn unary(&mut self) -> Result<Expr, ExprError> {
        if self.is_op("-") {
            let column = self.column();
            self.pos += 1;
            self.enter()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Neg(Box::new(inner), column));
        }
        self.power()
    }

    fn power(&mut self) -> Result<Expr, ExprError> {
        let base = self.primary()?;
        if self.is_op("^") {
            let column = self.column();
            self.pos += 1;
            self.enter()?;
            // Right-associative and binding tighter than unary minus on
            // its left: -2^2 is -(2^2), 2^3^2 is 2^(3^2).
            let exponent = self.unary()?;
            self.depth -= 1;
            return Ok(Self::binary(BinOp::Pow, base, exponent, column));
        }
        Ok(base)
    }

    fn primary(&mut self) -> Result<Expr, ExprError> {
        let column = self.column();
        let Some((token, _)) = self.tokens.get(self.pos).cloned() else {
            return err(column, "expected a value, found the end of the expression");
        };
        self.pos += 1;
        match token {
            Token::Number(x) => Ok(Expr::Number(x)),
            Token::Text(t) => Ok(Expr::Text(t)),
            Token::LParen => {
                self.enter()?;
                let inner = self.or()?;
                self.depth -= 1;
                self.expect_rparen(column)?;
                Ok(inner)
            }
            Token::Ident(word) => match word.as_str() {
                "true" => Ok(Expr::Bool(true)),
                "false" => Ok(Expr::Bool(false)),
                "null" => err(
                    column,
                    "write `is_null(x)` or `coalesce(x, default)` instead of `null`",
                ),
                "and" | "or" | "not" => err(column, format!("expected a value, found `{word}`")),
                _ if self.peek() == Some(&Token::LParen) => self.call(&word, column),
                _ => Ok(Expr::Feature { name: word, column }),
            },
            Token::RParen => err(column, "unexpected `)`"),
            Token::Comma => err(column, "unexpected `,`"),
            Token::Op(op) => err(column, format!("expected a value, found `{op}`")),
        }
    }

    fn expect_rparen(&mut self, open: usize) -> Result<(), ExprError> {
        if self.peek() == Some(&Token::RParen) {
            self.pos += 1;
            Ok(())
        } else {
            err(
                self.column(),
                format!("expected `)` to close the `(` at column {open}"),
            )
        }
    }

    fn call(&mut self, name: &str, column: usize) -> Result<Expr, ExprError> {
        let Some(func) = FUNCS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f) else {
            let known: Vec<&str> = FUNCS.iter().map(|(n, _)| *n).collect();
            return err(
                column,
                format!("unknown function `{name}` (known: {})", known.join(", ")),
            );
        };
        let open = self.column();
        self.pos += 1; // (
        self.enter()?;
        let mut args = Vec::new();
        if self.peek() != Some(&Token::RParen) {
            loop {
                args.push(self.or()?);
                if self.peek() == Some(&Token::Comma) {
                    self.pos += 1;
                } else {
                    break;
                }
            }
        }
        self.depth -= 1;
        self.expect_rparen(open)?;
        let (lo, hi) = arity(func);
        if args.len() < lo || args.len() > hi {
            let want = match (lo, hi) {
                (lo, hi) if lo == hi => format!("{lo}"),
                (lo, usize::MAX) => format!("at least {lo}"),
                (lo, hi) => format!("{lo} to {hi}"),
            };
            return err(
                column,
                format!("`{name}` takes {want} arguments, got {}", args.len()),
            );
        }
        Ok(Expr::Call { func, args, column })
    }
}

fn arity(func: Func) -> (usize, usize) {
    match func {
        Func::Ln | Func::Log10 | Func::Exp | Func::Sqrt | Func::Abs | Func::IsNull => (1, 1),
        Func::Min | Func::Max | Func::Coalesce => (2, usize::MAX),
        Func::Clamp | Func::If => (3, 3),
    }
}

/// Parses `source` (no type check: see [`check`]).
pub fn parse(source: &str) -> Result<Expr, ExprError> {
    let chars = source.chars().count();
    if chars > MAX_EXPRESSION_CHARS {
        return err(
            MAX_EXPRESSION_CHARS + 1,
            format!("longer than {MAX_EXPRESSION_CHARS} characters"),
        );
    }
    let tokens = tokenize(source)?;
    if tokens.is_empty() {
        return err(1, "the expression is empty");
    }
    let mut p = Parser {
        tokens,
        pos: 0,
        end_column: chars + 1,
        depth: 0,
    };
    let expr = p.or()?;
    if p.pos < p.tokens.len() {
        return err(
            p.column(),
            "expected an operator or the end of the expression",
        );
    }
    Ok(expr)
}
