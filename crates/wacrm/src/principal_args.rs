//! The command-line arguments `wacrm keys create` and `wacrm accounts create` share: who the
//! new key or account is to the API — its role, its scopes and its business numbers.

use anyhow::bail;
use wacrm_store::keys::{number_limit, NumberLimitError, Role};

/// Role, scopes and business numbers.
#[derive(clap::Args)]
pub struct PrincipalArgs {
    /// admin, agent, auditor or dpo.
    #[arg(long)]
    pub role: String,
    /// Business numbers (phone number ids) it may use; repeat for several. Give these or
    /// --all-numbers.
    #[arg(long = "number")]
    pub numbers: Vec<String>,
    /// It may use every business number (instead of --number).
    #[arg(long)]
    pub all_numbers: bool,
    /// Scopes instead of the role's defaults; repeat for several. A monitoring system's key:
    /// `--role auditor --scope metrics:read` (metrics only, no customer data).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
}

impl PrincipalArgs {
    /// The role.
    pub fn role(&self) -> anyhow::Result<Role> {
        match Role::parse(&self.role) {
            Some(role) => Ok(role),
            None => bail!("role must be admin, agent, auditor or dpo"),
        }
    }

    /// The business numbers (`None`: every number); which ones is a decision, never a default.
    pub fn business_numbers(&self) -> anyhow::Result<Option<Vec<String>>> {
        match number_limit(self.numbers.clone(), self.all_numbers) {
            Ok(limit) => Ok(limit),
            Err(NumberLimitError::Both) => {
                bail!("give either --number or --all-numbers, not both")
            }
            Err(NumberLimitError::Neither) => bail!(
                "give the business numbers it may use (--number PHONE_NUMBER_ID, repeatable) \
                 or --all-numbers"
            ),
        }
    }

    /// The scopes given, or `None` for the role's.
    pub fn scopes(&self) -> Option<Vec<String>> {
        (!self.scopes.is_empty()).then(|| self.scopes.clone())
    }
}
