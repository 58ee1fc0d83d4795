{
  "Version": "2012-10-17",
  "Id": "enclavemesh-tsk-key-policy",
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
      "Sid": "AdminMakesTskVersionsNobodySees",
      "Effect": "Allow",
      "Principal": {"AWS": "${ADMIN_PRINCIPAL}"},
      "Action": "kms:GenerateDataKeyWithoutPlaintext",
      "Resource": "*",
      "Condition": {"StringEquals": {"kms:EncryptionContext:enclavemesh-purpose": "tsk"}}
    },
    {
      "Sid": "ReleaseOnlyToAttestedEnclaveImages",
      "Effect": "Allow",
      "Principal": {"AWS": "${INSTANCE_PRINCIPAL}"},
      "Action": ["kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateRandom"],
      "Resource": "*",
      "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:${IMAGE_PCR}": "${ALLOWED_IMAGES}"}}
    },
    {
      "Sid": "NobodyEncryptsReEncryptsOrGrants",
      "Effect": "Deny",
      "Principal": "*",
      "Action": ["kms:Encrypt", "kms:ReEncrypt*", "kms:CreateGrant"],
      "Resource": "*"
    },
    {
      "Sid": "NoPlaintextWithoutAnAttestedRecipient",
      "Effect": "Deny",
      "Principal": "*",
      "Action": ["kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyPair", "kms:DeriveSharedSecret"],
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
