//! The KMS operations the emulator serves, as a type: parsed once from the request's
//! `X-Amz-Target`, then dispatched, authorized (`kms:<name>`) and audited by it.

use std::str::FromStr;

use crate::error::{ErrorKind, KmsError};

/// Every operation the emulator serves (`X-Amz-Target: TrentService.<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    CreateKey,
    DescribeKey,
    ListKeys,
    EnableKey,
    DisableKey,
    ScheduleKeyDeletion,
    CancelKeyDeletion,
    CreateAlias,
    DeleteAlias,
    ListAliases,
    Encrypt,
    Decrypt,
    ReEncrypt,
    GenerateDataKey,
    GenerateDataKeyWithoutPlaintext,
    GenerateDataKeyPair,
    GenerateDataKeyPairWithoutPlaintext,
    GenerateRandom,
    DeriveSharedSecret,
    CreateGrant,
    ListGrants,
    RevokeGrant,
    PutKeyPolicy,
    GetKeyPolicy,
    ListKeyPolicies,
}

impl Op {
    pub const ALL: [Op; 25] = [
        Op::CreateKey,
        Op::DescribeKey,
        Op::ListKeys,
        Op::EnableKey,
        Op::DisableKey,
        Op::ScheduleKeyDeletion,
        Op::CancelKeyDeletion,
        Op::CreateAlias,
        Op::DeleteAlias,
        Op::ListAliases,
        Op::Encrypt,
        Op::Decrypt,
        Op::ReEncrypt,
        Op::GenerateDataKey,
        Op::GenerateDataKeyWithoutPlaintext,
        Op::GenerateDataKeyPair,
        Op::GenerateDataKeyPairWithoutPlaintext,
        Op::GenerateRandom,
        Op::DeriveSharedSecret,
        Op::CreateGrant,
        Op::ListGrants,
        Op::RevokeGrant,
        Op::PutKeyPolicy,
        Op::GetKeyPolicy,
        Op::ListKeyPolicies,
    ];

    /// The operation's name, as in `TrentService.<name>` and CloudTrail's `eventName`.
    pub fn name(self) -> &'static str {
        match self {
            Op::CreateKey => "CreateKey",
            Op::DescribeKey => "DescribeKey",
            Op::ListKeys => "ListKeys",
            Op::EnableKey => "EnableKey",
            Op::DisableKey => "DisableKey",
            Op::ScheduleKeyDeletion => "ScheduleKeyDeletion",
            Op::CancelKeyDeletion => "CancelKeyDeletion",
            Op::CreateAlias => "CreateAlias",
            Op::DeleteAlias => "DeleteAlias",
            Op::ListAliases => "ListAliases",
            Op::Encrypt => "Encrypt",
            Op::Decrypt => "Decrypt",
            Op::ReEncrypt => "ReEncrypt",
            Op::GenerateDataKey => "GenerateDataKey",
            Op::GenerateDataKeyWithoutPlaintext => "GenerateDataKeyWithoutPlaintext",
            Op::GenerateDataKeyPair => "GenerateDataKeyPair",
            Op::GenerateDataKeyPairWithoutPlaintext => "GenerateDataKeyPairWithoutPlaintext",
            Op::GenerateRandom => "GenerateRandom",
            Op::DeriveSharedSecret => "DeriveSharedSecret",
            Op::CreateGrant => "CreateGrant",
            Op::ListGrants => "ListGrants",
            Op::RevokeGrant => "RevokeGrant",
            Op::PutKeyPolicy => "PutKeyPolicy",
            Op::GetKeyPolicy => "GetKeyPolicy",
            Op::ListKeyPolicies => "ListKeyPolicies",
        }
    }

    /// CloudTrail's `readOnly`: the operation changes no key, alias, grant or policy.
    pub fn read_only(self) -> bool {
        !matches!(
            self,
            Op::CreateKey
                | Op::EnableKey
                | Op::DisableKey
                | Op::ScheduleKeyDeletion
                | Op::CancelKeyDeletion
                | Op::CreateAlias
                | Op::DeleteAlias
                | Op::CreateGrant
                | Op::RevokeGrant
                | Op::PutKeyPolicy
        )
    }

    /// The IAM action a policy must allow: `kms:<name>`. (ReEncrypt is authorized as
    /// `kms:ReEncryptFrom` on the source key and `kms:ReEncryptTo` on the destination.)
    pub fn action(self) -> String {
        format!("kms:{}", self.name())
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Op {
    type Err = KmsError;

    /// An operation name; anything else is `UnsupportedOperationException` naming the
    /// ones served.
    fn from_str(name: &str) -> Result<Op, KmsError> {
        Op::ALL.into_iter().find(|op| op.name() == name).ok_or_else(|| {
            KmsError::new(
                ErrorKind::UnsupportedOperation,
                format!(
                    "operation {name} is not implemented by the kms-emulator; supported: {}",
                    Op::ALL.map(Op::name).join(", ")
                ),
            )
        })
    }
}
