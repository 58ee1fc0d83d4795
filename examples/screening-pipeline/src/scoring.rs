//! Scoring: the last role. Scores a screened case from 0 to 1000 and discloses only the
//! score, sealed to the data owner's key.

use enclavemesh_agent_sdk::{Context, Role, RoleError, Zeroizing};

use crate::v1::Case;

/// The scoring role (kind `scoring`).
pub struct Scoring;

/// 0 for a listed applicant; otherwise 500, plus up to 300 for income against the
/// amount asked, minus up to 300 for debt against income, within 0..=1000.
pub fn score(case: &Case) -> Result<u32, RoleError> {
    let a = crate::application(case)?;
    if case.listed {
        return Ok(0);
    }
    let income = i128::from(a.annual_income);
    let amount = i128::from(a.requested_amount.max(1));
    let cover = (income * 100 / amount).min(300);
    let burden = if income == 0 { 300 } else { (i128::from(a.existing_debt) * 300 / income).min(300) };
    Ok(u32::try_from((500 + cover - burden).clamp(0, 1000)).unwrap_or(0))
}

impl Role for Scoring {
    type Input = crate::v1::Application;
    type State = Case;

    fn kind(&self) -> &str {
        "scoring"
    }

    fn step(&self, _ctx: &Context<'_>, case: &mut Case) -> Result<(), RoleError> {
        if !case.screened {
            return Err(RoleError::InvalidInput("this case is not screened: screening comes before scoring".into()));
        }
        if case.scored {
            return Err(RoleError::InvalidInput("this case is already scored".into()));
        }
        case.score = score(case)?;
        case.scored = true;
        Ok(())
    }

    fn disclose(&self, _ctx: &Context<'_>, case: &Case, field: &str) -> Result<Zeroizing<Vec<u8>>, RoleError> {
        match field {
            "score" if case.scored => Ok(Zeroizing::new(case.score.to_string().into_bytes())),
            "score" => Err(RoleError::InvalidInput("this case is not scored yet".into())),
            other => Err(RoleError::NotDisclosed(format!("scoring discloses only 'score', not '{other}'"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::Application;

    fn screened(listed: bool) -> Case {
        let application = Application {
            annual_income: 6_000_000,
            requested_amount: 2_000_000,
            existing_debt: 500_000,
            ..Default::default()
        };
        Case { application: Some(application), screened: true, listed, ..Case::default() }
    }

    #[test]
    fn scoring_scores_screened_cases_and_discloses_only_the_score() {
        let ctx = Context { workflow_id: "wf", step: 2, agent: "scoring" };
        // 500 + min(300, 300) - 500000*300/6000000 (= 25) = 775
        let mut c = screened(false);
        Scoring.step(&ctx, &mut c).unwrap();
        assert_eq!(c.score, 775);
        assert_eq!(Scoring.disclose(&ctx, &c, "score").unwrap().as_slice(), b"775");
        assert!(matches!(Scoring.disclose(&ctx, &c, "listed"), Err(RoleError::NotDisclosed(_))));
        let mut listed = screened(true);
        Scoring.step(&ctx, &mut listed).unwrap();
        assert_eq!(listed.score, 0);
        let mut raw = Case { screened: false, ..screened(false) };
        assert!(matches!(Scoring.step(&ctx, &mut raw), Err(RoleError::InvalidInput(_))));
        assert!(matches!(Scoring.step(&ctx, &mut c), Err(RoleError::InvalidInput(_))), "scored twice");
    }
}
