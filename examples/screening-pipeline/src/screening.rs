//! Screening: checks the applicant against a private list (a sanctions or fraud list,
//! say) that the list's owner seals with `enclavemesh seal-resource --name
//! screening-list`. The SDK opens it at boot, in the enclave, through KMS; the host
//! passes the file along and cannot read it. The result (listed or not) stays in the
//! sealed case.

use enclavemesh_agent_sdk::{Context, Role, RoleError, Zeroize, Zeroizing};

use crate::intake::{normalise_id, normalise_name};
use crate::v1::Case;

/// The resource this role loads (`--resource screening-list=FILE`).
pub const SCREENING_LIST: &str = "screening-list";

/// The list: normalised national ids and names, sorted, wiped on drop.
#[derive(Default)]
struct List {
    ids: Vec<String>,
    names: Vec<String>,
}

impl Drop for List {
    fn drop(&mut self) {
        self.ids.zeroize();
        self.names.zeroize();
    }
}

impl List {
    /// One entry per line: `id:AB1234` or `name:Full Name`; `#` starts a comment.
    fn parse(text: &str) -> Result<List, RoleError> {
        let mut list = List::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once(':') {
                Some(("id", v)) if !normalise_id(v).is_empty() => list.ids.push(normalise_id(v)),
                Some(("name", v)) if !normalise_name(v).is_empty() => list.names.push(normalise_name(v)),
                _ => {
                    return Err(RoleError::InvalidInput(format!(
                        "screening list line {}: expected id:VALUE or name:VALUE",
                        n + 1
                    )));
                }
            }
        }
        list.ids.sort();
        list.names.sort();
        Ok(list)
    }

    fn holds(&self, id: &str, name: &str) -> bool {
        self.ids.binary_search_by(|e| e.as_str().cmp(id)).is_ok()
            || self.names.binary_search_by(|e| e.as_str().cmp(name)).is_ok()
    }
}

/// The screening role (kind `screening`).
#[derive(Default)]
pub struct Screening {
    list: Option<List>,
}

impl Role for Screening {
    type Input = crate::v1::Application;
    type State = Case;

    fn kind(&self) -> &str {
        "screening"
    }

    fn load(&mut self, name: &str, bytes: Zeroizing<Vec<u8>>) -> Result<(), RoleError> {
        if name != SCREENING_LIST {
            return Err(RoleError::InvalidInput(format!("screening takes only '{SCREENING_LIST}', not '{name}'")));
        }
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| RoleError::InvalidInput("the screening list is not UTF-8 text".into()))?;
        self.list = Some(List::parse(text)?);
        Ok(())
    }

    fn step(&self, _ctx: &Context<'_>, case: &mut Case) -> Result<(), RoleError> {
        let list = self.list.as_ref().ok_or_else(|| {
            RoleError::InvalidInput(format!(
                "no screening list is loaded: start this agent with --resource {SCREENING_LIST}=FILE"
            ))
        })?;
        if case.screened {
            return Err(RoleError::InvalidInput("this case is already screened".into()));
        }
        let a = crate::application(case)?;
        case.listed = list.holds(&a.national_id, &a.applicant_name);
        case.screened = true;
        Ok(())
    }

    fn disclose(&self, _ctx: &Context<'_>, _case: &Case, field: &str) -> Result<Zeroizing<Vec<u8>>, RoleError> {
        crate::nothing_disclosed(self.kind(), field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::Application;

    fn case(name: &str, id: &str) -> Case {
        let application = Application { applicant_name: name.into(), national_id: id.into(), ..Default::default() };
        Case { application: Some(application), ..Case::default() }
    }

    #[test]
    fn screening_matches_ids_and_names_and_needs_its_list() {
        let ctx = Context { workflow_id: "wf", step: 1, agent: "screening" };
        let mut s = Screening::default();
        assert!(matches!(s.step(&ctx, &mut case("A", "1")), Err(RoleError::InvalidInput(_))), "no list loaded");
        let list = b"# list\nid:ab-1234\nname:  mallory  m \n".to_vec();
        s.load(SCREENING_LIST, Zeroizing::new(list)).unwrap();
        for (name, id, listed) in [("ADA", "AB1234", true), ("MALLORY M", "X1", true), ("ADA", "X1", false)] {
            let mut c = case(name, id);
            s.step(&ctx, &mut c).unwrap();
            assert_eq!((c.screened, c.listed), (true, listed), "{name} {id}");
            assert!(matches!(s.step(&ctx, &mut c), Err(RoleError::InvalidInput(_))), "screened twice");
        }
        assert!(s.load("other", Zeroizing::new(vec![])).is_err());
        assert!(s.load(SCREENING_LIST, Zeroizing::new(b"nonsense".to_vec())).is_err());
    }
}
