//! CEL in playbooks: expressions compiled once at load within bounds (size, nesting,
//! operators, tree depth), `${{ … }}` interpolation templates, and evaluation over the
//! variables a playbook sees (`event`, `vars`, `steps`, `env`, and `value` in checks).
//! Evaluation never panics the caller: a panic inside `cel` becomes an error.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use cel::{Context, Env, Program, Value};

/// Longest expression accepted, in bytes.
pub const MAX_EXPR_BYTES: usize = 4096;
/// Deepest nesting of brackets accepted (the CEL parser recurses deeply per level).
pub const MAX_EXPR_NESTING: usize = 8;
/// Most operator tokens accepted.
pub const MAX_EXPR_OPERATORS: usize = 200;
/// Deepest expression tree accepted (evaluation recurses once per level).
pub const MAX_EXPR_DEPTH: usize = 32;
/// Longest string an interpolation produces; beyond it the rendering fails rather than
/// handing a command or URL a truncated value.
pub const MAX_RENDERED_BYTES: usize = 64 << 10;

/// The shared CEL environment: the standard library plus the string extensions (`split`,
/// `trim`, …) that parsing command output needs.
fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        // Registering a standard extension on a fresh environment cannot conflict; should it
        // ever, expressions using it fail to compile with a clear message.
        let _ = env.add_extension(cel::extensions::strings);
        Arc::new(env)
    })
    .clone()
}

/// A compiled CEL expression and its source.
#[derive(Clone)]
pub struct Expr {
    source: Arc<str>,
    program: Arc<Program>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

impl Expr {
    /// Compiles `source` within the bounds above; the error says which bound or what syntax.
    /// Call it on a thread with a generous stack (the loader does).
    pub fn compile(source: &str) -> Result<Expr, String> {
        if source.trim().is_empty() {
            return Err("empty expression".into());
        }
        if source.len() > MAX_EXPR_BYTES {
            return Err(format!(
                "expression is {} bytes long; at most {MAX_EXPR_BYTES} are allowed",
                source.len()
            ));
        }
        let (nesting, ops) = shape(source);
        if nesting > MAX_EXPR_NESTING {
            return Err(format!(
                "expression nests brackets {nesting} deep; at most {MAX_EXPR_NESTING} are allowed"
            ));
        }
        if ops > MAX_EXPR_OPERATORS {
            return Err(format!(
                "expression has {ops} operators; at most {MAX_EXPR_OPERATORS} are allowed"
            ));
        }
        let env = env();
        let program = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            env.compile(source)
                .map_err(|e| one_line_error(&e.to_string()))
        }))
        .map_err(|_| "the CEL compiler failed on this expression".to_string())??;
        let depth = depth(program.expression());
        if depth > MAX_EXPR_DEPTH {
            return Err(format!(
                "expression is {depth} levels deep; at most {MAX_EXPR_DEPTH} are allowed"
            ));
        }
        Ok(Expr {
            source: source.into(),
            program: Arc::new(program),
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The variables the expression reads (identifiers at the root of member chains and
    /// bare identifiers, comprehension variables included).
    pub fn identifiers(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(self.program.expression(), &mut |e| {
            if let cel::common::ast::Expr::Ident(name) = &e.expr
                && !out.contains(name)
            {
                out.push(name.clone());
            }
        });
        out
    }

    /// The fields read directly on variable `root` (`steps.df` → `df`).
    pub fn fields_of(&self, root: &str) -> Vec<String> {
        let mut out = Vec::new();
        walk(self.program.expression(), &mut |e| {
            if let cel::common::ast::Expr::Select(sel) = &e.expr
                && matches!(&sel.operand.expr, cel::common::ast::Expr::Ident(n) if n == root)
                && !out.contains(&sel.field)
            {
                out.push(sel.field.clone());
            }
        });
        out
    }

    /// Evaluates over `scope`.
    pub fn eval(&self, scope: &Scope) -> Result<Value, String> {
        self.eval_in(&scope.context())
    }

    /// Evaluates in a context built once with [`Scope::context`] (binding the variables
    /// converts them, so several expressions over one event share one context).
    pub fn eval_in(&self, ctx: &Context<'_, '_>) -> Result<Value, String> {
        let program = &self.program;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| program.execute(ctx))) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the CEL evaluator failed".into()),
        }
    }

    /// Evaluates to a boolean; anything else is an error naming the type.
    pub fn eval_bool(&self, scope: &Scope) -> Result<bool, String> {
        self.eval_bool_in(&scope.context())
    }

    /// [`Expr::eval_bool`] in a prepared context.
    pub fn eval_bool_in(&self, ctx: &Context<'_, '_>) -> Result<bool, String> {
        match self.eval_in(ctx)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!("expected a bool, got {}", type_name(&other))),
        }
    }

    /// Evaluates to a string (numbers and booleans are written out; null is an error).
    pub fn eval_string(&self, scope: &Scope) -> Result<String, String> {
        self.eval_string_in(&scope.context())
    }

    /// [`Expr::eval_string`] in a prepared context.
    pub fn eval_string_in(&self, ctx: &Context<'_, '_>) -> Result<String, String> {
        match self.eval_in(ctx)? {
            Value::Null => Err("expected a string, got null".into()),
            v => Ok(display(&v)),
        }
    }
}

/// The parser's message on one line: `ERROR: <input>:1:31: Syntax error: …` and a source
/// excerpt become `column 31: Syntax error: …`.
fn one_line_error(text: &str) -> String {
    let first = text.lines().next().unwrap_or_default();
    let rest = first.strip_prefix("ERROR: <input>:").unwrap_or(first);
    let mut parts = rest.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(line), Some(col), Some(msg))
            if line.parse::<u32>().is_ok() && col.parse::<u32>().is_ok() =>
        {
            if line == "1" {
                format!("column {col}:{msg}")
            } else {
                format!("line {line} of the expression, column {col}:{msg}")
            }
        }
        _ => first.to_string(),
    }
}

/// The variables an expression sees. Values are cheap to clone (`cel` shares them).
#[derive(Clone, Default)]
pub struct Scope {
    vars: Vec<(&'static str, Value)>,
}

impl Scope {
    /// An empty scope.
    pub fn new() -> Scope {
        Scope::default()
    }

    /// Sets (or replaces) a variable.
    pub fn set(&mut self, name: &'static str, value: Value) {
        if let Some(slot) = self.vars.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = value;
        } else {
            self.vars.push((name, value));
        }
    }

    /// Builder form of [`Scope::set`].
    pub fn with(mut self, name: &'static str, value: Value) -> Scope {
        self.set(name, value);
        self
    }

    /// A CEL context with these variables bound.
    pub fn context(&self) -> Context<'static, 'static> {
        let mut ctx = Context::with_env(env());
        for (name, value) in &self.vars {
            ctx.add_variable_from_value(*name, value.clone());
        }
        ctx
    }
}

/// A JSON value as a CEL value (objects become maps with string keys).
pub fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::UInt(u)
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => {
            Value::List(Arc::new(items.iter().map(from_json).collect()))
        }
        serde_json::Value::Object(map) => {
            let m: std::collections::HashMap<String, Value> =
                map.iter().map(|(k, v)| (k.clone(), from_json(v))).collect();
            Value::from(m)
        }
    }
}

/// A map of strings as a CEL map.
pub fn from_strings(map: &BTreeMap<String, String>) -> Value {
    let m: std::collections::HashMap<String, Value> = map
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    Value::from(m)
}

/// A CEL value as JSON (bytes as lossy text, durations and timestamps as strings).
pub fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::UInt(u) => J::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::String(s) => J::String(s.to_string()),
        Value::Bytes(b) => J::String(String::from_utf8_lossy(b).into_owned()),
        Value::List(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m.map.iter() {
                let key = match Value::from(k) {
                    Value::String(s) => s.to_string(),
                    other => display(&other),
                };
                out.insert(key, to_json(v));
            }
            J::Object(out)
        }
        other => J::String(format!("{other:?}")),
    }
}

/// How a value is written into an interpolated string.
pub fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        other => to_json(other).to_string(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::List(_) => "list",
        Value::Map(_) => "map",
        Value::Int(_) => "int",
        Value::UInt(_) => "uint",
        Value::Float(_) => "double",
        Value::String(_) => "string",
        Value::Bytes(_) => "bytes",
        Value::Bool(_) => "bool",
        Value::Null => "null",
        _ => "another type",
    }
}

/// A string with `${{ CEL }}` parts, compiled at load.
#[derive(Clone, Debug)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug)]
enum Part {
    Text(String),
    Expr(Expr),
}

impl Template {
    /// Parses `text`; an unclosed `${{` or a bad expression is an error.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 3..];
            let Some(end) = after.find("}}") else {
                return Err(format!("`${{{{` without a closing `}}}}` in {text:?}"));
            };
            let source = after[..end].trim();
            let expr =
                Expr::compile(source).map_err(|e| format!("in `${{{{ {source} }}}}`: {e}"))?;
            parts.push(Part::Expr(expr));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// A template with no expression.
    pub fn literal(text: &str) -> Template {
        Template {
            parts: vec![Part::Text(text.to_string())],
        }
    }

    /// The expressions it holds.
    pub fn exprs(&self) -> impl Iterator<Item = &Expr> {
        self.parts.iter().filter_map(|p| match p {
            Part::Expr(e) => Some(e),
            Part::Text(_) => None,
        })
    }

    /// Whether it holds an expression.
    pub fn is_dynamic(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Expr(_)))
    }

    /// Renders over `scope`.
    pub fn render(&self, scope: &Scope) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Expr(e) => {
                    let v = e
                        .eval(scope)
                        .map_err(|err| format!("{}: {err}", e.source()))?;
                    out.push_str(&display(&v));
                }
            }
            if out.len() > MAX_RENDERED_BYTES {
                return Err(format!(
                    "the interpolated value exceeds {MAX_RENDERED_BYTES} bytes"
                ));
            }
        }
        Ok(out)
    }
}

/// Nesting and operator count of an expression as the CEL lexer reads it (string literals
/// and comments do not count; a simplified reading that errs on the side of counting).
fn shape(expr: &str) -> (usize, usize) {
    let b = expr.as_bytes();
    let (mut i, mut depth, mut nesting, mut ops) = (0usize, 0usize, 0usize, 0usize);
    while let Some(&c) = b.get(i) {
        match c {
            b'"' | b'\'' => {
                // Skip to the matching quote, honouring backslash escapes.
                let mut j = i + 1;
                while let Some(&d) = b.get(j) {
                    if d == b'\\' {
                        j += 2;
                        continue;
                    }
                    if d == c {
                        break;
                    }
                    j += 1;
                }
                i = j + 1;
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while b.get(i).is_some_and(|&d| d != b'\n') {
                    i += 1;
                }
                continue;
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                nesting = nesting.max(depth);
                if c == b'[' {
                    ops += 1;
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'<' | b'>' | b'=' | b'&' | b'|' | b'+' | b'-' | b'*' | b'/' | b'%' | b'?' | b'.' => {
                ops += 1
            }
            _ => {}
        }
        i += 1;
    }
    (nesting, ops)
}

/// Calls `f` on every node of the tree, without recursion.
fn walk(root: &cel::IdedExpr, f: &mut dyn FnMut(&cel::IdedExpr)) {
    use cel::common::ast::{EntryExpr, Expr as E};
    let mut stack = vec![root];
    while let Some(e) = stack.pop() {
        f(e);
        match &e.expr {
            E::Call(c) => {
                stack.extend(c.target.iter().map(|t| &**t));
                stack.extend(c.args.iter());
            }
            E::Comprehension(c) => {
                stack.extend([
                    &c.iter_range,
                    &c.accu_init,
                    &c.loop_cond,
                    &c.loop_step,
                    &c.result,
                ]);
            }
            E::List(l) => stack.extend(l.elements.iter()),
            E::Map(m) => {
                for entry in &m.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(me) => stack.extend([&me.key, &me.value]),
                        EntryExpr::StructField(sf) => stack.push(&sf.value),
                    }
                }
            }
            E::Struct(st) => {
                for entry in &st.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(me) => stack.extend([&me.key, &me.value]),
                        EntryExpr::StructField(sf) => stack.push(&sf.value),
                    }
                }
            }
            E::Select(sel) => stack.push(&sel.operand),
            E::Unspecified | E::Ident(_) | E::Literal(_) => {}
        }
    }
}

/// Depth of an expression tree, walked without recursion.
fn depth(root: &cel::IdedExpr) -> usize {
    use cel::common::ast::{EntryExpr, Expr as E};
    let mut max = 0;
    let mut stack = vec![(root, 1usize)];
    while let Some((e, d)) = stack.pop() {
        max = max.max(d);
        match &e.expr {
            E::Call(c) => {
                stack.extend(c.target.iter().map(|t| (&**t, d + 1)));
                stack.extend(c.args.iter().map(|a| (a, d + 1)));
            }
            E::Comprehension(c) => {
                for x in [
                    &c.iter_range,
                    &c.accu_init,
                    &c.loop_cond,
                    &c.loop_step,
                    &c.result,
                ] {
                    stack.push((x, d + 1));
                }
            }
            E::List(l) => stack.extend(l.elements.iter().map(|x| (x, d + 1))),
            E::Map(m) => {
                for entry in &m.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(me) => {
                            stack.push((&me.key, d + 1));
                            stack.push((&me.value, d + 1));
                        }
                        EntryExpr::StructField(f) => stack.push((&f.value, d + 1)),
                    }
                }
            }
            E::Struct(st) => {
                for entry in &st.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(me) => {
                            stack.push((&me.key, d + 1));
                            stack.push((&me.value, d + 1));
                        }
                        EntryExpr::StructField(f) => stack.push((&f.value, d + 1)),
                    }
                }
            }
            E::Select(sel) => stack.push((&sel.operand, d + 1)),
            E::Unspecified | E::Ident(_) | E::Literal(_) => {}
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        let event = serde_json::json!({
            "type": "io.opsloop.alert.firing",
            "data": {"labels": {"alertname": "DiskFull", "instance": "db-1"}, "value": 97}
        });
        let mut env = BTreeMap::new();
        env.insert("DIR".to_string(), "/srv/x".to_string());
        Scope::new()
            .with("event", from_json(&event))
            .with("env", from_strings(&env))
    }

    #[test]
    fn conditions_evaluate_over_the_event() {
        let e = Expr::compile(r#"event.data.labels.alertname == "DiskFull""#).unwrap();
        assert!(e.eval_bool(&scope()).unwrap());
        let e = Expr::compile("event.data.value > 95").unwrap();
        assert!(e.eval_bool(&scope()).unwrap());
        let e = Expr::compile("event.data.labels.instance").unwrap();
        assert!(e.eval_bool(&scope()).is_err());
        assert_eq!(e.eval_string(&scope()).unwrap(), "db-1");
    }

    #[test]
    fn templates_interpolate_cel() {
        let t = Template::parse("df -P ${{ env.DIR }}/${{ event.data.labels.instance }}").unwrap();
        assert!(t.is_dynamic());
        assert_eq!(t.render(&scope()).unwrap(), "df -P /srv/x/db-1");
        let t = Template::parse("n=${{event.data.value + 1}}").unwrap();
        assert_eq!(t.render(&scope()).unwrap(), "n=98");
        let t = Template::parse("plain").unwrap();
        assert!(!t.is_dynamic());
        assert!(Template::parse("x ${{ event.data").is_err());
        assert!(Template::parse("${{ event.data. }}").is_err());
        let missing = Template::parse("${{ event.data.nope }}").unwrap();
        assert!(missing.render(&scope()).is_err());
    }

    #[test]
    fn string_extensions_parse_command_output() {
        let out = "Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/sda1 100 97 3 97% /srv\n";
        let s = Scope::new().with("out", Value::from(out));
        let e = Expr::compile(
            r#"int(out.split("\n")[1].split(" ").filter(x, x != "")[4].replace("%", "")) > 95"#,
        )
        .unwrap();
        assert!(e.eval_bool(&s).unwrap());
    }

    #[test]
    fn bounds_are_enforced_at_compile() {
        assert!(Expr::compile(&"a".repeat(MAX_EXPR_BYTES + 1)).is_err());
        assert!(Expr::compile(&format!("{}1{}", "(".repeat(20), ")".repeat(20))).is_err());
        assert!(Expr::compile(&vec!["1"; 300].join(" + ")).is_err());
        assert!(Expr::compile("").is_err());
        let e = Expr::compile("a ==").err().unwrap_or_default();
        assert!(e.starts_with("column 5: Syntax error"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn json_round_trips() {
        let j = serde_json::json!({"a": [1, "x", true, null], "b": {"c": 1.5}});
        assert_eq!(to_json(&from_json(&j)), j);
    }
}
