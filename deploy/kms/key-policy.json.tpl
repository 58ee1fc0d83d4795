{
  "Version": "2012-10-17",
  "Id": "enclavemesh-tsk-key-policy",
  "Statement": [
    {
      "Sid": "AdminEverythingExceptDecrypt",
      "Effect": "Allow",
      "Principal": {
        "AWS": "${ADMIN_PRINCIPAL}"
      },
      "Action": [
        "kms:CreateAlias",
        "kms:Describe*",
        "kms:Enable*",
        "kms:List*",
        "kms:Put*",
        "kms:Update*",
        "kms:Revoke*",
        "kms:Disable*",
        "kms:Get*",
        "kms:Delete*",
        "kms:TagResource",
        "kms:UntagResource",
        "kms:ScheduleKeyDeletion",
        "kms:CancelKeyDeletion",
        "kms:RotateKeyOnDemand",
        "kms:Encrypt",
        "kms:GenerateDataKey*"
      ],
      "Resource": "*"
    },
    {
      "Sid": "DecryptOnlyFromAttestedEnclave",
      "Effect": "Allow",
      "Principal": {
        "AWS": "${RECIPIENT_PRINCIPAL}"
      },
      "Action": [
        "kms:Decrypt",
        "kms:GenerateDataKey",
        "kms:GenerateRandom"
      ],
      "Resource": "*",
      "Condition": {
        "StringEqualsIgnoreCase": {
          "kms:RecipientAttestation:PCR0": "${PCR0_LIST}"
        }
      }
    }
  ]
}
