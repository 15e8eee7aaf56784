//! The configuration template engine: renders a Pip.Services config template against a parameter
//! map, as text, before the YAML is parsed.
//!
//! This module owns the Pip.Services "MustacheTemplate" dialect: `{{VAR}}` inserts a value verbatim,
//! `{{{VAR}}}` inserts it escaped as the body of a JSON string, `{{#if VAR}}`, `{{#unless VAR}}`,
//! `{{#VAR}}`, `{{^VAR}}` (and `{{^if VAR}}`) keep or drop a block, and `{{! … }}` is a comment. A
//! variable is *defined* when it is present and not the empty string, so `false` or `0` count as
//! defined. Names are case-insensitive.
//!
//! It is hand-written because no crate implements this dialect: the handlebars and mustache crates
//! HTML-escape `{{X}}`, treat `{{{X}}}` as raw output, and decide differently from Pip whether
//! `false`, `0` or `""` is defined. Only `{{` starts a tag, so YAML flow maps such as
//! `{ port: 8080 }` pass through untouched.

use super::errors::ApplicationError;
use indexmap::IndexMap;

/// Renders `template` with `params`; names are looked up case-insensitively.
///
/// The whole template is trimmed first. Errors are `Misconfiguration` errors whose message and
/// `line`/`column` details give the 1-based position of the offending tag in `template`.
#[allow(clippy::result_large_err)] // the crate-wide error type; built once, on the failure path
pub fn render(template: &str, params: &IndexMap<String, String>) -> Result<String, ApplicationError> {
    let start = template.len() - template.trim_start().len();
    let end = start + template.trim().len();
    let rendered = tokenize(template, start, end).and_then(|t| evaluate(template, &t, params));
    rendered.map_err(|Failure { code, message, at }| {
        let (line, column) = line_col(template, at);
        ApplicationError::config(code, message).with_details("line", line).with_details("column", column)
    })
}

/// A template error before it becomes an [`ApplicationError`]: code, message and byte offset.
struct Failure {
    code: &'static str,
    message: String,
    at: usize,
}

/// What a token is.
enum Kind<'a> {
    /// Literal text.
    Text,
    /// A variable: its name, and whether to escape it as JSON (`{{{name}}}`).
    Var(&'a str, bool),
    /// A section opener: the word that closes it, the variable tested, and whether the block is
    /// kept when that variable is defined (`true`) or when it is not (`false`).
    Open(&'a str, &'a str, bool),
    /// `{{/word}}`.
    Close(&'a str),
}

/// A token: its kind, its byte offset in the template and its text (the literal text or the tag).
struct Token<'a> {
    kind: Kind<'a>,
    at: usize,
    text: &'a str,
}

/// Splits `src[from..to]` into tokens; comments are dropped here.
fn tokenize(src: &str, from: usize, to: usize) -> Result<Vec<Token<'_>>, Failure> {
    let mut tokens = Vec::new();
    let mut pos = from;
    while pos < to {
        let at = src[pos..to].find("{{").map_or(to, |rel| pos + rel);
        if at > pos {
            tokens.push(Token { kind: Kind::Text, at: pos, text: &src[pos..at] });
        }
        if at == to {
            break;
        }
        let triple = src[at..to].starts_with("{{{");
        let (open, close) = if triple { (3, "}}}") } else { (2, "}}") };
        let Some(len) = src[at + open..to].find(close) else {
            let message = format!("tag at {} is never closed with '{close}'", place(src, at));
            return Err(fail("TEMPLATE_UNTERMINATED_TAG", at, message));
        };
        pos = at + open + len + close.len();
        let text = &src[at..pos];
        let body = src[at + open..at + open + len].trim();
        let kind = classify(body, triple)
            .map_err(|(code, why)| fail(code, at, format!("{why}: '{text}' at {}", place(src, at))))?;
        tokens.extend(kind.map(|kind| Token { kind, at, text }));
    }
    Ok(tokens)
}

/// A tag error before its position is known: the code and the reason.
type TagError = (&'static str, &'static str);

const UNSUPPORTED: &str = "TEMPLATE_UNSUPPORTED_TAG";

/// Reads the trimmed inside of a tag; `Ok(None)` for a comment.
fn classify(body: &str, triple: bool) -> Result<Option<Kind<'_>>, TagError> {
    if body.is_empty() {
        return Err(("TEMPLATE_EMPTY_TAG", "empty tag"));
    }
    if triple {
        return Ok(Some(Kind::Var(name(body)?, true)));
    }
    let rest = body.get(1..).unwrap_or_default().trim_start();
    Ok(Some(match body.as_bytes()[0] {
        b'!' => return Ok(None),
        b'>' => return Err(("PARTIALS_NOT_SUPPORTED", "partials are not supported")),
        b'#' => open(rest, true)?,
        b'^' => open(rest, false)?,
        b'/' => Kind::Close(name(rest)?),
        _ if body.eq_ignore_ascii_case("else") => {
            return Err((UNSUPPORTED, "'else' is not supported, use '#unless'"));
        }
        _ => Kind::Var(name(body)?, false),
    }))
}

/// Reads a section opener after its `#` (`want == true`) or `^` (`want == false`).
fn open(rest: &str, want: bool) -> Result<Kind<'_>, TagError> {
    let (keyword, tail) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    match keyword.to_ascii_lowercase().as_str() {
        "if" => Ok(Kind::Open("if", name(tail.trim())?, want)),
        "unless" if want => Ok(Kind::Open("unless", name(tail.trim())?, false)),
        "unless" => Err((UNSUPPORTED, "'^unless' is not supported")),
        _ => name(rest).map(|name| Kind::Open(name, name, want)),
    }
}

/// Checks a variable name: letters, digits, `_`, `.` and `-` (a dot is a plain character).
fn name(s: &str) -> Result<&str, TagError> {
    let valid = |c: char| c.is_alphanumeric() || matches!(c, '_' | '.' | '-');
    match s {
        "" => Err((UNSUPPORTED, "missing variable name")),
        _ if s.chars().all(valid) => Ok(s),
        _ => Err((UNSUPPORTED, "unsupported tag")),
    }
}

/// An open section while evaluating: its closing word, its opener and whether its block is kept.
struct Frame<'a> {
    closer: &'a str,
    opener: &'a Token<'a>,
    active: bool,
}

/// Walks the tokens with a stack of open sections, writing the kept parts.
fn evaluate(src: &str, tokens: &[Token<'_>], params: &IndexMap<String, String>) -> Result<String, Failure> {
    let mut out = String::new();
    let mut stack: Vec<Frame<'_>> = Vec::new();
    for token in tokens {
        let active = stack.last().is_none_or(|f| f.active);
        match token.kind {
            Kind::Text if active => out.push_str(token.text),
            Kind::Var(name, escape) if active => match lookup(params, name) {
                Some(value) if escape => escape_json(value, &mut out),
                Some(value) => out.push_str(value),
                None => {}
            },
            Kind::Text | Kind::Var(..) => {}
            Kind::Open(closer, name, want) => {
                let active = active && lookup(params, name).is_some() == want;
                stack.push(Frame { closer, opener: token, active });
            }
            Kind::Close(word) => match stack.pop() {
                Some(frame) if frame.closer.eq_ignore_ascii_case(word) => {}
                found => {
                    let what = found.map_or("closes no open section".to_string(), |f| {
                        format!("does not close '{}' opened at {}", f.opener.text, place(src, f.opener.at))
                    });
                    let message = format!("'{}' at {} {what}", token.text, place(src, token.at));
                    return Err(fail("TEMPLATE_MISMATCHED_CLOSE", token.at, message));
                }
            },
        }
    }
    match stack.pop() {
        Some(Frame { opener, .. }) => {
            let message = format!("section '{}' opened at {} is never closed", opener.text, place(src, opener.at));
            Err(fail("TEMPLATE_UNCLOSED_SECTION", opener.at, message))
        }
        None => Ok(out),
    }
}

/// The value of a defined variable (present and not empty); an exact match wins over other cases.
fn lookup<'p>(params: &'p IndexMap<String, String>, name: &str) -> Option<&'p str> {
    let lower = name.to_lowercase();
    let mut matching = params.iter().filter(|(k, _)| k.to_lowercase() == lower);
    params.get(name).or_else(|| matching.next().map(|(_, v)| v)).map(String::as_str).filter(|v| !v.is_empty())
}

/// Appends `value` escaped as the body of a JSON string (no surrounding quotes).
fn escape_json(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < ' ' => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
}

/// A failure whose message is prefixed with `Config template: `.
fn fail(code: &'static str, at: usize, message: String) -> Failure {
    Failure { code, message: format!("Config template: {message}"), at }
}

/// The 1-based line and column (in characters) of byte offset `at` of `src`.
fn line_col(src: &str, at: usize) -> (usize, usize) {
    let before = &src[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// `line L, column C` of byte offset `at` of `src`.
fn place(src: &str, at: usize) -> String {
    let (line, column) = line_col(src, at);
    format!("line {line}, column {column}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toolkit::errors::ErrorCategory;

    fn params(pairs: &[(&str, &str)]) -> IndexMap<String, String> {
        pairs.iter().map(|&(k, v)| (k.into(), v.into())).collect()
    }

    fn ok(template: &str, pairs: &[(&str, &str)]) -> String {
        render(template, &params(pairs)).expect("template renders")
    }

    /// The code, line and column of a failing render.
    fn err(template: &str) -> (String, u64, u64) {
        let e = render(template, &params(&[("X", "1")])).expect_err("template fails");
        assert_eq!(e.category, ErrorCategory::Misconfiguration);
        let line = e.details["line"].as_u64().unwrap();
        let column = e.details["column"].as_u64().unwrap();
        let place = format!("line {line}, column {column}");
        assert!(e.message.contains(&place), "{}", e.message);
        (e.code, line, column)
    }

    #[test]
    fn variables() {
        assert_eq!(ok("Hello {{USER}}!", &[("USER", "<b>&</b>")]), "Hello <b>&</b>!");
        assert_eq!(ok("a{{MISSING}}b", &[]), "ab");
        assert_eq!(ok("a{{EMPTY}}b", &[("EMPTY", "")]), "ab");
        assert_eq!(ok("port: {{http_port}}", &[("HTTP_PORT", "80")]), "port: 80");
        assert_eq!(ok("{{ USER }}/{{USER}}", &[("user", "u")]), "u/u");
        assert_eq!(ok("{{a.b-c}}", &[("A.B-C", "dotted")]), "dotted");
        assert_eq!(ok("{{x}}{{X}}", &[("x", "lo"), ("X", "up")]), "loup");
        assert_eq!(ok("{{É}}", &[("é", "accent")]), "accent");
    }

    #[test]
    fn triple_braces_escape_as_json_string_body() {
        let value = "say \"hi\"\\\n\tend\r\u{8}\u{c}\u{1}";
        assert_eq!(ok("v: \"{{{ V }}}\"", &[("V", value)]), "v: \"say \\\"hi\\\"\\\\\\n\\tend\\r\\b\\f\\u0001\"");
        assert_eq!(ok("uri: {{{URI}}}", &[("URI", "mongodb://m:27017/db")]), "uri: mongodb://m:27017/db");
        assert_eq!(ok("[{{{NONE}}}]", &[]), "[]");
    }

    #[test]
    fn sections() {
        let on = &[("X", "1")];
        assert_eq!(ok("a{{#if X}}b{{/if}}c", on), "abc");
        assert_eq!(ok("a{{#if Y}}b{{/if}}c", on), "ac");
        assert_eq!(ok("a{{#unless X}}b{{/unless}}c", on), "ac");
        assert_eq!(ok("a{{#unless Y}}b{{/unless}}c", on), "abc");
        assert_eq!(ok("a{{#X}}b{{/X}}c{{#Y}}d{{/Y}}", on), "abc");
        assert_eq!(ok("a{{^X}}b{{/X}}c{{^Y}}d{{/y}}", on), "acd");
        assert_eq!(ok("a{{^if X}}b{{/if}}c{{^if Y}}d{{/if}}", on), "acd");
        assert_eq!(ok("{{#if  x }}kept{{/ if }}{{#IF Y}}no{{/IF}}", on), "kept");
        assert_eq!(ok("{{#if E}}no{{/if}}", &[("E", "")]), "");
        assert_eq!(ok("{{#if M}}yes{{/if}}", &[("M", "false")]), "yes");
        assert_eq!(ok("{{#if M}}yes{{/if}}", &[("M", "0")]), "yes");
    }

    #[test]
    fn nested_sections() {
        let t = "{{#if A}}a{{#unless B}}b{{#C}}c{{/C}}{{/unless}}{{^if C}}!{{/if}}{{/if}}.";
        assert_eq!(ok(t, &[("A", "1"), ("C", "1")]), "abc.");
        assert_eq!(ok(t, &[("A", "1")]), "ab!.");
        assert_eq!(ok(t, &[("A", "1"), ("B", "1")]), "a!.");
        assert_eq!(ok(t, &[("B", "1"), ("C", "1")]), ".");
    }

    #[test]
    fn comments_are_dropped() {
        assert_eq!(ok("a{{! note }}b", &[]), "ab");
        assert_eq!(ok("a{{!\n multi\n line {{X}\n}}b", &[]), "ab");
    }

    #[test]
    fn whole_template_is_trimmed_and_braces_are_literal() {
        assert_eq!(ok("\n  {{X}}  \n", &[("X", "x")]), "x");
        assert_eq!(ok("   \n\t ", &[]), "");
        let yaml = "connection: { protocol: http, port: 8080 }\nmap: {a: {b: 1}}\nx: } {";
        assert_eq!(ok(yaml, &[]), yaml);
    }

    #[test]
    fn pip_config_idioms() {
        let t = "{{#if MONGO_ENABLED}}
- descriptor: \"service-sessions:persistence:mongodb:default:1.0\"
  connection:
    uri: {{{MONGO_SERVICE_URI}}}
{{/if}}
{{#unless MONGO_ENABLED}}
- descriptor: \"service-sessions:persistence:memory:default:1.0\"
{{/unless}}";
        let on = [("MONGO_ENABLED", "true"), ("MONGO_SERVICE_URI", "mongodb://db/s")];
        let mongo = ok(t, &on);
        assert_eq!(
            mongo,
            "\n- descriptor: \"service-sessions:persistence:mongodb:default:1.0\"\n  connection:\n    \
             uri: mongodb://db/s\n\n"
        );
        assert_eq!(
            ok(t, &[("MONGO_ENABLED", "")]),
            "\n\n- descriptor: \"service-sessions:persistence:memory:default:1.0\"\n"
        );
        let port = "port: {{HTTP_PORT}}{{#unless HTTP_PORT}}8080{{/unless}}";
        assert_eq!(ok(port, &[("HTTP_PORT", "3000")]), "port: 3000");
        assert_eq!(ok(port, &[]), "port: 8080");
    }

    #[test]
    fn errors_report_code_line_and_column() {
        let cases = [
            ("\n\nab  {{X\n}", "TEMPLATE_UNTERMINATED_TAG", 3, 5),
            ("{{{X}}", "TEMPLATE_UNTERMINATED_TAG", 1, 1),
            ("{{#if X}}\n  {{#unless Y}}\n{{/unless}}", "TEMPLATE_UNCLOSED_SECTION", 1, 1),
            ("a\n {{#if X}}{{#if Y}}{{/if}}", "TEMPLATE_UNCLOSED_SECTION", 2, 2),
            ("{{#if X}}\n{{/unless}}", "TEMPLATE_MISMATCHED_CLOSE", 2, 1),
            ("{{#X}}{{/Y}}", "TEMPLATE_MISMATCHED_CLOSE", 1, 7),
            ("{{#X}}{{/if}}", "TEMPLATE_MISMATCHED_CLOSE", 1, 7),
            ("ok\n\n  {{/if}}", "TEMPLATE_MISMATCHED_CLOSE", 3, 3),
            ("a {{}}", "TEMPLATE_EMPTY_TAG", 1, 3),
            ("a {{  }} {{{ }}}", "TEMPLATE_EMPTY_TAG", 1, 3),
            ("x\n{{> partial}}", "PARTIALS_NOT_SUPPORTED", 2, 1),
            ("{{#if X}}a{{ else }}b{{/if}}", "TEMPLATE_UNSUPPORTED_TAG", 1, 11),
            ("{{#if}}{{/if}}", "TEMPLATE_UNSUPPORTED_TAG", 1, 1),
            ("{{^unless X}}{{/unless}}", "TEMPLATE_UNSUPPORTED_TAG", 1, 1),
            ("é {{&X}}", "TEMPLATE_UNSUPPORTED_TAG", 1, 3),
            ("{{#if Y}}{{X Y}}{{/if}}", "TEMPLATE_UNSUPPORTED_TAG", 1, 10),
        ];
        for (template, code, line, column) in cases {
            assert_eq!(err(template), (code.to_string(), line, column), "{template:?}");
        }
    }

    #[test]
    fn error_messages_name_the_tags() {
        let e = render("{{#if A}}\n{{/unless}}", &params(&[])).unwrap_err();
        assert_eq!(
            e.message,
            "Config template: '{{/unless}}' at line 2, column 1 does not close '{{#if A}}' \
             opened at line 1, column 1"
        );
        let e = render("  x\n{{#unless B}}", &params(&[])).unwrap_err();
        assert_eq!(e.message, "Config template: section '{{#unless B}}' opened at line 2, column 1 is never closed");
        let e = render("{{> p}}", &params(&[])).unwrap_err();
        assert_eq!(e.message, "Config template: partials are not supported: '{{> p}}' at line 1, column 1");
    }
}
