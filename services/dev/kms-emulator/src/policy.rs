//! Key-policy evaluation: the subset of IAM policy language KMS key policies use in
//! practice, evaluated the way AWS does (explicit Deny > Allow > implicit deny).
//!
//! Supported:
//! * `Version` ("2012-10-17" or "2008-10-17", optional), `Id` (ignored),
//!   `Statement` (object or array).
//! * Statement: `Sid`, `Effect` Allow|Deny, `Principal` ("*" or `{"AWS": arn|[arns]}`,
//!   also `Service`), `Action` string|list with `*`/`?` wildcards, case-insensitive
//!   (`kms:*`, `kms:Describe*`), `Resource` "*" or the key ARN (list allowed),
//!   `Condition` with operators `StringEquals`, `StringEqualsIgnoreCase`, `StringLike`,
//!   `StringNotEquals`, `StringNotEqualsIgnoreCase` (each key -> value | [values];
//!   any value matching satisfies it).
//! * A condition on a key absent from the request context fails (for the `Not` operators
//!   too, matching IAM without `...IfExists`). Condition keys are case-insensitive.
//!
//! Principal matching is deliberately permissive: the emulator does not verify SigV4
//! signatures and has no IAM, so every caller is treated as the account root and any
//! `Principal` matches. The security-relevant part — Action + Condition (e.g.
//! `kms:RecipientAttestation:PCR0`) — is evaluated faithfully.
//!
//! Rejected with MalformedPolicyDocumentException (rather than silently misevaluated):
//! `NotAction`, `NotResource`, `NotPrincipal`, unknown condition operators, wrong types.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::KmsError;

/// Most bytes a key policy may have (KMS: 32 KiB).
pub const MAX_POLICY_LEN: usize = 32 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// IAM string condition operators (names as in policy JSON).
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    StringEquals,
    StringEqualsIgnoreCase,
    StringLike,
    StringNotEquals,
    StringNotEqualsIgnoreCase,
}

#[derive(Debug, Clone)]
struct Condition {
    op: Operator,
    key: String,
    values: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    actions: Vec<String>,
    resources: Vec<String>,
    conditions: Vec<Condition>,
}

/// A parsed key policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub statements: Vec<Statement>,
}

/// The request facts conditions are evaluated against (keys lower-cased).
#[derive(Debug, Default, Clone)]
pub struct RequestContext {
    values: BTreeMap<String, String>,
}

impl RequestContext {
    pub fn insert(&mut self, key: &str, value: impl Into<String>) {
        self.values.insert(key.to_ascii_lowercase(), value.into());
    }
    fn get(&self, key: &str) -> Option<&str> {
        self.values.get(&key.to_ascii_lowercase()).map(String::as_str)
    }
}

/// Outcome of evaluating a policy for one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// An explicit Deny statement matched (its Sid, if any).
    ExplicitDeny(Option<String>),
    /// Nothing allowed it.
    ImplicitDeny,
}

fn malformed(msg: impl Into<String>) -> KmsError {
    KmsError::malformed_policy(format!(
        "{}. The emulator supports Effect/Principal/Action/Resource/Condition(StringEquals, StringEqualsIgnoreCase, \
            StringLike, StringNotEquals, StringNotEqualsIgnoreCase)",
        msg.into()
    ))
}

fn strings(v: &Value, what: &str) -> Result<Vec<String>, KmsError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| malformed(format!("{what} must be a string or a list of strings")))
            })
            .collect(),
        _ => Err(malformed(format!("{what} must be a string or a list of strings"))),
    }
}

impl Policy {
    /// Parses and validates a policy document.
    pub fn parse(text: &str) -> Result<Policy, KmsError> {
        if text.len() > MAX_POLICY_LEN {
            return Err(malformed(format!("policy is {} bytes, the KMS limit is {MAX_POLICY_LEN}", text.len())));
        }
        let doc: Value =
            serde_json::from_str(text).map_err(|e| malformed(format!("policy is not valid JSON ({e})")))?;
        let obj = doc.as_object().ok_or_else(|| malformed("policy must be a JSON object"))?;
        if let Some(v) = obj.get("Version") {
            match v.as_str() {
                Some("2012-10-17") | Some("2008-10-17") => {}
                _ => return Err(malformed("Version must be \"2012-10-17\"")),
            }
        }
        let stmts = match obj.get("Statement") {
            Some(Value::Array(a)) => a.iter().collect::<Vec<_>>(),
            Some(v @ Value::Object(_)) => vec![v],
            _ => return Err(malformed("policy has no Statement (object or list)")),
        };
        if stmts.is_empty() {
            return Err(malformed("Statement list is empty"));
        }
        let statements = stmts.into_iter().map(parse_statement).collect::<Result<Vec<_>, _>>()?;
        Ok(Policy { statements })
    }

    /// Evaluates `action` (e.g. "kms:Decrypt") on `key_arn` with `ctx`.
    pub fn evaluate(&self, action: &str, key_arn: &str, ctx: &RequestContext) -> Decision {
        let mut allowed = false;
        for st in &self.statements {
            if !st.applies(action, key_arn, ctx) {
                continue;
            }
            match st.effect {
                Effect::Deny => return Decision::ExplicitDeny(st.sid.clone()),
                Effect::Allow => allowed = true,
            }
        }
        if allowed { Decision::Allow } else { Decision::ImplicitDeny }
    }

    /// Values the policy's Allow statements for `action` accept for condition `key`
    /// (for error messages such as "policy allows PCR0 cd34…").
    pub fn allowed_values(&self, action: &str, key: &str) -> Vec<String> {
        let mut out = Vec::new();
        for st in &self.statements {
            if st.effect != Effect::Allow || !st.matches_action(action) {
                continue;
            }
            for c in &st.conditions {
                if c.key.eq_ignore_ascii_case(key)
                    && matches!(c.op, Operator::StringEquals | Operator::StringEqualsIgnoreCase | Operator::StringLike)
                {
                    for v in &c.values {
                        if !out.contains(v) {
                            out.push(v.clone());
                        }
                    }
                }
            }
        }
        out
    }

    /// Whether some Allow statement for `action` carries a condition on `key`.
    pub fn allows_only_with(&self, action: &str, key: &str) -> bool {
        self.statements.iter().any(|st| {
            st.effect == Effect::Allow
                && st.matches_action(action)
                && st.conditions.iter().any(|c| c.key.eq_ignore_ascii_case(key))
        })
    }
}

fn parse_statement(v: &Value) -> Result<Statement, KmsError> {
    let o = v.as_object().ok_or_else(|| malformed("each Statement must be an object"))?;
    for unsupported in ["NotAction", "NotResource", "NotPrincipal"] {
        if o.contains_key(unsupported) {
            return Err(malformed(format!("{unsupported} is not supported by the kms-emulator")));
        }
    }
    let sid = o.get("Sid").and_then(Value::as_str).map(str::to_string);
    let label = sid.clone().unwrap_or_else(|| "(no Sid)".into());
    let effect = match o.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        _ => {
            return Err(malformed(format!("statement {label}: Effect must be \"Allow\" or \"Deny\"")));
        }
    };
    match o.get("Principal") {
        Some(Value::String(s)) if s == "*" => {}
        Some(Value::Object(p)) if !p.is_empty() => {
            for (k, v) in p {
                if !matches!(k.as_str(), "AWS" | "Service" | "Federated") {
                    return Err(malformed(format!("statement {label}: unknown Principal type {k}")));
                }
                strings(v, "Principal")?;
            }
        }
        _ => {
            return Err(malformed(format!(
                "statement {label}: Principal must be \"*\" or {{\"AWS\": ...}} (key policies require a Principal)"
            )));
        }
    }
    let actions =
        strings(o.get("Action").ok_or_else(|| malformed(format!("statement {label}: Action is missing")))?, "Action")?;
    for a in &actions {
        if a != "*" && !a.to_ascii_lowercase().starts_with("kms:") {
            return Err(malformed(format!("statement {label}: action {a} is not a KMS action (kms:...)")));
        }
    }
    let resources = match o.get("Resource") {
        Some(v) => strings(v, "Resource")?,
        None => {
            return Err(malformed(format!("statement {label}: Resource is missing (use \"*\")")));
        }
    };
    let mut conditions = Vec::new();
    if let Some(c) = o.get("Condition") {
        let c = c.as_object().ok_or_else(|| malformed("Condition must be an object"))?;
        for (op_name, block) in c {
            let op = match op_name.as_str() {
                "StringEquals" => Operator::StringEquals,
                "StringEqualsIgnoreCase" => Operator::StringEqualsIgnoreCase,
                "StringLike" => Operator::StringLike,
                "StringNotEquals" => Operator::StringNotEquals,
                "StringNotEqualsIgnoreCase" => Operator::StringNotEqualsIgnoreCase,
                other => {
                    return Err(malformed(format!(
                        "statement {label}: condition operator {other} is not supported by the kms-emulator"
                    )));
                }
            };
            let block = block
                .as_object()
                .ok_or_else(|| malformed(format!("statement {label}: {op_name} must be an object")))?;
            for (key, values) in block {
                conditions.push(Condition { op, key: key.clone(), values: strings(values, key)? });
            }
        }
    }
    Ok(Statement { sid, effect, actions, resources, conditions })
}

/// IAM-style wildcard match (`*` any run, `?` one char), case-insensitive when asked.
pub fn wildcard_match(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = if ignore_case {
        (pattern.to_lowercase().chars().collect(), text.to_lowercase().chars().collect())
    } else {
        (pattern.chars().collect(), text.chars().collect())
    };
    let (mut pi, mut ti, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

impl Statement {
    fn matches_action(&self, action: &str) -> bool {
        self.actions.iter().any(|a| wildcard_match(a, action, true))
    }

    fn applies(&self, action: &str, key_arn: &str, ctx: &RequestContext) -> bool {
        self.matches_action(action)
            && self.resources.iter().any(|r| r == "*" || wildcard_match(r, key_arn, false))
            && self.conditions.iter().all(|c| c.holds(ctx))
    }
}

impl Condition {
    fn holds(&self, ctx: &RequestContext) -> bool {
        let Some(actual) = ctx.get(&self.key) else {
            return false;
        };
        let any = |f: &dyn Fn(&str) -> bool| self.values.iter().any(|v| f(v));
        match self.op {
            Operator::StringEquals => any(&|v| v == actual),
            Operator::StringEqualsIgnoreCase => any(&|v| v.eq_ignore_ascii_case(actual)),
            Operator::StringLike => any(&|v| wildcard_match(v, actual, false)),
            Operator::StringNotEquals => !any(&|v| v == actual),
            Operator::StringNotEqualsIgnoreCase => !any(&|v| v.eq_ignore_ascii_case(actual)),
        }
    }
}

/// The policy KMS attaches when CreateKey gets none: the account root may do everything.
pub fn default_policy(account_id: &str) -> String {
    serde_json::to_string_pretty(&serde_json::json!({
        "Version": "2012-10-17",
        "Id": "key-default-1",
        "Statement": [{
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{account_id}:root")},
            "Action": "kms:*",
            "Resource": "*"
        }]
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/k";

    fn pcr_policy(pcrs: &[&str]) -> Policy {
        Policy::parse(
            &serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [
                    {"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                     "Action": ["kms:Describe*", "kms:Put*", "kms:Get*", "kms:Encrypt", "kms:GenerateDataKey*"], "Resource": "*"},
                    {"Sid": "Enclave", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                     "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*",
                     "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR0": pcrs}}}
                ]
            })
            .to_string(),
        )
        .unwrap()
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("kms:*", "kms:Decrypt", true));
        assert!(wildcard_match("kms:GenerateDataKey*", "kms:GenerateDataKeyWithoutPlaintext", true));
        assert!(wildcard_match("KMS:decrypt", "kms:Decrypt", true));
        assert!(!wildcard_match("kms:Describe*", "kms:Decrypt", true));
        assert!(wildcard_match("a?c", "abc", false));
        assert!(!wildcard_match("a?c", "abbc", false));
    }

    #[test]
    fn pcr_condition() {
        let p = pcr_policy(&["AB12"]);
        let mut ctx = RequestContext::default();
        assert_eq!(p.evaluate("kms:Decrypt", ARN, &ctx), Decision::ImplicitDeny);
        assert_eq!(p.evaluate("kms:GenerateDataKey", ARN, &ctx), Decision::Allow);
        ctx.insert("kms:RecipientAttestation:PCR0", "ab12");
        assert_eq!(p.evaluate("kms:Decrypt", ARN, &ctx), Decision::Allow);
        let mut other = RequestContext::default();
        other.insert("kms:RecipientAttestation:PCR0", "cd34");
        assert_eq!(p.evaluate("kms:Decrypt", ARN, &other), Decision::ImplicitDeny);
        assert_eq!(p.allowed_values("kms:Decrypt", "kms:recipientattestation:pcr0"), vec!["AB12"]);
        assert!(p.allows_only_with("kms:Decrypt", "kms:RecipientAttestation:PCR0"));
        // Empty list: nothing satisfies it.
        let p = pcr_policy(&[]);
        assert_eq!(p.evaluate("kms:Decrypt", ARN, &ctx), Decision::ImplicitDeny);
    }

    #[test]
    fn deny_wins() {
        let p = Policy::parse(
            r#"{"Statement":[
            {"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"},
            {"Sid":"NoDecrypt","Effect":"Deny","Principal":"*","Action":"kms:Decrypt","Resource":"*"}]}"#,
        )
        .unwrap();
        assert_eq!(
            p.evaluate("kms:Decrypt", ARN, &RequestContext::default()),
            Decision::ExplicitDeny(Some("NoDecrypt".into()))
        );
        assert_eq!(p.evaluate("kms:Encrypt", ARN, &RequestContext::default()), Decision::Allow);
    }

    #[test]
    fn malformed() {
        for bad in [
            "not json",
            "[]",
            r#"{"Statement":[]}"#,
            r#"{"Statement":[{"Effect":"Maybe","Principal":"*","Action":"kms:*","Resource":"*"}]}"#,
            r#"{"Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#,
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","NotAction":"kms:*","Resource":"*"}]}"#,
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}]}"#,
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"NumericEquals":{"a":"1"}}}]}"#,
            r#"{"Version":"2020-01-01","Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}]}"#,
        ] {
            assert!(Policy::parse(bad).is_err(), "{bad}");
        }
        assert!(Policy::parse(&default_policy("111122223333")).is_ok());
    }
}
