{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "TskDecryptViaAttestedEnclave",
      "Effect": "Allow",
      "Action": [
        "kms:Decrypt",
        "kms:GenerateDataKey"
      ],
      "Resource": "${KMS_KEY_ARN}"
    },
    {
      "Sid": "DescribeTskKey",
      "Effect": "Allow",
      "Action": [
        "kms:DescribeKey"
      ],
      "Resource": "${KMS_KEY_ARN}"
    },
    {
      "Sid": "EnclaveRandomness",
      "Effect": "Allow",
      "Action": [
        "kms:GenerateRandom"
      ],
      "Resource": "*"
    }
  ]
}
