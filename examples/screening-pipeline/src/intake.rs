//! Intake: the first role. Checks the owner's application and normalises it, so the
//! later roles compare like with like.

use enclavemesh_agent_sdk::{Context, Role, RoleError, Zeroizing};

use crate::v1::{Application, Case};

const MAX_NAME_CHARS: usize = 200;
const MAX_ID_CHARS: usize = 32;

/// The intake role (kind `intake`).
pub struct Intake;

/// Upper case, single spaces: "  ada  lovelace " -> "ADA LOVELACE".
pub fn normalise_name(name: &str) -> String {
    name.split_whitespace().map(str::to_uppercase).collect::<Vec<_>>().join(" ")
}

/// Upper case, without spaces or dashes: "ab-12 34" -> "AB1234".
pub fn normalise_id(id: &str) -> String {
    id.chars().filter(|c| !c.is_whitespace() && *c != '-').flat_map(char::to_uppercase).collect()
}

fn invalid(what: String) -> RoleError {
    RoleError::InvalidInput(what)
}

impl Role for Intake {
    type Input = Application;
    type State = Case;

    fn kind(&self) -> &str {
        "intake"
    }

    fn starts(&self) -> bool {
        true
    }

    fn init(&self, _ctx: &Context<'_>, a: &Application) -> Result<Case, RoleError> {
        let name = normalise_name(&a.applicant_name);
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            return Err(invalid(format!("applicant_name must be 1 to {MAX_NAME_CHARS} characters")));
        }
        let id = normalise_id(&a.national_id);
        if id.is_empty() || id.len() > MAX_ID_CHARS || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(invalid(format!(
                "national_id must be 1 to {MAX_ID_CHARS} of A-Z 0-9 (spaces and dashes are dropped)"
            )));
        }
        let country = a.country.trim().to_ascii_uppercase();
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(invalid("country must be an ISO 3166-1 alpha-2 code, e.g. DE".into()));
        }
        if a.annual_income < 0 || a.existing_debt < 0 {
            return Err(invalid("annual_income and existing_debt must be >= 0".into()));
        }
        if a.requested_amount <= 0 {
            return Err(invalid("requested_amount must be > 0".into()));
        }
        Ok(Case {
            application: Some(Application {
                applicant_name: name,
                national_id: id,
                country,
                annual_income: a.annual_income,
                requested_amount: a.requested_amount,
                existing_debt: a.existing_debt,
            }),
            ..Case::default()
        })
    }

    fn disclose(&self, _ctx: &Context<'_>, _case: &Case, field: &str) -> Result<Zeroizing<Vec<u8>>, RoleError> {
        crate::nothing_disclosed(self.kind(), field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context<'static> {
        Context { workflow_id: "wf", step: 0, agent: "intake" }
    }

    pub fn application() -> Application {
        Application {
            applicant_name: "  ada   lovelace ".into(),
            national_id: "ab-12 34".into(),
            country: "gb".into(),
            annual_income: 6_000_000,
            requested_amount: 2_000_000,
            existing_debt: 500_000,
        }
    }

    #[test]
    fn intake_normalises_and_refuses_nonsense() {
        let case = Intake.init(&ctx(), &application()).unwrap();
        let a = case.application.unwrap();
        assert_eq!(
            (a.applicant_name.as_str(), a.national_id.as_str(), a.country.as_str()),
            ("ADA LOVELACE", "AB1234", "GB")
        );
        for bad in [
            Application { applicant_name: " ".into(), ..application() },
            Application { national_id: "a/b".into(), ..application() },
            Application { country: "GBR".into(), ..application() },
            Application { requested_amount: 0, ..application() },
            Application { annual_income: -1, ..application() },
        ] {
            assert!(matches!(Intake.init(&ctx(), &bad), Err(RoleError::InvalidInput(_))), "{bad:?}");
        }
        assert!(matches!(Intake.disclose(&ctx(), &Case::default(), "score"), Err(RoleError::NotDisclosed(_))));
    }
}
