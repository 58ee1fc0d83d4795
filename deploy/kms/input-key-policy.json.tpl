{
  "Version": "2012-10-17",
  "Id": "enclavemesh-input-key-policy",
  "Statement": [
    {
      "Sid": "KeyAdministration",
      "Effect": "Allow",
      "Principal": {"AWS": "${ADMIN_PRINCIPAL}"},
      "Action": [
        "kms:Describe*",
        "kms:Get*",
        "kms:List*",
        "kms:PutKeyPolicy",
        "kms:EnableKey",
        "kms:DisableKey",
        "kms:CreateAlias",
        "kms:UpdateAlias",
        "kms:DeleteAlias",
        "kms:TagResource",
        "kms:UntagResource",
        "kms:ScheduleKeyDeletion",
        "kms:CancelKeyDeletion"
      ],
      "Resource": "*"
    },
    {
      "Sid": "OwnerSealsWorkflowInputs",
      "Effect": "Allow",
      "Principal": {"AWS": "${OWNER_PRINCIPAL}"},
      "Action": ["kms:Encrypt", "kms:GenerateDataKey"],
      "Resource": "*",
      "Condition": {"StringEquals": {"kms:EncryptionContext:enclavemesh-purpose": "workflow-input"}}
    },
    {
      "Sid": "OwnerDescribesTheKey",
      "Effect": "Allow",
      "Principal": {"AWS": "${OWNER_PRINCIPAL}"},
      "Action": "kms:DescribeKey",
      "Resource": "*"
    },
    {
      "Sid": "ReleaseOnlyToAttestedEnclaveImages",
      "Effect": "Allow",
      "Principal": {"AWS": "${INSTANCE_PRINCIPAL}"},
      "Action": "kms:Decrypt",
      "Resource": "*",
      "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:${IMAGE_PCR}": "${ALLOWED_IMAGES}"}}
    },
    {
      "Sid": "OnlyTheOwnerSealsInputs",
      "Effect": "Deny",
      "Principal": "*",
      "Action": ["kms:Encrypt", "kms:GenerateDataKey"],
      "Resource": "*",
      "Condition": {"StringNotEquals": {"aws:PrincipalArn": "${OWNER_PRINCIPAL}"}}
    },
    {
      "Sid": "NobodyReEncryptsOrGrants",
      "Effect": "Deny",
      "Principal": "*",
      "Action": ["kms:ReEncrypt*", "kms:CreateGrant", "kms:GenerateDataKeyPair*", "kms:GenerateDataKeyWithoutPlaintext"],
      "Resource": "*"
    },
    {
      "Sid": "NoPlaintextWithoutAnAttestedRecipient",
      "Effect": "Deny",
      "Principal": "*",
      "Action": ["kms:Decrypt", "kms:DeriveSharedSecret"],
      "Resource": "*",
      "Condition": {"Null": {"kms:RecipientAttestation:ImageSha384": "true"}}
    },
    {
      "Sid": "PolicyChanges",
      "Effect": "Deny",
      "Principal": "*",
      "Action": "kms:PutKeyPolicy",
      "Resource": "*",
      "Condition": "${POLICY_CHANGE_CONDITION}"
    }
  ]
}
