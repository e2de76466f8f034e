# The bridge key: envelope encryption of warehouse credentials
# (KMS_KEY_URI=gcpkms://projects/…/locations/…/keyRings/…/cryptoKeys/…) and, with bucket_cmek,
# the buckets' default encryption. Rotated every 90 days; old versions stay enabled so that
# data wrapped under them still decrypts. Key rings and keys cannot be deleted in Cloud KMS;
# prevent_destroy makes `terraform destroy` stop here rather than orphan them.

resource "google_kms_key_ring" "bridge" {
  name     = var.name_prefix
  location = coalesce(var.kms_location, var.region)

  depends_on = [google_project_service.apis]
}

resource "google_kms_crypto_key" "bridge" {
  name            = "${var.name_prefix}-envelope"
  key_ring        = google_kms_key_ring.bridge.id
  purpose         = "ENCRYPT_DECRYPT"
  rotation_period = "7776000s"

  version_template {
    algorithm        = "GOOGLE_SYMMETRIC_ENCRYPTION"
    protection_level = var.kms_protection_level
  }

  lifecycle {
    prevent_destroy = true
  }
}

# The Cloud Storage service agent encrypts and decrypts objects with the key (CMEK).
data "google_storage_project_service_account" "gcs" {
  count = var.bucket_cmek ? 1 : 0
}

resource "google_kms_crypto_key_iam_member" "gcs" {
  count = var.bucket_cmek ? 1 : 0

  crypto_key_id = google_kms_crypto_key.bridge.id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:${data.google_storage_project_service_account.gcs[0].email_address}"
}

# Envelope encryption, for the functions whose catalogue entry asks for it.
resource "google_kms_crypto_key_iam_member" "fn" {
  for_each = { for name, f in local.functions : name => f if f.kms != "none" }

  crypto_key_id = google_kms_crypto_key.bridge.id
  role          = each.value.kms == "encrypt_decrypt" ? "roles/cloudkms.cryptoKeyEncrypterDecrypter" : "roles/cloudkms.cryptoKeyDecrypter"
  member        = google_service_account.fn[each.key].member
}
