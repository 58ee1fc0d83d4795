//! Policy evaluation: the IAM policy language as KMS key policies (and identity policies)
//! use it, evaluated the way AWS does.
//!
//! * A statement applies when its principal, action, resource and every condition match.
//!   `Principal` is `"*"`, `{"AWS": arn | [arns]}` (an account root, `arn:aws:iam::ACCT:root`
//!   or a bare account id, names the whole account: see [`PrincipalMatch::Account`]; a role
//!   names its sessions too), `Service` / `Federated` (never a caller here). `NotPrincipal`,
//!   `NotAction`, `NotResource` invert. Actions and resources take `*`/`?` wildcards;
//!   actions are case-insensitive.
//! * Conditions: `StringEquals`, `StringNotEquals`, `StringEqualsIgnoreCase`,
//!   `StringNotEqualsIgnoreCase`, `StringLike`, `StringNotLike`, `ArnEquals`, `ArnLike`,
//!   `ArnNotEquals`, `ArnNotLike`, `Bool`, `Null`, each with an `...IfExists` form and the
//!   `ForAnyValue:` / `ForAllValues:` qualifiers for multi-valued keys. Several values for
//!   one key: any may match (for a negated operator: none may). Several keys or operators:
//!   all must hold. Condition keys are case-insensitive.
//! * A key the request does not carry: a positive operator is false, a negated one true,
//!   `...IfExists` true, `Null: "true"` true; `ForAllValues` over no values is true,
//!   `ForAnyValue` false. (This is what makes `Deny ... StringNotEquals` deny a request
//!   that lacks the key.)
//! * Explicit Deny wins over Allow; nothing allowing is an implicit deny.
//!
//! Anything else (an unknown operator, a wrong type) is MalformedPolicyDocumentException
//! rather than a silently different evaluation.

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

/// How a condition compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compare {
    StringEquals,
    StringEqualsIgnoreCase,
    StringLike,
    Bool,
}

/// How one condition block entry combines the request's values with the policy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetQualifier {
    /// A single-valued key.
    Single,
    ForAnyValue,
    ForAllValues,
}

#[derive(Debug, Clone)]
struct Condition {
    compare: Compare,
    negated: bool,
    if_exists: bool,
    /// `Null`: the values are "true" (key must be absent) or "false" (must be present).
    null_check: bool,
    qualifier: SetQualifier,
    key: String,
    values: Vec<String>,
}

/// Who a statement names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Principals {
    /// `"*"` or `{"AWS": "*"}`.
    Anyone,
    /// ARNs (and bare account ids) under `AWS`; other principal types never match a caller.
    Aws(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    principals: Option<(Principals, bool)>,
    actions: (Vec<String>, bool),
    resources: (Vec<String>, bool),
    conditions: Vec<Condition>,
}

/// A parsed policy document.
#[derive(Debug, Clone)]
pub struct Policy {
    pub statements: Vec<Statement>,
}

/// The request facts conditions are evaluated against (keys lower-cased). A key may hold
/// several values (`kms:EncryptionContextKeys`, `kms:GrantOperations`).
#[derive(Debug, Default, Clone)]
pub struct RequestContext {
    values: BTreeMap<String, Vec<String>>,
}

impl RequestContext {
    /// Sets a single-valued key.
    pub fn insert(&mut self, key: &str, value: impl Into<String>) {
        self.values.insert(key.to_ascii_lowercase(), vec![value.into()]);
    }
    /// Sets a multi-valued key (present even when `values` is empty).
    pub fn insert_all(&mut self, key: &str, values: Vec<String>) {
        self.values.insert(key.to_ascii_lowercase(), values);
    }
    fn get(&self, key: &str) -> Option<&[String]> {
        self.values.get(&key.to_ascii_lowercase()).map(Vec::as_slice)
    }

    /// The request's encryption context, from its `kms:EncryptionContext:<k>` keys (keys
    /// lower-cased, as condition keys are).
    pub fn encryption_context(&self) -> BTreeMap<String, String> {
        const PREFIX: &str = "kms:encryptioncontext:";
        self.values
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(PREFIX)?.to_string(), v.first()?.clone())))
            .collect()
    }
}

/// The caller, as policies see it.
#[derive(Debug, Clone)]
pub struct Principal<'a> {
    /// The caller's ARN: `arn:aws:iam::ACCT:role/R`, `...:user/U`, `...:root`, or an
    /// assumed-role session `arn:aws:sts::ACCT:assumed-role/R/SESSION`.
    pub arn: &'a str,
    pub account: &'a str,
}

impl Principal<'_> {
    /// The IAM ARN a policy names for this caller (`aws:PrincipalArn`): the role for an
    /// assumed-role session, else the caller's own ARN.
    pub fn iam_arn(&self) -> String {
        let parts: Vec<&str> = self.arn.splitn(6, ':').collect();
        if parts.len() == 6
            && parts[2] == "sts"
            && let Some(rest) = parts[5].strip_prefix("assumed-role/")
            && let Some((role, _session)) = rest.split_once('/')
        {
            return format!("arn:aws:iam::{}:role/{role}", parts[4]);
        }
        self.arn.to_string()
    }
}

/// How a statement's principal matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalMatch {
    /// Names the caller (its ARN, its role, or `*`): the policy alone decides.
    Direct,
    /// Names the caller's account (`arn:aws:iam::ACCT:root`): in a key policy this hands
    /// the decision to the caller's identity (IAM) policy.
    Account,
}

/// Outcome of evaluating a policy for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, and how the allowing statement named the caller.
    Allow(PrincipalMatch),
    /// An explicit Deny statement matched (its Sid, if any).
    ExplicitDeny(Option<String>),
    /// Nothing allowed it.
    ImplicitDeny,
}

fn malformed(msg: impl Into<String>) -> KmsError {
    KmsError::malformed_policy(msg.into())
}

fn strings(v: &Value, what: &str) -> Result<Vec<String>, KmsError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Bool(b) => Ok(vec![b.to_string()]),
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                Value::Bool(b) => Ok(b.to_string()),
                _ => Err(malformed(format!("{what} must be a string or a list of strings"))),
            })
            .collect(),
        _ => Err(malformed(format!("{what} must be a string or a list of strings"))),
    }
}

impl Policy {
    /// Parses and validates a policy document.
    pub fn parse(text: &str) -> Result<Policy, KmsError> {
        if text.len() > MAX_POLICY_LEN {
            return Err(KmsError::new(
                crate::error::ErrorKind::LimitExceeded,
                format!("policy is {} bytes, the KMS limit is {MAX_POLICY_LEN}", text.len()),
            ));
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

    /// Whether this policy names principals (a key policy) or not (an identity policy).
    fn evaluate_inner(
        &self,
        caller: Option<&Principal<'_>>,
        action: &str,
        resource: &str,
        ctx: &RequestContext,
    ) -> Decision {
        let mut allowed: Option<PrincipalMatch> = None;
        for st in &self.statements {
            let Some(how) = st.applies(caller, action, resource, ctx) else { continue };
            match st.effect {
                Effect::Deny => return Decision::ExplicitDeny(st.sid.clone()),
                // A direct naming beats an account naming: it needs no identity policy.
                Effect::Allow if allowed != Some(PrincipalMatch::Direct) => allowed = Some(how),
                Effect::Allow => {}
            }
        }
        allowed.map_or(Decision::ImplicitDeny, Decision::Allow)
    }

    /// Evaluates a key policy: `caller` doing `action` (e.g. "kms:Decrypt") on `key_arn`.
    pub fn evaluate(&self, caller: &Principal<'_>, action: &str, key_arn: &str, ctx: &RequestContext) -> Decision {
        self.evaluate_inner(Some(caller), action, key_arn, ctx)
    }

    /// Evaluates an identity policy (statements have no Principal: they are the caller's).
    pub fn evaluate_identity(&self, action: &str, resource: &str, ctx: &RequestContext) -> Decision {
        self.evaluate_inner(None, action, resource, ctx)
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
                if c.key.eq_ignore_ascii_case(key) && !c.negated && !c.null_check && c.compare != Compare::Bool {
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

fn parse_principals(v: &Value, label: &str) -> Result<Principals, KmsError> {
    match v {
        Value::String(s) if s == "*" => Ok(Principals::Anyone),
        Value::Object(p) if !p.is_empty() => {
            let mut arns = Vec::new();
            for (k, v) in p {
                let values = strings(v, "Principal")?;
                match k.as_str() {
                    "AWS" if values.iter().any(|a| a == "*") => return Ok(Principals::Anyone),
                    "AWS" => arns.extend(values),
                    // Services and federated identities never call the emulator.
                    "Service" | "Federated" | "CanonicalUser" => {}
                    other => return Err(malformed(format!("statement {label}: unknown Principal type {other}"))),
                }
            }
            Ok(Principals::Aws(arns))
        }
        _ => Err(malformed(format!("statement {label}: Principal must be \"*\" or {{\"AWS\": ...}}"))),
    }
}

/// `StringNotEqualsIfExists` → (StringEquals, negated, if_exists), and so on.
fn parse_operator(name: &str) -> Option<(Compare, bool, bool, bool)> {
    let (base, if_exists) = match name.strip_suffix("IfExists") {
        Some(b) => (b, true),
        None => (name, false),
    };
    let (compare, negated, null_check) = match base {
        "StringEquals" => (Compare::StringEquals, false, false),
        "StringNotEquals" => (Compare::StringEquals, true, false),
        "StringEqualsIgnoreCase" => (Compare::StringEqualsIgnoreCase, false, false),
        "StringNotEqualsIgnoreCase" => (Compare::StringEqualsIgnoreCase, true, false),
        "StringLike" | "ArnLike" => (Compare::StringLike, false, false),
        "StringNotLike" | "ArnNotLike" => (Compare::StringLike, true, false),
        "ArnEquals" => (Compare::StringEquals, false, false),
        "ArnNotEquals" => (Compare::StringEquals, true, false),
        "Bool" => (Compare::Bool, false, false),
        "Null" if !if_exists => (Compare::Bool, false, true),
        _ => return None,
    };
    Some((compare, negated, if_exists, null_check))
}

fn parse_statement(v: &Value) -> Result<Statement, KmsError> {
    let o = v.as_object().ok_or_else(|| malformed("each Statement must be an object"))?;
    let sid = o.get("Sid").and_then(Value::as_str).map(str::to_string);
    let label = sid.clone().unwrap_or_else(|| "(no Sid)".into());
    let effect = match o.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        _ => return Err(malformed(format!("statement {label}: Effect must be \"Allow\" or \"Deny\""))),
    };
    let principals = match (o.get("Principal"), o.get("NotPrincipal")) {
        (Some(_), Some(_)) => return Err(malformed(format!("statement {label}: both Principal and NotPrincipal"))),
        (Some(p), None) => Some((parse_principals(p, &label)?, false)),
        (None, Some(p)) => Some((parse_principals(p, &label)?, true)),
        (None, None) => None,
    };
    let pair = |pos: &str, neg: &str| -> Result<(Vec<String>, bool), KmsError> {
        match (o.get(pos), o.get(neg)) {
            (Some(v), None) => Ok((strings(v, pos)?, false)),
            (None, Some(v)) => Ok((strings(v, neg)?, true)),
            (Some(_), Some(_)) => Err(malformed(format!("statement {label}: both {pos} and {neg}"))),
            (None, None) => Err(malformed(format!("statement {label}: {pos} is missing"))),
        }
    };
    let actions = pair("Action", "NotAction")?;
    for a in &actions.0 {
        if a != "*" && !a.to_ascii_lowercase().starts_with("kms:") {
            return Err(malformed(format!("statement {label}: action {a} is not a KMS action (kms:...)")));
        }
    }
    let resources = pair("Resource", "NotResource")?;
    let mut conditions = Vec::new();
    if let Some(c) = o.get("Condition") {
        let c = c.as_object().ok_or_else(|| malformed("Condition must be an object"))?;
        for (op_name, block) in c {
            let (qualifier, bare) = if let Some(b) = op_name.strip_prefix("ForAnyValue:") {
                (SetQualifier::ForAnyValue, b)
            } else if let Some(b) = op_name.strip_prefix("ForAllValues:") {
                (SetQualifier::ForAllValues, b)
            } else {
                (SetQualifier::Single, op_name.as_str())
            };
            let (compare, negated, if_exists, null_check) = parse_operator(bare).ok_or_else(|| {
                malformed(format!(
                    "statement {label}: condition operator {op_name} is not supported by the kms-emulator"
                ))
            })?;
            let block = block
                .as_object()
                .ok_or_else(|| malformed(format!("statement {label}: {op_name} must be an object")))?;
            for (key, values) in block {
                if qualifier == SetQualifier::ForAllValues
                    && key.to_ascii_lowercase().starts_with("kms:encryptioncontext:")
                {
                    // KMS's own rule: an encryption context key holds one value.
                    return Err(malformed(format!(
                        "statement {label}: ForAllValues cannot be used with the single-valued condition key {key}"
                    )));
                }
                let values = strings(values, key)?;
                if (compare == Compare::Bool) && values.iter().any(|v| v != "true" && v != "false") {
                    return Err(malformed(format!("statement {label}: {op_name} {key} takes \"true\" or \"false\"")));
                }
                conditions.push(Condition {
                    compare,
                    negated,
                    if_exists,
                    null_check,
                    qualifier,
                    key: key.clone(),
                    values,
                });
            }
        }
    }
    Ok(Statement { sid, effect, principals, actions, resources, conditions })
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

impl Principals {
    /// How these principals name `caller`, if they do.
    fn matches(&self, caller: &Principal<'_>) -> Option<PrincipalMatch> {
        match self {
            Principals::Anyone => Some(PrincipalMatch::Direct),
            Principals::Aws(arns) => {
                let iam = caller.iam_arn();
                let account_root = format!("arn:aws:iam::{}:root", caller.account);
                let mut how = None;
                for a in arns {
                    if a == caller.arn || *a == iam {
                        return Some(PrincipalMatch::Direct);
                    }
                    if *a == account_root || a == caller.account {
                        how = Some(PrincipalMatch::Account);
                    }
                }
                how
            }
        }
    }
}

impl Statement {
    fn matches_action(&self, action: &str) -> bool {
        let (list, negated) = &self.actions;
        list.iter().any(|a| wildcard_match(a, action, true)) != *negated
    }

    fn matches_resource(&self, resource: &str) -> bool {
        let (list, negated) = &self.resources;
        list.iter().any(|r| r == "*" || wildcard_match(r, resource, false)) != *negated
    }

    /// `Some(how the principal matched)` when the statement applies to this request.
    fn applies(
        &self,
        caller: Option<&Principal<'_>>,
        action: &str,
        resource: &str,
        ctx: &RequestContext,
    ) -> Option<PrincipalMatch> {
        let how = match (&self.principals, caller) {
            // An identity policy's statements are the caller's own.
            (None, None) => PrincipalMatch::Direct,
            // A key policy statement without a Principal names nobody.
            (None, Some(_)) => return None,
            (Some(_), None) => PrincipalMatch::Direct,
            (Some((p, false)), Some(c)) => p.matches(c)?,
            (Some((p, true)), Some(c)) => match p.matches(c) {
                Some(_) => return None,
                None => PrincipalMatch::Direct,
            },
        };
        (self.matches_action(action) && self.matches_resource(resource) && self.conditions.iter().all(|c| c.holds(ctx)))
            .then_some(how)
    }
}

impl Condition {
    fn one(&self, policy_value: &str, actual: &str) -> bool {
        match self.compare {
            Compare::StringEquals => policy_value == actual,
            Compare::StringEqualsIgnoreCase | Compare::Bool => policy_value.eq_ignore_ascii_case(actual),
            Compare::StringLike => wildcard_match(policy_value, actual, false),
        }
    }

    /// Whether the request value matches any of the policy's values.
    fn any_policy_value(&self, actual: &str) -> bool {
        self.values.iter().any(|v| self.one(v, actual))
    }

    fn holds(&self, ctx: &RequestContext) -> bool {
        let actual = ctx.get(&self.key);
        if self.null_check {
            let absent = actual.is_none_or(<[String]>::is_empty);
            return self.values.iter().any(|v| (v == "true") == absent);
        }
        let Some(actual) = actual else {
            return match self.qualifier {
                SetQualifier::ForAllValues => true,
                SetQualifier::ForAnyValue => false,
                SetQualifier::Single => self.negated || self.if_exists,
            };
        };
        match self.qualifier {
            SetQualifier::ForAnyValue => actual.iter().any(|a| self.any_policy_value(a) != self.negated),
            SetQualifier::ForAllValues => actual.iter().all(|a| self.any_policy_value(a) != self.negated),
            SetQualifier::Single => match actual.first() {
                Some(a) => self.any_policy_value(a) != self.negated,
                None => self.negated || self.if_exists,
            },
        }
    }
}

/// The policy KMS attaches when CreateKey gets none: the account may do everything (its
/// identity policies decide).
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

    const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/k";
    const ADMIN: &str = "arn:aws:iam::111122223333:role/admin";
    const SESSION: &str = "arn:aws:sts::111122223333:assumed-role/instance/i-0abc";

    fn who(arn: &str) -> Principal<'_> {
        Principal { arn, account: "111122223333" }
    }

    fn ctx(pairs: &[(&str, &str)]) -> RequestContext {
        let mut c = RequestContext::default();
        for (k, v) in pairs {
            c.insert(k, *v);
        }
        c
    }

    fn policy(statements: serde_json::Value) -> Policy {
        Policy::parse(&serde_json::json!({"Version": "2012-10-17", "Statement": statements}).to_string()).unwrap()
    }

    #[test]
    fn principals_direct_role_session_account_and_not_principal() {
        let p = policy(serde_json::json!([
            {"Effect": "Allow", "Principal": {"AWS": ADMIN}, "Action": "kms:PutKeyPolicy", "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/instance"},
             "Action": "kms:Decrypt", "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
             "Action": "kms:DescribeKey", "Resource": "*"},
        ]));
        let c = RequestContext::default();
        assert_eq!(p.evaluate(&who(ADMIN), "kms:PutKeyPolicy", KEY, &c), Decision::Allow(PrincipalMatch::Direct));
        assert_eq!(p.evaluate(&who(SESSION), "kms:PutKeyPolicy", KEY, &c), Decision::ImplicitDeny);
        // A role names its sessions.
        assert_eq!(p.evaluate(&who(SESSION), "kms:Decrypt", KEY, &c), Decision::Allow(PrincipalMatch::Direct));
        assert_eq!(p.evaluate(&who(ADMIN), "kms:DescribeKey", KEY, &c), Decision::Allow(PrincipalMatch::Account));
        let other = Principal { arn: "arn:aws:iam::999988887777:role/admin", account: "999988887777" };
        assert_eq!(p.evaluate(&other, "kms:DescribeKey", KEY, &c), Decision::ImplicitDeny);

        let deny_others = policy(serde_json::json!([
            {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"},
            {"Effect": "Deny", "NotPrincipal": {"AWS": ADMIN}, "Action": "kms:PutKeyPolicy", "Resource": "*"},
        ]));
        assert_eq!(
            deny_others.evaluate(&who(ADMIN), "kms:PutKeyPolicy", KEY, &c),
            Decision::Allow(PrincipalMatch::Direct)
        );
        assert_eq!(deny_others.evaluate(&who(SESSION), "kms:PutKeyPolicy", KEY, &c), Decision::ExplicitDeny(None));
    }

    #[test]
    fn a_missing_key_fails_positive_operators_and_passes_negated_ones() {
        let p = policy(serde_json::json!([
            {"Sid": "Allow", "Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"},
            {"Sid": "DenyWrongPurpose", "Effect": "Deny", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*",
             "Condition": {"StringNotEquals": {"kms:EncryptionContext:purpose": "input"}}},
            {"Sid": "DenyWithoutRecipient", "Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*",
             "Condition": {"Null": {"kms:RecipientAttestation:ImageSha384": "true"}}},
        ]));
        let admin = who(ADMIN);
        // Encrypt without the context key is denied (the negated operator holds).
        assert_eq!(
            p.evaluate(&admin, "kms:Encrypt", KEY, &ctx(&[])),
            Decision::ExplicitDeny(Some("DenyWrongPurpose".into()))
        );
        assert_eq!(
            p.evaluate(&admin, "kms:Encrypt", KEY, &ctx(&[("kms:EncryptionContext:purpose", "tsk")])),
            Decision::ExplicitDeny(Some("DenyWrongPurpose".into()))
        );
        assert_eq!(
            p.evaluate(&admin, "kms:Encrypt", KEY, &ctx(&[("kms:EncryptionContext:PURPOSE", "input")])),
            Decision::Allow(PrincipalMatch::Direct),
            "condition keys are case-insensitive"
        );
        assert_eq!(
            p.evaluate(&admin, "kms:Decrypt", KEY, &ctx(&[])),
            Decision::ExplicitDeny(Some("DenyWithoutRecipient".into()))
        );
        assert_eq!(
            p.evaluate(&admin, "kms:Decrypt", KEY, &ctx(&[("kms:RecipientAttestation:ImageSha384", "ab")])),
            Decision::Allow(PrincipalMatch::Direct)
        );
    }

    #[test]
    fn if_exists_bool_set_qualifiers_and_not_action() {
        let p = policy(serde_json::json!([
            {"Effect": "Allow", "Principal": "*", "NotAction": ["kms:Encrypt", "kms:ReEncrypt*"], "Resource": "*",
             "Condition": {"StringEqualsIfExists": {"kms:EncryptionContext:purpose": "tsk"},
                           "BoolIfExists": {"kms:BypassPolicyLockoutSafetyCheck": "false"},
                           "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["purpose", "tsk_version"]}}},
        ]));
        let a = who(ADMIN);
        assert_eq!(p.evaluate(&a, "kms:Decrypt", KEY, &ctx(&[])), Decision::Allow(PrincipalMatch::Direct));
        assert_eq!(p.evaluate(&a, "kms:ReEncryptFrom", KEY, &ctx(&[])), Decision::ImplicitDeny);
        assert_eq!(p.evaluate(&a, "kms:Encrypt", KEY, &ctx(&[])), Decision::ImplicitDeny);
        assert_eq!(
            p.evaluate(&a, "kms:Decrypt", KEY, &ctx(&[("kms:EncryptionContext:purpose", "x")])),
            Decision::ImplicitDeny
        );
        assert_eq!(
            p.evaluate(&a, "kms:PutKeyPolicy", KEY, &ctx(&[("kms:BypassPolicyLockoutSafetyCheck", "true")])),
            Decision::ImplicitDeny
        );
        let mut keys = RequestContext::default();
        keys.insert_all("kms:EncryptionContextKeys", vec!["purpose".into(), "other".into()]);
        assert_eq!(p.evaluate(&a, "kms:Decrypt", KEY, &keys), Decision::ImplicitDeny);
        keys.insert_all("kms:EncryptionContextKeys", vec!["purpose".into()]);
        assert_eq!(p.evaluate(&a, "kms:Decrypt", KEY, &keys), Decision::Allow(PrincipalMatch::Direct));
    }

    #[test]
    fn explicit_deny_wins_and_unknown_operators_are_refused() {
        let p = policy(serde_json::json!([
            {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"},
            {"Sid": "NoGrants", "Effect": "Deny", "Principal": "*", "Action": "kms:CreateGrant", "Resource": "*"},
        ]));
        assert_eq!(
            p.evaluate(&who(ADMIN), "kms:CreateGrant", KEY, &ctx(&[])),
            Decision::ExplicitDeny(Some("NoGrants".into()))
        );
        let bad = serde_json::json!({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "kms:*",
            "Resource": "*", "Condition": {"NumericEquals": {"a": "1"}}}]})
        .to_string();
        assert!(Policy::parse(&bad).unwrap_err().message.contains("NumericEquals"));
        let single = serde_json::json!({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "kms:*",
            "Resource": "*", "Condition": {"ForAllValues:StringEquals": {"kms:EncryptionContext:a": "1"}}}]})
        .to_string();
        assert!(Policy::parse(&single).is_err());
    }

    #[test]
    fn identity_policies_have_no_principal() {
        let iam = Policy::parse(
            &serde_json::json!({"Statement": [{"Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": "*"}]})
                .to_string(),
        )
        .unwrap();
        assert_eq!(iam.evaluate_identity("kms:Decrypt", KEY, &ctx(&[])), Decision::Allow(PrincipalMatch::Direct));
        assert_eq!(iam.evaluate_identity("kms:Encrypt", KEY, &ctx(&[])), Decision::ImplicitDeny);
        // The same statement in a key policy names nobody.
        assert_eq!(iam.evaluate(&who(ADMIN), "kms:Decrypt", KEY, &ctx(&[])), Decision::ImplicitDeny);
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("kms:Describe*", "kms:describekey", true));
        assert!(wildcard_match("kms:ReEncrypt*", "kms:ReEncryptTo", true));
        assert!(wildcard_match("a?c", "abc", false));
        assert!(!wildcard_match("a?c", "abbc", false));
    }
}
